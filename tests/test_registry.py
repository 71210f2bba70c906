"""Registry and safe download of discriminator checkpoints, fetched for real from a local HTTP server."""

from __future__ import annotations

import functools
import http.server
import io
import json
import os
import stat
import subprocess
import sys
import tarfile
import threading
import zipfile
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from gan_cot.discriminator.archive import DownloadError, download_archive
from gan_cot.discriminator.checkpoint import (
    CheckpointError,
    DiscriminatorSourceError,
    pack_checkpoint,
    sha256_file,
    validate_checkpoint,
)
from gan_cot.discriminator.registry import DEFAULT_REGISTRY, RegistryError, load_registry, resolve, resolve_source

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "scripts" / "download_discriminator.py"
LABELS = ["useful", "redundant", "wrong"]


# ------------------------------------------------------------------------------------------------ helpers


def make_checkpoint(folder: Path, *, pickle: bool = False, safetensors: bool = True, config_extra=None) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    config = {
        "model_type": "bert",
        "architectures": ["BertForTokenClassification"],
        "id2label": {str(i): x for i, x in enumerate(LABELS)},
        "label2id": {x: i for i, x in enumerate(LABELS)},
    }
    config.update(config_extra or {})
    (folder / "config.json").write_text(json.dumps(config))
    if safetensors:
        save_file({"classifier.weight": torch.zeros(3, 4)}, str(folder / "model.safetensors"))
    if pickle:
        (folder / "pytorch_model.bin").write_bytes(b"\x80\x04not really a pickle")
    (folder / "tokenizer_config.json").write_text(json.dumps({"model_max_length": 128}))
    card = {"labels": LABELS, "step_separator": "\n", "base_model": "tiny", "version": 1, "metrics": {"f1": 0.9}}
    (folder / "discriminator_card.json").write_text(json.dumps(card))
    return folder


def leftover_files(cache: Path) -> list[Path]:
    """Everything in the cache that is not an empty folder."""
    if not cache.exists():
        return []
    return [p for p in cache.rglob("*") if not p.is_dir() or any(p.iterdir())]


def add_bytes(tf: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    tf.addfile(info, io.BytesIO(data))


def tar_with(path: Path, ckpt: Path, extra) -> Path:
    """A .tar.gz of ``ckpt`` at its root plus the members ``extra(tf)`` adds."""
    with tarfile.open(path, "w:gz") as tf:
        for f in sorted(ckpt.iterdir()):
            add_bytes(tf, f.name, f.read_bytes())
        extra(tf)
    return path


class Server:
    """A ThreadingHTTPServer on 127.0.0.1 serving ``root``; /truncated/NAME announces more bytes than it sends."""

    def __init__(self, root: Path):
        class Handler(http.server.SimpleHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                if self.path.startswith("/truncated/"):
                    data = (root / self.path.split("/", 2)[2]).read_bytes()
                    self.send_response(200)
                    self.send_header("Content-Length", str(len(data) + 5000))
                    self.end_headers()
                    self.wfile.write(data[: len(data) // 2])
                    self.wfile.flush()
                    self.close_connection = True
                    return
                super().do_GET()

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Handler, directory=str(root)))
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()

    def stop(self):
        if self.thread.is_alive():
            self.httpd.shutdown()
            self.httpd.server_close()
            self.thread.join(5)


@pytest.fixture
def served(tmp_path):
    root = tmp_path / "www"
    root.mkdir()
    server = Server(root)
    yield root, server
    server.stop()


@pytest.fixture
def ckpt(tmp_path):
    return make_checkpoint(tmp_path / "src" / "disc")


@pytest.fixture
def cache(tmp_path):
    return tmp_path / "cache"


def assert_refused(exc_type, match, cache, fn, *args, **kwargs):
    with pytest.raises(exc_type, match=match) as info:
        fn(*args, **kwargs)
    assert isinstance(info.value, DiscriminatorSourceError)
    assert leftover_files(cache) == [], leftover_files(cache)
    return info.value


def run_script(*args, env=None):
    full_env = {**os.environ, "GAN_COT_CACHE": "/nonexistent-should-not-be-used", **(env or {})}
    return subprocess.run(
        [sys.executable, str(SCRIPT), *args], capture_output=True, text=True, timeout=60, env=full_env
    )


# ------------------------------------------------------------------------------------------------ downloads


def test_download_then_cache_without_network(served, ckpt, cache):
    root, server = served
    sha = pack_checkpoint(ckpt, root / "disc.tar.gz")
    assert sha == sha256_file(root / "disc.tar.gz")
    url = f"{server.url}/disc.tar.gz"

    res = resolve_source(url, sha256=sha, cache_dir=cache)
    assert res.source == "url" and res.sha256 == sha and not res.cached
    path = res.path
    assert path == cache / f"disc-{sha[:16]}"
    assert json.loads((path / "config.json").read_text())["id2label"]["2"] == "wrong"
    assert (path / "model.safetensors").is_file() and (path / ".complete").is_file()
    assert not list(cache.glob(".extract-*")) and not list(cache.rglob("*.part"))

    server.stop()  # from here on, any network access would fail
    assert resolve(url, sha256=sha, cache_dir=cache) == path
    assert resolve_source(url, sha256=sha, cache_dir=cache).cached
    assert download_archive(url, sha, cache, offline=True, name="disc") == path
    # Same archive under another name is found by its sha256, not downloaded again.
    assert download_archive("http://127.0.0.1:9/x.tar.gz", sha, cache, name="other") == path


def test_pack_is_deterministic_and_zip_root_layout_and_file_url(tmp_path, ckpt, cache):
    a = pack_checkpoint(ckpt, tmp_path / "a.tar.gz")
    os.utime(ckpt / "config.json", (1, 1))
    (ckpt / ".complete").write_text("{}")  # hidden files are not packed
    assert pack_checkpoint(ckpt, tmp_path / "b.tgz") == a

    zpath = tmp_path / "disc.zip"
    with zipfile.ZipFile(zpath, "w") as zf:
        for f in sorted(ckpt.iterdir()):
            if not f.name.startswith("."):
                zf.writestr(f.name, f.read_bytes())
    path = resolve(zpath.as_uri(), sha256=sha256_file(zpath), cache_dir=cache)
    assert (path / "config.json").is_file() and path.parent == cache


def test_sha256_mismatch(served, ckpt, cache):
    root, server = served
    sha = pack_checkpoint(ckpt, root / "disc.tar.gz")
    wrong = "0" * 64
    err = assert_refused(DownloadError, "sha256 mismatch", cache, resolve, f"{server.url}/disc.tar.gz", wrong, cache)
    assert wrong in str(err) and sha in str(err)


def _symlink(tf):
    info = tarfile.TarInfo("evil-link")
    info.type = tarfile.SYMTYPE
    info.linkname = "/etc/passwd"
    tf.addfile(info)


def _hardlink(tf):
    info = tarfile.TarInfo("evil-hard")
    info.type = tarfile.LNKTYPE
    info.linkname = "config.json"
    tf.addfile(info)


def _device(tf):
    info = tarfile.TarInfo("evil-dev")
    info.type = tarfile.CHRTYPE
    info.devmajor, info.devminor = 1, 3
    tf.addfile(info)


@pytest.mark.parametrize(
    "extra, match",
    [
        (lambda tf: add_bytes(tf, "../evil.txt", b"x"), r"'\.\.' in its path"),
        (lambda tf: add_bytes(tf, "sub/../../evil.txt", b"x"), r"'\.\.' in its path"),
        (lambda tf: add_bytes(tf, "/tmp/gan-cot-evil.txt", b"x"), "absolute path"),
        (_symlink, "is a symlink"),
        (_hardlink, "is a hardlink"),
        (_device, "is a device file"),
    ],
    ids=["dotdot", "nested-dotdot", "absolute", "symlink", "hardlink", "device"],
)
def test_unsafe_tar_members_refused(served, ckpt, cache, tmp_path, extra, match):
    root, server = served
    archive = tar_with(root / "bad.tar.gz", ckpt, extra)
    assert_refused(DownloadError, match, cache, resolve, f"{server.url}/bad.tar.gz", sha256_file(archive), cache)
    assert not (tmp_path / "evil.txt").exists() and not (cache.parent / "evil.txt").exists()
    assert not Path("/tmp/gan-cot-evil.txt").exists()


@pytest.mark.parametrize("kind", ["dotdot", "absolute", "symlink"])
def test_unsafe_zip_members_refused(served, ckpt, cache, kind):
    root, server = served
    archive = root / "bad.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for f in sorted(ckpt.iterdir()):
            zf.writestr(f.name, f.read_bytes())
        if kind == "dotdot":
            zf.writestr("../evil.txt", b"x")
        elif kind == "absolute":
            zf.writestr("/tmp/gan-cot-evil.txt", b"x")
        else:
            info = zipfile.ZipInfo("evil-link")
            info.external_attr = (stat.S_IFLNK | 0o777) << 16
            zf.writestr(info, "/etc/passwd")
    match = {"dotdot": r"'\.\.' in its path", "absolute": "absolute path", "symlink": "is a symlink"}[kind]
    assert_refused(DownloadError, match, cache, resolve, f"{server.url}/bad.zip", sha256_file(archive), cache)


def test_pickle_weights_refused_unless_allowed(served, tmp_path, cache):
    root, server = served
    bad = make_checkpoint(tmp_path / "p" / "disc", pickle=True, safetensors=False)
    sha = pack_checkpoint(bad, root / "p.tar.gz", check=False)
    url = f"{server.url}/p.tar.gz"
    err = assert_refused(DownloadError, "pickle", cache, resolve, url, sha, cache)
    assert "convert them to safetensors" in str(err) and "pytorch_model.bin" in str(err)
    path = resolve(url, sha, cache, allow_pickle=True)
    assert (path / "pytorch_model.bin").is_file()
    # The cached copy is still refused without allow_pickle.
    with pytest.raises(DownloadError, match="pickle"):
        resolve(url, sha, cache, offline=True)
    with pytest.raises(CheckpointError, match="pickle"):
        validate_checkpoint(bad)


def test_auto_map_config_refused(served, tmp_path, cache):
    root, server = served
    bad = make_checkpoint(tmp_path / "a" / "disc", config_extra={"auto_map": {"AutoModel": "evil.Model"}})
    sha = pack_checkpoint(bad, root / "a.tar.gz", check=False)
    err = assert_refused(
        DownloadError, "refuses to run code shipped", cache, resolve, f"{server.url}/a.tar.gz", sha, cache
    )
    assert "config.json" in str(err) and "auto_map" in str(err)
    remote = make_checkpoint(tmp_path / "b" / "disc", config_extra={"trust_remote_code": True})
    with pytest.raises(CheckpointError, match="refuses to run code shipped"):
        resolve(str(remote))


def test_interrupted_download_leaves_nothing(served, ckpt, cache):
    root, server = served
    sha = pack_checkpoint(ckpt, root / "disc.tar.gz")
    err = assert_refused(
        DownloadError, "interrupted", cache, resolve, f"{server.url}/truncated/disc.tar.gz", sha, cache
    )
    assert "bytes" in str(err)
    assert not (cache / f"disc-{sha[:16]}").exists()


def test_http_404(served, cache):
    _, server = served
    assert_refused(DownloadError, "HTTP 404", cache, resolve, f"{server.url}/missing.tar.gz", "a" * 64, cache)


def test_offline_with_empty_cache(cache):
    # Port 9 on loopback: nothing listens; offline must not even try.
    assert_refused(
        DownloadError,
        "not in the cache.*without --offline",
        cache,
        resolve,
        "http://127.0.0.1:9/d.tar.gz",
        "b" * 64,
        cache,
        True,
    )


def test_url_needs_sha256(cache):
    assert_refused(DownloadError, "--sha256", cache, resolve, "http://127.0.0.1:9/d.tar.gz", None, cache)


def test_hub_id_offline_empty_cache(cache):
    err = assert_refused(DownloadError, "not in the cache", cache, resolve, "some-org/step-prm@v1", None, cache, True)
    assert "some-org/step-prm@v1" in str(err) and "--offline" in str(err)


def test_archive_without_config(served, tmp_path, cache):
    root, server = served
    archive = root / "empty.tar.gz"
    with tarfile.open(archive, "w:gz") as tf:
        add_bytes(tf, "readme.txt", b"hi")
    assert_refused(
        DownloadError, "no config.json", cache, resolve, f"{server.url}/empty.tar.gz", sha256_file(archive), cache
    )


# ------------------------------------------------------------------------------------------------ registry


def write_registry(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_default_registry_has_ledger_tiny():
    entries = load_registry(DEFAULT_REGISTRY)
    assert entries["ledger-tiny"].source == "path"
    assert entries["ledger-tiny"].card["labels"] == LABELS


def test_missing_shipped_folder_says_not_shipped(tmp_path, cache):
    reg = write_registry(tmp_path / "registry.yaml", "ledger-tiny: {path: ledger-tiny, card: {task: ledger}}\n")
    err = assert_refused(RegistryError, "not shipped", cache, resolve, "ledger-tiny", None, cache, registry=reg)
    assert "scripts/train_discriminator.py" in str(err)
    make_checkpoint(tmp_path / "ledger-tiny")
    assert resolve("ledger-tiny", cache_dir=cache, registry=reg) == (tmp_path / "ledger-tiny").resolve()


@pytest.mark.parametrize(
    "text, match",
    [
        ("x:\n  path: x\n  colour: red\n", r"entry 'x': unknown key 'colour'"),
        ("x:\n  url: https://example.org/x.tar.gz\n", r"entry 'x', key 'sha256': missing"),
        ("x:\n  card: {task: ledger}\n", r"entry 'x': no source"),
        ("x:\n  path: x\n  hub: {repo_id: a/b}\n", "exactly one source"),
        ("x:\n  path: ../outside\n", r"key 'path'"),
        ("x:\n  hub: {repo_id: a/b, branch: main}\n", r"key 'hub.branch'"),
        ("x:\n  url: https://example.org/x.tar.gz\n  sha256: abc\n", r"key 'sha256': must be 64 hex"),
        ("- just\n- a list\n", "must be a mapping"),
    ],
    ids=[
        "unknown-key",
        "url-without-sha",
        "no-source",
        "two-sources",
        "escaping-path",
        "hub-key",
        "short-sha",
        "list",
    ],
)
def test_bad_registry(tmp_path, text, match):
    reg = write_registry(tmp_path / "registry.yaml", text)
    with pytest.raises(RegistryError, match=match) as info:
        load_registry(reg)
    assert str(reg) in str(info.value)


def test_unknown_name_lists_registry_names(tmp_path, cache):
    reg = write_registry(tmp_path / "r.yaml", "alpha: {path: alpha}\nbeta: {hub: {repo_id: org/beta, revision: v1}}\n")
    err = assert_refused(
        RegistryError, "unknown discriminator 'gamma'", cache, resolve, "gamma", None, cache, registry=reg
    )
    assert "alpha, beta" in str(err)


def test_registry_url_entry_by_name(served, ckpt, cache, tmp_path):
    root, server = served
    sha = pack_checkpoint(ckpt, root / "disc.tar.gz")
    reg = write_registry(tmp_path / "r.yaml", f"disc-v1:\n  url: {server.url}/disc.tar.gz\n  sha256: {sha}\n")
    res = resolve_source("disc-v1", cache_dir=cache, registry=reg)
    assert res.name == "disc-v1" and res.path == cache / f"disc-v1-{sha[:16]}"
    # The URL alone finds its sha256 in the registry; a contradicting --sha256 is refused.
    assert resolve(f"{server.url}/disc.tar.gz", cache_dir=cache, registry=reg) == res.path
    with pytest.raises(DownloadError, match="does not match the registry"):
        resolve("disc-v1", sha256="c" * 64, cache_dir=cache, registry=reg)


def test_local_path_passes_through(ckpt, tmp_path, cache):
    assert resolve(str(ckpt), cache_dir=cache) == ckpt.resolve()
    assert not cache.exists()
    (ckpt / "model.safetensors").unlink()
    with pytest.raises(CheckpointError, match="no .safetensors"):
        resolve(str(ckpt), cache_dir=cache)
    with pytest.raises(RegistryError, match="not an existing folder"):
        resolve(str(tmp_path / "nowhere"), cache_dir=cache)


# ------------------------------------------------------------------------------------------------ script


def test_script_downloads_and_reports(served, ckpt, cache):
    root, server = served
    sha = pack_checkpoint(ckpt, root / "disc.tar.gz")
    url = f"{server.url}/disc.tar.gz"
    r = run_script(url, "--sha256", sha, "--cache-dir", str(cache), "--json")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout.strip().splitlines()[-1])
    assert out["source"] == "url" and out["sha256"] == sha and out["cached"] is False
    assert (Path(out["path"]) / "config.json").is_file()
    server.stop()
    r = run_script(url, "--sha256", sha, "--cache-dir", str(cache), "--offline")
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip().splitlines()[-1] == out["path"]


def test_script_errors_and_list(served, ckpt, cache):
    root, server = served
    pack_checkpoint(ckpt, root / "disc.tar.gz")
    r = run_script(f"{server.url}/disc.tar.gz", "--sha256", "1" * 64, "--cache-dir", str(cache))
    assert r.returncode == 2
    assert r.stderr.startswith("error: sha256 mismatch") and len(r.stderr.strip().splitlines()) == 1
    assert "Traceback" not in r.stderr and leftover_files(cache) == []
    r = run_script("no-such-name", "--cache-dir", str(cache))
    assert r.returncode == 2 and "ledger-tiny" in r.stderr and "Traceback" not in r.stderr
    r = run_script("--bogus-flag")
    assert r.returncode == 2 and r.stderr.startswith("error:")
    r = run_script("--list")
    assert r.returncode == 0 and r.stdout.startswith("ledger-tiny:") and "labels=[useful,redundant,wrong]" in r.stdout


def fake_hub_snapshot(cache: Path, repo_id: str, revision: str = "main", **kwargs) -> Path:
    """The layout snapshot_download leaves in its cache, so a Hub id resolves offline without any network."""
    commit = "0123456789abcdef0123456789abcdef01234567"
    repo = cache / "hub" / ("models--" + repo_id.replace("/", "--"))
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / revision).write_text(commit)
    return make_checkpoint(repo / "snapshots" / commit, **kwargs)


def test_hub_id_from_cache_offline(tmp_path):
    cache = tmp_path / "cache"
    snap = fake_hub_snapshot(cache, "some-org/step-prm")
    res = resolve_source("some-org/step-prm", cache_dir=cache, offline=True)
    assert res.source == "hub" and res.path == snap
    bad_cache = tmp_path / "cache2"
    fake_hub_snapshot(bad_cache, "some-org/step-prm", revision="v1", config_extra={"auto_map": {"AutoModel": "m.M"}})
    with pytest.raises(CheckpointError, match="Hub checkpoint some-org/step-prm@v1: .*refuses to run code"):
        resolve("some-org/step-prm@v1", cache_dir=bad_cache, offline=True)
    with pytest.raises(DiscriminatorSourceError, match="--sha256 applies only to archive URLs"):
        resolve("some-org/step-prm", sha256="d" * 64, cache_dir=cache, offline=True)

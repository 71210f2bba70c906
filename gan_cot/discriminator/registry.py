"""Find, fetch and check discriminator checkpoints: registry names, archive URLs, Hub ids and local folders.

A discriminator checkpoint is a folder: ``config.json`` (a token-classification config with ``id2label``),
``model.safetensors``, tokenizer files and ``discriminator_card.json``. :func:`resolve` turns any spec into
such a folder on disk and checks it with :func:`validate_checkpoint` before anything loads it:

* a local folder: checked and returned;
* a name in ``discriminators/registry.yaml`` (see the comment at the top of that file for its format);
* an ``http(s)://`` or ``file://`` URL of a ``.tar.gz``/``.tgz``/``.tar``/``.zip`` archive, pinned by its
  sha256: streamed into the cache, verified, extracted without trusting member paths, then moved into
  place in one rename, so the cache never holds a half-written checkpoint;
* a Hub id ``org/name`` or ``org/name@revision``: fetched with ``huggingface_hub.snapshot_download``,
  safetensors/JSON/tokenizer files only.

Pickle weight files (``.bin .pt .pth .pkl .ckpt``) run code when loaded and are refused unless
``allow_pickle``; a config that asks for the checkpoint's own code (``auto_map``, ``trust_remote_code``)
is always refused. Maintainers publish a checkpoint with :func:`pack_checkpoint` (a deterministic
``.tar.gz`` and its sha256) and add a ``url:`` + ``sha256:`` entry to the registry.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import re
import shutil
import stat
import tarfile
import tempfile
import urllib.error
import urllib.parse
import urllib.request
import zipfile
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath, PureWindowsPath

from gan_cot.cli import REPO_ROOT, safetensors_problem

DEFAULT_REGISTRY = REPO_ROOT / "discriminators" / "registry.yaml"
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".pkl", ".ckpt")
ARCHIVE_SUFFIXES = (".tar.gz", ".tgz", ".tar", ".zip")
# What snapshot_download may fetch from the Hub: weights as safetensors, configs, tokenizer files.
HUB_ALLOW_PATTERNS = ["*.safetensors", "*.json", "*.txt", "*.model", "*.tiktoken"]
HUB_PICKLE_PATTERNS = [f"*{s}" for s in PICKLE_SUFFIXES]
COMPLETE_MARKER = ".complete"
DOWNLOAD_TIMEOUT_S = 60.0
CHUNK = 1 << 20

ENTRY_KEYS = ("path", "hub", "url", "sha256", "card")
SOURCE_KEYS = ("path", "hub", "url")
HUB_KEYS = ("repo_id", "revision")
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
_SHA_RE = re.compile(r"^[0-9a-f]{64}$")
_HUB_RE = re.compile(
    r"^(?P<repo>[A-Za-z0-9][A-Za-z0-9._-]*/[A-Za-z0-9][A-Za-z0-9._-]*)(?:@(?P<rev>[A-Za-z0-9._/-]+))?$"
)


class DiscriminatorSourceError(Exception):
    """A discriminator checkpoint could not be found, fetched or trusted; the message says why and what to do."""


class RegistryError(DiscriminatorSourceError):
    """A bad registry file or entry, or a name that is not in the registry."""


class DownloadError(DiscriminatorSourceError):
    """A fetch failed (network, checksum, unsafe archive, refused content); nothing was left in the cache."""


class CheckpointError(DiscriminatorSourceError, ValueError):
    """A checkpoint folder is incomplete or unsafe to load."""


@dataclass(frozen=True)
class RegistryEntry:
    """One registry entry; exactly one of ``path``, ``repo_id`` (hub) or ``url`` is set."""

    name: str
    source: str  # "path" | "hub" | "url"
    path: Path | None = None  # absolute: resolved against the registry file's folder
    repo_id: str | None = None
    revision: str | None = None
    url: str | None = None
    sha256: str | None = None
    card: dict = field(default_factory=dict)
    registry_file: Path | None = None

    def describe(self) -> str:
        """One line: the source and the card summary."""
        if self.source == "path":
            where = f"path {self.path}" + ("" if self.path and self.path.is_dir() else " (not shipped)")
        elif self.source == "hub":
            where = f"hub {self.repo_id}" + (f"@{self.revision}" if self.revision else "")
        else:
            where = f"url {self.url}"
        parts = [f"{k}={_summary_value(v)}" for k, v in self.card.items()]
        return f"{self.name}: {where}" + (f"; {', '.join(parts)}" if parts else "")


@dataclass(frozen=True)
class ResolvedCheckpoint:
    """Where a spec resolved to: ``path`` (the folder with config.json) and how it was found."""

    path: Path
    source: str  # "path" | "hub" | "url"
    spec: str
    name: str | None = None  # registry name, when the spec was one
    sha256: str | None = None  # archive sha256, for url sources
    revision: str | None = None  # requested Hub revision, for hub sources
    cached: bool = False  # True when an archive or Hub snapshot came from the cache without a download

    def to_json(self) -> dict:
        return {
            "path": str(self.path),
            "source": self.source,
            "spec": self.spec,
            "name": self.name,
            "sha256": self.sha256,
            "revision": self.revision,
            "cached": self.cached,
        }


def _summary_value(v) -> str:
    if isinstance(v, (list, tuple)):
        return "[" + ",".join(str(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{" + ",".join(f"{k}:{x}" for k, x in v.items()) + "}"
    return str(v)


def default_cache_dir() -> Path:
    """``$GAN_COT_CACHE/discriminators`` when set, else ``~/.cache/gan-cot/discriminators``."""
    root = os.environ.get("GAN_COT_CACHE")
    if root:
        return Path(root).expanduser() / "discriminators"
    return Path.home() / ".cache" / "gan-cot" / "discriminators"


# --------------------------------------------------------------------------------------------------- registry


def load_registry(path: str | os.PathLike = DEFAULT_REGISTRY) -> dict[str, RegistryEntry]:
    """Read and validate a registry file; every problem is a :class:`RegistryError` naming file, entry and key."""
    path = Path(path)
    try:
        import yaml

        with open(path, encoding="utf-8") as f:
            data = yaml.safe_load(f)
    except FileNotFoundError as e:
        raise RegistryError(f"registry file {path} does not exist") from e
    except OSError as e:
        raise RegistryError(f"registry file {path} cannot be read ({e.strerror})") from e
    except yaml.YAMLError as e:
        raise RegistryError(f"registry file {path} is not valid YAML: {_one_line(e)}") from e
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise RegistryError(f"registry file {path} must be a mapping of name -> entry, got {type(data).__name__}")
    entries = {}
    for name, raw in data.items():
        entries[str(name)] = _parse_entry(path, name, raw)
    return entries


def _parse_entry(file: Path, name, raw) -> RegistryEntry:
    where = f"registry file {file}, entry {name!r}"
    if not isinstance(name, str) or not _NAME_RE.match(name):
        raise RegistryError(f"{where}: a name is letters, digits, '.', '_' and '-' (no '/', so it is not a Hub id)")
    if not isinstance(raw, dict):
        raise RegistryError(f"{where}: an entry must be a mapping with one of {', '.join(SOURCE_KEYS)}")
    for key in raw:
        if key not in ENTRY_KEYS:
            raise RegistryError(f"{where}: unknown key {key!r}; allowed keys: {', '.join(ENTRY_KEYS)}")
    sources = [k for k in SOURCE_KEYS if k in raw]
    if not sources:
        raise RegistryError(f"{where}: no source; give exactly one of the keys {', '.join(SOURCE_KEYS)}")
    if len(sources) > 1:
        raise RegistryError(f"{where}: keys {' and '.join(sources)} both given; give exactly one source")
    source = sources[0]
    card = raw.get("card", {})
    if card is None:
        card = {}
    if not isinstance(card, dict):
        raise RegistryError(f"{where}, key 'card': must be a mapping (task, labels, base_model, metrics)")
    labels = card.get("labels")
    if labels is not None and (not isinstance(labels, list) or not all(isinstance(x, str) for x in labels)):
        raise RegistryError(f"{where}, key 'card': labels must be a list of strings, got {labels!r}")
    if "sha256" in raw and source != "url":
        raise RegistryError(f"{where}, key 'sha256': only url entries take a sha256 (pin a Hub entry with revision)")

    if source == "path":
        value = raw["path"]
        rel = PurePosixPath(str(value)) if isinstance(value, str) else None
        if rel is None or not value or rel.is_absolute() or ".." in rel.parts or PureWindowsPath(value).drive:
            raise RegistryError(
                f"{where}, key 'path': must be a folder relative to {file.parent} without '..', got {value!r}"
            )
        return RegistryEntry(name, "path", path=file.parent / rel, card=card, registry_file=file)

    if source == "hub":
        hub = raw["hub"]
        if isinstance(hub, str):
            m = _HUB_RE.match(hub)
            if not m:
                raise RegistryError(f"{where}, key 'hub': expected org/name or org/name@revision, got {hub!r}")
            hub = {"repo_id": m.group("repo"), "revision": m.group("rev")}
        if not isinstance(hub, dict):
            raise RegistryError(f"{where}, key 'hub': must be a mapping with repo_id (and revision)")
        for key in hub:
            if key not in HUB_KEYS:
                raise RegistryError(f"{where}, key 'hub.{key}': unknown key; allowed keys: {', '.join(HUB_KEYS)}")
        repo_id, revision = hub.get("repo_id"), hub.get("revision")
        if not isinstance(repo_id, str) or not _HUB_RE.match(repo_id) or "@" in repo_id:
            raise RegistryError(f"{where}, key 'hub.repo_id': expected org/name, got {repo_id!r}")
        if revision is not None and (not isinstance(revision, str) or not revision):
            raise RegistryError(f"{where}, key 'hub.revision': must be a branch, tag or commit string")
        return RegistryEntry(name, "hub", repo_id=repo_id, revision=revision, card=card, registry_file=file)

    url = raw["url"]
    if not isinstance(url, str) or urllib.parse.urlparse(url).scheme not in ("http", "https", "file"):
        raise RegistryError(f"{where}, key 'url': must be an http://, https:// or file:// URL, got {url!r}")
    if "sha256" not in raw:
        raise RegistryError(f"{where}, key 'sha256': missing; a url entry must pin the archive's sha256")
    sha = raw["sha256"]
    if not isinstance(sha, str) or not _SHA_RE.match(sha.lower()):
        raise RegistryError(f"{where}, key 'sha256': must be 64 hex digits, got {sha!r}")
    return RegistryEntry(name, "url", url=url, sha256=sha.lower(), card=card, registry_file=file)


def _get_registry(registry) -> tuple[dict[str, RegistryEntry], str]:
    """``registry`` is None (the default file), a path, or an already loaded mapping."""
    if registry is None:
        return (load_registry(DEFAULT_REGISTRY) if DEFAULT_REGISTRY.exists() else {}), str(DEFAULT_REGISTRY)
    if isinstance(registry, dict):
        return registry, "the given registry"
    return load_registry(registry), str(registry)


# --------------------------------------------------------------------------------------------------- resolve


def resolve(
    spec: str,
    sha256: str | None = None,
    cache_dir: str | os.PathLike | None = None,
    offline: bool = False,
    allow_pickle: bool = False,
    registry=None,
) -> Path:
    """The local folder of a discriminator checkpoint (the one holding config.json), fetched if needed.

    ``spec`` is a local folder, a registry name, an archive URL (``sha256`` from the argument or the
    registry) or a Hub id ``org/name[@revision]``. ``registry`` is None (``discriminators/registry.yaml``),
    a registry file path or a mapping from :func:`load_registry`.
    """
    return resolve_source(spec, sha256, cache_dir, offline, allow_pickle, registry).path


def resolve_source(
    spec: str,
    sha256: str | None = None,
    cache_dir: str | os.PathLike | None = None,
    offline: bool = False,
    allow_pickle: bool = False,
    registry=None,
) -> ResolvedCheckpoint:
    """:func:`resolve` with the details: source kind, registry name, sha256, whether it came from the cache."""
    spec = str(spec).strip()
    if not spec:
        raise DiscriminatorSourceError("empty discriminator spec; pass a registry name, folder, URL or Hub id")
    cache = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    sha256 = _check_sha(sha256) if sha256 is not None else None

    if _is_url(spec):
        try:
            entries, _ = _get_registry(registry)
        except RegistryError:
            if sha256 is None:
                raise
            entries = {}  # an explicit --sha256 does not need the registry
        matches = [e for e in entries.values() if e.source == "url" and e.url == spec]
        entry = matches[0] if matches else None
        if sha256 is None and entry is None:
            raise DownloadError(
                f"archive URL {spec} needs its sha256 (--sha256 HEX) so the download can be verified; "
                "maintainers get it from pack_checkpoint or sha256sum"
            )
        if sha256 is not None and entry is not None and sha256 != entry.sha256:
            raise DownloadError(
                f"--sha256 {sha256} does not match the registry's sha256 {entry.sha256} for {entry.name} ({spec})"
            )
        sha = sha256 or entry.sha256
        name = entry.name if entry else _name_from_url(spec)
        return _resolve_url(spec, sha, cache, offline, allow_pickle, name, spec, entry.name if entry else None)

    local = Path(spec).expanduser()
    if local.exists():
        _no_sha(sha256, spec)
        if not local.is_dir():
            raise CheckpointError(
                f"{local} is a file, not a checkpoint folder; pass the folder, or a file:// URL with --sha256 "
                "for an archive"
            )
        return ResolvedCheckpoint(validate_checkpoint(local, allow_pickle).resolve(), "path", spec)

    entries = None
    if _NAME_RE.match(spec):
        entries, registry_name = _get_registry(registry)
        if spec in entries:
            return _resolve_entry(entries[spec], spec, sha256, cache, offline, allow_pickle)

    m = _HUB_RE.match(spec)
    if m and not spec.startswith((".", "~")):
        _no_sha(sha256, spec)
        return _resolve_hub(m.group("repo"), m.group("rev"), cache, offline, allow_pickle, spec, None)

    if entries is None:
        entries, registry_name = _get_registry(registry)
    names = ", ".join(sorted(entries)) or "(none)"
    if any(c in spec for c in "/\\") or spec.startswith((".", "~")):
        raise RegistryError(
            f"{spec} is not an existing folder, a registry name, an archive URL or a Hub id (org/name); "
            f"registry names in {registry_name}: {names}"
        )
    raise RegistryError(f"unknown discriminator {spec!r}; registry names in {registry_name}: {names}")


def _resolve_entry(entry: RegistryEntry, spec, sha256, cache, offline, allow_pickle) -> ResolvedCheckpoint:
    if entry.source == "path":
        _no_sha(sha256, spec)
        folder = entry.path
        if not folder.is_dir():
            raise RegistryError(
                f"discriminator {entry.name!r} (registry {entry.registry_file}) is not shipped in this copy: "
                f"{folder} does not exist; train it with python scripts/train_discriminator.py "
                f"(writing to {folder}) or pick another registry entry"
            )
        return ResolvedCheckpoint(validate_checkpoint(folder, allow_pickle).resolve(), "path", spec, entry.name)
    if entry.source == "hub":
        _no_sha(sha256, spec)
        return _resolve_hub(entry.repo_id, entry.revision, cache, offline, allow_pickle, spec, entry.name)
    if sha256 is not None and sha256 != entry.sha256:
        raise DownloadError(
            f"--sha256 {sha256} does not match the registry's sha256 {entry.sha256} for {entry.name} ({entry.url})"
        )
    return _resolve_url(entry.url, entry.sha256, cache, offline, allow_pickle, entry.name, spec, entry.name)


def _resolve_url(url, sha, cache, offline, allow_pickle, name, spec, entry_name) -> ResolvedCheckpoint:
    cached = _cached_folder(cache, sha, name) is not None
    path = download_archive(url, sha, cache, offline=offline, allow_pickle=allow_pickle, name=name)
    return ResolvedCheckpoint(path, "url", spec, entry_name, sha256=sha, cached=cached)


def _resolve_hub(repo_id, revision, cache: Path, offline, allow_pickle, spec, entry_name) -> ResolvedCheckpoint:
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import (
        GatedRepoError,
        LocalEntryNotFoundError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    label = repo_id + (f"@{revision}" if revision else "")
    patterns = HUB_ALLOW_PATTERNS + (HUB_PICKLE_PATTERNS if allow_pickle else [])
    hub_cache = cache / "hub"
    try:
        folder = snapshot_download(
            repo_id,
            revision=revision,
            cache_dir=str(hub_cache),
            local_files_only=offline,
            allow_patterns=patterns,
        )
    except LocalEntryNotFoundError as e:
        if offline:
            raise DownloadError(
                f"Hub checkpoint {label} is not in the cache {hub_cache}; run without --offline to download it"
            ) from e
        raise DownloadError(f"cannot fetch Hub checkpoint {label} (no connection to the Hub?): {_one_line(e)}") from e
    except GatedRepoError as e:
        raise DownloadError(f"Hub checkpoint {label} is gated; accept its terms and log in (hf auth login)") from e
    except RepositoryNotFoundError as e:
        hint = f"; if you meant a local folder, {spec} does not exist" if entry_name is None else ""
        raise DownloadError(f"Hub repository {repo_id} not found (or private){hint}") from e
    except RevisionNotFoundError as e:
        raise DownloadError(f"Hub repository {repo_id} has no revision {revision!r}") from e
    except (OSError, ValueError) as e:
        raise DownloadError(f"cannot fetch Hub checkpoint {label}: {_one_line(e)}") from e
    folder = Path(folder)
    try:
        validate_checkpoint(folder, allow_pickle)
    except CheckpointError as e:
        raise CheckpointError(f"Hub checkpoint {label}: {e}") from e
    return ResolvedCheckpoint(folder, "hub", spec, entry_name, revision=revision, cached=offline)


def _one_line(e: BaseException) -> str:
    """An exception's message on one line (library messages often span several)."""
    return " ".join(str(e).split()) or type(e).__name__


def _is_url(spec: str) -> bool:
    return spec.lower().startswith(("http://", "https://", "file://"))


def _no_sha(sha256, spec) -> None:
    if sha256 is not None:
        raise DiscriminatorSourceError(
            f"--sha256 applies only to archive URLs, not to {spec}; pin a Hub checkpoint with org/name@revision"
        )


def _check_sha(sha256) -> str:
    sha = str(sha256).strip().lower()
    if not _SHA_RE.match(sha):
        raise DownloadError(f"sha256 must be 64 hex digits, got {sha256!r}")
    return sha


def _safe_name(name: str | None) -> str:
    cleaned = re.sub(r"[^A-Za-z0-9._-]+", "-", name or "").strip(".-")
    return cleaned[:64] or "ckpt"


def _name_from_url(url: str) -> str:
    base = PurePosixPath(urllib.parse.unquote(urllib.parse.urlparse(url).path)).name
    for suffix in ARCHIVE_SUFFIXES:
        if base.lower().endswith(suffix):
            base = base[: -len(suffix)]
            break
    return _safe_name(base)


# --------------------------------------------------------------------------------------------------- download


def _final_folder(cache_dir: Path, sha: str, name: str | None) -> Path:
    return cache_dir / f"{_safe_name(name)}-{sha[:16]}"


def _is_complete(folder: Path, sha: str) -> bool:
    try:
        return json.loads((folder / COMPLETE_MARKER).read_text(encoding="utf-8")).get("sha256") == sha
    except (OSError, ValueError, AttributeError):
        return False


def _cached_folder(cache_dir: Path, sha: str, name: str | None) -> Path | None:
    """The complete cached copy of archive ``sha``: ``<name>-<sha[:16]>``, else one cached under another name."""
    final = _final_folder(cache_dir, sha, name)
    if _is_complete(final, sha):
        return final
    try:
        others = sorted(cache_dir.glob(f"*-{sha[:16]}"))
    except OSError:
        return None
    return next((p for p in others if p != final and _is_complete(p, sha)), None)


def download_archive(
    url: str,
    sha256: str,
    cache_dir: str | os.PathLike,
    offline: bool = False,
    allow_pickle: bool = False,
    name: str | None = None,
) -> Path:
    """Fetch, verify and extract a checkpoint archive into ``cache_dir/<name>-<sha256[:16]>``; return that folder.

    A complete cached copy is returned without touching the network. Otherwise the archive streams into
    ``cache_dir/.partial``, its length and sha256 are checked, it is extracted into a temporary folder with
    every member checked, the checkpoint is validated and then renamed into place, and a ``.complete``
    marker is written last. Any failure removes the partial file and the temporary folder and raises
    :class:`DownloadError`.
    """
    sha = _check_sha(sha256)
    cache = Path(cache_dir).expanduser()
    final = _final_folder(cache, sha, name)
    cached = _cached_folder(cache, sha, name)
    if cached is not None:
        try:
            return validate_checkpoint(cached, allow_pickle)
        except CheckpointError as e:
            raise DownloadError(f"cached checkpoint {cached} from {url} refused: {e}") from e
    if offline:
        raise DownloadError(
            f"checkpoint {url} (sha256 {sha[:16]}...) is not in the cache {cache}; run without --offline to download it"
        )

    part = tmp = None
    try:
        partial_dir = cache / ".partial"
        try:
            partial_dir.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise DownloadError(
                f"cache folder {cache} cannot be written ({e.strerror}); choose another with --cache-dir"
            ) from e
        fd, part_name = tempfile.mkstemp(dir=partial_dir, suffix=".part")
        part = Path(part_name)
        with os.fdopen(fd, "wb") as out:
            got = _stream(url, out, name or _name_from_url(url))
        if got != sha:
            raise DownloadError(
                f"sha256 mismatch for {url}: expected {sha}, got {got}; the file changed or was tampered with, "
                "nothing was kept"
            )
        tmp = Path(tempfile.mkdtemp(dir=cache, prefix=".extract-"))
        root = _extract_archive(part, tmp, url)
        try:
            validate_checkpoint(root, allow_pickle)
        except CheckpointError as e:
            reason = str(e).replace(str(root), "the archive")  # the temporary folder means nothing to the user
            raise DownloadError(f"checkpoint from {url} refused: {reason}") from e
        if final.exists() or final.is_symlink():
            if _is_complete(final, sha):  # another process finished first
                return validate_checkpoint(final, allow_pickle)
            _remove(final)  # an incomplete copy left by a crash before its marker was written
        os.replace(root, final)
        try:
            marker_tmp = final / (COMPLETE_MARKER + ".tmp")
            marker_tmp.write_text(json.dumps({"sha256": sha, "url": url}) + "\n", encoding="utf-8")
            os.replace(marker_tmp, final / COMPLETE_MARKER)
        except OSError:
            _remove(final)
            raise
        return final
    except DownloadError:
        raise
    except OSError as e:
        raise DownloadError(f"download of {url} failed: {e.strerror or e}") from e
    except Exception as e:  # one clear message, whatever went wrong
        raise DownloadError(f"download of {url} failed: {type(e).__name__}: {_one_line(e)}") from e
    finally:
        if part is not None:
            _remove(part)
            try:
                part.parent.rmdir()
            except OSError:
                pass
        if tmp is not None:
            _remove(tmp)


def _remove(p: Path) -> None:
    try:
        if p.is_dir() and not p.is_symlink():
            shutil.rmtree(p, ignore_errors=True)
        else:
            p.unlink(missing_ok=True)
    except OSError:
        pass


def _stream(url: str, out, desc: str, timeout: float = DOWNLOAD_TIMEOUT_S) -> str:
    """Copy ``url`` into ``out`` in chunks; return the sha256. A short read (or any network error) raises."""
    import http.client

    from tqdm import tqdm

    request = urllib.request.Request(url, headers={"User-Agent": "gan-cot"})
    digest = hashlib.sha256()
    count = 0
    try:
        with urllib.request.urlopen(request, timeout=timeout) as resp:
            length = resp.headers.get("Content-Length")
            total = int(length) if length and length.isdigit() else None
            with tqdm(total=total, unit="B", unit_scale=True, desc=desc, disable=None if total else True) as bar:
                while True:
                    chunk = resp.read(CHUNK)
                    if not chunk:
                        break
                    out.write(chunk)
                    digest.update(chunk)
                    count += len(chunk)
                    bar.update(len(chunk))
    except urllib.error.HTTPError as e:
        raise DownloadError(f"download of {url} failed: HTTP {e.code} {e.reason}") from e
    except urllib.error.URLError as e:
        reason = getattr(e.reason, "strerror", None) or e.reason
        raise DownloadError(f"cannot download {url}: {reason}") from e
    except TimeoutError as e:
        raise DownloadError(f"download of {url} timed out after {timeout:.0f} s without data") from e
    except (http.client.HTTPException, OSError) as e:
        raise DownloadError(
            f"download of {url} was interrupted after {count} bytes ({type(e).__name__}: {_one_line(e)}); run again"
        ) from e
    if total is not None and count != total:
        raise DownloadError(f"download of {url} was interrupted: got {count} of {total} bytes; run again")
    if count == 0:
        raise DownloadError(f"download of {url} returned no data")
    return digest.hexdigest()


# --------------------------------------------------------------------------------------------------- extraction


def _check_member_name(name: str, dest: Path, archive: str) -> Path:
    """The member's target inside ``dest``; refuses absolute paths, '..', and anything resolving outside."""
    bad = None
    if not name or "\x00" in name:
        bad = "an empty or NUL-containing name"
    elif name.startswith(("/", "\\")) or PureWindowsPath(name).drive or PurePosixPath(name).is_absolute():
        bad = "an absolute path"
    elif "\\" in name:
        bad = "a backslash in its path"
    elif ".." in PurePosixPath(name).parts:
        bad = "'..' in its path"
    if bad is None:
        target = (dest / name).resolve()
        root = dest.resolve()
        if target != root and root not in target.parents:
            bad = "a path outside the extraction folder"
    if bad is not None:
        raise DownloadError(f"unsafe archive {archive}: member {name!r} has {bad}; nothing was extracted")
    return target


def _extract_archive(archive: Path, dest: Path, url: str) -> Path:
    """Extract safely into ``dest``; return the folder holding config.json (``dest`` or its single top folder)."""
    if zipfile.is_zipfile(archive):
        _extract_zip(archive, dest, url)
    elif tarfile.is_tarfile(archive):
        _extract_tar(archive, dest, url)
    else:
        raise DownloadError(f"{url} is not a .tar.gz, .tgz, .tar or .zip archive")
    return _checkpoint_root(dest, url)


def _extract_tar(archive: Path, dest: Path, url: str) -> None:
    with tarfile.open(archive, "r:*") as tf:
        members = tf.getmembers()
        # Check every member before writing anything.
        seen = set()
        for m in members:
            _check_member_name(m.name, dest, url)
            if not (m.isfile() or m.isdir()):
                kind = (
                    "a symlink"
                    if m.issym()
                    else "a hardlink"
                    if m.islnk()
                    else "a device file"
                    if m.ischr() or m.isblk()
                    else "a fifo"
                    if m.isfifo()
                    else f"type {m.type!r}"
                )
                raise DownloadError(f"unsafe archive {url}: member {m.name!r} is {kind}; nothing was extracted")
            key = PurePosixPath(m.name).as_posix().rstrip("/")
            if m.isfile() and key in seen:
                raise DownloadError(f"unsafe archive {url}: member {m.name!r} appears twice")
            seen.add(key)
        for m in members:
            target = _check_member_name(m.name, dest, url)
            if m.isdir():
                target.mkdir(parents=True, exist_ok=True)
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            src = tf.extractfile(m)
            if src is None:
                raise DownloadError(f"archive {url}: member {m.name!r} cannot be read")
            with src, open(target, "xb") as out:
                shutil.copyfileobj(src, out, CHUNK)
            os.chmod(target, 0o644)


def _extract_zip(archive: Path, dest: Path, url: str) -> None:
    with zipfile.ZipFile(archive) as zf:
        infos = zf.infolist()
        seen = set()
        for info in infos:
            _check_member_name(info.filename, dest, url)
            mode = info.external_attr >> 16
            ftype = stat.S_IFMT(mode)
            if ftype and not (stat.S_ISREG(mode) or stat.S_ISDIR(mode)):
                kind = "a symlink" if stat.S_ISLNK(mode) else "a special file"
                raise DownloadError(f"unsafe archive {url}: member {info.filename!r} is {kind}; nothing was extracted")
            key = info.filename.rstrip("/")
            if not info.is_dir() and key in seen:
                raise DownloadError(f"unsafe archive {url}: member {info.filename!r} appears twice")
            seen.add(key)
        for info in infos:
            target = _check_member_name(info.filename, dest, url)
            if info.is_dir():
                target.mkdir(parents=True, exist_ok=True)
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            with zf.open(info) as src, open(target, "xb") as out:
                shutil.copyfileobj(src, out, CHUNK)
            os.chmod(target, 0o644)


def _checkpoint_root(dest: Path, url: str) -> Path:
    if (dest / "config.json").is_file():
        return dest
    entries = [p for p in dest.iterdir() if p.name not in ("__MACOSX", ".DS_Store")]
    if len(entries) == 1 and entries[0].is_dir() and (entries[0] / "config.json").is_file():
        return entries[0]
    raise DownloadError(
        f"archive {url} has no config.json at its root or inside a single top folder; is it a checkpoint?"
    )


# --------------------------------------------------------------------------------------------------- validation


def _find_remote_code(obj, trail: str = "") -> str | None:
    if isinstance(obj, dict):
        for k, v in obj.items():
            if k == "auto_map" or (k == "trust_remote_code" and v):
                return f"{trail}{k}"
            found = _find_remote_code(v, f"{trail}{k}.")
            if found:
                return found
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            found = _find_remote_code(v, f"{trail}{i}.")
            if found:
                return found
    return None


def validate_checkpoint(folder: str | os.PathLike, allow_pickle: bool = False) -> Path:
    """Check that ``folder`` is a checkpoint that can be loaded without running its own code; return it.

    Refuses pickle weight files unless ``allow_pickle``, any ``*config.json`` that asks for remote code
    (``auto_map``, ``trust_remote_code``), a missing or malformed config.json, a folder without
    ``.safetensors`` weights (pickle weights count only with ``allow_pickle``), and a truncated
    ``.safetensors`` file (its header and size are checked, not its tensors).
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise CheckpointError(f"checkpoint folder {folder} does not exist or is not a folder")
    files = sorted(p for p in folder.rglob("*") if p.is_file() and not p.name.startswith("."))
    pickles = [p for p in files if p.name.lower().endswith(PICKLE_SUFFIXES)]
    if pickles and not allow_pickle:
        shown = ", ".join(str(p.relative_to(folder)) for p in pickles[:3]) + (" ..." if len(pickles) > 3 else "")
        raise CheckpointError(
            f"{folder} holds pickle file(s) {shown}: loading pickle can run arbitrary code; "
            "pass --allow-pickle only if the source is trusted"
        )
    config = folder / "config.json"
    if not config.is_file():
        raise CheckpointError(f"{config} is missing; a checkpoint folder needs a Hugging Face config.json")
    for cfg in sorted(p for p in folder.glob("*config.json") if p.is_file()):
        try:
            data = json.loads(cfg.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, ValueError) as e:
            raise CheckpointError(f"{cfg} is not valid JSON: {e}") from e
        if cfg == config and not isinstance(data, dict):
            raise CheckpointError(f"{cfg} must hold a JSON object")
        key = _find_remote_code(data)
        if key:
            raise CheckpointError(
                f"{cfg} asks for code shipped with the checkpoint ({key}); gan-cot refuses to run code shipped "
                "with a checkpoint"
            )
    card = folder / "discriminator_card.json"
    if card.is_file():
        try:
            json.loads(card.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, ValueError) as e:
            raise CheckpointError(f"{card} is not valid JSON: {e}") from e
    weights = [p for p in files if p.name.endswith(".safetensors")]
    if not weights and not (allow_pickle and pickles):
        hint = "" if allow_pickle else " (pickle weights are refused unless --allow-pickle)"
        raise CheckpointError(f"{folder} has no .safetensors weight file{hint}")
    for w in weights:
        problem = safetensors_problem(w)
        if problem:
            raise CheckpointError(f"{problem}; fetch or save the checkpoint again")
    return folder


# --------------------------------------------------------------------------------------------------- publishing


def sha256_file(path: str | os.PathLike) -> str:
    """Hex sha256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def pack_checkpoint(folder: str | os.PathLike, archive_path: str | os.PathLike, check: bool = True) -> str:
    """Write ``folder`` as a deterministic ``.tar.gz`` (or ``.tgz``/``.tar``) under a single top folder.

    Entries are sorted, mtimes/owners are zeroed and hidden files (``.complete``, ``.git``) are skipped, so
    the same files always give the same bytes. Written under a temporary name and renamed; returns the
    archive's sha256 for a registry ``url:`` entry. ``check`` runs :func:`validate_checkpoint` first.
    """
    folder = Path(folder)
    archive_path = Path(archive_path)
    if check:
        validate_checkpoint(folder)
    elif not folder.is_dir():
        raise CheckpointError(f"checkpoint folder {folder} does not exist or is not a folder")
    lower = archive_path.name.lower()
    if lower.endswith((".tar.gz", ".tgz")):
        compress = True
    elif lower.endswith(".tar"):
        compress = False
    else:
        raise CheckpointError(f"archive name {archive_path.name} must end with .tar.gz, .tgz or .tar")
    top = _safe_name(folder.resolve().name)

    entries: list[tuple[str, Path | None]] = []
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        base = Path(dirpath)
        for d in dirnames:
            if (base / d).is_symlink():
                raise CheckpointError(f"{base / d} is a symlinked folder; copy it into the checkpoint before packing")
            entries.append(((base / d).relative_to(folder).as_posix(), None))
        for fn in filenames:
            if not fn.startswith("."):
                entries.append(((base / fn).relative_to(folder).as_posix(), base / fn))
    entries.sort(key=lambda e: e[0])

    archive_path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=archive_path.parent, prefix=f".{archive_path.name}.", suffix=".tmp")
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as raw:
            gz = gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0) if compress else None
            with tarfile.open(fileobj=gz or raw, mode="w", format=tarfile.PAX_FORMAT) as tf:
                tf.addfile(_tar_info(top + "/", tarfile.DIRTYPE, 0o755))
                for rel, src in entries:
                    if src is None:
                        tf.addfile(_tar_info(f"{top}/{rel}/", tarfile.DIRTYPE, 0o755))
                        continue
                    info = _tar_info(f"{top}/{rel}", tarfile.REGTYPE, 0o644)
                    info.size = src.stat().st_size  # follows file symlinks (a Hub snapshot is made of them)
                    with open(src, "rb") as f:
                        tf.addfile(info, f)
            if gz is not None:
                gz.close()
        digest = sha256_file(tmp)
        os.replace(tmp, archive_path)
        return digest
    finally:
        tmp.unlink(missing_ok=True)


def _tar_info(name: str, kind: bytes, mode: int) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.mode = mode
    info.mtime = 0
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    return info

"""Fetch and unpack a checkpoint archive (``.tar.gz``/``.tgz``/``.tar``/``.zip``) into the cache.

The archive is streamed into the cache, its length and sha256 are checked, it is extracted without trusting
member paths, the checkpoint is validated and then moved into place in one rename, so the cache never holds
a half-written checkpoint.
"""

from __future__ import annotations

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
from pathlib import Path, PurePosixPath, PureWindowsPath

from gan_cot.discriminator.checkpoint import (
    CHUNK,
    CheckpointError,
    DiscriminatorSourceError,
    _safe_name,
    validate_checkpoint,
)

ARCHIVE_SUFFIXES = (".tar.gz", ".tgz", ".tar", ".zip")
COMPLETE_MARKER = ".complete"
DOWNLOAD_TIMEOUT_S = 60.0
_SHA_RE = re.compile(r"^[0-9a-f]{64}$")


class DownloadError(DiscriminatorSourceError):
    """A fetch failed (network, checksum, unsafe archive, refused content); nothing was left in the cache."""


def _one_line(e: BaseException) -> str:
    """An exception's message on one line (library messages often span several)."""
    return " ".join(str(e).split()) or type(e).__name__


def _check_sha(sha256) -> str:
    sha = str(sha256).strip().lower()
    if not _SHA_RE.match(sha):
        raise DownloadError(f"sha256 must be 64 hex digits, got {sha256!r}")
    return sha


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
                f"cache folder {cache} cannot be written ({e.strerror}); choose another with --cache-dir or "
                "$GAN_COT_CACHE"
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
        _write_members([(m.name, m.isdir(), lambda m=m: tf.extractfile(m)) for m in members], dest, url)


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
        _write_members([(i.filename, i.is_dir(), lambda i=i: zf.open(i)) for i in infos], dest, url)


def _write_members(members: list, dest: Path, url: str) -> None:
    """Write checked archive members ``(name, is_dir, open)`` under ``dest``: folders, then each file's bytes."""
    for name, is_dir, open_member in members:
        target = _check_member_name(name, dest, url)
        if is_dir:
            target.mkdir(parents=True, exist_ok=True)
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        src = open_member()
        if src is None:
            raise DownloadError(f"archive {url}: member {name!r} cannot be read")
        with src, open(target, "xb") as out:
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

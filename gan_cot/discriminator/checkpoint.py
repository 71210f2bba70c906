"""Check a discriminator checkpoint folder before anything loads it, and pack one into a deterministic archive.

A discriminator checkpoint is a folder: ``config.json``, safetensors weights, tokenizer files and (gan-cot's own)
``discriminator_card.json``. Pickle weight files (``.bin .pt .pth .pkl .ckpt``) run code when loaded and are refused
unless ``allow_pickle``; a config that asks for the checkpoint's own code (``auto_map``, ``trust_remote_code``) is
refused, except the ``auto_map`` of an architecture gan-cot builds with its own code (:data:`NATIVE_ARCHITECTURES`),
whose shipped code is ignored, never run. Maintainers
publish a checkpoint with :func:`pack_checkpoint` (a deterministic ``.tar.gz`` and its sha256) and add a
``url:`` + ``sha256:`` entry to the registry.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import re
import tarfile
import tempfile
from pathlib import Path

from gan_cot.usage import safetensors_problem

PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".pkl", ".ckpt")
CHUNK = 1 << 20
# Architectures whose published checkpoints name their own code in auto_map, built natively here instead.
NATIVE_ARCHITECTURES = ("Qwen2ForProcessRewardModel",)
PICKLE_HINT = (
    "convert them to safetensors (save_pretrained(..., safe_serialization=True) in a Python you trust); "
    "scripts/download_discriminator.py --allow-pickle fetches a checkpoint with pickle files from a source you trust, "
    "and only its safetensors weights are ever loaded"
)


class DiscriminatorSourceError(Exception):
    """A discriminator checkpoint could not be found, fetched or trusted; the message says why and what to do."""


class CheckpointError(DiscriminatorSourceError, ValueError):
    """A checkpoint folder is incomplete or unsafe to load."""


def _safe_name(name: str | None) -> str:
    cleaned = re.sub(r"[^A-Za-z0-9._-]+", "-", name or "").strip(".-")
    return cleaned[:64] or "ckpt"


# --------------------------------------------------------------------------------------------------- validation


def _find_remote_code(obj, trail: str = "", native: bool = False) -> str | None:
    if isinstance(obj, dict):
        for k, v in obj.items():
            if (k == "auto_map" and not (native and not trail)) or (k == "trust_remote_code" and v):
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
    (``auto_map``, ``trust_remote_code``; the top-level ``auto_map`` of config.json is ignored when its
    ``architectures`` are all :data:`NATIVE_ARCHITECTURES`), a missing or malformed config.json, a folder without
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
            f"{folder} holds pickle file(s) {shown}: loading pickle can run arbitrary code and gan-cot loads "
            f"safetensors only; {PICKLE_HINT}"
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
        archs = data.get("architectures") if cfg == config else None
        native = bool(archs) and all(a in NATIVE_ARCHITECTURES for a in archs)
        key = _find_remote_code(data, native=native)
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
        hint = "" if allow_pickle else f" (pickle weights are refused: {PICKLE_HINT})"
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

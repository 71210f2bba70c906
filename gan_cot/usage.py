"""Small helpers shared by the scripts: one clear error line and a non-zero exit, JSON last lines."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path


class UsageError(Exception):
    """Bad input from the user; the message says what and how to fix it."""


def fail(message: str, code: int = 2) -> None:
    print(f"error: {message}", file=sys.stderr)
    raise SystemExit(code)


def print_json(obj: dict) -> None:
    """The machine-readable result: one JSON object on the last line of stdout."""
    sys.stdout.flush()
    print(json.dumps(obj, sort_keys=True), flush=True)


def safetensors_problem(path: str | os.PathLike) -> str | None:
    """What is wrong with a ``.safetensors`` file's framing, or None: the 8-byte header length, the JSON header
    and the file size the header's tensor offsets imply. Reads only the header, so it is cheap on any size."""
    p = Path(path)
    try:
        size = p.stat().st_size
        with open(p, "rb") as f:
            head = f.read(8)
            if len(head) < 8:
                return f"{p} is truncated: {size} bytes, not even the 8-byte header length"
            n = int.from_bytes(head, "little")
            if n > size - 8:
                return f"{p} is truncated or not a safetensors file: a {n}-byte header in a {size}-byte file"
            header = json.loads(f.read(n))
    except OSError as e:
        return f"{p} cannot be read ({e.strerror})"
    except (UnicodeDecodeError, ValueError):
        return f"{p} is not a safetensors file (its header is not JSON)"
    if not isinstance(header, dict):
        return f"{p} is not a safetensors file (its header is not a JSON object)"
    ends = []
    for name, info in header.items():
        if name == "__metadata__":
            continue
        try:
            ends.append(int(info["data_offsets"][1]))
        except (KeyError, TypeError, IndexError, ValueError):
            return f"{p} is not a safetensors file (tensor {name!r} has no data_offsets)"
    expected = 8 + n + max(ends, default=0)
    if size < expected:
        return f"{p} is truncated: its header describes {expected} bytes but the file has {size}"
    return None


PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".pkl", ".ckpt")


def check_model_path(name_or_path: str) -> None:
    """Fail on a local-looking model path that does not exist, or a local folder whose weights cannot load,
    before torch or any model loads.

    A Hub id (``org/name``) passes through; ``from_pretrained`` resolves it later.
    """
    p = Path(name_or_path).expanduser()
    if p.exists():
        if p.is_dir() and not (p / "config.json").exists() and not (p / "adapter_config.json").exists():
            raise UsageError(f"model folder {p} has no config.json; pass a folder written by save_pretrained")
        if p.is_dir():
            weights = sorted(p.glob("*.safetensors"))
            for w in weights:
                problem = safetensors_problem(w)
                if problem:
                    raise UsageError(f"{problem}; save the model again (save_pretrained) or fetch it again")
            pickles = [q.name for q in p.iterdir() if q.name.lower().endswith(PICKLE_SUFFIXES)]
            if not weights and pickles:
                raise UsageError(
                    f"model folder {p} has only pickle weights ({', '.join(sorted(pickles))}), which can run code "
                    "when loaded; convert them to safetensors (save_pretrained(..., safe_serialization=True))"
                )
        return
    hub_like = name_or_path.count("/") == 1 and not name_or_path.startswith((".", "/", "~"))
    if not hub_like or name_or_path.endswith((".json", ".safetensors")):
        raise UsageError(f"model path {name_or_path} does not exist; pass a saved model folder or a Hub id")


def check_writable_dir(
    path: str | os.PathLike, keep: bool = True, what: str = "output folder", hint: str = "choose another with --output"
) -> Path:
    """Create ``path`` (and parents) or explain why it cannot be written.

    With ``keep=False`` the folders the probe created are removed again, so a run that fails later (a bad
    data file, a bad checkpoint) leaves nothing behind; whoever writes there creates the folder then.
    """
    p = Path(path)
    created = []
    try:
        for parent in [p, *p.parents]:
            if parent.exists():
                break
            created.append(parent)
        p.mkdir(parents=True, exist_ok=True)
        probe = p / ".write-test"
        probe.write_text("")
        probe.unlink()
    except OSError as e:
        _remove_empty(created)
        raise UsageError(f"{what} {p} cannot be written ({e.strerror}); {hint}") from e
    if not keep:
        _remove_empty(created)
    return p


def _remove_empty(folders: list[Path]) -> None:
    for folder in folders:  # deepest first
        try:
            folder.rmdir()
        except OSError:
            pass


def one_line(error: BaseException, limit: int = 300) -> str:
    """``Type: message`` of an exception from a library, on one line (its first non-empty line, cut at ``limit``):
    a library's multi-line report inside an ``error:`` line would read as several errors."""
    text = next((line.strip() for line in str(error).splitlines() if line.strip()), "")
    text = text if len(text) <= limit else text[: limit - 3] + "..."
    return f"{type(error).__name__}: {text}" if text else type(error).__name__

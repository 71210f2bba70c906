"""Small helpers shared by the scripts: one clear error line and a non-zero exit, JSON last lines."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_BASE = REPO_ROOT / "models" / "ledger-verbose-base"


class UsageError(Exception):
    """Bad input from the user; the message says what and how to fix it."""


def fail(message: str, code: int = 2) -> None:
    print(f"error: {message}", file=sys.stderr)
    raise SystemExit(code)


def print_json(obj: dict) -> None:
    """The machine-readable result: one JSON object on the last line of stdout."""
    sys.stdout.flush()
    print(json.dumps(obj, sort_keys=True), flush=True)


def check_model_path(name_or_path: str) -> None:
    """Fail on a local-looking model path that does not exist, before torch or any model loads.

    A Hub id (``org/name``) passes through; ``from_pretrained`` resolves it later.
    """
    p = Path(name_or_path).expanduser()
    if p.exists():
        if p.is_dir() and not (p / "config.json").exists() and not (p / "adapter_config.json").exists():
            raise UsageError(f"model folder {p} has no config.json; pass a folder written by save_pretrained")
        return
    hub_like = name_or_path.count("/") == 1 and not name_or_path.startswith((".", "/", "~"))
    if not hub_like or name_or_path.endswith((".json", ".safetensors")):
        raise UsageError(f"model path {name_or_path} does not exist; pass a saved model folder or a Hub id")


def check_writable_dir(path: str | os.PathLike) -> Path:
    """Create ``path`` (and parents) or explain why it cannot be written."""
    p = Path(path)
    try:
        p.mkdir(parents=True, exist_ok=True)
        probe = p / ".write-test"
        probe.write_text("")
        probe.unlink()
    except OSError as e:
        raise UsageError(f"output folder {p} cannot be written ({e.strerror}); choose another with --output") from e
    return p

"""Where the files gan-cot ships live: the configs, the small verbose policies and the discriminator registry with
its checkpoints. The one module of the library that knows where the repository is.

In a source checkout they are the repository's ``configs/``, ``models/`` and ``discriminators/``; an installed wheel
carries the same three folders as package data under ``gan_cot/_shipped/`` (``setup.py`` maps them). A relative path
a user gives (``--config configs/tiny.yaml``, ``model: models/ledger-verbose-base``) is taken from the working
directory when it exists there, else from the shipped files (:func:`resolve`).
"""

from __future__ import annotations

import os
from pathlib import Path

_PACKAGE = Path(__file__).resolve().parent
REPO_ROOT = _PACKAGE.parent  # the source checkout, when there is one (:func:`checkout`)


def checkout() -> Path | None:
    """The source checkout this package runs from, or None (an installed wheel)."""
    return REPO_ROOT if (REPO_ROOT / "pyproject.toml").is_file() and (REPO_ROOT / "configs").is_dir() else None


ROOT = checkout() or _PACKAGE / "_shipped"
CONFIGS = ROOT / "configs"
MODELS = ROOT / "models"
DISCRIMINATORS = ROOT / "discriminators"
DEFAULT_CONFIG = CONFIGS / "default.yaml"
DEFAULT_BASE = MODELS / "ledger-verbose-base"


def resolve(path: str | os.PathLike) -> str:
    """``path`` as given when it is absolute or exists from the working directory; else the shipped file or folder
    of that relative path where there is one (``configs/tiny.yaml``, ``models/ledger-verbose-base``); else as given
    (a Hub id, or a path whose absence the caller reports)."""
    p = Path(path).expanduser()
    if p.is_absolute() or p.exists():
        return str(path)
    shipped = ROOT / p
    return str(shipped) if shipped.exists() else str(path)

"""The smallest policy and discriminator pair: an untrained tiny Llama and a discriminator on its backbone, for
runs that must finish in seconds (the bad-input table, the chaos run, the benchmark's ``--tiny``)."""

from __future__ import annotations

import contextlib
import io
import logging
from pathlib import Path


def build_tiny_pair(root: str | Path, seed: int = 0, model_dir: str | Path | None = None) -> tuple[Path, Path]:
    """Save a tiny policy (seeded by ``seed``) as ``root/policy``, unless ``model_dir`` is given, and a discriminator
    on its backbone (a new score head) as ``root/disc``; returns (policy folder, discriminator folder). Prints
    nothing: the progress bars and load reports of saving and loading are dropped."""
    from transformers.utils import logging as hf_logging

    from gan_cot.discriminator.model import Discriminator
    from gan_cot.models import build_tiny_model, save_pretrained

    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity(logging.ERROR)
    try:
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            if model_dir is None:
                model, tok = build_tiny_model(seed=seed, hidden_size=32, layers=2, heads=2)
                model_dir = save_pretrained(model, tok, root / "policy")
            disc_dir = Discriminator.from_backbone(str(model_dir)).save_pretrained(root / "disc")
    finally:
        hf_logging.set_verbosity(verbosity)
    return Path(model_dir), Path(disc_dir)

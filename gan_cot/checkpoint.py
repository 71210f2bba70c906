"""Files that are whole or absent: a folder written under a temporary name and renamed into place
(:func:`atomic_dir`), JSON the same way (:func:`write_json`), and the training checkpoint built on them.

A training checkpoint (``OUTPUT_DIR/checkpoints/round-NNNNN``) holds the adapter (and gate), the DeepSpeed engine
state (optimizer included; not the frozen base, which resume loads from ``model`` again), the discriminator, every
process's RNG state, and ``state.json`` (the round, the MLflow run id, the SFT pool). ``latest`` names the newest whole one; a kill at any moment leaves the previous one
whole.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import shutil
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch


class CheckpointLoadError(ValueError):
    """The checkpoint to resume from cannot be read; the message names it and what to do."""


@contextlib.contextmanager
def atomic_dir(path: str | Path) -> Iterator[Path]:
    """Yield a fresh temporary folder beside ``path``; when the block ends without an error it replaces ``path``.
    A kill or an error leaves ``path`` as it was (and at most a ``*.tmp`` folder, cleared on the next write)."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    yield tmp
    if path.exists():
        trash = path.with_name(path.name + ".old.tmp")
        shutil.rmtree(trash, ignore_errors=True)
        os.replace(path, trash)
        shutil.rmtree(trash, ignore_errors=True)
    os.replace(tmp, path)


def write_json(path: str | Path, obj, **kwargs) -> None:
    """Write JSON through a temporary file and a rename: a kill never leaves half a file that is read back."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(obj, **kwargs))
    os.replace(tmp, path)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def rng_state() -> dict:
    """Python, NumPy and torch RNG states as plain JSON (no pickle in checkpoints we read back)."""
    version, internal, gauss = random.getstate()
    name, keys, pos, has_gauss, cached = np.random.get_state()
    return {
        "python": [version, list(internal), gauss],
        "numpy": [name, keys.tolist(), pos, has_gauss, cached],
        "torch": torch.get_rng_state().tolist(),
    }


def set_rng_state(state: dict) -> None:
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    name, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((name, np.array(keys, dtype=np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(torch.tensor(state["torch"], dtype=torch.uint8))


class Checkpoints:
    """Save and restore the training state under ``root`` (``OUTPUT_DIR/checkpoints``)."""

    def __init__(self, root: Path, strategy):
        self.root = Path(root)
        self.strategy = strategy

    def save(self, r: int, state: dict, save_extra) -> None:
        """Write round ``r``: the engine (every process), RNG (every process), then on the main process
        ``save_extra(folder)`` (adapter, gate, discriminator) and ``state.json``; then point ``latest`` at it."""
        s = self.strategy
        tmp = self.root / f"round-{r:05d}.tmp"
        final = self.root / f"round-{r:05d}"
        if s.is_main:
            shutil.rmtree(tmp, ignore_errors=True)
            tmp.mkdir(parents=True)
        s.barrier()
        s.save_engine(tmp / "engine", tag="state")
        (tmp / f"rng-{s.rank}.json").write_text(json.dumps(rng_state()))
        s.barrier()
        save_extra(tmp)
        if s.is_main:
            (tmp / "state.json").write_text(json.dumps({"round": r, **state}))
            shutil.rmtree(final, ignore_errors=True)
            tmp.rename(final)
            (self.root / "latest.tmp").write_text(final.name)
            os.replace(self.root / "latest.tmp", self.root / "latest")
            for old in sorted(self.root.glob("round-*")):
                if old == final:
                    continue
                if not old.name.endswith(".tmp"):
                    trash = old.with_name(old.name + ".old.tmp")
                    os.replace(old, trash)
                    old = trash
                shutil.rmtree(old, ignore_errors=True)
        s.barrier()

    def load(self, load_extra) -> dict | None:
        """Restore the engine, then ``load_extra(folder)`` (the discriminator...), then this process's RNG, from the
        latest whole checkpoint; returns ``state.json``, or None when there is none. A checkpoint that ``latest`` names but that cannot be read raises
        :class:`CheckpointLoadError` naming it, before anything is restored."""
        latest = self.root / "latest"
        if not latest.exists():
            return None
        ckpt = self.root / latest.read_text().strip()
        hint = f"restore it, or delete {self.root} to start the run over"
        needed = ("state.json", "engine/state", "discriminator/config.json")
        missing = [name for name in needed if not (ckpt / name).exists()]
        if missing:
            raise CheckpointLoadError(f"checkpoint {ckpt} (named by {latest}) lacks {', '.join(missing)}; {hint}")
        try:
            state = json.loads((ckpt / "state.json").read_text())
            int(state["round"]), state["run_id"], dict(state["pool"])
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as e:
            raise CheckpointLoadError(f"{ckpt / 'state.json'} cannot be read ({type(e).__name__}: {e}); {hint}") from e
        try:
            self.strategy.load_engine(ckpt / "engine", tag="state")
        except Exception as e:  # noqa: BLE001 - DeepSpeed asserts, raises OSError or pickle errors alike
            raise CheckpointLoadError(f"{ckpt / 'engine'} cannot be loaded ({type(e).__name__}: {e}); {hint}") from e
        load_extra(ckpt)
        rng_file = ckpt / f"rng-{self.strategy.rank}.json"
        if rng_file.exists():  # last: loading models may draw random numbers
            set_rng_state(json.loads(rng_file.read_text()))
        return state

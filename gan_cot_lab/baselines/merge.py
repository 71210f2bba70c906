"""Model merging (Kimi Team 2025, "Kimi k1.5: Scaling Reinforcement Learning with LLMs"): average the weights
of the long-chain base and a shortened model, no training.

``merged = (1 - merge.weight) * base + merge.weight * other``, tensor by tensor; ``other`` is a model folder or
a peft adapter folder (merged into its own base first), and must have the base's architecture. The result is
saved with ``save_pretrained`` (safetensors) and the base's tokenizer to ``OUTPUT_DIR/model``.
"""

from __future__ import annotations

from pathlib import Path

import torch

from gan_cot.models import load_model, save_pretrained
from gan_cot.usage import check_model_path
from gan_cot_lab.baselines.common import BaselineError, Context, Outcome


@torch.no_grad()
def average_weights(base, other, weight: float):
    """``base`` with every floating-point tensor replaced by ``(1 - weight) * base + weight * other`` (in place)."""
    theirs = other.state_dict()
    mine = base.state_dict()
    missing = sorted(set(mine) ^ set(theirs))
    if missing:
        raise BaselineError(f"merge.other has a different architecture: parameters {missing[:3]} are not in both")
    done: set[int] = set()  # tied tensors (embeddings and LM head) share storage: average them once
    for name, tensor in mine.items():
        if tensor.shape != theirs[name].shape:
            raise BaselineError(
                f"merge.other has a different architecture: {name} is {tuple(theirs[name].shape)} "
                f"there and {tuple(tensor.shape)} in the base"
            )
        if tensor.is_floating_point() and tensor.data_ptr() not in done:
            done.add(tensor.data_ptr())
            tensor.mul_(1.0 - weight).add_(theirs[name].to(tensor.dtype), alpha=weight)
    return base


def train(ctx: Context) -> Outcome:
    cfg = ctx.cfg
    other_id = cfg.merge.other
    check_model_path(other_id)
    if Path(other_id).exists():
        other_id = str(Path(other_id).resolve())
    ctx.log(f"[merge] {1 - cfg.merge.weight:g} x {ctx.model_id} + {cfg.merge.weight:g} x {other_id}")
    other = load_model(other_id, dtype=torch.float32)
    # a copy of the base: the base in the context stays as it was evaluated
    merged = load_model(ctx.model_id, dtype=torch.float32)
    average_weights(merged, other, cfg.merge.weight)
    saved = save_pretrained(merged, ctx.tokenizer, ctx.out / "model")
    return Outcome(model=merged, rollouts=0, saved=saved)

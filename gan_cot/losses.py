"""Losses: the clipped policy loss with a KL penalty to the reference (SFT uses the model's own cross-entropy).

Each returns ``(loss, stats)`` where stats are detached floats for logging.
"""

from __future__ import annotations

import torch
import torch.utils.checkpoint


def _chunk_logprobs(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    logp = torch.log_softmax(logits.float(), dim=-1)  # [batch, chunk, vocab], float32 for this chunk only
    return torch.gather(logp, -1, targets.unsqueeze(-1)).squeeze(-1)


def token_logprobs(logits: torch.Tensor, input_ids: torch.Tensor, chunk: int = 1024) -> torch.Tensor:
    """Log-probability of each next token: logits [batch, seq, vocab], ids [batch, seq] -> [batch, seq-1].

    The float32 log-softmax over the vocabulary is taken ``chunk`` positions at a time; with grad, each chunk is
    recomputed in backward instead of stored, so no float32 tensor of the whole micro-batch's vocabulary exists."""
    logits, targets = logits[:, :-1], input_ids[:, 1:]
    if logits.shape[1] <= chunk:
        return _chunk_logprobs(logits, targets)
    parts = []
    for s in range(0, logits.shape[1], chunk):
        piece, tgt = logits[:, s : s + chunk], targets[:, s : s + chunk]
        if piece.requires_grad:
            parts.append(torch.utils.checkpoint.checkpoint(_chunk_logprobs, piece, tgt, use_reentrant=False))
        else:
            parts.append(_chunk_logprobs(piece, tgt))
    return torch.cat(parts, dim=1)


def masked_mean(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    return (x * mask).sum() / mask.sum().clamp(min=1.0)


def policy_loss(
    logp: torch.Tensor,
    old_logp: torch.Tensor,
    ref_logp: torch.Tensor | None,
    advantages: torch.Tensor,
    mask: torch.Tensor,
    clip_eps: float = 0.2,
    kl_coef: float = 0.0,
) -> tuple[torch.Tensor, dict]:
    """PPO-clip on per-token advantages plus ``kl_coef`` x KL(policy || reference) (the k3 estimator).

    All tensors are [batch, seq] over completion positions; ``mask`` is 1 on tokens that count.
    loss = mean_t[ -min(ratio * A, clip(ratio, 1 - eps, 1 + eps) * A) + kl_coef * (exp(ref - logp) - (ref - logp) - 1) ]
    """
    mask = mask.float()
    ratio = torch.exp(logp - old_logp)  # [batch, seq]
    unclipped = ratio * advantages
    clipped = ratio.clamp(1 - clip_eps, 1 + clip_eps) * advantages
    pg = -torch.minimum(unclipped, clipped)
    loss_tok = pg
    kl = torch.zeros_like(logp)
    if ref_logp is not None:
        delta = ref_logp - logp
        kl = torch.exp(delta) - delta - 1
        loss_tok = loss_tok + kl_coef * kl
    loss = masked_mean(loss_tok, mask)
    stats = {
        "pg_loss": masked_mean(pg, mask).item(),
        "kl": masked_mean(kl, mask).item(),
        "clip_frac": masked_mean(((ratio - 1).abs() > clip_eps).float(), mask).item(),
        "ratio": masked_mean(ratio, mask).item(),
    }
    return loss, stats

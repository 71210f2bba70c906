"""The policy update: PPO-clip epochs over a round's chains with per-token advantages and a KL penalty to the
reference (the base model: the same weights with the adapter switched off, so no second copy in memory). Old and
reference log-probabilities are recomputed by the policy itself, each chain at the alpha it was sampled under."""

from __future__ import annotations

import random

import torch

from gan_cot.gate.scaling import gated
from gan_cot.losses import policy_loss, token_logprobs


def batch_tensors(chains, scores, indices: list[int], features, pad_id: int, device) -> dict:
    """Right-padded prompt+completion [batch, seq], a completion mask and advantages aligned with next-token
    log-probs [batch, seq-1], and the gate's inputs (features, alphas, rollout log-probs, sequence advantages)."""
    rows = [chains[i] for i in indices]
    width = max(len(c.prompt_ids) + len(c.completion_ids) for c in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)  # [batch, seq]
    attn = torch.zeros_like(ids)
    mask = torch.zeros((len(rows), width - 1))  # [batch, seq-1]: position t predicts token t+1
    adv = torch.zeros((len(rows), width - 1))
    for r, (i, c) in enumerate(zip(indices, rows)):
        full = c.prompt_ids + c.completion_ids
        ids[r, : len(full)] = torch.tensor(full)
        attn[r, : len(full)] = 1
        start = len(c.prompt_ids) - 1
        mask[r, start : start + len(c.completion_ids)] = 1
        adv[r, start : start + len(c.completion_ids)] = scores.advantages[i]
    out = {"input_ids": ids, "attention_mask": attn, "mask": mask, "advantages": adv}
    if features is not None:
        out["features"] = features[indices]  # [batch, hidden]
    if rows[0].alpha is not None:
        out["alpha"] = torch.tensor([c.alpha for c in rows])  # [batch]
    if rows[0].alpha_logp is not None:
        out["alpha_logp"] = torch.tensor([c.alpha_logp for c in rows])  # [batch]
        out["seq_adv"] = torch.tensor([scores.seq_adv[i] for i in indices])  # [batch]
    return {k: v.to(device) for k, v in out.items()}


@torch.no_grad()
def logprobs(model, batch: dict, alpha, reference: bool = False, chunk: int = 1024) -> torch.Tensor:
    """Next-token log-probs [batch, seq-1] without grad: at ``alpha``, or of the reference (adapter off)."""
    model.eval()
    if reference:
        with model.disable_adapter():
            logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    else:
        with gated(model, alpha):
            logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    return token_logprobs(logits, batch["input_ids"], chunk)


def policy_update(ctx, rollout, scores, lc) -> dict:
    """``lc.epochs`` passes over the chains in micro-batches of ``lc.micro_batch`` (``lc``: the run's ``loss``
    section), in random order, on ``ctx.strategy``'s engine; returns the mean of each step's statistics (PPO and KL
    terms, the gate's loss, the total)."""
    strategy, gate, pad_id = ctx.strategy, ctx.gate, ctx.tokenizer.pad_token_id
    chains = rollout.chains
    model = ctx.policy
    batches = []
    for i in range(0, len(chains), lc.micro_batch):
        idx = list(range(i, min(i + lc.micro_batch, len(chains))))
        b = batch_tensors(chains, scores, idx, rollout.features, pad_id, strategy.device)
        b["run_alpha"] = gate.update_alpha([chains[j].alpha for j in idx])
        b["old_logp"] = logprobs(model, b, b["run_alpha"], chunk=lc.logprob_chunk)
        b["ref_logp"] = logprobs(model, b, None, reference=True, chunk=lc.logprob_chunk) if lc.kl_coef > 0 else None
        batches.append(b)
    stats: list[dict] = []
    for _ in range(lc.epochs):
        for b in random.sample(batches, len(batches)):
            strategy.engine.train()
            # forward and backward in one gated block (a checkpointed forward runs again in backward)
            with gated(model, b["run_alpha"]):
                logits = strategy.engine(input_ids=b["input_ids"], attention_mask=b["attention_mask"]).logits
                logp = token_logprobs(logits, b["input_ids"], lc.logprob_chunk)
                loss, st = policy_loss(
                    logp, b["old_logp"], b["ref_logp"], b["advantages"], b["mask"], lc.clip_eps, lc.kl_coef
                )
                extra = gate.extra_loss(b, lc.clip_eps)
                if extra is not None:
                    st["gate_loss"] = extra.item()
                    loss = loss + extra
                if not strategy.step(loss):
                    continue
            st["policy_loss"] = loss.item()
            stats.append(st)
    return mean_stats(stats)


def mean_stats(stats: list[dict]) -> dict:
    if not stats:
        return {}
    return {k: sum(s[k] for s in stats) / len(stats) for k in stats[0]}

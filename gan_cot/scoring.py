"""Scoring a rollout: the discriminator's class probabilities for every step, and from them, the answers and the
lengths, per-token advantages (:mod:`gan_cot.credit`) normalised within each question's group."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from gan_cot.credit import CreditWeights, group_sequence_advantage, sequence_rewards, step_credit, token_advantages
from gan_cot.steps import LABELS


@dataclass(frozen=True)
class Scores:
    """What scoring adds to a :class:`gan_cot.rollout.RolloutBatch`, chain by chain."""

    probs: list[torch.Tensor | None]  # [n_steps, 3] per chain (None: not scored, or no steps)
    seq_adv: list[float]  # the chain's sequence advantage
    advantages: list[torch.Tensor]  # [len(completion_ids)] per chain


def score(ctx, rollout, disc, credit, prune_targets: bool = False) -> Scores:
    """Step probabilities (when the step credit or pruned SFT targets need them) and per-token advantages.

    ``credit``: the run's ``credit`` section. The sequence term is GRPO's group-normalised correctness (minus the
    length penalty in ``credit.mode=length``), then adjusted by ``ctx.gate`` (a learned gate's length cost); the step
    term is each step's expected credit. ``prune_targets``: the SFT pool prunes its targets by these probabilities
    (``sft.source: pruned``), so the discriminator is asked even when the step credit is off.
    """
    chains = rollout.chains
    step_credit_on = credit.mode == "discriminator"
    probs: list[torch.Tensor | None] = [None] * len(chains)
    with_steps = [i for i, c in enumerate(chains) if c.steps]
    if (step_credit_on or prune_targets) and with_steps:
        questions = [ctx.question(chains[i].example_index) for i in with_steps]
        for i, p in zip(with_steps, disc.score(questions, [chains[i].steps for i in with_steps])):
            probs[i] = p
    weights = CreditWeights(credit.useful, credit.redundant, credit.wrong)
    penalty = credit.length_penalty if credit.mode == "length" else 0.0
    seq_adv: list[float] = []
    advantages: list[torch.Tensor] = []
    g = rollout.group_size
    for k in range(0, len(chains), g):
        group = chains[k : k + g]
        correct = torch.tensor([float(c.correct) for c in group])
        lengths = torch.tensor([float(len(c.completion_ids)) for c in group])
        adv = ctx.gate.adjust_advantages(
            group_sequence_advantage(sequence_rewards(correct, lengths, penalty)), lengths
        )
        for j, (c, a) in enumerate(zip(group, adv.tolist())):
            p = probs[k + j]
            credits = step_credit(p, weights) if step_credit_on and p is not None else None
            seq_adv.append(a)
            advantages.append(token_advantages(len(c.completion_ids), c.step_spans, credits, a, credit.step_coef))
    return Scores(probs, seq_adv, advantages)


def rollout_stats(rollout, scores: Scores, strategy) -> dict:
    """Rollout accuracy and tokens, and the fractions of steps the discriminator calls each class (all processes)."""
    counts = torch.zeros(3)
    for p in scores.probs:
        if p is not None and len(p):
            counts += torch.bincount(p.argmax(-1), minlength=3).float()
    chains = rollout.chains
    total = strategy.sum(
        [sum(c.correct for c in chains), sum(len(c.completion_ids) for c in chains), len(chains), *counts.tolist()]
    )
    n = total[2]
    steps = sum(total[3:]) or 1.0
    out = {"rollout_accuracy": total[0] / n, "rollout_tokens": total[1] / n}
    out.update({f"frac_{lab}": total[3 + i] / steps for i, lab in enumerate(LABELS)})
    return out

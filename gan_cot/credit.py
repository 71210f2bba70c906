"""Per-token credit: step scores + answer correctness (+ length for the ablation) -> token advantages.

For one group of G chains sampled for the same question:

* the **sequence term** is GRPO's group-normalised reward, ``(R_i - mean_G R) / (std_G R + eps)``, with
  ``R_i = 1`` for a correct final answer and 0 otherwise (``length`` mode subtracts
  ``length_penalty * len_i / mean_G len`` from R_i: correctness + length only, no step credit);
* the **step term** gives every token of a step that step's credit, the expectation of the configured
  class weights under the discriminator's probabilities, ``sum_c p_c w_c`` (negative for redundant and
  wrong steps, positive for useful ones), scaled by ``step_coef``. The answer line gets no step term.

A token's advantage is the sum of the two. Tokens after the end of the completion get 0 and are masked.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from gan_cot.steps import LABELS


@dataclass
class CreditWeights:
    useful: float = 0.2
    redundant: float = -1.0
    wrong: float = -1.0

    def vector(self) -> torch.Tensor:
        return torch.tensor([getattr(self, lab) for lab in LABELS])


def step_credit(probs: torch.Tensor, weights: CreditWeights) -> torch.Tensor:
    """[n_steps, 3] class probabilities -> [n_steps] expected credit."""
    return probs @ weights.vector().to(probs.dtype)


def group_sequence_advantage(rewards: torch.Tensor, eps: float = 1e-4) -> torch.Tensor:
    """[G] rewards -> [G] group-normalised advantages (0 when every reward is equal)."""
    std = rewards.std(unbiased=False)
    return (rewards - rewards.mean()) / (std + eps)


def sequence_rewards(correct: torch.Tensor, lengths: torch.Tensor, length_penalty: float = 0.0) -> torch.Tensor:
    """[G] correctness (0/1) and lengths -> [G] rewards; ``length_penalty`` > 0 adds the length-only term."""
    r = correct.float()
    if length_penalty:
        r = r - length_penalty * lengths.float() / lengths.float().mean().clamp(min=1.0)
    return r


def token_advantages(
    num_tokens: int,
    step_spans: list[tuple[int, int]],
    credits: torch.Tensor | None,
    seq_advantage: float,
    step_coef: float = 1.0,
) -> torch.Tensor:
    """[num_tokens] advantages of one completion.

    ``step_spans`` are token spans ``[start, end)`` of the steps within the completion's tokens; tokens
    outside every span (the answer line, separators) get the sequence term only.
    """
    adv = torch.full((num_tokens,), float(seq_advantage))
    if credits is not None:
        for (start, end), c in zip(step_spans, credits.tolist()):
            adv[start:end] += step_coef * c
    return adv

"""Where ``redundant`` comes from for a two-way scorer (a PRM that only tells correct steps from wrong ones).

A two-way scorer gives ``p(correct)`` and ``p(wrong)`` per step; a redundancy source gives ``r = p(redundant | the
step is correct)``, and the discriminator reports ``[p(correct) (1 - r), p(correct) r, p(wrong)]``:

* ``none``: ``r = 0``; the scorer only separates useful from wrong steps.
* ``head``: a three-way discriminator (``redundancy_head``, e.g. the shipped ``gsm8k-minilm``), ``r = p(redundant) /
  (p(useful) + p(redundant))`` from its scores of the same chain.
* ``probe``: the answer-probability probe. With the policy's log-probability of the right answer after each prefix
  of the chain (``lp_0`` after none of the steps .. ``lp_n`` after all), step i is redundant when adding it does not
  raise that probability: ``lp_{i+1} - lp_i <= margin``. It needs the policy and the right answers:
  :meth:`gan_cot.discriminator.model.Discriminator.bind_policy`.
"""

from __future__ import annotations

import torch

from gan_cot.discriminator.card import DiscriminatorError
from gan_cot.models import render_prompt


class AnswerProbe:
    """``r_i = 1`` when step i does not raise the policy's log-probability of the right answer by more than
    ``margin`` nats (mean over the answer's tokens), else 0."""

    def __init__(self, policy, tokenizer, answers, fmt=None, margin: float = 0.0, batch_size: int = 16):
        from gan_cot.formats import HASH

        self.policy = policy
        self.tokenizer = tokenizer
        self.answers = answers  # question (as the discriminator is given it) -> the right answer
        self.completion = (fmt or HASH).render  # (steps, answer) -> the chain as the policy writes it
        self.margin = margin
        self.batch_size = batch_size

    def __call__(self, questions: list[str], chains: list[list[str]]) -> list[torch.Tensor]:
        pairs = []  # (context, answer) for every prefix of every chain
        for q, steps in zip(questions, chains):
            if q not in self.answers:
                raise DiscriminatorError(f"the answer probe has no right answer for the question {q[:60]!r}")
            answer = str(self.answers[q])
            for j in range(len(steps) + 1):
                text = self.completion(steps[:j], answer)
                cut = text.rfind(answer)
                pairs.append((render_prompt(self.tokenizer, q) + text[:cut], text[cut:]))
        lp = answer_logprobs(self.policy, self.tokenizer, pairs, self.batch_size)
        out, k = [], 0
        for steps in chains:
            gains = torch.tensor([lp[k + i + 1] - lp[k + i] for i in range(len(steps))], dtype=torch.float32)
            out.append((gains <= self.margin).float())
            k += len(steps) + 1
        return out


@torch.no_grad()
def answer_logprobs(policy, tokenizer, pairs: list[tuple[str, str]], batch_size: int = 16) -> list[float]:
    """Mean log-probability of each ``target`` after its ``context`` under ``policy`` (left-padded batches, logits
    kept only for the last positions)."""
    device = next(policy.parameters()).device
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    out = []
    for i in range(0, len(pairs), batch_size):
        rows = []
        for context, target in pairs[i : i + batch_size]:
            enc = tokenizer(context + target, add_special_tokens=False, return_offsets_mapping=True)
            n_target = sum(1 for s, e in enc["offset_mapping"] if e > len(context))
            rows.append((enc["input_ids"], max(1, n_target)))
        width, keep = max(len(ids) for ids, _ in rows), max(n for _, n in rows) + 1
        ids = torch.full((len(rows), width), pad, dtype=torch.long)
        mask = torch.zeros_like(ids)
        for r, (row, _) in enumerate(rows):
            ids[r, width - len(row) :] = torch.tensor(row, dtype=torch.long)
            mask[r, width - len(row) :] = 1
        logits = policy(input_ids=ids.to(device), attention_mask=mask.to(device), logits_to_keep=keep).logits
        logp = torch.log_softmax(logits[:, :-1].float(), -1)  # predicts the last keep - 1 tokens
        tokens = ids[:, width - keep + 1 :].to(device)
        picked = torch.gather(logp, -1, tokens.unsqueeze(-1)).squeeze(-1)  # [batch, keep - 1]
        for r, (_, n) in enumerate(rows):
            out.append(picked[r, -n:].mean().item())
    return out


def head_redundancy(head, questions: list[str], chains: list[list[str]]) -> list[torch.Tensor]:
    """``p(redundant) / (p(useful) + p(redundant))`` from a three-way discriminator's scores."""
    out = []
    for p in head.score(questions, chains):
        out.append(p[:, 1] / (p[:, 0] + p[:, 1]).clamp_min(1e-6))
    return out

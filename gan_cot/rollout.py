"""A round's rollout: G chains per question from the current policy under the thinking budget, each at the alpha
the gate gives it, split into steps and checked, as one immutable :class:`RolloutBatch` that scoring, the update,
the SFT pool, the refresh and the logs all read."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from gan_cot.generation import Generated
from gan_cot.models import render_prompt
from gan_cot.steps import step_token_spans


@dataclass(frozen=True)
class Chain:
    """One sampled chain and what the rollout knows of it."""

    example_index: int  # index into the trainer's training examples
    prompt_ids: list[int]
    completion_ids: list[int]  # the end-of-sequence token included when the chain ended
    text: str  # the completion, special tokens left out
    steps: list[str]  # the thinking steps (before the end of thinking)
    step_spans: list[tuple[int, int]]  # each step's token span within completion_ids
    correct: bool
    finished: bool  # ends with the end-of-sequence token
    forced: bool = False  # the end of thinking was forced
    alpha: float | None = None  # the alpha the chain was sampled under
    question_alpha: float | None = None  # the gate's own pick for the question
    alpha_logp: float | None = None  # log p(alpha) under the gate at rollout (the learned gate's exploration)


@dataclass(frozen=True)
class RolloutBatch:
    """The chains of a rollout, question-major: chains ``[k * group_size, (k + 1) * group_size)`` share a question."""

    chains: list[Chain]
    group_size: int
    features: torch.Tensor | None = None  # [chains, hidden]: the gate's prompt features of each chain's question

    def groups(self) -> list[list[Chain]]:
        g = self.group_size
        return [self.chains[k : k + g] for k in range(0, len(self.chains), g)]


def completion_offsets(tokenizer, ids: list[int]) -> tuple[str, list[tuple[int, int]]]:
    """Decoded text of generated ids and each token's character span in it (by incremental decoding)."""
    spans, prev = [], ""
    for k in range(len(ids)):
        text = tokenizer.decode(ids[: k + 1], skip_special_tokens=True)
        spans.append((len(prev), len(text)))
        prev = text
    return prev, spans


def make_chain(tokenizer, task, example, index: int, gen: Generated, **alphas) -> Chain:
    """Decode a generated chain, split its thinking into steps with their token spans, and check its answer."""
    body = gen.completion_ids[:-1] if gen.finished else gen.completion_ids
    text, offsets = completion_offsets(tokenizer, body)
    steps = task.format.steps(text)
    spans = step_token_spans(tokenizer, text, steps, offsets=offsets) if steps else []
    return Chain(
        index, gen.prompt_ids, gen.completion_ids, text, [s.text for s in steps], spans, task.verify(text, example),
        gen.finished, gen.forced, **alphas,
    )  # fmt: skip


@torch.no_grad()
def rollout(
    ctx,
    indices: list[int],
    cfg,
    group_size: int | None = None,
    explore: bool = False,
    temperature: float | None = None,
) -> RolloutBatch:
    """``group_size`` (default ``cfg.group_size``) sampled chains for each of ``ctx.examples[indices]`` from
    ``ctx.policy``, drawn by ``ctx.rollout_engine`` in generation batches of ``cfg.batch_size`` chains (``cfg``: the
    run's ``rollout`` section). ``explore`` (a round's rollout): each chain draws its own alpha from a learned gate;
    otherwise a question's chains share the gate's pick."""
    model, tokenizer, task, examples = ctx.policy, ctx.tokenizer, ctx.task, ctx.examples
    g = group_size or cfg.group_size
    per_batch = max(1, cfg.batch_size // g)
    chains: list[Chain] = []
    features: list[torch.Tensor] = []
    for b in range(0, len(indices), per_batch):
        idx = indices[b : b + per_batch]
        prompts = [render_prompt(tokenizer, ctx.question(i)) for i in idx]
        enc = tokenizer(prompts, return_tensors="pt", padding=True, add_special_tokens=False, padding_side="left")
        alphas = ctx.gate.rollout_alphas(model, enc["input_ids"], enc["attention_mask"], g, explore)
        gens = ctx.rollout_engine.sample(
            model, tokenizer, prompts, g, temperature or cfg.temperature, alphas.chain, task.format,
            (cfg.max_think_tokens, cfg.max_answer_tokens),
        )  # fmt: skip
        for j, gen in enumerate(gens):
            q = j // g
            extra = {"alpha": alphas.per_chain[j]}
            if alphas.question is not None:
                extra["question_alpha"] = alphas.question[q]
            if alphas.logp is not None:
                extra["alpha_logp"] = alphas.logp[j]
            chains.append(make_chain(tokenizer, task, examples[idx[q]], idx[q], gen, **extra))
            if alphas.features is not None:
                features.append(alphas.features[q])
    return RolloutBatch(chains, g, torch.stack(features) if features else None)

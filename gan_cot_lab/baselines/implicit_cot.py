"""Implicit chain of thought by stepwise internalisation (Deng et al. 2024, "From Explicit CoT to Implicit CoT:
Learning to Internalize CoT Step by Step").

The verbose base writes the task's reference chains; one LoRA adapter then trains in ``implicit.stages`` stages. At
stage ``s`` every training chain loses the first ``floor(s / stages * n)`` of its ``n`` thinking tokens (removed from
the left; the end of thinking and the answer stay), so at the last stage no chain is left and the model answers
directly. Two details of the paper keep the stages stable:

- **removal smoothing**: each chain drawn into a batch loses ``o`` tokens more, ``o >= 0`` drawn with
  ``P(o) ~ exp(-lambda o)`` (``lambda = implicit.smoothing``; at 4, 98% of draws are 0), so the next stage's
  removals already show now and then;
- **optimizer reset**: every stage starts a fresh AdamW (moments, warm-up and cosine schedule): the moments built on
  one stage's chains mislead the first steps on the next.

The paper removes a fixed 8 tokens per epoch until none remain; here each stage removes a fixed share of every chain,
so all chains are gone at the last stage within a known budget of ``implicit.stages x train.steps`` optimizer steps.
Nothing is sampled: the chains are the task's reference chains. The method's own figures, after every stage: the
thinking tokens left in its training chains (``stage_{s}_train_tokens``), and accuracy, tokens and thinking steps on
``implicit.report_n`` test questions (``stage_{s}_accuracy`` ...); the last stage is the final evaluation's model.
"""

from __future__ import annotations

import random
import statistics
from collections.abc import Callable

from gan_cot_lab.baselines.common import Context, Outcome
from gan_cot_lab.baselines.phases import Pair, attach_lora, batches, encode, finish, fit, report


def removed(n: int, stage: int, stages: int) -> int:
    """Thinking tokens a chain of ``n`` loses at ``stage`` of ``stages`` (before smoothing): all at the last."""
    return n * stage // stages


def smoothing_offset(rng: random.Random, lam: float | None) -> int:
    """``o >= 0`` with ``P(o) ~ exp(-lam o)`` (the floor of an exponential draw is geometric); 0 without smoothing."""
    return 0 if lam is None else int(rng.expovariate(lam))


def stage_batches(ctx: Context, data: tuple, stage: int, rng: random.Random) -> Callable[[], list[Pair]]:
    """Batches of ``stage``: each drawn chain cut from the left by :func:`removed` plus a fresh smoothing offset."""
    questions, chains, rests = data
    c = ctx.cfg.implicit
    draw = batches([len(ch) for ch in chains], ctx.cfg.train.batch_size, ctx.cfg.seed + stage)

    def make() -> list[Pair]:
        idx = draw()
        cut = [min(len(chains[i]), removed(len(chains[i]), stage, c.stages) + smoothing_offset(rng, c.smoothing))
               for i in idx]  # fmt: skip
        completions = [ctx.tokenizer.decode(chains[i][k:]) + rests[i] for i, k in zip(idx, cut)]
        return encode(ctx, [questions[i] for i in idx], completions)

    return make


def train(ctx: Context) -> Outcome:
    cfg = ctx.cfg
    task, tok = ctx.task, ctx.tokenizer
    examples = ctx.train_examples()
    references = [task.reference(ex) for ex in examples]
    thinking = [task.format.thinking(text) for text in references]
    chains = [tok(t, add_special_tokens=False)["input_ids"] for t in thinking]
    data = ([task.prompt(ex) for ex in examples], chains, [r[len(t) :] for r, t in zip(references, thinking)])
    rng = random.Random(cfg.seed)
    model = attach_lora(ctx)
    metrics: dict[str, float] = {}
    for s in range(1, cfg.implicit.stages + 1):
        left = statistics.fmean(len(ch) - removed(len(ch), s, cfg.implicit.stages) for ch in chains)
        ctx.log(f"[implicit-cot] stage {s}/{cfg.implicit.stages}: {left:.1f} thinking tokens left per chain")
        fit(ctx, model, stage_batches(ctx, data, s, rng), f"stage {s}", step0=(s - 1) * cfg.train.steps)
        metrics[f"stage_{s}_train_tokens"] = left
        metrics |= report(ctx, model, task, f"stage_{s}", cfg.implicit.report_n)
    return finish(ctx, model, rollouts=0, metrics=metrics)

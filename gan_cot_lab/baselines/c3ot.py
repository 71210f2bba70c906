"""C3oT (Kang et al. 2025, "C3oT: Generating Shorter Chain-of-Thought without Compromising Effectiveness").

Every training question gives a pair of chains with the same answer: the long one (the task's reference chain, the
chain the verbose base writes) and a short one. The paper's short chains come from GPT-4 as a compressor; there is no
such model here, so ``c3ot.short`` says where they come from:

- ``pruned``: the reference chain less the steps the discriminator scores below ``c3ot.prune_threshold``
  p(useful), the pruning of gan-cot's warm start (a chain that would lose every step stays whole);
- ``minimal``: the task's shortest granularity (the ledger generator's minimal chain; an oracle).

Two control tokens, ``[LONG]`` and ``[SHORT]``, are added to the tokenizer, and their embedding rows train with
the adapter (peft's ``trainable_token_indices``). Each chain is trained with its token after the question, the two
chains of a pair in the same batch, so one model learns both lengths and what ties them (the paper's conditioned
training). The final evaluation asks with ``[SHORT]`` (conditioned inference); the method's own figures are both
modes on ``c3ot.report_n`` test questions (``long_*``, ``short_*``). The tokens are added to the run's tokenizer in
place, so the final evaluation encodes them too; the merged model (a vocabulary two tokens larger than the base's)
is saved to ``OUTPUT_DIR/model``.
"""

from __future__ import annotations

import statistics

from gan_cot_lab.baselines.common import BaselineError, Context, Outcome, SuffixTask
from gan_cot_lab.baselines.phases import attach_lora, batches, encode, finish, fit, report

LONG, SHORT = "[LONG]", "[SHORT]"


def controlled(task, token: str) -> SuffixTask:
    """The task with a control token after every question."""
    return SuffixTask(task, lambda q: f"{q} {token}")


def add_control_tokens(tokenizer, model) -> list[int]:
    """Add ``[LONG]`` and ``[SHORT]`` to the tokenizer (one token each, never split) and grow the model's embedding
    to match (new rows drawn around the mean of the others, so the two start apart); their ids."""
    from tokenizers import AddedToken

    tokenizer.add_tokens([AddedToken(t, special=False, normalized=False) for t in (LONG, SHORT)])
    model.resize_token_embeddings(len(tokenizer))
    return tokenizer.convert_tokens_to_ids([LONG, SHORT])


def short_chains(ctx: Context, examples: list) -> list[str]:
    """The short chain of every example's pair, from ``c3ot.short``."""
    c = ctx.cfg.c3ot
    task = ctx.task
    if c.short == "minimal":
        if any(ex.minimal_steps is None for ex in examples):
            raise BaselineError(f"c3ot.short: minimal needs the task's minimal chains; task {task.name} has none")
        return [task.reference(ex, minimal=True) for ex in examples]
    from gan_cot.discriminator.model import Discriminator
    from gan_cot.pool import useful_steps

    disc = Discriminator.from_pretrained(c.discriminator)
    steps = [[s.strip() for s in ex.steps] for ex in examples]
    probs = disc.score([task.prompt(ex) for ex in examples], steps)
    kept = [useful_steps(st, p, c.prune_threshold) for st, p in zip(steps, probs)]
    return [task.format.render(k or st, ex.answer) for ex, st, k in zip(examples, steps, kept)]


def train(ctx: Context) -> Outcome:
    cfg = ctx.cfg
    task = ctx.task
    examples = ctx.train_examples()
    longs = [task.reference(ex) for ex in examples]
    shorts = short_chains(ctx, examples)
    ids = add_control_tokens(ctx.tokenizer, ctx.model)
    questions = [controlled(task, t).prompt(ex) for ex in examples for t in (LONG, SHORT)]
    completions = [chain for pair in zip(longs, shorts) for chain in pair]
    lengths = [len(x) for x in ctx.tokenizer(longs + shorts, add_special_tokens=False)["input_ids"]]
    ctx.log(
        f"[c3ot] {len(examples)} pairs ({cfg.c3ot.short} short chains): "
        f"{statistics.fmean(lengths[: len(longs)]):.1f} -> {statistics.fmean(lengths[len(longs) :]):.1f} tokens"
    )
    model = attach_lora(ctx, trainable_token_indices=ids)
    # a batch holds whole pairs: the two chains of a question side by side, so every step sees what the tokens change
    data = encode(ctx, questions, completions)
    draw = batches([len(data[2 * i][0]) for i in range(len(examples))], max(1, cfg.train.batch_size // 2), cfg.seed)
    fit(ctx, model, lambda: [data[2 * i + k] for i in draw() for k in (0, 1)], "c3ot")
    metrics = {
        "train_pairs": len(examples),
        "train_long_tokens": statistics.fmean(lengths[: len(longs)]),
        "train_short_tokens": statistics.fmean(lengths[len(longs) :]),
    }
    for name, token in (("long", LONG), ("short", SHORT)):
        metrics |= report(ctx, model, controlled(task, token), name, cfg.c3ot.report_n)
    return finish(ctx, model, rollouts=0, metrics=metrics, whole=True, eval_task=controlled(task, SHORT))

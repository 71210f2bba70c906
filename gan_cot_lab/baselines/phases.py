"""What the chain-rewriting baselines share (C3oT, TokenSkip, implicit CoT, System 2 distillation, step skipping):
a LoRA adapter on the base trained in one or more phases, the figures of each phase on the test split, and
sampling from a policy under a prompt of its own.

These methods train in phases (stages, rounds) with an optimizer that starts afresh at each, and some build their
batches as they go (implicit CoT draws its removal smoothing per batch), so they run the project's SFT loop
(:func:`gan_cot.sft.optimize`: AdamW, warm-up then cosine, gradients clipped at 1) rather than one TRL trainer per
phase. The loss is TRL SFTTrainer's with ``completion_only_loss``: cross-entropy on the completion and its
end-of-sequence token, the prompt masked. ``train.steps`` is the number of optimizer steps of each phase;
``train.grad_accum`` is not used.
"""

from __future__ import annotations

import dataclasses
import random
import statistics
from collections.abc import Callable
from contextlib import contextmanager

import torch

from gan_cot.models import render_prompt
from gan_cot.sft import collate, encode_pairs, length_grouped_batches, optimize
from gan_cot_lab.baselines.common import Context, Outcome, sample_chains, save_adapter

Pair = tuple[list[int], int]  # prompt + completion + eos ids, number of prompt ids


def attach_lora(ctx: Context, **options):
    """The base wrapped in a fresh LoRA adapter (``lora`` section; ``options`` set more peft fields), on the GPU
    when there is one."""
    from peft import get_peft_model

    peft_config = ctx.cfg.lora.peft()
    for key, value in options.items():
        setattr(peft_config, key, value)
    return get_peft_model(ctx.model.to("cuda" if torch.cuda.is_available() else "cpu"), peft_config)


def detach_lora(model):
    """The base back from a LoRA-wrapped model, the adapter dropped unmerged (a later phase starts afresh)."""
    return model.unload()


@contextmanager
def merged(model):
    """A LoRA model with its delta merged into the weights while inside (generation without the adapter's
    per-layer overhead); anything else as it is."""
    if not hasattr(model, "merge_adapter"):
        yield model
        return
    model.merge_adapter()
    try:
        yield model
    finally:
        model.unmerge_adapter()


def encode(ctx: Context, questions: list[str], completions: list[str]) -> list[Pair]:
    """(ids, prompt length) for SFT: the questions through the chat template, ids cut at ``train.max_length``."""
    prompts = [render_prompt(ctx.tokenizer, q) for q in questions]
    return [(ids[: ctx.cfg.train.max_length], n) for ids, n in encode_pairs(ctx.tokenizer, prompts, completions)]


def batches(lengths: list[int], batch_size: int, seed: int) -> Callable[[], list[int]]:
    """A function that returns the next batch of indices: shuffled batches of similar length, epoch after epoch."""
    rng = random.Random(seed)
    queue: list[list[int]] = []

    def draw() -> list[int]:
        if not queue:
            queue.extend(length_grouped_batches(lengths, batch_size, rng))
        return queue.pop()

    return draw


def fit(ctx: Context, model, make_batch: Callable[[], list[Pair]], phase: str, step0: int = 0) -> dict:
    """``train.steps`` optimizer steps on ``make_batch()`` batches with a fresh optimizer (warm-up, cosine decay);
    the loss goes to MLflow as ``train/loss`` at steps ``step0 + 1 ...``. Returns the loss statistics."""
    import mlflow

    t = ctx.cfg.train
    device = next(model.parameters()).device
    pad = ctx.tokenizer.pad_token_id

    def step_loss():
        batch = collate(make_batch(), pad)
        return model(**{k: v.to(device) for k, v in batch.items()}).loss, {}

    def on_log(step: int, means: dict) -> None:
        if mlflow.active_run() is not None:
            mlflow.log_metric("train/loss", means["loss"], step=step0 + step)

    model.train()
    stats = optimize(
        [p for p in model.parameters() if p.requires_grad], t.steps, step_loss, lr=t.lr,
        warmup=int(t.warmup * t.steps) if t.warmup < 1 else int(t.warmup), weight_decay=0.0, desc=phase,
        show_progress=ctx.cfg.progress, log_every=t.logging_steps, on_log=on_log,
    )  # fmt: skip
    model.eval()
    ctx.log(f"[{ctx.cfg.tag}] {phase}: loss {stats['first_loss']:.3f} -> {stats['final_loss']:.3f}")
    return stats


def fit_pairs(ctx: Context, model, data: list[Pair], phase: str, step0: int = 0) -> dict:
    """:func:`fit` on fixed (ids, prompt length) pairs."""
    draw = batches([len(ids) for ids, _ in data], ctx.cfg.train.batch_size, ctx.cfg.seed + step0)
    return fit(ctx, model, lambda: [data[i] for i in draw()], phase, step0)


def count_steps(task, text: str) -> int:
    """Thinking steps of a completion in the task's chain format."""
    return len(task.format.steps(text))


def report(ctx: Context, model, task, name: str, n: int) -> dict[str, float]:
    """``{name}_accuracy``, ``{name}_mean_tokens`` and ``{name}_steps`` (thinking steps per answer) of ``model`` on
    the first ``n`` test questions, prompted by ``task``, through the final evaluation's settings."""
    from gan_cot_lab.baselines import _evaluate

    with merged(model):
        r = _evaluate(ctx.cfg, model, ctx.tokenizer, task, task.examples("test", n), keep_rows=True)
    figures = {
        f"{name}_accuracy": r["accuracy"],
        f"{name}_mean_tokens": r["mean_tokens"],
        f"{name}_steps": statistics.fmean(count_steps(task, row["completion"]) for row in r["rows"]),
    }
    ctx.log(f"[{ctx.cfg.tag}] {name}: " + ", ".join(f"{k[len(name) + 1 :]} {v:.3f}" for k, v in figures.items()))
    return figures


def sample_from(ctx: Context, model, task, examples: list, n: int | None = None) -> list[list]:
    """``n`` (default ``sample.n``) chains per example sampled from ``model`` prompted by ``task``."""
    s = ctx.cfg.sample
    with merged(model):
        return sample_chains(
            dataclasses.replace(ctx, model=model, task=task), examples, n or s.n, s.temperature, s.max_new_tokens
        )


def finish(ctx: Context, model, rollouts: int, metrics: dict, whole: bool = False, **outcome) -> Outcome:
    """Save the adapter to ``OUTPUT_DIR/adapter`` (``whole``: the merged model to ``OUTPUT_DIR/model``, for an
    adapter that a base of another vocabulary cannot load) and hand back the merged policy."""
    from gan_cot.models import save_pretrained

    if not whole:
        saved = save_adapter(model, ctx.tokenizer, ctx.out / "adapter")
        model = model.merge_and_unload()
    else:
        model = model.merge_and_unload()
        saved = save_pretrained(model, ctx.tokenizer, ctx.out / "model")
    return Outcome(model=model, rollouts=rollouts, saved=saved, metrics=metrics, **outcome)

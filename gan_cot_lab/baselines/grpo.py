"""GRPO with a length reward (TRL ``GRPOTrainer``, LoRA), one of the four in :mod:`gan_cot.rewards`.

Each step samples ``grpo.num_generations`` completions per question, checks every final answer with the task's
verifier, and scores the group with the chosen reward:

* ``kimi``: 0/1 correctness plus ``kimi_weight`` x Kimi k1.5's group length reward (two TRL reward functions);
* ``o1pruner``: O1-Pruner's ``(mean_len / len - 1) + lambda (correct - mean_acc)``, the means taken from
  ``o1pruner_samples`` samples of the base per question (``o1pruner_reference: base``, as the paper) or from the
  group itself (``group``);
* ``shorterbetter``: ``alpha correct - beta |len - shortest correct length in the group|``;
* ``l1``: the prompt asks "Think for N tokens." (N drawn from ``l1_budgets`` per question), reward
  ``correct - a |len - N|``; the final evaluation asks for ``l1_eval_budget`` tokens.

TRL normalises rewards within each group into advantages and takes clipped policy-gradient steps. Deliberately
left out: O1-Pruner's offline PPO on a fixed sample set (here it is online GRPO with its reward), and the
curricula and length schedules of the papers.
"""

from __future__ import annotations

import random
import statistics

from gan_cot.models import render_prompt
from gan_cot.rewards import GroupRewardFunc, l1_prompt
from gan_cot_lab.baselines.common import Context, Outcome, SuffixTask, sample_chains, train_and_save, trl_args


def reference_means(ctx: Context, examples: list) -> tuple[list[float], list[float], int]:
    """Per question, the base's mean completion length and accuracy over ``grpo.o1pruner_samples`` samples."""
    g = ctx.cfg.grpo
    groups = sample_chains(ctx, examples, g.o1pruner_samples, g.temperature, g.max_completion_length)
    lens = [statistics.fmean(c.num_tokens for c in group) for group in groups]
    accs = [statistics.fmean(float(ctx.task.verify(c.text, ex)) for c in group) for ex, group in zip(examples, groups)]
    return lens, accs, sum(len(group) for group in groups)


def reward_funcs(ctx: Context, examples: list) -> tuple[list[GroupRewardFunc], list[float]]:
    """The TRL reward functions for ``grpo.reward`` and their weights."""
    g = ctx.cfg.grpo
    tok = ctx.tokenizer
    stop = {tok.eos_token_id, tok.pad_token_id} - {None}

    def is_correct(text: str, row: dict) -> bool:
        return ctx.task.verify(text, examples[row["row"]])

    common = dict(is_correct=is_correct, group_size=g.num_generations, stop_ids=stop)
    if g.reward == "kimi":
        funcs = [GroupRewardFunc("correct", **common), GroupRewardFunc("kimi", log_stats=False, **common)]
        return funcs, [1.0, g.kimi_weight]
    if g.reward == "o1pruner":
        columns = {"mean_len": "ref_mean_len", "mean_acc": "ref_mean_acc"} if g.o1pruner_reference == "base" else {}
        return [GroupRewardFunc("o1pruner", columns=columns, lam=g.o1pruner_lambda, **common)], [1.0]
    if g.reward == "shorterbetter":
        fn = GroupRewardFunc(
            "shorterbetter", alpha=g.shorterbetter_alpha, beta=g.shorterbetter_beta,
            no_correct=g.shorterbetter_no_correct, **common,
        )  # fmt: skip
        return [fn], [1.0]
    return [GroupRewardFunc("l1", columns={"budget": "budget"}, a=g.l1_a, **common)], [1.0]


def train(ctx: Context) -> Outcome:
    from datasets import Dataset
    from trl import GRPOConfig, GRPOTrainer

    cfg = ctx.cfg
    g = cfg.grpo
    examples = ctx.train_examples()
    rng = random.Random(cfg.seed)
    rows: dict[str, list] = {"prompt": [], "row": []}
    if g.reward == "l1":
        rows["budget"] = [rng.choice(g.l1_budgets) for _ in examples]
    for i, ex in enumerate(examples):
        question = ctx.task.prompt(ex)
        if g.reward == "l1":
            question = l1_prompt(question, rows["budget"][i])
        rows["prompt"].append(render_prompt(ctx.tokenizer, question))
        rows["row"].append(i)
    reference_rollouts = 0
    if g.reward == "o1pruner" and g.o1pruner_reference == "base":
        rows["ref_mean_len"], rows["ref_mean_acc"], reference_rollouts = reference_means(ctx, examples)
        ctx.log(
            f"[grpo] base reference: {statistics.fmean(rows['ref_mean_len']):.1f} tokens, "
            f"accuracy {statistics.fmean(rows['ref_mean_acc']):.3f}"
        )
    funcs, weights = reward_funcs(ctx, examples)
    args = GRPOConfig(
        **trl_args(cfg, ctx.out),
        num_generations=g.num_generations,
        max_completion_length=g.max_completion_length,
        temperature=g.temperature,
        beta=g.beta,
        reward_weights=weights,
        log_completions=False,
    )
    trainer = GRPOTrainer(
        model=ctx.model,
        reward_funcs=funcs,
        args=args,
        train_dataset=Dataset.from_dict(rows),
        processing_class=ctx.tokenizer,
        peft_config=cfg.lora.peft(),
    )
    eval_task = SuffixTask(ctx.task, lambda q: l1_prompt(q, g.l1_eval_budget)) if g.reward == "l1" else None
    outcome = train_and_save(ctx, trainer, rollouts=0, metrics={}, eval_task=eval_task)
    seen = funcs[0].completions_seen
    outcome.rollouts = seen + reference_rollouts
    outcome.metrics["train_accuracy"] = funcs[0].correct_seen / max(1, seen)
    return outcome

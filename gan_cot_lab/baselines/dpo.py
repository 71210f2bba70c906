"""Long-to-short DPO (Kimi Team 2025, "Kimi k1.5: Scaling Reinforcement Learning with LLMs").

Sample ``sample.n`` chains per training question from the base. The shortest correct chain (one that ended on
its own) is *chosen*; every wrong chain and every correct chain at least ``dpo.long_ratio`` times longer than
the chosen one is *rejected*. Each (chosen, rejected) pair, at most ``dpo.max_pairs`` per question (wrong
chains first, then the longest), trains a LoRA adapter with TRL's ``DPOTrainer``; the reference is the base
(the adapter switched off).
"""

from __future__ import annotations

import statistics

from gan_cot.models import render_prompt
from gan_cot_lab.baselines.common import BaselineError, Context, Outcome, sample_chains, train_and_save, trl_args
from gan_cot_lab.baselines.srs import shortest_correct


def preference_pairs(task, example, group, long_ratio: float, max_pairs: int) -> list[tuple[str, str]]:
    """(chosen, rejected) chain texts for one question's samples; empty when no pair can be formed."""
    best = shortest_correct(task, example, group)
    if best is None:
        return []
    wrong, long = [], []
    for c in group:
        if not task.verify(c.text, example):
            wrong.append(c)
        elif c.num_tokens >= long_ratio * best.num_tokens and c.text != best.text:
            long.append(c)
    rejected, seen = [], set()
    for c in wrong + sorted(long, key=lambda c: -c.num_tokens):
        if c.text not in seen:
            seen.add(c.text)
            rejected.append(c.text)
    return [(best.text, r) for r in rejected[:max_pairs]]


def train(ctx: Context) -> Outcome:
    from datasets import Dataset
    from trl import DPOConfig, DPOTrainer

    cfg = ctx.cfg
    examples = ctx.train_examples()
    groups = sample_chains(ctx, examples, cfg.sample.n, cfg.sample.temperature, cfg.sample.max_new_tokens)
    rows: dict[str, list] = {"prompt": [], "chosen": [], "rejected": []}
    questions = 0
    for ex, group in zip(examples, groups):
        pairs = preference_pairs(ctx.task, ex, group, cfg.dpo.long_ratio, cfg.dpo.max_pairs)
        questions += bool(pairs)
        prompt = render_prompt(ctx.tokenizer, ctx.task.prompt(ex))
        for chosen, rejected in pairs:
            rows["prompt"].append(prompt)
            rows["chosen"].append(chosen)
            rows["rejected"].append(rejected)
    if not rows["prompt"]:
        raise BaselineError(
            f"no preference pair from {cfg.sample.n} samples of {len(examples)} questions (a pair needs a correct "
            "chain and a wrong or much longer one); raise sample.n or train_questions, or lower dpo.long_ratio"
        )
    lengths = ctx.tokenizer(rows["chosen"] + rows["rejected"], add_special_tokens=False)["input_ids"]
    n = len(rows["chosen"])
    ctx.log(f"[dpo] {n} pairs from {questions}/{len(examples)} questions")
    args = DPOConfig(**trl_args(cfg, ctx.out), beta=cfg.dpo.beta, max_length=cfg.train.max_length)
    trainer = DPOTrainer(
        model=ctx.model,
        args=args,
        train_dataset=Dataset.from_dict(rows),
        processing_class=ctx.tokenizer,
        peft_config=cfg.lora.peft(),
    )
    return train_and_save(
        ctx,
        trainer,
        rollouts=len(examples) * cfg.sample.n,
        metrics={
            "train_pairs": n,
            "chosen_mean_tokens": statistics.fmean(len(x) for x in lengths[:n]),
            "rejected_mean_tokens": statistics.fmean(len(x) for x in lengths[n:]),
        },
    )

"""Shortest rejection sampling (Kimi Team 2025, "Kimi k1.5: Scaling Reinforcement Learning with LLMs").

Sample ``sample.n`` chains per training question from the base, keep the shortest correct one that ended on
its own (a chain cut by the budget never becomes a target), and fine-tune a LoRA adapter on those
(prompt, chain) pairs with TRL's ``SFTTrainer`` (loss on the chain and its end-of-sequence token only).
Questions with no correct sample are left out.
"""

from __future__ import annotations

import statistics

from gan_cot.models import render_prompt
from gan_cot_lab.baselines.common import BaselineError, Context, Outcome, sample_chains, train_and_save, trl_args


def shortest_correct(task, example, group) -> object | None:
    """The shortest completion of ``group`` that finished and answers ``example`` correctly, else None."""
    right = [c for c in group if c.finished and task.verify(c.text, example)]
    return min(right, key=lambda c: c.num_tokens) if right else None


def train(ctx: Context) -> Outcome:
    from datasets import Dataset
    from trl import SFTConfig, SFTTrainer

    cfg = ctx.cfg
    examples = ctx.train_examples()
    groups = sample_chains(ctx, examples, cfg.sample.n, cfg.sample.temperature, cfg.sample.max_new_tokens)
    prompts, completions, chosen_tokens, sampled_tokens = [], [], [], []
    for ex, group in zip(examples, groups):
        sampled_tokens += [c.num_tokens for c in group]
        best = shortest_correct(ctx.task, ex, group)
        if best is not None:
            prompts.append(render_prompt(ctx.tokenizer, ctx.task.prompt(ex)))
            completions.append(best.text)
            chosen_tokens.append(best.num_tokens)
    if not prompts:
        raise BaselineError(
            f"no correct chain among {cfg.sample.n} samples for any of {len(examples)} questions; "
            "raise sample.n or sample.max_new_tokens, or start from a stronger model"
        )
    ctx.log(
        f"[srs] {len(prompts)}/{len(examples)} questions with a correct sample; shortest correct "
        f"{statistics.fmean(chosen_tokens):.1f} tokens vs {statistics.fmean(sampled_tokens):.1f} sampled"
    )
    dataset = Dataset.from_dict({"prompt": prompts, "completion": completions})
    args = SFTConfig(
        **trl_args(cfg, ctx.out), max_length=cfg.train.max_length, packing=False, completion_only_loss=True
    )
    trainer = SFTTrainer(
        model=ctx.model, args=args, train_dataset=dataset, processing_class=ctx.tokenizer, peft_config=cfg.lora.peft()
    )
    return train_and_save(
        ctx,
        trainer,
        rollouts=len(examples) * cfg.sample.n,
        metrics={
            "train_examples": len(prompts),
            "train_target_tokens": statistics.fmean(chosen_tokens),
            "sampled_mean_tokens": statistics.fmean(sampled_tokens),
        },
    )

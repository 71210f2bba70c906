"""System 2 to System 1 distillation (Yu et al. 2024, "Distilling System 2 into System 1").

The System 2 method is the base writing its chain of thought. Sample ``sample.n`` chains per training question,
read each one's final answer, and keep a question when its most common answer comes from at least
``distill.min_agreement`` of its samples (output self-consistency: no gold answer is read, the paper's point being
that it needs no labels). A LoRA adapter is then fine-tuned to write that answer with no chain at all: the
completion is the chain format's end of thinking and the answer (``#### 12`` for ``format: hash``). The paper's
second filter, self-consistency under a perturbed input, needs a perturbation that keeps the answer; it is left out.

The task's verifier is read only for a figure: ``train_label_accuracy``, how often the kept majority answers are right.
"""

from __future__ import annotations

import statistics
from collections import Counter

from gan_cot_lab.baselines.common import BaselineError, Context, Outcome, sample_chains
from gan_cot_lab.baselines.phases import attach_lora, encode, finish, fit_pairs


def majority_answer(task, group) -> tuple[str | None, float]:
    """The most common final answer of a group of completions and the fraction of the group that gives it (a chain
    cut by the budget, or one without an answer, counts against the agreement)."""
    answers = Counter(task.format.extract_answer(c.text) for c in group if c.finished)
    answers.pop(None, None)
    if not answers:
        return None, 0.0
    answer, count = answers.most_common(1)[0]
    return answer, count / len(group)


def train(ctx: Context) -> Outcome:
    cfg = ctx.cfg
    task = ctx.task
    examples = ctx.train_examples()
    groups = sample_chains(ctx, examples, cfg.sample.n, cfg.sample.temperature, cfg.sample.max_new_tokens)
    questions, completions, right, agreement = [], [], [], []
    for ex, group in zip(examples, groups):
        answer, share = majority_answer(task, group)
        agreement.append(share)
        if answer is not None and share >= cfg.distill.min_agreement:
            questions.append(task.prompt(ex))
            completions.append(task.format.render([], answer))
            right.append(task.verify(completions[-1], ex))
    if not completions:
        raise BaselineError(
            f"no question of {len(examples)} has {cfg.distill.min_agreement:g} of its {cfg.sample.n} samples agreeing "
            "on an answer; lower distill.min_agreement, raise sample.max_new_tokens, or start from a stronger model"
        )
    ctx.log(
        f"[system1-distill] {len(completions)}/{len(examples)} questions self-consistent; their majority answers are "
        f"right for {statistics.fmean(right):.3f}"
    )
    model = attach_lora(ctx)
    fit_pairs(ctx, model, encode(ctx, questions, completions), "distill")
    metrics = {
        "train_examples": len(completions),
        "train_label_accuracy": statistics.fmean(right),
        "sampled_agreement": statistics.fmean(agreement),
        "sampled_mean_tokens": statistics.fmean(c.num_tokens for group in groups for c in group),
    }
    return finish(ctx, model, rollouts=len(examples) * cfg.sample.n, metrics=metrics)

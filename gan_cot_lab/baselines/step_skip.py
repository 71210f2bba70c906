"""Iterative step skipping (Liu et al. 2024, "Can Language Models Learn to Skip Steps?").

- **Initialisation** (round 0): a LoRA adapter on the base learns to follow a step count: every training question's
  reference chain (``k`` thinking steps in the task's chain format) is trained twice, once after the question with
  ``Answer in k steps.`` and once after the plain question.
- **Rounds** 1..``step_skip.rounds``: the last round's model is asked, per training question, for ``step_skip.skip``
  steps fewer than the question's shortest chain so far (at least one); of its ``sample.n`` samples, those that end,
  verify (the task's checker) and have fewer steps than that chain are the skipped solutions, and each question's
  shortest joins the data. The round's data mixes the full chains with each question's shortest verified chain so
  far (both with their step counts and plain), and a fresh adapter is trained on it from the base, as the paper
  trains a new model on each round's mixed data.

The final evaluation asks the plain question of the last round's model, which has seen full and skipped chains for
the same questions and picks its own length. The method's figures, per round ``r``: accuracy, tokens and thinking
steps per answer on ``step_skip.report_n`` test questions (``round_{r}_accuracy``, ``round_{r}_mean_tokens``,
``round_{r}_steps``), the questions that got a shorter chain (``round_{r}_skipped``) and the mean steps of each
question's shortest chain in the round's data (``round_{r}_data_steps``).
"""

from __future__ import annotations

import statistics

from gan_cot_lab.baselines.common import Context, Outcome, SuffixTask
from gan_cot_lab.baselines.phases import (
    attach_lora,
    count_steps,
    detach_lora,
    encode,
    finish,
    fit_pairs,
    report,
    sample_from,
)


def with_count(question: str, k: int) -> str:
    return f"{question} Answer in {k} steps."


def shorter_chain(task, example, group, steps: int) -> str | None:
    """The completion of ``group`` with the fewest thinking steps (then tokens) among those that ended, verify and
    have fewer than ``steps`` steps; None when there is none."""
    ok = [c for c in group if c.finished and task.verify(c.text, example) and count_steps(task, c.text) < steps]
    return min(ok, key=lambda c: (count_steps(task, c.text), c.num_tokens)).text if ok else None


def mixed_data(ctx: Context, examples: list, chains: dict[int, list[str]]):
    """(ids, prompt length) pairs: every chain of every question, after the question with its step count and after
    the plain question."""
    task = ctx.task
    questions, completions = [], []
    for i, texts in chains.items():
        q = task.prompt(examples[i])
        for text in texts:
            questions += [with_count(q, count_steps(task, text)), q]
            completions += [text, text]
    return encode(ctx, questions, completions)


def train(ctx: Context) -> Outcome:
    cfg = ctx.cfg
    task = ctx.task
    examples = ctx.train_examples()
    full = {i: task.reference(ex) for i, ex in enumerate(examples)}
    shortest = dict(full)
    metrics: dict[str, float] = {}
    model, rollouts = None, 0
    for r in range(cfg.step_skip.rounds + 1):
        if r:
            want = {
                task.prompt(ex): max(1, count_steps(task, shortest[i]) - cfg.step_skip.skip)
                for i, ex in enumerate(examples)
            }
            asking = SuffixTask(task, lambda q, want=want: with_count(q, want[q]))
            groups = sample_from(ctx, model, asking, examples)
            rollouts += sum(len(g) for g in groups)
            found = 0
            for i, (ex, group) in enumerate(zip(examples, groups)):
                text = shorter_chain(task, ex, group, count_steps(task, shortest[i]))
                if text is not None:
                    shortest[i], found = text, found + 1
            metrics[f"round_{r}_skipped"] = found
            ctx.log(f"[step-skip] round {r}: {found}/{len(examples)} questions got a shorter verified chain")
            detach_lora(model)
        chains = {i: [full[i]] + ([shortest[i]] if shortest[i] != full[i] else []) for i in full}
        metrics[f"round_{r}_data_steps"] = statistics.fmean(count_steps(task, t) for t in shortest.values())
        model = attach_lora(ctx)
        fit_pairs(ctx, model, mixed_data(ctx, examples, chains), f"round {r}", step0=r * cfg.train.steps)
        metrics |= report(ctx, model, task, f"round_{r}", cfg.step_skip.report_n)
    return finish(ctx, model, rollouts=rollouts, metrics=metrics)

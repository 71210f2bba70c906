"""Automatic step labels from rollouts of a policy: no human annotation.

For a chain of n steps, the policy continues from every prefix ``steps[:j]`` (j = 0..n) k times. With
``s_j`` the success rate from prefix j and ``r_j`` the mean number of tokens the policy still writes
before its answer, step i (between prefix i and prefix i+1) is labeled:

* **wrong** when ``s_i - s_{i+1} >= drop``: from the prefix ending at the step, rollouts reach the right
  answer far less often than from the prefix before it (Math-Shepherd's completion-based label, made
  relative). The soft label is the drop itself, clipped to [0, 1].
* **useful** when the step makes progress: ``s_{i+1} - s_i >= drop`` (it repairs the chain), or the
  policy needs at least ``progress`` x the step's own tokens fewer to finish once the step is there
  (``r_i - r_{i+1}``): the step did work the policy would otherwise have to do.
* **redundant** otherwise: deleting the step from the prefix leaves both the success rate and the
  remaining work unchanged within the tolerances (PRM800K's "neutral" step).

The labels are only as good as the policy's judgement: a policy that itself writes redundant steps
counts them as work, and a policy that never saw a redundant step in its context can be thrown by one
(it then looks wrong). The labeler policy for the ledger task is therefore trained on
:func:`labeler_pairs`: the prefix of a chain that contains redundant (never wrong) steps is given, and the
policy learns to continue it with the minimal remaining steps only
(``python scripts/prepare_base.py --init models/ledger-verbose-base --chains labeler``). The agreement
with gold labels is measured by ``scripts/label_agreement.py``.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, replace

from gan_cot.generation import Sampling, generate


@dataclass
class AutoLabelConfig:
    rollouts: int = 4  # k continuations per prefix (greedy when 1)
    temperature: float = 1.0
    drop: float = 0.5  # success-rate change that makes a step wrong (or useful, when it rises)
    progress: float = 0.5  # fraction of a step's own tokens the remaining work must fall by to be useful
    max_new_tokens: int = 160  # a continuation's thinking budget, then the end of thinking is forced
    max_answer_tokens: int = 8
    batch_size: int = 64


@dataclass
class AutoLabels:
    labels: list[str]
    soft_wrong: list[float]  # the success-rate drop at each step, clipped to [0, 1]
    success: list[float]  # s_0 .. s_n
    remaining: list[float]  # r_0 .. r_n
    continuations: int = 0  # the labelling's cost: continuations generated for this chain ((n + 1) x rollouts)
    tokens: int = 0  # and the tokens they wrote


def labeler_pairs(tokenizer, task, examples, seed: int = 0) -> tuple[list[str], list[str]]:
    """SFT pairs for the ledger labeler policy: (rendered question + a prefix of a chain written at a random
    verbosity without wrong steps, the useful steps that remain + the answer line).

    The prefix is part of the prompt, so the loss is only on the concise continuation: the policy reads
    redundant steps without being thrown by them and never writes one itself.
    """
    from gan_cot.models import render_prompt
    from gan_cot.tasks.ledger import Verbosity, parse_problem, write_chains

    rng = random.Random(f"labeler-pairs-{seed}")
    prompts, completions = [], []
    for ex in examples:
        problem = parse_problem(ex.question)
        steps, labels, _, _ = write_chains(problem, rng, replace(Verbosity.random(rng), wrong=0.0))
        j = rng.randint(0, len(steps))
        pre = "".join(step + task.separator for step in steps[:j])
        rest = [step for step, lab in zip(steps[j:], labels[j:]) if lab == "useful"]
        prompts.append(render_prompt(tokenizer, task.prompt(ex)) + pre)
        completions.append(task.format.render(rest, ex.answer))
    return prompts, completions


def prefix_text(steps: list[str], separator: str) -> str:
    """The chain text a continuation starts from after ``steps`` (each followed by the separator; "" for none)."""
    return "".join(step + separator for step in steps)


def prefixes(steps: list[str], separator: str) -> list[str]:
    """The chain text a continuation starts from, for every prefix length 0..n (ends with a separator)."""
    return [prefix_text(steps[:j], separator) for j in range(len(steps) + 1)]


def label_chains(policy, tokenizer, task, examples, chains: list[list[str]], cfg: AutoLabelConfig | None = None,
                 progress_bar=None) -> list[AutoLabels]:  # fmt: skip
    """Automatic labels for ``chains[i]`` written for ``examples[i]``."""
    cfg = cfg or AutoLabelConfig()
    sep = task.separator
    jobs = []  # (chain index, prefix index, question, prefix text)
    for c, (ex, steps) in enumerate(zip(examples, chains)):
        for j, pre in enumerate(prefixes(steps, sep)):
            jobs.append((c, j, task.prompt(ex), pre))
    sampling = Sampling(
        n=cfg.rollouts, do_sample=cfg.rollouts > 1, temperature=cfg.temperature, max_new_tokens=cfg.max_new_tokens,
        fmt=task.format, max_answer_tokens=cfg.max_answer_tokens, batch_size=cfg.batch_size,
    )  # fmt: skip
    groups = generate(
        policy, tokenizer, [q for _, _, q, _ in jobs], sampling, prefixes=[p for _, _, _, p in jobs],
        progress=progress_bar,
    )  # fmt: skip
    success = [[0.0] * (len(s) + 1) for s in chains]
    remaining = [[0.0] * (len(s) + 1) for s in chains]
    cost = [[0, 0] for _ in chains]  # continuations, tokens
    for (c, j, _, pre), group in zip(jobs, groups):
        cost[c][0] += len(group)
        cost[c][1] += sum(g.num_tokens for g in group)
        hits = [task.verify(pre + g.text, examples[c]) for g in group]
        success[c][j] = sum(hits) / len(hits)
        # work left before the answer line: tokens of the continuation's chain part
        remaining[c][j] = sum(_chain_tokens(tokenizer, g.text, task.format) for g in group) / len(group)
    out = []
    for c, steps in enumerate(chains):
        step_tokens = [len(tokenizer(step + sep, add_special_tokens=False)["input_ids"]) for step in steps]
        labels, soft = labels_from_rollouts(success[c], remaining[c], step_tokens, cfg)
        out.append(AutoLabels(labels, soft, success[c], remaining[c], *cost[c]))
    return out


def labels_from_rollouts(success: list[float], remaining: list[float], step_tokens: list[int], cfg: AutoLabelConfig):
    """The decision rule: per-prefix success rates s_0..s_n and remaining work r_0..r_n -> labels, soft wrong."""
    labels, soft = [], []
    for i, n_tok in enumerate(step_tokens):
        fall = success[i] - success[i + 1]
        soft.append(min(1.0, max(0.0, fall)))
        if fall >= cfg.drop:
            labels.append("wrong")
        elif -fall >= cfg.drop or remaining[i] - remaining[i + 1] >= cfg.progress * n_tok:
            labels.append("useful")
        else:
            labels.append("redundant")
    return labels, soft


def _chain_tokens(tokenizer, completion: str, fmt) -> int:
    return len(tokenizer(fmt.thinking(completion), add_special_tokens=False)["input_ids"])

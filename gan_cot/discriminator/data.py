"""Step-labeled chains for training and scoring discriminators.

* ledger: the generator's gold labels, on chains written at random verbosity (terse to very verbose,
  with and without other people's updates and wrong steps), so the discriminator also sees the kind of
  compressed chains a policy writes during training.
* gsm8k: reference solution lines are ``useful``; synthetic perturbations add ``redundant`` steps
  (a duplicated step, a restatement of an earlier result) and ``wrong`` steps (an altered number in
  a result, which the calculator check then flags); steps whose calculator annotation fails are ``wrong``.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass


@dataclass
class StepRecord:
    question: str
    steps: list[str]
    labels: list[str]
    id: str = ""


def ledger_records(task, split: str, n: int, seed: int = 0, random_verbosity: bool = True) -> list[StepRecord]:
    """``n`` ledger chains with gold labels; with ``random_verbosity`` each chain is rewritten at a random mix."""
    from gan_cot.tasks.ledger import Verbosity, parse_problem, write_chains

    rng = random.Random(f"ledger-records-{seed}-{split}")
    out = []
    for ex in task.examples(split, n):
        if random_verbosity:
            problem = parse_problem(ex.question)
            steps, labels, _, _ = write_chains(problem, rng, Verbosity.random(rng))
        else:
            steps, labels = ex.steps, ex.labels
        out.append(StepRecord(ex.question, list(steps), list(labels), ex.id))
    return out


_RESULT_RE = re.compile(r"(=\s*\$?)(\d+(?:\.\d+)?)")


def perturb_gsm8k(question: str, steps: list[str], rng: random.Random) -> tuple[list[str], list[str]]:
    """Reference steps (useful) with one or two synthetic redundant / wrong steps mixed in."""
    steps = list(steps)
    labels = ["useful"] * len(steps)
    for _ in range(rng.choice((1, 1, 2))):
        kind = rng.choice(("duplicate", "restate", "alter"))
        i = rng.randrange(len(steps))
        if kind == "duplicate":
            steps.insert(i + 1, steps[i])
            labels.insert(i + 1, "redundant")
        elif kind == "restate":
            nums = re.findall(r"\d+(?:\.\d+)?", steps[i])
            if not nums:
                continue
            steps.insert(i + 1, f"So far we have {nums[-1]}.")
            labels.insert(i + 1, "redundant")
        else:
            m = list(_RESULT_RE.finditer(steps[i]))
            if not m or labels[i] != "useful":
                continue
            last = m[-1]
            value = float(last.group(2))
            new = value + rng.choice((-3, -2, -1, 1, 2, 3, 10))
            text = f"{new:g}" if new != int(new) else str(int(new))
            steps[i] = steps[i][: last.start(2)] + text + steps[i][last.end(2) :]
            labels[i] = "wrong"
    return steps, labels


def gsm8k_records(task, split: str, n: int | None, seed: int = 0, perturb: float = 0.8) -> list[StepRecord]:
    """GSM8K chains: references labeled useful (wrong where the calculator check fails), most perturbed."""
    rng = random.Random(f"gsm8k-records-{seed}-{split}")
    out = []
    for ex in task.examples(split, n):
        ok = ex.meta.get("calc_ok") or [None] * len(ex.steps)
        steps = list(ex.steps)
        labels = ["wrong" if flag is False else "useful" for flag in ok]
        if rng.random() < perturb:
            steps, labels = perturb_gsm8k(ex.question, steps, rng)
        out.append(StepRecord(ex.question, steps, labels, ex.id))
    return out


def task_records(task, split: str, n: int | None, seed: int = 0) -> list[StepRecord]:
    if task.name == "ledger":
        return ledger_records(task, split, n or 1000, seed)
    if task.name == "gsm8k":
        return gsm8k_records(task, split, n, seed)
    if hasattr(task, "step_records"):  # a task that writes its own gold-labelled chains (ledger-hard)
        return task.step_records(split, n, seed)
    raise ValueError(f"no step-labeled data for task {task.name!r}; known: ledger, gsm8k")

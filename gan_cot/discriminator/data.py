"""Step-labeled chains for training and scoring discriminators.

* ledger: the generator's gold labels, on chains written at random verbosity (terse to very verbose,
  with and without other people's updates and wrong steps), so the discriminator also sees the kind of
  compressed chains a policy writes during training.
* gsm8k: reference solution lines are ``useful``, except that a line whose calculator annotation fails is
  ``wrong``; synthetic perturbations add ``redundant`` steps (a repeated line, a restatement of an earlier
  result, a check of an earlier calculation) and ``wrong`` steps (a result altered by a few units, which a
  calculator would flag). A calculator's ``wrong`` is never reset by a perturbation.
"""

from __future__ import annotations

import random
import re

from gan_cot.tasks.base import StepRecord  # noqa: F401 (imported from here by the discriminator's code)


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
_CALC_RE = re.compile(r"([\d$.(][\d$.,+\-*/x() ]*?)\s*=\s*\$?(\d+(?:\.\d+)?)")
RESTATEMENTS = ("So far we have {n}.", "That gives {n}.", "So the number so far is {n}.", "We now know it is {n}.",
                "Remember, this is {n}.", "This means we have {n}.")  # fmt: skip
PROBE_TEXT = "Tom has 12 apples and buys 3 bags of 4 apples. 3 * 4 = 12 apples. He has 12 + 12 = 24 apples."
CHECKS = ("Check: {e} = {n}.", "Let's double-check: {e} = {n}.", "Indeed, {e} = {n}.", "To verify, {e} is {n}.")


def perturb_gsm8k(
    question: str, steps: list[str], rng: random.Random, labels: list[str] | None = None
) -> tuple[list[str], list[str]]:
    """Steps (``labels``, default all useful) with one or two synthetic redundant / wrong steps mixed in: a line
    repeated later, a restatement of a result, a check of a calculation (redundant), an altered result (wrong)."""
    steps = list(steps)
    labels = list(labels) if labels is not None else ["useful"] * len(steps)

    def insert(at: int, text: str) -> None:
        steps.insert(at, text)
        labels.insert(at, "redundant")

    for _ in range(rng.choice((1, 1, 2))):
        kind = rng.choice(("duplicate", "restate", "check", "alter", "alter"))
        i = rng.randrange(len(steps))
        later = i + 1 + rng.randrange(len(steps) - i)  # right after step i, or after a later step
        if kind == "duplicate":
            insert(later, steps[i])
        elif kind == "restate":
            nums = re.findall(r"\d+(?:\.\d+)?", steps[i])
            if nums and labels[i] != "wrong":
                insert(i + 1, rng.choice(RESTATEMENTS).format(n=nums[-1]))
        elif kind == "check":
            calc = list(_CALC_RE.finditer(steps[i]))
            if calc and labels[i] != "wrong":
                insert(later, rng.choice(CHECKS).format(e=calc[-1].group(1).strip(), n=calc[-1].group(2)))
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
        if not ex.steps:  # an answer-only record has no chain to label
            continue
        ok = ex.meta.get("calc_ok") or [None] * len(ex.steps)
        steps = list(ex.steps)
        labels = ["wrong" if flag is False else "useful" for flag in ok]
        if rng.random() < perturb:
            steps, labels = perturb_gsm8k(ex.question, steps, rng, labels)
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

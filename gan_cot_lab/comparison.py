"""Comparing methods over seeds: runs grouped by method, a bootstrap 95% interval per figure, and the differences
the intervals allow.

Every run contributes its final evaluation's per-question rows (correct, tokens; :func:`gan_cot.tracking.log_eval_rows`)
and its base figures on the same questions. For a method with S seed runs on the same N questions, one bootstrap
replicate draws S seeds and N questions with replacement (the same questions for every drawn seed) and takes the
mean over the drawn seeds of each run's accuracy, mean tokens and AES on the drawn questions; the interval is the
replicates' 2.5th to 97.5th percentile. It covers both the question sample and the seed-to-seed spread (with one
seed, only the former). The point estimate is the mean over seeds on all N questions.

Two methods differ on a figure only where their intervals do not overlap (a conservative rule: overlapping
intervals are reported as "no difference", even where a paired test might separate them). AES is taken against
each run's base figures, a constant of the comparison (every method is scored against the same base on the same
questions).

An interval comes only from per-question outcomes. Runs are first split by the questions they were scored on
(:class:`QuestionSet`: the task and the number of questions; a run without rows is in a set of its own), and only
methods of the same set are compared or put on one Pareto front. A method whose runs logged no rows is shown with
its mean over seeds and no interval, and is compared with nothing.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from gan_cot.efficiency import aes, pareto_front
from gan_cot.intervals import Interval, QuestionSet, RunFigures, bootstrap

FIGURES = ("accuracy", "tokens", "aes")
ORACLE = "oracle"  # the limit row's method (scripts/oracle.py)
BETTER = {"accuracy": 1, "tokens": -1, "aes": 1}  # +1: higher is better, -1: lower is better


@dataclass
class MethodSummary:
    method: str
    runs: list[RunFigures]
    figures: dict[str, Interval] = field(default_factory=dict)
    questions: QuestionSet = QuestionSet(None, None)
    tokens_vs_minimal: float | None = None
    pareto: bool = False

    @property
    def seeds(self) -> list:
        return sorted({r.seed for r in self.runs}, key=str)

    @property
    def n_questions(self) -> int | None:
        return self.questions.n

    @property
    def has_rows(self) -> bool:
        """Its figures have intervals (every run logged its per-question rows)."""
        return self.questions.n is not None


def group_by_method(runs: Sequence[RunFigures]) -> dict[str, list[RunFigures]]:
    """Runs by method (methods in name order, the oracle last); a seed that ran twice keeps its first run (pass them
    newest first)."""
    groups: dict[str, list[RunFigures]] = {}
    for r in sorted(runs, key=lambda r: (r.method == ORACLE, r.method)):
        group = groups.setdefault(r.method, [])
        if r.seed is None or all(x.seed != r.seed for x in group):
            group.append(r)
    return groups


def default_reference(methods: Sequence[str]) -> str | None:
    """The method the others are marked against when none is named: gan-cot's default, else the first gan-cot one,
    else the first."""
    ours = [m for m in methods if m.startswith("gan-cot")]
    for name in ("gan-cot",):
        if name in methods:
            return name
    return (ours or list(methods) or [None])[0]


def _point(runs: list[RunFigures]) -> dict[str, Interval]:
    """The mean over seeds of each run's own figures, without an interval (runs without per-question rows)."""

    def mean(values) -> Interval:
        values = [v for v in values if v is not None]
        return Interval(float(np.mean(values)) if values else None, None, None)

    return {
        "accuracy": mean(r.accuracy for r in runs),
        "tokens": mean(r.tokens for r in runs),
        "aes": mean(aes(r.accuracy, r.tokens, r.base_accuracy, r.base_tokens) for r in runs),
    }


def summarize(runs: Sequence[RunFigures], n_boot: int = 2000, seed: int = 0) -> list[MethodSummary]:
    """One :class:`MethodSummary` per question set and method (sets with rows first, the largest first), its figures
    filled (intervals only from per-question rows) and the Pareto front of the means of each set marked."""
    by_set: dict[QuestionSet, list[RunFigures]] = {}
    for r in runs:
        by_set.setdefault(r.questions, []).append(r)
    out = []
    for questions in sorted(by_set, key=lambda q: (q.n is None, -(q.n or 0), q.task or "")):
        summaries = []
        for method, group in group_by_method(by_set[questions]).items():
            figures = bootstrap(group, n_boot, seed=seed) if questions.n is not None else _point(group)
            s = MethodSummary(method, group, figures, questions=questions)
            tvm = [r.tokens_vs_minimal for r in group if r.tokens_vs_minimal is not None]
            s.tokens_vs_minimal = float(np.mean(tvm)) if tvm else None
            summaries.append(s)
        front = set(pareto_front([(m.figures["tokens"].mean, m.figures["accuracy"].mean) for m in summaries]))
        for i, m in enumerate(summaries):
            m.pareto = i in front and questions.n is not None
        out += summaries
    return out


def question_warnings(summaries: Sequence[MethodSummary]) -> list[str]:
    """What a reader must know before reading the table side by side, one line each: runs without per-question rows
    (no interval, compared with nothing), runs scored on question sets of different tasks or sizes (compared only
    within a set), and runs of one set and seed that answered different questions."""
    out = []
    sets = list(dict.fromkeys(m.questions for m in summaries if m.has_rows))
    if len(sets) > 1:
        listed = "; ".join(f"{q.label}: " + ", ".join(m.method for m in summaries if m.questions == q) for q in sets)
        out.append(f"runs scored on {len(sets)} different question sets, compared only within a set ({listed})")
    bare = [r for m in summaries if not m.has_rows for r in m.runs]
    if bare:
        names = ", ".join(f"{r.method} seed {'-' if r.seed is None else r.seed} ({r.run_id[:8]})" for r in bare)
        out.append(f"runs without per-question rows ({len(bare)}), shown without an interval and compared with "
                   f"nothing: {names}")  # fmt: skip
    for q in sets:
        by_seed: dict = {}
        for m in summaries:
            if m.questions == q:
                for r in m.runs:
                    by_seed.setdefault(r.seed, {}).setdefault(frozenset(row["id"] for row in r.rows), []).append(r)
        for s, groups in by_seed.items():
            if len(groups) > 1:
                methods = " / ".join(",".join(r.method for r in g) for g in groups.values())
                out.append(f"{q.label}, seed {s}: runs answered different questions ({methods}); their difference "
                           "mixes questions with methods")  # fmt: skip
    return out


def compare(a: MethodSummary, b: MethodSummary, figure: str) -> int | None:
    """+1 when ``a`` is better than ``b`` on ``figure`` beyond both intervals, -1 when worse, 0: no difference; None
    when they cannot be compared (different question sets, or a figure without an interval)."""
    x, y = a.figures[figure], b.figures[figure]
    if a.questions != b.questions or None in (x.mean, y.mean, x.lo, y.lo):
        return None
    if x.overlaps(y):
        return 0
    return BETTER[figure] * (1 if x.mean > y.mean else -1)


def differences(summaries: Sequence[MethodSummary]) -> list[dict]:
    """Every pair of methods and figure where the intervals separate them: ``{"better", "worse", "figure"}``."""
    out = []
    for i, a in enumerate(summaries):
        for b in summaries[i + 1 :]:
            for figure in FIGURES:
                sign = compare(a, b, figure)
                if sign:
                    better, worse = (a, b) if sign > 0 else (b, a)
                    out.append(
                        {
                            "better": better.method,
                            "worse": worse.method,
                            "figure": figure,
                            "questions": a.questions.label,
                        }
                    )
    return out

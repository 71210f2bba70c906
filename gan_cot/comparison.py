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
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from gan_cot.efficiency import aes, pareto_front

FIGURES = ("accuracy", "tokens", "aes")
ORACLE = "oracle"  # the limit row's method (scripts/oracle.py)
BETTER = {"accuracy": 1, "tokens": -1, "aes": 1}  # +1: higher is better, -1: lower is better


@dataclass
class RunFigures:
    """One finished run: its method and seed, base figures, and the per-question rows of its final evaluation."""

    method: str
    seed: int | None
    run_id: str
    accuracy: float | None
    tokens: float | None
    base_accuracy: float | None = None
    base_tokens: float | None = None
    tokens_vs_minimal: float | None = None
    rows: list[dict] | None = None  # id, correct, tokens (difficulty where known)


@dataclass(frozen=True)
class Interval:
    mean: float | None
    lo: float | None
    hi: float | None

    def overlaps(self, other: Interval) -> bool:
        return None in (self.lo, self.hi, other.lo, other.hi) or not (self.hi < other.lo or other.hi < self.lo)

    def as_dict(self) -> dict:
        return {"mean": self.mean, "lo": self.lo, "hi": self.hi}


@dataclass
class MethodSummary:
    method: str
    runs: list[RunFigures]
    figures: dict[str, Interval] = field(default_factory=dict)
    n_questions: int = 0
    tokens_vs_minimal: float | None = None
    pareto: bool = False

    @property
    def seeds(self) -> list:
        return sorted({r.seed for r in self.runs}, key=str)

    @property
    def approximate(self) -> bool:
        """Some run has no per-question rows: its questions are rebuilt from its aggregates (see :func:`_matrix`)."""
        return any(r.rows is None for r in self.runs)


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


def _matrix(runs: list[RunFigures]) -> tuple[np.ndarray, np.ndarray]:
    """``correct`` and ``tokens`` as [runs, questions] arrays over the questions every run with rows answered.

    A run without rows (logged before rows were kept) is rebuilt from its aggregates: round(accuracy x N) correct
    answers and its mean tokens on every question; its intervals then miss the per-question spread of tokens.
    """
    with_rows = [r for r in runs if r.rows]
    ids = None
    for r in with_rows:
        mine = [row["id"] for row in r.rows]
        ids = mine if ids is None else [i for i in ids if i in set(mine)]
    n = len(ids) if ids is not None else 500
    correct, tokens = np.zeros((len(runs), n)), np.zeros((len(runs), n))
    for k, r in enumerate(runs):
        if r.rows:
            by_id = {row["id"]: row for row in r.rows}
            correct[k] = [float(by_id[i]["correct"]) for i in ids]
            tokens[k] = [float(by_id[i]["tokens"]) for i in ids]
        else:
            correct[k, : int(round((r.accuracy or 0.0) * n))] = 1.0
            tokens[k] = r.tokens or 0.0
    return correct, tokens


def _aes_rows(acc: np.ndarray, tok: np.ndarray, runs: list[RunFigures]) -> np.ndarray:
    """AES of every (replicate, run) pair: ``acc`` and ``tok`` are [replicates, runs] (run order of ``runs``)."""
    out = np.full(acc.shape, np.nan)
    for k, r in enumerate(runs):
        for b in range(acc.shape[0]):
            v = aes(float(acc[b, k]), float(tok[b, k]), r.base_accuracy, r.base_tokens)
            out[b, k] = np.nan if v is None else v
    return out


def _own_rows(runs: list[RunFigures]) -> list[tuple[np.ndarray, np.ndarray]] | None:
    """Each run's own (correct, tokens) per question when the runs with rows share no question (a generated task
    draws its questions from the run's seed), else None."""
    with_rows = [r for r in runs if r.rows]
    if len(with_rows) < 2 or set.intersection(*({row["id"] for row in r.rows} for r in with_rows)):
        return None
    n = min(len(r.rows) for r in with_rows)
    out = []
    for r in runs:
        if r.rows:
            out.append(
                (np.array([float(x["correct"]) for x in r.rows]), np.array([float(x["tokens"]) for x in r.rows]))
            )
        else:
            c = np.zeros(n)
            c[: int(round((r.accuracy or 0.0) * n))] = 1.0
            out.append((c, np.full(n, r.tokens or 0.0)))
    return out


def bootstrap(runs: list[RunFigures], n_boot: int = 2000, level: float = 0.95, seed: int = 0) -> dict[str, Interval]:
    """Mean and bootstrap interval of accuracy, tokens and AES over ``runs`` (one method's seeds): see the module
    docstring. Runs that answered the same questions resample the same question indices; runs whose questions differ
    (one set per seed) each resample their own."""
    rng = np.random.default_rng(seed)
    own = _own_rows(runs)
    if own is None:
        correct, tokens = _matrix(runs)
        s, n = correct.shape
        seeds = rng.integers(0, s, size=(n_boot, s)) if s > 1 else np.zeros((n_boot, 1), dtype=int)
        questions = rng.integers(0, n, size=(n_boot, n))
        acc = np.stack([correct[seeds[b]][:, questions[b]].mean(1) for b in range(n_boot)])  # [n_boot, s]
        tok = np.stack([tokens[seeds[b]][:, questions[b]].mean(1) for b in range(n_boot)])
        point_acc, point_tok = correct.mean(1), tokens.mean(1)
    else:
        s = len(runs)
        seeds = rng.integers(0, s, size=(n_boot, s))
        acc, tok = np.zeros((n_boot, s)), np.zeros((n_boot, s))
        for b in range(n_boot):
            for j, k in enumerate(seeds[b]):
                c, t = own[k]
                idx = rng.integers(0, len(c), size=len(c))
                acc[b, j], tok[b, j] = c[idx].mean(), t[idx].mean()
        point_acc, point_tok = np.array([c.mean() for c, _ in own]), np.array([t.mean() for _, t in own])
    drawn = [[runs[k] for k in seeds[b]] for b in range(n_boot)]
    aes_b = np.array([_aes_rows(acc[b : b + 1], tok[b : b + 1], drawn[b]) for b in range(n_boot)])[:, 0]
    full_aes = _aes_rows(point_acc[None], point_tok[None], runs)[0]
    q = [(1 - level) / 2 * 100, (1 + level) / 2 * 100]

    def interval(point: float, reps: np.ndarray) -> Interval:
        reps = reps[np.isfinite(reps)]
        if not np.isfinite(point) or not len(reps):
            return Interval(None, None, None)
        lo, hi = np.percentile(reps, q)
        return Interval(float(point), float(lo), float(hi))

    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # the mean of no AES (a run without base figures) is nan
        return {
            "accuracy": interval(float(point_acc.mean()), acc.mean(1)),
            "tokens": interval(float(point_tok.mean()), tok.mean(1)),
            "aes": interval(float(np.nanmean(full_aes)), np.nanmean(aes_b, axis=1)),
        }


def summarize(runs: Sequence[RunFigures], n_boot: int = 2000, seed: int = 0) -> list[MethodSummary]:
    """One :class:`MethodSummary` per method, its intervals filled and the Pareto front of the means marked."""
    out = []
    for method, group in group_by_method(runs).items():
        own = _own_rows(group)
        n_questions = min(len(c) for c, _ in own) if own else _matrix(group)[0].shape[1]
        s = MethodSummary(method, group, bootstrap(group, n_boot, seed=seed), n_questions=n_questions)
        tvm = [r.tokens_vs_minimal for r in group if r.tokens_vs_minimal is not None]
        s.tokens_vs_minimal = float(np.mean(tvm)) if tvm else None
        out.append(s)
    front = set(pareto_front([(m.figures["tokens"].mean, m.figures["accuracy"].mean) for m in out]))
    for i, m in enumerate(out):
        m.pareto = i in front
    return out


def compare(a: MethodSummary, b: MethodSummary, figure: str) -> int:
    """+1 when ``a`` is better than ``b`` on ``figure`` beyond both intervals, -1 when worse, 0: no difference."""
    x, y = a.figures[figure], b.figures[figure]
    if x.mean is None or y.mean is None or x.overlaps(y):
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
                    out.append({"better": better.method, "worse": worse.method, "figure": figure})
    return out

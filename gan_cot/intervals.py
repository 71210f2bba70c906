"""Bootstrap 95% intervals of a method's accuracy, mean tokens and AES from per-question outcomes over seeds.

For a method with S seed runs on the same N questions, one bootstrap replicate draws S seeds and N questions with
replacement (the same questions for every drawn seed) and takes the mean over the drawn seeds of each run's accuracy,
mean tokens and AES on the drawn questions; the interval is the replicates' 2.5th to 97.5th percentile. It covers both
the question sample and the seed-to-seed spread (with one seed, only the former). The point estimate is the mean over
seeds on all N questions. An interval comes only from per-question rows (:func:`bootstrap` refuses runs without).
A run's own Pareto point (:func:`gan_cot.tracking.pareto_point`) and the comparisons of ``gan_cot_lab.comparison``
both use it.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np

from gan_cot.efficiency import aes


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
    rows: list[dict] | None = None  # id, correct, tokens (difficulty, alpha where known)
    task: str | None = None  # the run's ``task`` tag

    @property
    def questions(self) -> QuestionSet:
        return QuestionSet(self.task, len(self.rows) if self.rows else None)


@dataclass(frozen=True, order=True)
class QuestionSet:
    """What a run was scored on, as far as a comparison can tell: its task and number of questions (``n`` None: the run
    logged no per-question rows). Runs of one set and seed share their questions; a generated task draws each seed's
    own questions, so seeds of one set may differ in which questions, never in how many."""

    task: str | None
    n: int | None

    @property
    def label(self) -> str:
        if self.n is None:
            return "no per-question rows"
        return f"{self.task or 'task not tagged'}, {self.n} questions"


@dataclass(frozen=True)
class Interval:
    mean: float | None
    lo: float | None
    hi: float | None

    def overlaps(self, other: Interval) -> bool:
        return None in (self.lo, self.hi, other.lo, other.hi) or not (self.hi < other.lo or other.hi < self.lo)

    def as_dict(self) -> dict:
        return {"mean": self.mean, "lo": self.lo, "hi": self.hi}


def _paired(runs: list[RunFigures]) -> bool:
    """Whether every run answered the same questions (then a replicate draws the same question indices for all)."""
    return len({frozenset(row["id"] for row in r.rows) for r in runs}) == 1


def _per_question(run: RunFigures, ids: list | None = None) -> tuple[np.ndarray, np.ndarray]:
    """A run's ``correct`` and ``tokens`` per question, in the order of ``ids`` (default: its own)."""
    rows = run.rows if ids is None else [{row["id"]: row for row in run.rows}[i] for i in ids]
    return np.array([float(x["correct"]) for x in rows]), np.array([float(x["tokens"]) for x in rows])


def _aes_rows(acc: np.ndarray, tok: np.ndarray, runs: list[RunFigures]) -> np.ndarray:
    """AES of every (replicate, run) pair: ``acc`` and ``tok`` are [replicates, runs] (run order of ``runs``)."""
    out = np.full(acc.shape, np.nan)
    for k, r in enumerate(runs):
        for b in range(acc.shape[0]):
            v = aes(float(acc[b, k]), float(tok[b, k]), r.base_accuracy, r.base_tokens)
            out[b, k] = np.nan if v is None else v
    return out


def bootstrap(runs: list[RunFigures], n_boot: int = 2000, level: float = 0.95, seed: int = 0) -> dict[str, Interval]:
    """Mean and bootstrap interval of accuracy, tokens and AES over ``runs`` (one method's seeds, every one with its
    per-question rows: ValueError otherwise): see the module docstring. Runs that answered the same questions resample
    the same question indices; runs whose questions differ (one set per seed) each resample their own."""
    missing = [r.run_id for r in runs if not r.rows]
    if missing:
        raise ValueError(f"no interval without per-question rows: runs {', '.join(missing)} have none")
    rng = np.random.default_rng(seed)
    if _paired(runs):
        ids = [row["id"] for row in runs[0].rows]
        correct, tokens = (np.stack(a) for a in zip(*(_per_question(r, ids) for r in runs)))
        s, n = correct.shape
        seeds = rng.integers(0, s, size=(n_boot, s)) if s > 1 else np.zeros((n_boot, 1), dtype=int)
        questions = rng.integers(0, n, size=(n_boot, n))
        acc = np.stack([correct[seeds[b]][:, questions[b]].mean(1) for b in range(n_boot)])  # [n_boot, s]
        tok = np.stack([tokens[seeds[b]][:, questions[b]].mean(1) for b in range(n_boot)])
        point_acc, point_tok = correct.mean(1), tokens.mean(1)
    else:
        own = [_per_question(r) for r in runs]
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

"""What a gate chose, summed up: the mean, spread and range of per-question alphas, and per difficulty level."""

from __future__ import annotations

import statistics


def alpha_stats(alphas: list[float], difficulties: list[int | None]) -> dict:
    """``alpha_mean``, ``alpha_std``, ``alpha_min``, ``alpha_max`` and ``alpha_difficulty`` (difficulty -> mean
    alpha, for the questions whose difficulty the task knows) of per-question alphas."""
    if not alphas:
        return {}
    by_level: dict[int, list[float]] = {}
    for a, d in zip(alphas, difficulties):
        if d is not None:
            by_level.setdefault(int(d), []).append(a)
    return {
        "alpha_mean": statistics.fmean(alphas),
        "alpha_std": statistics.pstdev(alphas),
        "alpha_min": min(alphas),
        "alpha_max": max(alphas),
        "alpha_difficulty": {str(d): statistics.fmean(v) for d, v in sorted(by_level.items())},
    }


def flat_alpha_stats(alphas: list[float], difficulties: list) -> dict:
    """:func:`alpha_stats` as flat float metrics (``alpha_difficulty_{d}``)."""
    stats = alpha_stats(alphas, difficulties)
    per_level = stats.pop("alpha_difficulty", {})
    return {k: float(v) for k, v in stats.items()} | {f"alpha_difficulty_{d}": float(v) for d, v in per_level.items()}

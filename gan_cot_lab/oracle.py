"""The oracle of a task whose chains come at several granularities (ledger-hard): the limit row of every comparison.

For each granularity a LoRA is trained on the task's chains written at it (``scripts/oracle.py``); evaluated
greedily, each gives one row per question (difficulty, correct, tokens). Per difficulty level, the oracle picks the
shortest granularity whose accuracy at that level, on the **validation** split, keeps the base's accuracy there
(within ``tolerance``; where none does, the most accurate one), and answers every **test** question of that level
with that granularity's LoRA. Its (accuracy, tokens) on test is what a policy that knew each question's difficulty,
and had learned every granularity as well as a LoRA can, would reach.

The per-question oracle in hindsight (on each test question the shortest granularity whose LoRA got it right) is
reported beside it as an upper bound no policy can claim: it picks with the answer in hand.
"""

from __future__ import annotations

import statistics
from collections import defaultdict


def by_level(rows: list[dict]) -> dict[int, dict]:
    """Per difficulty level: ``n``, ``accuracy`` and mean ``tokens`` of the rows at that level."""
    levels: dict[int, list[dict]] = defaultdict(list)
    for r in rows:
        levels[int(r["difficulty"])].append(r)
    return {
        d: {
            "n": len(rs),
            "accuracy": statistics.fmean(float(r["correct"]) for r in rs),
            "tokens": statistics.fmean(float(r["tokens"]) for r in rs),
        }
        for d, rs in sorted(levels.items())
    }


def choose(validation: dict[str, list[dict]], base: list[dict], tolerance: float = 0.0) -> dict[int, str]:
    """Per level, the granularity (a key of ``validation``) with the fewest tokens among those whose accuracy keeps
    the base's at that level (``>= base - tolerance``); where none keeps it, the most accurate (fewer tokens on ties)."""
    base_levels = by_level(base)
    levels = {g: by_level(rows) for g, rows in validation.items()}
    choice = {}
    for d, b in base_levels.items():
        stats = {g: lv[d] for g, lv in levels.items() if d in lv}
        keep = [g for g, s in stats.items() if s["accuracy"] >= b["accuracy"] - tolerance]
        if keep:
            choice[d] = min(keep, key=lambda g: stats[g]["tokens"])
        else:
            choice[d] = max(stats, key=lambda g: (stats[g]["accuracy"], -stats[g]["tokens"]))
    return choice


def oracle_rows(test: dict[str, list[dict]], choice: dict[int, str], fallback: str) -> list[dict]:
    """Every test question answered by the granularity chosen for its level (``fallback`` for a level the validation
    split did not have)."""
    index = {g: {r["id"]: r for r in rows} for g, rows in test.items()}
    ids = [r["id"] for r in next(iter(test.values()))]
    out = []
    for i in ids:
        level = int(index[fallback][i]["difficulty"])
        g = choice.get(level, fallback)
        out.append({**index[g][i], "granularity": g})
    return out


def hindsight_rows(test: dict[str, list[dict]], base: list[dict]) -> list[dict]:
    """Per test question, the shortest correct answer among the granularities (the base's answer where none is)."""
    base_by_id = {r["id"]: r for r in base}
    out = []
    for i in base_by_id:
        right = [dict(rows_by[i], granularity=g) for g, rows_by in ((g, {r["id"]: r for r in rs}) for g, rs in test.items())
                 if rows_by[i]["correct"]]  # fmt: skip
        out.append(min(right, key=lambda r: r["tokens"]) if right else {**base_by_id[i], "granularity": "base"})
    return out


def summary(rows: list[dict]) -> dict:
    return {
        "n": len(rows),
        "accuracy": statistics.fmean(float(r["correct"]) for r in rows),
        "tokens": statistics.fmean(float(r["tokens"]) for r in rows),
    }

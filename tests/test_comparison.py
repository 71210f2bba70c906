"""Grouping runs by method and the bootstrap intervals of gan_cot.comparison, on synthetic runs."""

import numpy as np
import pytest

from gan_cot.comparison import Interval, RunFigures, bootstrap, compare, differences, group_by_method, summarize


def _run(method, seed, correct, tokens, base=(1.0, 100.0)):
    rows = [{"id": f"q{i}", "correct": bool(c), "tokens": float(t)} for i, (c, t) in enumerate(zip(correct, tokens))]
    return RunFigures(method, seed, f"{method}-{seed}", float(np.mean(correct)), float(np.mean(tokens)), *base,
                      rows=rows)  # fmt: skip


def test_runs_are_grouped_by_method_one_run_per_seed():
    runs = [_run("a", 0, [1], [5]), _run("b", 0, [0], [5]), _run("a", 1, [1], [5]), _run("a", 0, [0], [9])]
    groups = group_by_method(runs)
    assert list(groups) == ["a", "b"]
    assert [r.seed for r in groups["a"]] == [0, 1]  # the second seed-0 run of a (older) is dropped
    assert groups["a"][0].tokens == 5.0


def test_the_interval_covers_a_known_mean_on_synthetic_data():
    """Three seeds of 300 questions drawn at accuracy 0.7 and 40 +- 10 tokens: the 95% intervals cover the true
    values in about 95% of 40 repetitions, and are about as wide as theory says."""
    rng = np.random.default_rng(0)
    covered_acc = covered_tok = 0
    widths = []
    for rep in range(40):
        runs = [_run("m", s, rng.random(300) < 0.7, rng.normal(40, 10, 300)) for s in range(3)]
        ci = bootstrap(runs, n_boot=300, seed=rep)
        covered_acc += ci["accuracy"].lo <= 0.7 <= ci["accuracy"].hi
        covered_tok += ci["tokens"].lo <= 40 <= ci["tokens"].hi
        widths.append(ci["accuracy"].hi - ci["accuracy"].lo)
    assert covered_acc >= 34 and covered_tok >= 34
    # the questions are resampled once per replicate for all seeds: the spread of one seed's 300, about
    # 2 * 1.96 * sqrt(0.21 / 300) = 0.10 wide
    assert 0.06 < np.mean(widths) < 0.16


def test_seed_spread_widens_the_interval():
    same = [_run("m", s, [1] * 80 + [0] * 20, [40] * 100) for s in range(3)]
    spread = [_run("m", s, [1] * k + [0] * (100 - k), [40] * 100) for s, k in enumerate((60, 80, 100))]
    narrow, wide = bootstrap(same, n_boot=400), bootstrap(spread, n_boot=400)
    assert narrow["accuracy"].mean == pytest.approx(0.8) == wide["accuracy"].mean
    assert wide["accuracy"].hi - wide["accuracy"].lo > narrow["accuracy"].hi - narrow["accuracy"].lo
    assert narrow["tokens"] == Interval(40.0, 40.0, 40.0)
    # AES against the base (1.0, 100 tokens): 0.6 length cut - 5 x 0.2 accuracy drop
    assert narrow["aes"].mean == pytest.approx(0.6 - 5 * 0.2)


def test_differences_only_where_the_intervals_separate():
    rng = np.random.default_rng(1)
    good = [_run("good", s, rng.random(400) < 0.9, rng.normal(30, 5, 400)) for s in range(3)]
    twin = [_run("twin", s, rng.random(400) < 0.9, rng.normal(30, 5, 400)) for s in range(3)]
    bad = [_run("bad", s, rng.random(400) < 0.6, rng.normal(60, 5, 400)) for s in range(3)]
    summaries = summarize(good + twin + bad, n_boot=300)
    by = {m.method: m for m in summaries}
    assert compare(by["good"], by["twin"], "accuracy") == 0  # same distribution: no difference
    assert compare(by["good"], by["bad"], "accuracy") == 1 and compare(by["bad"], by["good"], "tokens") == -1
    found = differences(summaries)
    assert {"better": "good", "worse": "bad", "figure": "aes"} in found
    assert not any({d["better"], d["worse"]} == {"good", "twin"} for d in found)
    assert by["good"].pareto and not by["bad"].pareto


def test_seeds_that_answered_different_questions_each_resample_their_own():
    """A generated task draws its test questions from the run's seed, so the seeds of one method share no question:
    each run resamples its own questions, and the interval still covers the known mean."""
    rng = np.random.default_rng(1)
    covered = 0
    for rep in range(30):
        runs = []
        for s in range(3):
            run = _run("m", s, rng.random(200) < 0.6, rng.normal(50, 8, 200))
            run.rows = [{**row, "id": f"seed{s}-{row['id']}"} for row in run.rows]
            runs.append(run)
        ci = bootstrap(runs, n_boot=300, seed=rep)
        assert None not in (ci["accuracy"].mean, ci["tokens"].lo, ci["aes"].hi)
        assert ci["accuracy"].mean == pytest.approx(np.mean([r.accuracy for r in runs]))
        covered += ci["accuracy"].lo <= 0.6 <= ci["accuracy"].hi
    assert covered >= 25
    (summary,) = summarize(runs, n_boot=200)
    assert summary.n_questions == 200

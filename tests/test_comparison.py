"""Grouping runs by method and the bootstrap intervals of gan_cot_lab.comparison, on synthetic runs."""

import numpy as np
import pytest

from gan_cot_lab.comparison import (
    Interval,
    RunFigures,
    bootstrap,
    compare,
    differences,
    group_by_method,
    question_warnings,
    summarize,
)


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
    assert {"better": "good", "worse": "bad", "figure": "aes", "questions": "task not tagged, 400 questions"} in found
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


def test_no_interval_without_rows_and_no_comparison_across_question_sets():
    """A run without per-question rows gets its mean and no interval (bootstrap refuses it); runs of another size are
    a question set of their own: compared with nothing outside it, and named in the warnings."""
    full = [_run("a", s, [1] * 90 + [0] * 10, [40] * 100) for s in range(2)]
    tiny = _run("b", 0, [1, 0, 0, 0], [28, 28, 27, 28])
    bare = RunFigures("c", 0, "c-0", 0.25, 27.8, 1.0, 100.0)
    with pytest.raises(ValueError, match="c-0"):
        bootstrap([bare])
    summaries = summarize(full + [tiny, bare], n_boot=200)
    assert [(m.method, m.n_questions) for m in summaries] == [("a", 100), ("b", 4), ("c", None)]
    a, b, c = summaries
    assert c.figures["accuracy"] == Interval(0.25, None, None) and c.figures["tokens"] == Interval(27.8, None, None)
    assert not c.has_rows and not c.pareto and a.pareto and b.pareto  # one front per question set
    # b's tokens are far below a's beyond any interval, yet the two are never compared
    assert compare(b, a, "tokens") is None and compare(c, a, "accuracy") is None and differences(summaries) == []
    warnings = question_warnings(summaries)
    assert len(warnings) == 2
    assert "2 different question sets" in warnings[0] and "4 questions: b" in warnings[0]
    assert "c seed 0 (c-0)" in warnings[1]


def test_one_seed_scored_on_different_questions_is_named():
    a = _run("a", 0, [1] * 10, [5] * 10)
    b = _run("b", 0, [1] * 10, [5] * 10)
    b.rows = [{**row, "id": f"other-{row['id']}"} for row in b.rows]
    (warning,) = question_warnings(summarize([a, b], n_boot=50))
    assert "seed 0: runs answered different questions (a / b)" in warning

"""gan_cot.oracle: per difficulty level, the shortest granularity that keeps the base's accuracy."""

from gan_cot.oracle import by_level, choose, hindsight_rows, oracle_rows, summary


def _rows(spec):
    """spec: [(difficulty, correct, tokens)] -> rows with ids q0, q1, ..."""
    return [{"id": f"q{i}", "difficulty": d, "correct": c, "tokens": t} for i, (d, c, t) in enumerate(spec)]


BASE = _rows([(1, True, 50), (1, True, 50), (2, True, 90), (2, False, 90)])
STEP = _rows([(1, True, 20), (1, True, 20), (2, True, 40), (2, False, 40)])  # keeps the base everywhere
LINE = _rows([(1, True, 8), (1, True, 8), (2, False, 10), (2, False, 10)])  # only the easy level
DIRECT = _rows([(1, True, 2), (1, False, 2), (2, False, 2), (2, False, 2)])  # loses even the easy level


def test_levels_and_the_choice():
    assert by_level(STEP) == {
        1: {"n": 2, "accuracy": 1.0, "tokens": 20.0},
        2: {"n": 2, "accuracy": 0.5, "tokens": 40.0},
    }
    choice = choose({"1": STEP, "line": LINE, "direct": DIRECT}, BASE)
    assert choice == {1: "line", 2: "1"}  # easy questions in a line, hard ones step by step
    assert choose({"1": STEP, "line": LINE, "direct": DIRECT}, BASE, tolerance=0.5) == {1: "direct", 2: "direct"}
    # no granularity keeps the base: the most accurate one (level 1: line), the shorter of equals (level 2: direct)
    assert choose({"line": LINE, "direct": DIRECT}, BASE) == {1: "line", 2: "direct"}


def test_oracle_rows_answer_each_question_at_its_level_choice():
    test = {"1": STEP, "line": LINE, "direct": DIRECT}
    rows = oracle_rows(test, {1: "line", 2: "1"}, fallback="1")
    assert [r["granularity"] for r in rows] == ["line", "line", "1", "1"]
    assert summary(rows) == {"n": 4, "accuracy": 0.75, "tokens": 24.0}
    hind = hindsight_rows(test, BASE)  # the shortest correct answer per question, the base's where none is
    assert [r["granularity"] for r in hind] == ["direct", "line", "1", "base"]
    assert summary(hind) == {"n": 4, "accuracy": 0.75, "tokens": (2 + 8 + 40 + 90) / 4}

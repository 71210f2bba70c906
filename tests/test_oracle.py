"""gan_cot_lab.oracle: per difficulty level, the shortest granularity that keeps the base's accuracy."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from gan_cot.tasks.ledger_hard import GRANULARITIES
from gan_cot_lab.oracle import by_level, choose, hindsight_rows, oracle_rows, summary

ROOT = Path(__file__).resolve().parents[1]


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


@pytest.mark.slow
def test_the_oracle_script_trains_every_granularity_and_publishes_the_choice(tmp_path):
    out = tmp_path / "oracle"
    cmd = [sys.executable, "scripts/oracle.py", "--config", "configs/ledger-hard.yaml", "--steps", "4", "--val-n", "8",
           "--eval-n", "8", "--output", str(out), "--mlflow-dir", str(tmp_path / "mlruns"), "--threads", "1", "--json"]  # fmt: skip
    r = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=900)
    assert r.returncode == 0, r.stderr[-3000:]
    result = json.loads(r.stdout.strip().splitlines()[-1])
    assert result == json.loads((out / "oracle.json").read_text())
    assert set(result["choice"].values()) <= set(GRANULARITIES)
    assert {f"sft-{g}" for g in GRANULARITIES} | {"oracle", "hindsight", "base"} == set(result["figures"])
    assert sum(level["n"] for level in result["levels"].values()) == 8
    assert all((out / g / "adapter" / "adapter_model.safetensors").exists() for g in GRANULARITIES)
    assert set(result["runs"]) == {f"sft-{g}" for g in GRANULARITIES} | {"oracle"}

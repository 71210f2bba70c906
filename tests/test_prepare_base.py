"""End to end: prepare_base.py trains, saves and reports; evaluate.py scores the saved checkpoint."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_prepare_base_trains_saves_and_evaluates(tmp_path):
    out = tmp_path / "base"
    cmd = [sys.executable, "scripts/prepare_base.py", "--output", str(out), "--steps", "120", "--train-size", "2000",
           "--hidden-size", "64", "--layers", "2", "--eval-n", "16", "--json"]  # fmt: skip
    r = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=900)
    assert r.returncode == 0, r.stderr[-3000:]
    result = json.loads(r.stdout.strip().splitlines()[-1])
    assert result["path"] == str(out)
    assert result["final_loss"] < 0.5 * json.loads((out / "base_card.json").read_text())["train"]["first_loss"]
    assert (out / "model.safetensors").exists() and (out / "tokenizer.json").exists()
    card = json.loads((out / "base_card.json").read_text())
    assert card["seed"] == 0 and card["command"].startswith("python scripts/prepare_base.py")

    r = subprocess.run(
        [sys.executable, "scripts/evaluate.py", "--model", str(out), "--n", "16", "--json"],
        capture_output=True, text=True, cwd=ROOT, timeout=600,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr[-3000:]
    ev = json.loads(r.stdout.strip().splitlines()[-1])
    assert ev["n"] == 16 and ev["mean_tokens"] > 0


def test_prepare_base_rejects_bad_values(tmp_path):
    r = subprocess.run(
        [sys.executable, "scripts/prepare_base.py", "--output", str(tmp_path / "x"), "--batch-size", "-4"],
        capture_output=True, text=True, cwd=ROOT, timeout=120,
    )  # fmt: skip
    assert r.returncode == 2 and "--batch-size must be positive" in r.stderr
    assert not (tmp_path / "x").exists()

"""End to end: train_discriminator.py logs to a temporary MLflow store and saves a checkpoint that
evaluate_discriminator.py and download_discriminator.py accept."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _run(args, **kw):
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, cwd=ROOT, timeout=900, **kw)


@pytest.mark.slow
def test_train_then_evaluate_discriminator(tmp_path, tiny_model_dir):
    out = tmp_path / "disc"
    store = tmp_path / "mlruns"
    r = _run(["scripts/train_discriminator.py", "--config", "configs/discriminator/ledger-tiny.yaml",
              f"backbone={tiny_model_dir}", f"output={out}", f"mlflow_dir={store}", "steps=30", "train_size=200",
              "eval_size=30", "batch_size=8", "--json"])  # fmt: skip
    assert r.returncode == 0, r.stderr[-3000:]
    result = json.loads(r.stdout.strip().splitlines()[-1])
    assert result["path"] == str(out) and 0 <= result["macro_f1"] <= 1
    assert "precision" in r.stdout and "useful" in r.stdout
    card = json.loads((out / "discriminator_card.json").read_text())
    assert card["metrics"]["validation"]["n_steps"] == result["n_steps"]

    import mlflow

    mlflow.set_tracking_uri(f"sqlite:///{store / 'mlflow.db'}")
    run = mlflow.get_run(result["run_id"])
    assert run.data.params["steps"] == "30"
    assert "val_macro_f1" in run.data.metrics and "train_loss" in run.data.metrics

    r = _run(["scripts/evaluate_discriminator.py", "--discriminator", str(out), "--n", "20", "--json"])
    assert r.returncode == 0, r.stderr[-3000:]
    ev = json.loads(r.stdout.strip().splitlines()[-1])
    for key in ("macro_f1", "useful", "redundant", "wrong", "n_steps"):
        assert key in ev


def test_train_discriminator_refuses_unknown_key(tmp_path):
    r = _run(["scripts/train_discriminator.py", "--config", "configs/discriminator/ledger-tiny.yaml", "stepz=3"])
    assert r.returncode == 2 and "unknown key 'stepz'" in r.stderr and "Traceback" not in r.stderr


def test_evaluate_discriminator_names_a_missing_checkpoint(tmp_path):
    r = _run(["scripts/evaluate_discriminator.py", "--discriminator", "no-such-discriminator"])
    assert r.returncode == 2 and "no-such-discriminator" in r.stderr and "Traceback" not in r.stderr

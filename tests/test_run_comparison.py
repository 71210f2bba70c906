"""scripts/run_comparison.py: every method gets the same seed, store, experiment and evaluation size."""

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))

import run_comparison  # noqa: E402


def test_dry_run_gives_every_method_the_same_seed_store_and_eval(tmp_path, capsys):
    store = tmp_path / "mlruns"
    argv = ["--dry-run", "--seed", "3", "--eval-n", "50", "--mlflow-dir", str(store), "--output-root", str(tmp_path)]
    assert run_comparison.main(argv) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert [line.split(":")[0] for line in lines] == run_comparison.METHODS
    for line in lines:
        assert "seed=3" in line and "eval.n=50" in line and f"mlflow_dir={store}" in line
        assert "experiment=comparison" in line
    length = next(line for line in lines if line.startswith("gan-cot-length:"))
    assert "credit.mode=length" in length and "train_adv.py" in length
    merge = next(line for line in lines if line.startswith("merge:"))
    assert f"merge.other={tmp_path / 'srs' / 'adapter'}" in merge


def test_merge_brings_srs_first_and_unknown_methods_are_refused(capsys):
    assert run_comparison.parse_methods("merge,gan-cot") == ["srs", "merge", "gan-cot"]
    with pytest.raises(SystemExit) as e:
        run_comparison.main(["--methods", "srs,nope", "--dry-run"])
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert "unknown method(s) nope" in err and "gan-cot-length" in err


def test_match_rollouts_gives_grpo_baselines_our_sampling_budget(tmp_path, capsys):
    cfg = tmp_path / "ours.yaml"
    cfg.write_text(
        "rounds: 3\nrollout: {questions: 9, group_size: 2}\nsft: {pool_source: samples, pool_questions: 40, pool_samples: 2}\n"
    )
    assert run_comparison.our_rollouts(cfg) == 40 * 2 + 3 * 9 * 2
    argv = ["--dry-run", "--match-rollouts", "--config", str(cfg), "--methods", "grpo-kimi,srs,gan-cot"]
    assert run_comparison.main(argv + ["--output-root", str(tmp_path)]) == 0
    lines = dict(line.split(": ", 1) for line in capsys.readouterr().out.strip().splitlines())
    assert "train.steps=9" in lines["grpo-kimi"]  # ceil(134 / 16 completions per step)
    assert "train.steps" not in lines["srs"] and "train.steps" not in lines["gan-cot"]

    cfg.write_text(
        "rounds: 3\nrollout: {questions: 9, group_size: 2}\nsft: {pool_questions: 40, pool_source: reference}\n"
    )
    assert run_comparison.our_rollouts(cfg) == 3 * 9 * 2  # the task's reference chains are not sampled

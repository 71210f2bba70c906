"""scripts/bench.py end to end on a tiny policy and discriminator built in-process: the three ratios come back as
numbers or null, and both throughput figures are positive. A benchmark: nothing here checks a timing target."""

import json
import math
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
TINY = [
    "--tiny", "--json", "--seed", "0", "--steps", "1", "--questions", "2", "--group-size", "2", "--max-rollouts", "8",
    "--val-n", "4", "--max-think-tokens", "8", "--max-answer-tokens", "4", "--gen-batch", "4", "--gen-repeats", "1",
]  # fmt: skip


def load_bench():
    """The script (its argument parsing and main) with the package's table beside it."""
    from commands import command

    import gan_cot_lab.bench

    module = command("bench")
    module.table = gan_cot_lab.bench.table
    return module


def is_number_or_null(x) -> bool:
    return x is None or (isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x))


@pytest.mark.slow
def test_bench_reports_the_three_ratios(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(ROOT)
    bench = load_bench()
    assert bench.main([*TINY, "--workdir", str(tmp_path / "work")]) == 0
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    for key in ("update_throughput_ratio", "rollouts_to_target_ratio", "generation_time_ratio"):
        assert key in out and is_number_or_null(out[key]), (key, out.get(key))
    tp = out["throughput"]
    assert tp["ours_samples_per_s"] > 0 and tp["trl_samples_per_s"] > 0
    assert out["update_throughput_ratio"] > 0
    assert len(tp["ours_update_seconds"]) == len(tp["trl_update_seconds"]) == 1
    assert tp["trl_distributed_type"] == "NO"  # TRL runs as a plain one-process run, not under DDP
    # both trainers stop within the rollout budget, counted in whole rounds of Q x G = 4 chains
    for side in ("ours", "trl"):
        r = out["rollouts_to_target"][side]
        assert 0 < r["rollouts_run"] <= 8 and r["rollouts_run"] % 4 == 0
        assert r["rollouts"] is None or r["rollouts"] == r["rollouts_run"]
    if out["ours_rollouts_to_target"] is None or out["trl_rollouts_to_target"] is None:
        assert out["rollouts_to_target_ratio"] is None
    gt = out["generation_time"]
    assert gt["base_seconds_per_answer"] > 0 and gt["ours_seconds_per_answer"] > 0
    # the default trains an alpha gate: ours is timed as it answers, the gate choosing alpha and each question
    # running on its alpha's merged copy; the LoRA layers scaled per row are timed beside it
    assert gt["ours_gated"] is True and gt["ours_unmerged_seconds_per_answer"] > 0
    assert gt["token_ratio"] == pytest.approx(gt["ours_mean_tokens"] / gt["base_mean_tokens"])
    assert (tmp_path / "work" / "ours-adapter" / "alpha_gate.safetensors").exists()
    assert out["settings"]["group_size"] == 2 and out["settings"]["questions"] == 2
    assert "notes" in out and out["wall_seconds"]["total"] > 0
    # the generation time alone, on the adapter the run trained (its base is the tiny one built in the workdir)
    adapter = str(tmp_path / "work" / "ours-adapter")
    assert bench.main([*TINY, "--workdir", str(tmp_path / "work"), "--generation-adapter", adapter]) == 0
    gen = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert gen["adapter"] == adapter and "throughput" not in gen
    assert gen["generation_time"]["ours_gated"] is True and is_number_or_null(gen["generation_time_ratio"])


def test_bad_arguments_are_refused(capsys):
    bench = load_bench()
    for argv, message in (
        (["--group-size", "1"], "--group-size must be at least 2"),
        (["--questions", "4", "--group-size", "4", "--max-rollouts", "8"], "below one round"),
        (["--tiny", "--model", "x"], "leave out --model"),
        (["--generation-adapter", "nowhere"], "--generation-adapter nowhere: no adapter_config.json"),
    ):
        with pytest.raises(SystemExit):
            bench.parse_args(argv)
        assert message in capsys.readouterr().err


def test_the_table_bounds_the_ratio_when_only_ours_reached_the_target():
    bench = load_bench()
    ev = {"accuracy": 1.0, "tokens_vs_minimal": 1.05}
    result = {
        "settings": {"seed": 0},
        "throughput": {"ours_samples_per_s": 2.0, "trl_samples_per_s": 1.0},
        "update_throughput_ratio": 2.0,
        "rollouts_to_target": {
            "base": {"accuracy": 1.0, "tokens_vs_minimal": 2.25},
            "ours": {"rollouts": 128, "rollouts_run": 128, "last": ev, "reference_chains": 8192},
            "trl": {"rollouts": None, "rollouts_run": 1920, "last": {"accuracy": 0.9, "tokens_vs_minimal": 1.6}},
        },
        "rollouts_to_target_ratio": None,
        "rollouts_to_target_ratio_below": 128 / 1920,
        "generation_time": {"ours_seconds_per_answer": 0.01, "base_seconds_per_answer": 0.02, "token_ratio": 0.5},
        "generation_time_ratio": 0.5,
        "wall_seconds": {"total": 1.0},
        "load_average": {"start": 0.0, "end": 0.0},
    }
    row = next(line for line in bench.table(result).splitlines() if line.startswith("rollouts to target"))
    assert "128 of 128 run (+8192 reference chains)" in row and "n/a of 1920 run" in row and "< 0.067" in row

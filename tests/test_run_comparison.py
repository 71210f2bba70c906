"""scripts/run_comparison.py: every method, at every seed, gets the same store, experiment, task, base, adapter size,
evaluation and budget; warm starts and sampled chains are matched."""

from pathlib import Path

import pytest
from commands import command  # noqa: E402

run_comparison = command("run_comparison")


def _dry_run(capsys, *argv) -> dict[tuple[str, int], str]:
    assert run_comparison.main(["--dry-run", *argv]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    out = {}
    for line in lines:
        head, cmd = line.split(": ", 1)
        method, _, seed = head.split()
        out[(method, int(seed))] = cmd
    return out


def test_dry_run_gives_every_method_and_seed_the_same_store_eval_task_and_budget(tmp_path, capsys):
    store = tmp_path / "mlruns"
    argv = ["--seeds", "3,4", "--eval-n", "50", "--mlflow-dir", str(store), "--output-root", str(tmp_path)]
    cmds = _dry_run(capsys, *argv)
    methods = [m for m in run_comparison.METHODS]
    assert [m for m, s in cmds if s == 3] == methods and [m for m, s in cmds if s == 4] == methods[:-1]  # oracle once
    for (m, seed), cmd in cmds.items():
        assert f"{store}" in cmd and "50" in cmd and "comparison-ledger" in cmd
        if m == "base":  # the base on the seed's questions, with gan-cot's budget and format
            assert f"--seed {seed}" in cmd and "--model models/ledger-verbose-base --task ledger" in cmd
            assert "--max-think-tokens 160 --max-answer-tokens 8" in cmd and "--format hash" in cmd
        elif m != "oracle":
            assert f"seed={seed}" in cmd and f"output_dir={tmp_path / f'seed{seed}' / m}" in cmd
        if m in run_comparison.BASELINES:
            assert (
                "task=ledger model=models/ledger-verbose-base eval.max_think_tokens=160 eval.max_answer_tokens=8"
                in cmd
            )
    assert "credit.mode=length" in cmds[("gan-cot-length", 3)] and "train_adv.py" in cmds[("gan-cot-length", 3)]
    assert "discriminator.mode=frozen" in cmds[("gan-cot-frozen", 3)]
    assert "discriminator.labels=gold" in cmds[("gan-cot-gold", 4)] and "gate.kind=none" in cmds[("gan-cot-nogate", 4)]
    assert "--warm-start-only" in cmds[("pruned-sft", 3)]
    # like for like: the warm methods start from the same seed's pruned-sft adapter, merge averages the base with it
    warm = tmp_path / "seed4" / "pruned-sft" / "adapter"
    assert f"init={warm}" in cmds[("grpo-kimi", 4)] and f"merge.other={warm}" in cmds[("merge", 4)]
    assert "init=" not in cmds[("budget-forcing", 4)]


def test_methods_bring_what_they_start_from_and_unknown_ones_are_refused(capsys):
    assert run_comparison.parse_methods("merge,gan-cot") == ["gan-cot", "srs", "merge"]
    assert run_comparison.parse_methods("srs,gan-cot", warm_start=True) == ["gan-cot", "pruned-sft", "srs"]
    assert run_comparison.parse_methods("budget-forcing", warm_start=True) == ["budget-forcing"]
    with pytest.raises(SystemExit) as e:
        run_comparison.main(["--methods", "srs,nope", "--dry-run"])
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert "unknown method(s) nope" in err and "gan-cot-length" in err
    with pytest.raises(SystemExit):
        run_comparison.main(["--seeds", "0,0", "--dry-run"])


def test_every_sampling_method_samples_what_gan_cot_samples(tmp_path, capsys):
    cfg = tmp_path / "ours.yaml"
    cfg.write_text(
        "rounds: 3\nrollout: {questions: 9, group_size: 2}\n"
        "sft: {pool_source: samples, pool_questions: 40, pool_samples: 2}\n"
    )
    assert run_comparison.our_rollouts(cfg) == 40 * 2 + 3 * 9 * 2  # 134
    argv = [
        "--config",
        str(cfg),
        "--methods",
        "grpo-kimi,grpo-o1pruner,srs,dpo,gan-cot",
        "--output-root",
        str(tmp_path),
    ]
    cmds = _dry_run(capsys, *argv)
    assert "train.steps=9 " in cmds[("grpo-kimi", 0)] + " "  # ceil(134 / 16 completions per step)
    assert "train_questions=27" in cmds[("grpo-kimi", 0)]  # the questions gan-cot's rounds roll out
    # o1pruner: 4 base samples for each of 8 questions (a quarter of the budget), then ceil(102 / 16) steps
    assert "train_questions=8" in cmds[("grpo-o1pruner", 0)] and "train.steps=7" in cmds[("grpo-o1pruner", 0)]
    assert "train_questions=17" in cmds[("srs", 0)] and "train_questions=17" in cmds[("dpo", 0)]  # 8 samples each
    assert "train.steps" not in cmds[("gan-cot", 0)]
    recipes = _dry_run(capsys, *argv[:3], "tokenskip,system1-distill,step-skip,c3ot", *argv[4:])
    assert (
        "train_questions=17" in recipes[("tokenskip", 0)] and "train_questions=17" in recipes[("system1-distill", 0)]
    )
    assert "train_questions=17" in recipes[("step-skip", 0)]  # 4 chains a question in each of 2 rounds
    assert "train_questions" not in recipes[("c3ot", 0)] and "init=" not in recipes[("tokenskip", 0)]
    assert "train.steps" not in _dry_run(capsys, *argv, "--no-match-rollouts")[("grpo-kimi", 0)]

    cfg.write_text(
        "rounds: 3\nrollout: {questions: 9, group_size: 2}\nsft: {pool_questions: 40, pool_source: reference}\n"
    )
    assert run_comparison.our_rollouts(cfg) == 3 * 9 * 2  # the task's reference chains are not sampled


def test_resume_keeps_only_runs_that_finished_in_this_experiment_with_their_rows(tmp_path):
    import json
    from types import SimpleNamespace

    import mlflow

    from gan_cot import tracking

    store = tmp_path / "mlruns"

    def run(experiment: str, rows: bool, fail: bool = False) -> Path:
        tracking.setup(experiment, store)
        with mlflow.start_run() as r:
            if rows:
                tracking.log_eval_rows([{"id": "q0", "difficulty": 1, "correct": True, "tokens": 9}])
        if fail:
            mlflow.tracking.MlflowClient().set_terminated(r.info.run_id, "FAILED")
        folder = tmp_path / f"{experiment}-{rows}-{fail}"
        folder.mkdir()
        (folder / "result.json").write_text(json.dumps({"run_id": r.info.run_id, "wall_seconds": 12.5}))
        return folder

    args = SimpleNamespace(mlflow_dir=str(store), experiment="comparison-x")
    assert run_comparison.finished(run("comparison-x", rows=True), args)
    assert not run_comparison.finished(run("comparison-x", rows=False), args)  # no per-question rows: run again
    assert not run_comparison.finished(run("other", rows=True), args)  # another experiment's run
    assert not run_comparison.finished(run("comparison-x", rows=True, fail=True), args)
    assert not run_comparison.finished(tmp_path / "never-ran", args)


def test_each_deepspeed_launch_gets_its_own_free_port():
    import socket

    cmd = ["/venv/bin/deepspeed", "--num_gpus", "1", "scripts/train_adv.py", "seed=0"]
    ports = set()
    for _ in range(3):
        out = run_comparison.with_free_port(cmd)
        assert out[:2] == ["/venv/bin/deepspeed", "--master_port"] and out[3:] == cmd[1:]
        ports.add(int(out[2]))
        with socket.socket() as s:
            s.bind(("127.0.0.1", int(out[2])))  # nobody listens there
    assert all(p != 29500 for p in ports)
    other = ["/venv/bin/python", "scripts/train_baseline.py"]
    assert run_comparison.with_free_port(other) == other
    assert run_comparison.with_free_port([*cmd[:1], "--master_port", "1234", *cmd[1:]])[2] == "1234"


def test_a_resumed_command_keeps_the_earlier_commands_runs_in_the_record(tmp_path):
    """One process per seed writes the same summary.json: with --resume the earlier record of the same experiment is
    read back (its runs and seeds kept beside the new ones); another experiment's, a broken one or no --resume: not."""
    import json
    from types import SimpleNamespace

    path = tmp_path / "summary.json"
    path.write_text(json.dumps({"experiment": "comparison-x", "seeds": [1], "runs": {"gan-cot/seed1": {"ok": True}}}))
    same = SimpleNamespace(resume=True, experiment="comparison-x")
    assert run_comparison.earlier_record(path, same)["runs"] == {"gan-cot/seed1": {"ok": True}}
    assert run_comparison.earlier_record(path, SimpleNamespace(resume=True, experiment="comparison-y")) is None
    assert run_comparison.earlier_record(path, SimpleNamespace(resume=False, experiment="comparison-x")) is None
    path.write_text("{half a rec")
    assert run_comparison.earlier_record(path, same) is None


def test_a_policy_left_as_trained_runs_its_methods_command_under_its_own_name(tmp_path, capsys):
    """gan-cot-learned-gate / pruned-sft-alpha1: their method's command with gate.select=[] in their own folder, and
    the finished run is tagged with the comparison's name for it."""
    import json
    from types import SimpleNamespace

    import mlflow

    from gan_cot import tracking

    cmds = _dry_run(
        capsys, "--config", "configs/ledger-hard.yaml", "--methods", "gan-cot-learned-gate,pruned-sft-alpha1"
    )
    learned, plain = cmds[("gan-cot-learned-gate", 0)], cmds[("pruned-sft-alpha1", 0)]
    assert learned.endswith("seed0/gan-cot-learned-gate gate.select=[]") and "--warm-start-only" not in learned
    assert plain.endswith("seed0/pruned-sft-alpha1 gate.select=[]") and "--warm-start-only" in plain

    store = tmp_path / "mlruns"
    tracking.setup("comparison-x", store)
    with mlflow.start_run() as run:
        mlflow.set_tags({"method": "gan-cot", "seed": "2"})
    (tmp_path / "result.json").write_text(json.dumps({"run_id": run.info.run_id}))
    run_comparison.name_run(tmp_path, "gan-cot-learned-gate", SimpleNamespace(mlflow_dir=str(store)))
    tags = mlflow.tracking.MlflowClient().get_run(run.info.run_id).data.tags
    assert tags["method"] == "gan-cot-learned-gate" and tags["mlflow.runName"] == "gan-cot-learned-gate-seed2"


def test_a_variant_runs_gan_cot_with_its_overrides_under_its_own_name(tmp_path, capsys):
    argv = ["--seeds", "1", "--output-root", str(tmp_path), "--methods", "gan-cot,gan-cot-t0.7,srs"]
    cmds = _dry_run(capsys, *argv, "--variant", "gan-cot-t0.7:rollout.temperature=0.7 rounds=2")
    assert list(cmds) == [("gan-cot", 1), ("gan-cot-t0.7", 1), ("pruned-sft", 1), ("srs", 1)]
    variant = cmds[("gan-cot-t0.7", 1)]
    assert "train_adv.py" in variant and variant.endswith("rollout.temperature=0.7 rounds=2")
    assert f"output_dir={tmp_path / 'seed1' / 'gan-cot-t0.7'}" in variant
    assert "rollout.temperature" not in cmds[("gan-cot", 1)]
    argv = ["--seeds", "1", "--output-root", str(tmp_path), "--methods", "pruned-sft-next"]
    cmds = _dry_run(capsys, *argv, "--variant", "pruned-sft-next:discriminator.label_lean_next=0.25 --warm-start-only")
    cmd = cmds[("pruned-sft-next", 1)]  # the flag before the overrides, as train_adv.py's parser needs it
    assert "--warm-start-only seed=1" in cmd and cmd.endswith("output_dir=" + str(tmp_path / "seed1" / "pruned-sft-next")
                                                              + " discriminator.label_lean_next=0.25")  # fmt: skip
    for spec, cause in [("gan-cot-t0.7", "NAME:KEY=VALUE"), ("x:rounds", "NAME:KEY=VALUE"), ("srs:rounds=2", "taken")]:
        with pytest.raises(SystemExit) as e:
            run_comparison.main(["--dry-run", "--variant", spec, "--methods", "gan-cot"])
        assert e.value.code == 2 and cause in capsys.readouterr().err


def test_warm_from_starts_the_warm_methods_from_a_pruned_sft_variant_under_names_of_their_own(tmp_path, capsys):
    variant = "pruned-sft-next:discriminator.label_lean_next=0.25 --warm-start-only"
    argv = ["--seeds", "0", "--output-root", str(tmp_path), "--methods", "srs,merge,budget-forcing"]
    cmds = _dry_run(capsys, *argv, "--variant", variant, "--warm-from", "pruned-sft-next")
    assert list(cmds) == [("pruned-sft-next", 0), ("srs", 0), ("budget-forcing", 0), ("merge", 0)]
    warm = tmp_path / "seed0" / "pruned-sft-next" / "adapter"
    assert f"init={warm}" in cmds[("srs", 0)] and f"output_dir={tmp_path / 'seed0' / 'srs-next'}" in cmds[("srs", 0)]
    assert f"merge.other={warm}" in cmds[("merge", 0)] and "merge-next" in cmds[("merge", 0)]
    assert f"output_dir={tmp_path / 'seed0' / 'budget-forcing'} " in cmds[("budget-forcing", 0)] + " "
    for bad in (["--warm-from", "srs"], ["--warm-from", "pruned-sft-x"]):  # not a --warm-start-only variant
        with pytest.raises(SystemExit) as e:
            run_comparison.main(["--dry-run", "--methods", "srs", *bad])
        assert e.value.code == 2 and "--warm-from" in capsys.readouterr().err

"""gan_cot.tracking: the local MLflow store."""

import subprocess
import sys


def test_runs_started_together_on_a_new_store_all_get_the_experiment(tmp_path):
    """tracking.setup from several processes at once on a store that does not exist yet: the first creates the
    database and the experiment, the others wait and find them (unlocked, they raced on the tables)."""
    code = f"from gan_cot import tracking; print(tracking.setup('together', {str(tmp_path / 'mlruns')!r}))"
    procs = [
        subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for _ in range(3)
    ]
    outs = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0], [err[-500:] for _, err in outs]
    assert len({out.strip().splitlines()[-1] for out, _ in outs}) == 1  # one experiment id


def test_experiments_are_model_training_runs_are_named_and_carry_their_inputs(tmp_path, monkeypatch):
    import mlflow

    from gan_cot import tracking
    from gan_cot.tasks import make_task

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    prior = mlflow.get_tracking_uri()
    try:
        exp_id = tracking.setup("kind", tmp_path / "mlruns")
        assert mlflow.get_experiment(exp_id).tags[tracking.KIND_TAG] == tracking.EXPERIMENT_KIND
        client = mlflow.MlflowClient()
        old = client.create_experiment("old")  # made before the kind was set: setup marks it, once
        tracking.setup("old", tmp_path / "mlruns")
        assert client.get_experiment(old).tags[tracking.KIND_TAG] == tracking.EXPERIMENT_KIND
        client.set_experiment_tag(old, tracking.KIND_TAG, "genai_development")  # a user's own choice stays
        tracking.setup("old", tmp_path / "mlruns")
        assert client.get_experiment(old).tags[tracking.KIND_TAG] == "genai_development"

        task = make_task("ledger-hard", seed=0)
        with mlflow.start_run(experiment_id=exp_id, run_name=tracking.run_name("srs-warm", 2)) as run:
            tracking.log_task_inputs(task, "ledger-hard", 0, 20, 64)
            tracking.log_eval_rows([{"id": "q0", "correct": True, "tokens": 7, "completion": "x"}])
        got = client.get_run(run.info.run_id)
        assert got.info.run_name == "srs-warm-seed2"
        inputs = {i.dataset.name: i for i in got.inputs.dataset_inputs}
        assert set(inputs) == {"ledger-hard/test", "ledger-hard/train"}
        assert '"num_rows": 20' in inputs["ledger-hard/test"].dataset.profile
        assert tracking.load_eval_rows(run.info.run_id) == [
            {"id": "q0", "difficulty": None, "correct": True, "tokens": 7}
        ]
        with mlflow.start_run(experiment_id=exp_id) as bare:
            pass
        assert tracking.load_eval_rows(bare.info.run_id) is None
    finally:
        mlflow.set_tracking_uri(prior)


def test_round_metrics_are_grouped_by_phase():
    from gan_cot.run_logger import grouped

    assert grouped("rollout_tokens") == "rollout/tokens"
    assert grouped("policy_loss") == "update/policy_loss" and grouped("sft_loss") == "update/sft_loss"
    assert grouped("kl") == "update/kl" and grouped("lr") == "update/lr"
    assert grouped("disc_f1") == "discriminator/f1" and grouped("frac_wrong") == "discriminator/frac_wrong"
    assert grouped("alpha_difficulty_3") == "gate/alpha_difficulty_3" and grouped("gate_loss") == "gate/loss"
    assert grouped("val_accuracy") == "eval/val_accuracy" and grouped("warmup_sft_loss") == "warmup/sft_loss"
    assert grouped("pool_size") == "warmup/pool_size"
    assert grouped("final_accuracy") == "final_accuracy" and grouped("klx") == "klx"  # summary and unknown names stay


def test_the_rounds_bar_names_the_stage_that_runs_and_the_stage_clock_times_it(tmp_path):
    from types import SimpleNamespace

    from gan_cot.run_logger import RunLogger
    from gan_cot.trainer import StageClock

    logger = RunLogger(SimpleNamespace(rounds=3), tmp_path, active=True, log=lambda m: None)
    clock = StageClock(on_start=lambda stage: logger.stage(0, stage))
    with clock("rollout"):
        assert logger.bar.desc.startswith("round 0 (rollout)") and logger.bar.n == 0
    with clock("rollout"):  # a stage run twice adds up
        pass
    assert set(clock.seconds) == {"time_rollout"} and clock.seconds["time_rollout"] >= 0
    logger.progress(0, {"rollout_accuracy": 0.5})
    assert logger.bar.desc.startswith("rounds") and logger.bar.n == 1
    logger.close_bar()
    quiet = RunLogger(SimpleNamespace(rounds=3), tmp_path, active=False)
    quiet.stage(0, "rollout")  # another process than the main one draws nothing
    assert quiet.bar is None

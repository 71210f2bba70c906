"""The MLflow store after stops and kills: a resumed run writes every round once, and a run whose process died is
marked KILLED by the next command that opens the store, never left RUNNING."""

import socket
import subprocess
import sys

import mlflow
import pytest

from gan_cot import tracking
from gan_cot.run_logger import RunLogger


@pytest.fixture(scope="module")
def shared_store(tmp_path_factory):
    return tmp_path_factory.mktemp("store") / "mlruns"  # one database for the module: creating one takes seconds


@pytest.fixture
def store(shared_store):
    yield shared_store
    if mlflow.active_run() is not None:
        mlflow.end_run()


def _history(run_id: str, key: str) -> list[tuple[int, float]]:
    return sorted((m.step, m.value) for m in mlflow.MlflowClient().get_metric_history(run_id, key))


def test_a_resumed_run_replaces_the_rounds_after_its_checkpoint(tmp_path, store, tiny_config):
    cfg = tiny_config(tmp_path, f"mlflow_dir={store}", "experiment=resumed")
    logs = []
    first = RunLogger(cfg, tmp_path / "out", active=True, log=logs.append)
    run_id = first.start(None, False, "gan-cot")
    first.metrics({"base_accuracy": 0.5})
    for r in range(8):  # killed at round 8; the last checkpoint covers round 4
        first.metrics({"rollout_tokens": 100.0 + r}, step=r)
    mlflow.end_run(status="KILLED")
    again = RunLogger(cfg, tmp_path / "out", active=True, log=logs.append)
    assert again.start(run_id, True, "gan-cot", start_round=5) == run_id
    for r in range(5, 8):
        again.metrics({"rollout_tokens": 200.0 + r}, step=r)
    history = _history(run_id, "rollout/tokens")
    assert [s for s, _ in history] == list(range(8))  # each round once
    assert dict(history) == {**{r: 100.0 + r for r in range(5)}, **{r: 200.0 + r for r in range(5, 8)}}
    assert _history(run_id, "base_accuracy") == [(0, 0.5)]  # before the checkpoint: kept
    run = mlflow.get_run(run_id)
    assert run.data.metrics["rollout/tokens"] == 207.0 and run.info.status == "RUNNING"
    assert "3 metric point(s) of the stopped attempt replaced" in run.data.tags["gan_cot.resumed"]
    assert any("replaced" in line for line in logs)


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_a_run_whose_process_died_is_marked_killed_by_the_next_command(store):
    tracking.setup("dead-runs", store)
    client = mlflow.MlflowClient()
    exp = mlflow.get_experiment_by_name("dead-runs").experiment_id
    host = socket.gethostname()
    runs = {
        "dead": f"{host}:{_dead_pid()}:",
        "alive": tracking.process_id(),
        "reused-pid": f"{host}:{__import__('os').getpid()}:1",  # this pid, but a process that started at tick 1
        "other-host": f"not-{host}:1:1",
        "untagged": None,
    }
    ids = {}
    for name, process in runs.items():
        ids[name] = client.create_run(exp, tags={tracking.PROCESS_TAG: process} if process else {}).info.run_id
    tracking.setup("another-experiment", store)  # any command that opens the store
    status = {name: client.get_run(i).info.status for name, i in ids.items()}
    assert status == {"dead": "KILLED", "alive": "RUNNING", "reused-pid": "KILLED", "other-host": "RUNNING",
                      "untagged": "RUNNING"}  # fmt: skip
    assert "ended without closing the run" in client.get_run(ids["dead"]).data.tags[tracking.ENDED_TAG]


def test_a_training_run_records_its_process(tmp_path, store, tiny_config):
    logger = RunLogger(tiny_config(tmp_path, f"mlflow_dir={store}"), tmp_path / "out", active=True, log=lambda m: None)
    run_id = logger.start(None, False, "gan-cot")
    assert mlflow.get_run(run_id).data.tags[tracking.PROCESS_TAG] == tracking.process_id()
    assert tracking.process_alive(tracking.process_id()) is True

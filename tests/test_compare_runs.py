"""scripts/compare_runs.py on a temporary MLflow store: the table, the JSON line, the Pareto PNG, the errors."""

import importlib.util
import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _load_script():
    spec = importlib.util.spec_from_file_location("compare_runs", ROOT / "scripts" / "compare_runs.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture()
def store(tmp_path, monkeypatch):
    """A store with experiment ``exp``: an ``adv`` run (tagged, all figures), a run known only by its
    ``credit.mode`` param (no n_params, no base), an unfinished run, and an experiment ``other``."""
    import mlflow
    from mlflow.tracking import MlflowClient

    from gan_cot import tracking

    prior = mlflow.get_tracking_uri()
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.chdir(tmp_path)  # nothing may land in the repository's mlruns/
    store = tmp_path / "mlruns"
    tracking.setup("other", store)
    exp_id = tracking.setup("exp", store)
    with mlflow.start_run(run_name="adv-run", tags={"method": "adv"}) as run:
        mlflow.log_params({"credit.mode": "discriminator"})
        mlflow.log_metrics({"final_accuracy": 0.9, "final_mean_tokens": 40.0, "final_tokens_vs_minimal": 1.25,
                            "base_accuracy": 1.0, "base_mean_tokens": 100.0, "n_params": 2e9})  # fmt: skip
        adv_id = run.info.run_id
    with mlflow.start_run(run_name="length-run") as run:
        mlflow.log_params({"credit.mode": "length"})
        mlflow.log_metrics({"final_accuracy": 0.8, "final_mean_tokens": 80.0})
        length_id = run.info.run_id
    client = MlflowClient()
    client.create_run(exp_id, run_name="still-running")  # never terminated: not listed
    yield {"dir": store, "adv": adv_id, "length": length_id, "tmp": tmp_path}
    mlflow.set_tracking_uri(prior)


def test_table_json_and_plot(store, capsys):
    import mlflow

    script = _load_script()
    png = store["tmp"] / "plots" / "pareto.png"
    argv = ["--experiment", "exp", "--mlflow-dir", str(store["dir"]), "--output", str(png), "--json"]
    assert script.main(argv) == 0
    out = capsys.readouterr().out.strip().splitlines()

    header = next(line for line in out if line.startswith("run "))
    assert header.split() == "run method accuracy tokens vs_minimal compression ACU AES front".split()
    rows = {line.split()[1]: line.split() for line in out if line.startswith((store["adv"][:8], store["length"][:8]))}
    # adv: compression 1 - 40/100 = 0.6; ACU 90 / (2 * 0.4) = 112.5; AES 0.6 - 5 * 0.1 = 0.1; on the front
    assert rows["adv"] == [store["adv"][:8], "adv", "0.900", "40.0", "1.250", "0.600", "112.5", "0.100", "*"]
    # length (method from credit.mode): no minimal, no base, no n_params -> '-'; beaten by adv (fewer tokens,
    # higher accuracy), so not on the front
    assert rows["length"] == [store["length"][:8], "length", "0.800", "80.0", "-", "-", "-", "-"]
    assert len(rows) == 2 and not any("still-running" in line for line in out)

    result = json.loads(out[-1])
    assert result["experiment"] == "exp" and result["plot"] == str(png)
    by_method = {r["method"]: r for r in result["runs"]}
    assert set(by_method) == {"adv", "length"}
    assert by_method["adv"]["run_id"] == store["adv"] and by_method["adv"]["pareto"] is True
    assert by_method["adv"]["compression"] == pytest.approx(0.6)
    assert by_method["adv"]["acu"] == pytest.approx(112.5)
    assert by_method["adv"]["aes"] == pytest.approx(0.1)
    assert by_method["length"]["pareto"] is False and by_method["length"]["aes"] is None

    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not list(png.parent.glob("*.tmp"))

    # the plot is logged to a run named compare, tagged method=compare ...
    compare = mlflow.get_run(result["compare_run_id"])
    assert compare.info.run_name == "compare" and compare.data.tags["method"] == "compare"
    assert [a.path for a in mlflow.MlflowClient().list_artifacts(compare.info.run_id)] == ["pareto.png"]
    # ... which a second comparison does not list as a run
    assert script.main(argv) == 0
    again = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert sorted(r["method"] for r in again["runs"]) == ["adv", "length"]


def test_unknown_experiment_names_it_and_the_existing_ones(store, capsys):
    script = _load_script()
    png = store["tmp"] / "p.png"
    with pytest.raises(SystemExit) as e:
        script.main(["--experiment", "nope", "--mlflow-dir", str(store["dir"]), "--output", str(png)])
    assert e.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ")
    assert "'nope'" in err[0] and "exp" in err[0] and "other" in err[0]
    assert not png.exists()


def test_missing_store_is_one_error_line(tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    script = _load_script()
    with pytest.raises(SystemExit) as e:
        script.main(["--mlflow-dir", str(tmp_path / "nowhere"), "--output", str(tmp_path / "p.png")])
    assert e.value.code == 2
    assert "no MLflow store" in capsys.readouterr().err
    assert not (tmp_path / "nowhere").exists()

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
    """A store with experiment ``exp``: method ``adv`` in two seeds (tagged, all figures, per-question rows), a run
    known only by its ``credit.mode`` param (no n_params, no base, no rows), an unfinished run, and an experiment
    ``other``."""
    import mlflow
    from mlflow.tracking import MlflowClient

    from gan_cot import tracking

    prior = mlflow.get_tracking_uri()
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.chdir(tmp_path)  # nothing may land in the repository's mlruns/
    store = tmp_path / "mlruns"
    tracking.setup("other", store)
    exp_id = tracking.setup("exp", store)
    adv = []
    for seed in (0, 1):
        with mlflow.start_run(run_name=f"adv-seed{seed}", tags={"method": "adv", "seed": str(seed)}) as run:
            mlflow.log_params({"credit.mode": "discriminator"})
            mlflow.log_metrics({"final_accuracy": 0.9, "final_mean_tokens": 40.0, "final_tokens_vs_minimal": 1.25,
                                "base_accuracy": 1.0, "base_mean_tokens": 100.0, "n_params": 2e9})  # fmt: skip
            # 200 questions: 180 right, 40 tokens each
            tracking.log_eval_rows([{"id": f"q{i}", "correct": i >= 20, "tokens": 40} for i in range(200)])
            adv.append(run.info.run_id)
    with mlflow.start_run(run_name="length-run") as run:
        mlflow.log_params({"credit.mode": "length"})
        mlflow.log_metrics({"final_accuracy": 0.8, "final_mean_tokens": 80.0})
        length_id = run.info.run_id
    client = MlflowClient()
    client.create_run(exp_id, run_name="still-running")  # never terminated: not listed
    yield {"dir": store, "adv": adv, "length": length_id, "tmp": tmp_path}
    mlflow.set_tracking_uri(prior)


def test_methods_table_json_and_plot(store, capsys):
    import mlflow

    script = _load_script()
    png = store["tmp"] / "plots" / "pareto.png"
    argv = ["--experiment", "exp", "--mlflow-dir", str(store["dir"]), "--output", str(png), "--json", "--per-run",
            "--boot", "200"]  # fmt: skip
    assert script.main(argv) == 0
    out = capsys.readouterr().out.strip().splitlines()
    assert out[0] == "experiment exp: 3 finished runs, 2 methods"
    header = out[1]
    assert header.split()[:3] == ["method", "runs", "n"] and "vs adv" in header
    rows = {line.split()[0]: line for line in out[2:4]}
    # adv: two seeds, the same 200 questions; AES 0.6 - 5 * 0.1 = 0.1 at the mean; the reference
    assert rows["adv"].split()[1:5] == ["2", "200", "0.900", "[0.855,"] and "ref" in rows["adv"]
    # length: no rows (rebuilt from its aggregates of 500 questions: ~), no base (AES -); less accurate and longer
    # than adv beyond the intervals, AES not comparable
    assert rows["length~"].split()[1:3] == ["1", "500"] and rows["length~"].split()[-1] == "--="
    assert "  tokens: adv better than length" in out and "  accuracy: adv better than length" in out
    assert not any("still-running" in line for line in out)

    result = json.loads(out[-1])
    assert result["experiment"] == "exp" and result["plot"] == str(png) and result["reference"] == "adv"
    methods = {m["method"]: m for m in result["methods"]}
    assert methods["adv"]["seeds"] == [0, 1] and sorted(methods["adv"]["runs"]) == sorted(store["adv"])
    assert methods["adv"]["accuracy"]["mean"] == pytest.approx(0.9) and methods["adv"]["pareto"] is True
    assert methods["adv"]["aes"]["mean"] == pytest.approx(0.1) and not methods["adv"]["approximate"]
    assert methods["length"]["approximate"] and methods["length"]["aes"]["mean"] is None
    assert {"better": "adv", "worse": "length", "figure": "tokens"} in result["differences"]
    by_run = {r["run_id"]: r for r in result["runs"]}
    assert by_run[store["adv"][0]]["compression"] == pytest.approx(0.6)
    assert by_run[store["adv"][0]]["acu"] == pytest.approx(112.5)

    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not list(png.parent.glob("*.tmp"))

    # the plot is logged to a run named compare, tagged method=compare ...
    compare = mlflow.get_run(result["compare_run_id"])
    assert compare.info.run_name == "compare" and compare.data.tags["method"] == "compare"
    assert [a.path for a in mlflow.MlflowClient().list_artifacts(compare.info.run_id)] == ["pareto.png"]
    # ... which a second comparison does not list as a run
    assert script.main(argv) == 0
    again = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert sorted(m["method"] for m in again["methods"]) == ["adv", "length"]


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

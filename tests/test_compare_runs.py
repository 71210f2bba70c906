"""scripts/compare_runs.py on a temporary MLflow store: the table, the JSON line, the Pareto PNG, the errors."""

import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _load_script():
    from commands import command

    module = command("compare_runs")
    return module


@pytest.fixture()
def store(tmp_path, monkeypatch):
    """A store with experiment ``exp``: method ``adv`` in two seeds (tagged, all figures, per-question rows), a run
    known only by its ``credit.mode`` param (no n_params, no base, no rows), an unfinished run, and an experiment
    ``other``. No run is tagged with a task."""
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
    captured = capsys.readouterr()
    out = captured.out.strip().splitlines()
    assert "Downloading artifacts" not in captured.err  # reading the rows back draws no progress bar
    assert out[0] == "experiment exp: 3 finished runs, 2 methods, 2 question sets"
    (warning,) = [line for line in out if line.startswith("WARNING:")]
    assert "without per-question rows (1)" in warning and f"length seed - ({store['length'][:8]})" in warning
    assert out[2] == "questions: task not tagged, 200 questions"
    header = out[3]
    assert header.split()[:3] == ["method", "runs", "n"] and "vs adv" in header
    # adv: two seeds, the same 200 questions; AES 0.6 - 5 * 0.1 = 0.1 at the mean; the reference
    assert out[4].split()[:5] == ["adv", "2", "200", "0.900", "[0.855,"] and "ref" in out[4]
    # length: no rows, so its means and no interval, in a set of its own and compared with nothing
    assert out[5] == "questions: no per-question rows"
    assert out[7].split()[:7] == ["length", "1", "-", "0.800", "(no", "CI)", "80.0"] and "[" not in out[7]
    assert "differences beyond the 95% intervals (0;" in out[8]
    assert not any("better than" in line for line in out)
    assert not any("still-running" in line for line in out)

    result = json.loads(out[-1])
    assert result["experiment"] == "exp" and result["plot"] == str(png) and result["reference"] == "adv"
    methods = {m["method"]: m for m in result["methods"]}
    assert methods["adv"]["seeds"] == [0, 1] and sorted(methods["adv"]["runs"]) == sorted(store["adv"])
    assert methods["adv"]["accuracy"]["mean"] == pytest.approx(0.9) and methods["adv"]["pareto"] is True
    assert methods["adv"]["aes"]["mean"] == pytest.approx(0.1) and methods["adv"]["rows"]
    assert methods["length"]["accuracy"] == {"mean": 0.8, "lo": None, "hi": None}
    assert not methods["length"]["rows"] and methods["length"]["n"] is None and not methods["length"]["pareto"]
    assert result["differences"] == [] and len(result["warnings"]) == 1
    by_run = {r["run_id"]: r for r in result["runs"]}
    assert by_run[store["adv"][0]]["compression"] == pytest.approx(0.6)
    assert by_run[store["adv"][0]]["acu"] == pytest.approx(112.5)

    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not list(png.parent.glob("*.tmp"))

    # the plot is attached to the reference method's runs, not logged as a run of its own
    assert sorted(result["plot_runs"]) == sorted(store["adv"])
    client = mlflow.MlflowClient()
    for run_id in store["adv"]:
        assert [a.path for a in client.list_artifacts(run_id, "comparison")] == ["comparison/pareto.png"]
    exp_id = mlflow.get_experiment_by_name("exp").experiment_id
    assert len(mlflow.search_runs([exp_id], output_format="list")) == 4  # the three runs and the unfinished one
    assert script.main(argv) == 0
    again = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert sorted(m["method"] for m in again["methods"]) == ["adv", "length"]


def test_runs_of_different_sizes_and_without_rows_are_never_side_by_side(store, capsys):
    """A 4-question run of adv beside its 200-question seeds, and a 4-question run of another method: two question
    sets, each with its own table, intervals only where rows are, and differences only within a set."""
    import mlflow

    from gan_cot import tracking

    for method, correct in (("adv", 1), ("short", 4)):
        with mlflow.start_run(run_name=f"{method}-tiny", tags={"method": method, "seed": "0"}):
            mlflow.log_metrics({"final_accuracy": correct / 4, "final_mean_tokens": 27.8, "base_accuracy": 1.0,
                                "base_mean_tokens": 100.0})  # fmt: skip
            tracking.log_eval_rows([{"id": f"q{i}", "correct": i < correct, "tokens": 27 + i} for i in range(4)])
    script = _load_script()
    argv = ["--experiment", "exp", "--mlflow-dir", str(store["dir"]), "--output", str(store["tmp"] / "p.png"),
            "--boot", "200", "--json"]  # fmt: skip
    assert script.main(argv) == 0
    out = capsys.readouterr().out.strip().splitlines()
    assert out[0] == "experiment exp: 5 finished runs, 3 methods, 3 question sets"
    warnings = [line for line in out if line.startswith("WARNING:")]
    assert len(warnings) == 2
    assert warnings[0] == (
        "WARNING: runs scored on 2 different question sets, compared only within a set (task not tagged, 200 questions: "
        "adv; task not tagged, 4 questions: adv, short)"
    )
    assert "without per-question rows" in warnings[1] and "length" in warnings[1]
    tables = [i for i, line in enumerate(out) if line.startswith("questions: ")]
    assert [out[i] for i in tables] == ["questions: task not tagged, 200 questions",
                                        "questions: task not tagged, 4 questions", "questions: no per-question rows"]  # fmt: skip
    big = out[tables[0] + 2 : tables[1]]
    small = {line.split()[0]: line.split() for line in out[tables[1] + 2 : tables[2]]}
    # the 200-question table holds both adv seeds (the tiny seed-0 run did not replace seed 0 there)
    assert len(big) == 1 and big[0].split()[:3] == ["adv", "2", "200"]
    # the 4-question runs: their own intervals from 4 rows, adv the reference there, short compared only with it
    assert small["adv"][:4] == ["adv", "1", "4", "0.250"] and "ref" in small["adv"]
    assert small["short"][:4] == ["short", "1", "4", "1.000"] and small["short"][4].startswith("[")
    result = json.loads(out[-1])
    for d in result["differences"]:
        assert d["questions"] == "task not tagged, 4 questions" and {d["better"], d["worse"]} == {"adv", "short"}
    methods = [(m["method"], m["n"]) for m in result["methods"]]
    assert methods == [("adv", 200), ("adv", 4), ("short", 4), ("length", None)]
    # a figure with an interval never comes from a run without rows
    assert all((m["accuracy"]["lo"] is None) == (not m["rows"]) for m in result["methods"])


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


@pytest.mark.slow
def test_a_trained_run_logs_its_rows_and_compare_runs_gives_it_an_interval(tmp_path, tiny_config, capsys):
    """The trainer's final evaluation keeps its per-question rows (and the base's on the same questions): the run has
    its rows, a table of both, and its Pareto point among its artifacts, and compare_runs.py bootstraps from them."""
    import mlflow

    from gan_cot import tracking
    from gan_cot.trainer import AdversarialTrainer

    cfg = tiny_config(tmp_path)
    result = AdversarialTrainer(cfg, log=lambda m: None).train()
    mlflow.set_tracking_uri(tracking.tracking_uri(tmp_path / "mlruns"))
    rows = tracking.load_eval_rows(result["run_id"])
    assert len(rows) == result["n"] == cfg.eval.n and {"id", "correct", "tokens"} <= set(rows[0])
    assert sum(r["correct"] for r in rows) / len(rows) == pytest.approx(result["accuracy"])
    assert sum(r["tokens"] for r in rows) / len(rows) == pytest.approx(result["mean_tokens"])
    client = mlflow.MlflowClient()
    names = {a.path for a in client.list_artifacts(result["run_id"], "eval")}
    assert {"eval/test_rows.json", "eval/base_rows.json", "eval/test_table.json", "eval/pareto_point.json",
            "eval/pareto_point.png"} <= names  # fmt: skip
    point = mlflow.artifacts.load_dict(f"runs:/{result['run_id']}/eval/pareto_point.json")
    assert point["base"]["accuracy"]["mean"] == pytest.approx(result["base_accuracy"])
    assert point["final"]["tokens"]["lo"] <= result["mean_tokens"] <= point["final"]["tokens"]["hi"]

    script = _load_script()
    argv = ["--experiment", cfg.experiment, "--mlflow-dir", str(tmp_path / "mlruns"), "--output",
            str(tmp_path / "p.png"), "--boot", "100", "--json"]  # fmt: skip
    assert script.main(argv) == 0
    (method,) = json.loads(capsys.readouterr().out.strip().splitlines()[-1])["methods"]
    assert method["rows"] and method["n"] == cfg.eval.n and method["accuracy"]["lo"] is not None


def test_a_moved_store_keeps_its_artifacts(store, capsys):
    """MLflow records absolute artifact paths: a store moved with its checkout is pointed at its own artifacts/ the
    next time it is opened, so the per-question rows (and the intervals) are still found."""
    import shutil

    import mlflow

    from gan_cot import tracking

    moved = store["tmp"] / "elsewhere" / "mlruns"
    moved.parent.mkdir()
    shutil.move(str(store["dir"]), str(moved))
    script = _load_script()
    argv = ["--experiment", "exp", "--mlflow-dir", str(moved), "--output", str(store["tmp"] / "p.png"), "--json",
            "--boot", "50"]  # fmt: skip
    assert script.main(argv) == 0
    methods = {m["method"]: m for m in json.loads(capsys.readouterr().out.strip().splitlines()[-1])["methods"]}
    assert methods["adv"]["rows"] and methods["adv"]["n"] == 200
    run = mlflow.get_run(store["adv"][0])
    assert run.info.artifact_uri.startswith((moved / "artifacts").as_uri() + "/")
    assert tracking.relocate_artifacts(tracking.tracking_uri(moved)) == 0  # moved once: nothing more to do


def test_the_plot_can_leave_the_inaccurate_methods_off_and_names_them(tmp_path):
    from gan_cot.intervals import Interval
    from gan_cot_lab.comparison import MethodSummary

    script = _load_script()

    def method(name, acc, tokens):
        rows = [{"id": i, "correct": i < acc * 10, "tokens": tokens} for i in range(10)]
        from gan_cot.intervals import RunFigures

        m = MethodSummary(name, [RunFigures(name, 0, name, acc, tokens, rows=rows)])
        m.figures = {
            "accuracy": Interval(acc, acc - 0.05, acc + 0.05),
            "tokens": Interval(tokens, tokens - 1, tokens + 1),
        }
        m.questions = m.runs[0].questions
        return m

    methods = [method("adv", 0.9, 60.0), method("short", 0.1, 2.0), method("base", 0.85, 80.0)]
    shown, hidden = script.split_by_accuracy(methods, 0.5)
    assert [m.method for m in shown] == ["adv", "base"] and [m.method for m in hidden] == ["short"]
    assert script.split_by_accuracy(methods, None) == (methods, [])
    png = script.plot_pareto(methods, [], tmp_path / "p.png", "t", min_accuracy=0.5)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and not list(tmp_path.glob("*.tmp"))

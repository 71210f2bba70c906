"""The outcomes file of a comparison (gan_cot_lab/outcomes.py): compare_runs.py --export writes it, --outcomes and
results.py read it, and both give what the MLflow store gives."""

import gzip
import json

import pytest
from commands import command  # noqa: E402
from commands import command as load_script

from gan_cot_lab import outcomes

results = command("results")

EXPERIMENT = "comparison-ledger-hard"
SUMMARY = {"experiment": EXPERIMENT, "command": "python scripts/run_comparison.py --seeds 0,1", "seeds": [0, 1],
           "eval_n": 60, "runs": {}, "wall_seconds": 12.0, "run_seconds": 10.0, "load_average": [1.5, 2.0],
           "compare": {"methods": []}}  # fmt: skip
DOC = """# Results

<!-- begin:comparison:ledger-hard -->
(not measured yet)
<!-- end:comparison:ledger-hard -->
"""


def _rows(seed: int, right: int, tokens: int, alpha: bool = False) -> list[dict]:
    rows = [{"id": f"ledger-hard-{seed}-test-{i}", "difficulty": 1 + i % 4, "correct": (i * 7 + seed) % 60 < right,
             "tokens": tokens + i % 9} for i in range(60)]  # fmt: skip
    for i, row in enumerate(rows):
        if alpha and i % 3:  # a gated run: the gate's choice, not on every row
            row["alpha"] = 0.25 * (i % 5)
    return rows


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """Experiment comparison-ledger-hard: gan-cot in seeds 0 and 1 (rows with alpha; seed 0 with its base's rows) and
    base in seeds 0 (rows) and 1 (no rows), all tagged with the task; an outputs folder with run_comparison's record;
    the store exported to ``file``."""
    import mlflow

    from gan_cot import tracking

    tmp = tmp_path_factory.mktemp("outcomes")
    prior = mlflow.get_tracking_uri()
    with pytest.MonkeyPatch.context() as mp:
        mp.delenv("MLFLOW_TRACKING_URI", raising=False)
        mp.chdir(tmp)  # nothing may land in the repository's mlruns/
        tracking.setup(EXPERIMENT, tmp / "mlruns")
        ids = {}
        for method, seed, right, tokens in (("base", 0, 52, 80), ("base", 1, 50, 82), ("gan-cot", 0, 51, 60),
                                            ("gan-cot", 1, 49, 58)):  # fmt: skip
            rows = _rows(seed, right, tokens, alpha=method == "gan-cot")
            with mlflow.start_run(run_name=f"{method}-seed{seed}") as run:
                mlflow.set_tags({"method": method, "seed": str(seed), "task": "ledger-hard"})
                mlflow.log_metrics({"final_accuracy": right / 60, "final_mean_tokens": tokens + 4.0, "base_accuracy":
                                    52 / 60, "base_mean_tokens": 84.0, "n_params": 9e5})  # fmt: skip
                if (method, seed) != ("base", 1):
                    tracking.log_eval_rows(rows)
                if (method, seed) == ("gan-cot", 0):
                    tracking.log_eval_rows(_rows(0, 52, 80), tracking.BASE_ROWS_ARTIFACT)
                    mlflow.log_metric("wall_seconds", 42.0)
            ids[method, seed] = run.info.run_id
        meta = tmp / "outputs" / "comparison" / "ledger-hard"
        meta.mkdir(parents=True)
        (meta / "summary.json").write_text(json.dumps(SUMMARY))
        file = tmp / "data" / f"{EXPERIMENT}.json.gz"
        script = load_script("compare_runs")
        assert script.main(["--experiment", EXPERIMENT, "--mlflow-dir", str(tmp / "mlruns"), "--export", str(file),
                            "--summaries", str(meta)]) == 0  # fmt: skip
        yield {"tmp": tmp, "dir": tmp / "mlruns", "ids": ids, "file": file, "meta": meta, "script": script}
    mlflow.set_tracking_uri(prior)


def _compare(script, capsys, *argv) -> tuple[list[str], dict]:
    capsys.readouterr()
    assert script.main([*argv, "--boot", "200", "--json", "--per-run"]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    return out, json.loads(out[-1])


def test_outcomes_give_the_store_s_table_json_and_plot(store, capsys):
    tmp, script = store["tmp"], store["script"]
    from_store, j_store = _compare(script, capsys, "--experiment", EXPERIMENT, "--mlflow-dir", str(store["dir"]),
                                   "--output", str(tmp / "store.png"))  # fmt: skip
    from_file, j_file = _compare(script, capsys, "--outcomes", str(store["file"]), "--output", str(tmp / "file.png"))
    assert from_store[0] == f"experiment {EXPERIMENT}: 4 finished runs, 2 methods, 2 question sets"
    assert any("without per-question rows (1)" in line for line in from_store)
    assert [line for line in from_file[:-1] if not line.startswith("plot:")] == [
        line for line in from_store[:-1] if not line.startswith("plot:")
    ]
    assert j_file["plot_runs"] == [] and len(j_store["plot_runs"]) == 2  # no store to attach the plot to
    for j in (j_store, j_file):
        del j["plot"], j["plot_runs"]
    assert j_file == j_store
    gan = next(m for m in j_file["methods"] if m["method"] == "gan-cot")
    assert gan["rows"] and gan["accuracy"]["lo"] is not None and gan["seeds"] == [0, 1]
    (bare,) = [m for m in j_file["methods"] if not m["rows"]]  # base seed 1: still without an interval
    assert bare["method"] == "base" and bare["accuracy"]["lo"] is None
    assert (tmp / "file.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_the_file_is_small_gzip_json_that_gives_the_rows_back_and_the_same_bytes_again(store, tmp_path):
    from gan_cot import tracking

    blob = store["file"].read_bytes()
    assert blob[:2] == b"\x1f\x8b" and len(blob) < 6000  # 4 runs and 60 questions each, the base's rows once
    raw = json.loads(gzip.decompress(blob))
    assert raw["format"] == "gan-cot-outcomes" and raw["experiment"] == EXPERIMENT
    assert len(raw["questions"]) == 2  # seed 0's and seed 1's questions, each once (ids and difficulty)
    run = next(r for r in raw["runs"] if r["run_id"] == store["ids"]["gan-cot", 0])
    assert set(run["rows"]["correct"]) == {"0", "1"} and isinstance(run["rows"]["tokens"], list)
    assert run["figures"]["wall_seconds"] == 42.0 and run["method"] == "gan-cot" and run["seed"] == "0"
    assert raw["summaries"] == [{k: v for k, v in SUMMARY.items() if k != "compare"}]
    data = outcomes.read(store["file"])
    for record in data["records"]:
        assert record["rows"] == tracking.load_eval_rows(record["run_id"])  # alpha only where it was
        assert record["base_rows"] == tracking.load_eval_rows(record["run_id"], tracking.BASE_ROWS_ARTIFACT)
    again = tmp_path / "again.json.gz"
    assert store["script"].main(["--experiment", EXPERIMENT, "--mlflow-dir", str(store["dir"]), "--export",
                                 str(again), "--summaries", str(store["meta"])]) == 0  # fmt: skip
    assert again.read_bytes() == blob
    assert not list(tmp_path.glob("*.tmp")) and not list(store["file"].parent.glob("*.tmp"))


def test_results_makes_the_block_from_the_file_alone_as_from_the_store(store, tmp_path, capsys):
    from_store, from_file = tmp_path / "store.md", tmp_path / "file.md"
    for doc in (from_store, from_file):
        doc.write_text(DOC)
    data = str(store["file"].parent)
    capsys.readouterr()
    assert results.main(["--doc", str(from_store), "--outputs", str(store["tmp"] / "outputs"), "--mlflow-dir",
                         str(store["dir"]), "--data", data]) == 0  # fmt: skip
    assert "comparison:ledger-hard: from the MLflow store sqlite:///" in capsys.readouterr().out
    bare = ["--doc", str(from_file), "--outputs", str(tmp_path / "no-outputs"), "--mlflow-dir",
            str(tmp_path / "no-mlruns"), "--data", data]  # fmt: skip
    assert results.main([*bare, "--check"]) == 1
    assert results.main(bare) == 0
    out = capsys.readouterr().out
    assert f"comparison:ledger-hard: from {store['file']}" in out
    text = from_file.read_text()
    assert "`python scripts/run_comparison.py --seeds 0,1`: seeds [0, 1], 12 s" in text
    assert "| gan-cot | 0,1 | 60 |" in text and "> **Warning**: runs without per-question rows (1)" in text
    assert text == from_store.read_text()
    assert results.main([*bare, "--check"]) == 0
    assert not (tmp_path / "no-mlruns").exists()


def _one_error(capsys, main, argv, *names) -> str:
    """``main(argv)`` fails with exit code 2 and one ``error:`` line that names each of ``names``."""
    capsys.readouterr()
    with pytest.raises(SystemExit) as e:
        main(argv)
    assert e.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and all(str(n) in err[0] for n in names)
    return err[0]


def test_a_missing_or_corrupt_outcomes_file_is_one_error_line(store, tmp_path, capsys):
    script, png = store["script"], str(tmp_path / "p.png")
    missing = tmp_path / "missing.json.gz"
    assert "no such file" in _one_error(capsys, script.main, ["--outcomes", str(missing), "--output", png], missing)
    bad = {
        "plain.json.gz": b'{"format": "gan-cot-outcomes"}',  # not gzip'd
        "cut.json.gz": store["file"].read_bytes()[:200],  # truncated
        "other.json.gz": gzip.compress(b'{"rows": []}'),  # gzip'd JSON of something else
        "broken.json.gz": gzip.compress(
            json.dumps(
                {
                    "format": "gan-cot-outcomes",
                    "version": 1,
                    "experiment": "x",
                    "questions": [],
                    "runs": [{"run_id": "r", "figures": {}, "rows": {"questions": 3}}],
                }
            ).encode()
        ),  # fmt: skip
    }
    for name, blob in bad.items():
        path = tmp_path / name
        path.write_bytes(blob)
        _one_error(capsys, script.main, ["--outcomes", str(path), "--output", png], path)
    data = tmp_path / "data"  # results.py names the file too, where the store lacks the experiment
    data.mkdir()
    (data / f"{EXPERIMENT}.json.gz").write_bytes(bad["cut.json.gz"])
    (tmp_path / "doc.md").write_text(DOC)
    argv = ["--doc", str(tmp_path / "doc.md"), "--outputs", str(tmp_path), "--mlflow-dir", str(tmp_path / "none"),
            "--data", str(data)]  # fmt: skip
    _one_error(capsys, results.main, argv, data / f"{EXPERIMENT}.json.gz")
    argv = ["--outcomes", str(store["file"]), "--mlflow-dir", str(store["dir"])]
    assert "leave out --mlflow-dir" in _one_error(capsys, script.main, argv)
    assert not (tmp_path / "p.png").exists()


def test_a_fresh_store_s_new_runs_join_the_committed_file(store, tmp_path, capsys):
    """A clone continues the comparison: its store holds only a new method's runs; results.py shows them beside the
    committed file's, and ``--export F --merge F`` writes both, so the file alone gives the same page."""
    import mlflow

    from gan_cot import tracking

    script, prior = store["script"], mlflow.get_tracking_uri()
    data = tmp_path / "data"
    data.mkdir()
    committed = data / f"{EXPERIMENT}.json.gz"
    committed.write_bytes(store["file"].read_bytes())
    meta = tmp_path / "outputs" / "comparison" / "ledger-hard"
    meta.mkdir(parents=True)
    newer = SUMMARY | {"command": "python scripts/run_comparison.py --methods gan-cot-next --seeds 0", "seeds": [0]}
    (meta / "summary.json").write_text(json.dumps(newer))
    with pytest.MonkeyPatch.context() as mp:
        mp.delenv("MLFLOW_TRACKING_URI", raising=False)
        mp.chdir(tmp_path)
        tracking.setup(EXPERIMENT, tmp_path / "mlruns")
        with mlflow.start_run(run_name="gan-cot-next-seed0"):
            mlflow.set_tags({"method": "gan-cot-next", "seed": "0", "task": "ledger-hard"})
            mlflow.log_metrics({"final_accuracy": 0.9, "final_mean_tokens": 61.0, "base_accuracy": 52 / 60,
                                "base_mean_tokens": 84.0})  # fmt: skip
            tracking.log_eval_rows(_rows(0, 54, 57))
    mlflow.set_tracking_uri(prior)
    doc = tmp_path / "doc.md"
    doc.write_text(DOC)
    fresh = ["--doc", str(doc), "--outputs", str(tmp_path / "outputs"), "--mlflow-dir", str(tmp_path / "mlruns"),
             "--data", str(data)]  # fmt: skip
    capsys.readouterr()
    assert results.main(fresh) == 0
    assert f"and {committed} (4 runs the store lacks)" in capsys.readouterr().out
    page = doc.read_text()
    assert "| gan-cot-next | 0 | 60 |" in page and "| gan-cot | 0,1 | 60 |" in page and "| base |" in page
    assert page.index("--seeds 0,1`") < page.index("--methods gan-cot-next --seeds 0`")  # the older record first
    assert "| vs gan-cot-next (acc, tokens, AES) |" in page  # ledger-hard's marks: against its config's row

    argv = ["--experiment", EXPERIMENT, "--mlflow-dir", str(tmp_path / "mlruns"), "--export", str(committed),
            "--summaries", str(meta), "--merge", str(committed)]  # fmt: skip
    assert script.main(argv) == 0
    assert "5 finished runs" in capsys.readouterr().out and not list(data.glob("*.tmp"))
    merged = outcomes.read(committed)
    assert sorted(r["method"] for r in merged["records"]) == ["base", "base", "gan-cot", "gan-cot", "gan-cot-next"]
    assert [s["command"] for s in merged["summaries"]] == [SUMMARY["command"], newer["command"]]
    assert script.main(argv) == 0  # again: nothing doubled
    assert len(outcomes.read(committed)["records"]) == 5 and len(outcomes.read(committed)["summaries"]) == 2
    bare = ["--doc", str(doc), "--outputs", str(tmp_path / "no-outputs"), "--mlflow-dir", str(tmp_path / "no-mlruns"),
            "--data", str(data), "--check"]  # fmt: skip
    assert results.main(bare) == 0  # the file alone gives the same page

    other = tmp_path / "other.json.gz"
    other.write_bytes(outcomes.to_bytes(outcomes.export("comparison-ledger", [], [])))
    argv[-1] = str(other)
    assert "holds experiment comparison-ledger" in _one_error(capsys, script.main, argv, other)
    assert "give --export" in _one_error(capsys, script.main, ["--merge", str(committed)], committed)

"""scripts/results.py: the generated blocks of docs/results.md are rewritten from what the runs left, the prose and
the blocks without data are kept, and --check says whether the page is current."""

import json

from commands import command  # noqa: E402

results = command("results")

ORACLE = {
    "task": "ledger-hard", "seed": 0, "steps": 4, "val_n": 8, "eval_n": 8, "wall_seconds": 3.0,
    "choice": {"1": "line", "2": "timeline"},
    "levels": {"1": {"n": 5, "base": 0.8, "timeline": 0.8, "line": 1.0, "timeline_tokens": 30.0, "line_tokens": 9.0},
               "2": {"n": 3, "base": 0.667, "timeline": 0.667, "line": 0.0, "timeline_tokens": 40.0,
                     "line_tokens": 11.0}},
    "figures": {"oracle": {"n": 8, "accuracy": 0.875, "tokens": 20.6}, "base": {"n": 8, "accuracy": 0.75, "tokens": 80.0}},
}  # fmt: skip

DOC = """# Results

Prose that stays.

<!-- begin:oracle:ledger-hard -->
(not measured yet)
<!-- end:oracle:ledger-hard -->

<!-- begin:comparison:ledger-hard -->
(not measured yet)
<!-- end:comparison:ledger-hard -->
"""


def test_the_oracle_block_comes_from_the_comparison_folder_and_check_tracks_it(tmp_path):
    doc, outputs = tmp_path / "results.md", tmp_path / "outputs"
    doc.write_text(DOC)
    folder = outputs / "comparison" / "ledger-hard" / "seed0" / "oracle"
    folder.mkdir(parents=True)
    (folder / "oracle.json").write_text(json.dumps(ORACLE))
    argv = [
        "--doc",
        str(doc),
        "--outputs",
        str(outputs),
        "--mlflow-dir",
        str(tmp_path / "mlruns"),
        "--data",
        str(tmp_path / "no-outcomes"),
    ]  # not the committed docs/data/
    assert results.main([*argv, "--check"]) == 1  # the oracle block is out of date
    assert results.main(argv) == 0
    text = doc.read_text()
    assert "Prose that stays." in text
    assert "| 1 | 5 | 0.800 | 0.800 | 1.000 | line |" in text  # level, n, base, timeline, line, the choice
    assert "| oracle | 0.875 | 20.6 |" in text
    assert "<!-- begin:comparison:ledger-hard -->\n(not measured yet)" in text  # no experiment: left alone
    assert results.main([*argv, "--check"]) == 0
    assert not list(tmp_path.glob("*.tmp"))


def test_the_oracle_block_averages_the_seeds_it_finds_and_names_each_file(tmp_path):
    doc, outputs = tmp_path / "results.md", tmp_path / "outputs"
    doc.write_text(DOC)
    other = json.loads(json.dumps(ORACLE)) | {
        "seed": 1,
        "wall_seconds": 5.0,
        "choice": {"1": "timeline", "2": "timeline"},
    }
    other["levels"]["1"]["line"] = 0.6
    other["figures"]["oracle"] = {"n": 8, "accuracy": 0.625, "tokens": 30.6}
    for seed, o in ((0, ORACLE), (1, other)):
        folder = outputs / "comparison" / "ledger-hard" / f"seed{seed}" / "oracle"
        folder.mkdir(parents=True)
        (folder / "oracle.json").write_text(json.dumps(o))
    argv = ["--doc", str(doc), "--outputs", str(outputs), "--mlflow-dir", str(tmp_path / "mlruns"),
            "--data", str(tmp_path / "no-outcomes")]  # fmt: skip
    assert results.main(argv) == 0
    text = doc.read_text()
    assert "Seeds 0, 1, 4 SFT steps per granularity" in text and "--seed S --json`, 3 / 5 s)" in text
    assert "| 1 | 10 | 0.800 | 0.800 | 0.800 | line / timeline |" in text  # line: 5 of 5 and 3 of 5 questions
    assert "| 2 | 6 | 0.667 | 0.667 | 0.000 | timeline |" in text  # the seeds agree: one choice
    assert "| oracle | 0.750 | 25.6 | 0.875 / 0.625 |" in text
    assert results.main([*argv, "--check"]) == 0

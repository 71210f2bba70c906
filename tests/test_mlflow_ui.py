"""What a user sees in the MLflow UI, in headless Chromium (scripts/check_mlflow_ui.py); skipped without Chromium."""

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_the_ui_opens_on_runs_with_summary_columns_a_validation_curve_and_per_question_table(tmp_path, monkeypatch):
    """The documented link lists the runs with the summary figures as columns; a run's page starts with its summary
    and holds its validation curve, per-question table, point against the base and the comparison's plot."""
    from commands import command

    script = command("check_mlflow_ui")
    if script.find_chromium() is None:
        pytest.skip("no Chromium on this machine (Debian: apt-get install chromium)")
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    checks = script.run_checks(tmp_path / "ui")
    failed = [c["name"] for c in checks if c["required"] and not c["ok"]]
    assert not failed, failed
    names = " ".join(c["name"] for c in checks if c["required"])
    for what in ("summary metrics as columns", "validation curve", "per-question table", "comparison's plot"):
        assert what in names, what
    assert all(Path(c["screenshot"]).read_bytes()[:4] == b"\x89PNG" for c in checks)

"""The console commands of pyproject.toml: each names a function of gan_cot.cli_entry that runs its script's main()
on the command line, and a checkout without the script gets one error line."""

import importlib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def commands() -> dict[str, str]:
    tomllib = pytest.importorskip("tomllib")
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]


def test_every_command_runs_its_script(monkeypatch, capsys):
    assert {"gan-cot-train", "gan-cot-evaluate", "gan-cot-bench"} <= set(commands())
    for command, target in commands().items():
        module, _, func = target.partition(":")
        entry = getattr(importlib.import_module(module), func)
        monkeypatch.setattr("sys.argv", [command, "--help"])
        with pytest.raises(SystemExit) as e:
            entry()
        assert e.value.code == 0, command
        assert capsys.readouterr().out.startswith(f"usage: {command}"), command


def test_a_missing_script_is_one_error_line(monkeypatch, tmp_path, capsys):
    from gan_cot import cli_entry

    monkeypatch.setattr(cli_entry, "REPO_ROOT", tmp_path)
    monkeypatch.setattr("sys.argv", ["gan-cot-train"])
    with pytest.raises(SystemExit) as e:
        cli_entry.train()
    err = capsys.readouterr().err
    assert e.value.code == 2 and err.startswith("error: ") and len(err.splitlines()) == 1
    assert "scripts/train_adv.py not found" in err and "pip install -e ." in err

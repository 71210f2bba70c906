"""The commands: every console script of pyproject.toml is the ``main`` of a module of the package (no file loaded
by path), and every file under scripts/ is a few lines that call one."""

import ast
import importlib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def console_scripts() -> dict[str, str]:
    tomllib = pytest.importorskip("tomllib")
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]


def test_every_console_script_is_a_main_of_the_package(monkeypatch, capsys):
    assert {"gan-cot-train", "gan-cot-evaluate", "gan-cot-download-discriminator"} <= set(console_scripts())
    for name, target in console_scripts().items():
        module, _, func = target.partition(":")
        assert module.startswith(("gan_cot.commands.", "gan_cot_lab.commands.")) and func == "main", target
        monkeypatch.setattr("sys.argv", [name, "--help"])
        with pytest.raises(SystemExit) as e:
            getattr(importlib.import_module(module), func)()
        assert e.value.code == 0, name
        assert capsys.readouterr().out.startswith(f"usage: {name}"), name


def test_every_script_file_only_calls_its_command():
    scripts = sorted((ROOT / "scripts").glob("*.py"))
    assert {"train_adv.py", "evaluate.py", "run_comparison.py"} <= {p.name for p in scripts}
    for path in scripts:
        tree = ast.parse(path.read_text())
        imports = [n for n in tree.body if isinstance(n, ast.ImportFrom)]
        assert len(imports) == 1 and imports[0].names[0].name == "main", path.name
        module = imports[0].module
        assert module in (f"gan_cot.commands.{path.stem}", f"gan_cot_lab.commands.{path.stem}"), path.name
        assert hasattr(importlib.import_module(module), "main"), module
        assert len(path.read_text().splitlines()) <= 8, path.name

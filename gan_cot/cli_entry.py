"""The console commands of ``[project.scripts]`` (``gan-cot-train``, ``gan-cot-evaluate`` ...): each runs the
``main()`` of its file under ``scripts/``, which is not a package, loaded by path from the repository the package
is installed from (an editable install, ``pip install -e .``). Without that checkout a command says so and exits 2.

``gan-cot-train`` is one process; several GPUs still go through the launcher: ``deepspeed scripts/train_adv.py``.
"""

from __future__ import annotations

import importlib.util
from functools import partial
from types import ModuleType

from gan_cot.cli import REPO_ROOT, UsageError, fail


def load_script(name: str) -> ModuleType:
    """``scripts/<name>.py`` of the repository as a module; UsageError when the file is not there."""
    path = REPO_ROOT / "scripts" / f"{name}.py"
    if not path.is_file():
        raise UsageError(
            f"{path} not found: the gan-cot commands run the scripts of a source checkout; "
            f"install one with pip install -e ., or run python scripts/{name}.py from it"
        )
    spec = importlib.util.spec_from_file_location(f"gan_cot_script_{name}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run_script(name: str) -> int:
    """Run ``scripts/<name>.py``'s ``main()`` on this process's command line; returns its exit code."""
    try:
        module = load_script(name)
    except UsageError as e:
        fail(str(e))
    return module.main() or 0


# the commands, by the names [project.scripts] gives them
train = partial(run_script, "train_adv")
evaluate = partial(run_script, "evaluate")
train_discriminator = partial(run_script, "train_discriminator")
download_discriminator = partial(run_script, "download_discriminator")
compare_runs = partial(run_script, "compare_runs")
baseline = partial(run_script, "train_baseline")
bench = partial(run_script, "bench")

"""The package as a user installs it: a wheel built from this checkout, installed (not editable) into a fresh virtual
environment outside it, runs its commands from another folder, finding its shipped configs, policy and
discriminators inside the installed package."""

import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SOURCES = ("pyproject.toml", "setup.py", "README.md", "gan_cot", "gan_cot_lab", "configs", "models", "discriminators")


def run(cmd, cwd, env, timeout=900):
    p = subprocess.run([str(c) for c in cmd], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert p.returncode == 0, f"{cmd[0]} exited {p.returncode}:\n{p.stdout[-3000:]}\n{p.stderr[-3000:]}"
    return p.stdout


@pytest.mark.slow
def test_the_wheel_installs_and_its_commands_run_outside_the_checkout(tmp_path):
    # the wheel, built from a copy so that the checkout gets no build/ or egg-info
    src = tmp_path / "src"
    src.mkdir()
    for name in SOURCES:
        if (ROOT / name).is_dir():
            shutil.copytree(ROOT / name, src / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy(ROOT / name, src / name)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "MLFLOW_TRACKING_URI", "VIRTUAL_ENV")}
    env["OMP_NUM_THREADS"] = "1"
    run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "-q",
            "--no-deps",
            "--no-build-isolation",
            "-w",
            tmp_path / "dist",
            src,
        ],
        tmp_path,
        env,
    )
    wheel = next((tmp_path / "dist").glob("gan_cot-*.whl"))

    # a fresh environment: the wheel itself, its dependencies read from this interpreter's site-packages (a path
    # entry: the editable install's finder there is not run), nothing of the checkout on the path
    venv = tmp_path / "venv"
    run([sys.executable, "-m", "venv", venv], tmp_path, env)
    py = venv / "bin" / "python"
    site = Path(run([py, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], tmp_path, env).strip())
    (site / "dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    run([py, "-m", "pip", "install", "-q", "--no-deps", "--no-index", wheel], tmp_path, env)
    work = tmp_path / "work"
    work.mkdir()
    where = run(
        [py, "-c", "import gan_cot, gan_cot_lab; print(gan_cot.__file__); print(gan_cot_lab.__file__)"], work, env
    )
    assert all(line.startswith(str(site)) for line in where.split()), where
    bin_ = venv / "bin"

    listed = run([bin_ / "gan-cot-download-discriminator", "--list"], work, env)
    assert "ledger-tiny" in listed and "gsm8k-minilm" in listed

    out = run(
        [
            bin_ / "gan-cot-train",
            "--config",
            "configs/tiny.yaml",
            "output_dir=run",
            "rounds=1",
            "eval.n=4",
        ],
        work,
        env,
    )
    assert out.strip().splitlines()[-1].startswith("{")
    assert (work / "run" / "adapter" / "adapter_config.json").is_file()
    assert (work / "mlruns" / "mlflow.db").is_file()  # the store in the working directory, as MLflow's default

    out = run([bin_ / "gan-cot-evaluate", "--model", work / "run" / "adapter", "--n", "4", "--json"], work, env)
    assert '"accuracy"' in out.strip().splitlines()[-1]

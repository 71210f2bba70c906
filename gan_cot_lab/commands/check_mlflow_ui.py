"""Check what a user sees in the MLflow UI, in a real browser: headless Chromium against ``mlflow ui`` on 127.0.0.1.

    python scripts/check_mlflow_ui.py --output outputs/mlflow-ui --json     # needs Debian's chromium

Logs one run the way a training run does (:class:`gan_cot.run_logger.RunLogger` on ``configs/tiny.yaml``: its name,
tags, dataset inputs, three rounds' metrics with a validation evaluation, the final figures with per-question rows of
the run and its base) to a fresh store, compares it (``compare_runs.py`` attaches its plot), plus an experiment made
the way MLflow makes one (no kind tag) for contrast, starts the UI the README's way, and has Chromium render:

- the link a run prints and the README documents (:func:`gan_cot.tracking.runs_url`): the experiment's runs, with
  the summary figures (``final_accuracy``, ``final_mean_tokens``, ``base_accuracy``) as columns;
- the README's link (``#/experiments?workflowType=machine_learning``) and the experiment's page through it: they
  must open on the runs (the run's name ``gan-cot-gold-seed0`` is listed), not on an empty GenAI traces page;
- the run's model-metrics page: the metrics must stand in sections by phase (``rollout``, ``update``,
  ``discriminator``, ``gate``, ``eval``), the validation curve (``eval/val_accuracy``) among them;
- the run's overview: its summary (the final figures against the base) before its metrics list, and the dataset
  inputs (``ledger/test``, ``ledger/train``);
- the run's artifacts: the per-question table (``eval/test_table.json``), its point against the base
  (``eval/pareto_point.png``) and the comparison's plot (``comparison/pareto.png``).

Two pages are recorded, not required: the experiment's plain link, and the experiment made without a kind. MLflow
3.17's UI decides between its GenAI and model-training views by a switch kept in the browser (GenAI for a new
browser, whatever the experiment's ``mlflow.experimentKind`` tag, which gan-cot sets for the versions that read it),
or by the link's ``workflowType``; so a plain link in a new browser opens on traces.

Each page is saved as a PNG screenshot and its rendered DOM as text in ``--output``. Prints one line per check;
with ``--json`` the last line is one JSON object ``{"ok", "checks": [{"name", "ok", "required", "url", "screenshot"}]}``.
The exit code is 1 when a check fails.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from urllib.parse import quote

from gan_cot.distributed import free_port
from gan_cot.shipped import REPO_ROOT
from gan_cot.tracking import runs_url
from gan_cot.usage import fail, print_json

CHROMIUM_FLAGS = [  # what works on these machines (no GPU, no sandbox as root, no network beyond loopback)
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync", "--hide-scrollbars",
]  # fmt: skip
PHASES = ("rollout", "update", "discriminator", "gate", "eval")
RUN_NAME = "gan-cot-gold-seed0"  # the demo run: configs/tiny.yaml refreshes on gold labels
QUESTION = "ledger-question-"  # the demo run's question ids, as its per-question table shows them
SUMMARY = ("final_accuracy", "final_mean_tokens", "base_accuracy")
VAL = (
    "eval/val_accuracy"  # the validation curve: one point per round  # columns of the runs list in the documented view
)


def find_chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")


def log_demo_run(store: Path) -> dict:
    """One run logged by the trainer's own logger, and a GenAI-looking experiment for contrast; their ids."""
    import mlflow

    from gan_cot.config_loader import load_config
    from gan_cot.run_logger import RunLogger
    from gan_cot.trainer_config import AdversarialConfig

    out = store.parent / "run"
    cfg = load_config(AdversarialConfig, REPO_ROOT / "configs/tiny.yaml", [f"mlflow_dir={store}", f"output_dir={out}"])
    logger = RunLogger(cfg, out, active=True, log=lambda m: None)
    run_id = logger.start(None, False, "gan-cot")
    logger.metrics({"pool_size": 64.0, "warmup_sft_loss": 0.9})
    logger.metrics({"base_accuracy": 0.9, "base_mean_tokens": 80.0})
    for r in range(3):
        logger.round(r, {"rollout_accuracy": 0.8, "rollout_tokens": 60.0 - r, "policy_loss": 0.1, "kl": 0.01,
                         "sft_loss": 0.5, "lr": 1e-3, "disc_f1_present": 0.7, "frac_useful": 0.5, "alpha_mean": 0.9,
                         "gate_loss": 0.0, "val_accuracy": 0.8 + 0.05 * r})  # fmt: skip
    adapter = out / "adapter"
    adapter.mkdir(parents=True, exist_ok=True)
    (adapter / "adapter_config.json").write_text("{}")
    rows = [{"id": f"{QUESTION}{i}", "difficulty": i % 3, "correct": i % 10 != 0, "tokens": 40 + i % 5, "alpha": 1.0}
            for i in range(20)]  # fmt: skip
    base = {"accuracy": 0.95, "mean_tokens": 80.0,
            "rows": [{"id": r["id"], "difficulty": r["difficulty"], "correct": True, "tokens": 80} for r in rows]}  # fmt: skip
    logger.finish({"accuracy": 0.9, "mean_tokens": 42.0, "n": 20}, adapter, rows=rows, base=base)
    exp_id = mlflow.get_run(run_id).info.experiment_id
    # the comparison's plot, attached to the runs of the reference method (here the only one)
    from gan_cot_lab.commands import compare_runs as compare

    compare.main(["--experiment", cfg.experiment, "--mlflow-dir", str(store), "--output", str(out / "pareto.png"),
                  "--boot", "50"])  # fmt: skip
    bare = mlflow.MlflowClient().create_experiment("made-without-kind")
    return {"experiment": exp_id, "run": run_id, "bare": bare}


def start_ui(store: Path, port: int, log: Path) -> subprocess.Popen:
    """``mlflow ui`` as the README starts it, on 127.0.0.1:port; waits until it answers (10 minutes at most: it
    starts slowly on a busy machine)."""
    mlflow_bin = Path(sys.executable).parent / "mlflow"
    cmd = [str(mlflow_bin) if mlflow_bin.exists() else "mlflow", "ui", "--backend-store-uri",
           f"sqlite:///{store / 'mlflow.db'}", "--default-artifact-root", str(store / "artifacts"),
           "--host", "127.0.0.1", "--port", str(port), "--workers", "1"]  # fmt: skip
    # no background job runners (they are for GenAI evaluation jobs); a session of its own, so stop() ends it all
    env = dict(os.environ, MLFLOW_SERVER_ENABLE_JOB_EXECUTION="false")
    proc = subprocess.Popen(cmd, stdout=open(log, "w"), stderr=subprocess.STDOUT, env=env, start_new_session=True)
    deadline = time.time() + 600
    while time.time() < deadline:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2)
            return proc
        except OSError:
            if proc.poll() is not None:
                raise RuntimeError(f"mlflow ui exited ({proc.returncode}); see {log}") from None
            time.sleep(1)
    stop(proc)
    raise RuntimeError(f"mlflow ui did not answer on port {port} within 600 s; see {log}")


def stop(proc: subprocess.Popen) -> None:
    """End the UI and every process it started (its own session)."""
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)
    except ProcessLookupError:
        pass
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)


def render(chromium: str, url: str, png: Path, wait_ms: int) -> str:
    """The page's DOM after ``wait_ms`` of virtual time, and a screenshot of it."""
    profile = tempfile.mkdtemp(prefix="chromium-")
    try:
        common = [chromium, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", f"--virtual-time-budget={wait_ms}"]
        common.append("--window-size=1400,1000")  # the DOM of what the screenshot shows: wide tables render more
        dom = subprocess.run([*common, "--dump-dom", url], capture_output=True, text=True, timeout=300).stdout
        subprocess.run([*common, f"--screenshot={png}", url], capture_output=True, timeout=300)
    finally:
        shutil.rmtree(profile, ignore_errors=True)
    return dom


def visible_text(dom: str) -> str:
    dom = re.sub(r"<(script|style)[^>]*>.*?</\1>", " ", dom, flags=re.S)
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", dom))


def run_checks(output: Path, wait_ms: int = 15000) -> list[dict]:
    chromium = find_chromium()
    if chromium is None:
        raise RuntimeError("no Chromium: install Debian's chromium package (apt-get install chromium)")
    output.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="mlflow-ui-"))
    store = work / "mlruns"
    with contextlib.redirect_stdout(io.StringIO()):  # the demo run's and the comparison's own lines
        ids = log_demo_run(store)
    port = free_port()
    ui = start_ui(store, port, output / "mlflow-ui.log")
    base = f"http://127.0.0.1:{port}/#/experiments"
    ml = "?workflowType=machine_learning"
    run = f"{base}/{ids['experiment']}/runs/{ids['run']}"
    pages = {  # name: (url, check, required)
        "the documented link opens the experiment's runs with the summary metrics as columns": (
            runs_url(ids["experiment"], f"http://127.0.0.1:{port}"),
            lambda t: RUN_NAME in t and all(c in t for c in SUMMARY), True),
        "the README's link lists the experiment in the model-training view": (
            f"{base}{ml}", lambda t: "gan-cot" in t and "Model training" in t, True),
        "the experiment opens on its runs": (f"{base}/{ids['experiment']}{ml}", lambda t: RUN_NAME in t, True),
        "metrics in sections by phase, the validation curve's among them": (
            f"{run}/model-metrics", lambda t: all(p in t for p in PHASES) and re.search(r"\beval \(1\)", t), True),
        "the validation curve, round by round": (
            f"http://127.0.0.1:{port}/#/metric/?runs={json.dumps([ids['run']])}&metric={quote(json.dumps(VAL))}"
            f"&experiments={json.dumps([ids['experiment']])}&plot_metric_keys={quote(json.dumps([VAL]))}&x_axis=step",
            lambda t: VAL in t and "Step" in t, True),
        "the run's summary (figures against the base) on its overview, before its metrics list": (
            run, lambda t: "this run" in t and "0.900" in t and t.find("this run") < t.find("final_accuracy"), True),
        "dataset inputs on the run's overview": (
            run, lambda t: "ledger/test" in t and ("ledger/train" in t or "+1" in t), True),
        "the per-question table among the run's artifacts": (
            f"{run}/artifacts/eval/test_table.json", lambda t: f"{QUESTION}0" in t and "base_correct" in t, True),
        "the run's point against its base among its artifacts": (
            f"{run}/artifacts/eval/pareto_point.png", lambda t: "pareto_point.png" in t, True),
        "the comparison's plot attached to the run": (
            f"{run}/artifacts/comparison/pareto.png", lambda t: "comparison" in t and "pareto.png" in t, True),
        "(recorded) the plain link of the experiment, new browser: runs listed": (
            f"{base}/{ids['experiment']}", lambda t: RUN_NAME in t, False),
        "(recorded) an experiment without the kind, plain link: runs listed": (
            f"{base}/{ids['bare']}", lambda t: RUN_NAME in t, False),
    }  # fmt: skip
    checks = []
    try:
        for i, (name, (url, ok, required)) in enumerate(pages.items()):
            png = output / f"page-{i}.png"
            text = visible_text(render(chromium, url, png, wait_ms))
            (output / f"page-{i}.txt").write_text(text)
            checks.append(
                {"name": name, "ok": bool(ok(text)), "required": required, "url": url, "screenshot": str(png)}
            )
    finally:
        stop(ui)
        shutil.rmtree(work, ignore_errors=True)
    return checks


def main(argv=None) -> int:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--output", default=str(REPO_ROOT / "outputs/mlflow-ui"), help="screenshots and page texts")
    p.add_argument("--wait-ms", type=int, default=15000, help="virtual time each page gets to render")
    p.add_argument("--json", action="store_true", help="print one JSON object as the last line")
    args = p.parse_args(argv)
    try:
        checks = run_checks(Path(args.output), args.wait_ms)
    except RuntimeError as e:
        fail(str(e))
    for c in checks:
        mark = ("ok  " if c["ok"] else "FAIL") if c["required"] else ("yes " if c["ok"] else "no  ")
        print(f"{mark} {c['name']}  ({c['screenshot']})")
    ok = all(c["ok"] for c in checks if c["required"])
    if args.json:
        print_json({"ok": ok, "checks": checks})
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

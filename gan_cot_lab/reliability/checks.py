"""What a killed and resumed run left behind: whether every checkpoint on disk loads, and how its results and
MLflow metrics compare with those of an unbroken run of the same seed."""

from __future__ import annotations

import json
from pathlib import Path

from gan_cot.run_logger import grouped

REL_TOL = 1e-4
RESULT_KEYS = ("base_accuracy", "accuracy", "base_mean_tokens", "mean_tokens", "base_tokens_vs_minimal",
               "tokens_vs_minimal", "n")  # fmt: skip


def close(a: float, b: float) -> bool:
    return abs(a - b) <= REL_TOL * max(1.0, abs(a))


# ------------------------------------------------------------------------------------------------ checkpoints


def checkpoint_problem(folder: Path) -> str | None:
    """Why the checkpoint ``folder`` does not load, or None: every file the trainer reads back is read here."""
    import torch
    from safetensors.torch import load_file

    from gan_cot.discriminator.checkpoint import validate_checkpoint

    try:
        state = json.loads((folder / "state.json").read_text())
        for key in ("round", "run_id", "pool"):
            if key not in state:
                return f"state.json has no {key!r}"
        if not isinstance(state["round"], int) or not isinstance(state["pool"], dict):
            return f"state.json has round {state['round']!r} and a pool of type {type(state['pool']).__name__}"
        rng = json.loads((folder / "rng-0.json").read_text())
        if set(rng) != {"python", "numpy", "torch"}:
            return f"rng-0.json has keys {sorted(rng)}"
        json.loads((folder / "adapter" / "adapter_config.json").read_text())
        load_file(str(folder / "adapter" / "adapter_model.safetensors"))
        validate_checkpoint(folder / "discriminator")
        load_file(str(folder / "discriminator" / "model.safetensors"))
        json.loads((folder / "discriminator" / "discriminator_card.json").read_text())
        engine_files = sorted((folder / "engine" / "state").glob("*.pt"))
        if not engine_files:
            return "engine/state holds no DeepSpeed state files"
        for f in engine_files:  # written by this very run, in its own temporary folder
            torch.load(f, map_location="cpu", weights_only=False)
    except Exception as e:  # noqa: BLE001 - any failure to read is the finding
        return f"{type(e).__name__}: {' '.join(str(e).split())[:300]}"
    return None


def inspect_checkpoints(out: Path) -> dict:
    """Corrupt checkpoints (by folder name, with the reason) and unfinished ``.tmp`` writes under ``out``."""
    root = out / "checkpoints"
    corrupt, tmp = {}, []
    if not root.is_dir():
        return {"corrupt": corrupt, "tmp": tmp, "latest": None, "rounds": []}
    latest = (root / "latest").read_text().strip() if (root / "latest").exists() else None
    if latest is not None and not (root / latest).is_dir():
        corrupt["latest"] = f"names {latest}, which does not exist"
    rounds = []
    for d in sorted(root.glob("round-*")):
        if d.name.endswith(".tmp"):
            tmp.append(d.name)
            continue
        rounds.append(d.name)
        problem = checkpoint_problem(d)
        if problem:
            corrupt[d.name] = problem
    return {"corrupt": corrupt, "tmp": tmp, "latest": latest, "rounds": rounds}


# ------------------------------------------------------------------------------------------------ MLflow


def experiment_runs(store: Path, experiment: str) -> list[dict]:
    """Every run of ``experiment``: id, status and metric histories {key: [(step, value), ...]}."""
    import mlflow
    from mlflow.tracking import MlflowClient

    mlflow.set_tracking_uri(f"sqlite:///{store.resolve() / 'mlflow.db'}")
    client = MlflowClient()
    exp = client.get_experiment_by_name(experiment)
    if exp is None:
        return []
    from gan_cot.run_logger import WALL_CLOCK

    runs = []
    for run in client.search_runs([exp.experiment_id]):
        history = {
            key: sorted((m.step, m.value) for m in client.get_metric_history(run.info.run_id, key))
            for key in run.data.metrics
            if not key.startswith(WALL_CLOCK)  # seconds differ between any two runs
        }
        runs.append({"run_id": run.info.run_id, "status": run.info.status, "metrics": history})
    return runs


def compare_runs(unbroken: dict, killed: dict, rounds: int) -> dict:
    """Differences between the unbroken run's metrics and the killed run's, and the killed run's round steps."""
    max_diff, max_dup, dups, problems = 0.0, 0.0, 0, []  # dups: (metric, step) pairs logged more than once
    for key, ref in unbroken["metrics"].items():
        got = killed["metrics"].get(key)
        if got is None:
            problems.append(f"metric {key} missing from the killed run")
            continue
        ref_by_step = {}
        for step, value in ref:
            ref_by_step.setdefault(step, value)
        got_by_step: dict[int, list[float]] = {}
        for step, value in got:
            got_by_step.setdefault(step, []).append(value)
        if set(got_by_step) != set(ref_by_step):
            problems.append(f"metric {key}: steps {sorted(got_by_step)} vs {sorted(ref_by_step)} in the unbroken run")
        for step, values in got_by_step.items():
            if len(values) > 1:
                dups += 1
                spread = max(values) - min(values)
                max_dup = max(max_dup, spread)
                if not all(close(values[0], v) for v in values):
                    problems.append(f"metric {key} step {step} logged {len(values)} times with different values")
            if step in ref_by_step:
                for v in values:
                    diff = abs(v - ref_by_step[step])
                    max_diff = max(max_diff, diff)
                    if not close(ref_by_step[step], v):
                        problems.append(f"metric {key} step {step}: {v} vs {ref_by_step[step]} unbroken")
    round_steps = [s for s, _ in killed["metrics"].get(grouped("rollout_tokens"), [])]  # logged once per round
    steps = sorted(set(round_steps))
    if steps != list(range(rounds)):
        problems.append(f"round steps logged {steps}, expected 0..{rounds - 1}")
    again = sorted({s for s in round_steps if round_steps.count(s) > 1})
    return {"max_diff": max_diff, "max_duplicate_diff": max_dup, "duplicates": dups, "steps": steps,
            "rounds_logged_twice": again, "problems": problems}  # fmt: skip


def not_compared() -> dict:
    """What :func:`compare_with_unbroken` returns when there was nothing to compare."""
    cmp = {"duplicates": 0, "max_duplicate_diff": 0.0, "steps": [], "rounds_logged_twice": []}
    return {"max_diff": None, "mlflow_runs": None, "cmp": cmp, "problems": []}


def compare_with_unbroken(ref_out: Path, out: Path, store: Path, rounds: int) -> dict:
    """The killed run (``out``, experiment ``chaos-killed``) against the unbroken one (``ref_out``,
    ``chaos-unbroken``), both in the MLflow store ``store``: result.json, the number of MLflow runs, and the
    metrics of :func:`compare_runs`. Returns max_diff (None unless the metrics were compared), mlflow_runs, cmp
    and problems."""
    problems: list[str] = []
    max_diff = None
    cmp = not_compared()["cmp"]
    a = json.loads((ref_out / "result.json").read_text())
    b = json.loads((out / "result.json").read_text())
    final_diffs = []
    for key in RESULT_KEYS:
        if a.get(key) is None or b.get(key) is None:
            if a.get(key) != b.get(key):
                problems.append(f"result {key}: {b.get(key)} vs {a.get(key)} unbroken")
            continue
        final_diffs.append(abs(a[key] - b[key]))
        if not close(a[key], b[key]):
            problems.append(f"result {key}: {b[key]} vs {a[key]} unbroken")
    ref_runs = experiment_runs(store, "chaos-unbroken")
    runs = experiment_runs(store, "chaos-killed")
    if len(runs) != 1:
        problems.append(
            f"the killed run's experiment holds {len(runs)} MLflow runs, expected 1: "
            + ", ".join(f"{r['run_id']} ({r['status']}, rounds "
                        f"{sorted({s for s, _ in r['metrics'].get(grouped('rollout_tokens'), [])})})" for r in runs)
        )  # fmt: skip
    main_run = next((r for r in runs if r["run_id"] == b["run_id"]), None)
    if main_run is None:
        problems.append(f"result.json's run {b['run_id']} is not in MLflow")
    elif len(ref_runs) == 1:
        cmp = compare_runs(ref_runs[0], main_run, rounds)
        problems += cmp["problems"]
        max_diff = max([cmp["max_diff"], *final_diffs])
    else:
        problems.append(f"the unbroken experiment holds {len(ref_runs)} runs")
    return {"max_diff": max_diff, "mlflow_runs": len(runs), "cmp": cmp, "problems": problems}

"""Run every method on the same task, seed and test questions into one MLflow experiment, then compare them.

    python scripts/run_comparison.py                        # all methods, experiment "comparison" in mlruns/
    python scripts/run_comparison.py --methods srs,grpo-kimi,gan-cot --eval-n 200 --json
    python scripts/run_comparison.py --mlflow-dir outputs/cmp/mlruns --output-root outputs/cmp --dry-run

Each method is one command, run one after the other in a child process (so one method's memory and threads
never leak into the next):

- ``gan-cot``: ``deepspeed scripts/train_adv.py`` with ``configs/default.yaml``;
- ``gan-cot-length``: the same with ``credit.mode=length`` (the ablation: correctness + length, no discriminator);
- the baselines: ``scripts/train_baseline.py --config configs/baselines/NAME.yaml`` (``merge`` runs after
  ``srs``, whose adapter it averages with the base).

Every run gets ``seed=``, the experiment, the store and ``eval.n=`` from this command, so all are scored by
the same evaluation on the same first N test questions. ``--match-rollouts`` gives every GRPO baseline as many
training steps as it takes to sample as many chains as gan-cot does (its warm-start pool plus
``rounds * rollout.questions * rollout.group_size``); without it they run their configs' budgets. Then
``scripts/compare_runs.py`` prints the table and writes the Pareto plot. A method that fails is reported and the others still run; the exit code is 1 if any
failed. With ``--json`` the last line is one JSON object: ``{"experiment", "methods": {name: {"ok", "seconds",
"log"}}, "compare": <compare_runs.py's JSON>}``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from gan_cot.cli import REPO_ROOT, UsageError, fail, print_json

BASELINES = ["srs", "dpo", "grpo-kimi", "grpo-o1pruner", "grpo-shorterbetter", "grpo-l1", "budget-forcing", "merge"]
METHODS = ["gan-cot", "gan-cot-length", *BASELINES]


def method_command(name: str, args, out: Path) -> list[str]:
    """The command line that runs one method with the shared seed, store, experiment and evaluation size."""
    common = [f"seed={args.seed}", f"experiment={args.experiment}", f"mlflow_dir={args.mlflow_dir}"]
    common.append(f"eval.n={args.eval_n}")
    if name in ("gan-cot", "gan-cot-length"):
        deepspeed = shutil.which("deepspeed") or str(Path(sys.executable).parent / "deepspeed")
        cmd = [deepspeed, "--num_gpus", "1", str(REPO_ROOT / "scripts/train_adv.py"), "--config", str(args.config)]
        cmd += common + [f"output_dir={out / name}"]
        if name == "gan-cot-length":
            cmd.append("credit.mode=length")
        return cmd
    cmd = [sys.executable, str(REPO_ROOT / "scripts/train_baseline.py")]
    cmd += ["--config", str(REPO_ROOT / f"configs/baselines/{name}.yaml")] + common + [f"output_dir={out / name}"]
    if name == "merge":
        cmd.append(f"merge.other={out / 'srs' / 'adapter'}")
    if args.match_rollouts and name.startswith("grpo"):
        cmd.append(f"train.steps={matched_steps(name, args.config)}")
    return cmd


def our_rollouts(config: str | Path) -> int:
    """Chains gan-cot samples in training with this config: a sampled warm-start pool (a pool of the task's
    reference chains samples nothing) and every round's groups."""
    from gan_cot.adv_config import AdvConfig
    from gan_cot.config import load_config

    cfg = load_config(AdvConfig, config)
    sampled = cfg.sft.pool_questions and cfg.sft.pool_source == "samples"
    pool = cfg.sft.pool_questions * cfg.sft.pool_samples if sampled else 0
    return pool + cfg.rounds * cfg.rollout.questions * cfg.rollout.group_size


def matched_steps(name: str, config: str | Path) -> int:
    """GRPO steps that sample ``our_rollouts`` chains: each step samples ``train.batch_size`` completions."""
    import yaml

    batch = yaml.safe_load((REPO_ROOT / f"configs/baselines/{name}.yaml").read_text())["train"]["batch_size"]
    return -(-our_rollouts(config) // batch)


def parse_methods(text: str) -> list[str]:
    names = [m.strip() for m in text.split(",") if m.strip()]
    unknown = [m for m in names if m not in METHODS]
    if unknown:
        raise UsageError(f"--methods: unknown method(s) {', '.join(unknown)}; choose from {', '.join(METHODS)}")
    if "merge" in names and "srs" not in names:
        names.insert(names.index("merge"), "srs")  # merge averages the base with srs's adapter
    if "merge" in names and names.index("merge") < names.index("srs"):
        names.remove("merge")
        names.insert(names.index("srs") + 1, "merge")
    return names


def main(argv=None) -> int:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--methods", default=",".join(METHODS), help=f"comma-separated, from: {', '.join(METHODS)}")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--eval-n", type=int, default=500, help="test questions every method is scored on")
    p.add_argument("--experiment", default="comparison", help="MLflow experiment all runs log to")
    p.add_argument("--mlflow-dir", default=str(REPO_ROOT / "mlruns"), help="local MLflow store folder")
    p.add_argument("--output-root", default=str(REPO_ROOT / "outputs/comparison"), help="one folder per method")
    p.add_argument("--config", default=str(REPO_ROOT / "configs/default.yaml"), help="config of the gan-cot runs")
    p.add_argument("--plot", default=None, help="Pareto PNG (default OUTPUT_ROOT/pareto.png)")
    p.add_argument(
        "--match-rollouts", action="store_true", help="GRPO baselines sample as many training chains as gan-cot"
    )
    p.add_argument("--dry-run", action="store_true", help="print the commands and stop")
    p.add_argument("--json", action="store_true", help="print one JSON object as the last line")
    args = p.parse_args(argv)
    try:
        methods = parse_methods(args.methods)
        if args.eval_n <= 0:
            raise UsageError(f"--eval-n must be positive, got {args.eval_n}")
        if not Path(args.config).is_file():
            raise UsageError(f"--config {args.config}: no such file")
    except UsageError as e:
        fail(str(e))
    out = Path(args.output_root).resolve()
    args.mlflow_dir = str(Path(args.mlflow_dir).resolve())
    plot = Path(args.plot) if args.plot else out / "pareto.png"
    commands = {m: method_command(m, args, out) for m in methods}
    if args.dry_run:
        for m, cmd in commands.items():
            print(f"{m}: {' '.join(cmd)}")
        return 0
    out.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ)
    env.pop("MLFLOW_TRACKING_URI", None)  # every run goes to --mlflow-dir
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
    results: dict[str, dict] = {}
    for i, (m, cmd) in enumerate(commands.items()):
        log = out / f"{m}.log"
        print(f"[{i + 1}/{len(commands)}] {m} (log: {log})", flush=True)
        started = time.time()
        with open(log, "w") as fh:
            rc = subprocess.call(cmd, stdout=fh, stderr=subprocess.STDOUT, cwd=REPO_ROOT, env=env)
        seconds = round(time.time() - started, 1)
        results[m] = {"ok": rc == 0, "seconds": seconds, "log": str(log)}
        print(f"    {'done' if rc == 0 else f'FAILED (exit {rc}), see the log'} in {seconds:.0f} s", flush=True)
    compare = [sys.executable, str(REPO_ROOT / "scripts/compare_runs.py"), "--experiment", args.experiment]
    compare += ["--mlflow-dir", args.mlflow_dir, "--output", str(plot), "--json"]
    proc = subprocess.run(compare, capture_output=True, text=True, cwd=REPO_ROOT, env=env)
    lines = proc.stdout.strip().splitlines()
    print("\n".join(lines[:-1]))
    summary = json.loads(lines[-1]) if proc.returncode == 0 and lines else None
    if proc.returncode != 0:
        print(proc.stderr.strip(), file=sys.stderr)
    if args.json:
        print_json({"experiment": args.experiment, "methods": results, "compare": summary})
    return 0 if all(r["ok"] for r in results.values()) and summary is not None else 1


if __name__ == "__main__":
    sys.exit(main())

"""Run every method like for like, over seeds, into one MLflow experiment, then compare them with 95% intervals.

    python scripts/run_comparison.py --config configs/ledger-hard.yaml --seeds 0,1,2 --json   # the whole comparison
    python scripts/run_comparison.py --config configs/ledger-hard.yaml --methods gan-cot,pruned-sft,srs --seeds 0
    python scripts/run_comparison.py --seeds 0,1,2 --dry-run                                   # print the commands

Each method is one command, run one after the other in a child process (so one method's memory and threads never
leak into the next), seed by seed; outputs go to ``OUTPUT_ROOT/seed<S>/<method>``:

- ``gan-cot``: ``deepspeed scripts/train_adv.py --config CONFIG`` (the recipe; automatic refresh labels unless the
  config says otherwise), and its ablations: ``gan-cot-length`` (no step credit: correctness and a length penalty),
  ``gan-cot-frozen`` (the discriminator never refreshed), ``gan-cot-gold`` (refreshed on the task's gold labels),
  ``gan-cot-nogate`` (the plain adapter, no alpha gate);
- ``--variant NAME:KEY=VALUE ...``: a gan-cot ablation of your own, ``train_adv.py --config CONFIG`` with those
  overrides, run and tagged as ``NAME`` (list it in ``--methods``), e.g. ``--variant
  "gan-cot-t0.7:rollout.temperature=0.7" --methods gan-cot-t0.7``; ``--warm-start-only`` among the overrides
  makes it a pruned-sft variant;
- ``pruned-sft``: gan-cot's warm start alone (``train_adv.py --warm-start-only``);
- ``gan-cot-learned-gate`` and ``pruned-sft-alpha1``: gan-cot and pruned-sft with ``gate.select=[]`` (the learned
  gate, or the plain adapter, as trained), for configs that choose the alpha on validation;
- the baselines: ``scripts/train_baseline.py --config configs/baselines/NAME.yaml``; the chain-rewriting recipes
  (c3ot, tokenskip, implicit-cot, system1-distill, step-skip) start from the base, as their papers do;
- ``base``: the base itself (``scripts/evaluate.py --experiment``), the reference row;
- ``oracle``: ``scripts/oracle.py`` (built-in tasks with granularities; the limit row), once, at the first seed.

Like for like: every run gets the seed, the experiment, the store, the task, the base model, the adapter size, the
evaluation size and the token budget (the gan-cot config's thinking + answer budget) from this command. With
``--warm-start`` (the default) the methods that fine-tune from a warm start (srs, dpo, the GRPO baselines) start
from the same seed's pruned-sft adapter (``init=``, their tag gets ``-warm``), and merge averages the base with it;
``--warm-from pruned-sft-X`` (a ``--variant`` with ``--warm-start-only``) starts them from that variant's adapter
instead, their folders and rows then named with its suffix (``srs-next``, tagged ``srs-warm-next``).
With ``--match-rollouts`` (the default) every method that samples in training samples as many chains as gan-cot
(``rounds x rollout.questions x rollout.group_size``, plus a sampled warm-start pool): GRPO gets the steps and
questions, srs, dpo, tokenskip, system1-distill and step-skip the questions, that add up to it (o1pruner's base
reference samples count); c3ot and implicit-cot sample nothing (the task's reference chains). A gan-cot run
whose MLflow run has no per-question rows gets them from one more evaluation of its adapter, as the trainer evaluates
(``--rows-for DIR`` alone does that for any finished run folder). A method that fails is reported and the others
still run; the exit code is 1 if any failed. Then ``scripts/compare_runs.py`` prints the table and writes the plot.
The record, ``{"experiment", "command", "seeds", "eval_n", "runs": {"METHOD/seedS": {"ok", "seconds", "log"}},
"wall_seconds", "load_average": [start, end], "compare": <compare_runs.py's JSON>}``, is written to
``OUTPUT_ROOT/summary.json`` (``scripts/results.py`` reads it) and, with ``--json``, printed as the last line.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

from gan_cot.checkpoint import write_json
from gan_cot.shipped import REPO_ROOT
from gan_cot.usage import UsageError, fail, print_json

OURS = {  # gan-cot and its ablations: overrides of the config
    "gan-cot": [],
    "gan-cot-length": ["credit.mode=length"],
    "gan-cot-frozen": ["discriminator.mode=frozen"],
    "gan-cot-gold": ["discriminator.labels=gold"],
    "gan-cot-nogate": ["gate.kind=none"],
}
UNSELECTED = {  # the trained policy as it answers without gate.select, under a name of its own
    "gan-cot-learned-gate": "gan-cot",
    "pruned-sft-alpha1": "pruned-sft",
}
WARM = ["srs", "dpo", "grpo-kimi", "grpo-o1pruner", "grpo-shorterbetter", "grpo-l1"]  # fine-tune from a warm start
RECIPES = ["c3ot", "tokenskip", "implicit-cot", "system1-distill", "step-skip"]  # rewrite chains; from the base
BASELINES = [*WARM, "budget-forcing", "merge", *RECIPES]
METHODS = ["base", *OURS, "pruned-sft", *UNSELECTED, *BASELINES, "oracle"]


def settings(config: str | Path) -> dict:
    """What every method shares with gan-cot's config: task, base, adapter size, token budget, sampled chains."""
    from gan_cot.config_loader import load_config
    from gan_cot.trainer_config import AdversarialConfig

    cfg = load_config(AdversarialConfig, config)
    sampled = cfg.sft.pool_questions and cfg.sft.pool_source == "samples"
    return {
        "task": cfg.task, "data": cfg.data, "model": cfg.model, "lora_r": cfg.lora.r, "lora_alpha": cfg.lora.alpha,
        "format": cfg.format,
        "think_tokens": cfg.eval_budgets[0], "answer_tokens": cfg.eval_budgets[1],
        "rollouts": (cfg.sft.pool_questions * cfg.sft.pool_samples if sampled else 0)
        + cfg.rounds * cfg.rollout.questions * cfg.rollout.group_size,
        "questions": cfg.rounds * cfg.rollout.questions,
    }  # fmt: skip


def our_rollouts(config: str | Path) -> int:
    """Chains gan-cot samples in training with this config (a pool of the task's reference chains samples none)."""
    return settings(config)["rollouts"]


def baseline_config(name: str):
    from gan_cot.config_loader import load_config
    from gan_cot_lab.baselines.config import BaselineConfig

    return load_config(BaselineConfig, REPO_ROOT / f"configs/baselines/{name}.yaml")


def matched(name: str, shared: dict) -> list[str]:
    """Overrides that make baseline ``name`` sample ``shared["rollouts"]`` chains on gan-cot's questions."""
    b, total = baseline_config(name), shared["rollouts"]
    if name in ("srs", "dpo", "tokenskip", "system1-distill"):  # sample.n chains per training question
        return [f"train_questions={math.ceil(total / b.sample.n)}"]
    if name == "step-skip":  # sample.n chains per training question in each round
        return [f"train_questions={math.ceil(total / (b.sample.n * b.step_skip.rounds))}"]
    if not name.startswith("grpo"):
        return []
    questions, reference = shared["questions"], 0
    if b.grpo.reward == "o1pruner" and b.grpo.o1pruner_reference == "base":
        questions = max(1, min(questions, total // (4 * b.grpo.o1pruner_samples)))  # a quarter on references
        reference = questions * b.grpo.o1pruner_samples
    return [
        f"train_questions={questions}",
        f"train.steps={max(1, math.ceil((total - reference) / b.train.batch_size))}",
    ]


def matched_steps(name: str, config: str | Path) -> int:
    """GRPO steps that sample gan-cot's chains (each step samples ``train.batch_size`` completions)."""
    return int(next(o for o in matched(name, settings(config)) if o.startswith("train.steps="))[len("train.steps=") :])


WARM_ONLY = "--warm-start-only"


def parse_variants(specs: list[str]) -> dict[str, list[str]]:
    """``--variant NAME:KEY=VALUE KEY=VALUE`` -> {NAME: [overrides]}: gan-cot with those config overrides
    (``--warm-start-only`` among them: the warm start alone, as pruned-sft)."""
    out: dict[str, list[str]] = {}
    for spec in specs:
        name, sep, rest = spec.partition(":")
        name, overrides = name.strip(), rest.split()
        if not sep or not name or not overrides or any("=" not in o and o != WARM_ONLY for o in overrides):
            raise UsageError(f"--variant {spec!r}: give NAME:KEY=VALUE [KEY=VALUE ...], e.g. "
                             "'gan-cot-t0.7:rollout.temperature=0.7'")  # fmt: skip
        if name in METHODS or name in out:
            raise UsageError(f"--variant {spec!r}: the name {name} is taken; give the variant a name of its own")
        out[name] = overrides
    return out


def warm_suffix(args) -> str:
    """What ``--warm-from`` adds to the names of the methods that start from it ('' for pruned-sft)."""
    return args.warm_from.removeprefix("pruned-sft")


def folder(name: str, args) -> str:
    """The run folder (and log) name of a method: a warm-started one carries ``--warm-from``'s suffix."""
    return name + warm_suffix(args) if args.warm_start and (name in WARM or name == "merge") else name


def method_command(name: str, seed: int, args, out: Path, shared: dict) -> list[str]:
    """The command line that runs one method at one seed like for like (see the module docstring)."""
    run_dir = out / f"seed{seed}"
    common = [f"seed={seed}", f"experiment={args.experiment}", f"mlflow_dir={args.mlflow_dir}"]
    common += [f"eval.n={args.eval_n}", f"output_dir={run_dir / folder(name, args)}"]
    if name in UNSELECTED:  # the same command as its method's, the alpha left as trained
        cmd = method_command(UNSELECTED[name], seed, args, out, shared)
        return [c for c in cmd if not c.startswith("output_dir=")] + [f"output_dir={run_dir / name}", "gate.select=[]"]
    ours = OURS | args.variants
    if name in ours or name == "pruned-sft":
        deepspeed = shutil.which("deepspeed") or str(Path(sys.executable).parent / "deepspeed")
        cmd = [deepspeed, "--num_gpus", "1", str(REPO_ROOT / "scripts/train_adv.py"), "--config", str(args.config)]
        overrides = ours.get(name, [])
        warm_only = name == "pruned-sft" or WARM_ONLY in overrides
        return cmd + ([WARM_ONLY] if warm_only else []) + common + [o for o in overrides if o != WARM_ONLY]
    if name == "base":  # the base itself, on the seed's questions with the same budget: the reference row
        cmd = [sys.executable, str(REPO_ROOT / "scripts/evaluate.py"), "--model", shared["model"], "--task"]
        cmd += [shared["task"], "--n", str(args.eval_n), "--seed", str(seed), "--format", shared["format"]]
        cmd += ["--max-think-tokens", str(shared["think_tokens"]), "--max-answer-tokens", str(shared["answer_tokens"])]
        cmd += ["--data", shared["data"]] if shared["data"] else []
        return cmd + ["--experiment", args.experiment, "--mlflow-dir", args.mlflow_dir, "--json"]
    if name == "oracle":
        cmd = [sys.executable, str(REPO_ROOT / "scripts/oracle.py"), "--config", str(args.config), "--seed", str(seed)]
        cmd += ["--experiment", args.experiment, "--mlflow-dir", args.mlflow_dir, "--eval-n", str(args.eval_n)]
        return cmd + ["--output", str(run_dir / name)]
    cmd = [sys.executable, str(REPO_ROOT / "scripts/train_baseline.py")]
    cmd += ["--config", str(REPO_ROOT / f"configs/baselines/{name}.yaml"), *common]
    cmd += [f"task={shared['task']}", f"model={shared['model']}", f"eval.max_think_tokens={shared['think_tokens']}"]
    cmd += [f"eval.max_answer_tokens={shared['answer_tokens']}"]
    cmd += [f"lora.r={shared['lora_r']}", f"lora.alpha={shared['lora_alpha']}"] if name != "merge" else []
    cmd += [f"data={shared['data']}"] if shared["data"] else []
    warm = run_dir / args.warm_from / "adapter"
    if name == "merge":
        cmd.append(f"merge.other={warm if args.warm_start else run_dir / 'srs' / 'adapter'}")
    if name in WARM or name in ("tokenskip", "system1-distill", "step-skip"):
        budget = "grpo.max_completion_length" if name.startswith("grpo") else "sample.max_new_tokens"
        cmd.append(f"{budget}={shared['think_tokens'] + shared['answer_tokens']}")
    if name in WARM:
        cmd += [f"init={warm}"] if args.warm_start else []
    if args.match_rollouts:
        cmd += matched(name, shared)
    return cmd


def parse_methods(
    text: str, warm_start: bool = False, variants: dict | None = None, warm_from: str = "pruned-sft"
) -> list[str]:
    """The methods asked for, plus what they start from (pruned-sft for a warm start, srs for a cold merge), in the
    order they can run (:data:`METHODS`' order, ``--variant`` ones after gan-cot's ablations)."""
    variants = variants or {}
    order = [*METHODS[: 1 + len(OURS)], *variants, *METHODS[1 + len(OURS) :]]
    names = {m.strip() for m in text.split(",") if m.strip()}
    unknown = sorted(names - set(order))
    if unknown:
        raise UsageError(f"--methods: unknown method(s) {', '.join(unknown)}; choose from {', '.join(order)}")
    if warm_start and names & {*WARM, "merge"}:
        names.add(warm_from)
    if not warm_start and "merge" in names:
        names.add("srs")
    return [m for m in order if m in names]


def parse_seeds(text: str) -> list[int]:
    try:
        seeds = [int(s) for s in text.split(",") if s.strip()]
    except ValueError:
        raise UsageError(f"--seeds must be comma-separated integers, got {text!r}") from None
    if not seeds or len(set(seeds)) != len(seeds):
        raise UsageError(f"--seeds must list distinct seeds, got {text!r}")
    return seeds


def log_trainer_rows(run_dir: Path) -> dict:
    """Evaluate a finished trainer run's adapter as the trainer does (greedy, its budget and batch, through its gate)
    and log the per-question rows to its MLflow run; returns the figures, which should match the run's own."""
    import mlflow
    import torch

    from gan_cot import tracking
    from gan_cot.config_loader import load_config
    from gan_cot.evaluate import EvalSettings, evaluate
    from gan_cot.gate import load_gated_policy
    from gan_cot.models import load_model, load_tokenizer
    from gan_cot.trainer_config import AdversarialConfig

    cfg = load_config(AdversarialConfig, run_dir / "config.json")
    result = json.loads((run_dir / "result.json").read_text())
    adapter = str(run_dir / "adapter")
    task = cfg.make_task()
    examples = task.examples("test", cfg.eval.n)
    learned = cfg.gate.kind == "learned"
    policy = load_gated_policy(adapter) if learned else load_model(adapter, dtype=torch.float32)
    think, answer = cfg.eval_budgets
    settings = EvalSettings(
        max_think_tokens=think, max_answer_tokens=answer, batch_size=cfg.eval.batch_size, seed=cfg.seed
    )
    res = evaluate(policy, load_tokenizer(adapter), task, examples, settings, keep_rows=True)
    tracking.setup(cfg.experiment, cfg.mlflow_dir)
    with mlflow.start_run(run_id=result["run_id"]):
        tracking.log_eval_rows(res["rows"])
    return {"accuracy": res["accuracy"], "mean_tokens": res["mean_tokens"], "run": result}


def has_rows(run_dir: Path, args) -> bool:
    from gan_cot import tracking

    result = run_dir / "result.json"
    if not result.exists():
        return False
    import mlflow

    mlflow.set_tracking_uri(tracking.tracking_uri(args.mlflow_dir))
    return tracking.load_eval_rows(json.loads(result.read_text())["run_id"]) is not None


def name_run(run_dir: Path, method: str | None, args, suffix: str = "") -> None:
    """Tag the MLflow run of ``run_dir`` with the comparison's name for it (the trainer tags by its config, and a
    policy left as trained is tagged like the method it ablates)."""
    import mlflow

    from gan_cot import tracking

    mlflow.set_tracking_uri(tracking.tracking_uri(args.mlflow_dir))
    run_id = json.loads((run_dir / "result.json").read_text())["run_id"]
    client = mlflow.tracking.MlflowClient()
    method = (method or client.get_run(run_id).data.tags["method"]) + suffix
    client.set_tag(run_id, "method", method)
    client.set_tag(run_id, "mlflow.runName", tracking.run_name(method, int(client.get_run(run_id).data.tags["seed"])))


def earlier_record(path: Path, args) -> dict | None:
    """With ``--resume``, the record an earlier command of the same experiment left in ``path`` (None otherwise)."""
    if not args.resume or not path.exists():
        return None
    try:
        record = json.loads(path.read_text())
    except ValueError:
        return None
    return record if isinstance(record, dict) and record.get("experiment") == args.experiment else None


def with_free_port(cmd: list[str]) -> list[str]:
    """A deepspeed launch gets a port nobody listens on (its default, 29500, is taken by any other comparison or
    training run on the machine); other commands are returned as they are."""
    if Path(cmd[0]).name != "deepspeed" or "--master_port" in cmd:
        return cmd
    from gan_cot.distributed import free_port

    return [cmd[0], "--master_port", str(free_port()), *cmd[1:]]


def finished(run_dir: Path, args) -> bool:
    """Whether ``run_dir`` holds a run of this comparison that ended (FINISHED in ``args.experiment``) with its
    per-question rows logged: ``--resume`` keeps it instead of running it again."""
    if not has_rows(run_dir, args):
        return False
    import mlflow

    run = mlflow.tracking.MlflowClient().get_run(json.loads((run_dir / "result.json").read_text())["run_id"])
    experiment = mlflow.get_experiment(run.info.experiment_id)
    return run.info.status == "FINISHED" and experiment is not None and experiment.name == args.experiment


def rows_for(folder: str) -> int:
    run_dir = Path(folder)
    if not (run_dir / "result.json").exists() or not (run_dir / "adapter").exists():
        fail(f"--rows-for {folder}: not a finished trainer run folder (no result.json or adapter/)")
    got = log_trainer_rows(run_dir)
    run = got["run"]
    print(f"rows logged to run {run['run_id'][:8]}: accuracy {got['accuracy']:.3f} (run {run['accuracy']:.3f}), "
          f"tokens {got['mean_tokens']:.1f} (run {run['mean_tokens']:.1f})")  # fmt: skip
    return 0


def main(argv=None) -> int:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--methods", default=",".join(METHODS), help=f"comma-separated, from: {', '.join(METHODS)}")
    p.add_argument("--seeds", default="0", help="comma-separated seeds, e.g. 0,1,2")
    p.add_argument("--eval-n", type=int, default=None, help="test questions every method is scored on (default: the "
                   "config's eval.n)")  # fmt: skip
    p.add_argument("--experiment", default=None, help="MLflow experiment all runs log to (default comparison-TASK)")
    p.add_argument("--mlflow-dir", default=str(REPO_ROOT / "mlruns"), help="local MLflow store folder")
    p.add_argument("--output-root", default=None, help="one folder per seed and method, and summary.json (default "
                   "outputs/comparison/TASK)")  # fmt: skip
    p.add_argument("--config", default=str(REPO_ROOT / "configs/default.yaml"), help="config of the gan-cot runs")
    p.add_argument("--plot", default=None, help="Pareto PNG (default OUTPUT_ROOT/pareto.png)")
    p.add_argument("--warm-start", action=argparse.BooleanOptionalAction, default=True,
                   help="srs, dpo and GRPO start from the seed's pruned-sft adapter")  # fmt: skip
    p.add_argument("--warm-from", default="pruned-sft", metavar="NAME",
                   help="the warm start of srs, dpo, GRPO and merge: pruned-sft, or a --variant with "
                   "--warm-start-only named pruned-sft-X (their rows then end in -X)")  # fmt: skip
    p.add_argument("--match-rollouts", action=argparse.BooleanOptionalAction, default=True,
                   help="every sampling method samples as many training chains as gan-cot")  # fmt: skip
    p.add_argument("--threads", type=int, default=None, help="CPU threads of every run (OMP_NUM_THREADS); on a busy "
                   "CPU, 1 is several times faster than oversubscribed cores")  # fmt: skip
    p.add_argument("--rows-for", default=None, help="only log the per-question rows of this finished trainer run")
    p.add_argument(
        "--resume", action="store_true",
        help="keep every method and seed that already finished in this experiment (its result.json and per-question "
        "rows logged) and run only the rest: an interrupted comparison goes on, seeds run apart are summed up",
    )  # fmt: skip
    p.add_argument("--variant", action="append", default=[], metavar="NAME:KEY=VALUE ...",
                   help="a gan-cot ablation of your own: train_adv.py with these config overrides, its rows named "
                   "NAME (repeatable; list NAME in --methods)")  # fmt: skip
    p.add_argument("--dry-run", action="store_true", help="print the commands and stop")
    p.add_argument("--json", action="store_true", help="print one JSON object as the last line")
    args = p.parse_args(argv)
    if args.rows_for:
        return rows_for(args.rows_for)
    try:
        seeds = parse_seeds(args.seeds)
        args.variants = parse_variants(args.variant)
        if args.warm_from != "pruned-sft" and (
            not args.warm_from.startswith("pruned-sft-") or WARM_ONLY not in args.variants.get(args.warm_from, [])
        ):
            raise UsageError(f"--warm-from {args.warm_from}: give pruned-sft, or a --variant named pruned-sft-X "
                             f"with {WARM_ONLY} among its overrides")  # fmt: skip
        methods = parse_methods(args.methods, args.warm_start, args.variants, args.warm_from)
        if not Path(args.config).is_file():
            raise UsageError(f"--config {args.config}: no such file")
        shared = settings(args.config)
        if args.eval_n is None:
            from gan_cot.config_loader import load_config
            from gan_cot.trainer_config import AdversarialConfig

            args.eval_n = load_config(AdversarialConfig, args.config).eval.n
        if args.eval_n <= 0:
            raise UsageError(f"--eval-n must be positive, got {args.eval_n}")
    except UsageError as e:
        fail(str(e))
    args.experiment = args.experiment or f"comparison-{shared['task']}"
    out = Path(args.output_root or REPO_ROOT / "outputs" / "comparison" / shared["task"]).resolve()
    args.mlflow_dir = str(Path(args.mlflow_dir).resolve())
    plot = Path(args.plot) if args.plot else out / "pareto.png"
    jobs = [(m, s) for s in seeds for m in methods if m != "oracle" or s == seeds[0]]
    commands = {(m, s): method_command(m, s, args, out, shared) for m, s in jobs}
    if args.dry_run:
        for (m, s), cmd in commands.items():
            print(f"{m} seed {s}: {' '.join(cmd)}")
        return 0
    out.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ)
    env.pop("MLFLOW_TRACKING_URI", None)  # every run goes to --mlflow-dir
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
    if args.threads:
        env.update(OMP_NUM_THREADS=str(args.threads), MKL_NUM_THREADS=str(args.threads))
    started, load_start = time.time(), os.getloadavg()[0]
    results: dict[str, dict] = {}
    for i, ((m, s), cmd) in enumerate(commands.items()):
        log = out / f"seed{s}" / f"{folder(m, args)}.log"
        log.parent.mkdir(parents=True, exist_ok=True)
        run_dir = out / f"seed{s}" / folder(m, args)
        if args.resume and m != "oracle" and finished(run_dir, args):
            seconds = json.loads((run_dir / "result.json").read_text()).get("wall_seconds")
            results[f"{folder(m, args)}/seed{s}"] = {"ok": True, "seconds": seconds, "log": str(log), "resumed": True}
            print(f"[{i + 1}/{len(commands)}] {m} seed {s}: finished before ({run_dir}/result.json), kept", flush=True)
            continue
        print(f"[{i + 1}/{len(commands)}] {m} seed {s} (log: {log})", flush=True)
        t0 = time.time()
        with open(log, "w") as fh:
            rc = subprocess.call(with_free_port(cmd), stdout=fh, stderr=subprocess.STDOUT, cwd=REPO_ROOT, env=env)
            if rc == 0 and (m in UNSELECTED or m in args.variants):
                name_run(run_dir, m, args)
            if rc == 0 and folder(m, args) != m:  # started from --warm-from: its own tag plus the suffix
                name_run(run_dir, None, args, suffix=warm_suffix(args))
            if (
                rc == 0
                and (m in OURS or m in UNSELECTED or m in args.variants or m == "pruned-sft")
                and not has_rows(run_dir, args)
            ):
                rows = [sys.executable, "-m", "gan_cot_lab.commands.run_comparison", "--rows-for", str(run_dir)]
                rc = subprocess.call(rows, stdout=fh, stderr=subprocess.STDOUT, cwd=REPO_ROOT, env=env)
        seconds = round(time.time() - t0, 1)
        if rc == 0 and m == "base":  # evaluate.py writes no folder: keep its JSON line as the run's result.json
            run_dir.mkdir(parents=True, exist_ok=True)
            last = log.read_text().strip().splitlines()[-1]
            (run_dir / "result.json").write_text(json.dumps(json.loads(last) | {"wall_seconds": seconds}, indent=2))
        results[f"{folder(m, args)}/seed{s}"] = {"ok": rc == 0, "seconds": seconds, "log": str(log)}
        print(f"    {'done' if rc == 0 else f'FAILED (exit {rc}), see the log'} in {seconds:.0f} s", flush=True)
    compare = [sys.executable, str(REPO_ROOT / "scripts/compare_runs.py"), "--experiment", args.experiment]
    compare += ["--mlflow-dir", args.mlflow_dir, "--output", str(plot), "--json"]
    proc = subprocess.run(compare, capture_output=True, text=True, cwd=REPO_ROOT, env=env)
    lines = proc.stdout.strip().splitlines()
    print("\n".join(lines[:-1]))
    summary = json.loads(lines[-1]) if proc.returncode == 0 and lines else None
    if proc.returncode != 0:
        print(proc.stderr.strip(), file=sys.stderr)
    command = "python scripts/run_comparison.py " + shlex.join(argv or sys.argv[1:])
    wall, load = round(time.time() - started, 1), [load_start, os.getloadavg()[0]]
    invocations = [{"command": command, "seeds": seeds, "wall_seconds": wall, "load_average": load}]
    before = earlier_record(out / "summary.json", args)
    if before:  # --resume into the same experiment (one process per seed, say): its runs are kept beside these
        results = before.get("runs", {}) | results
        seeds = sorted(set(before.get("seeds", [])) | set(seeds))
        invocations = before.get("invocations", []) + invocations
    record = {"experiment": args.experiment, "command": command, "seeds": seeds, "eval_n": args.eval_n,
              "runs": results, "wall_seconds": wall, "run_seconds": round(sum(r["seconds"] or 0 for r in results.values()), 1),
              "load_average": load, "invocations": invocations, "compare": summary}  # fmt: skip
    write_json(out / "summary.json", record, indent=2)
    if args.json:
        print_json(record)
    return 0 if all(r["ok"] for r in results.values()) and summary is not None else 1


if __name__ == "__main__":
    sys.exit(main())

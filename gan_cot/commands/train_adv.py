"""Compress a reasoning model's chains: the adversarial loop (SFT, discriminator-weighted policy updates,
discriminator refresh) on DeepSpeed engines.

    deepspeed scripts/train_adv.py                                   # the built-in default on a CPU
    deepspeed --num_gpus 2 scripts/train_adv.py --config configs/qwen1.5b_gsm8k.yaml
    deepspeed scripts/train_adv.py rounds=5 credit.mode=length       # overrides: key=value, dotted
    deepspeed scripts/train_adv.py --discriminator NAME_OR_PATH      # plug and play: a frozen discriminator
    deepspeed scripts/train_adv.py --discriminator PRM --label-map LABEL_0=wrong,LABEL_1=useful   # a two-way PRM
    deepspeed scripts/train_adv.py --resume                          # continue the same run and MLflow run
    deepspeed scripts/train_adv.py --alpha 1.5                       # a fixed alpha instead of the learned gate
    deepspeed scripts/train_adv.py --warm-start-only                 # the pruned-sft baseline: no rounds

The last line printed (rank 0) is one JSON object: run_id, output_dir, base and final accuracy, mean tokens and
tokens_vs_minimal, wall_seconds, peak_rss_mb.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from gan_cot import shipped
from gan_cot.config_loader import ConfigError, describe, load_config
from gan_cot.discriminator.card import parse_label_map
from gan_cot.usage import UsageError, check_model_path, check_writable_dir, fail, print_json

DEFAULT_CONFIG = shipped.DEFAULT_CONFIG


KEYS_WHERE = (
    "Every key, sections' included (lora.r, policy.lr, sft.warmup_steps, ...), has its default and help text in\n"
    "gan_cot/trainer_config.py (the trainer's) and gan_cot/run_config.py (task, data, seed, model, lora, eval, ...)."
)


def main(argv=None) -> int:
    from gan_cot.trainer_config import AdversarialConfig

    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="config keys (key=value overrides; a section's keys are dotted, as in policy.lr=5e-4):\n"
        + describe(AdversarialConfig) + "\n\n" + KEYS_WHERE,
    )  # fmt: skip
    p.add_argument("--config", default=str(DEFAULT_CONFIG), help="YAML config (default: configs/default.yaml)")
    p.add_argument("overrides", nargs="*", help="key=value overrides, dotted for sections (loss.kl_coef=0.05)")
    p.add_argument("--discriminator", default=None, help="use this discriminator frozen (plug-and-play mode)")
    p.add_argument(
        "--label-map",
        default=None,
        help="the discriminator's labels -> classes, NAME=CLASS,... (discriminator.label_map)",
    )
    p.add_argument("--sha256", default=None, help="sha256 of a --discriminator archive URL (discriminator.sha256)")
    p.add_argument("--data", default=None, help="the task's data: a folder or a .jsonl file (data=)")
    p.add_argument("--mlflow-dir", default=None, help="local MLflow store folder (mlflow_dir=)")
    p.add_argument("--resume", action="store_true", help="continue from the output folder's latest checkpoint")
    p.add_argument(
        "--alpha", type=float, default=None, help="fixed CoT-Valve alpha instead of a learned gate (gate.kind=fixed)"
    )
    p.add_argument(
        "--dry-run", action="store_true",
        help="print the model's size, the memory (per GPU, or on a CPU) for the config's ZeRO stage and the tokens of "
        "a round; stop",
    )  # fmt: skip
    p.add_argument(
        "--gpus", type=int, default=None,
        help="with --dry-run: GPUs the run would use (one node; default: this machine's, or its CPU if it has none)",
    )  # fmt: skip
    p.add_argument(
        "--warm-start-only", action="store_true", help="the warm start alone, no rounds (the pruned-sft baseline)"
    )
    p.add_argument("--local_rank", type=int, default=None, help=argparse.SUPPRESS)  # set by the launcher
    args = p.parse_intermixed_args(argv)  # key=value overrides may come before and after the flags

    overrides = list(args.overrides)
    if args.discriminator:
        overrides += [f"discriminator.name={args.discriminator}", "discriminator.mode=frozen"]
    if args.alpha is not None:
        overrides += ["gate.kind=fixed", f"gate.alpha={args.alpha!r}"]
    if args.warm_start_only:
        from gan_cot.warm_start_only import OVERRIDES

        overrides += OVERRIDES
    try:
        for key, value in (
            ("discriminator.sha256", args.sha256),
            ("data", args.data),
            ("mlflow_dir", args.mlflow_dir),
        ):
            if value is not None:
                overrides.append(f"{key}={value}")
        if args.label_map:
            overrides.append("discriminator.label_map=" + json.dumps(parse_label_map(args.label_map)))
        cfg = load_config(AdversarialConfig, args.config, overrides)
        if args.dry_run:
            return dry_run(cfg, args.gpus)
        preflight(cfg)
        changes = resume_changes(cfg) if args.resume else {}
    except (ConfigError, UsageError, ValueError) as e:
        fail(str(e))
    from gan_cot.discriminator.registry import DiscriminatorSourceError
    from gan_cot.trainer import AdversarialTrainer
    from gan_cot.warm_start_only import WarmStartOnly

    rank = int(os.environ.get("RANK", "0"))
    if changes and rank == 0:
        record_resume_changes(cfg, changes, print)
    trainer = (WarmStartOnly if args.warm_start_only else AdversarialTrainer)(
        cfg, resume=args.resume, log=lambda m: print(m, flush=True) if rank == 0 else None
    )
    try:
        result = trainer.train()
    except (UsageError, ValueError, DiscriminatorSourceError) as e:
        fail(str(e))
    except OSError as e:  # a file the run needs went missing or cannot be written: say which
        fail(f"{e.strerror or e}" + (f": {e.filename}" if getattr(e, "filename", None) else ""))
    if rank == 0:
        import resource

        result["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)  # this process
        print_json(result)
    return 0


def dry_run(cfg, gpus: int | None) -> int:
    """The estimate of :mod:`gan_cot.memory_estimate` as text, then as one JSON line; nothing loads, nothing is written. Without
    ``gpus``, for this machine: its GPUs, else its CPU (float32, as the run would be)."""
    import torch

    from gan_cot.memory_estimate import estimate, format_estimate

    if not Path(shipped.resolve(cfg.deepspeed)).exists():
        raise UsageError(f"DeepSpeed config {cfg.deepspeed} does not exist; see configs/deepspeed/")
    if gpus is not None and gpus < 1:
        raise UsageError(f"--gpus must be at least 1, got {gpus}")
    device = "cuda" if gpus is not None or torch.cuda.is_available() else "cpu"
    try:
        e = estimate(cfg, world=gpus or max(1, torch.cuda.device_count()), device=device)
    except ValueError as err:
        raise UsageError(str(err)) from err
    print(format_estimate(e), flush=True)
    print_json(e)
    return 0


RESUMABLE = ("rounds", "checkpoint_every", "max_nan_steps", "gate.select")
"""The keys a ``--resume`` may change (recorded on the run); any other change is a new run. ``gate.select`` acts after
the last round only, so a finished run resumed with it chooses its alpha and is evaluated again."""


def resume_changes(cfg) -> dict[str, tuple[str, str]]:
    """``--resume``: the keys where ``cfg`` differs from the run's own config (``OUTPUT_DIR/config.json``), as
    ``{key: (before, now)}``; UsageError naming them when a key other than :data:`RESUMABLE` differs (the checkpoint
    belongs to another recipe). Nothing to compare (no config.json): no changes."""
    from gan_cot.config_loader import to_dict
    from gan_cot.tracking import flatten

    path = Path(cfg.output_dir) / "config.json"
    if not path.exists():
        return {}
    try:
        before = flatten(json.loads(path.read_text()))
    except (OSError, ValueError, AttributeError) as e:
        raise UsageError(
            f"--resume: the run's config {path} cannot be read ({e}); restore it, or drop --resume"
        ) from e
    now = flatten(to_dict(cfg))
    if now.get("instruction") == "auto":  # the run wrote what auto resolved to (from the model and format, compared)
        now["instruction"] = before.get("instruction", "auto")
    default = flatten(to_dict(type(cfg)()))  # a key newer than the run, at its default, is what the run did
    changed = {
        k: (before.get(k, "-"), now.get(k, "-"))
        for k in sorted(set(before) | set(now))
        if before.get(k) != now.get(k) and not (k not in before and now.get(k) == default.get(k))
    }
    other = [k for k in changed if k not in RESUMABLE]
    if other:
        shown = "; ".join(f"{k} {changed[k][0]} -> {changed[k][1]}" for k in other[:6])
        more = f" and {len(other) - 6} more" if len(other) > 6 else ""
        raise UsageError(
            f"--resume: the config differs from the run's ({path}): {shown}{more}; resume with the run's config "
            f"(only {', '.join(RESUMABLE)} may change), or set another output_dir= to start a new run"
        )
    return changed


def record_resume_changes(cfg, changes: dict, log) -> None:
    """A resume that changes :data:`RESUMABLE` keys says so, rewrites ``OUTPUT_DIR/config.json`` to the config it now
    runs, and tags the MLflow run (``resumed.KEY``: ``before -> now``; MLflow params cannot change)."""
    from gan_cot import tracking
    from gan_cot.checkpoint import write_json
    from gan_cot.config_loader import to_dict

    out = Path(cfg.output_dir)
    text = ", ".join(f"{k} {a} -> {b}" for k, (a, b) in changes.items())
    write_json(out / "config.json", to_dict(cfg), indent=2)
    run_file = out / "mlflow_run.json"
    if run_file.exists():
        import mlflow

        mlflow.set_tracking_uri(tracking.check_store(cfg.mlflow_dir))
        run_id = json.loads(run_file.read_text())["run_id"]
        client = mlflow.MlflowClient()
        for k, (a, b) in changes.items():
            client.set_tag(run_id, f"resumed.{k}", f"{a} -> {b}")
        text += f" (tagged on MLflow run {run_id[:8]} as resumed.*)"
    log(f"resume changes {text}")


def preflight(cfg) -> None:
    """Everything that can be checked before DeepSpeed starts and the models load, leaving nothing behind:
    the policy folder, the DeepSpeed config, the output folder and MLflow store (writable), the task's data
    (every split the run reads) and the discriminator (files, card, layout, label map, tokenizer against its
    vocabulary, the redundancy head; not its weights).
    Raises UsageError with one line naming the file, line or key."""
    from gan_cot import tracking
    from gan_cot.discriminator.model import Discriminator
    from gan_cot.discriminator.registry import DiscriminatorSourceError
    from gan_cot.tasks import GENERATED, TASKS
    from gan_cot.vocab import check_policy_vocab

    check_model_path(shipped.resolve(cfg.model))
    try:
        check_policy_vocab(cfg.model)
    except ValueError as e:
        raise UsageError(f"model: {e}") from e
    if not Path(shipped.resolve(cfg.deepspeed)).exists():
        raise UsageError(f"DeepSpeed config {cfg.deepspeed} does not exist; see configs/deepspeed/")
    check_writable_dir(cfg.output_dir, keep=False, hint="choose another with output_dir=")
    tracking.check_store(cfg.mlflow_dir, keep=False)
    if cfg.task not in TASKS:
        raise UsageError(f"task: unknown task {cfg.task!r}; known tasks: {', '.join(sorted(TASKS))}")
    try:
        task = cfg.make_task()
        if cfg.task not in GENERATED:  # built-in tasks are generated, file-backed tasks are read now
            for split in ("train", "validation", "test"):  # a bad line anywhere in the data stops the run now
                task.examples(split)
            if hasattr(task, "require_steps"):  # the warm-up and the SFT phases imitate the reference chains
                task.require_steps("train", "training imitates the reference steps of its train split")
            if hasattr(task, "split_sizes") and int(os.environ.get("RANK", "0")) == 0:
                print_split_sizes(task)
        if cfg.discriminator.labels == "gold" and not hasattr(task, "gold_labels"):
            raise UsageError(
                f"discriminator.labels=gold needs a task with gold step labels (ledger); task {cfg.task} has "
                "none: set discriminator.labels=policy (what the policy still answers without each step) or "
                "discriminator.labels=auto (automatic labels from rollouts)"
            )
        Discriminator.check_config(cfg.discriminator)
    except (ValueError, DiscriminatorSourceError) as e:
        raise UsageError(str(e)) from e


def print_split_sizes(task) -> None:
    """The size of every split a file-backed task's data gave (a single file is split by question here)."""
    sizes = task.split_sizes()
    how = "split by question into" if task.path is not None and task.path.is_file() else "splits:"
    skipped = getattr(task, "skipped_lines", 0)
    print(
        f"{task.name} data {task.path or task.dataset} {how} train {sizes['train']}, validation "
        f"{sizes['validation']}, test {sizes['test']} records"
        + (f"; {skipped} bad line(s) skipped" if skipped else ""),
        flush=True,
    )


if __name__ == "__main__":
    sys.exit(main())

"""Train a step discriminator (useful / redundant / wrong) and report per-class metrics on held-out chains.

    python scripts/train_discriminator.py --config configs/discriminator/ledger-tiny.yaml
    python scripts/train_discriminator.py --config configs/discriminator/ledger-tiny.yaml steps=100 output=outputs/d

Starts from a causal LM's backbone (default: the verbose base policy) with a fresh 3-way head, trains on
the task's step-labeled chains (train split), logs to MLflow, prints precision / recall / F1 per class on
the validation split, and saves a checkpoint folder (safetensors + tokenizer + card). The last line is
the saved path, or with ``--json`` one JSON object.
"""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

from gan_cot import shipped
from gan_cot.config_loader import ConfigError, describe, load_config, to_dict
from gan_cot.discriminator.config import DiscriminatorTrainConfig
from gan_cot.shipped import DEFAULT_BASE
from gan_cot.usage import (
    UsageError,
    check_model_path,
    check_writable_dir,
    fail,
    print_json,
)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        epilog="config keys:\n" + describe(DiscriminatorTrainConfig),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--config", help="YAML config (configs/discriminator/*.yaml)")
    p.add_argument("overrides", nargs="*", help="key=value overrides, e.g. steps=100")
    p.add_argument("--json", action="store_true", help="print one JSON object as the last line")
    args = p.parse_args(argv)
    try:
        cfg = load_config(DiscriminatorTrainConfig, args.config, args.overrides)
        backbone = cfg.backbone or str(DEFAULT_BASE)
        # The card names the backbone as given; the default as its path in the repository.
        base_model = cfg.backbone or DEFAULT_BASE.relative_to(shipped.ROOT).as_posix()
        check_model_path(backbone)
        out = Path(cfg.output)
        check_writable_dir(out.parent)
        from gan_cot.tasks import make_task

        task = make_task(cfg.task, cfg.seed, cfg.data)
    except (ConfigError, UsageError, ValueError) as e:
        fail(str(e))

    import mlflow

    from gan_cot import tracking
    from gan_cot.discriminator.data import task_records
    from gan_cot.discriminator.model import Discriminator
    from gan_cot.discriminator.train import evaluate_discriminator, metrics_table, train_discriminator

    try:
        tracking.setup(cfg.experiment, cfg.mlflow_dir)
    except UsageError as e:
        fail(str(e))
    train = task_records(task, "train", cfg.train_size, cfg.seed)
    held_out = task_records(task, "validation", cfg.eval_size, cfg.seed)
    disc = Discriminator.from_backbone(
        backbone, base_model=base_model, separator=cfg.separator, task=cfg.task,
        training_data=f"{cfg.task} train split, {cfg.train_size} chains, seed {cfg.seed}",
        command="python scripts/train_discriminator.py " + shlex.join(sys.argv[1:] if argv is None else argv),
    )  # fmt: skip
    with mlflow.start_run(run_name=cfg.name) as run:
        mlflow.log_params(tracking.flatten(to_dict(cfg)))
        stats = train_discriminator(
            disc, train, steps=cfg.steps, batch_size=cfg.batch_size, lr=cfg.lr, seed=cfg.seed, balance=cfg.balance,
            on_log=lambda s, loss, acc: mlflow.log_metrics({"train_loss": loss, "train_step_acc": acc}, step=s),
        )  # fmt: skip
        metrics = evaluate_discriminator(disc, held_out)
        flat = {"val_macro_f1": metrics["macro_f1"], "val_accuracy": metrics["accuracy"]}
        for lab in ("useful", "redundant", "wrong"):
            flat.update({f"val_{lab}_{k}": metrics[lab][k] for k in ("precision", "recall", "f1")})
        mlflow.log_metrics(flat)
        disc.card.metrics = {"validation": metrics, "train": stats}
        if cfg.save_dtype == "float16":
            disc.model.half()
        disc.save_pretrained(out)
        mlflow.log_artifact(str(out / "discriminator_card.json"))
        run_id = run.info.run_id
    print(metrics_table(metrics))
    print(
        f"trained {cfg.steps} steps in {stats['seconds']:.0f}s; loss {stats['first_loss']:.3f} -> {stats['final_loss']:.4f}"
    )
    if args.json:
        print_json(
            {
                "path": str(out),
                "run_id": run_id,
                **{k: v for k, v in metrics.items()},
                "train_seconds": stats["seconds"],
            }
        )
    else:
        print(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())

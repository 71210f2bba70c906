"""Score a step discriminator against gold step labels: per-class precision / recall / F1 and macro F1.

    python scripts/evaluate_discriminator.py --json
    python scripts/evaluate_discriminator.py --discriminator ledger-tiny --task ledger --split test --n 500 --json
    python scripts/evaluate_discriminator.py --discriminator PATH --label-map LABEL_0=useful,LABEL_1=redundant,LABEL_2=wrong

``--discriminator`` takes a registry name, a local folder, an archive URL or a Hub id (see
``scripts/download_discriminator.py``). The last line is one JSON object with ``--json``.
"""

from __future__ import annotations

import argparse
import sys

from gan_cot.cli import UsageError, fail, print_json
from gan_cot.discriminator.registry import DiscriminatorSourceError

DEFAULT_DISCRIMINATOR = "ledger-tiny"


def parse_label_map(text: str | None) -> dict[str, str] | None:
    if not text:
        return None
    out = {}
    for item in text.split(","):
        if "=" not in item:
            raise UsageError(f"--label-map item {item!r} is not NAME=CLASS (e.g. LABEL_0=useful)")
        k, v = item.split("=", 1)
        out[k.strip()] = v.strip()
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--discriminator", default=DEFAULT_DISCRIMINATOR, help="registry name, folder, URL or Hub id")
    p.add_argument("--task", default="ledger", help="ledger, ledger-hard or gsm8k")
    p.add_argument("--split", default="test")
    p.add_argument("--n", type=int, default=500, help="chains to score")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--data", default=None, help="gsm8k data folder or .jsonl")
    p.add_argument("--verbose-only", action="store_true", help="ledger: score the reference verbose chains only")
    p.add_argument("--label-map", default=None, help="for checkpoints without a card: NAME=CLASS,...")
    p.add_argument("--cache-dir", default=None)
    p.add_argument("--offline", action="store_true")
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    try:
        if args.n <= 0:
            raise UsageError(f"--n must be positive, got {args.n}")
        label_map = parse_label_map(args.label_map)
        from gan_cot.tasks import get_task

        if args.task in ("ledger", "ledger-hard"):
            task = get_task(args.task, seed=args.seed)
        elif args.task == "gsm8k":
            task = get_task("gsm8k", path=args.data)
        else:
            get_task(args.task)  # names the known tasks
            raise UsageError(f"task {args.task!r} has no gold step labels")
        from gan_cot.discriminator.data import ledger_records, task_records
        from gan_cot.discriminator.model import Discriminator

        if args.task == "ledger":
            records = ledger_records(task, args.split, args.n, args.seed, random_verbosity=not args.verbose_only)
        else:
            records = task_records(task, args.split, args.n, args.seed)
        disc = Discriminator.from_pretrained(
            args.discriminator, label_map=label_map, cache_dir=args.cache_dir, offline=args.offline
        )
    except (UsageError, ValueError, OSError, DiscriminatorSourceError) as e:
        fail(str(e))
    from gan_cot.discriminator.train import evaluate_discriminator, metrics_table

    metrics = evaluate_discriminator(disc, records)
    print(metrics_table(metrics))
    if args.json:
        print_json({**metrics, "discriminator": args.discriminator, "task": args.task, "split": args.split,
                    "n": len(records), "seed": args.seed})  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())

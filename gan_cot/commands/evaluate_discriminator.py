"""Score a step discriminator against gold step labels: per-class precision / recall / F1 and macro F1.

    python scripts/evaluate_discriminator.py --json
    python scripts/evaluate_discriminator.py --discriminator ledger-tiny --task ledger --split test --n 500 --json
    python scripts/evaluate_discriminator.py --discriminator gsm8k-minilm --task gsm8k --split test --json
    python scripts/evaluate_discriminator.py --discriminator PRM --label-map LABEL_0=wrong,LABEL_1=useful \
        --redundancy head --redundancy-head gsm8k-minilm --task gsm8k

``--discriminator`` takes a registry name, a local folder, an archive URL (with ``--sha256``) or a Hub id (see
``scripts/download_discriminator.py``). Every scoring setting of a card or registry entry is an option here
(``--layout``, ``--label-map``, ``--step-tag``, ``--separator``, ``--max-length``, ``--redundancy``, ``--checks``);
a local copy of a registry checkpoint is scored by naming its layout (``--layout step_tag`` takes the registry's
step tag). ``--data FILE`` scores every record of the file. A two-way PRM scores useful / wrong; its redundant steps come from
``--redundancy``: none, head (``--redundancy-head``, a three-way discriminator) or probe (``--policy``, the
answer-probability probe). The last line is one JSON object with ``--json``.
"""

from __future__ import annotations

import argparse
import sys

from gan_cot.discriminator.card import LAYOUTS, REDUNDANCY_SOURCES, parse_label_map
from gan_cot.discriminator.registry import DiscriminatorSourceError
from gan_cot.usage import UsageError, fail, print_json

DEFAULT_DISCRIMINATOR = "ledger-tiny"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--discriminator", default=DEFAULT_DISCRIMINATOR, help="registry name, folder, URL or Hub id")
    p.add_argument("--task", default="ledger", help="ledger, ledger-hard or gsm8k")
    p.add_argument("--split", default="test")
    p.add_argument("--n", type=int, default=None, help="chains to score (default: all of a data file, else 500)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--data", default=None, help="gsm8k data folder or .jsonl")
    p.add_argument("--verbose-only", action="store_true", help="ledger: score the reference verbose chains only")
    p.add_argument("--label-map", default=None, help="the model's labels -> classes: NAME=CLASS,...")
    p.add_argument("--layout", choices=LAYOUTS, default=None, help="the checkpoint's layout (default: recognised)")
    p.add_argument(
        "--step-tag", default=None,
        help="--layout step_tag: TAG,GOOD,BAD, the tag after each step and the tokens read there (Math-Shepherd: "
        "'ки,+,-'; default: the registry entry's)",
    )  # fmt: skip
    p.add_argument("--separator", default=None, help="how the discriminator joins steps (default: its card's)")
    p.add_argument("--max-length", type=int, default=None, help="tokens per scored window (default: the card's)")
    p.add_argument("--redundancy", choices=REDUNDANCY_SOURCES, default=None, help="two-way PRMs: redundant's source")
    p.add_argument("--redundancy-head", default=None, help="--redundancy head: a three-way discriminator")
    p.add_argument("--policy", default=None, help="--redundancy probe: the policy (folder or Hub id)")
    p.add_argument("--sha256", default=None, help="sha256 of an archive URL's download")
    p.add_argument(
        "--checks",
        default="card",
        help="rule checks next to the model: card (the card's, default), none (the model alone), or a comma list of "
        "arithmetic and repeat",
    )
    p.add_argument("--cache-dir", default=None)
    p.add_argument("--offline", action="store_true")
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    try:
        if args.n is not None and args.n <= 0:
            raise UsageError(f"--n must be positive, got {args.n}")
        step_tag = parse_step_tag(args.step_tag)
        label_map = parse_label_map(args.label_map)
        if (args.redundancy == "probe") != bool(args.policy):
            raise UsageError("--redundancy probe and --policy PATH go together (the probe reads the policy's answers)")
        from gan_cot.tasks import get_task

        if args.task in ("ledger", "ledger-hard"):
            task = get_task(args.task, seed=args.seed)
        elif args.task == "gsm8k":
            task = get_task("gsm8k", path=args.data, split_file=False)  # a file is scored whole
        else:
            get_task(args.task)  # names the known tasks
            raise UsageError(f"task {args.task!r} has no gold step labels")
        from gan_cot.discriminator.data import ledger_records, task_records
        from gan_cot.discriminator.model import Discriminator

        n = args.n if args.n is not None or getattr(task, "whole_file", False) else 500
        if args.task == "ledger":
            records = ledger_records(task, args.split, n, args.seed, random_verbosity=not args.verbose_only)
        else:
            records = task_records(task, args.split, n, args.seed)
        disc = Discriminator.from_pretrained(
            args.discriminator, label_map=label_map, layout=args.layout, redundancy=args.redundancy,
            redundancy_head=args.redundancy_head, step_tag=step_tag, separator=args.separator,
            max_length=args.max_length, sha256=args.sha256, cache_dir=args.cache_dir, offline=args.offline,
            checks=None if args.checks == "card" else [] if args.checks == "none" else args.checks.split(","),
        )  # fmt: skip
        if args.policy:
            from gan_cot.models import load_model, load_tokenizer

            answers = {ex.question: ex.answer for ex in task.examples(args.split)}
            disc.bind_policy(load_model(args.policy, dtype="auto").eval(), load_tokenizer(args.policy), answers,
                             task.format)  # fmt: skip
        from gan_cot.discriminator.train import evaluate_discriminator, metrics_table

        metrics = evaluate_discriminator(disc, records)
    except (UsageError, ValueError, OSError, DiscriminatorSourceError) as e:
        fail(str(e))
    print(metrics_table(metrics))
    if args.json:
        print_json({**metrics, "discriminator": args.discriminator, "task": args.task, "split": args.split,
                    "n": len(records), "seed": args.seed, "checks": disc.card.checks})  # fmt: skip
    return 0


def parse_step_tag(text: str | None) -> dict | None:
    """``--step-tag TAG,GOOD,BAD`` as the card's ``step_tag`` mapping."""
    if text is None:
        return None
    parts = text.split(",")
    if len(parts) != 3 or not all(parts):
        raise UsageError(f"--step-tag takes TAG,GOOD,BAD (three non-empty tokens, e.g. 'ки,+,-'), got {text!r}")
    return dict(zip(("tag", "good", "bad"), parts))


if __name__ == "__main__":
    sys.exit(main())

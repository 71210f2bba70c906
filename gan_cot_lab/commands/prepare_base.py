"""Train the verbose base policy: the long-chain model that gan-cot later compresses.

    python scripts/prepare_base.py --output models/ledger-verbose-base   # ~40 minutes on 2 CPU cores
    python scripts/prepare_base.py --steps 200 --eval-n 50 --output outputs/base-smoke   # a quick smoke run
    python scripts/prepare_base.py --init models/ledger-verbose-base --chains labeler --steps 600 --lr 5e-4 \
        --output outputs/ledger-labeler   # the auto-label policy (scripts/label_agreement.py), warm-started
    python scripts/prepare_base.py --task ledger-hard --init models/ledger-verbose-base ...   # see models/README.md

Builds the tiny default (a byte-level BPE tokenizer trained on ledger text, a small Llama), trains it by
SFT on the ledger task's *verbose* chains, evaluates it greedily on the test split, and saves an ordinary
Hugging Face checkpoint (safetensors + tokenizer + chat template) with a ``base_card.json`` recording
the seed, the command and the figures. The last line printed is the saved path (or, with ``--json``,
one JSON object that includes it).
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from pathlib import Path

from gan_cot.shipped import REPO_ROOT
from gan_cot.usage import UsageError, check_model_path, check_writable_dir, fail, print_json

DEFAULT_OUTPUT = "outputs/ledger-verbose-base"  # in the repository, wherever the script runs from


def parse_args(argv=None):
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--output", help=f"where to save (default: {DEFAULT_OUTPUT} in the repository)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--task", choices=("ledger", "ledger-hard"), default="ledger", help="the built-in task to train on")
    p.add_argument(
        "--chains", choices=("verbose", "minimal", "labeler"), default="verbose",
        help="train on verbose chains (the base to compress), minimal ones (a concise policy), or labeler pairs "
        "(continue a prefix with redundant steps by the minimal rest: the auto-label policy)",
    )  # fmt: skip
    p.add_argument(
        "--init", default=None,
        help="start from this checkpoint (folder or Hub id) instead of a fresh tiny model, e.g. the verbose base",
    )  # fmt: skip
    p.add_argument("--steps", type=int, default=8000, help="optimizer steps")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--train-size", type=int, default=40000, help="training problems (ledger train split)")
    p.add_argument("--hidden-size", type=int, default=128)
    p.add_argument("--layers", type=int, default=4)
    p.add_argument("--time-limit", type=float, default=None, help="stop training after this many seconds")
    p.add_argument("--eval-n", type=int, default=500, help="test problems to evaluate on (0 skips)")
    p.add_argument(
        "--eval-every", type=int, default=0, help="every N steps, print greedy accuracy on 100 validation problems"
    )
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    p.add_argument("--json", action="store_true", help="print one JSON object as the last line")
    args = p.parse_args(argv)
    for key in ("steps", "batch_size", "train_size", "hidden_size", "layers"):
        if getattr(args, key) <= 0:
            raise UsageError(f"--{key.replace('_', '-')} must be positive, got {getattr(args, key)}")
    if args.eval_n < 0:
        raise UsageError(f"--eval-n must be >= 0, got {args.eval_n}")
    if args.chains == "labeler" and args.task != "ledger":
        raise UsageError("--chains labeler writes ledger chains; use it with --task ledger")
    return args


def main(argv=None) -> int:
    try:
        args = parse_args(argv)
        out = Path(args.output) if args.output else REPO_ROOT / DEFAULT_OUTPUT
        check_writable_dir(out.parent)
        if args.init:
            check_model_path(args.init)
    except UsageError as e:
        fail(str(e))

    import torch

    from gan_cot.evaluate import EvalSettings, evaluate
    from gan_cot.models import build_tiny_model, load_model, load_tokenizer, save_pretrained
    from gan_cot.sft import task_pairs, train_sft
    from gan_cot.tasks import get_task

    if args.threads:
        torch.set_num_threads(args.threads)
    started = time.time()
    if args.init:
        torch.manual_seed(args.seed)
        model, tok = load_model(args.init, dtype=torch.float32), load_tokenizer(args.init)
    else:
        model, tok = build_tiny_model(seed=args.seed, hidden_size=args.hidden_size, layers=args.layers)
    task = get_task(args.task, seed=args.seed)
    if args.chains == "labeler":
        from gan_cot.discriminator.labels import labeler_pairs

        prompts, completions = labeler_pairs(tok, task, task.examples("train", args.train_size), seed=args.seed)
    else:
        prompts, completions = task_pairs(
            tok, task, task.examples("train", args.train_size), minimal=args.chains == "minimal"
        )
    validation = task.examples("validation", 100)

    def on_log(step, loss):
        if args.eval_every and step % args.eval_every == 0:
            r = evaluate(model, tok, task, validation, EvalSettings(seed=args.seed), show_progress=False)
            model.train()
            print(f"\nstep {step}: loss {loss:.4f}, validation accuracy {r['accuracy']:.2f}, "
                  f"tokens_vs_minimal {r['tokens_vs_minimal']:.2f}", flush=True)  # fmt: skip

    stats = train_sft(
        model, tok, prompts, completions, steps=args.steps, batch_size=args.batch_size, lr=args.lr,
        seed=args.seed, time_limit=args.time_limit, on_log=on_log,
    )  # fmt: skip
    train_seconds = time.time() - started
    figures = {}
    if args.eval_n:
        figures = evaluate(model, tok, task, task.examples("test", args.eval_n), EvalSettings(seed=args.seed))
    card = {
        "what": f"{args.chains}-chain policy for the {args.task} task (tiny Llama, SFT on {args.chains} chains)",
        "command": "python scripts/prepare_base.py " + shlex.join(sys.argv[1:] if argv is None else argv),
        "seed": args.seed,
        "args": {**vars(args), "output": args.output or DEFAULT_OUTPUT},  # as given, or the default's repository path
        "params": sum(p.numel() for p in model.parameters()),
        "train": stats,
        "train_seconds": round(train_seconds, 1),
        "test": {k: v for k, v in figures.items() if k != "completions"},
    }
    model.generation_config.max_new_tokens = 256
    save_pretrained(model, tok, out)
    (out / "base_card.json").write_text(json.dumps(card, indent=2) + "\n")
    print(
        f"trained {stats['steps']} steps in {train_seconds:.0f}s, loss {stats['first_loss']:.3f} -> {stats['final_loss']:.4f}",
        flush=True,
    )
    if figures:
        print(
            f"test n={figures['n']}: accuracy {figures['accuracy']:.3f}, mean tokens {figures['mean_tokens']:.1f}, "
            f"minimal {figures['mean_minimal_tokens']:.1f}, tokens_vs_minimal {figures['tokens_vs_minimal']:.2f}",
            flush=True,
        )
    if args.json:
        print_json(
            {
                "path": str(out),
                "train_seconds": card["train_seconds"],
                "steps": stats["steps"],
                "final_loss": stats["final_loss"],
                **card["test"],
            }
        )
    else:
        print(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Sweep a trained adapter's alpha (CoT-Valve): accuracy and chain length at each fixed alpha, and MixChain data.

    python scripts/alpha_sweep.py --model outputs/adv/default/adapter
    python scripts/alpha_sweep.py --model ADAPTER_DIR --alphas 0,0.5,1,1.5,2 --split test --n 200 --json

The adapter's LoRA delta is scaled by each alpha in turn (``W + alpha * delta``; 0 is the base, 1 the adapter as
trained) and evaluated greedily on the same questions. Prints the accuracy-vs-tokens table; writes every
completion, tagged with its alpha, as a MixChain-style dataset (``--output``, default ``mixchain.jsonl`` in the run
folder that holds the adapter; one JSON object per line: question_id, difficulty, alpha, completion, correct,
tokens; written to a temporary name, then renamed) and the curve as a PNG beside it; logs an MLflow run tagged
``method=alpha-sweep`` (experiment ``gan-cot-alpha`` by default: one step per alpha, the plot and the data as
artifacts). With ``--json`` the last line is one JSON object: ``rows``, ``mixchain``, ``plot``, ``run_id``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gan_cot.cli import UsageError, fail, print_json  # noqa: E402
from gan_cot.sweep import DEFAULT_ALPHAS  # noqa: E402
from gan_cot.tasks import DEFAULT_TASK, TASKS, TaskDataError, get_task  # noqa: E402

DEFAULT_EXPERIMENT = "gan-cot-alpha"


def add_common_args(p: argparse.ArgumentParser) -> None:
    """Flags shared with scripts/alpha_report.py."""
    p.add_argument("--alphas", default=",".join(f"{a:g}" for a in DEFAULT_ALPHAS), help="comma-separated alphas")
    p.add_argument("--task", default=DEFAULT_TASK, help=f"one of: {', '.join(sorted(TASKS))}")
    p.add_argument("--data", default=None, help="data path for file-backed tasks (gsm8k: folder or .jsonl)")
    p.add_argument("--split", default="test")
    p.add_argument("--n", type=int, default=200, help="number of questions (the first n of the split)")
    p.add_argument("--seed", type=int, default=0, help="the ledger task's data seed")
    p.add_argument("--max-new-tokens", type=int, default=256)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--output", default=None, help="MixChain jsonl (default: RUN_DIR/mixchain.jsonl)")
    p.add_argument("--experiment", default=DEFAULT_EXPERIMENT, help="MLflow experiment")
    p.add_argument("--mlflow-dir", default=None, help="local MLflow store folder (default mlruns/)")
    p.add_argument("--json", action="store_true", help="print one JSON object as the last line")


def check_args(args) -> None:
    """Everything checkable before torch loads; UsageError with one line."""
    from gan_cot.sweep import adapter_dir, parse_alphas

    if args.task not in TASKS:
        raise UsageError(f"unknown task {args.task!r}; known tasks: {', '.join(sorted(TASKS))}")
    for key in ("n", "max_new_tokens", "batch_size"):
        if getattr(args, key) <= 0:
            raise UsageError(f"--{key.replace('_', '-')} must be positive, got {getattr(args, key)}")
    try:
        args.adapter = adapter_dir(args.model)
        args.alpha_list = parse_alphas(args.alphas)
    except ValueError as e:
        raise UsageError(str(e)) from e
    if args.output is None:
        args.output = str(args.adapter.parent / "mixchain.jsonl")


def load(args):
    """Task examples, tokenizer and the adapter loaded unmerged (with its gate, if saved)."""
    from gan_cot.gate import load_gated_policy
    from gan_cot.models import load_tokenizer

    task = get_task("ledger", seed=args.seed) if args.task == "ledger" else get_task(args.task, path=args.data)
    examples = task.examples(args.split, args.n)
    if not examples:
        raise UsageError(f"split {args.split!r} of task {args.task!r} has no examples")
    return task, examples, load_tokenizer(str(args.adapter)), load_gated_policy(args.adapter)


def run_sweep(args, task, examples, tok, policy, log=print):
    from gan_cot.sweep import sweep

    log(f"alpha sweep of {args.adapter} on {args.task}/{args.split} n={len(examples)}: {args.alphas}")
    return sweep(
        policy, tok, task, examples, args.alpha_list, max_new_tokens=args.max_new_tokens, batch_size=args.batch_size,
        log=lambda r: log(f"  alpha {r['alpha']:g}: accuracy {r['accuracy']:.3f}, tokens {r['mean_tokens']:.1f}"),
    )  # fmt: skip


def main(argv=None) -> int:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--model", required=True, help="adapter folder (or a training run's output_dir holding adapter/)")
    add_common_args(p)
    args = p.parse_args(argv)
    try:
        check_args(args)
        task, examples, tok, policy = load(args)
    except (UsageError, TaskDataError, ValueError) as e:
        fail(str(e))

    from gan_cot.sweep import format_table, log_mlflow, plot, write_jsonl

    rows, records = run_sweep(args, task, examples, tok, policy)
    mixchain = write_jsonl(args.output, records)
    png = plot(rows, Path(args.output).with_name("alpha_sweep.png"), title=f"alpha sweep: {args.adapter}")
    print(format_table(rows), flush=True)
    print(f"MixChain: {len(records)} chains in {mixchain}; plot {png}", flush=True)
    params = {"model": args.adapter, "task": args.task, "split": args.split, "n": len(examples), "alphas": args.alphas}
    run_id = log_mlflow(rows, params, [png, mixchain], args.experiment, args.mlflow_dir)
    if args.json:
        print_json({"rows": rows, "mixchain": str(mixchain), "plot": str(png), "run_id": run_id})
    return 0


if __name__ == "__main__":
    sys.exit(main())

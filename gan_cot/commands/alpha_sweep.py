"""Sweep a trained adapter's alpha (CoT-Valve): accuracy and chain length at each fixed alpha, and MixChain data.

    python scripts/alpha_sweep.py --model outputs/adv/default/adapter
    python scripts/alpha_sweep.py --model ADAPTER_DIR --alphas 0,0.5,1,1.5,2 --split test --n 200 --json
    python scripts/alpha_sweep.py --model outputs/comparison/ledger-hard/seed0/gan-cot --task ledger-hard \
        --alphas 0,0.25,0.5,0.75,1 --n 500 --seed 0 --max-think-tokens 192 --method gan-cot \
        --experiment comparison-ledger-hard     # fixed alphas as rows of the comparison

The adapter's LoRA delta is scaled by each alpha in turn (``W + alpha * delta``; 0 is the base, 1 the adapter as
trained) and evaluated greedily on the same questions. Prints the accuracy-vs-tokens table; writes every
completion, tagged with its alpha, as a MixChain-style dataset (``--output``, default ``mixchain.jsonl`` in the run
folder that holds the adapter; one JSON object per line: question_id, difficulty, alpha, completion, correct,
tokens; written to a temporary name, then renamed) and the curve as a PNG beside it; logs an MLflow run tagged
``method=alpha-sweep`` (experiment ``gan-cot-alpha`` by default: one step per alpha, the plot and the data as
artifacts). With ``--method M`` every alpha is also logged as a run of its own (method ``M-alphaA``, seed ``--seed``,
per-question rows, alpha 0 as its base), which ``scripts/compare_runs.py`` sets beside the trained methods.
With ``--json`` the last line is one JSON object: ``rows``, ``mixchain``, ``plot``, ``run_id``, ``runs`` (method ->
run id).
"""

from __future__ import annotations

import sys
from pathlib import Path

from gan_cot.alpha_sweep import check_sweep_args, load_sweep, run_sweep, sweep_parser
from gan_cot.tasks import TaskDataError
from gan_cot.usage import UsageError, fail, print_json


def main(argv=None) -> int:
    args = sweep_parser(__doc__, "adapter folder (or a training run's output_dir holding adapter/)").parse_args(argv)
    try:
        check_sweep_args(args)
        task, examples, tok, policy = load_sweep(args)
    except (UsageError, TaskDataError, ValueError) as e:
        fail(str(e))

    from gan_cot.alpha_sweep import format_table, log_alpha_runs, log_mlflow, plot, write_jsonl

    rows, records = run_sweep(args, task, examples, tok, policy)
    mixchain = write_jsonl(args.output, records)
    png = plot(rows, Path(args.output).with_name("alpha_sweep.png"), title=f"alpha sweep: {args.adapter}")
    print(format_table(rows), flush=True)
    print(f"MixChain: {len(records)} chains in {mixchain}; plot {png}", flush=True)
    params = {"model": args.adapter, "task": args.task, "split": args.split, "n": len(examples), "alphas": args.alphas}
    run_id = log_mlflow(rows, params, [png, mixchain], args.experiment, args.mlflow_dir)
    methods = log_alpha_runs(args, task, rows, records) if args.method else {}
    if methods:
        print(f"logged {', '.join(methods)} to experiment {args.experiment}", flush=True)
    if args.json:
        print_json({"rows": rows, "mixchain": str(mixchain), "plot": str(png), "run_id": run_id, "runs": methods})
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Does the learned alpha gate beat a fixed alpha? The sweep's curve with the gate's point beside it.

    python scripts/alpha_report.py --model outputs/adv/default --json
    python scripts/alpha_report.py --model OUTPUT_DIR --split test --n 200 --alphas 0,0.5,1,1.5,2

``--model`` is a training run's output_dir (holding ``adapter/`` with ``alpha_gate.json``) or the adapter folder.
Runs scripts/alpha_sweep.py's sweep (same questions, greedy; MixChain data and plot written as it does) and the
learned gate (alpha chosen per question), prints the sweep table with the gate's line under it, and logs one MLflow
run (tag ``method=alpha-sweep``, the gate's figures as ``gate_*`` metrics, the plot with the gate's point).

The last line (with ``--json``) is one JSON object:

- ``dominated``: true iff some fixed alpha has both strictly higher accuracy and strictly fewer mean tokens than
  the gate (``dominated_by`` lists those alphas);
- ``spearman_difficulty_tokens``: Spearman's rank correlation between each question's difficulty and the gate
  policy's tokens on it (null when the task has no difficulty);
- ``gate_accuracy``, ``gate_mean_tokens``, ``gate_tokens_vs_minimal``, ``gate_alpha_mean``, ``gate_alpha_std``,
  ``gate_alpha_difficulty`` (difficulty -> mean alpha), ``spearman_difficulty_alpha``;
- ``sweep``: the sweep's rows; ``mixchain``, ``plot``, ``run_id``.
"""

from __future__ import annotations

import sys
from pathlib import Path

from gan_cot.alpha_sweep import check_sweep_args, load_sweep, run_sweep, sweep_parser
from gan_cot.tasks import TaskDataError
from gan_cot.usage import UsageError, fail, print_json


def main(argv=None) -> int:
    args = sweep_parser(__doc__, "a training run's output_dir (holding adapter/) or the adapter").parse_args(argv)
    try:
        check_sweep_args(args)
        from gan_cot.gate import GATE_CONFIG

        if not (args.adapter / GATE_CONFIG).exists():
            raise UsageError(
                f"{args.adapter} has no saved alpha gate ({GATE_CONFIG}); train with gate.kind=learned, or sweep a "
                "fixed alpha with scripts/alpha_sweep.py"
            )
        task, examples, tok, policy = load_sweep(args)
    except (UsageError, TaskDataError, ValueError) as e:
        fail(str(e))

    from gan_cot.alpha_sweep import dominated_by, format_table, log_mlflow, plot, spearman, summary, write_jsonl
    from gan_cot.evaluate import EvalSettings, evaluate

    rows, records = run_sweep(args, task, examples, tok, policy)
    settings = EvalSettings(max_new_tokens=args.max_new_tokens, batch_size=args.batch_size)
    res = evaluate(policy, tok, task, examples, settings, show_progress=False, keep_rows=True)
    gate = summary("gate", res) | {k: res[k] for k in ("alpha_mean", "alpha_std", "alpha_min", "alpha_max")}
    gate["alpha_difficulty"] = res["alpha_difficulty"]
    known = [r for r in res["rows"] if r["difficulty"] is not None]
    rho_tokens = spearman([r["difficulty"] for r in known], [r["tokens"] for r in known]) if known else None
    rho_alpha = spearman([r["difficulty"] for r in known], [r["alpha"] for r in known]) if known else None
    better = dominated_by(rows, gate)

    mixchain = write_jsonl(args.output, records)
    png = plot(rows, Path(args.output).with_name("alpha_report.png"), gate=gate, title=f"alpha gate: {args.adapter}")
    print(format_table(rows, gate), flush=True)
    levels = ", ".join(f"{d}: {a:.3f}" for d, a in gate["alpha_difficulty"].items())
    if levels:
        print(f"gate alpha per difficulty: {levels}", flush=True)
    print(
        "gate dominated by fixed alpha "
        + (", ".join(f"{r['alpha']:g}" for r in better) if better else "none")
        + f"; Spearman(difficulty, tokens) {rho_tokens if rho_tokens is None else round(rho_tokens, 3)}"
        + f", Spearman(difficulty, alpha) {rho_alpha if rho_alpha is None else round(rho_alpha, 3)}",
        flush=True,
    )
    out = {
        "model": str(args.adapter),
        "task": args.task,
        "split": args.split,
        "n": len(examples),
        "dominated": bool(better),
        "dominated_by": [r["alpha"] for r in better],
        "spearman_difficulty_tokens": rho_tokens,
        "spearman_difficulty_alpha": rho_alpha,
        "sweep": rows,
        "mixchain": str(mixchain),
        "plot": str(png),
    }
    out |= {f"gate_{k}": v for k, v in gate.items() if k not in ("alpha", "n")}
    params = {"model": args.adapter, "task": args.task, "split": args.split, "n": len(examples), "alphas": args.alphas}
    extra = {"dominated": float(bool(better)), "spearman_difficulty_tokens": rho_tokens}
    out["run_id"] = log_mlflow(rows, params, [png, mixchain], args.experiment, args.mlflow_dir, gate=gate, extra=extra)
    if args.json:
        print_json(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())

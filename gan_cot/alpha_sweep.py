"""CoT-Valve's alpha sweep of a trained adapter, the MixChain data it yields, and the gate measured against it.

A LoRA delta trained towards short chains, scaled by a fixed ``alpha`` (``W + alpha * delta``, :mod:`gan_cot.gate`),
moves chain length smoothly: :func:`sweep` evaluates an adapter at each alpha of a list (greedy, the same questions)
and returns one row per alpha (accuracy, tokens, tokens vs minimal) and every completion. Those completions, each
tagged with its alpha and whether it is correct, are a **MixChain**-style dataset: chains of several lengths for
the same question (``write_jsonl``; one JSON object per line: question id, difficulty, alpha, completion, correct,
tokens). :func:`dominated_by` and :func:`spearman` compare a learned gate's point with the sweep's curve.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import TYPE_CHECKING

from gan_cot.tasks import DEFAULT_TASK, TASKS, make_task
from gan_cot.usage import UsageError

if TYPE_CHECKING:
    from gan_cot.evaluate import EvalSettings

DEFAULT_ALPHAS = (0.0, 0.25, 0.5, 0.75, 1.0, 1.25, 1.5, 2.0)


def adapter_dir(path: str | Path) -> Path:
    """The adapter folder for ``path``: the folder itself when it holds ``adapter_config.json``, else its
    ``adapter/`` subfolder (a training run's OUTPUT_DIR); ValueError when neither is there."""
    p = Path(path)
    if (p / "adapter_config.json").exists():
        return p
    if (p / "adapter" / "adapter_config.json").exists():
        return p / "adapter"
    raise ValueError(
        f"{path} is not an adapter folder (no adapter_config.json) nor a run folder with adapter/; pass the "
        "output_dir a training run printed, or its adapter/ folder"
    )


def parse_alphas(text: str) -> list[float]:
    """``"0,0.5,1"`` -> ``[0.0, 0.5, 1.0]``; ValueError naming the bad item (every alpha must be a number >= 0)."""
    out = []
    for item in text.split(","):
        item = item.strip()
        try:
            value = float(item)
        except ValueError:
            raise ValueError(f"--alphas: {item!r} is not a number; give comma-separated numbers >= 0") from None
        if not (value >= 0 and math.isfinite(value)):
            raise ValueError(f"--alphas: {item!r} must be a finite number >= 0")
        out.append(value)
    if not out:
        raise ValueError("--alphas: give at least one alpha")
    return out


def summary(alpha, result: dict) -> dict:
    """One table row of an :func:`gan_cot.evaluate.evaluate` result."""
    row = {
        "alpha": alpha,
        "accuracy": result["accuracy"],
        "mean_tokens": result["mean_tokens"],
        "mean_thinking_tokens": result["mean_thinking_tokens"],
        "n": result["n"],
    }
    if "tokens_vs_minimal" in result:
        row["tokens_vs_minimal"] = result["tokens_vs_minimal"]
    return row


def sweep(
    policy, tokenizer, task, examples, alphas, settings: EvalSettings | None = None, log=None
) -> tuple[list[dict], list[dict]]:
    """Greedy evaluation of ``policy`` (a :class:`gan_cot.gate.GatedPolicy`) at each fixed alpha
    (``settings``: the :class:`gan_cot.evaluate.EvalSettings` of every evaluation, its budget, batch size and seed;
    None: the defaults).

    Returns the rows (one per alpha, :func:`summary`) and the MixChain records (one per question and alpha).
    ``log``: an optional callable that gets each row as it is done.
    """
    from gan_cot.evaluate import EvalSettings, evaluate

    settings = EvalSettings() if settings is None else settings
    rows, records = [], []
    for alpha in alphas:
        res = evaluate(
            policy, tokenizer, task, examples, settings, alpha=float(alpha), show_progress=False, keep_rows=True
        )
        rows.append(summary(float(alpha), res))
        records += [
            {"question_id": r["id"], "difficulty": r["difficulty"], "alpha": float(alpha), "completion": r["completion"],
             "correct": bool(r["correct"]), "tokens": r["tokens"]}
            for r in res["rows"]
        ]  # fmt: skip
        if log is not None:
            log(rows[-1])
    return rows, records


def write_jsonl(path: str | Path, records: list[dict]) -> Path:
    """Write one JSON object per line to a temporary name, then rename it into place."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w") as f:
        for r in records:
            f.write(json.dumps(r) + "\n")
    os.replace(tmp, path)
    return path


def format_table(rows: list[dict], gate: dict | None = None) -> str:
    """The accuracy-vs-tokens table, one line per alpha, and the gate's line (alpha = its mean) if given."""
    lines = [f"{'alpha':>10}  {'accuracy':>8}  {'tokens':>7}  {'thinking':>8}  {'vs_minimal':>10}"]

    def line(label: str, r: dict) -> str:
        vs = r.get("tokens_vs_minimal")
        vs_text = "-" if vs is None else f"{vs:.3f}"
        return (
            f"{label:>10}  {r['accuracy']:8.3f}  {r['mean_tokens']:7.1f}  {r['mean_thinking_tokens']:8.1f}  "
            f"{vs_text:>10}"
        )

    lines += [line(f"{r['alpha']:g}", r) for r in rows]
    if gate is not None:
        lines.append(
            line("gate", gate) + f"   (learned alpha: mean {gate['alpha_mean']:.3f}, std {gate['alpha_std']:.3f})"
        )
    return "\n".join(lines)


def dominated_by(rows: list[dict], gate: dict) -> list[dict]:
    """The sweep rows with both strictly higher accuracy and strictly fewer mean tokens than the gate."""
    return [r for r in rows if r["accuracy"] > gate["accuracy"] and r["mean_tokens"] < gate["mean_tokens"]]


def _ranks(values: list[float]) -> list[float]:
    """Ranks 1..n, ties sharing their average rank."""
    order = sorted(range(len(values)), key=values.__getitem__)
    ranks = [0.0] * len(values)
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and values[order[j + 1]] == values[order[i]]:
            j += 1
        for k in range(i, j + 1):
            ranks[order[k]] = (i + j) / 2 + 1
        i = j + 1
    return ranks


def spearman(x: list[float], y: list[float]) -> float | None:
    """Spearman's rank correlation (Pearson on average ranks); None with fewer than 2 points or a constant side."""
    if len(x) != len(y):
        raise ValueError(f"spearman: {len(x)} and {len(y)} values")
    if len(x) < 2:
        return None
    rx, ry = _ranks(list(x)), _ranks(list(y))
    mx, my = sum(rx) / len(rx), sum(ry) / len(ry)
    sxy = sum((a - mx) * (b - my) for a, b in zip(rx, ry))
    sxx = sum((a - mx) ** 2 for a in rx)
    syy = sum((b - my) ** 2 for b in ry)
    if sxx == 0 or syy == 0:
        return None
    return sxy / math.sqrt(sxx * syy)


def plot(rows: list[dict], path: str | Path, gate: dict | None = None, title: str = "alpha sweep") -> Path:
    """Accuracy against mean tokens, one point per alpha (the curve), and the gate's point; a PNG (matplotlib Agg)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig, ax = plt.subplots(figsize=(6, 4.5))
    xs, ys = [r["mean_tokens"] for r in rows], [r["accuracy"] for r in rows]
    ax.plot(xs, ys, "o-", color="tab:blue", label="fixed alpha")
    for r in rows:
        ax.annotate(f"{r['alpha']:g}", (r["mean_tokens"], r["accuracy"]), textcoords="offset points", xytext=(4, 4))
    if gate is not None:
        ax.plot([gate["mean_tokens"]], [gate["accuracy"]], "*", color="tab:red", markersize=14,
                label=f"gate (mean alpha {gate['alpha_mean']:.2f})")  # fmt: skip
    ax.set_xlabel("mean tokens per answer")
    ax.set_ylabel("accuracy")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    tmp = path.with_name(path.stem + ".tmp.png")
    fig.savefig(tmp, dpi=120)
    plt.close(fig)
    os.replace(tmp, path)
    return path


def log_mlflow(
    rows: list[dict],
    params: dict,
    artifacts: list[str | Path],
    experiment: str,
    store_dir: str | None = None,
    gate: dict | None = None,
    extra: dict | None = None,
) -> str:
    """One MLflow run tagged ``method=alpha-sweep``: the sweep's metrics at steps 0, 1, ... (one step per alpha,
    with the ``alpha`` metric saying which), the gate's figures as ``gate_*`` metrics, and the artifacts."""
    import mlflow

    from gan_cot import tracking

    tracking.setup(experiment, store_dir)
    with mlflow.start_run(run_name="alpha-sweep") as run:
        mlflow.set_tag("method", "alpha-sweep")
        mlflow.log_params({k: str(v)[:6000] for k, v in params.items()})
        for step, r in enumerate(rows):
            mlflow.log_metrics({k: float(v) for k, v in r.items() if k != "n" and v is not None}, step=step)
        if gate is not None:
            flat = {f"gate_{k}": float(v) for k, v in gate.items() if isinstance(v, (int, float)) and v is not None}
            flat |= {f"gate_alpha_difficulty_{d}": float(v) for d, v in gate.get("alpha_difficulty", {}).items()}
            mlflow.log_metrics(flat)
        if extra:
            mlflow.log_metrics({k: float(v) for k, v in extra.items() if v is not None})
        for a in artifacts:
            mlflow.log_artifact(str(a))
        return run.info.run_id


# -- the scripts' shared flags and loading ------------------------------------------------------------

DEFAULT_EXPERIMENT = "gan-cot-alpha"


def sweep_parser(doc: str, model_help: str):
    """The command line of scripts/alpha_sweep.py and scripts/alpha_report.py (``doc``: the script's docstring)."""
    import argparse

    p = argparse.ArgumentParser(description=doc.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", required=True, help=model_help)
    add_sweep_args(p)
    return p


def add_sweep_args(p) -> None:
    """The flags of scripts/alpha_sweep.py and scripts/alpha_report.py."""
    p.add_argument("--alphas", default=",".join(f"{a:g}" for a in DEFAULT_ALPHAS), help="comma-separated alphas")
    p.add_argument("--task", default=DEFAULT_TASK, help=f"one of: {', '.join(sorted(TASKS))}")
    p.add_argument("--data", default=None, help="data path for file-backed tasks (gsm8k: folder or .jsonl)")
    p.add_argument("--split", default="test")
    p.add_argument("--n", type=int, default=200, help="number of questions (the first n of the split)")
    p.add_argument("--seed", type=int, default=0, help="the ledger task's data seed")
    p.add_argument("--max-new-tokens", type=int, default=256)
    p.add_argument(
        "--max-think-tokens",
        type=int,
        default=None,
        help="a thinking budget, as training evaluates (then --max-new-tokens is not used)",
    )
    p.add_argument(
        "--max-answer-tokens",
        type=int,
        default=None,
        help="with --max-think-tokens: the answer's budget (default: the chain format's)",
    )
    p.add_argument(
        "--method",
        default=None,
        help="also log every alpha as its own run tagged method METHOD-alphaA and --seed, with its "
        "per-question rows, so scripts/compare_runs.py sets fixed alphas beside the trained methods",
    )
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--output", default=None, help="MixChain jsonl (default: RUN_DIR/mixchain.jsonl)")
    p.add_argument("--experiment", default=DEFAULT_EXPERIMENT, help="MLflow experiment")
    p.add_argument("--mlflow-dir", default=None, help="local MLflow store folder (default mlruns/)")
    p.add_argument("--json", action="store_true", help="print one JSON object as the last line")


def check_sweep_args(args) -> None:
    """Everything checkable before torch loads; UsageError with one line."""
    if args.task not in TASKS:
        raise UsageError(f"unknown task {args.task!r}; known tasks: {', '.join(sorted(TASKS))}")
    for key in ("n", "max_new_tokens", "batch_size", "max_think_tokens", "max_answer_tokens"):
        if getattr(args, key) is not None and getattr(args, key) <= 0:
            raise UsageError(f"--{key.replace('_', '-')} must be positive, got {getattr(args, key)}")
    try:
        args.adapter = adapter_dir(args.model)
        args.alpha_list = parse_alphas(args.alphas)
    except ValueError as e:
        raise UsageError(str(e)) from e
    if args.output is None:
        args.output = str(args.adapter.parent / "mixchain.jsonl")


def load_sweep(args):
    """Task examples, tokenizer and the adapter loaded unmerged (with its gate, if saved)."""
    from gan_cot.gate import load_gated_policy
    from gan_cot.models import load_tokenizer

    task = make_task(args.task, args.seed, args.data)
    examples = task.examples(args.split, args.n)
    if not examples:
        raise UsageError(f"split {args.split!r} of task {args.task!r} has no examples")
    return task, examples, load_tokenizer(str(args.adapter)), load_gated_policy(args.adapter)


def run_sweep(args, task, examples, tok, policy, log=print):
    from gan_cot.evaluate import EvalSettings

    log(f"alpha sweep of {args.adapter} on {args.task}/{args.split} n={len(examples)}: {args.alphas}")
    settings = EvalSettings(
        max_new_tokens=args.max_new_tokens, max_think_tokens=args.max_think_tokens,
        max_answer_tokens=args.max_answer_tokens, batch_size=args.batch_size, seed=args.seed,
    )  # fmt: skip
    return sweep(
        policy, tok, task, examples, args.alpha_list, settings,
        log=lambda r: log(f"  alpha {r['alpha']:g}: accuracy {r['accuracy']:.3f}, tokens {r['mean_tokens']:.1f}"),
    )  # fmt: skip


def log_alpha_runs(args, task, rows: list[dict], records: list[dict]) -> dict[str, str]:
    """``--method``: every alpha as one finished run (method ``METHOD-alphaA``, ``--seed``) in ``--experiment``, with
    its per-question rows and the sweep's alpha 0 (the base, adapter off) as its base figures; returns
    {method: run id}."""
    from gan_cot import tracking

    tracking.setup(args.experiment, args.mlflow_dir)
    base = next((r for r in rows if r["alpha"] == 0), None)
    params = {"model": str(args.adapter), "split": args.split, "n": len(records) // max(1, len(rows)),
              "max_think_tokens": args.max_think_tokens, "max_answer_tokens": args.max_answer_tokens}  # fmt: skip
    out = {}
    for r in rows:
        method = f"{args.method}-alpha{r['alpha']:g}"
        per_q = [{"id": x["question_id"], "difficulty": x["difficulty"], "correct": x["correct"], "tokens": x["tokens"]}
                 for x in records if x["alpha"] == r["alpha"]]  # fmt: skip
        ref = base or r
        figures = {"accuracy": ref["accuracy"], "mean_tokens": ref["mean_tokens"]}
        if r.get("tokens_vs_minimal"):
            figures["mean_minimal_tokens"] = r["mean_tokens"] / r["tokens_vs_minimal"]
        final = {"accuracy": r["accuracy"], "tokens": r["mean_tokens"]}
        out[method] = tracking.log_eval_run(method, args.seed, args.task, task, figures, final, per_q,
                                            {**params, "alpha": r["alpha"]})  # fmt: skip
    return out

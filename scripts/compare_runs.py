"""Compare the finished runs of an MLflow experiment: accuracy, tokens, compression, ACU, AES, Pareto front.

    python scripts/compare_runs.py                                   # experiment gan-cot in mlruns/
    python scripts/compare_runs.py --experiment NAME --mlflow-dir DIR --output pareto.png --json

Reads the project's store (the SQLite store in ``mlruns/``, or ``MLFLOW_TRACKING_URI`` when set and no
``--mlflow-dir`` is given) and prints one row per finished run:

- method: the run's ``method`` tag, else its ``credit.mode`` param, else its run name;
- accuracy and tokens: the ``final_accuracy`` and ``final_mean_tokens`` metrics; ``final_tokens_vs_minimal``;
- compression ``1 - tokens / base_mean_tokens``, AES against ``base_accuracy`` / ``base_mean_tokens``, and ACU
  from ``n_params`` (metric or param), as defined in ``gan_cot/efficiency.py``;
- front: ``*`` for runs on the accuracy/tokens Pareto front.

A missing figure prints as ``-``. The Pareto plot (accuracy against tokens) is written as a PNG and logged as
an artifact of a small run named ``compare`` (tag ``method=compare``, never listed itself). With ``--json``
the last line is one JSON object: ``{"experiment", "runs", "plot", "compare_run_id"}``.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from gan_cot.cli import REPO_ROOT, UsageError, fail, print_json
from gan_cot.efficiency import acu, aes, compression_rate, pareto_front

DEFAULT_OUTPUT = REPO_ROOT / "outputs" / "compare" / "pareto.png"
COMPARE_METHOD = "compare"
COLUMNS = [  # (key, header, format)
    ("run", "run", "s"),
    ("method", "method", "s"),
    ("accuracy", "accuracy", ".3f"),
    ("mean_tokens", "tokens", ".1f"),
    ("tokens_vs_minimal", "vs_minimal", ".3f"),
    ("compression", "compression", ".3f"),
    ("acu", "ACU", ".4g"),
    ("aes", "AES", ".3f"),
    ("front", "front", "s"),
]


def parse_args(argv=None):
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--experiment", default="gan-cot", help="MLflow experiment name (default gan-cot)")
    p.add_argument("--mlflow-dir", default=None, help="local MLflow store folder (default mlruns/)")
    p.add_argument("--output", default=str(DEFAULT_OUTPUT), help="where to write the Pareto plot (PNG)")
    p.add_argument("--json", action="store_true", help="print one JSON object as the last line")
    return p.parse_args(argv)


def open_experiment(name: str, store_dir: str | None):
    """Point MLflow at the store and return the experiment; a missing store or experiment is a UsageError."""
    import mlflow

    from gan_cot.tracking import tracking_uri

    uri = tracking_uri(store_dir)
    db = Path(uri[len("sqlite:///") :]) if uri.startswith("sqlite:///") else None
    if db is not None and not db.exists():
        raise UsageError(
            f"no MLflow store at {db.parent} (no {db.name}); pass --mlflow-dir or set MLFLOW_TRACKING_URI"
        )
    mlflow.set_tracking_uri(uri)
    exp = mlflow.get_experiment_by_name(name)
    if exp is None:
        names = sorted(e.name for e in mlflow.search_experiments())
        raise UsageError(f"no experiment {name!r} in {uri}; existing experiments: {', '.join(names) or '(none)'}")
    return exp


def _number(run, key: str) -> float | None:
    """A metric, else a param that parses as a number, else None."""
    if key in run.data.metrics:
        return float(run.data.metrics[key])
    try:
        return float(run.data.params[key])
    except (KeyError, ValueError):
        return None


def run_row(run) -> dict:
    """One table row: the run's figures and those derived against its base."""
    tags, params = run.data.tags, run.data.params
    method = tags.get("method") or params.get("credit.mode") or run.info.run_name or "-"
    accuracy, tokens = _number(run, "final_accuracy"), _number(run, "final_mean_tokens")
    base_accuracy, base_tokens = _number(run, "base_accuracy"), _number(run, "base_mean_tokens")
    n_params = _number(run, "n_params")
    return {
        "run_id": run.info.run_id,
        "run": run.info.run_id[:8],
        "run_name": run.info.run_name,
        "method": method,
        "accuracy": accuracy,
        "mean_tokens": tokens,
        "tokens_vs_minimal": _number(run, "final_tokens_vs_minimal"),
        "base_accuracy": base_accuracy,
        "base_mean_tokens": base_tokens,
        "n_params": n_params,
        "compression": compression_rate(tokens, base_tokens),
        "acu": acu(accuracy, n_params, tokens),
        "aes": aes(accuracy, tokens, base_accuracy, base_tokens),
    }


def collect_rows(experiment_id: str) -> list[dict]:
    """Rows of the experiment's finished runs (newest first), the ``compare`` runs left out, front marked."""
    import mlflow

    runs = mlflow.search_runs(
        experiment_ids=[experiment_id],
        filter_string="attributes.status = 'FINISHED'",
        order_by=["attributes.start_time DESC"],
        output_format="list",
    )
    rows = [run_row(r) for r in runs if r.data.tags.get("method") != COMPARE_METHOD]
    front = set(pareto_front([(r["mean_tokens"], r["accuracy"]) for r in rows]))
    for i, r in enumerate(rows):
        r["pareto"] = i in front
        r["front"] = "*" if i in front else ""
    return rows


def format_table(rows: list[dict]) -> str:
    cells = [[header for _, header, _ in COLUMNS]]
    for r in rows:
        cells.append(["-" if r[key] is None else format(r[key], spec) for key, _, spec in COLUMNS])
    widths = [max(len(row[i]) for row in cells) for i in range(len(COLUMNS))]
    lines = []
    for row in cells:  # run and method left-aligned, numbers right-aligned
        lines.append("  ".join(c.ljust(w) if i < 2 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths))))
    return "\n".join(line.rstrip() for line in lines)


def plot_pareto(rows: list[dict], output: Path, title: str) -> Path:
    """Accuracy against tokens, the front drawn as a step line, every point labelled by method; written to a
    temporary name, then renamed, so a reader never sees half a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    pts = [r for r in rows if r["mean_tokens"] is not None and r["accuracy"] is not None]
    fig, ax = plt.subplots(figsize=(7, 5), dpi=100)
    try:
        others = [r for r in pts if not r["pareto"]]
        front = sorted((r for r in pts if r["pareto"]), key=lambda r: (r["mean_tokens"], -r["accuracy"]))
        ax.scatter([r["mean_tokens"] for r in others], [r["accuracy"] for r in others], c="tab:gray", label="run")
        if front:
            ax.step([r["mean_tokens"] for r in front], [r["accuracy"] for r in front], where="post", c="tab:red", lw=1)
            ax.scatter([r["mean_tokens"] for r in front], [r["accuracy"] for r in front], c="tab:red",
                       label="Pareto front", zorder=3)  # fmt: skip
        bases = {(r["base_mean_tokens"], r["base_accuracy"]) for r in rows if None not in (r["base_mean_tokens"], r["base_accuracy"])}  # fmt: skip
        if bases:
            ax.scatter([t for t, _ in bases], [a for _, a in bases], marker="x", c="black", label="base")
        for r in pts:
            ax.annotate(r["method"], (r["mean_tokens"], r["accuracy"]), textcoords="offset points", xytext=(4, 4),
                        fontsize=8)  # fmt: skip
        if not pts:
            ax.text(0.5, 0.5, "no finished runs with accuracy and tokens", ha="center", transform=ax.transAxes)
        ax.set_xlabel("mean tokens per answer (fewer is better)")
        ax.set_ylabel("accuracy")
        ax.set_title(title)
        ax.grid(alpha=0.3)
        if pts or bases:
            ax.legend(loc="lower right", fontsize=8)
        output.parent.mkdir(parents=True, exist_ok=True)
        tmp = output.with_name(output.name + ".tmp")
        fig.savefig(tmp, format="png")
        os.replace(tmp, output)
    finally:
        plt.close(fig)
    return output


def log_compare_run(experiment_id: str, plot: Path, n_runs: int) -> str:
    """A small run named ``compare`` holding the plot; returns its id."""
    import mlflow

    with mlflow.start_run(experiment_id=experiment_id, run_name="compare", tags={"method": COMPARE_METHOD}) as run:
        mlflow.log_metric("n_runs", n_runs)
        mlflow.log_artifact(str(plot))
    return run.info.run_id


def main(argv=None) -> int:
    args = parse_args(argv)
    output = Path(args.output)
    if output.suffix.lower() != ".png":
        fail(f"--output {output} must end in .png")
    try:
        exp = open_experiment(args.experiment, args.mlflow_dir)
    except UsageError as e:
        fail(str(e))
    rows = collect_rows(exp.experiment_id)
    print(f"experiment {exp.name}: {len(rows)} finished runs")
    print(format_table(rows), flush=True)
    try:
        plot = plot_pareto(rows, output, f"{exp.name}: accuracy vs tokens")
    except OSError as e:
        fail(f"cannot write the plot to {output} ({e.strerror}); choose another path with --output")
    compare_id = log_compare_run(exp.experiment_id, plot, len(rows))
    print(f"plot: {plot} (logged to run {compare_id[:8]})", flush=True)
    if args.json:
        keep = ("run_id", "run_name", "method", "accuracy", "mean_tokens", "tokens_vs_minimal", "base_accuracy",
                "base_mean_tokens", "n_params", "compression", "acu", "aes", "pareto")  # fmt: skip
        runs = [{k: r[k] for k in keep} for r in rows]
        print_json({"experiment": exp.name, "runs": runs, "plot": str(plot), "compare_run_id": compare_id})
    return 0


if __name__ == "__main__":
    sys.exit(main())

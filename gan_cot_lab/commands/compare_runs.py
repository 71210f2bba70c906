"""Compare the methods of an MLflow experiment: per method, the mean over seeds and a 95% interval of accuracy,
tokens and AES, the differences the intervals allow, and the Pareto plot.

    python scripts/compare_runs.py                                   # experiment gan-cot in mlruns/
    python scripts/compare_runs.py --experiment comparison-ledger-hard --reference gan-cot --json
    python scripts/compare_runs.py --experiment NAME --mlflow-dir DIR --output pareto.png --per-run
    python scripts/compare_runs.py --experiment comparison-ledger-hard --export docs/data/comparison-ledger-hard.json.gz
    python scripts/compare_runs.py --outcomes docs/data/comparison-ledger-hard.json.gz --output docs/pareto-ledger-hard.png

Reads the project's store (the SQLite store in ``mlruns/``, or ``MLFLOW_TRACKING_URI`` when set and no
``--mlflow-dir`` is given), groups the finished runs by their ``method`` tag (else their ``credit.mode`` param, else
their name) and prints one row per method:

- runs: the seeds that ran; n: the questions each run answered; accuracy, tokens and AES: the mean over seeds and a
  bootstrap 95% interval over questions and seeds (:mod:`gan_cot_lab.comparison`), computed only from the runs'
  per-question rows: a method whose runs logged none shows its mean and no interval; ``vs_minimal``: tokens over the
  task's minimal chains;
- ``vs REF``: for each of accuracy, tokens and AES, ``+`` where the row is better than the reference method beyond
  both intervals, ``-`` where worse, ``=`` where the intervals overlap (no difference), ``?`` where there is no
  interval to compare;
- front: ``*`` on the accuracy/tokens Pareto front of the means.

Runs are compared only with runs scored on the same questions (the same task and number of questions): each such
set gets a table of its own, headed ``questions: TASK, N questions``, and every reason not to read two rows side by
side (several question sets, runs without rows, one seed scored on different questions) is a ``WARNING:`` line
before the tables.

Then every pair of methods the intervals separate, and the plot of the largest question set: means with 95% error
bars, the front, the base, and the ``oracle`` row (``scripts/oracle.py``) as the limit. The plot is written as a PNG
and attached to the reference method's runs as ``comparison/pareto.png``. ``--per-run`` adds one row per run. With
``--json`` the last line is one JSON object: ``{"experiment", "reference", "warnings", "methods", "differences",
"runs", "plot", "plot_runs"}``.

``--export FILE.json.gz`` writes the experiment's finished runs instead (and prints one line): their method, seed and
task, the figures read above, their start and end, their per-question rows and their base's, and the run_comparison.py
``summary.json`` records of ``--summaries DIR`` (default ``outputs/comparison/TASK`` for ``comparison-TASK``), about
1 kB per run of 500 questions (:mod:`gan_cot_lab.outcomes`); written to a temporary name, then renamed, and the same store gives
the same bytes. ``--merge FILE`` adds the runs and records of an outcomes file that the store lacks (a comparison
continued in a fresh checkout: ``--export F --merge F`` puts the new runs beside the committed ones). ``--outcomes FILE`` reads such a file instead of a store: the same table, intervals, differences,
plot and JSON as from the store (the plot is attached to no run: ``plot_runs`` is empty), so a clean clone, which has
no ``mlruns/``, makes them again from ``docs/data/``.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from gan_cot.efficiency import acu, aes, compression_rate
from gan_cot.shipped import REPO_ROOT
from gan_cot.usage import UsageError, fail, print_json
from gan_cot_lab import outcomes
from gan_cot_lab.comparison import (
    FIGURES,
    ORACLE,
    RunFigures,
    compare,
    default_reference,
    differences,
    question_warnings,
    summarize,
)

DEFAULT_OUTPUT = REPO_ROOT / "outputs" / "compare" / "pareto.png"
DEFAULT_EXPERIMENT = "gan-cot"
COMPARE_METHOD = "compare"  # the tag of the plot's own run in older stores: never listed as a method
PLOT_ARTIFACT = "comparison"  # the folder of a run's artifacts that holds the comparison's plot
RUN_COLUMNS = [  # (key, header, format) of --per-run
    ("run", "run", "s"),
    ("method", "method", "s"),
    ("seed", "seed", "s"),
    ("accuracy", "accuracy", ".3f"),
    ("mean_tokens", "tokens", ".1f"),
    ("tokens_vs_minimal", "vs_minimal", ".3f"),
    ("compression", "compression", ".3f"),
    ("acu", "ACU", ".4g"),
    ("aes", "AES", ".3f"),
]


def parse_args(argv=None):
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--experiment", default=None, help=f"MLflow experiment name (default {DEFAULT_EXPERIMENT}; with "
                   "--outcomes, the file's)")  # fmt: skip
    p.add_argument("--mlflow-dir", default=None, help="local MLflow store folder (default mlruns/)")
    p.add_argument("--outcomes", default=None, metavar="FILE",
                   help="read the runs from this outcomes file (--export's) instead of a store")  # fmt: skip
    p.add_argument("--export", default=None, metavar="FILE.json.gz",
                   help="write the experiment's runs and per-question rows to this file and stop")  # fmt: skip
    p.add_argument("--summaries", default=None, metavar="DIR", help="with --export: the folder of run_comparison.py's "
                   "summary.json (default outputs/comparison/TASK for an experiment comparison-TASK)")  # fmt: skip
    p.add_argument("--merge", default=None, metavar="FILE.json.gz", help="with --export: keep the runs and "
                   "run_comparison.py records of this outcomes file that the store lacks (a comparison continued in "
                   "a fresh checkout; it may be the --export file itself)")  # fmt: skip
    p.add_argument("--output", default=str(DEFAULT_OUTPUT), help="where to write the Pareto plot (PNG)")
    p.add_argument(
        "--reference", default=None, help="method the vs-REF marks compare with (default: gan-cot's, else the first)"
    )
    p.add_argument("--min-accuracy", type=float, default=None, metavar="A",
                   help="leave the methods whose mean accuracy is below A off the plot (named under it), so that the "
                   "accurate ones are told apart; the tables keep every method")  # fmt: skip
    p.add_argument("--boot", type=int, default=2000, help="bootstrap replicates")
    p.add_argument("--per-run", action="store_true", help="also print one row per run")
    p.add_argument("--json", action="store_true", help="print one JSON object as the last line")
    return p.parse_args(argv)


def open_experiment(name: str, store_dir: str | None):
    """Point MLflow at the store and return the experiment; a missing store or experiment is a UsageError."""
    import mlflow

    from gan_cot import tracking

    uri = tracking.tracking_uri(store_dir)
    db = Path(uri[len("sqlite:///") :]) if uri.startswith("sqlite:///") else None
    if db is not None and not db.exists():
        raise UsageError(
            f"no MLflow store at {db.parent} (no {db.name}); pass --mlflow-dir or set MLFLOW_TRACKING_URI"
        )
    tracking.relocate_artifacts(uri)  # a store that moved with its checkout still finds its artifacts
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


FIGURE_KEYS = ("final_accuracy", "final_mean_tokens", "final_tokens_vs_minimal", "base_accuracy", "base_mean_tokens",
               "n_params", "wall_seconds")  # fmt: skip
"""What a comparison reads of a run: a metric, else a param that parses as a number."""


def run_record(run) -> dict:
    """What a comparison reads of one MLflow run, as plain values (what an outcomes file keeps of it): its id and
    name, its method (its ``method`` tag, else its ``credit.mode`` param, else its name), seed and task, its start and
    end (ms since the epoch) and those of :data:`FIGURE_KEYS` it has."""
    tags, params = run.data.tags, run.data.params
    return {
        "run_id": run.info.run_id,
        "run_name": run.info.run_name,
        "method": tags.get("method") or params.get("credit.mode") or run.info.run_name or "-",
        "seed": tags.get("seed") or params.get("seed"),
        "task": tags.get("task") or params.get("task"),
        "start_time": run.info.start_time,
        "end_time": run.info.end_time,
        "figures": {k: v for k in FIGURE_KEYS if (v := _number(run, k)) is not None},
    }


def usable(record: dict) -> bool:
    """Whether a run has the final figures a comparison needs."""
    return {"final_accuracy", "final_mean_tokens"} <= set(record["figures"])


def store_records(experiment_id: str, base_rows: bool = False) -> list[dict]:
    """The experiment's finished runs with final figures as :func:`run_record` gives them, the ``compare`` runs left
    out, each with its per-question rows (``rows``, None where it logged none) and, with ``base_rows``, its base's on
    the same questions (``base_rows``)."""
    import mlflow

    from gan_cot.tracking import BASE_ROWS_ARTIFACT, load_eval_rows

    runs = mlflow.search_runs(
        experiment_ids=[experiment_id],
        filter_string="attributes.status = 'FINISHED'",
        order_by=["attributes.start_time DESC"],
        output_format="list",
    )
    records = [run_record(r) for r in runs if r.data.tags.get("method") != COMPARE_METHOD]
    records = [r for r in records if usable(r)]
    for r in records:
        r["rows"] = load_eval_rows(r["run_id"])
        r["base_rows"] = load_eval_rows(r["run_id"], BASE_ROWS_ARTIFACT) if base_rows else None
    return records


def run_row(record: dict) -> dict:
    """One run's figures and those derived against its base (and its per-question rows, ``rows``)."""
    f = record["figures"]
    accuracy, tokens = f.get("final_accuracy"), f.get("final_mean_tokens")
    base_accuracy, base_tokens = f.get("base_accuracy"), f.get("base_mean_tokens")
    n_params = f.get("n_params")
    seed = record.get("seed")
    return {
        "run_id": record["run_id"],
        "run": record["run_id"][:8],
        "run_name": record.get("run_name"),
        "method": record["method"],
        "seed": seed if seed is not None else "-",
        "task": record.get("task"),
        "accuracy": accuracy,
        "mean_tokens": tokens,
        "tokens_vs_minimal": f.get("final_tokens_vs_minimal"),
        "base_accuracy": base_accuracy,
        "base_mean_tokens": base_tokens,
        "n_params": n_params,
        "compression": compression_rate(tokens, base_tokens),
        "acu": acu(accuracy, n_params, tokens),
        "aes": aes(accuracy, tokens, base_accuracy, base_tokens),
        "rows": record.get("rows"),
    }


def collect_rows(records: list[dict]) -> list[dict]:
    """The table's rows of run records, newest first, from a store (:func:`store_records`) or an outcomes file
    (:func:`gan_cot_lab.outcomes.read`) alike: everything after this is the same for both."""
    return [run_row(r) for r in sorted(records, key=outcomes.record_order) if usable(r)]


def collect_runs(experiment_id: str) -> list[dict]:
    """The experiment's finished runs with final figures (newest first), the ``compare`` runs left out."""
    return collect_rows(store_records(experiment_id))


def run_figures(row: dict) -> RunFigures:
    seed = int(row["seed"]) if str(row["seed"]).lstrip("-").isdigit() else None
    return RunFigures(
        method=row["method"], seed=seed, run_id=row["run_id"], accuracy=row["accuracy"], tokens=row["mean_tokens"],
        base_accuracy=row["base_accuracy"], base_tokens=row["base_mean_tokens"],
        tokens_vs_minimal=row["tokens_vs_minimal"], rows=row["rows"], task=row["task"],
    )  # fmt: skip


def _cell(interval, spec: str) -> str:
    if interval.mean is None:
        return "-"
    if interval.lo is None:
        return f"{interval.mean:{spec}} (no CI)"
    return f"{interval.mean:{spec}} [{interval.lo:{spec}}, {interval.hi:{spec}}]"


def _marks(m, ref) -> str:
    if ref is None or m is ref:
        return "ref" if m is ref else ""
    return "".join({1: "+", -1: "-", 0: "=", None: "?"}[compare(m, ref, f)] for f in FIGURES)


def by_question_set(summaries) -> dict:
    """The summaries of each question set, in the order :func:`gan_cot_lab.comparison.summarize` gives them."""
    out: dict = {}
    for m in summaries:
        out.setdefault(m.questions, []).append(m)
    return out


def reference_of(summaries, name: str | None):
    """The reference row among one question set's summaries: ``name`` where the set has it, else the default."""
    by_name = {m.method: m for m in summaries}
    return by_name.get(name) or by_name.get(default_reference(list(by_name)))


def format_table(cells: list[list[str]], left: int = 1) -> str:
    widths = [max(len(row[i]) for row in cells) for i in range(len(cells[0]))]
    lines = []
    for row in cells:  # the first `left` columns left-aligned, the rest right-aligned
        lines.append("  ".join(c.ljust(w) if i < left else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths))))
    return "\n".join(line.rstrip() for line in lines)


def method_table(summaries, ref) -> str:
    head = ["method", "runs", "n", "accuracy [95% CI]", "tokens [95% CI]", "AES [95% CI]", "vs_minimal",
            f"vs {ref.method if ref else '-'}", "front"]  # fmt: skip
    cells = [head]
    for m in summaries:
        f = m.figures
        cells.append([
            m.method, str(len(m.runs)), "-" if m.n_questions is None else str(m.n_questions), _cell(f["accuracy"], ".3f"),
            _cell(f["tokens"], ".1f"), _cell(f["aes"], ".3f"),
            "-" if m.tokens_vs_minimal is None else f"{m.tokens_vs_minimal:.3f}", _marks(m, ref),
            "*" if m.pareto else "",
        ])  # fmt: skip
    return format_table(cells)


def run_table(rows: list[dict]) -> str:
    cells = [[header for _, header, _ in RUN_COLUMNS]]
    for r in rows:
        cells.append(["-" if r[key] is None else format(r[key], spec) for key, _, spec in RUN_COLUMNS])
    return format_table(cells, left=3)


def split_by_accuracy(summaries, min_accuracy: float | None) -> tuple[list, list]:
    """The methods a plot shows and those it leaves off: below ``min_accuracy`` (None: none left off)."""
    if min_accuracy is None:
        return list(summaries), []
    shown = [m for m in summaries if (m.figures["accuracy"].mean or 0.0) >= min_accuracy]
    return shown, [m for m in summaries if m not in shown]


def plot_pareto(summaries, rows: list[dict], output: Path, title: str, min_accuracy: float | None = None) -> Path:
    """Mean accuracy against mean tokens per method with 95% error bars, the front of the means as a step line, the
    base and the oracle; written to a temporary name, then renamed, so a reader never sees half a PNG. Methods below
    ``min_accuracy`` are left off and named under the plot (the front is still that of every method)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    summaries, hidden = split_by_accuracy([m for m in summaries if m.has_rows], min_accuracy)
    fig, ax = plt.subplots(figsize=(8, 5.5 if not hidden else 6), dpi=100)
    try:
        for m in summaries:
            a, t = m.figures["accuracy"], m.figures["tokens"]
            oracle = m.method == ORACLE
            color = "tab:green" if oracle else "tab:red" if m.pareto else "tab:gray"
            ax.errorbar(t.mean, a.mean, xerr=[[t.mean - t.lo], [t.hi - t.mean]], yerr=[[a.mean - a.lo], [a.hi - a.mean]],
                        fmt="*" if oracle else "o", ms=12 if oracle else 6, color=color, capsize=3, zorder=3)  # fmt: skip
            ax.annotate(m.method, (t.mean, a.mean), textcoords="offset points", xytext=(5, 5), fontsize=8)
        front = sorted((m for m in summaries if m.pareto), key=lambda m: m.figures["tokens"].mean)
        if front:
            ax.step([m.figures["tokens"].mean for m in front], [m.figures["accuracy"].mean for m in front],
                    where="post", c="tab:red", lw=1, label="Pareto front (means)")  # fmt: skip
        bases = {(r["base_mean_tokens"], r["base_accuracy"]) for r in rows if None not in (r["base_mean_tokens"], r["base_accuracy"])}  # fmt: skip
        if bases:
            ax.scatter([t for t, _ in bases], [a for _, a in bases], marker="x", c="black", label="base", zorder=4)
        if any(m.method == ORACLE for m in summaries):
            ax.plot([], [], "*", color="tab:green", ms=10, label="oracle (limit)")
        if not summaries:
            ax.text(0.5, 0.5, "no finished runs with per-question rows", ha="center", transform=ax.transAxes)
        ax.set_xlabel("mean tokens per answer (fewer is better); bars: 95% interval")
        ax.set_ylabel("accuracy")
        ax.set_title(title)
        if hidden:
            names = ", ".join(m.method for m in hidden)
            fig.text(0.01, 0.01, f"not shown, accuracy below {min_accuracy:g}: {names}", fontsize=7, wrap=True)
            fig.subplots_adjust(bottom=0.16)
        ax.grid(alpha=0.3)
        if front or bases:
            ax.legend(loc="lower right", fontsize=8)
        output.parent.mkdir(parents=True, exist_ok=True)
        tmp = output.with_name(output.name + ".tmp")
        fig.savefig(tmp, format="png")
        os.replace(tmp, output)
    finally:
        plt.close(fig)
    return output


def attach_plot(plot: Path, run_ids: list[str]) -> list[str]:
    """The plot as ``comparison/pareto.png`` of each of ``run_ids`` (the reference method's runs: where a reader of
    the comparison looks), not as a run of its own; returns the ids it was attached to."""
    import mlflow

    client = mlflow.MlflowClient()
    for run_id in run_ids:
        client.log_artifact(run_id, str(plot), artifact_path=PLOT_ARTIFACT)
    return list(run_ids)


def read_outcomes(args) -> tuple[str, list[dict]]:
    """The experiment's name and run records from ``--outcomes``; UsageError where the options ask for a store too."""
    if args.mlflow_dir is not None or args.export is not None:
        raise UsageError("--outcomes reads a file, not a store: leave out --mlflow-dir and --export")
    data = outcomes.read(args.outcomes)
    if args.experiment not in (None, data["experiment"]):
        raise UsageError(f"--experiment {args.experiment}: {args.outcomes} holds experiment {data['experiment']}")
    return data["experiment"], data["records"]


def export_outcomes(exp, path: Path, summaries: str | None, merge: str | None = None) -> int:
    """Write ``exp``'s runs, their per-question rows and their base's, and the run_comparison.py records of
    ``summaries`` (default: ``outputs/comparison/TASK`` for ``comparison-TASK``) to ``path`` (:mod:`gan_cot_lab.outcomes`);
    with ``merge`` (an outcomes file of the same experiment), its runs and records that the store lacks too."""
    if summaries is None and exp.name.startswith("comparison-"):
        summaries = REPO_ROOT / "outputs" / "comparison" / exp.name[len("comparison-") :]
    records = store_records(exp.experiment_id, base_rows=True)
    metas = outcomes.summary_records(summaries, exp.name)
    kept = ""
    if merge is not None:
        data = outcomes.read(merge)
        if data["experiment"] != exp.name:
            raise UsageError(f"--merge {merge} holds experiment {data['experiment']}, not {exp.name}")
        records, metas, n = outcomes.union(records, metas, data)
        kept = f", {n} runs kept from {merge}"
    size = outcomes.write(path, outcomes.export(exp.name, records, metas))
    with_rows = sum(r["rows"] is not None for r in records)
    with_base = sum(r["base_rows"] is not None for r in records)
    print(f"{path}: {len(records)} finished runs of {exp.name} ({with_rows} with per-question rows, {with_base} with "
          f"their base's), {len(metas)} run_comparison.py records from {summaries or '-'}{kept}; {size:,} bytes")  # fmt: skip
    return 0


def main(argv=None) -> int:
    args = parse_args(argv)
    output = Path(args.output)
    if output.suffix.lower() != ".png":
        fail(f"--output {output} must end in .png")
    if args.export is not None and not args.export.endswith(".json.gz"):
        fail(f"--export {args.export} must end in .json.gz")
    if args.merge is not None and args.export is None:
        fail(f"--merge {args.merge} adds to an --export: give --export FILE.json.gz too")
    try:
        if args.outcomes is not None:
            name, records = read_outcomes(args)
        else:
            exp = open_experiment(args.experiment or DEFAULT_EXPERIMENT, args.mlflow_dir)
            name = exp.name
            if args.export is not None:
                return export_outcomes(exp, Path(args.export), args.summaries, args.merge)
            records = store_records(exp.experiment_id)
    except UsageError as e:
        fail(str(e))
    rows = collect_rows(records)
    summaries = summarize([run_figures(r) for r in rows], n_boot=args.boot)
    names = {m.method for m in summaries}
    if args.reference is not None and args.reference not in names:
        listed = ", ".join(sorted(names)) or "(none)"
        fail(f"--reference {args.reference}: no such method in {name}; methods: {listed}")
    sets = by_question_set(summaries)
    refs = {q: reference_of(group, args.reference) for q, group in sets.items() if q.n is not None}
    ref = next(iter(refs.values()), None)  # the largest question set's: the plot's
    diffs = differences(summaries)
    warnings = question_warnings(summaries)
    print(f"experiment {name}: {len(rows)} finished runs, {len(names)} methods, {len(sets)} question sets")
    for w in warnings:
        print(f"WARNING: {w}")
    for q, group in sets.items():
        print(f"questions: {q.label}")
        print(method_table(group, refs.get(q)))
    print(f"differences beyond the 95% intervals ({len(diffs)}; any other pair of one question set: no difference):")
    for d in diffs:
        where = f" ({d['questions']})" if len(refs) > 1 else ""
        print(f"  {d['figure']}: {d['better']} better than {d['worse']}{where}")
    if args.per_run:
        print(run_table(rows))
    main_set = next((q for q in sets if q.n is not None), None)
    try:
        plot = plot_pareto(sets.get(main_set, []), rows, output, f"{name}: accuracy vs tokens"
                           + (f" ({main_set.label})" if main_set else ""), min_accuracy=args.min_accuracy)  # fmt: skip
    except OSError as e:
        fail(f"cannot write the plot to {output} ({e.strerror}); choose another path with --output")
    plot_runs, where = [], ""
    if ref is not None and args.outcomes is None:  # an outcomes file has no store to attach it to
        plot_runs = attach_plot(plot, [r.run_id for r in ref.runs])
        where = f"attached to the {len(plot_runs)} runs of {ref.method} as {PLOT_ARTIFACT}/{plot.name}"
    print(f"plot: {plot}" + (f" ({where})" if where else ""), flush=True)
    if args.json:
        methods = [
            {"method": m.method, "seeds": m.seeds, "runs": [r.run_id for r in m.runs], "n": m.n_questions,
             "questions": m.questions.label, "rows": m.has_rows, **{f: m.figures[f].as_dict() for f in FIGURES},
             "tokens_vs_minimal": m.tokens_vs_minimal, "pareto": m.pareto}
            for m in summaries
        ]  # fmt: skip
        keep = ("run_id", "run_name", "method", "seed", "task", "accuracy", "mean_tokens", "tokens_vs_minimal",
                "base_accuracy", "base_mean_tokens", "n_params", "compression", "acu", "aes")  # fmt: skip
        print_json({"experiment": name, "reference": ref.method if ref else None, "warnings": warnings,
                    "methods": methods, "differences": diffs, "runs": [{k: r[k] for k in keep} for r in rows],
                    "plot": str(plot), "plot_runs": plot_runs})  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())

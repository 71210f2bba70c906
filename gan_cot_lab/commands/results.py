"""Regenerate the measured parts of docs/results.md from what the runs left: ``make results``.

    python scripts/results.py                       # rewrite the generated blocks of docs/results.md
    python scripts/results.py --check               # exit 1 if docs/results.md is not what the runs say
    python scripts/results.py --mlflow-dir /nowhere --outputs /nowhere --check   # from docs/data/ alone

docs/results.md is a page of prose with generated blocks between ``<!-- begin:NAME -->`` and ``<!-- end:NAME -->``;
this script rewrites every block it has data for and leaves the prose, and a block it has no data for, alone:

- ``base:TASK``: the shipped verbose base's card (``models/<base>/base_card.json``);
- ``oracle:TASK``: ``scripts/oracle.py``'s table (``outputs/oracle/TASK/oracle.json``, or the comparison's
  ``outputs/comparison/TASK/seedN/oracle/oracle.json``);
- ``comparison:TASK``: the methods of the MLflow experiment ``comparison-TASK`` with their 95% intervals and the
  differences the intervals allow (:mod:`gan_cot_lab.comparison`), with the command, seeds, sizes, wall time and load
  average that ``scripts/run_comparison.py`` recorded (``outputs/comparison/TASK/summary.json``);

Where the store has no finished runs of a comparison's experiment (a clean clone has no ``mlruns/`` and no
``outputs/``), its block comes from the committed outcomes file ``docs/data/EXPERIMENT.json.gz``
(``compare_runs.py --export``: every run's figures and per-question rows, and the run_comparison.py records), by the
same code: ``make results`` and ``--check`` work from a clean clone. Where the store has some, the file's runs that
it lacks are added to them (new rows made in a fresh clone sit beside the committed ones; ``compare_runs.py
--export FILE --merge FILE`` then writes both). Each block rewritten is named with the file or
store it came from (``comparison:ledger-hard: from docs/data/comparison-ledger-hard.json.gz``). ``--data DIR`` reads
the outcomes files elsewhere.

The commands that produce those inputs are in docs/results.md itself ("How to regenerate").
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

from gan_cot.shipped import REPO_ROOT
from gan_cot.usage import UsageError, fail
from gan_cot_lab import outcomes

DOC = REPO_ROOT / "docs" / "results.md"
DATA = REPO_ROOT / "docs" / "data"  # the outcomes files of the comparisons (compare_runs.py --export)
TASKS = {"ledger-hard": "ledger-hard-verbose-base", "ledger": "ledger-verbose-base"}
# The row a comparison's marks compare with, where it is not gan-cot's: the one made as configs/TASK.yaml now stands
# (configs/ledger-hard.yaml sets discriminator.label_lean_next; its earlier rows, without it, keep their names).
REFERENCE = {"ledger-hard": "gan-cot-next"}
BLOCK_RE = re.compile(r"<!-- begin:(?P<name>[\w:-]+) -->\n.*?<!-- end:(?P=name) -->", re.S)


def _f(value, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def base_block(task: str) -> str | None:
    card_path = REPO_ROOT / "models" / TASKS[task] / "base_card.json"
    if not card_path.exists():
        return None
    card = json.loads(card_path.read_text())
    t = card["test"]
    return (
        f"`models/{TASKS[task]}`: {card['params']:,} parameters, made with `{card['command']}` (seed {card['seed']}, "
        f"{card['train']['steps']} steps, {card['train_seconds']:.0f} s). Greedy on {t['n']} test questions: accuracy "
        f"**{t['accuracy']:.3f}**, {t['mean_tokens']:.1f} tokens per answer against {t['mean_minimal_tokens']:.1f} for "
        f"the one-step-per-event chains (`tokens_vs_minimal` {t['tokens_vs_minimal']:.2f})."
    )


def oracle_block(task: str, root: Path) -> tuple[str, str] | None:
    """``scripts/oracle.py``'s table and the files it came from: its own output folder, or the ones
    ``run_comparison.py --methods oracle`` gave it, one a seed (each seed its own test questions). With several seeds
    a level's accuracies are over all their questions at that level, the rows' figures the means of the seeds, and
    the choice is given per seed where the seeds differ."""
    found = [
        root / "oracle" / task / "oracle.json",
        *sorted((root / "comparison" / task).glob("seed*/oracle/oracle.json")),
    ]
    runs: dict[int, tuple[dict, Path]] = {}
    for path in found:
        if path.exists():
            o = json.loads(path.read_text())
            runs.setdefault(int(o["seed"]), (o, path))  # a seed found twice keeps its first file
    if not runs:
        return None
    seeds = sorted(runs)
    files = [runs[s][0] for s in seeds]
    first = files[0]
    grans = [k for k in next(iter(first["levels"].values())) if k not in ("n", "base") and not k.endswith("_tokens")]

    def mean(values) -> float:
        values = list(values)
        return sum(values) / len(values)

    def choice(d: str) -> str:
        picks = [o["choice"].get(d, "-") for o in files]
        return picks[0] if len(set(picks)) == 1 else " / ".join(picks)

    if len(files) == 1:
        head = (
            f"Seed {first['seed']}, {first['steps']} SFT steps per granularity, choice on {first['val_n']} validation "
            f"questions, figures on {first['eval_n']} test questions (`python scripts/oracle.py --config "
            f"configs/{task}.yaml --json`, {first['wall_seconds']:.0f} s). Accuracy on test by difficulty (events on "
            "the person asked about):"
        )
    else:
        head = (
            f"Seeds {', '.join(map(str, seeds))}, {first['steps']} SFT steps per granularity, choice on "
            f"{first['val_n']} validation questions, figures on {first['eval_n']} test questions a seed (`python "
            f"scripts/oracle.py --config configs/{task}.yaml --seed S --json`, "
            f"{' / '.join(str(round(o['wall_seconds'])) for o in files)} s). Accuracy on test by difficulty (events on the "
            "person asked about), over the seeds' questions together; the choice per seed where they differ:"
        )
    lines = [
        head,
        "",
        "| level | n | base | " + " | ".join(grans) + " | oracle's choice |",
        "|---" * (len(grans) + 4) + "|",
    ]
    for d in first["levels"]:
        at = [o["levels"][d] for o in files if d in o["levels"]]  # each seed's questions at this level
        n = sum(r["n"] for r in at)

        def pooled(key: str, at=at, n=n) -> str:
            return f"{sum(r[key] * r['n'] for r in at) / n:.3f}"

        cells = [pooled(g) for g in grans]
        lines.append(f"| {d} | {n} | {pooled('base')} | " + " | ".join(cells) + f" | {choice(d)} |")
    if len(files) == 1:
        lines += ["", "| row | accuracy | tokens |", "|---|---|---|"]
        for name, f in first["figures"].items():
            lines.append(f"| {name} | {f['accuracy']:.3f} | {f['tokens']:.1f} |")
    else:
        lines += ["", "| row | accuracy | tokens | accuracy per seed |", "|---|---|---|---|"]
        for name in first["figures"]:
            fs = [o["figures"][name] for o in files]
            per_seed = " / ".join(f"{f['accuracy']:.3f}" for f in fs)
            lines.append(
                f"| {name} | {mean(f['accuracy'] for f in fs):.3f} | {mean(f['tokens'] for f in fs):.1f} | {per_seed} |"
            )
    return "\n".join(lines), ", ".join(_shown(runs[s][1]) for s in seeds)


def _compare_runs():
    from gan_cot_lab.commands import compare_runs

    return compare_runs


def comparison_source(experiment: str, store: str | None, meta_dir: Path, data_dir: Path):
    """``(runs, metas, source)``: the run records of ``experiment`` (``compare_runs.store_records``), the command,
    seeds, wall time and load that each ``run_comparison.py`` call recorded (its ``summary.json`` in ``meta_dir``, or
    one per folder where seeds ran apart) and where they came from: the MLflow store ``store`` where it has finished
    runs of the experiment, with the runs and records of its outcomes file ``data_dir/EXPERIMENT.json.gz``
    (``compare_runs.py --export``) that the store lacks (:func:`gan_cot_lab.outcomes.union`: a comparison continued
    in a fresh checkout), else that file alone; None when neither has them. A bad outcomes file is a UsageError."""
    from gan_cot import tracking

    compare_runs = _compare_runs()
    try:
        exp = compare_runs.open_experiment(experiment, store)
        records = compare_runs.store_records(exp.experiment_id)
    except UsageError:  # no store, or no such experiment in it
        records = []
    path = data_dir / f"{experiment}.json.gz"
    if records:
        store_name = f"the MLflow store {tracking.tracking_uri(store)}"
        metas = outcomes.summary_records(meta_dir, experiment)
        if not path.exists():
            return records, metas, store_name
        records, metas, kept = outcomes.union(records, metas, outcomes.read(path))
        return records, metas, store_name + (f" and {_shown(path)} ({kept} runs the store lacks)" if kept else "")
    if not path.exists():
        return None
    data = outcomes.read(path)
    return data["records"], data["summaries"], _shown(path)


def _shown(path: Path) -> str:
    """``path`` relative to the checkout where it is inside it."""
    try:
        return str(path.resolve().relative_to(REPO_ROOT))
    except ValueError:
        return str(path)


def comparison_block(records: list[dict], metas: list[dict], reference: str | None = None) -> str | None:
    """The compare_runs table of an experiment's run records (from a store or an outcomes file alike), after the
    run_comparison.py records ``metas``, marked against ``reference`` (default: gan-cot's row); None when no run has
    final figures."""
    from gan_cot_lab.comparison import differences, question_warnings, summarize

    compare_runs = _compare_runs()
    rows = compare_runs.collect_rows(records)
    summaries = summarize([compare_runs.run_figures(r) for r in rows])
    if not summaries:
        return None
    lines = []
    for meta in metas:
        load = meta.get("load_average") or [None, None]
        lines += [
            f"- `{meta.get('command', 'scripts/run_comparison.py')}`: seeds {meta.get('seeds')}, "
            f"{_f(meta.get('wall_seconds'), '.0f')} s on the 2-core CPU"
            + (
                f" (its runs {meta['run_seconds']:.0f} s in all, those kept by `--resume` included)"
                if meta.get("run_seconds")
                else ""
            )
            + f", load average {_f(load[0], '.1f')} at the start and {_f(load[1], '.1f')} at the end."
        ]
    for w in question_warnings(summaries):
        lines += ["", f"> **Warning**: {w}"]
    sets = compare_runs.by_question_set(summaries)
    for q, group in sets.items():
        ref = compare_runs.reference_of(group, reference) if q.n is not None else None
        if len(sets) > 1:
            lines += ["", f"Questions: {q.label}.", ""]
        elif lines:
            lines += [""]
        lines += [
            f"| method | seeds | n | accuracy [95% CI] | tokens [95% CI] | AES [95% CI] | vs {ref.method if ref else '-'} "
            "(acc, tokens, AES) | front |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for m in group:
            f = m.figures
            marks = compare_runs._marks(m, ref)
            cells = [compare_runs._cell(f[x], s) for x, s in (("accuracy", ".3f"), ("tokens", ".1f"), ("aes", ".3f"))]
            seeds = ",".join("-" if s is None else str(s) for s in m.seeds)
            n = "-" if m.n_questions is None else m.n_questions
            lines.append(
                f"| {m.method} | {seeds} | {n} | " + " | ".join(cells) + f" | {marks} | {'*' if m.pareto else ''} |"
            )
    diffs = differences(summaries)
    pairs: dict[tuple[str, str], list[str]] = {}
    for d in diffs:  # one line per pair of methods: which figure each is better on
        pair = tuple(sorted((d["better"], d["worse"])))
        pairs.setdefault(pair, []).append(f"{d['figure']}: {d['better']}")
    lines += ["", f"Pairs of methods that differ beyond the 95% intervals ({len(pairs)} pairs, {len(diffs)} figures; "
              "every other pair and figure: no difference), with the better method on each figure:", ""]  # fmt: skip
    lines += [f"- {a} vs {b}: " + ", ".join(figs) for (a, b), figs in pairs.items()] or ["- none"]
    return "\n".join(lines)


def render(text: str, blocks: dict[str, str | None]) -> tuple[str, list[str]]:
    """``text`` with every block that has new content rewritten; the names rewritten."""
    done = []

    def swap(m: re.Match) -> str:
        body = blocks.get(m["name"])
        if body is None:
            return m.group(0)
        done.append(m["name"])
        return f"<!-- begin:{m['name']} -->\n{body}\n<!-- end:{m['name']} -->"

    return BLOCK_RE.sub(swap, text), done


def main(argv=None) -> int:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--doc", default=str(DOC), help="the page to rewrite")
    p.add_argument("--outputs", default=str(REPO_ROOT / "outputs"), help="where the runs wrote their outputs")
    p.add_argument("--mlflow-dir", default=None, help="local MLflow store folder (default mlruns/)")
    p.add_argument("--data", default=str(DATA), help="the comparisons' outcomes files, read where the store lacks "
                   "an experiment (default docs/data)")  # fmt: skip
    p.add_argument("--check", action="store_true", help="only say whether the page is up to date")
    args = p.parse_args(argv)
    doc, root = Path(args.doc), Path(args.outputs)
    if not doc.exists():
        fail(f"--doc {doc}: no such file")
    blocks: dict[str, str | None] = {}
    sources: dict[str, str] = {}

    def comparison(name: str, experiment: str, store: str | None, meta_dir: Path) -> None:
        try:
            found = comparison_source(experiment, store, meta_dir, Path(args.data))
        except UsageError as e:
            fail(str(e))
        blocks[name] = comparison_block(*found[:2], REFERENCE.get(name.split(":", 1)[1])) if found else None
        if found:
            sources[name] = found[2]

    for task in TASKS:
        blocks[f"base:{task}"] = base_block(task)
        sources[f"base:{task}"] = _shown(REPO_ROOT / "models" / TASKS[task] / "base_card.json")
        blocks[f"oracle:{task}"], sources[f"oracle:{task}"] = oracle_block(task, root) or (None, "")
        comparison(f"comparison:{task}", f"comparison-{task}", args.mlflow_dir, root / "comparison" / task)
    text = doc.read_text()
    new, done = render(text, blocks)
    for name in done:
        print(f"{name}: from {sources[name]}")
    if args.check:
        print("up to date" if new == text else f"out of date: {', '.join(done)}")
        return 0 if new == text else 1
    tmp = doc.with_name(doc.name + ".tmp")
    tmp.write_text(new)
    tmp.replace(doc)  # never a half-written page
    print(f"{doc}: rewrote {', '.join(done) or 'nothing (no data for any block)'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The per-question outcomes of a comparison in one small file, so that its tables and plot can be made again
without the MLflow store: ``compare_runs.py --export FILE`` writes it, ``compare_runs.py --outcomes FILE`` and
``results.py`` read it (``docs/data/EXPERIMENT.json.gz``).

The file is gzip'd JSON (sorted keys, no spaces, gzip time 0: the same store exports to the same bytes)::

    {"format": "gan-cot-outcomes", "version": 1, "experiment": NAME,
     "questions": [{"n": N, "ids": [...], "difficulty": [...]}, ...],   # each question set once
     "runs": [{"run_id", "run_name", "method", "seed", "task", "start_time", "end_time",
               "figures": {"final_accuracy": ..., "base_mean_tokens": ..., ...},   # those the run has
               "rows": ROWS or null, "base_rows": ROWS or null}, ...],          # newest first
     "summaries": [the run_comparison.py summary.json records of the experiment, less their "compare"]}

where ROWS is ``{"questions": INDEX, "correct": "0110..." (or a list where not every value is a bool),
"tokens": [...], "alpha": [...] (only where some row has one; null where a row has none)}``: one run's
per-question rows (:func:`gan_cot.tracking.log_eval_rows`), given back exactly by :func:`decode_rows`.
"""

from __future__ import annotations

import contextlib
import gzip
import json
import os
import zlib
from pathlib import Path

from gan_cot.usage import UsageError, one_line

FORMAT = "gan-cot-outcomes"
VERSION = 1
QUESTION_KEYS = ("id", "difficulty")  # the same for every run scored on a question set: stored once per set
QUESTION_FIELDS = {"id": "ids", "difficulty": "difficulty"}
OPTIONAL = ("alpha",)  # a row without it has none (log_eval_rows drops a None alpha): null in the column


def encode_rows(rows: list[dict], questions: list[dict]) -> dict:
    """One run's rows, its question set appended to ``questions`` when new; see the module docstring."""
    present = {k for r in rows for k in r}
    qset = {"n": len(rows)} | {QUESTION_FIELDS[k]: [r.get(k) for r in rows] for k in QUESTION_KEYS if k in present}
    if qset not in questions:
        questions.append(qset)
    out: dict = {"questions": questions.index(qset)}
    for key in sorted(present - set(QUESTION_KEYS)):
        column = [r.get(key) for r in rows]
        if key == "correct" and all(isinstance(v, bool) for v in column):
            out[key] = "".join("1" if v else "0" for v in column)
        else:
            out[key] = column
    return out


def decode_rows(encoded: dict, questions: list[dict]) -> list[dict]:
    """The rows :func:`encode_rows` encoded (ValueError where a column does not have one value per question)."""
    qset = questions[encoded["questions"]]
    n = qset["n"]
    columns = {k: qset[QUESTION_FIELDS[k]] for k in QUESTION_KEYS if QUESTION_FIELDS[k] in qset}
    for key, column in encoded.items():
        if key != "questions":
            columns[key] = [c == "1" for c in column] if isinstance(column, str) else column
    bad = [k for k, column in columns.items() if len(column) != n]
    if bad:
        raise ValueError(f"the {', '.join(bad)} of a run do not have its {n} questions")
    rows = [{k: column[i] for k, column in columns.items()} for i in range(n)]
    for row in rows:
        for key in OPTIONAL:
            if key in row and row[key] is None:
                del row[key]
    return rows


def export(experiment: str, records: list[dict], summaries: list[dict]) -> dict:
    """The file's content: ``records`` as ``compare_runs.store_records`` gives them (rows as lists of dicts)."""
    questions: list[dict] = []
    runs = []
    for r in sorted(records, key=record_order):
        run = {k: v for k, v in r.items() if k not in ("rows", "base_rows")}
        for key in ("rows", "base_rows"):
            run[key] = encode_rows(r[key], questions) if r.get(key) else None
        runs.append(run)
    return {"format": FORMAT, "version": VERSION, "experiment": experiment, "questions": questions, "runs": runs,
            "summaries": summaries}  # fmt: skip


def record_order(record: dict) -> tuple:
    """Newest first (what compare_runs keeps of a seed that ran twice), the run id breaking ties."""
    return -(record.get("start_time") or 0), record["run_id"]


def records(data: dict) -> list[dict]:
    """The run records of a file's content, rows decoded: what ``compare_runs.store_records`` gives from a store."""
    out = []
    for run in data["runs"]:
        record = dict(run)
        if not isinstance(record["run_id"], str) or not isinstance(record["figures"], dict):
            raise TypeError(f"run {record['run_id']!r} has no id or no figures")
        for key in ("rows", "base_rows"):
            record[key] = decode_rows(run[key], data["questions"]) if run.get(key) else None
        out.append(record)
    return out


def to_bytes(data: dict) -> bytes:
    text = json.dumps(data, sort_keys=True, separators=(",", ":"), allow_nan=False)
    return gzip.compress(text.encode(), compresslevel=9, mtime=0)


def write(path: str | Path, data: dict) -> int:
    """``data`` as ``path`` (gzip'd JSON), written to a temporary name and then renamed, so a reader never sees half
    a file; returns its size in bytes. UsageError when it cannot be written."""
    path = Path(path)
    blob = to_bytes(data)
    tmp = path.with_name(path.name + ".tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp.write_bytes(blob)
        os.replace(tmp, path)
    except OSError as e:
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)
        raise UsageError(f"cannot write {path} ({e.strerror}); choose another path") from e
    return len(blob)


def read(path: str | Path) -> dict:
    """A file :func:`write` wrote, its runs' rows decoded under ``"records"``; UsageError naming the file when it is
    missing, not gzip'd JSON, or not an outcomes file."""
    path = Path(path)
    if not path.is_file():
        raise UsageError(f"{path}: no such file; export one with scripts/compare_runs.py --export")
    try:
        blob = path.read_bytes()
    except OSError as e:
        raise UsageError(f"{path} cannot be read ({e.strerror})") from e
    try:
        data = json.loads(gzip.decompress(blob))
    except (OSError, EOFError, zlib.error, UnicodeDecodeError, ValueError) as e:  # gzip.BadGzipFile is an OSError
        raise UsageError(f"{path} is truncated or not gzip'd JSON ({one_line(e)}); export it again") from e
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise UsageError(f'{path} is not a gan-cot outcomes file (no "format": "{FORMAT}")')
    if data.get("version") != VERSION:
        raise UsageError(f"{path} is version {data.get('version')} of the outcomes format; this code reads {VERSION}")
    try:
        data["records"] = records(data)
        if not isinstance(data["experiment"], str) or not isinstance(data.setdefault("summaries", []), list):
            raise TypeError("its experiment is not a name or its summaries not a list")
    except (KeyError, TypeError, IndexError, ValueError, AttributeError) as e:
        raise UsageError(f"{path} is corrupt ({type(e).__name__}: {e}); export it again") from e
    return data


def union(records: list[dict], summaries: list[dict], data: dict) -> tuple[list[dict], list[dict], int]:
    """A store's run ``records`` and run_comparison.py ``summaries`` with what an outcomes file's content ``data``
    (:func:`read`) holds that they lack: a comparison continued in another checkout, whose store has only the newer
    runs. A run is the store's where both have its id; a file's record is left out where the store's records hold
    it, or every one of its invocations. Returns the records, the summaries (the file's first: they are older) and
    how many runs came from the file."""
    ids = {r["run_id"] for r in records}
    extra = [r for r in data["records"] if r["run_id"] not in ids]

    def key(x) -> str:
        return json.dumps(x, sort_keys=True)

    held = {key(s) for s in summaries}
    invoked = {key(i) for s in summaries for i in s.get("invocations") or []}
    older = [
        s for s in data["summaries"]
        if key(s) not in held and not (s.get("invocations") and all(key(i) in invoked for i in s["invocations"]))
    ]  # fmt: skip
    return records + extra, older + summaries, len(extra)


def summary_records(folder: str | Path | None, experiment: str) -> list[dict]:
    """The ``summary.json`` records ``scripts/run_comparison.py`` wrote for ``experiment`` in ``folder`` (its own, and
    one per subfolder where seeds ran apart), each less its ``compare`` (compare_runs.py's JSON, made again from the
    runs)."""
    if folder is None:
        return []
    folder = Path(folder)
    out = []
    for p in [folder / "summary.json", *sorted(folder.glob("*/summary.json"))]:
        if p.is_file():
            try:
                record = json.loads(p.read_text())
            except (OSError, ValueError) as e:
                raise UsageError(f"{p} cannot be read as JSON ({one_line(e)})") from e
            if isinstance(record, dict) and record.get("experiment", experiment) == experiment:
                out.append({k: v for k, v in record.items() if k != "compare"})
    return out

"""MLflow tracking: the project's SQLite store inside ``mlruns/`` unless ``MLFLOW_TRACKING_URI`` says otherwise.

MLflow 3 no longer accepts a bare ``./mlruns`` file store by default, so the local store is
``sqlite:///<repo>/mlruns/mlflow.db`` with artifacts under ``mlruns/artifacts/``. Open it with::

    mlflow ui --backend-store-uri sqlite:///mlruns/mlflow.db --default-artifact-root mlruns/artifacts

then the link :func:`runs_url` gives (a training run prints it at its end).

What the UI shows: every experiment is made (or marked) a model-training experiment (:data:`EXPERIMENT_KIND`) and
carries a view of its runs list with the summary figures as columns (:func:`summary_view`), which that link opens;
runs are named by method and seed (:func:`run_name`); each run records the task's splits as its dataset inputs
(:func:`log_task_inputs`) and, where the run keeps them, the per-question rows of its final evaluation
(:func:`log_eval_rows`, read back by :func:`load_eval_rows`), a table of them beside the base's
(:func:`log_eval_table`), its point against the base (:func:`log_pareto_point`) and a summary as its description
(:func:`summary_note`). A store that moved keeps its artifacts (:func:`relocate_artifacts`).

A run whose process died (killed, out of memory, the machine rebooted) cannot close itself: every command that opens
the store marks such runs KILLED (:func:`mark_dead_runs`, by the process a training run records in
:data:`PROCESS_TAG`), so none stays RUNNING. A resumed run replaces the metrics its stopped attempt logged after the
last checkpoint (:func:`drop_metrics_from`), so every round is written once.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import socket
import warnings
from pathlib import Path

from gan_cot.usage import check_writable_dir

DEFAULT_STORE = Path("mlruns")  # in the working directory, as MLflow's own default
UI = "http://127.0.0.1:5000"  # where ``mlflow ui`` serves by default
KIND_TAG = "mlflow.experimentKind"
EXPERIMENT_KIND = "custom_model_development"  # MLflow 3's "model training" kind (the other is genai_development)
VIEW_KEY = "summary"  # the shared view the runs list opens with (:func:`runs_url`)
VIEW_TAG = "mlflow.sharedViewState." + VIEW_KEY
SUMMARY_COLUMNS = (  # the runs list's columns in that view: what a run is compared on, then its method and seed
    "metrics.`final_accuracy`", "metrics.`final_mean_tokens`", "metrics.`base_accuracy`", "metrics.`base_mean_tokens`",
    "metrics.`final_tokens_vs_minimal`", "tags.`method`", "tags.`seed`", "tags.`task`",
)  # fmt: skip
ROWS_ARTIFACT = "eval/test_rows.json"
BASE_ROWS_ARTIFACT = "eval/base_rows.json"  # the base model's rows on the same questions
TABLE_ARTIFACT = "eval/test_table.json"  # both, as a table the UI shows
PARETO_ARTIFACT = "eval/pareto_point"  # .json and .png: the run against its base
ROW_KEYS = ("id", "difficulty", "correct", "tokens", "alpha")  # alpha: the gate's choice, where gated
PROCESS_TAG = "gan_cot.process"  # host:pid:start of the process that writes a training run
ENDED_TAG = "gan_cot.ended"

log = logging.getLogger(__name__)


def tracking_uri(store_dir: str | Path | None = None) -> str:
    """The tracking URI: ``MLFLOW_TRACKING_URI`` if set, else the SQLite store in ``store_dir``."""
    if os.environ.get("MLFLOW_TRACKING_URI") and store_dir is None:
        return os.environ["MLFLOW_TRACKING_URI"]
    store = Path(store_dir) if store_dir is not None else DEFAULT_STORE
    return f"sqlite:///{store.resolve() / 'mlflow.db'}"


def _artifact_root(uri: str) -> str | None:
    if uri.startswith("sqlite:///"):
        return (Path(uri[len("sqlite:///") :]).parent / "artifacts").as_uri()
    return None


def check_store(store_dir: str | Path | None = None, keep: bool = True) -> str:
    """The tracking URI, after checking that a local SQLite store's folder can be written (UsageError if not).

    With ``keep=False`` a folder the check created is removed again (a pre-flight check that leaves nothing).
    """
    uri = tracking_uri(store_dir)
    if uri.startswith("sqlite:///"):
        db = Path(uri[len("sqlite:///") :])
        check_writable_dir(
            db.parent, keep=keep, what="MLflow store",
            hint="choose another with mlflow_dir= (--mlflow-dir) or set MLFLOW_TRACKING_URI",
        )  # fmt: skip
    return uri


def setup(experiment: str, store_dir: str | Path | None = None) -> str:
    """Point MLflow at the store and select (creating if needed) ``experiment``; returns its id."""
    import mlflow

    uri = check_store(store_dir)
    mlflow.set_tracking_uri(uri)
    with _store_lock(uri):  # runs started together on a new store would race on its tables and the experiment
        relocate_artifacts(uri)
        found = mlflow.get_experiment_by_name(experiment)
        tags = {KIND_TAG: EXPERIMENT_KIND, VIEW_TAG: summary_view()}
        if found is not None:
            exp_id = found.experiment_id
            for key, value in tags.items():  # an experiment made before these were set; a user's own kind stays
                if key not in found.tags or (key == VIEW_TAG and found.tags[key] != value):
                    mlflow.MlflowClient().set_experiment_tag(exp_id, key, value)
        else:
            exp_id = mlflow.create_experiment(experiment, artifact_location=_artifact_root(uri), tags=tags)
    mlflow.set_experiment(experiment_id=exp_id)
    try:
        mark_dead_runs()
    except Exception as e:  # noqa: BLE001 - tidying the store must never stop the command that opened it
        log.warning("could not check the store for runs whose process died: %s", e)
    return exp_id


def relocate_artifacts(uri: str) -> int:
    """Point a moved local store at its own ``artifacts/`` folder; returns the number of records changed.

    MLflow records every artifact location as an absolute path (a relative one is resolved against the working
    directory), so a checkout that moved would lose its runs' artifacts. An experiment whose location is an
    ``.../artifacts`` folder that no longer exists, while this store's ``artifacts/`` does, is rewritten to it, with
    its runs (and logged models). A store that did not move, or a server's, is left alone."""
    if not uri.startswith("sqlite:///"):
        return 0
    import sqlite3

    db = Path(uri[len("sqlite:///") :])
    new = db.parent / "artifacts"
    if not db.exists() or not new.is_dir():
        return 0
    try:
        return _relocate(db, new)
    except sqlite3.Error:  # a store this process cannot write: read it as it is
        return 0


def _relocate(db: Path, new: Path) -> int:
    import sqlite3
    from urllib.parse import unquote, urlparse

    changed = 0
    with contextlib.closing(sqlite3.connect(db, timeout=60)) as con, con:
        tables = {name for (name,) in con.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        if "experiments" not in tables:
            return 0
        olds = set()
        for (location,) in con.execute("SELECT DISTINCT artifact_location FROM experiments"):
            path = Path(unquote(urlparse(location).path)) if location and location.startswith("file://") else None
            if path is not None and path.name == "artifacts" and path != new and not path.exists():
                olds.add(location)
        for old in olds:
            target = new.as_uri()
            changed += con.execute(
                "UPDATE experiments SET artifact_location = ? WHERE artifact_location = ?", (target, old)
            ).rowcount
            for table, column in (("runs", "artifact_uri"), ("logged_models", "artifact_location")):
                if table in tables:
                    changed += con.execute(
                        f"UPDATE {table} SET {column} = ? || substr({column}, ?) WHERE substr({column}, 1, ?) = ?",
                        (target, len(old) + 1, len(old) + 1, old + "/"),
                    ).rowcount
    return changed


def summary_view() -> str:
    """The runs list's view (an MLflow shared view state, kept as an experiment tag): the summary figures as columns,
    every run shown in the charts."""
    return json.dumps({"selectedColumns": list(SUMMARY_COLUMNS), "runsHiddenMode": "SHOW_ALL"})


def runs_url(experiment_id: str, ui: str = UI) -> str:
    """The link that opens an experiment's runs in the model-training view with the summary columns (``mlflow ui``
    started as the module docstring says; MLflow 3's UI otherwise opens on a GenAI traces page in a new browser)."""
    return f"{ui}/#/experiments/{experiment_id}/runs?workflowType=machine_learning&viewStateShareKey={VIEW_KEY}"


def _start_ticks(pid: int) -> str:
    """When process ``pid`` started (clock ticks since boot, Linux ``/proc``), or "" where that cannot be read."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return ""


def process_id(pid: int | None = None) -> str:
    """``host:pid:start`` of a process: what :data:`PROCESS_TAG` records (the start tells a reused pid apart)."""
    pid = os.getpid() if pid is None else pid
    return f"{socket.gethostname()}:{pid}:{_start_ticks(pid)}"


def process_alive(process: str) -> bool | None:
    """Whether the process a :func:`process_id` names still runs; None when this machine cannot tell (another
    host, a malformed tag)."""
    try:
        host, pid, start = process.rsplit(":", 2)
        pid = int(pid)
    except ValueError:
        return None
    if host != socket.gethostname() or pid <= 0:
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process: it exists
        pass
    now = _start_ticks(pid)
    return not (start and now and now != start)  # a new process under the old pid: the run's process is gone


def mark_dead_runs(client=None) -> list[str]:
    """Mark KILLED every RUNNING training run of the current store whose process (:data:`PROCESS_TAG`) is gone from
    this machine; returns their ids. Runs of other machines, and runs without the tag, are left as they are."""
    import mlflow

    client = client or mlflow.MlflowClient()
    experiments = [e.experiment_id for e in client.search_experiments()]
    dead = []
    if not experiments:
        return dead
    for run in client.search_runs(experiments, filter_string="attributes.status = 'RUNNING'", max_results=1000):
        process = run.data.tags.get(PROCESS_TAG)
        if process and process_alive(process) is False:
            client.set_tag(run.info.run_id, ENDED_TAG, f"process {process} ended without closing the run; marked "
                           "KILLED by the next command that opened the store")  # fmt: skip
            client.set_terminated(run.info.run_id, "KILLED")
            dead.append(run.info.run_id)
    return dead


def drop_metrics_from(run_id: str, step: int) -> int | None:
    """Remove the metric points of ``run_id`` at ``step`` and after (what a stopped attempt logged after its last
    checkpoint, which a resume runs again), the latest values set back to what remains. Returns how many points
    went, or None where the store has no way to remove points (a tracking server): the caller notes it on the run."""
    import mlflow

    try:
        from mlflow.store.tracking.dbmodels.models import SqlLatestMetric, SqlMetric

        session_maker = mlflow.MlflowClient()._tracking_client.store.ManagedSessionMaker
    except (ImportError, AttributeError):
        return None
    try:
        writing = session_maker(read_only=False)  # MLflow 3 opens read-only sessions unless told
    except TypeError:  # an MLflow whose sessions have no such flag
        writing = session_maker()
    with writing as session:
        gone = (
            session.query(SqlMetric)
            .filter(SqlMetric.run_uuid == run_id, SqlMetric.step >= step)
            .delete(synchronize_session=False)
        )
        stale = session.query(SqlLatestMetric).filter(SqlLatestMetric.run_uuid == run_id, SqlLatestMetric.step >= step)
        for latest in stale.all():
            previous = (
                session.query(SqlMetric)
                .filter(SqlMetric.run_uuid == run_id, SqlMetric.key == latest.key)
                .order_by(SqlMetric.step.desc(), SqlMetric.timestamp.desc(), SqlMetric.value.desc())
                .first()
            )
            if previous is None:
                session.delete(latest)
            else:
                latest.value, latest.step = previous.value, previous.step
                latest.timestamp, latest.is_nan = previous.timestamp, previous.is_nan
    return gone


@contextlib.contextmanager
def _store_lock(uri: str):
    """An exclusive lock on ``mlflow.db.lock`` beside a local SQLite store (no-op for servers or without fcntl):
    the first process creates the database and the experiment, the others then find them."""
    try:
        import fcntl
    except ImportError:  # not POSIX
        fcntl = None
    if fcntl is None or not uri.startswith("sqlite:///"):
        yield
        return
    lock = Path(uri[len("sqlite:///") :] + ".lock")
    with open(lock, "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def flatten(d: dict, prefix: str = "") -> dict[str, str]:
    """Nested config -> flat ``a.b`` params (MLflow params are strings of at most 6000 characters)."""
    out = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(flatten(v, key + "."))
        else:
            out[key] = str(v)[:6000]
    return out


def run_name(method: str, seed: int) -> str:
    """A run's name in the UI: its method and seed (``gan-cot-seed0``)."""
    return f"{method}-seed{seed}"


def log_task_inputs(task, task_name: str, seed: int, eval_n: int | None, train_n: int | None = None) -> None:
    """The active run's dataset inputs: the evaluation questions (the first ``eval_n`` of the test split, with their
    answers and difficulty: the digest tells whether two runs were scored on the same questions) and the training
    split (named, not copied)."""
    import mlflow
    import pandas as pd
    from mlflow.data.code_dataset_source import CodeDatasetSource
    from mlflow.data.meta_dataset import MetaDataset

    def source(split: str, n) -> CodeDatasetSource:
        return CodeDatasetSource({"task": task_name, "seed": str(seed), "split": split, "n": str(n)})

    test = task.examples("test", eval_n)
    frame = pd.DataFrame(
        {"id": [e.id for e in test], "question": [e.question for e in test], "answer": [e.answer for e in test],
         "difficulty": [-1 if e.difficulty is None else int(e.difficulty) for e in test]}
    )  # fmt: skip
    with warnings.catch_warnings():  # MLflow's hint about integer columns: ours never have missing values
        warnings.simplefilter("ignore", UserWarning)
        evaluation = mlflow.data.from_pandas(
            frame, source=source("test", len(test)), name=f"{task_name}/test", targets="answer"
        )
        mlflow.log_input(evaluation, context="evaluation")  # the schema is inferred here too
    digest = hashlib.sha256(f"{task_name}-{seed}-train-{train_n}".encode()).hexdigest()[:8]
    train = MetaDataset(source=source("train", train_n or "all"), name=f"{task_name}/train", digest=digest)
    mlflow.log_input(train, context="training")


def log_eval_rows(rows: list[dict], artifact: str = ROWS_ARTIFACT) -> None:
    """An evaluation's per-question rows (:data:`ROW_KEYS`; ``alpha`` only where a gate chose one) as the active
    run's ``artifact`` (default the final evaluation's ``eval/test_rows.json``)."""
    import mlflow

    keep = [{k: r.get(k) for k in ROW_KEYS if k != "alpha" or r.get("alpha") is not None} for r in rows]
    mlflow.log_dict({"rows": keep}, artifact)


def log_eval_run(method: str, seed: int, task_name: str, task, base: dict, final: dict, rows: list[dict],
                 params: dict) -> str:  # fmt: skip
    """One finished run of an evaluation alone (the base, a LoRA of the oracle): named by method and seed, tagged
    like a training run, its figures (``base_*`` and ``final_*``) and per-question rows logged, so
    ``compare_runs.py`` groups it with the trained methods. ``final``: ``accuracy`` and ``tokens``. Returns its id."""
    import mlflow

    with mlflow.start_run(run_name=run_name(method, seed)) as run:
        mlflow.set_tags({"method": method, "seed": str(seed), "task": task_name})
        mlflow.log_params(params)
        log_task_inputs(task, task_name, seed, len(rows))
        figures = {f"base_{k}": base[k] for k in ("accuracy", "mean_tokens")}
        figures |= {"final_accuracy": final["accuracy"], "final_mean_tokens": final["tokens"]}
        if base.get("mean_minimal_tokens"):
            figures["final_tokens_vs_minimal"] = final["tokens"] / base["mean_minimal_tokens"]
        mlflow.log_metrics(figures)
        log_eval_rows(rows)
    return run.info.run_id


def load_eval_rows(run_id: str, artifact: str = ROWS_ARTIFACT) -> list[dict] | None:
    """A run's per-question rows (:func:`log_eval_rows`; ``artifact``: :data:`BASE_ROWS_ARTIFACT` for its base's), or
    None when it has none."""
    import mlflow

    try:
        with quiet_downloads():
            return mlflow.artifacts.load_dict(f"runs:/{run_id}/{artifact}")["rows"]
    except Exception:  # no such artifact: MLflow raises its own or an OSError, depending on the store
        return None


@contextlib.contextmanager
def quiet_downloads():
    """No "Downloading artifacts" progress bar while reading a small artifact back (MLflow draws one per download, and
    on a local store it can be left at 0% on the console)."""
    key = "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"
    prior = os.environ.get(key)
    os.environ[key] = "false"
    try:
        yield
    finally:
        if prior is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = prior


def log_eval_table(rows: list[dict], base_rows: list[dict] | None = None) -> None:
    """The final evaluation as a table the UI's artifact view shows (``eval/test_table.json``): one row per question,
    its outcome and tokens, the gate's alpha where gated, and the base model's outcome and tokens beside them."""
    import mlflow

    base = {r["id"]: r for r in base_rows or []}
    table = {k: [r.get(k) for r in rows] for k in ROW_KEYS if k != "alpha" or any(r.get(k) is not None for r in rows)}
    if base:
        table["base_correct"] = [base.get(r["id"], {}).get("correct") for r in rows]
        table["base_tokens"] = [base.get(r["id"], {}).get("tokens") for r in rows]
    with warnings.catch_warnings():  # MLflow's hints on integer and string columns: ours have no missing values
        warnings.simplefilter("ignore")
        mlflow.log_table(table, artifact_file=TABLE_ARTIFACT)


def pareto_point(rows: list[dict], base_rows: list[dict] | None, base: dict, n_boot: int = 1000) -> dict:
    """The run's point on the accuracy/tokens plane with its 95% intervals over questions (from ``rows``), and its
    base's (from ``base_rows``, else the ``base`` figures without an interval); AES and compression against it."""
    from gan_cot.efficiency import aes, compression_rate
    from gan_cot.intervals import RunFigures, bootstrap

    def point(r: list[dict]) -> dict:
        ci = bootstrap([RunFigures("run", None, "run", None, None, rows=r)], n_boot=n_boot)
        return {f: ci[f].as_dict() for f in ("accuracy", "tokens")}

    final = point(rows)
    if base_rows:
        before = point(base_rows)
    else:
        before = {
            f: {"mean": base.get(k), "lo": None, "hi": None}
            for f, k in (("accuracy", "accuracy"), ("tokens", "mean_tokens"))
        }
    acc, tok = final["accuracy"]["mean"], final["tokens"]["mean"]
    b_acc, b_tok = before["accuracy"]["mean"], before["tokens"]["mean"]
    return {"final": final, "base": before, "n": len(rows), "aes": aes(acc, tok, b_acc, b_tok),
            "compression": compression_rate(tok, b_tok)}  # fmt: skip


def log_pareto_point(rows: list[dict], base_rows: list[dict] | None = None, base: dict | None = None) -> dict:
    """The run's :func:`pareto_point` as ``eval/pareto_point.json`` and a plot of it (``eval/pareto_point.png``: the
    base, the run, 95% bars over questions); returns the point."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import mlflow

    p = pareto_point(rows, base_rows, base or {})
    mlflow.log_dict(p, PARETO_ARTIFACT + ".json")
    fig, ax = plt.subplots(figsize=(6, 4.5), dpi=100)
    try:
        for name, key, style in (("base", "base", "xk"), ("this run", "final", "or")):
            a, t = p[key]["accuracy"], p[key]["tokens"]
            if None in (a["mean"], t["mean"]):
                continue
            bars = {}
            if a["lo"] is not None:
                bars = {"xerr": [[t["mean"] - t["lo"]], [t["hi"] - t["mean"]]],
                        "yerr": [[a["mean"] - a["lo"]], [a["hi"] - a["mean"]]]}  # fmt: skip
            ax.errorbar(t["mean"], a["mean"], fmt=style, capsize=3, label=name, **bars)
        ax.set_xlabel("mean tokens per answer (fewer is better); bars: 95% interval over questions")
        ax.set_ylabel("accuracy")
        aes_text = "-" if p["aes"] is None else f"{p['aes']:.3f}"
        ax.set_title(f"{p['n']} test questions; AES against the base {aes_text}")
        ax.grid(alpha=0.3)
        ax.legend(loc="lower right", fontsize=8)
        mlflow.log_figure(fig, PARETO_ARTIFACT + ".png")
    finally:
        plt.close(fig)
    return p


def summary_note(final: dict, base: dict | None, point: dict | None) -> str:
    """A run's description (``mlflow.note.content``, the first thing its page shows): its final figures against the
    base, with 95% intervals over questions where the per-question rows gave them, and where the rest is."""

    def fig(key: str, name: str, spec: str) -> str:
        ci = (point or {}).get(key, {}).get(name) or {}
        value = ci.get("mean", final.get("accuracy" if name == "accuracy" else "mean_tokens"))
        if value is None:
            return "-"
        bars = f" [{ci['lo']:{spec}}, {ci['hi']:{spec}}]" if ci.get("lo") is not None else ""
        return f"{value:{spec}}{bars}"

    base = base or {}
    lines = [
        "| | accuracy | tokens per answer |",
        "|---|---|---|",
        f"| this run | {fig('final', 'accuracy', '.3f')} | {fig('final', 'tokens', '.1f')} |",
    ]
    if base.get("accuracy") is not None:
        b = (point or {}).get("base", {})
        acc = b.get("accuracy", {}).get("mean", base["accuracy"])
        tok = b.get("tokens", {}).get("mean", base.get("mean_tokens"))
        lines.append(f"| base | {acc:.3f} | {tok:.1f} |")
    n = (point or {}).get("n") or final.get("n")
    aes_value = (point or {}).get("aes")
    lines += [
        "",
        (f"{n} test questions; " if n else "") + "brackets: 95% interval over questions"
        + (f"; AES against the base {aes_value:.3f}" if aes_value is not None else "") + ".",
        f"Per question: `{TABLE_ARTIFACT}` (artifacts); against the base: `{PARETO_ARTIFACT}.png`; "
        "per round: the charts of the `eval/` (validation) and `rollout/` sections.",
    ]  # fmt: skip
    return "\n".join(lines)

"""MLflow tracking: the project's SQLite store inside ``mlruns/`` unless ``MLFLOW_TRACKING_URI`` says otherwise.

MLflow 3 no longer accepts a bare ``./mlruns`` file store by default, so the local store is
``sqlite:///<repo>/mlruns/mlflow.db`` with artifacts under ``mlruns/artifacts/``. Open it with::

    mlflow ui --backend-store-uri sqlite:///mlruns/mlflow.db --default-artifact-root mlruns/artifacts
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

from gan_cot.cli import REPO_ROOT, check_writable_dir

DEFAULT_STORE = REPO_ROOT / "mlruns"


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
        found = mlflow.get_experiment_by_name(experiment)
        if found is not None:
            exp_id = found.experiment_id
        else:
            exp_id = mlflow.create_experiment(experiment, artifact_location=_artifact_root(uri))
    mlflow.set_experiment(experiment_id=exp_id)
    return exp_id


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

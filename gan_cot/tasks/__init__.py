"""Tasks: the built-in ledger and ledger-hard tasks, GSM8K, and the registry that finds them by name."""

from __future__ import annotations

from gan_cot.tasks.base import Example, Task, TaskBase, TaskDataError, extract_answer


def _ledger(**kwargs):
    from gan_cot.tasks.ledger import LedgerTask

    return LedgerTask(**kwargs)


def _ledger_hard(**kwargs):
    from gan_cot.tasks.ledger_hard import LedgerHardTask

    return LedgerHardTask(**kwargs)


def _gsm8k(**kwargs):
    from gan_cot.tasks.gsm8k import Gsm8kTask

    return Gsm8kTask(**kwargs)


TASKS = {"ledger": _ledger, "ledger-hard": _ledger_hard, "gsm8k": _gsm8k}
GENERATED = ("ledger", "ledger-hard")  # built in: drawn from a seed; the others read a data path
DEFAULT_TASK = "ledger"


def get_task(name: str = DEFAULT_TASK, **kwargs) -> Task:
    """The task registered under ``name``; an unknown name lists the known ones."""
    if name not in TASKS:
        raise ValueError(f"unknown task {name!r}; known tasks: {', '.join(sorted(TASKS))}")
    return TASKS[name](**kwargs)


def make_task(name: str, seed: int = 0, data: str | None = None) -> Task:
    """The task ``name`` as a run names it: a built-in task drawn from ``seed``, a file-backed one read from ``data``."""
    return get_task(name, seed=seed) if name in GENERATED else get_task(name, path=data)


__all__ = [
    "DEFAULT_TASK",
    "GENERATED",
    "TASKS",
    "Example",
    "Task",
    "TaskBase",
    "TaskDataError",
    "extract_answer",
    "get_task",
    "make_task",
]

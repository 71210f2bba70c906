"""Tasks: the built-in ledger task, GSM8K, and the registry that finds them by name."""

from __future__ import annotations

from gan_cot.tasks.base import Example, Task, TaskBase, TaskDataError, extract_answer


def _ledger(**kwargs):
    from gan_cot.tasks.ledger import LedgerTask

    return LedgerTask(**kwargs)


def _gsm8k(**kwargs):
    from gan_cot.tasks.gsm8k import Gsm8kTask

    return Gsm8kTask(**kwargs)


TASKS = {"ledger": _ledger, "gsm8k": _gsm8k}
DEFAULT_TASK = "ledger"


def get_task(name: str = DEFAULT_TASK, **kwargs) -> Task:
    """The task registered under ``name``; an unknown name lists the known ones."""
    if name not in TASKS:
        raise ValueError(f"unknown task {name!r}; known tasks: {', '.join(sorted(TASKS))}")
    return TASKS[name](**kwargs)


__all__ = [
    "DEFAULT_TASK",
    "TASKS",
    "Example",
    "Task",
    "TaskBase",
    "TaskDataError",
    "extract_answer",
    "get_task",
]

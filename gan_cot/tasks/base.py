"""The task protocol: what every reasoning task gives the rest of the framework.

A task turns raw problems into :class:`Example` objects (question, reference chain split into steps,
final answer, and where known per-step gold labels, the minimal chain and a difficulty), renders the
chain a policy is trained to write, and checks a generated completion's final answer.

The completion format is shared by every task: the chain's steps joined by the step separator, then
the final answer on its own line after ``####`` (GSM8K's convention)::

    step 1
    step 2
    #### 42
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

from gan_cot.steps import LABELS

ANSWER_MARKER = "####"
_ANSWER_RE = re.compile(r"####\s*([^\n]*)")
_BOXED_RE = re.compile(r"\\boxed\{([^{}]*)\}")


class TaskDataError(ValueError):
    """Bad task data: the message names the file and line and how to fix it."""


@dataclass
class Example:
    """One problem with its reference chain.

    ``steps`` is the reference chain (the verbose one for the built-in task). ``labels`` holds one of
    ``useful`` / ``redundant`` / ``wrong`` per step where the task knows them, else ``None``.
    """

    id: str
    question: str
    steps: list[str]
    answer: str
    labels: list[str] | None = None
    minimal_steps: list[str] | None = None
    difficulty: int | None = None
    meta: dict = field(default_factory=dict)

    def __post_init__(self):
        if self.labels is not None:
            if len(self.labels) != len(self.steps):
                raise ValueError(f"example {self.id}: {len(self.labels)} labels for {len(self.steps)} steps")
            bad = sorted(set(self.labels) - set(LABELS))
            if bad:
                raise ValueError(f"example {self.id}: unknown step labels {bad}; allowed: {list(LABELS)}")


def normalize_number(text: str) -> str:
    """Canonical form of a numeric answer: no thousands commas, no ``$``, no trailing ``.0``."""
    t = text.strip().replace(",", "").replace("$", "").rstrip(".").strip()
    try:
        value = float(t)
    except ValueError:
        return t
    if value.is_integer():
        return str(int(value))
    return repr(value)


def extract_answer(text: str) -> str | None:
    """The final answer of a completion: the last ``#### X``, else the last ``\\boxed{X}``; None if absent."""
    found = _ANSWER_RE.findall(text)
    if found and found[-1].strip():
        return normalize_number(found[-1])
    boxed = _BOXED_RE.findall(text)
    if boxed:
        return normalize_number(boxed[-1])
    return None


def format_chain(steps: list[str], answer: str, separator: str = "\n") -> str:
    """The completion a policy is trained to write: steps, then ``#### answer`` after the separator."""
    final = f"{ANSWER_MARKER} {answer}"
    return separator.join([*steps, final])


def chain_steps(completion: str, separator: str = "\n") -> list[str]:
    """The steps of a completion: everything before the answer line, split on the separator."""
    from gan_cot.steps import split_steps

    body = completion.split(ANSWER_MARKER, 1)[0]
    return [s.text for s in split_steps(body, separator)]


@runtime_checkable
class Task(Protocol):
    """What a task provides. Built-in tasks live in :mod:`gan_cot.tasks`; register new ones there."""

    name: str
    separator: str

    def examples(self, split: str, n: int | None = None) -> list[Example]:
        """The examples of a split (``train`` / ``validation`` / ``test``), the first ``n`` if given."""
        ...

    def prompt(self, example: Example) -> str:
        """The user message for an example (rendered by the model's prompt template)."""
        ...

    def verify(self, completion: str, example: Example) -> bool:
        """Whether a completion's final answer is right."""
        ...


class TaskBase:
    """Shared behaviour; subclasses set ``name`` and implement ``examples``."""

    name = "base"
    separator = "\n"

    def prompt(self, example: Example) -> str:
        return example.question

    def reference(self, example: Example, minimal: bool = False) -> str:
        steps = example.minimal_steps if minimal and example.minimal_steps is not None else example.steps
        return format_chain(steps, example.answer, self.separator)

    def verify(self, completion: str, example: Example) -> bool:
        got = extract_answer(completion)
        return got is not None and got == normalize_number(example.answer)

"""The task protocol: what every reasoning task gives the rest of the framework.

A task turns raw problems into :class:`Example` objects (question, reference chain split into steps,
final answer, and where known per-step gold labels, the minimal chain and a difficulty), renders the
chain a policy is trained to write, and checks a generated completion's final answer.

The completion format is the run's chain format (:mod:`gan_cot.formats`): by default the chain's steps one
per line, then the final answer after ``####`` (GSM8K's convention)::

    step 1
    step 2
    #### 42
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

from gan_cot.formats import HASH, ChainFormat, normalize_number
from gan_cot.steps import LABELS

ANSWER_MARKER = "####"  # GSM8K's own files put the final answer after it


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


def extract_answer(text: str, fmt: ChainFormat = HASH) -> str | None:
    """The final answer of a completion in chain format ``fmt``, normalised; None if absent."""
    return fmt.extract_answer(text)


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
    """Shared behaviour; subclasses set ``name`` and implement ``examples``. ``format`` is the chain format the
    policy writes (:mod:`gan_cot.formats`; a run sets it from its ``format`` key)."""

    name = "base"
    format: ChainFormat = HASH

    @property
    def separator(self) -> str:
        return self.format.separator

    def prompt(self, example: Example) -> str:
        return example.question

    def reference(self, example: Example, minimal: bool = False) -> str:
        steps = example.minimal_steps if minimal and example.minimal_steps is not None else example.steps
        return self.format.render(steps, example.answer)

    def verify(self, completion: str, example: Example) -> bool:
        got = self.format.extract_answer(completion)
        return got is not None and got == normalize_number(example.answer)


@dataclass
class StepRecord:
    """One chain with a label per step (useful, redundant, wrong): what a discriminator trains on."""

    question: str
    steps: list[str]
    labels: list[str]
    id: str = ""

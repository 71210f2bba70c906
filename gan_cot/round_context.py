"""What every stage of a round works with, in one object.

The trainer builds a :class:`RoundContext` once in its setup and hands it to each stage: the rollout
(:func:`gan_cot.rollout.rollout`), the scoring (:func:`gan_cot.scoring.score`), the update
(:func:`gan_cot.update.policy_update`) and the discriminator refresh
(:func:`gan_cot.discriminator.refresh.refresh_discriminator`). Each stage then takes the context, the round's data
(the :class:`~gan_cot.rollout.RolloutBatch`, its :class:`~gan_cot.scoring.Scores`) and the part of the config it
reads, rather than a dozen positional arguments.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


def _hf_engine():
    from gan_cot.generation import HFEngine

    return HFEngine()


@dataclass
class RoundContext:
    """The policy and what surrounds it during a round.

    ``examples`` are the training questions: a chain's ``example_index`` points into them. ``strategy`` is the
    distributed strategy (:class:`gan_cot.distributed.Strategy`: rank, world, device, collectives and the DeepSpeed
    engine); a stage that needs no collective (the rollout, the scoring) runs with ``None`` in a single process.
    ``rollout_engine`` samples the round's chains (Hugging Face ``generate`` by default, or vLLM).
    """

    policy: Any  # the adapter-wrapped model being trained (the DeepSpeed engine's module)
    tokenizer: Any  # the policy's tokenizer, with the prompt instruction
    task: Any  # a gan_cot.tasks.base.Task
    examples: list  # the training questions
    gate: Any  # a gan_cot.gate.kinds.Gate
    strategy: Any = None  # a gan_cot.distributed.Strategy
    rollout_engine: Any = field(default_factory=_hf_engine)

    def question(self, index: int) -> str:
        """The prompt of training question ``index`` (a chain's ``example_index``)."""
        return self.task.prompt(self.examples[index])

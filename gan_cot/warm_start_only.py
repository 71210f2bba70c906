"""pruned-sft: gan-cot's warm start alone, no rounds: the question "does the loop add to its warm start?" needs it.

The trainer's own warm start (:meth:`gan_cot.trainer.AdversarialTrainer.warm_start`): the first
``sft.pool_questions`` reference chains of the task, pruned by the discriminator (steps kept at ``p(useful) >=
sft.prune_threshold``), then ``sft.warmup_steps`` SFT steps on them, with the same config, engine, evaluation and
MLflow logging as a gan-cot run; the one round it is given does nothing. Run it with
``deepspeed scripts/train_adv.py --warm-start-only`` (which sets ``rounds=1`` and ``gate.kind=none``: an untrained
gate would answer with the base; a config's ``gate.select`` still chooses the plain adapter's alpha on validation, as
it does for gan-cot's gate). Its adapter is the like-for-like warm start of the baselines (``init=``).
"""

from __future__ import annotations

from gan_cot.trainer import AdversarialTrainer

METHOD = "pruned-sft"
OVERRIDES = ["rounds=1", "gate.kind=none", "checkpoint_every=0"]


class WarmStartOnly(AdversarialTrainer):
    """The trainer with its rounds left empty: the warm start, then the final evaluation."""

    def method(self) -> str:
        return METHOD

    def run_round(self, r: int) -> dict:
        return {}

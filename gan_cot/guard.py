"""The base-accuracy guard: no run ends worse than its base.

A pruned chain is a hypothesis until the policy confirms it, and the held-out check is the confirmation that counts:
the trainer measures the policy on ``guard.n`` validation questions after the warm start, every ``guard.every``
rounds and at the end, against the base on the same questions. When the policy falls more than ``guard.margin`` below
the base, the warm start backs off its pruning (:meth:`gan_cot.trainer.AdversarialTrainer.warm_start`) and a round is
rolled back to the last state that passed: the adapter's and the gate's weights, kept in memory (they are small). The
first state that passes is the initial adapter itself (LoRA's delta starts at zero, so it is the base), so a run can
always retreat to its base. Every action is logged (``guard/...``) and printed.
"""

from __future__ import annotations

import torch


class Guard:
    """Snapshots of the trainable weights and the checks against the base's validation accuracy."""

    def __init__(self, cfg, strategy, log=print):
        self.margin = cfg.margin
        self.strategy = strategy
        self.log = log
        self.base_accuracy: float | None = None
        self.good: dict[str, torch.Tensor] | None = None  # the last state that passed
        self.good_accuracy: float | None = None
        self.actions: list[str] = []

    @property
    def active(self) -> bool:
        return self.margin is not None

    def snapshot(self) -> dict[str, torch.Tensor]:
        with self.strategy.gathered(trainable_only=True):
            return {
                n: p.detach().to("cpu", copy=True)
                for n, p in self.strategy.model.named_parameters()
                if p.requires_grad
            }

    def restore(self, state: dict[str, torch.Tensor]) -> None:
        with self.strategy.gathered(trainable_only=True, modify=True):
            for n, p in self.strategy.model.named_parameters():
                if n in state:
                    p.data.copy_(state[n].to(p.device, p.dtype))

    def passes(self, accuracy: float) -> bool:
        return not self.active or self.base_accuracy is None or accuracy >= self.base_accuracy - self.margin

    def keep(self, accuracy: float) -> None:
        """The current weights passed: they become the state a later failure rolls back to."""
        self.good, self.good_accuracy = self.snapshot(), accuracy

    def check(self, accuracy: float, where: str) -> dict:
        """Keep the current state when it passes, else roll back to the last that did; returns the metrics."""
        if not self.active:
            return {}
        out = {"guard_val_accuracy": accuracy}
        if self.base_accuracy is not None:  # a run resumed from before the guard has no base figure
            out["guard_base_val_accuracy"] = self.base_accuracy
        if self.passes(accuracy):
            self.keep(accuracy)
            out["guard_rollback"] = 0.0
            return out
        self.say(
            f"guard: {where}: validation accuracy {accuracy:.3f} is below the base's {self.base_accuracy:.3f} by more "
            f"than {self.margin}; rolled back to the last state that passed ({self.good_accuracy:.3f})"
        )
        self.restore(self.good)
        out["guard_rollback"] = 1.0
        return out

    def say(self, message: str) -> None:
        self.actions.append(message)
        if self.strategy.is_main:
            self.log(message)

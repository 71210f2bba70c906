"""Settings of the chain-rewriting baselines: C3oT, TokenSkip, implicit CoT, System 2 distillation, step skipping.

One section per method (``c3ot``, ``tokenskip``, ``implicit``, ``distill``, ``step_skip`` in
:class:`gan_cot_lab.baselines.config.BaselineConfig`); each method also reads the shared ``train`` (batch size, learning
rate and the optimizer steps of each of its training phases), ``sample`` (the methods that sample from a policy) and
``lora`` sections. ``report_n`` in each section is the number of test questions (the first of the split, greedy,
the final evaluation's budgets) behind the method's own figures: a mode, a ratio, a stage or a round.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from gan_cot.config_loader import ConfigError, check_bounds, field

REPORT_N_HELP = "test questions behind the method's own figures (the first of the test split)"


@dataclass
class C3oTSection:
    short: Literal["pruned", "minimal"] = field(
        "pruned",
        help="where the short chain of each pair comes from: pruned (the reference chain with the steps the "
        "discriminator scores below prune_threshold removed, as gan-cot's warm start) or minimal (the task's "
        "shortest granularity, an oracle only generated tasks have)",
    )
    discriminator: str = field("ledger-tiny", help="short: pruned: the discriminator (registry name or folder)")
    prune_threshold: float = field(0.8, help="short: pruned: a step stays when its p(useful) reaches this")
    report_n: int = field(100, help=REPORT_N_HELP + ": both modes")

    def __post_init__(self):
        check_bounds(self, "c3ot", positive=("report_n",))
        if not 0.0 <= self.prune_threshold <= 1.0:
            raise ConfigError(f"c3ot.prune_threshold must be in [0, 1], got {self.prune_threshold}")


@dataclass
class TokenSkipSection:
    importance: Literal["surprisal", "answer_drop"] = field(
        "surprisal",
        help="token importance from the base policy: surprisal (-log p of the token given what precedes it) or "
        "answer_drop (how much the log-probability of the chain's answer falls when the token is left out; a "
        "forward pass over n + 1 sequences per chain of n tokens)",
    )
    ratios: list[float] = field(
        default_factory=lambda: [0.5, 0.6, 0.7, 0.8, 0.9, 1.0],
        help="fractions of chain tokens kept; each training chain is compressed at one, drawn at random",
    )
    eval_ratio: float = field(0.7, help="the ratio the final evaluation's prompt asks for")
    report_ratios: list[float] = field(
        default_factory=lambda: [0.5, 0.7, 0.9, 1.0], help="ratios the method's own figures are measured at"
    )
    batch_size: int = field(64, help="sequences per forward pass when scoring importance")
    report_n: int = field(100, help=REPORT_N_HELP + ": one evaluation per report ratio")

    def __post_init__(self):
        check_bounds(self, "tokenskip", positive=("batch_size", "report_n"))
        for key in ("ratios", "report_ratios"):
            values = getattr(self, key)
            if not values or any(not 0.0 < r <= 1.0 for r in values):
                raise ConfigError(f"tokenskip.{key} must be a non-empty list of fractions in (0, 1], got {values}")
        if not 0.0 < self.eval_ratio <= 1.0:
            raise ConfigError(f"tokenskip.eval_ratio must be in (0, 1], got {self.eval_ratio}")


@dataclass
class ImplicitCoTSection:
    stages: int = field(
        4, help="removal stages: stage s trains on chains with the first s/stages of their tokens removed"
    )
    smoothing: float | None = field(
        4.0,
        help="removal smoothing lambda: each training chain loses o more tokens, P(o) ~ exp(-lambda o) "
        "(null: no smoothing)",
    )
    report_n: int = field(100, help=REPORT_N_HELP + ": one evaluation after each stage")

    def __post_init__(self):
        check_bounds(self, "implicit", positive=("stages", "smoothing", "report_n"))


@dataclass
class DistillSection:
    min_agreement: float = field(
        0.75, help="a question is kept when at least this fraction of its sample.n chains give the majority answer"
    )

    def __post_init__(self):
        if not 0.0 < self.min_agreement <= 1.0:
            raise ConfigError(f"distill.min_agreement must be in (0, 1], got {self.min_agreement}")


@dataclass
class StepSkipSection:
    rounds: int = field(2, help="skipping rounds after the initial one that teaches the step count")
    skip: int = field(1, help="each round asks for this many steps fewer than a question's shortest chain so far")
    report_n: int = field(100, help=REPORT_N_HELP + ": one evaluation per round")

    def __post_init__(self):
        check_bounds(self, "step_skip", positive=("rounds", "skip", "report_n"))

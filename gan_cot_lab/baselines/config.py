"""Configuration of the seed-method baselines (``python scripts/train_baseline.py --config ...``).

One dataclass serves every method; each method reads the sections it needs (``sample`` for the methods
that sample from the base, ``dpo``, ``grpo``, ``budget``, ``merge``) and ignores the others.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, get_args

from gan_cot.config_loader import ConfigError, check_bounds, field
from gan_cot.run_config import RunConfig
from gan_cot_lab.baselines.recipes_config import (
    C3oTSection,
    DistillSection,
    ImplicitCoTSection,
    StepSkipSection,
    TokenSkipSection,
)

Method = Literal[
    "srs",
    "dpo",
    "grpo",
    "budget-forcing",
    "merge",
    "c3ot",
    "tokenskip",
    "implicit-cot",
    "system1-distill",
    "step-skip",
]
GrpoReward = Literal["kimi", "o1pruner", "shorterbetter", "l1"]
METHODS = get_args(Method)
GRPO_REWARDS = get_args(GrpoReward)


@dataclass
class TrainSection:
    steps: int = field(40, help="optimizer steps (TRL max_steps)")
    batch_size: int = field(
        16, help="sequences per device per step; for GRPO, completions (questions x grpo.num_generations)"
    )
    grad_accum: int = field(1, help="gradient accumulation steps")
    lr: float = field(2e-3, help="adapter learning rate")
    warmup: float = field(0.1, help="warmup: a fraction of the steps if below 1, else a number of steps")
    max_length: int = field(512, help="longest tokenized prompt + completion kept for SFT and DPO")
    logging_steps: int = field(5, help="log training statistics every N steps")
    bf16: bool = field(False, help="bf16 mixed precision (GPUs that support it; leave off on a CPU)")

    def __post_init__(self):
        check_bounds(
            self, "train", ("steps", "batch_size", "grad_accum", "lr", "max_length", "logging_steps"), ("warmup",)
        )


@dataclass
class SampleSection:
    n: int = field(8, help="chains sampled per training question from the base (srs, dpo)")
    temperature: float = field(1.0, help="sampling temperature")
    max_new_tokens: int = field(200, help="token budget per sampled chain")
    batch_size: int = field(64, help="questions per generation batch")

    def __post_init__(self):
        check_bounds(self, "sample", positive=("n", "temperature", "max_new_tokens", "batch_size"))


@dataclass
class DPOSection:
    beta: float = field(0.1, help="DPO beta (strength of the implicit KL to the base)")
    long_ratio: float = field(1.5, help="a correct chain this many times longer than the chosen one is rejected")
    max_pairs: int = field(4, help="preference pairs per question at most (wrong chains first, then the longest)")

    def __post_init__(self):
        check_bounds(self, "dpo", positive=("max_pairs",))
        if self.long_ratio < 1:
            raise ConfigError(f"dpo.long_ratio must be at least 1, got {self.long_ratio}")


@dataclass
class GRPOSection:
    reward: GrpoReward = field("kimi", help="length reward")
    num_generations: int = field(4, help="completions per question (the group the reward is computed over)")
    max_completion_length: int = field(160, help="token budget per completion")
    temperature: float = field(1.0, help="sampling temperature")
    beta: float = field(0.0, help="KL coefficient to the base (0: no reference forward passes)")
    kimi_weight: float = field(1.0, help="kimi: weight of the length reward added to the 0/1 correctness reward")
    o1pruner_lambda: float = field(2.0, help="o1pruner: weight of the accuracy term")
    o1pruner_reference: Literal["base", "group"] = field(
        "base", help="o1pruner: base (means from samples of the base, as the paper) or group (the group's own means)"
    )
    o1pruner_samples: int = field(4, help="o1pruner: base samples per question for the reference means")
    shorterbetter_alpha: float = field(2.0, help="shorterbetter: reward of a correct answer")
    shorterbetter_beta: float = field(0.001, help="shorterbetter: penalty per token away from the optimal length")
    shorterbetter_no_correct: Literal["shortest", "mean"] = field(
        "shortest", help="shorterbetter: optimal length of a group with no correct answer: shortest or mean"
    )
    l1_a: float = field(0.0003, help="l1: penalty per token away from the requested length")
    l1_budgets: list[int] = field(
        default_factory=lambda: [32, 48, 64, 96], help="l1: requested lengths, drawn per training question"
    )
    l1_eval_budget: int = field(40, help="l1: requested length in the final evaluation prompt")

    def __post_init__(self):
        check_bounds(
            self, "grpo", positive=("max_completion_length", "temperature", "o1pruner_samples", "l1_eval_budget")
        )
        if self.num_generations < 2:
            raise ConfigError("grpo.num_generations must be at least 2: the rewards compare completions in a group")
        if not self.l1_budgets or any(b <= 0 for b in self.l1_budgets):
            raise ConfigError(f"grpo.l1_budgets must be a non-empty list of positive lengths, got {self.l1_budgets}")


@dataclass
class BudgetSection:
    think_tokens: int = field(64, help="thinking budget N: past it the end of thinking is forced")
    answer_tokens: int = field(8, help="tokens the model may write after the forced end of thinking")

    def __post_init__(self):
        check_bounds(self, "budget", ("think_tokens",), ("answer_tokens",))


@dataclass
class MergeSection:
    other: str | None = field(
        "outputs/baselines/srs/adapter", help="the shortened model (folder or adapter folder) averaged with the base"
    )
    weight: float = field(0.5, help="weight of `other`: merged = (1 - weight) * base + weight * other")


@dataclass
class BaselineConfig(RunConfig):
    """The run's shared sections (:class:`gan_cot.run_config.RunConfig`: task, model, seed, output, MLflow, ``lora``,
    ``eval``) and the methods' own."""

    output_dir: str | None = field(None, help="run folder (default outputs/baselines/<method tag>)")
    method: Method = field("srs", help="the baseline")
    init: str | None = field(
        None,
        help="start the method from this adapter (merged into `model`) or model folder instead of the base: the "
        "like-for-like warm start, e.g. pruned-sft's adapter (the tag gets -warm); compression and AES stay measured "
        "against `model`",
    )
    train_questions: int = field(64, help="training questions (the first n of the train split)")
    threads: int | None = field(None, help="torch CPU threads (default: torch's choice)")
    progress: bool = field(True, help="show progress bars")
    train: TrainSection = field(default_factory=TrainSection, help="optimisation (srs, dpo, grpo)")
    sample: SampleSection = field(default_factory=SampleSection, help="sampling from the base (srs, dpo)")
    dpo: DPOSection = field(default_factory=DPOSection, help="DPO pairs and loss")
    grpo: GRPOSection = field(default_factory=GRPOSection, help="GRPO rollouts and length rewards")
    budget: BudgetSection = field(default_factory=BudgetSection, help="budget forcing at inference")
    merge: MergeSection = field(default_factory=MergeSection, help="weight averaging")
    c3ot: C3oTSection = field(default_factory=C3oTSection, help="C3oT: long/short pairs under control tokens")
    tokenskip: TokenSkipSection = field(default_factory=TokenSkipSection, help="TokenSkip: chains cut at a ratio")
    implicit: ImplicitCoTSection = field(default_factory=ImplicitCoTSection, help="implicit CoT: removal stages")
    distill: DistillSection = field(default_factory=DistillSection, help="System 2 to System 1 distillation")
    step_skip: StepSkipSection = field(default_factory=StepSkipSection, help="iterative step skipping")

    @property
    def tag(self) -> str:
        """The method as logged (MLflow tag ``method``): ``grpo-<reward>`` for GRPO, else the method."""
        tag = f"grpo-{self.grpo.reward}" if self.method == "grpo" else self.method
        return tag + "-warm" if self.init else tag

    def __post_init__(self):
        check_bounds(self, "", positive=("train_questions", "threads"))
        if self.method == "grpo" and self.train.batch_size % self.grpo.num_generations:
            raise ConfigError(
                f"train.batch_size ({self.train.batch_size}) must be a multiple of grpo.num_generations "
                f"({self.grpo.num_generations}): each step holds whole groups"
            )
        if not 0.0 <= self.merge.weight <= 1.0:
            raise ConfigError(f"merge.weight must be in [0, 1], got {self.merge.weight}")
        if self.init and self.method == "merge":
            raise ConfigError("init is not for method merge: it averages the base itself with merge.other")
        if self.method == "merge" and not self.merge.other:
            raise ConfigError("merge.other is required for method merge: the shortened model to average with the base")

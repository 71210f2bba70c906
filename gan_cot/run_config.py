"""The sections every run shares, the adversarial trainer and the baselines alike: what to train on (task, data,
base model, seed), where the run goes (output folder, MLflow), the LoRA adapter and the evaluation."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from gan_cot.config_loader import ConfigError, check_bounds, field

DEFAULT_TARGET_MODULES = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


@dataclass
class LoraConfig:
    r: int = field(16, help="LoRA rank")
    alpha: int = field(32, help="LoRA scaling numerator (peft's lora_alpha; scale = alpha / r)")
    dropout: float = field(0.0, help="LoRA dropout")
    target_modules: list[str] = field(
        default_factory=lambda: list(DEFAULT_TARGET_MODULES), help="module names that get LoRA adapters"
    )

    def __post_init__(self):
        check_bounds(self, "lora", positive=("r", "alpha"))
        if not 0 <= self.dropout < 1:
            raise ConfigError(f"lora.dropout must be in [0, 1), got {self.dropout}")

    def peft(self):
        """The peft ``LoraConfig`` of this section."""
        from peft import LoraConfig as PeftLoraConfig

        return PeftLoraConfig(
            r=self.r, lora_alpha=self.alpha, lora_dropout=self.dropout, target_modules=list(self.target_modules),
            task_type="CAUSAL_LM",
        )  # fmt: skip


@dataclass
class EvalConfig:
    n: int = field(500, help="test questions for the base and the final evaluation (greedy)")
    batch_size: int = field(64, help="questions per generation batch")
    max_think_tokens: int | None = field(
        None,
        help="thinking budget of an evaluated chain, then its end is forced (null: the trainer's rollout budget; "
        "a baseline's 200)",
    )
    max_answer_tokens: int | None = field(
        None, help="answer budget after the end of thinking (null: the trainer's rollout budget; a baseline's 8)"
    )
    every: int = field(0, help="trainer: evaluate on round_n validation questions every N rounds (0: only at the end)")
    round_n: int = field(100, help="trainer: validation questions for the per-round evaluation")

    def __post_init__(self):
        check_bounds(self, "eval", ("n", "batch_size", "max_think_tokens"), ("every", "max_answer_tokens"))
        if self.every and self.round_n <= 0:
            raise ConfigError(f"eval.round_n must be positive when eval.every is set, got {self.round_n}")


@dataclass
class RunConfig:
    """The run's data, base model, seed and destinations."""

    task: str = field("ledger", help="task: ledger, ledger-hard or gsm8k")
    data: str | None = field(None, help="data path for file-backed tasks (a folder of splits or one .jsonl)")
    seed: int = field(0, help="seed for data, sampling and initialisation")
    model: str = field("models/ledger-verbose-base", help="base causal LM (Hub id or folder) the adapter trains on")
    format: Literal["hash", "r1"] = field(
        "hash",
        help="chain format (gan_cot/formats.py): hash (a step per line, then '#### answer') or r1 (paragraphs as "
        "steps, thinking ended by </think>, the answer in \\boxed{} after it)",
    )
    instruction: str = field(
        "auto",
        help="appended to every question the policy sees: auto (the chain format's instruction, e.g. r1's 'Please "
        "reason step by step, and put your final answer within \\boxed{}.', for a chat model; none for the tiny "
        "policies, trained on the bare question), none, or the text itself; logged as the instruction parameter",
    )
    output_dir: str | None = field(None, help="run folder: adapter, result.json, checkpoints")
    experiment: str = field("gan-cot", help="MLflow experiment")
    mlflow_dir: str | None = field(None, help="local MLflow store folder (default mlruns/; MLFLOW_TRACKING_URI wins)")
    lora: LoraConfig = field(default_factory=LoraConfig, help="the LoRA adapter")
    eval: EvalConfig = field(default_factory=EvalConfig, help="evaluation")

    def make_task(self):
        """The task this run trains and evaluates on."""
        from gan_cot.formats import get_format
        from gan_cot.tasks import make_task

        task = make_task(self.task, self.seed, self.data)
        task.format = get_format(self.format)
        return task

    def policy_tokenizer(self, path: str | None = None):
        """The policy's tokenizer (of ``model``, or ``path``) with the run's prompt instruction set on it. ``auto``
        is resolved in place (to the text, or none), so the logged config says what the policy was asked."""
        from gan_cot.formats import get_format
        from gan_cot.models import load_tokenizer, resolve_instruction, set_instruction

        tok = load_tokenizer(path or self.model)
        self.instruction = set_instruction(tok, resolve_instruction(self.instruction, tok, get_format(self.format)))
        self.instruction = self.instruction or "none"
        return tok

"""Configuration of a discriminator training run (``scripts/train_discriminator.py --config ...``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from gan_cot.config_loader import ConfigError, check_bounds, field


@dataclass
class DiscriminatorTrainConfig:
    task: str = field("ledger", help="task whose step-labeled chains train the discriminator: ledger or gsm8k")
    data: str | None = field(None, help="data path for file-backed tasks (gsm8k folder or .jsonl)")
    backbone: str | None = field(
        None, help="causal LM whose backbone starts the discriminator (id or path); default: the verbose base policy"
    )
    output: str = field("outputs/discriminators/ledger", help="folder the trained checkpoint is written to")
    name: str = field("ledger-tiny", help="checkpoint name recorded in its card")
    train_size: int = field(8000, help="training chains")
    eval_size: int = field(500, help="held-out chains (validation split) for the printed metrics")
    steps: int = field(600, help="optimizer steps")
    batch_size: int = field(32, help="chains per step")
    lr: float = field(1e-3, help="peak learning rate (cosine schedule with warmup)")
    balance: float = field(0.5, help="class weighting power: 0 = none, 1 = inverse frequency")
    seed: int = field(0, help="seed for data, initialisation and batches")
    separator: str = field("newline", help="step separator: newline, blank_line or a literal string")
    save_dtype: Literal["float32", "float16"] = field(
        "float32", help="dtype of the saved weights (float16 halves a shipped checkpoint; loading casts back)"
    )
    experiment: str = field("discriminators", help="MLflow experiment")
    mlflow_dir: str | None = field(None, help="local MLflow store folder (default mlruns/; MLFLOW_TRACKING_URI wins)")

    def __post_init__(self):
        check_bounds(self, "", positive=("train_size", "eval_size", "steps", "batch_size", "lr"))
        if self.task not in ("ledger", "ledger-hard", "gsm8k"):
            raise ConfigError(f"task: {self.task!r} has no step-labeled data; choose ledger, ledger-hard or gsm8k")

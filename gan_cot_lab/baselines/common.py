"""What the baselines share: the run context, sampling from the base, TRL arguments for a CPU, saving."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch


class BaselineError(ValueError):
    """A baseline cannot run on this input (for example no correct chain to learn from); says what to change."""


@dataclass
class Context:
    """Everything a method's ``train`` gets: the config, the task, the base policy (float32) and its tokenizer."""

    cfg: Any
    task: Any
    tokenizer: Any
    model: Any
    model_id: str  # the base as the config names it
    out: Path
    log: Callable[[str], None] = print

    def train_examples(self) -> list:
        return self.task.examples("train", self.cfg.train_questions)


@dataclass
class Outcome:
    """What a method hands back: the policy to evaluate and what it cost."""

    model: Any
    rollouts: int = 0  # sampled completions used for training
    eval_task: Any = None  # the task the final evaluation runs on (default: the context's)
    saved: Path | None = None  # the adapter or model folder written
    metrics: dict[str, float] = field(default_factory=dict)  # extra figures for MLflow and the result
    trainer: Any = None  # the TRL trainer, for its log history
    eval_options: dict[str, Any] = field(default_factory=dict)  # EvalSettings fields of the final evaluation


class SuffixTask:
    """A task whose prompts carry an extra instruction (L1's "Think for N tokens."); all else is delegated."""

    def __init__(self, task, prompt_fn: Callable[[str], str]):
        self._task = task
        self._prompt_fn = prompt_fn

    def prompt(self, example) -> str:
        return self._prompt_fn(self._task.prompt(example))

    def __getattr__(self, name):
        return getattr(self._task, name)


def trl_args(cfg, out: Path) -> dict:
    """Arguments every TRL config takes here: plain fp32 on a CPU, no checkpoints, no reporting integrations.

    TRL's configs default to bf16 and gradient checkpointing; both only slow a tiny model on a CPU.
    """
    from transformers import TrainingArguments

    # transformers 5 renamed gradient checkpointing; the old name still works but warns
    new_name = "activation_checkpointing" in TrainingArguments.__dataclass_fields__
    checkpointing = {"activation_checkpointing" if new_name else "gradient_checkpointing": False}
    return dict(
        output_dir=str(out / "trl"),
        max_steps=cfg.train.steps,
        per_device_train_batch_size=cfg.train.batch_size,
        gradient_accumulation_steps=cfg.train.grad_accum,
        learning_rate=cfg.train.lr,
        lr_scheduler_type="cosine",
        warmup_steps=cfg.train.warmup,
        weight_decay=0.0,
        logging_steps=cfg.train.logging_steps,
        save_strategy="no",
        report_to="none",
        bf16=cfg.train.bf16,
        fp16=False,
        use_cpu=not torch.cuda.is_available(),
        **checkpointing,
        seed=cfg.seed,
        data_seed=cfg.seed,
        dataloader_num_workers=0,
        disable_tqdm=not cfg.progress,
    )


def sample_chains(ctx: Context, examples: list, n: int, temperature: float, max_new_tokens: int) -> list[list]:
    """``n`` sampled completions per example from the base (:func:`gan_cot.generation.generate`)."""
    from tqdm.auto import tqdm

    from gan_cot.generation import Sampling, generate

    questions = [ctx.task.prompt(ex) for ex in examples]
    sampling = Sampling(
        n=n,
        do_sample=True,
        temperature=temperature,
        max_new_tokens=max_new_tokens,
        batch_size=ctx.cfg.sample.batch_size,
    )
    with tqdm(total=len(questions), desc="sample", disable=not ctx.cfg.progress, leave=False) as bar:
        return generate(ctx.model, ctx.tokenizer, questions, sampling, progress=bar.update)


def save_adapter(model, tokenizer, path: Path) -> Path:
    """peft ``save_pretrained`` plus the tokenizer, written to a temporary folder and renamed into place."""
    from gan_cot.models import save_pretrained

    return save_pretrained(model, tokenizer, path)


def count_params(model) -> int:
    """Parameters of the deployed policy (shared tensors once); a LoRA adapter merges into these."""
    return sum(p.numel() for p in model.parameters())


def train_and_save(ctx: Context, trainer, rollouts: int, metrics: dict, **outcome) -> Outcome:
    """Run a TRL trainer, save its adapter to ``OUTPUT_DIR/adapter`` and hand back the trained policy. From a warm
    start (``init``) the adapter sits on the warm-started weights, which its folder cannot name: the merged model is
    saved to ``OUTPUT_DIR/model`` instead."""
    trainer.train()
    model = trainer.model
    if ctx.cfg.init:
        from gan_cot.models import save_pretrained

        model = model.merge_and_unload()
        saved = save_pretrained(model, ctx.tokenizer, ctx.out / "model")
    else:
        saved = save_adapter(model, ctx.tokenizer, ctx.out / "adapter")
    return Outcome(model=model, rollouts=rollouts, saved=saved, trainer=trainer, metrics=metrics, **outcome)

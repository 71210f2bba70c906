"""The benchmark's shared setup: the models, both trainers' configs, TRL's GRPO trainer on the same settings, the
validation check, and TRL as a plain one-process run."""

from __future__ import annotations

import os
from contextlib import contextmanager
from pathlib import Path

from gan_cot.shipped import REPO_ROOT
from gan_cot.usage import UsageError, check_model_path

DEFAULT_CONFIG = REPO_ROOT / "configs" / "default.yaml"
TINY_CONFIG = REPO_ROOT / "configs" / "tiny.yaml"  # --tiny: seconds, not minutes
KIMI_CONFIG = REPO_ROOT / "configs" / "baselines" / "grpo-kimi.yaml"
DEFAULT_MODEL = REPO_ROOT / "models" / "ledger-verbose-base"


LAUNCHER_VARIABLES = ("RANK", "LOCAL_RANK", "WORLD_SIZE", "LOCAL_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")


@contextmanager
def plain_process():
    """TRL as a plain one-process run (``python scripts/train_baseline.py``) sees the machine.

    Our trainer's one-process group exports the launcher's variables (``LOCAL_RANK`` ...); seeing them, accelerate
    would take this for a multi-process CPU run, wrap TRL's model in DistributedDataParallel and reset torch's thread
    count, which a standalone TRL run does not do. They are hidden while TRL is built and trains, and restored after.
    """
    import torch
    from accelerate.state import AcceleratorState, DistributedType, PartialState

    saved = {k: os.environ.pop(k) for k in LAUNCHER_VARIABLES if k in os.environ}
    threads = torch.get_num_threads()
    if PartialState._shared_state and PartialState().distributed_type != DistributedType.NO:
        AcceleratorState._reset_state(reset_partial_state=True)  # created by someone else as distributed: redo it
    try:
        yield
    finally:
        os.environ.update(saved)
        torch.set_num_threads(threads)


class Bench:
    """The shared settings, the task, the validation questions and the log."""

    def __init__(self, args, workdir: Path, log):
        self.args = args
        self.work = workdir
        self.log = log
        self.seed = args.seed
        self.q = args.questions
        self.g = args.group_size
        self.n = self.q * self.g
        self.rounds = args.max_rollouts // self.n
        self.model_id = ""
        self.disc = ""

    # -- models and configs ----------------------------------------------------------------------

    def prepare_models(self) -> None:
        if self.args.tiny:
            from gan_cot_lab.reliability.tiny import build_tiny_pair

            policy, disc = build_tiny_pair(self.work / "tiny", seed=self.seed)
            self.model_id, self.disc = str(policy), str(disc)
        else:
            model = self.args.model or str(DEFAULT_MODEL)
            check_model_path(model)
            self.model_id = model
            self.disc = self.args.discriminator or ""

    def our_config(self, name: str, rounds: int):
        from gan_cot.config_loader import load_config
        from gan_cot.trainer_config import AdversarialConfig

        over = [
            f"model={self.model_id}", f"seed={self.seed}", f"rounds={rounds}",
            f"rollout.questions={self.q}", f"rollout.group_size={self.g}", f"output_dir={self.work / name}",
            f"mlflow_dir={self.work / 'mlruns'}", "checkpoint_every=0", "eval.every=0", f"eval.n={self.args.val_n}",
        ]  # fmt: skip
        if self.disc:
            over.append(f"discriminator.name={self.disc}")
        if self.args.max_think_tokens is not None:
            over.append(f"rollout.max_think_tokens={self.args.max_think_tokens}")
        if self.args.max_answer_tokens is not None:
            over.append(f"rollout.max_answer_tokens={self.args.max_answer_tokens}")
        return load_config(AdversarialConfig, TINY_CONFIG if self.args.tiny else DEFAULT_CONFIG, over)

    def settings(self) -> dict:
        import torch

        cfg = self.our_config("settings", max(1, self.rounds))
        self.max_len = cfg.rollout.max_think_tokens + cfg.rollout.max_answer_tokens
        self.micro = min(cfg.loss.micro_batch, self.n)
        if self.n % self.micro:
            raise UsageError(
                f"Q x G = {self.n} chains do not split into micro-batches of {self.micro} (loss.micro_batch): TRL "
                "needs whole micro-batches; choose Q and G so that Q x G is a multiple of it"
            )
        kimi = self.kimi_config()
        return {
            "model": self.model_id,
            "discriminator": cfg.discriminator.name,
            "tiny": self.args.tiny,
            "seed": self.seed,
            "questions": self.q,
            "group_size": self.g,
            "chains_per_round": self.n,
            "max_think_tokens": cfg.rollout.max_think_tokens,
            "max_answer_tokens": cfg.rollout.max_answer_tokens,
            "max_completion_length": self.max_len,
            "temperature": cfg.rollout.temperature,
            "lora_r": cfg.lora.r,
            "lora_alpha": cfg.lora.alpha,
            "micro_batch": self.micro,
            "epochs": cfg.loss.epochs,
            "kl_coef": cfg.loss.kl_coef,
            "clip_eps": cfg.loss.clip_eps,
            "our_lr": cfg.policy.lr,
            "trl_lr": kimi.train.lr,
            "trl_beta": kimi.grpo.beta,
            "trl_kimi_weight": kimi.grpo.kimi_weight,
            "steps": self.args.steps,
            "max_rollouts": self.rounds * self.n,
            "val_n": self.args.val_n,
            "target_tokens_vs_minimal": self.args.target,
            "gen_batch": self.args.gen_batch,
            "threads": torch.get_num_threads(),
        }

    def kimi_config(self):
        from gan_cot.config_loader import load_config
        from gan_cot_lab.baselines.config import BaselineConfig

        over = [
            f"model={self.model_id}", f"seed={self.seed}", "progress=false", f"grpo.num_generations={self.g}",
            f"train.batch_size={self.n}", "train.logging_steps=1000000", "grpo.reward=kimi",
        ]  # fmt: skip
        return load_config(BaselineConfig, KIMI_CONFIG, over)

    def load_base(self):
        import torch

        from gan_cot.models import load_model, load_tokenizer

        return load_model(self.model_id, dtype=torch.float32), load_tokenizer(self.model_id)

    def trl_trainer(self, cfg, examples, name, callbacks, rollout_func=None, **overrides):
        """A GRPOTrainer on a fresh copy of the base with our LoRA, the Kimi reward and our questions in order."""
        from datasets import Dataset
        from trl import GRPOConfig, GRPOTrainer

        from gan_cot.models import render_prompt
        from gan_cot_lab.baselines.common import Context, trl_args
        from gan_cot_lab.baselines.grpo import reward_funcs

        kimi = self.kimi_config()
        model, tok = self.load_base()
        ctx = Context(cfg=kimi, task=self.task, tokenizer=tok, model=model, model_id=self.model_id,
                      out=self.work / name, log=self.log)  # fmt: skip
        funcs, weights = reward_funcs(ctx, examples)
        rows = {
            "prompt": [render_prompt(tok, self.task.prompt(ex)) for ex in examples],
            "row": list(range(len(examples))),
        }
        kwargs = trl_args(kimi, self.work / name)
        kwargs.update(
            per_device_train_batch_size=self.micro, gradient_accumulation_steps=1,
            steps_per_generation=self.n // self.micro, num_generations=self.g, max_completion_length=self.max_len,
            temperature=cfg.rollout.temperature, beta=kimi.grpo.beta, reward_weights=weights, log_completions=False,
            shuffle_dataset=False, logging_steps=1_000_000, disable_tqdm=True,
        )  # fmt: skip
        kwargs.update(overrides)
        trainer = GRPOTrainer(
            model=model, reward_funcs=funcs, args=GRPOConfig(**kwargs), train_dataset=Dataset.from_dict(rows),
            processing_class=tok, peft_config=cfg.lora.peft(), callbacks=callbacks, rollout_func=rollout_func,
        )  # fmt: skip
        return trainer, funcs, tok

    # -- evaluation ------------------------------------------------------------------------------

    def val_eval(self, model, tok) -> dict:
        from gan_cot.evaluate import EvalSettings, evaluate

        settings = EvalSettings(max_new_tokens=self.max_len, seed=self.seed)
        res = evaluate(model, tok, self.task, self.val, settings, show_progress=False)
        return {k: res.get(k) for k in ("accuracy", "mean_tokens", "tokens_vs_minimal")}

    @staticmethod
    def fmt_eval(ev: dict) -> str:
        tvm = ev.get("tokens_vs_minimal")
        return (
            f"accuracy {ev['accuracy']:.3f}, tokens {ev['mean_tokens']:.1f}, vs minimal {tvm:.3f}" if tvm else str(ev)
        )

    def reached(self, ev: dict) -> bool:
        tvm = ev.get("tokens_vs_minimal")
        return tvm is not None and tvm <= self.args.target and ev["accuracy"] >= self.base_eval["accuracy"]

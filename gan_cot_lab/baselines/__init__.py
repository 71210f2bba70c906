"""Baselines from the seed methods, most of them on TRL trainers.

Every baseline shortens the same base policy and is measured the same way: the base is evaluated on the
test split (once per base, task, seed and size: the figures are cached beside the run folder, in ``.base_eval/``), the method
runs, the result is evaluated on the same questions, and one MLflow run named by method and seed (tag ``method``)
gets the flattened config, the task's splits as dataset inputs, base and final accuracy / mean tokens / tokens vs
minimal, the policy's parameter count, the number of sampled completions used for training (``rollouts``), the wall
time, and the final evaluation's per-question rows (``eval/test_rows.json``). With ``init`` the method starts from
a warm start (an adapter merged into the base: pruned-sft's, for a like-for-like comparison with gan-cot) and is
tagged ``<method>-warm``; compression and AES are still measured against the base.

=================  =====================================================================================
method (tag)       what it does
=================  =====================================================================================
srs                Kimi k1.5 shortest rejection sampling: n samples per question, SFT (TRL ``SFTTrainer``,
                   LoRA) on the shortest correct one
dpo                Kimi k1.5 long2short DPO: shortest correct = chosen; wrong ones and correct ones
                   ``long_ratio`` x longer = rejected (TRL ``DPOTrainer``, LoRA)
grpo-<reward>      TRL ``GRPOTrainer`` (LoRA) with a length reward from :mod:`gan_cot.rewards`: kimi,
                   o1pruner, shorterbetter or l1
budget-forcing     no training: at inference the end of thinking is forced after N tokens (S1, elastic
                   reasoning), then the model answers in a few tokens
merge              no training: the base and a shortened model averaged weight by weight (Kimi k1.5)
=================  =====================================================================================
"""

from __future__ import annotations

import importlib
import json
import time
from pathlib import Path

from gan_cot_lab.baselines.common import BaselineError, Context, Outcome
from gan_cot_lab.baselines.config import METHODS, BaselineConfig

# method -> module with ``train(ctx) -> Outcome``; imported on use, so only the TRL trainer needed loads
MODULES = {
    "srs": "gan_cot_lab.baselines.srs",
    "dpo": "gan_cot_lab.baselines.dpo",
    "grpo": "gan_cot_lab.baselines.grpo",
    "budget-forcing": "gan_cot_lab.baselines.budget",
    "merge": "gan_cot_lab.baselines.merge",
    "c3ot": "gan_cot_lab.baselines.c3ot",
    "tokenskip": "gan_cot_lab.baselines.tokenskip",
    "implicit-cot": "gan_cot_lab.baselines.implicit_cot",
    "system1-distill": "gan_cot_lab.baselines.distill",
    "step-skip": "gan_cot_lab.baselines.step_skip",
}
assert set(MODULES) == set(METHODS)
NEEDS_STEPS = (
    "c3ot",
    "implicit-cot",
    "step-skip",
)  # train on the task's reference chains: answer-only records refused


def output_dir(cfg) -> Path:
    return Path(cfg.output_dir) if cfg.output_dir else Path("outputs") / "baselines" / cfg.tag


EVAL_BUDGETS = (200, 8)  # eval.max_think_tokens and eval.max_answer_tokens when the config leaves them null


def _evaluate(cfg, model, tokenizer, task, examples, keep_rows: bool = False, **options) -> dict:
    """The run's evaluation of ``model`` on ``examples``; ``options``: :class:`gan_cot.evaluate.EvalSettings` fields
    over the config's (a method's ``Outcome.eval_options``)."""
    from gan_cot.evaluate import EvalSettings, evaluate

    budgets = {"max_think_tokens": cfg.eval.max_think_tokens or EVAL_BUDGETS[0],
               "max_answer_tokens": cfg.eval.max_answer_tokens or EVAL_BUDGETS[1]}  # fmt: skip
    settings = EvalSettings(**(budgets | options), batch_size=cfg.eval.batch_size, seed=cfg.seed)
    return evaluate(model, tokenizer, task, examples, settings, show_progress=cfg.progress, keep_rows=keep_rows)


def base_evaluation(cfg, model, tokenizer, task, examples) -> dict:
    """The base's figures on ``examples``, read from the cache when the same base, task, seed, size and budget were
    evaluated before (greedy decoding is deterministic)."""
    import hashlib

    from gan_cot.checkpoint import write_json

    key = json.dumps([str(Path(cfg.model).resolve()) if Path(cfg.model).exists() else cfg.model, cfg.task,
                      cfg.data, cfg.seed, len(examples), cfg.eval.max_think_tokens, cfg.eval.max_answer_tokens,
                      cfg.eval.batch_size, cfg.format])  # fmt: skip
    path = output_dir(cfg).parent / ".base_eval" / f"{hashlib.sha256(key.encode()).hexdigest()[:16]}.json"
    if path.exists():
        return json.loads(path.read_text())
    base = _evaluate(cfg, model, tokenizer, task, examples)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_json(path, {k: v for k, v in base.items() if k != "rows"})
    return base


def _log_history(trainer) -> None:
    """The TRL trainer's logged statistics (loss, rewards, lengths) as MLflow step metrics."""
    import math

    import mlflow

    for entry in getattr(getattr(trainer, "state", None), "log_history", []):
        step = int(entry.get("step", 0))
        metrics = {
            f"train/{k}": float(v)
            for k, v in entry.items()
            if k not in ("step", "epoch") and isinstance(v, (int, float)) and math.isfinite(v)
        }
        if metrics:
            mlflow.log_metrics(metrics, step=step)


def run(cfg: BaselineConfig, log=print) -> dict:
    """Evaluate the base, run the method, evaluate its result, log one MLflow run; returns the result dict."""
    import mlflow
    import torch
    from transformers import set_seed

    from gan_cot import tracking
    from gan_cot.config_loader import to_dict
    from gan_cot.models import load_model
    from gan_cot.usage import check_writable_dir
    from gan_cot_lab.baselines.common import count_params

    started = time.time()
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    set_seed(cfg.seed)
    task = cfg.make_task()
    if cfg.method in NEEDS_STEPS and hasattr(task, "require_steps"):  # before any folder or run exists
        task.require_steps("train", f"{cfg.method} trains on the reference steps of its train split")
    out = check_writable_dir(output_dir(cfg))
    test = task.examples("test", cfg.eval.n)
    model_id = cfg.model  # as given: saved adapters record it (relative stays relative)
    tokenizer = cfg.policy_tokenizer(model_id)  # with the prompt instruction (``instruction``)
    model = load_model(model_id, dtype=torch.float32)
    n_params = count_params(model)
    method = importlib.import_module(MODULES[cfg.method])

    tracking.setup(cfg.experiment, cfg.mlflow_dir)
    with mlflow.start_run(run_name=tracking.run_name(cfg.tag, cfg.seed)) as active:
        run_id = active.info.run_id
        mlflow.set_tags({"method": cfg.tag, "seed": str(cfg.seed), "task": cfg.task})
        mlflow.log_params(tracking.flatten(to_dict(cfg)))
        tracking.log_task_inputs(task, cfg.task, cfg.seed, cfg.eval.n, cfg.train_questions)
        (out / "config.json").write_text(json.dumps(to_dict(cfg), indent=2))
        log(f"[{cfg.tag}] evaluating the base {model_id} on {len(test)} test questions")
        base = base_evaluation(cfg, model, tokenizer, task, test)
        log(f"[{cfg.tag}] base: accuracy {base['accuracy']:.3f}, mean tokens {base['mean_tokens']:.1f}")
        if cfg.init:  # the warm start the method begins from, merged (the base above stays the reference)
            log(f"[{cfg.tag}] starting from {cfg.init}")
            model = load_model(cfg.init, dtype=torch.float32)
        ctx = Context(cfg=cfg, task=task, tokenizer=tokenizer, model=model, model_id=model_id, out=out, log=log)
        outcome: Outcome = method.train(ctx)
        if outcome.trainer is not None:
            _log_history(outcome.trainer)
        log(f"[{cfg.tag}] evaluating the result")
        final = _evaluate(cfg, outcome.model, tokenizer, outcome.eval_task or task, test, keep_rows=True,
                          **outcome.eval_options)  # fmt: skip
        tracking.log_eval_rows(final.pop("rows"))
        result = {
            "method": cfg.tag,
            "run_id": run_id,
            "output_dir": str(out),
            "saved": str(outcome.saved) if outcome.saved else None,
            "n": final["n"],
            "seed": cfg.seed,
            "base_accuracy": base["accuracy"],
            "base_mean_tokens": base["mean_tokens"],
            "base_tokens_vs_minimal": base.get("tokens_vs_minimal"),
            "final_accuracy": final["accuracy"],
            "final_mean_tokens": final["mean_tokens"],
            "final_tokens_vs_minimal": final.get("tokens_vs_minimal"),
            "n_params": n_params,
            "rollouts": outcome.rollouts,
            **outcome.metrics,
        }
        result["wall_seconds"] = round(time.time() - started, 1)
        skip = ("method", "run_id", "output_dir", "saved", "n", "seed")
        mlflow.log_metrics({k: float(v) for k, v in result.items() if k not in skip and v is not None})
        (out / "result.json").write_text(json.dumps(result, indent=2))
        mlflow.log_artifact(str(out / "result.json"))
        mlflow.log_artifact(str(out / "config.json"))
    log(
        f"[{cfg.tag}] accuracy {base['accuracy']:.3f} -> {final['accuracy']:.3f}, "
        f"mean tokens {base['mean_tokens']:.1f} -> {final['mean_tokens']:.1f}"
    )
    return result


__all__ = ["METHODS", "MODULES", "BaselineConfig", "BaselineError", "Context", "Outcome", "run"]

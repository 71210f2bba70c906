"""Benchmark: the adversarial trainer against TRL's GRPOTrainer, side by side on one model, in one command.

    python scripts/bench.py                                   # the shipped base, defaults below (~15 min, 2 CPUs)
    python scripts/bench.py --json --seed 0 --steps 3 --group-size 4 --questions 32 --max-rollouts 1920
    python scripts/bench.py --tiny --questions 2 --group-size 2 --max-rollouts 8 --val-n 4    # seconds, for tests

Both trainers get the same base policy, the same LoRA adapter (``policy.*`` of configs/default.yaml), the same
questions in the same order, the same group size G, questions per round Q (N = Q x G sampled chains) and lengths
(``rollout.max_think_tokens`` + ``rollout.max_answer_tokens`` for TRL's ``max_completion_length``). Three figures:

``update_throughput_ratio``
    Policy-update samples/s of ours over TRL's, generation excluded on both sides, on the same N sampled chains.
    Ours: :meth:`AdversarialTrainer.policy_update` through its DeepSpeed engine (old and reference log-probs, then
    ``loss.epochs`` PPO-clip passes in micro-batches of ``loss.micro_batch``). TRL: the training steps of one
    generation batch of ``GRPOTrainer`` configured to do the same work (``per_device_train_batch_size`` = the
    micro-batch, ``steps_per_generation`` = N / micro-batch, ``num_iterations`` = epochs, ``beta`` = ``kl_coef``,
    ``epsilon`` = ``clip_eps``), timed between TRL's ``on_step_begin`` and ``on_step_end`` callbacks, with its
    generation replaced by a ``rollout_func`` that hands back the same chains: its steps still tokenize, score the
    rewards, compute advantages, old and reference log-probs, the loss, backward, clipping and the optimizer step.
    Each side warms up once; then ``--steps`` timed repetitions, alternating ours and TRL's (the machine's load
    drifts), and the ratio of the total samples/s.
``rollouts_to_target_ratio``
    Sampled chains ours needs to reach ``tokens_vs_minimal <= --target`` (1.2) at an accuracy at least the base's
    (greedy, on the first ``--val-n`` validation questions, checked after every round of N chains), over what TRL
    GRPO with the Kimi length reward needs (the grpo-kimi baseline: correctness + ``kimi_weight`` x Kimi k1.5's group
    length reward, its learning rate, warm-up and ``beta`` from configs/baselines/grpo-kimi.yaml, checked after
    every generation batch of N). Each stops at ``--max-rollouts``; if either did not reach the target, the ratio
    is null and both counts (null for the one that did not) and the last figures are reported; when only ours
    reached it, ``rollouts_to_target_ratio_below`` is the bound (ours over the chains TRL ran). A pool from the
    task's reference chains (``sft.pool_source: reference``) samples nothing: its size is reported beside ours.
``generation_time_ratio``
    Greedy generation seconds per answer of the policy ours trained in the previous part (adapter merged, as
    deployed; with an alpha gate, unmerged, the gate choosing each question's alpha and its forward timed too)
    over the base's, on the same validation questions, the same budget and batch size (best of ``--gen-repeats``
    alternating runs).

Everything prints as a table with the settings and wall seconds; the last line is one JSON object (with ``--json``
only that line goes to stdout). A benchmark, not a test: timings depend on the machine and its load (reported).
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gan_cot.cli import REPO_ROOT, UsageError, check_model_path, fail, print_json  # noqa: E402

DEFAULT_CONFIG = REPO_ROOT / "configs" / "default.yaml"
KIMI_CONFIG = REPO_ROOT / "configs" / "baselines" / "grpo-kimi.yaml"
DEFAULT_MODEL = REPO_ROOT / "models" / "ledger-verbose-base"


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--json", action="store_true", help="print only the JSON line on stdout (progress on stderr)")
    p.add_argument("--seed", type=int, default=0, help="seed for sampling, initialisation and data")
    p.add_argument("--steps", type=int, default=3, help="timed policy updates per side, after one warm-up each")
    p.add_argument("--group-size", type=int, default=4, help="G: chains sampled per question")
    p.add_argument("--questions", type=int, default=32, help="Q: questions per round (N = Q x G chains)")
    p.add_argument("--max-rollouts", type=int, default=1920, help="stop each trainer after this many chains")
    p.add_argument("--val-n", type=int, default=64, help="validation questions for the target check and timing")
    p.add_argument("--target", type=float, default=1.2, help="tokens_vs_minimal to reach (accuracy >= the base's)")
    p.add_argument("--model", default=None, help="base policy (default: models/ledger-verbose-base)")
    p.add_argument("--discriminator", default=None, help="discriminator for ours (default: the config's)")
    p.add_argument("--tiny", action="store_true", help="a tiny untrained policy and discriminator built here")
    p.add_argument("--max-think-tokens", type=int, default=None, help="thinking budget (default: the config's)")
    p.add_argument("--max-answer-tokens", type=int, default=None, help="answer budget (default: the config's)")
    p.add_argument("--gen-batch", type=int, default=8, help="batch size of the generation-time measurement")
    p.add_argument("--gen-repeats", type=int, default=2, help="alternating timed generation runs per model")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    p.add_argument("--workdir", default=None, help="folder for adapters and TRL output (default: a temporary one)")
    args = p.parse_args(argv)
    for name in ("steps", "group_size", "questions", "max_rollouts", "val_n", "gen_batch", "gen_repeats"):
        if getattr(args, name) <= 0:
            p.error(f"--{name.replace('_', '-')} must be positive, got {getattr(args, name)}")
    if args.group_size < 2:
        p.error("--group-size must be at least 2: both trainers normalise within the group")
    if args.max_rollouts < args.questions * args.group_size:
        p.error(
            f"--max-rollouts ({args.max_rollouts}) is below one round of Q x G = {args.questions * args.group_size}"
        )
    if args.tiny and args.model:
        p.error("--tiny builds its own policy; leave out --model")
    return args


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
            from gan_cot.discriminator.model import Discriminator
            from gan_cot.models import build_tiny_model, save_pretrained

            model, tok = build_tiny_model(seed=self.seed, hidden_size=32, layers=2, heads=2)
            path = save_pretrained(model, tok, self.work / "tiny-policy")
            self.model_id = str(path)
            self.disc = str(Discriminator.from_backbone(str(path)).save_pretrained(self.work / "tiny-disc"))
        else:
            model = self.args.model or str(DEFAULT_MODEL)
            check_model_path(model)
            self.model_id = str(Path(model).resolve()) if Path(model).exists() else model
            self.disc = self.args.discriminator or ""

    def our_config(self, name: str, rounds: int):
        from gan_cot.adv_config import AdvConfig
        from gan_cot.config import load_config

        over = [
            f"policy.model={self.model_id}", f"seed={self.seed}", f"rounds={rounds}",
            f"rollout.questions={self.q}", f"rollout.group_size={self.g}", f"output_dir={self.work / name}",
            f"mlflow_dir={self.work / 'mlruns'}", "checkpoint_every=0", "eval.every=0", f"eval.n={self.args.val_n}",
        ]  # fmt: skip
        if self.disc:
            over.append(f"discriminator.name={self.disc}")
        if self.args.max_think_tokens is not None:
            over.append(f"rollout.max_think_tokens={self.args.max_think_tokens}")
        if self.args.max_answer_tokens is not None:
            over.append(f"rollout.max_answer_tokens={self.args.max_answer_tokens}")
        if self.args.tiny:  # seconds, not minutes
            over += ["sft.steps=1", "sft.batch_size=4", "discriminator.refresh_steps=1", "loss.micro_batch=4"]
            over += ["sft.pool_questions=0", "sft.warmup_steps=0"]
        return load_config(AdvConfig, DEFAULT_CONFIG, over)

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
            "lora_r": cfg.policy.lora_r,
            "lora_alpha": cfg.policy.lora_alpha,
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
        from gan_cot.baselines.config import BaselineConfig
        from gan_cot.config import load_config

        over = [
            f"model={self.model_id}", f"seed={self.seed}", "progress=false", f"grpo.num_generations={self.g}",
            f"train.batch_size={self.n}", "train.logging_steps=1000000", "grpo.reward=kimi",
        ]  # fmt: skip
        return load_config(BaselineConfig, KIMI_CONFIG, over)

    def load_base(self):
        import torch

        from gan_cot.models import load_model, load_tokenizer

        return load_model(self.model_id, dtype=torch.float32), load_tokenizer(self.model_id)

    def lora(self, cfg):
        from peft import LoraConfig

        return LoraConfig(
            r=cfg.policy.lora_r, lora_alpha=cfg.policy.lora_alpha, target_modules=list(cfg.policy.target_modules),
            lora_dropout=0.0, task_type="CAUSAL_LM",
        )  # fmt: skip

    def trl_trainer(self, cfg, examples, name, callbacks, rollout_func=None, **overrides):
        """A GRPOTrainer on a fresh copy of the base with our LoRA, the Kimi reward and our questions in order."""
        from datasets import Dataset
        from trl import GRPOConfig, GRPOTrainer

        from gan_cot.baselines.common import Context, trl_args
        from gan_cot.baselines.grpo import reward_funcs
        from gan_cot.models import render_prompt

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
            processing_class=tok, peft_config=self.lora(cfg), callbacks=callbacks, rollout_func=rollout_func,
        )  # fmt: skip
        return trainer, funcs, tok

    # -- evaluation ------------------------------------------------------------------------------

    def val_eval(self, model, tok) -> dict:
        from gan_cot.evaluate import evaluate

        res = evaluate(model, tok, self.task, self.val, max_new_tokens=self.max_len, seed=self.seed,
                       show_progress=False)  # fmt: skip
        return {k: res.get(k) for k in ("accuracy", "mean_tokens", "tokens_vs_minimal")}

    def reached(self, ev: dict) -> bool:
        tvm = ev.get("tokens_vs_minimal")
        return tvm is not None and tvm <= self.args.target and ev["accuracy"] >= self.base_eval["accuracy"]

    # -- part 1: update throughput ---------------------------------------------------------------

    def throughput(self) -> dict:
        import torch
        from transformers import TrainerCallback

        from gan_cot.trainer import AdversarialTrainer, seed_everything

        cfg = self.our_config("ours-throughput", 1)
        ours = AdversarialTrainer(cfg, log=self.log)
        ours.setup()
        seed_everything(self.seed)
        samples = ours.rollout(ours.round_questions(0), explore=True)  # as a round samples them (gate: per chain)
        ours.score(samples)
        mean_tokens = statistics.fmean(len(s.completion_ids) for s in samples)
        self.log(f"[throughput] {len(samples)} chains sampled, mean {mean_tokens:.1f} tokens")
        t0 = time.perf_counter()
        ours.policy_update(samples)  # warm-up
        warm_ours = time.perf_counter() - t0
        ours_times: list[float] = []

        fixed: dict[str, list] = {}
        tok = ours.tokenizer
        from gan_cot.models import render_prompt

        questions = sorted({s.example_index for s in samples})
        examples = [ours.train_examples[i] for i in questions]
        for s in samples:
            text = render_prompt(tok, self.task.prompt(ours.train_examples[s.example_index]))
            fixed.setdefault(text, []).append((list(s.prompt_ids), list(s.completion_ids)))

        def rollout_func(prompts, trainer):
            """TRL's generation replaced: the same chains ours updates on, G per prompt, in the order TRL asks."""
            handed: dict[str, int] = {}
            out: dict[str, list] = {"prompt_ids": [], "completion_ids": [], "logprobs": None}
            for p in prompts:
                reps = self.g if prompts.count(p) == 1 else 1  # TRL passes each prompt once or G times
                for _ in range(reps):
                    k = handed.get(p, 0)
                    handed[p] = k + 1
                    p_ids, c_ids = fixed[p][k % len(fixed[p])]
                    out["prompt_ids"].append(p_ids)
                    out["completion_ids"].append(c_ids)
            return out

        cycle = (self.n // self.micro) * cfg.loss.epochs
        trl_times: list[float] = []
        threads: dict[str, int] = {}

        class Timer(TrainerCallback):
            start = 0.0

            def on_step_begin(self, args, state, control, **kw):
                if state.global_step % cycle == 0:
                    Timer.start = time.perf_counter()

            def on_step_end(self, args, state, control, **kw):
                if state.global_step % cycle == 0:
                    trl_times.append(time.perf_counter() - Timer.start)
                    threads["trl"] = torch.get_num_threads()
                    if len(trl_times) > 1:  # the first TRL cycle is its warm-up; then one of ours after each
                        t = time.perf_counter()
                        ours.policy_update(samples)
                        ours_times.append(time.perf_counter() - t)
                        threads["ours"] = torch.get_num_threads()

        os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")
        with plain_process():
            trainer, _, _ = self.trl_trainer(
                cfg, examples, "trl-throughput", [Timer()], rollout_func=rollout_func, num_iterations=cfg.loss.epochs,
                beta=cfg.loss.kl_coef, epsilon=cfg.loss.clip_eps, learning_rate=cfg.policy.lr,
                lr_scheduler_type="constant", warmup_steps=0, max_steps=cycle * (self.args.steps + 1),
            )  # fmt: skip
            torch.manual_seed(self.seed)
            trainer.train()
            distributed = str(trainer.accelerator.distributed_type).split(".")[-1]
        timed_trl = trl_times[1:]
        ours_sps = self.n * len(ours_times) / sum(ours_times)
        trl_sps = self.n * len(timed_trl) / sum(timed_trl)
        res = {
            "ours_samples_per_s": ours_sps,
            "trl_samples_per_s": trl_sps,
            "ours_update_seconds": ours_times,
            "trl_update_seconds": timed_trl,
            "ours_warmup_seconds": warm_ours,
            "trl_warmup_seconds": trl_times[0],
            "trl_optimizer_steps_per_update": cycle,
            "trl_distributed_type": distributed,
            "threads": threads,
            "mean_chain_tokens": mean_tokens,
        }
        del trainer
        return res

    # -- part 2: rollouts to target --------------------------------------------------------------

    def ours_to_target(self) -> dict:
        from gan_cot.trainer import AdversarialTrainer

        cfg = self.our_config("ours-target", self.rounds)
        tr = AdversarialTrainer(cfg, log=self.log)
        tr.setup()
        tr.log_samples = lambda *a, **k: None  # no MLflow run here: the round's sample table is not logged
        history, reached = [], None
        tr.warm_start()  # a sampled SFT pool's chains count as rollouts too; a reference pool samples nothing
        n_pool = min(cfg.sft.pool_questions, len(tr.train_examples))
        pool = n_pool * cfg.sft.pool_samples if cfg.sft.pool_source == "samples" else 0
        references = n_pool if cfg.sft.pool_source == "reference" else 0
        for r in range(self.rounds):
            tr.run_round(r)
            ev = self.val_eval(tr.eval_policy(), tr.tokenizer)  # the gate's alpha per question, if it has one
            history.append({"rollouts": pool + (r + 1) * self.n, **ev})
            self.log(f"[ours] round {r}: {pool + (r + 1) * self.n} rollouts, " + fmt_eval(ev))
            if self.reached(ev):
                reached = pool + (r + 1) * self.n
                break
        adapter = tr.save_adapter(self.work / "ours-adapter")  # with its gate, if it has one
        del tr
        return {"rollouts": reached, "rollouts_run": history[-1]["rollouts"], "last": history[-1],
                "reference_chains": references, "history": history, "adapter": str(adapter)}  # fmt: skip

    def trl_to_target(self) -> dict:
        from transformers import TrainerCallback

        cfg = self.our_config("trl-target", self.rounds)
        from gan_cot.tasks import get_task

        examples = get_task("ledger", seed=cfg.seed).examples("train", max(self.q * self.rounds, 512))
        examples = examples[: self.q * self.rounds]  # the questions ours sees, round by round, in its order
        cycle = self.n // self.micro
        history: list[dict] = []
        box: dict = {}
        bench = self

        class Check(TrainerCallback):
            def on_step_end(self, args, state, control, **kw):
                if state.global_step % cycle:
                    return control
                trainer = box["trainer"]
                ev = bench.val_eval(trainer.model, box["tok"])
                trainer.model.train()
                rollouts = box["funcs"][0].completions_seen
                history.append({"rollouts": rollouts, **ev})
                bench.log(f"[trl] generation batch {len(history) - 1}: {rollouts} rollouts, " + fmt_eval(ev))
                if bench.reached(ev):
                    box["reached"] = rollouts
                    control.should_training_stop = True
                return control

        with plain_process():
            trainer, funcs, tok = self.trl_trainer(
                cfg, examples, "trl-target", [Check()], max_steps=cycle * self.rounds
            )
            box.update(trainer=trainer, funcs=funcs, tok=tok)
            trainer.train()
        del trainer
        return {"rollouts": box.get("reached"), "rollouts_run": history[-1]["rollouts"] if history else 0,
                "last": history[-1] if history else None, "history": history}  # fmt: skip

    # -- part 3: generation time -----------------------------------------------------------------

    def generation_time(self, adapter: str) -> dict:
        import torch

        from gan_cot.gate import GATE_CONFIG, load_gated_policy
        from gan_cot.models import load_model
        from gan_cot.rollout import generate, generate_gated

        base, tok = self.load_base()
        kw = dict(max_new_tokens=self.max_len, batch_size=self.args.gen_batch)
        gated = (Path(adapter) / GATE_CONFIG).exists()
        if gated:  # unmerged, the gate choosing each question's alpha (its features' forward is timed too)
            policy = load_gated_policy(adapter)

            def run_ours(qs):
                return generate_gated(policy, tok, qs, **kw)[0]
        else:
            compressed = load_model(adapter, dtype=torch.float32)  # the adapter merged into its base, as deployed

            def run_ours(qs):
                return generate(compressed, tok, qs, **kw)

        def run_base(qs):
            return generate(base, tok, qs, **kw)

        questions = [self.task.prompt(ex) for ex in self.val]
        times: dict[str, list[float]] = {"base": [], "ours": []}
        tokens: dict[str, float] = {}
        for run in (run_base, run_ours):  # warm-up
            run(questions[: min(2, len(questions))])
        for _ in range(self.args.gen_repeats):
            for name, run in (("base", run_base), ("ours", run_ours)):
                t = time.perf_counter()
                out = run(questions)
                times[name].append((time.perf_counter() - t) / len(questions))
                tokens[name] = statistics.fmean(g[0].num_tokens for g in out)
        return {
            "base_seconds_per_answer": min(times["base"]),
            "ours_seconds_per_answer": min(times["ours"]),
            "base_mean_tokens": tokens["base"],
            "ours_mean_tokens": tokens["ours"],
            "ours_gated": gated,
            "runs": times,
        }


def fmt_eval(ev: dict) -> str:
    tvm = ev.get("tokens_vs_minimal")
    return f"accuracy {ev['accuracy']:.3f}, tokens {ev['mean_tokens']:.1f}, vs minimal {tvm:.3f}" if tvm else str(ev)


def ratio(a, b):
    if a is None or b is None or not b or not (math.isfinite(a) and math.isfinite(b)):
        return None
    return a / b


def table(result: dict) -> str:
    s, tp, rt, gt = result["settings"], result["throughput"], result["rollouts_to_target"], result["generation_time"]
    ours_r, trl_r = rt["ours"], rt["trl"]

    def num(x, f="{:.3f}"):
        return "n/a" if x is None else f.format(x)

    rows = [
        ("figure", "ours", "TRL GRPO", "ratio (target)"),
        ("update samples/s", num(tp["ours_samples_per_s"], "{:.2f}"), num(tp["trl_samples_per_s"], "{:.2f}"),
         f"{num(result['update_throughput_ratio'])} (>= 1.0)"),
        ("rollouts to target", f"{num(ours_r['rollouts'], '{}')} of {ours_r['rollouts_run']} run"
         + (f" (+{ours_r['reference_chains']} reference chains)" if ours_r.get("reference_chains") else ""),
         f"{num(trl_r['rollouts'], '{}')} of {trl_r['rollouts_run']} run",
         (f"< {result['rollouts_to_target_ratio_below']:.3f}" if result.get("rollouts_to_target_ratio_below")
          else num(result["rollouts_to_target_ratio"])) + " (<= 0.67)"),
        ("last val accuracy", num(ours_r["last"]["accuracy"]), num((trl_r["last"] or {}).get("accuracy")),
         f"base {rt['base']['accuracy']:.3f}"),
        ("last val tokens_vs_minimal", num(ours_r["last"]["tokens_vs_minimal"]),
         num((trl_r["last"] or {}).get("tokens_vs_minimal")), f"base {num(rt['base']['tokens_vs_minimal'])}"),
        ("greedy s/answer", num(gt["ours_seconds_per_answer"], "{:.4f}"), "-",
         f"{num(result['generation_time_ratio'])} (vs base {gt['base_seconds_per_answer']:.4f})"),
    ]  # fmt: skip
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    lines.append("")
    lines.append("settings: " + ", ".join(f"{k}={v}" for k, v in s.items()))
    lines.append("wall seconds: " + ", ".join(f"{k} {v:.1f}" for k, v in result["wall_seconds"].items()))
    lines.append(f"load average: start {result['load_average']['start']}, end {result['load_average']['end']}")
    return "\n".join(lines)


NOTES = (
    "update throughput: generation excluded on both sides, same N sampled chains (sampled once by our trainer); "
    "ours = AdversarialTrainer.policy_update (old + reference log-probs, loss.epochs PPO-clip passes) through its "
    "DeepSpeed engine; TRL = GRPOTrainer's training steps for one generation batch (num_iterations = epochs, beta = "
    "kl_coef, same micro-batch), timed from on_step_begin to on_step_end, its generation replaced by a rollout_func "
    "returning those chains (reward scoring, advantages, old/reference log-probs, loss, backward, clipping, "
    "optimizer step all included); one warm-up each, then alternating timed repetitions. "
    "rollouts to target: ours first fills its SFT pool (sft.pool_source: sampled chains count as rollouts; the "
    "task's reference chains, pruned by the discriminator, are reported beside the count, they are not sampled), "
    "then runs whole rounds (SFT on its shortest/pruned correct chains, rollout, discriminator "
    "scoring, update, discriminator refresh on the task's gold step labels); TRL GRPO is the grpo-kimi baseline "
    "(correctness + Kimi length reward; its lr, warm-up and beta) with our batch, group, lengths, LoRA and question "
    "order; both checked greedily on the validation subset after every N chains; a null ratio means one or both "
    "did not reach the target within max_rollouts (when only ours did, rollouts_to_target_ratio_below bounds it: "
    "ours over the rollouts TRL ran without reaching it). generation time: greedy, ours = the adapter from the "
    "rollouts-to-target part (whether or not it reached the target) merged into the base (with an alpha gate: "
    "unmerged, the gate choosing each question's alpha, its forward timed too), against the base."
)


def run(args, log) -> dict:
    import torch

    from gan_cot.tasks import get_task
    from gan_cot.trainer import init_distributed

    started = time.time()
    load_start = round(os.getloadavg()[0], 2)
    if args.threads:
        torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory(prefix="gan-cot-bench-") as tmp:
        work = Path(args.workdir) if args.workdir else Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        b = Bench(args, work, log)
        b.prepare_models()
        settings = b.settings()
        init_distributed()
        b.task = get_task("ledger", seed=args.seed)
        b.val = b.task.examples("validation", args.val_n)
        walls: dict[str, float] = {}

        t = time.time()
        base, tok = b.load_base()
        b.base_eval = b.val_eval(base, tok)
        del base
        log(f"[base] {fmt_eval(b.base_eval)}")
        walls["base_eval"] = time.time() - t

        t = time.time()
        tp = b.throughput()
        walls["throughput"] = time.time() - t
        log(f"[throughput] ours {tp['ours_samples_per_s']:.2f} samples/s, TRL {tp['trl_samples_per_s']:.2f}")

        t = time.time()
        ours = b.ours_to_target()
        walls["ours_to_target"] = time.time() - t
        t = time.time()
        trl = b.trl_to_target()
        walls["trl_to_target"] = time.time() - t

        t = time.time()
        gen = b.generation_time(ours.pop("adapter"))
        walls["generation_time"] = time.time() - t
        walls["total"] = time.time() - started
    return {
        "update_throughput_ratio": ratio(tp["ours_samples_per_s"], tp["trl_samples_per_s"]),
        "rollouts_to_target_ratio": ratio(ours["rollouts"], trl["rollouts"]),
        # ours reached the target and TRL did not within its run: the ratio is below ours / TRL's rollouts run
        "rollouts_to_target_ratio_below": ratio(ours["rollouts"], trl["rollouts_run"])
        if ours["rollouts"] is not None and trl["rollouts"] is None
        else None,
        "generation_time_ratio": ratio(gen["ours_seconds_per_answer"], gen["base_seconds_per_answer"]),
        "ours_rollouts_to_target": ours["rollouts"],
        "trl_rollouts_to_target": trl["rollouts"],
        "throughput": tp,
        "rollouts_to_target": {"base": b.base_eval, "ours": ours, "trl": trl},
        "generation_time": gen,
        "settings": settings,
        "notes": NOTES,
        "wall_seconds": {k: round(v, 1) for k, v in walls.items()},
        "load_average": {"start": load_start, "end": round(os.getloadavg()[0], 2)},
    }


def main(argv=None) -> int:
    args = parse_args(argv)

    def log(message: str) -> None:
        print(message, file=sys.stderr if args.json else sys.stdout, flush=True)

    import logging
    import warnings

    warnings.filterwarnings("ignore")
    logging.getLogger("transformers").setLevel(logging.ERROR)
    try:
        result = run(args, log)
    except UsageError as e:
        fail(str(e))
    if not args.json:
        print(table(result), flush=True)
    print_json(result)
    return 0


if __name__ == "__main__":
    sys.exit(main())

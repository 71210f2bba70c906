"""The adversarial loop on DeepSpeed engines.

Before round 0 a warm start fills the SFT pool (one pruned target chain per training question, :mod:`gan_cot.pool`)
and trains on it. Then each round:

1. **SFT**: a few steps on the pool;
2. **rollout**: G chains per question from the current policy under the thinking budget, each at the alpha the gate
   gives it (:mod:`gan_cot.rollout`);
3. **score**: the discriminator's class probabilities for every step, the answer check, and per-token advantages
   normalised within each group (:mod:`gan_cot.scoring`); the pool keeps each question's shortest correct chain;
4. **update**: PPO-clip epochs with those advantages and a KL penalty to the base (:mod:`gan_cot.update`); a learned
   gate learns from its own clipped loss on the same chains (:mod:`gan_cot.gate`);
5. **refresh**: in adversarial mode the discriminator is measured on, then trained on, the new chains
   (:mod:`gan_cot.discriminator.refresh`); frozen (plug and play), it stays as it is;
6. **log**: the round's metrics to MLflow (:mod:`gan_cot.run_logger`) and a checkpoint every few rounds
   (:mod:`gan_cot.checkpoint`).

What it leaves out on purpose: no value network (advantages come from group normalisation and step credit, as in
GRPO), no reward model other than the discriminator and the task's answer check.
"""

from __future__ import annotations

import contextlib
import json
import math
import time
from pathlib import Path

import torch

from gan_cot import shipped
from gan_cot.checkpoint import Checkpoints, atomic_dir, seed_everything, write_json
from gan_cot.distributed import NonFiniteLoss, Strategy, init_distributed
from gan_cot.gate import build_gate
from gan_cot.generation import ENGINES
from gan_cot.guard import Guard
from gan_cot.models import resolve_dtype
from gan_cot.pool import SFTPool
from gan_cot.rollout import rollout
from gan_cot.round_context import RoundContext
from gan_cot.run_logger import RunLogger
from gan_cot.scoring import rollout_stats, score
from gan_cot.tracking import ROW_KEYS
from gan_cot.update import policy_update


class StageClock:
    """Wall-clock seconds of named stages: ``with clock("rollout"): ...`` adds ``time_rollout`` to :attr:`seconds`
    (logged as ``time/rollout``), so a run says where its time went."""

    def __init__(self, on_start=None):
        self.seconds: dict[str, float] = {}
        self.on_start = on_start  # called with each stage's name as it starts (the progress bar shows it)

    @contextlib.contextmanager
    def __call__(self, stage: str):
        if self.on_start is not None:
            self.on_start(stage)
        start = time.perf_counter()
        try:
            yield
        finally:
            key = f"time_{stage}"
            self.seconds[key] = self.seconds.get(key, 0.0) + time.perf_counter() - start


class AdversarialTrainer:
    """Owns the policy engine, the discriminator, the SFT pool and the gate, and runs the loop."""

    def __init__(self, cfg, resume: bool = False, log=print):
        self.cfg = cfg
        self.resume = resume
        self.log = log
        self.out = Path(cfg.output_dir)
        self.gate = build_gate(cfg.gate)
        self.run_id: str | None = None
        self.start_round = 0

    # -- setup ----------------------------------------------------------------------------------------

    def setup(self) -> None:
        import deepspeed
        from peft import get_peft_model

        from gan_cot.discriminator.model import Discriminator
        from gan_cot.models import load_model

        cfg = self.cfg
        rank, world = init_distributed()
        seed_everything(cfg.seed + rank)
        self.task = cfg.make_task()
        n_train = max(cfg.rollout.questions * cfg.rounds, cfg.sft.pool_questions, 512)
        self.train_examples = self.task.examples("train", n_train)
        self.tokenizer = cfg.policy_tokenizer()  # with the prompt instruction (``instruction``)
        dtype = resolve_dtype(cfg.policy.dtype)
        base = load_model(cfg.model, dtype=dtype)
        if cfg.policy.gradient_checkpointing:
            if hasattr(base, "activation_checkpointing_enable"):  # newer transformers: the old name warns
                base.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
            else:
                base.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        model = get_peft_model(base, cfg.lora.peft())
        self.gate.attach(model, base.config.hidden_size, cfg.seed)  # before the engine: it owns the gate's weights
        params = [p for p in model.parameters() if p.requires_grad]
        ds_config = json.loads(Path(shipped.resolve(cfg.deepspeed)).read_text())
        ds_config["train_micro_batch_size_per_gpu"] = cfg.loss.micro_batch
        ds_config["gradient_accumulation_steps"] = 1
        ds_config.pop("train_batch_size", None)
        ds_config["bf16"] = {**ds_config.get("bf16", {}), "enabled": dtype == torch.bfloat16}
        optimizer = torch.optim.AdamW(
            self.gate.optimizer_groups(params, cfg.policy.lr), lr=cfg.policy.lr, weight_decay=0.0
        )
        engine, *_ = deepspeed.initialize(model=model, model_parameters=params, optimizer=optimizer, config=ds_config)
        self.strategy = Strategy(engine, rank, world, cfg.max_nan_steps, self.log)
        self.disc = Discriminator.from_config(cfg.discriminator, device=self.strategy.device)
        answers = {self.task.prompt(ex): ex.answer for ex in self.train_examples}
        self.disc.bind_policy(self.strategy.model, self.tokenizer, answers, self.task.format)  # redundancy: probe
        self.pool = SFTPool(cfg, self.tokenizer, self.task, self.train_examples)
        self.checkpoints = Checkpoints(self.out / "checkpoints", self.strategy)
        self.logger = RunLogger(cfg, self.out, self.strategy.is_main, self.log)
        self.ctx = RoundContext(
            self.strategy.model, self.tokenizer, self.task, self.train_examples, self.gate, self.strategy,
            ENGINES[cfg.rollout.engine](cfg),
        )  # fmt: skip
        self.guard = Guard(cfg.guard, self.strategy, self.log)

    def method(self) -> str:
        """The run's ``method`` tag: gan-cot (or gan-cot-length for the ablation) and the gate's suffix (none for the
        default's learned gate, ``-nogate``, ``-alpha0.5``), as run_comparison.py names its rows."""
        base = "gan-cot" if self.cfg.credit.mode == "discriminator" else "gan-cot-length"
        return base + self.gate.method_suffix

    # -- the loop -------------------------------------------------------------------------------------

    def train(self) -> dict:
        cfg = self.cfg
        started = time.time()
        self.setup()
        resumed = self.resume and self.load_checkpoint()
        self.run_id = self.logger.start(self.run_id, self.resume, self.method(), self.start_round)
        r = None
        try:
            base = self.base_evaluation(resumed)
            if not resumed:
                self.logger.metrics(self.warm_start())
            for r in range(self.start_round, cfg.rounds):
                self.logger.round(r, self.run_round(r))
                if cfg.checkpoint_every and (r + 1) % cfg.checkpoint_every == 0 and r + 1 < cfg.rounds:
                    self.save_checkpoint(r)
            if self.guard.active:
                self.logger.metrics({f"final_{k}": v for k, v in self.guard_check("the end").items()})
            if cfg.gate.select:
                self.logger.metrics(self.select_alpha())
        except NonFiniteLoss as e:
            self.logger.fail()
            if r is None:
                raise SystemExit(f"error: {e} in the warm start; lower sft.lr or check the data") from e
            self.save_checkpoint(r)
            raise SystemExit(f"error: {e}; the run stopped with a checkpoint in {self.checkpoints.root}") from e
        except BaseException:
            self.logger.fail()
            raise
        final = self.evaluate("test", cfg.eval.n, keep_rows=True)
        result = {
            "run_id": self.run_id,
            "output_dir": str(self.out),
            "base_accuracy": base["accuracy"],
            "accuracy": final["accuracy"],
            "base_mean_tokens": base["mean_tokens"],
            "mean_tokens": final["mean_tokens"],
            "base_tokens_vs_minimal": base.get("tokens_vs_minimal"),
            "tokens_vs_minimal": final.get("tokens_vs_minimal"),
            "n": final["n"],
            "seed": cfg.seed,
            "credit_mode": cfg.credit.mode,
            "guard_actions": self.guard.actions,
            "wall_seconds": round(time.time() - started, 1),
            **self.gate.result(final),
            **({"selected_alpha": self.gate.selected} if cfg.gate.select else {}),
        }
        adapter = self.save_adapter(self.out / "adapter")
        if self.strategy.is_main:
            self.disc.save_pretrained(self.out / "discriminator")
            write_json(self.out / "result.json", result, indent=2)
            self.logger.finish(final, adapter, rows=final["rows"], base=base)
        self.save_checkpoint(cfg.rounds - 1)
        return result

    def run_round(self, r: int) -> dict:
        """One round, stage by stage; returns its metrics, each stage's wall-clock seconds among them (``time/``)."""
        cfg = self.cfg
        metrics: dict[str, float] = {}
        clock = StageClock(on_start=lambda stage: self.logger.stage(r, stage))
        factor = self.lr_factor(r)
        self.strategy.set_lr(cfg.policy.lr * factor)
        with clock("sft"):
            metrics.update(self.pool.train(self.strategy, self.gate, r, cfg.sft.steps, self.sft_lr(factor)))
        with clock("rollout"):
            rollout = self.rollout(self.round_questions(r), explore=True)
        with clock("score"):
            scores = self.score(rollout)
            if not cfg.sft.pool_frozen:
                self.pool.offer(rollout, scores)
        with clock("update"):
            metrics.update(policy_update(self.ctx, rollout, scores, cfg.loss))
        with clock("refresh"):
            metrics.update(self.refresh(rollout, scores))
        metrics.update(rollout_stats(rollout, scores, self.strategy))
        metrics.update(self.gate.round_metrics(rollout, self.train_examples, self.strategy))
        if self.guard.active and cfg.guard.every and (r + 1) % cfg.guard.every == 0:
            with clock("guard"):
                metrics.update(self.guard_check(f"round {r}"))
        if cfg.eval.every and (r + 1) % cfg.eval.every == 0:
            with clock("eval"):
                ev = self.evaluate("validation", cfg.eval.round_n)
            metrics.update({f"val_{k}": v for k, v in ev.items() if isinstance(v, float)})
        metrics["lr"] = self.strategy.lr
        if r % 5 == 0 or r == cfg.rounds - 1:
            self.logger.samples(r, rollout, scores)
        return metrics | clock.seconds

    # -- stages ---------------------------------------------------------------------------------------

    def round_questions(self, r: int) -> list[int]:
        """This process's share of the round's questions (disjoint across processes)."""
        n = self.cfg.rollout.questions
        start = (r * n) % len(self.train_examples)
        idx = [(start + i) % len(self.train_examples) for i in range(n)]
        return idx[self.strategy.rank :: self.strategy.world]

    def rollout(self, indices: list[int], group_size=None, explore: bool = False, temperature=None):
        """Chains for training questions ``indices`` from the policy as it is now (the rollout engine synced first)."""
        self.ctx.rollout_engine.sync(self.ctx.policy, self.gate)
        with self.strategy.for_generation():
            return rollout(self.ctx, indices, self.cfg.rollout, group_size, explore, temperature)

    def score(self, rollout):
        """The rollout's step probabilities and per-token advantages under the run's ``credit`` section."""
        return score(self.ctx, rollout, self.disc, self.cfg.credit, prune_targets=self.cfg.sft.source == "pruned")

    def sample_and_score(self, indices: list[int], group_size: int):
        """A sampled warm-start pool's chains (``sft.pool_source: samples``), scored."""
        rollout = self.rollout(indices, group_size, temperature=self.cfg.sft.pool_temperature)
        return rollout, self.score(rollout)

    def warm_start(self) -> dict:
        """Before round 0: fill the SFT pool (``sft.pool_questions``), teach the discriminator the pool's policy labels,
        then ``sft.warmup_steps`` SFT steps on it. The guard then checks the warm-started policy on held-out questions
        against its base; when it fell, the pruning backs off one rung (discriminator -> policy labels -> no pruning)
        and the warm start runs again from the initial adapter."""
        cfg = self.cfg.sft
        out: dict[str, float] = {}
        clock = StageClock()
        rungs = {"discriminator": ["discriminator", "policy", "none"], "policy": ["policy", "none"]}[cfg.prune_by]
        if cfg.source != "pruned" or cfg.pool_source != "reference":
            rungs = [cfg.prune_by]  # nothing to back off to: the pool is not pruned reference chains
        initial = self.guard.snapshot() if cfg.backoff else None  # the adapter a backed-off warm start starts from
        for rung, prune_by in enumerate(rungs):
            if cfg.pool_questions:
                with clock("pool"):
                    labeler = self.policy_labeler() if prune_by == "policy" else None
                    out.update(
                        self.pool.fill(cfg.pool_questions, self.disc, self.sample_and_score, self.strategy, labeler,
                                       prune=prune_by != "none")
                    )  # fmt: skip
                    if labeler is not None and labeler.cost:
                        out.update(
                            {
                                f"pool_{k}": v
                                for k, v in zip(labeler.cost, self.strategy.sum(list(labeler.cost.values())))
                            }
                        )
                    out.update(self.discriminator_warmup())
                if self.strategy.is_main:
                    self.log(f"pool ({prune_by}): " + ", ".join(f"{k} {v:.3g}" for k, v in sorted(out.items())))
            with clock("warm_start"):
                warm = self.pool.train(self.strategy, self.gate, -1, cfg.warmup_steps, cfg.lr, self.warm_schedule())
            if warm:
                out["warmup_sft_loss"] = warm["sft_loss"]
                if self.strategy.is_main:
                    self.log(f"warm-up: {cfg.warmup_steps} SFT steps, sft_loss {warm['sft_loss']:.3g}")
            if warm and cfg.backoff and prune_by == "policy" and self.pool.records:
                with clock("backoff"):
                    out.update(self.backoff(initial))
            if not self.guard.active or rung == len(rungs) - 1:
                break
            with clock("guard"):
                accuracy = self.validation_accuracy()
            out["warmup_val_accuracy"] = accuracy
            if self.guard.passes(accuracy):
                self.guard.keep(accuracy)
                break
            self.guard.say(
                f"guard: the warm start pruned by {prune_by} reaches {accuracy:.3f} on validation, below the base's "
                f"{self.guard.base_accuracy:.3f} by more than {self.guard.margin}: backing off to {rungs[rung + 1]}"
            )
            self.guard.restore(self.guard.good)
            out["warmup_backoff"] = rung + 1.0
        return out | clock.seconds

    def backoff(self, initial) -> dict:
        """``sft.backoff``: the warm-started policy's held-out check per drop (:mod:`gan_cot.backoff`). The drops
        whose nearest left-out steps come from its wrong chains are taken back in the pool's labels; when any was,
        the discriminator learns the new labels and the warm start runs again from ``initial`` (the adapter before
        it). Returns ``backoff_*`` figures and the new pool's."""
        from gan_cot.backoff import backoff_labels

        cfg, s = self.cfg.sft, self.strategy
        held = self.evaluate("validation", cfg.backoff_questions, keep_rows=True, completions=True)
        by_id = {ex.id: ex for ex in self.task.examples("validation", cfg.backoff_questions)}
        rows = held["rows"]
        records = self.pool.records
        with s.for_generation():
            labels, stats = backoff_labels(
                s.model, self.tokenizer, self.task, [self.train_examples[i] for i in self.pool.record_index],
                [r.steps for r in records], [r.labels for r in records], [by_id[r["id"]] for r in rows],
                [r["completion"] for r in rows], [bool(r["correct"]) for r in rows], cfg.backoff_neighbours,
                cfg.backoff_z, self.cfg.rollout.batch_size,
            )  # fmt: skip
        drops, restored = s.sum([stats.drops, stats.restored])
        out = {
            "backoff_val_accuracy": held["accuracy"], "backoff_omitted": float(stats.omitted),
            "backoff_omitted_wrong": float(stats.omitted_wrong), "backoff_threshold": stats.threshold,
            "backoff_drops": drops, "backoff_restored": restored,
        }  # fmt: skip
        if s.is_main:
            self.log(
                f"back-off: the warm-started policy is right on {held['accuracy']:.3f} of {stats.questions} validation "
                f"questions and leaves out {stats.omitted} reference steps ({stats.omitted_wrong} in wrong chains); "
                f"{restored:.0f} of {drops:.0f} drops have neighbours wrong above {stats.threshold:.3f} and are taken back"
            )
        if not restored:
            return out
        out.update({f"backoff_{k}": v for k, v in self.pool.relabel(labels, s).items()})
        out.update({f"backoff_{k}": v for k, v in self.discriminator_warmup().items()})
        self.guard.restore(initial)
        warm = self.pool.train(s, self.gate, -1, cfg.warmup_steps, cfg.lr, self.warm_schedule())
        if warm:
            out["warmup_sft_loss"] = warm["sft_loss"]
            if s.is_main:
                self.log(f"warm-up again on the backed-off pool: {cfg.warmup_steps} SFT steps, sft_loss "
                         f"{warm['sft_loss']:.3g}")  # fmt: skip
        return out

    def policy_labeler(self):
        """(examples, steps) -> what the current policy still answers without each step (the pool's pruning)."""
        from gan_cot.discriminator.refresh import policy_records

        def label(examples, steps):
            with self.strategy.for_generation():
                records = policy_records(
                    self.strategy.model, self.tokenizer, self.task, examples, steps, self.cfg.discriminator,
                    self.cfg.rollout, label.cost,
                )  # fmt: skip
            return [r.labels for r in records]

        label.cost = {}  # the confirmations' counts over the whole fill (discriminator.label_confirm)
        return label

    def discriminator_warmup(self) -> dict:
        """``discriminator.warmup_steps`` steps on the pool's policy labels (adversarial mode), so the first rounds'
        step credit and pruning already score what this policy needs."""
        import random

        from gan_cot.discriminator.refresh import train_on

        d = self.cfg.discriminator
        if d.mode != "adversarial" or not d.warmup_steps or not self.pool.records:
            return {}
        records = self.pool.records
        counts = {lab: sum(r.labels.count(lab) for r in records) for lab in ("useful", "redundant", "wrong")}
        total = max(1, sum(counts.values()))
        loss = train_on(self.disc, records, d, self.strategy, random.Random(self.cfg.seed), d.warmup_steps,
                        desc="discriminator (pool labels)")  # fmt: skip
        return {"warmup_disc_loss": loss, **{f"pool_label_frac_{k}": v / total for k, v in counts.items()}}

    def select_alpha(self) -> dict:
        """``gate.select``: the policy as trained (its gate, or alpha 1 without one) against each of those fixed alphas
        on the guard's validation questions (``guard.n``); the most accurate, then the shortest, answers from here on
        (the policy as trained on a tie). Returns each candidate's validation accuracy and tokens and the pick
        (``select_alpha``; -1 for the gate)."""
        from gan_cot.gate.model import GatedPolicy

        n = self.cfg.guard.n
        own = "gate" if self.gate.kind == "learned" else 1.0  # the policy as trained: its gate, or the plain adapter
        found = {own: self.evaluate("validation", n)}
        for a in map(float, self.cfg.gate.select):
            if a not in found:
                found[a] = self.evaluate("validation", n, policy=GatedPolicy(self.strategy.model, None, a))
        best = max(found.values(), key=lambda v: (v["accuracy"], -v["mean_tokens"]))  # the first on a tie
        pick = next(k for k, v in found.items() if v is best)
        self.gate.selected = None if pick == own else pick
        label = {k: "gate" if k == "gate" else f"alpha{k:g}" for k in found}
        out = {"select_alpha": -1.0 if pick == "gate" else pick}
        for k, v in found.items():
            out |= {f"select_accuracy_{label[k]}": v["accuracy"], f"select_tokens_{label[k]}": v["mean_tokens"]}
        if self.strategy.is_main:
            shown = ", ".join(f"{label[k]} {v['accuracy']:.3f}/{v['mean_tokens']:.1f}" for k, v in found.items())
            chosen = "the policy as trained" if pick == own else f"alpha {pick:g}"
            self.log(f"select: validation accuracy/tokens on {n} questions: {shown}; {chosen} answers from here on")
        return out

    def validation_accuracy(self) -> float:
        return self.evaluate("validation", self.cfg.guard.n)["accuracy"]

    def guard_check(self, where: str) -> dict:
        return self.guard.check(self.validation_accuracy(), where)

    def refresh(self, rollout, scores) -> dict:
        from gan_cot.discriminator.refresh import refresh_discriminator

        d = self.cfg.discriminator
        with self.strategy.for_generation() if d.labels != "gold" else contextlib.nullcontext():
            seed = len(self.pool) + self.strategy.rank
            return refresh_discriminator(self.ctx, self.disc, rollout, scores, d, self.cfg.rollout, seed)

    def lr_factor(self, r: int) -> float:
        """The adapter's learning-rate multiplier in round ``r`` (``policy.lr_schedule``); 1 for the warm-up."""
        p = self.cfg.policy
        if p.lr_schedule == "constant" or r < 0:
            return 1.0
        t = r / max(1, self.cfg.rounds - 1)
        return p.lr_floor + (1 - p.lr_floor) * 0.5 * (1 + math.cos(math.pi * t))

    def warm_schedule(self):
        """``sft.warmup_schedule``: the warm start's learning-rate multiplier per step (None: constant)."""
        if self.cfg.sft.warmup_schedule == "constant":
            return None
        from gan_cot.sft import warmup_cosine_factor

        floor = self.cfg.policy.lr_floor
        return lambda step, total: warmup_cosine_factor(step, min(50, max(1, total // 10)), total, floor)

    def sft_lr(self, factor: float) -> float | None:
        return None if self.cfg.sft.lr is None else self.cfg.sft.lr * factor

    @torch.no_grad()
    def evaluate(self, split: str, n: int, policy=None, keep_rows: bool = False, completions: bool = False) -> dict:
        """Greedy accuracy and tokens on ``n`` questions of ``split``, sharded over processes and gathered, of the
        policy as it answers (through its gate) or of ``policy``; ``keep_rows``: with ``rows``, every question's id,
        difficulty, correctness, tokens and (gated) alpha, gathered from every process."""
        from gan_cot.evaluate import EvalSettings, evaluate
        from gan_cot.gate.stats import flat_alpha_stats

        s = self.strategy
        examples = self.task.examples(split, n)[s.rank :: s.world]
        policy = self.gate.eval_policy(s.model) if policy is None else policy
        gated_eval = policy is not s.model
        think, answer = self.cfg.eval_budgets
        settings = EvalSettings(
            max_think_tokens=think, max_answer_tokens=answer, batch_size=self.cfg.eval.batch_size, seed=self.cfg.seed
        )
        with s.for_generation():
            res = evaluate(
                policy, self.tokenizer, self.task, examples, settings, show_progress=s.is_main,
                keep_rows=gated_eval or keep_rows,
            )  # fmt: skip
        keys = ["accuracy", "mean_tokens", "mean_minimal_tokens", "mean_thinking_tokens", "mean_answer_tokens"]
        keys += ["well_formed"]
        *sums, total = s.sum([res.get(k, 0.0) * len(examples) for k in keys] + [len(examples)])
        out = {k: v / total for k, v in zip(keys, sums)}
        if out["mean_minimal_tokens"]:
            out["tokens_vs_minimal"] = out["mean_tokens"] / out["mean_minimal_tokens"]
        else:  # no minimal chain (GSM8K): no figure rather than a 0.0 that reads as a measurement
            del out["mean_minimal_tokens"]
        out["n"] = int(total)
        if gated_eval:
            rows = s.gather([(row["alpha"], row["difficulty"]) for row in res["rows"]])
            out.update(flat_alpha_stats([a for a, _ in rows], [d for _, d in rows]))
        if keep_rows:
            keys = (*ROW_KEYS, "completion") if completions else ROW_KEYS
            out["rows"] = s.gather([{k: row[k] for k in keys if k in row} for row in res["rows"]])
        return out

    def base_evaluation(self, resumed: bool) -> dict:
        """The base model (adapter off) on the test questions, once per run (a resumed run reads it back)."""
        path = self.out / "base_eval.json"
        if resumed and path.exists():
            base = json.loads(path.read_text())
            self.guard.base_accuracy = base.get("val_accuracy")
            self.guard.keep(float("nan"))  # the resumed state: what a later failure rolls back to
            return base
        model = self.strategy.model
        with model.disable_adapter():
            base = self.evaluate("test", self.cfg.eval.n, policy=model, keep_rows=True)
            if self.guard.active:
                base["val_accuracy"] = self.evaluate("validation", self.cfg.guard.n, policy=model)["accuracy"]
        if self.guard.active:  # the initial adapter adds nothing yet: the base is the first state that passes
            self.guard.base_accuracy = base["val_accuracy"]
            self.guard.keep(base["val_accuracy"])
        if self.strategy.is_main:
            write_json(path, base)
            n_params = sum(p.numel() for p in model.get_base_model().parameters())
            self.logger.metrics({f"base_{k}": v for k, v in base.items() if isinstance(v, float)})
            self.logger.metrics({"n_params": float(n_params)})
        return base

    # -- saving and resuming --------------------------------------------------------------------------

    def save_adapter(self, path: str | Path) -> Path:
        """The adapter, the tokenizer and the gate (``load_gated_policy(path)`` reads them back), or the adapter
        with a fixed alpha folded in, written to a temporary folder and renamed to ``path``."""
        path = Path(path)
        if not self.strategy.is_main:
            self.strategy.save_adapter(path)  # the collective of a ZeRO-3 gather
            return path
        with atomic_dir(path) as tmp:
            self.strategy.save_adapter(tmp)
            self.tokenizer.save_pretrained(tmp)
            self.gate.save(tmp)
        return path

    def save_checkpoint(self, r: int) -> None:
        def extra(folder: Path) -> None:
            self.strategy.save_adapter(folder / "adapter")
            if self.strategy.is_main:
                if self.gate.kind == "learned":  # a copy to read; the engine state is what resume loads
                    self.gate.save(folder / "adapter")
                self.disc.save_pretrained(folder / "discriminator")

        self.checkpoints.save(r, {"run_id": self.run_id, "pool": self.pool.state()}, extra)

    def load_checkpoint(self) -> bool:
        """Restore the latest whole checkpoint, if any; returns whether one was found."""

        def extra(folder: Path) -> None:
            self.disc = self.disc.reload(folder / "discriminator")

        state = self.checkpoints.load(extra)
        if state is None:
            return False
        self.start_round, self.run_id = int(state["round"]) + 1, state["run_id"]
        self.pool.load(state["pool"])
        self.log(f"resumed from {self.checkpoints.root} at round {self.start_round}")
        return True

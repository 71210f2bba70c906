"""The adversarial loop on DeepSpeed engines.

Before round 0 (``sft.pool_questions``, ``sft.warmup_steps``): a pool of SFT targets, one per training question,
each pruned by the discriminator (steps kept at ``p(useful) >= sft.prune_threshold``), and SFT steps on that pool
(``warm_start``). The chains are the task's reference chains (``sft.pool_source: reference``, nothing sampled) or
the policy's own correct samples (``samples``). A few hundred pruned targets get memorised and the policy
collapses; a pool of thousands does not. The policy's accuracy follows the targets': at argmax pruning 4% of the
built-in task's targets keep a step of the other person and greedy accuracy stops near 0.93.

Each round:

1. **SFT** on the pool: by default (``sft.source: pruned``), for each question, the shortest correct chain
   sampled so far with the discriminator's redundant and wrong steps cut out; or that chain unpruned
   (``shortest_correct``, Kimi's shortest rejection sampling), or the task's reference or minimal chains;
2. **rollout**: G chains per question from the current policy, with a thinking budget after which the
   end of thinking is forced, then a small answer budget;
3. **scoring**: every chain is split into steps, the discriminator gives each step class probabilities,
   and the task verifies the final answer;
4. **policy update**: per-token credit (``credit.py``) in a PPO-clipped loss with a KL penalty to the
   reference, which is the base model with the adapter switched off (no second copy in memory);
5. **discriminator refresh** on the new chains (adversarial mode), or none (frozen, plug and play).

The **alpha gate** (``gate.enabled``; :mod:`gan_cot.gate`, pathwise mode): a small MLP attached to the policy
(so DeepSpeed partitions and all-reduces it like any parameter, and checkpoints carry it) maps each question's
prompt features (the base model's pooled hidden state, adapter off) to ``alpha`` in ``[0, alpha_max]``, and the
LoRA delta is scaled by it, ``W + alpha * delta``. Rollouts (forced answers too) run under each question's alpha,
``old_logp`` under that same alpha, and the update's forward and backward under ``alpha = gate(features)`` with
grad, so the PPO loss trains the gate with the adapter. SFT steps run under the gate's alpha without grad (the
delta learns the short chains at the alpha the gate picks). The length cost, ``c_i = length_coef * tokens_i /
mean_G tokens`` (:func:`gan_cot.gate.length_cost` with the group mean as reference), enters each chain's sequence
advantage centred on its group and at its own scale: ``A_i = GRPO(correct)_i - (c_i - mean_G c)``, so a chain 10%
shorter than its group's mean gains ``0.1 * length_coef`` on every token. It is not put into the reward before the
std normalisation: in a group where every chain is correct (most groups, on the built-in task) that would turn a
one-token difference into a full +-1 advantage. A wrong chain still loses more than any length saves. Evaluation
uses the gate; the final adapter folder gets ``alpha_gate.safetensors`` (:func:`gan_cot.gate.load_gated_policy`
reads it).
``gate.mode=reinforce`` trains the gate by exploration instead: in each round's rollout every chain samples its
own alpha, ``alpha_max * sigmoid(logit + gate.sigma * N(0, 1))``, so the G chains of a question try different
amounts of the delta; the token loss runs at the sampled alpha as a constant (it trains the LoRA only), and the
gate learns from ``AdversarialTrainer.gate_loss``: the sampled alpha is one more action, rewarded by its chain's sequence
advantage, in PPO's clipped form. ``gate.sft_alpha`` fixes the alpha of the SFT steps (e.g. 1.0: the delta is
the short style, and the gate chooses how much of it each question gets).
``gate.alpha`` instead fixes alpha (CoT-Valve): rollouts, updates, SFT and evaluation all run at
``W + alpha * delta``, and the saved adapter holds ``alpha * delta`` so any LoRA loader reproduces it.

What it leaves out on purpose: no value network (advantages come from group normalisation and step
credit, as in GRPO), no reward model other than the discriminator and the task's answer check.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import random
import shutil
import socket
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from gan_cot.credit import CreditWeights, group_sequence_advantage, sequence_rewards, step_credit, token_advantages
from gan_cot.gate import gated, length_cost, save_gate
from gan_cot.losses import policy_loss, token_logprobs
from gan_cot.models import render_prompt
from gan_cot.sft import collate
from gan_cot.steps import LABELS, split_steps, step_token_spans
from gan_cot.tasks.base import ANSWER_MARKER, format_chain


@dataclass
class Sample:
    """One sampled chain with everything the update needs."""

    example_index: int
    prompt_ids: list[int]
    completion_ids: list[int]  # eos included when the chain finished
    text: str
    steps: list[str]
    step_spans: list[tuple[int, int]]  # token spans within completion_ids
    correct: bool
    probs: torch.Tensor | None = None  # [n_steps, 3]
    advantages: torch.Tensor | None = None  # [len(completion_ids)]
    features: torch.Tensor | None = None  # [hidden]: the gate's prompt features (gate on)
    alpha: float | None = None  # the alpha the chain was sampled under (gate on or fixed alpha)
    gate_alpha: float | None = None  # the gate's own alpha for the question (reinforce mode samples around it)
    alpha_logp: float | None = None  # reinforce mode: log-density of the sampled alpha at rollout
    seq_adv: float | None = None  # the chain's sequence advantage (the gate's reward in reinforce mode)


def init_distributed() -> tuple[int, int]:
    """Rank and world size; a plain ``python`` run becomes a one-process group on gloo."""
    import deepspeed

    if "RANK" not in os.environ:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        os.environ.update(RANK="0", LOCAL_RANK="0", WORLD_SIZE="1", MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    if not torch.distributed.is_initialized():
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        deepspeed.init_distributed(dist_backend=backend, verbose=False)
    return torch.distributed.get_rank(), torch.distributed.get_world_size()


def completion_offsets(tokenizer, ids: list[int]) -> tuple[str, list[tuple[int, int]]]:
    """Decoded text of generated ids and each token's character span in it (by incremental decoding)."""
    spans, prev = [], ""
    for k in range(len(ids)):
        text = tokenizer.decode(ids[: k + 1], skip_special_tokens=True)
        spans.append((len(prev), len(text)))
        prev = text
    return prev, spans


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def rng_state() -> dict:
    """Python, NumPy and torch RNG states as plain JSON (no pickle in checkpoints we read back)."""
    version, internal, gauss = random.getstate()
    name, keys, pos, has_gauss, cached = np.random.get_state()
    return {
        "python": [version, list(internal), gauss],
        "numpy": [name, keys.tolist(), pos, has_gauss, cached],
        "torch": torch.get_rng_state().tolist(),
    }


def set_rng_state(state: dict) -> None:
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    name, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((name, np.array(keys, dtype=np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(torch.tensor(state["torch"], dtype=torch.uint8))


class AdversarialTrainer:
    """Owns the policy engine, the frozen reference (adapter off), the discriminator and the loop."""

    def __init__(self, cfg, resume: bool = False, log=print):
        self.cfg = cfg
        self.resume = resume
        self.log = log
        self.rank, self.world = init_distributed()
        self.is_main = self.rank == 0
        self.out = Path(cfg.output_dir)
        self.best: dict[int, list[int]] = {}  # example index -> shortest correct completion ids so far
        self.nan_streak = 0
        self.run_id: str | None = None
        self.start_round = 0
        self.gate = None  # the AlphaGate, attached to the policy as its ``alpha_gate`` submodule (gate.enabled)
        self.fixed_alpha: float | None = cfg.gate.alpha  # CoT-Valve's constant alpha (gate.alpha)

    # -- setup -------------------------------------------------------------------------------------

    def setup(self) -> None:
        import deepspeed
        from peft import LoraConfig, get_peft_model

        from gan_cot.discriminator.model import Discriminator
        from gan_cot.models import load_model, load_tokenizer
        from gan_cot.tasks import get_task

        cfg = self.cfg
        seed_everything(cfg.seed + self.rank)
        self.task = get_task("ledger", seed=cfg.seed) if cfg.task == "ledger" else get_task(cfg.task, path=cfg.data)
        n_train = max(cfg.rollout.questions * cfg.rounds, cfg.sft.pool_questions, 512)
        self.train_examples = self.task.examples("train", n_train)
        # an absolute base path, so the saved adapter finds its base from any working directory
        model_id = str(Path(cfg.policy.model).resolve()) if Path(cfg.policy.model).exists() else cfg.policy.model
        self.tokenizer = load_tokenizer(model_id)
        base = load_model(model_id, dtype=torch.float32)
        lora = LoraConfig(
            r=cfg.policy.lora_r, lora_alpha=cfg.policy.lora_alpha, target_modules=cfg.policy.target_modules,
            lora_dropout=0.0, task_type="CAUSAL_LM",
        )  # fmt: skip
        model = get_peft_model(base, lora)
        if cfg.gate.enabled:  # before deepspeed.initialize: the engine then owns (and all-reduces) its parameters
            from gan_cot.gate import AlphaGate, attach_gate

            with torch.random.fork_rng(devices=[]):  # its own init stream: the run's sampling is not shifted
                torch.manual_seed(cfg.seed)
                gate = AlphaGate(
                    base.config.hidden_size, cfg.gate.alpha_max, cfg.gate.pooling, layer_sizes=(cfg.gate.hidden,),
                    choices=cfg.gate.choices,
                )  # fmt: skip
            self.gate = attach_gate(model, gate)
        params = [p for p in model.parameters() if p.requires_grad]
        ds_config = json.loads(Path(cfg.deepspeed).read_text())
        ds_config["train_micro_batch_size_per_gpu"] = cfg.loss.micro_batch
        ds_config["gradient_accumulation_steps"] = 1
        ds_config.pop("train_batch_size", None)
        if self.gate is None:
            optimizer = torch.optim.AdamW(params, lr=cfg.policy.lr, weight_decay=0.0)
        else:  # the adapter first (the logged lr), then the gate with its own learning rate
            gate_ids = {id(p) for p in self.gate.parameters()}
            groups = [
                {"params": [p for p in params if id(p) not in gate_ids], "lr": cfg.policy.lr},
                {"params": [p for p in params if id(p) in gate_ids], "lr": cfg.gate.lr},
            ]
            optimizer = torch.optim.AdamW(groups, lr=cfg.policy.lr, weight_decay=0.0)
        self.engine, *_ = deepspeed.initialize(
            model=model, model_parameters=params, optimizer=optimizer, config=ds_config
        )
        self.disc = Discriminator.from_pretrained(cfg.discriminator.name)
        check_tokenizers(self.tokenizer, self.disc)
        self.weights = CreditWeights(cfg.credit.useful, cfg.credit.redundant, cfg.credit.wrong)

    # -- one round ---------------------------------------------------------------------------------

    def round_questions(self, r: int) -> list[int]:
        """This process's share of the round's questions (disjoint across processes)."""
        n = self.cfg.rollout.questions
        start = (r * n) % len(self.train_examples)
        idx = [(start + i) % len(self.train_examples) for i in range(n)]
        return idx[self.rank :: self.world]

    @torch.no_grad()
    def rollout(
        self,
        indices: list[int],
        group_size: int | None = None,
        explore: bool = False,
        temperature: float | None = None,
    ) -> list[Sample]:
        """G sampled chains per question under the thinking budget, then a forced end of thinking. ``explore``
        (the round's rollout) with ``gate.mode=reinforce``: each chain samples its own alpha around the gate's."""
        cfg = self.cfg.rollout
        g = group_size or cfg.group_size
        reinforce = explore and self.gate is not None and self.cfg.gate.mode == "reinforce"
        model = self.engine.module
        model.eval()
        tok = self.tokenizer
        eos = tok.eos_token_id
        samples: list[Sample] = []
        prompts = [render_prompt(tok, self.task.prompt(self.train_examples[i])) for i in indices]
        for b in range(0, len(prompts), max(1, cfg.batch_size // g)):
            chunk = prompts[b : b + max(1, cfg.batch_size // g)]
            chunk_idx = indices[b : b + len(chunk)]
            enc = tok(chunk, return_tensors="pt", padding=True, add_special_tokens=False, padding_side="left")
            feats, alpha = self.prompt_alpha(enc["input_ids"], enc["attention_mask"])
            gate_alpha = alpha
            if reinforce:  # one alpha per returned sequence: rows are repeat_interleaved by num_return_sequences
                rep = feats.repeat_interleave(g, dim=0)
                alpha = self.gate.sample(rep, self.cfg.gate.sigma)
                alpha_logp = self.gate.log_prob(rep, alpha, self.cfg.gate.sigma)
            with gated(model, alpha):  # each prompt's alpha, repeated for its G samples (or each sample's own)
                out = model.generate(
                    **enc, do_sample=True, temperature=temperature or cfg.temperature, top_k=0, top_p=1.0,
                    max_new_tokens=cfg.max_think_tokens, num_return_sequences=g,
                    pad_token_id=tok.pad_token_id, eos_token_id=eos,
                )  # fmt: skip
            new = out[:, enc["input_ids"].shape[1] :].tolist()
            for j, ids in enumerate(new):
                q = j // g
                ex_i = chunk_idx[q]
                p_ids = tok(chunk[q], add_special_tokens=False)["input_ids"]
                row = j if reinforce else q
                row_alpha = alpha[row : row + 1] if isinstance(alpha, torch.Tensor) else alpha
                ids = [t for t in ids if t != tok.pad_token_id]
                if eos in ids:
                    ids = ids[: ids.index(eos) + 1]
                else:
                    ids = self.force_answer(model, p_ids, ids, row_alpha)
                sample = self.make_sample(ex_i, p_ids, ids)
                if feats is not None:
                    sample.features = feats[q]
                if alpha is not None:
                    sample.alpha = float(row_alpha[0]) if isinstance(row_alpha, torch.Tensor) else float(row_alpha)
                if isinstance(gate_alpha, torch.Tensor):
                    sample.gate_alpha = float(gate_alpha[q])
                if reinforce:
                    sample.alpha_logp = float(alpha_logp[j])
                samples.append(sample)
        return samples

    @torch.no_grad()
    def prompt_alpha(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, pool_mask=None):
        """Gate on: the prompts' features [batch, hidden] (adapter off) and alpha [batch] (no grad). Fixed alpha:
        (None, alpha). Neither: (None, None), and ``gated(model, None)`` changes nothing."""
        if self.gate is None:
            return None, self.fixed_alpha
        from gan_cot.gate import prompt_features

        feats = prompt_features(
            self.engine.module, input_ids, attention_mask, self.gate.pooling, self.gate.layer, pool_mask
        )
        return feats, self.gate(feats).detach()

    def force_answer(self, model, prompt_ids: list[int], ids: list[int], alpha=None) -> list[int]:
        """Budget ran out: append the end of thinking (unless written) and let the model answer briefly (under
        the chain's own alpha)."""
        cfg = self.cfg.rollout
        tok = self.tokenizer
        text = tok.decode(ids, skip_special_tokens=True)
        if cfg.end_of_thinking.strip() not in text:
            ids = ids + tok(cfg.end_of_thinking, add_special_tokens=False)["input_ids"]
        x = torch.tensor([prompt_ids + ids])
        with gated(model, alpha):
            out = model.generate(
                input_ids=x, attention_mask=torch.ones_like(x), do_sample=False, max_new_tokens=cfg.max_answer_tokens,
                pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id,
            )  # fmt: skip
        return ids + out[0, x.shape[1] :].tolist()

    def make_sample(self, ex_i: int, prompt_ids: list[int], ids: list[int]) -> Sample:
        tok = self.tokenizer
        body_ids = ids[:-1] if ids and ids[-1] == tok.eos_token_id else ids
        text, offsets = completion_offsets(tok, body_ids)
        chain = text.split(ANSWER_MARKER, 1)[0]
        steps = split_steps(chain, self.task.separator)
        spans = step_token_spans(tok, text, steps, offsets=offsets) if steps else []
        example = self.train_examples[ex_i]
        return Sample(ex_i, prompt_ids, ids, text, [s.text for s in steps], spans, self.task.verify(text, example))

    @torch.no_grad()
    def score(self, samples: list[Sample], group_size: int | None = None) -> None:
        """Discriminator probabilities per step and per-token advantages, normalised within each group."""
        cfg = self.cfg
        with_steps = [s for s in samples if s.steps]
        step_credit_on = cfg.credit.mode == "discriminator"
        # the ablation (credit.mode=length) still asks the discriminator when it prunes SFT targets
        if (step_credit_on or cfg.sft.source == "pruned") and with_steps:
            questions = [self.task.prompt(self.train_examples[s.example_index]) for s in with_steps]
            for s, p in zip(with_steps, self.disc.score(questions, [s.steps for s in with_steps])):
                s.probs = p
        g = group_size or cfg.rollout.group_size
        for k in range(0, len(samples), g):
            group = samples[k : k + g]
            correct = torch.tensor([float(s.correct) for s in group])
            lengths = torch.tensor([float(len(s.completion_ids)) for s in group])
            penalty = cfg.credit.length_penalty if cfg.credit.mode == "length" else 0.0
            seq_adv = group_sequence_advantage(sequence_rewards(correct, lengths, penalty))
            if self.gate is not None and cfg.gate.length_coef > 0:  # centred, not divided by the group's std
                cost = length_cost(lengths, lengths.mean(), cfg.gate.length_coef)
                seq_adv = seq_adv - (cost - cost.mean())
            for s, a in zip(group, seq_adv.tolist()):
                s.seq_adv = a
                credits = step_credit(s.probs, self.weights) if step_credit_on and s.probs is not None else None
                s.advantages = token_advantages(len(s.completion_ids), s.step_spans, credits, a, cfg.credit.step_coef)

    def batch_tensors(self, samples: list[Sample]) -> dict[str, torch.Tensor]:
        """Right-padded prompt+completion with a completion mask and advantages aligned to next-token logprobs."""
        pad = self.tokenizer.pad_token_id
        width = max(len(s.prompt_ids) + len(s.completion_ids) for s in samples)
        ids = torch.full((len(samples), width), pad, dtype=torch.long)  # [batch, seq]
        attn = torch.zeros_like(ids)
        mask = torch.zeros((len(samples), width - 1))  # [batch, seq-1]: position t predicts token t+1
        adv = torch.zeros((len(samples), width - 1))
        for i, s in enumerate(samples):
            full = s.prompt_ids + s.completion_ids
            ids[i, : len(full)] = torch.tensor(full)
            attn[i, : len(full)] = 1
            start = len(s.prompt_ids) - 1
            mask[i, start : start + len(s.completion_ids)] = 1
            adv[i, start : start + len(s.completion_ids)] = s.advantages
        out = {"input_ids": ids, "attention_mask": attn, "mask": mask, "advantages": adv}
        if self.gate is not None:
            out["features"] = torch.stack([s.features for s in samples])  # [batch, hidden]
            out["alpha"] = torch.tensor([s.alpha for s in samples])  # [batch]: the rollout's alpha
            if self.cfg.gate.mode == "reinforce":
                out["alpha_logp"] = torch.tensor([s.alpha_logp for s in samples])  # [batch]
                out["seq_adv"] = torch.tensor([s.seq_adv for s in samples])  # [batch]
        return out

    def update_alpha(self, batch):
        """The alpha of the update's forward: the gate's, with grad (so the policy loss trains the gate), the
        sampled one as a constant (reinforce mode: :meth:`gate_loss` trains the gate), the fixed alpha, or None."""
        if self.gate is not None and self.cfg.gate.mode == "reinforce":
            return batch["alpha"]
        if self.gate is not None:
            return self.gate(batch["features"])
        return self.fixed_alpha

    @torch.no_grad()
    def logprobs(self, batch, reference: bool = False) -> torch.Tensor:
        model = self.engine.module
        model.eval()
        if reference:
            with model.disable_adapter():
                logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
        else:
            with gated(model, batch["alpha"] if self.gate is not None else self.fixed_alpha):  # the rollout's alpha
                logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
        return token_logprobs(logits, batch["input_ids"])

    def policy_update(self, samples: list[Sample]) -> dict:
        """PPO-clip epochs over this round's samples with per-token advantages and KL to the reference."""
        cfg = self.cfg.loss
        mb = cfg.micro_batch
        batches = [self.batch_tensors(samples[i : i + mb]) for i in range(0, len(samples), mb)]
        for b in batches:
            b["old_logp"] = self.logprobs(b)
            b["ref_logp"] = self.logprobs(b, reference=True) if cfg.kl_coef > 0 else None
        stats: list[dict] = []
        for _ in range(cfg.epochs):
            for b in random.sample(batches, len(batches)):
                self.engine.train()
                # forward and backward in one gated block: the gradient reaches the gate through alpha
                with gated(self.engine.module, self.update_alpha(b)):
                    logits = self.engine(input_ids=b["input_ids"], attention_mask=b["attention_mask"]).logits
                    logp = token_logprobs(logits, b["input_ids"])
                    loss, st = policy_loss(
                        logp, b["old_logp"], b["ref_logp"], b["advantages"], b["mask"], cfg.clip_eps, cfg.kl_coef
                    )
                    if "alpha_logp" in b:
                        g_loss = self.gate_loss(b)
                        st["gate_loss"] = g_loss.item()
                        loss = loss + g_loss
                    if not self.step(loss):
                        continue
                st["policy_loss"] = loss.item()
                stats.append(st)
        return _mean(stats)

    def gate_loss(self, batch) -> torch.Tensor:
        """Reinforce mode: the sampled alpha is one more action of the chain, rewarded by the chain's sequence
        advantage (correctness against its group, minus the centred length cost), in the same clipped form as the
        token loss: ``-mean(min(rho * A, clip(rho) * A))`` with ``rho = p(alpha | prompt) / p_rollout(alpha | prompt)``.
        Only the gate gets its gradient (the policy forward ran at the sampled alpha as a constant)."""
        eps = self.cfg.loss.clip_eps
        logp = self.gate.log_prob(batch["features"], batch["alpha"], self.cfg.gate.sigma)
        ratio = torch.exp(logp - batch["alpha_logp"].to(logp))
        adv = batch["seq_adv"].to(logp)
        return -torch.minimum(ratio * adv, ratio.clamp(1 - eps, 1 + eps) * adv).mean()

    def step(self, loss: torch.Tensor) -> bool:
        """Backward and optimizer step; a non-finite loss is skipped with a warning (and counted)."""
        if not torch.isfinite(loss):
            self.nan_streak += 1
            self.log(f"warning: non-finite loss skipped ({self.nan_streak} in a row)")
            if self.nan_streak >= self.cfg.max_nan_steps:
                raise NonFiniteLoss(f"{self.nan_streak} non-finite losses in a row")
            return False
        self.nan_streak = 0
        self.engine.backward(loss)
        self.engine.step()
        return True

    def sft_phase(self, r: int, steps: int | None = None) -> dict:
        """A few SFT steps on the chosen reference chains (the shortest correct so far by default); ``r = -1``
        with ``steps`` is the warm-up on the pool before round 0."""
        cfg = self.cfg.sft
        steps = cfg.steps if steps is None else steps
        if steps <= 0:
            return {}
        pairs = self.sft_pairs()
        if not pairs:
            return {}
        rng = random.Random(self.cfg.seed * 1000 + r)
        losses = []
        with self.sft_lr(r):
            for _ in range(steps):
                chosen = rng.sample(pairs, min(cfg.batch_size, len(pairs)))
                batch = collate(chosen, self.tokenizer.pad_token_id)
                alpha = self.sft_alpha(batch, [n for _, n in chosen])
                self.engine.train()
                with gated(self.engine.module, alpha):
                    out = self.engine(**batch)
                    if self.step(out.loss):
                        losses.append(out.loss.item())
        return {"sft_loss": sum(losses) / len(losses)} if losses else {}

    def lr_factor(self, r: int) -> float:
        """The adapter's learning-rate multiplier in round ``r`` (``policy.lr_schedule``); 1 for the warm-up."""
        p = self.cfg.policy
        if p.lr_schedule == "constant" or r < 0:
            return 1.0
        t = r / max(1, self.cfg.rounds - 1)
        return p.lr_floor + (1 - p.lr_floor) * 0.5 * (1 + math.cos(math.pi * t))

    def set_round_lr(self, r: int) -> None:
        """``policy.lr`` times the schedule's factor for the adapter's parameter group (the gate keeps its own)."""
        if hasattr(self.engine, "optimizer"):
            self.engine.optimizer.param_groups[0]["lr"] = self.cfg.policy.lr * self.lr_factor(r)

    @contextlib.contextmanager
    def sft_lr(self, r: int = -1):
        """``sft.lr`` (times the schedule's factor in round ``r``) for the adapter's parameter group while SFT
        runs (the gate's group keeps its own)."""
        lr = self.cfg.sft.lr
        lr = None if lr is None else lr * self.lr_factor(r)
        groups = self.engine.optimizer.param_groups[:1] if lr is not None else []
        saved = [g["lr"] for g in groups]
        for g in groups:
            g["lr"] = lr
        try:
            yield
        finally:
            for g, v in zip(groups, saved):
                g["lr"] = v

    def sft_alpha(self, batch: dict, prompt_lens: list[int]):
        """SFT runs at the alpha the gate gives each prompt (no grad: SFT trains the delta, not the gate), the
        fixed alpha, or None."""
        if self.gate is None:
            return self.fixed_alpha
        if self.cfg.gate.sft_alpha is not None:
            return self.cfg.gate.sft_alpha
        pool = torch.zeros_like(batch["attention_mask"])
        for i, n in enumerate(prompt_lens):
            pool[i, :n] = 1
        self.engine.module.eval()
        return self.prompt_alpha(batch["input_ids"], batch["attention_mask"], pool_mask=pool)[1]

    def sft_pairs(self) -> list[tuple[list[int], int]]:
        source = self.cfg.sft.source
        tok = self.tokenizer
        if source in ("shortest_correct", "pruned"):
            out = []
            for ex_i, ids in self.best.items():
                p = tok(render_prompt(tok, self.task.prompt(self.train_examples[ex_i])), add_special_tokens=False)
                out.append((p["input_ids"] + ids, len(p["input_ids"])))
            return out
        from gan_cot.sft import encode_pairs, task_pairs

        examples = self.train_examples[:512]
        prompts, completions = task_pairs(tok, self.task, examples, minimal=source == "minimal")
        return encode_pairs(tok, prompts, completions)

    def remember_shortest(self, samples: list[Sample]) -> None:
        """Keep, per question, the shortest correct finished chain (pruned by the discriminator first
        when ``sft.source`` is ``pruned``)."""
        eos = self.tokenizer.eos_token_id
        for s in samples:
            if not (s.correct and s.completion_ids and s.completion_ids[-1] == eos):
                continue
            ids = list(s.completion_ids)
            if self.cfg.sft.source == "pruned" and s.probs is not None:
                ids = self.pruned_ids(s) or ids
            best = self.best.get(s.example_index)
            if best is None or len(ids) < len(best):
                self.best[s.example_index] = ids

    def useful_steps(self, steps: list[str], probs: torch.Tensor) -> list[str]:
        """The steps the discriminator keeps: p(useful) >= ``sft.prune_threshold``, or useful as the argmax."""
        th = self.cfg.sft.prune_threshold
        useful = LABELS.index("useful")
        if th is None:
            return [t for t, p in zip(steps, probs) if int(p.argmax()) == useful]
        return [t for t, p in zip(steps, probs) if float(p[useful]) >= th]

    def pruned_ids(self, s: Sample) -> list[int] | None:
        """The chain with the steps the discriminator judges redundant or wrong removed, if its answer still
        verifies; the discriminator's judgement turned into a shorter SFT target."""
        keep = self.useful_steps(s.steps, s.probs)
        if not keep or len(keep) == len(s.steps):
            return None
        answer = s.text.split(ANSWER_MARKER, 1)[1].strip()
        text = format_chain(keep, answer, self.task.separator)
        if not self.task.verify(text, self.train_examples[s.example_index]):
            return None
        return self.tokenizer(text, add_special_tokens=False)["input_ids"] + [self.tokenizer.eos_token_id]

    def refresh_discriminator(self, samples: list[Sample]) -> dict:
        """Score the discriminator on this round's chains against their labels, then train on them.

        Returns the F1 measured before the refresh: how well the discriminator judged the policy's new
        chains. Gradients are averaged across processes so every copy stays identical.
        """
        from gan_cot.discriminator.data import StepRecord
        from gan_cot.discriminator.train import discriminator_loss, step_metrics

        cfg = self.cfg.discriminator
        with_steps = [s for s in samples if s.steps]
        if not with_steps:
            return {}
        records = []
        if cfg.labels == "gold":
            for s in with_steps:
                ex = self.train_examples[s.example_index]
                records.append(StepRecord(ex.question, s.steps, self.task.gold_labels(ex, s.steps)))
        else:
            from gan_cot.discriminator.labels import label_chains

            exs = [self.train_examples[s.example_index] for s in with_steps]
            auto = label_chains(self.engine.module, self.tokenizer, self.task, exs, [s.steps for s in with_steps])
            records = [StepRecord(ex.question, s.steps, a.labels) for ex, s, a in zip(exs, with_steps, auto)]
        gold = [lab for r in records for lab in r.labels]
        pred = (
            [LABELS[int(k)] for s in with_steps for k in s.probs.argmax(-1)]
            if with_steps[0].probs is not None
            else None
        )
        stats = {}
        if pred is not None:
            m = step_metrics(gold, pred)
            stats = {"disc_f1": m["macro_f1"], "disc_acc": m["accuracy"]}
        if cfg.mode != "adversarial":
            return stats
        # a fresh optimizer per refresh: each refresh is a short fine-tune, and no optimizer state has to
        # survive a checkpoint
        params = [p for p in self.disc.model.parameters() if p.requires_grad]
        opt = torch.optim.AdamW(params, lr=cfg.lr)
        self.disc.model.train()
        rng = random.Random(len(self.best) + self.rank)
        for _ in range(cfg.refresh_steps):
            batch = rng.sample(records, min(32, len(records)))
            loss, _ = discriminator_loss(self.disc, batch)
            loss.backward()
            if self.world > 1:
                for p in self.disc.model.parameters():
                    if p.grad is not None:
                        torch.distributed.all_reduce(p.grad)
                        p.grad /= self.world
            torch.nn.utils.clip_grad_norm_(self.disc.model.parameters(), 1.0)
            opt.step()
            opt.zero_grad(set_to_none=True)
            stats["disc_loss"] = loss.item()
        self.disc.model.eval()
        return stats

    def eval_policy(self):
        """The policy as it answers at inference: the peft model, or a :class:`gan_cot.gate.GatedPolicy` when a
        gate (``--alpha auto``: the gate's alpha per question) or a fixed alpha scales the delta."""
        if self.gate is None and self.fixed_alpha is None:
            return self.engine.module
        from gan_cot.gate import GatedPolicy

        return GatedPolicy(self.engine.module, self.gate, self.fixed_alpha)

    def save_adapter(self, path: str | Path) -> Path:
        """The adapter, the tokenizer and the gate (``load_gated_policy(path)`` reads them back), or the adapter
        with a fixed alpha folded in, written to a temporary folder and renamed to ``path``."""
        path = Path(path)
        tmp = path.with_name(path.name + ".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        self.engine.module.save_pretrained(tmp)
        self.tokenizer.save_pretrained(tmp)
        if self.gate is not None:
            save_gate(self.gate, tmp)
        elif self.fixed_alpha is not None:
            fold_alpha(tmp, self.fixed_alpha)
        shutil.rmtree(path, ignore_errors=True)
        tmp.rename(path)
        return path

    @torch.no_grad()
    def evaluate(self, split: str, n: int) -> dict:
        """Greedy accuracy and tokens on ``n`` questions of ``split``, sharded over processes and gathered."""
        from gan_cot.evaluate import evaluate

        examples = self.task.examples(split, n)[self.rank :: self.world]
        policy = self.eval_policy()
        gated_eval = policy is not self.engine.module
        res = evaluate(policy, self.tokenizer, self.task, examples, seed=self.cfg.seed, show_progress=False,
                       max_new_tokens=self.cfg.rollout.max_think_tokens + self.cfg.rollout.max_answer_tokens,
                       keep_rows=gated_eval)  # fmt: skip
        keys = ["accuracy", "mean_tokens", "mean_minimal_tokens", "mean_thinking_tokens", "mean_answer_tokens"]
        vec = torch.tensor([res.get(k, 0.0) * len(examples) for k in keys] + [len(examples)], dtype=torch.float64)
        if self.world > 1:
            torch.distributed.all_reduce(vec)
        total = vec[-1].item()
        out = {k: vec[i].item() / total for i, k in enumerate(keys)}
        if out["mean_minimal_tokens"]:
            out["tokens_vs_minimal"] = out["mean_tokens"] / out["mean_minimal_tokens"]
        out["n"] = int(total)
        if gated_eval:
            rows = self.gather([(r["alpha"], r["difficulty"]) for r in res["rows"]])
            out.update(flat_alpha_stats([a for a, _ in rows], [d for _, d in rows]))
        return out

    def gather(self, items: list) -> list:
        """This process's list joined with every other process's (rank order)."""
        if self.world == 1:
            return list(items)
        parts: list = [None] * self.world
        torch.distributed.all_gather_object(parts, list(items))
        return [x for part in parts for x in part]

    # -- checkpoint and resume ---------------------------------------------------------------------

    def checkpoint_dir(self) -> Path:
        return self.out / "checkpoints"

    def save_checkpoint(self, r: int) -> None:
        """Adapter, DeepSpeed/optimizer state, discriminator, RNG, round and run id; written to a temporary
        folder, then renamed, then ``latest`` is replaced: a kill at any moment leaves the previous one whole."""
        root = self.checkpoint_dir()
        tmp = root / f"round-{r:05d}.tmp"
        final = root / f"round-{r:05d}"
        if self.is_main:
            shutil.rmtree(tmp, ignore_errors=True)
            tmp.mkdir(parents=True)
        torch.distributed.barrier()
        self.engine.save_checkpoint(str(tmp / "engine"), tag="state")
        (tmp / f"rng-{self.rank}.json").write_text(json.dumps(rng_state()))
        torch.distributed.barrier()
        if self.is_main:
            self.engine.module.save_pretrained(tmp / "adapter")
            if self.gate is not None:  # a copy to read; the engine state above is what resume loads
                save_gate(self.gate, tmp / "adapter")
            self.disc.save_pretrained(tmp / "discriminator")
            state = {"round": r, "run_id": self.run_id, "best": {str(k): v for k, v in self.best.items()}}
            (tmp / "state.json").write_text(json.dumps(state))
            shutil.rmtree(final, ignore_errors=True)
            tmp.rename(final)
            latest = root / "latest"
            (root / "latest.tmp").write_text(final.name)
            os.replace(root / "latest.tmp", latest)
            for old in sorted(root.glob("round-*")):
                if old == final:
                    continue
                if not old.name.endswith(".tmp"):
                    trash = old.with_name(old.name + ".old.tmp")
                    os.replace(old, trash)
                    old = trash
                shutil.rmtree(old, ignore_errors=True)
        torch.distributed.barrier()

    def load_checkpoint(self) -> bool:
        """Restore the latest complete checkpoint, if any; returns whether one was found.

        A checkpoint that ``latest`` names but that cannot be read raises :class:`CheckpointLoadError` naming it,
        before anything is restored."""
        from gan_cot.discriminator.model import Discriminator

        latest = self.checkpoint_dir() / "latest"
        if not latest.exists():
            return False
        ckpt = self.checkpoint_dir() / latest.read_text().strip()
        hint = f"restore it, or delete {self.checkpoint_dir()} to start the run over"
        needed = ("state.json", "engine/state", "discriminator/config.json")
        missing = [name for name in needed if not (ckpt / name).exists()]
        if missing:
            raise CheckpointLoadError(f"checkpoint {ckpt} (named by {latest}) lacks {', '.join(missing)}; {hint}")
        try:
            state = json.loads((ckpt / "state.json").read_text())
            start_round, run_id = int(state["round"]) + 1, state["run_id"]
            best = {int(k): list(v) for k, v in state["best"].items()}
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as e:
            raise CheckpointLoadError(f"{ckpt / 'state.json'} cannot be read ({type(e).__name__}: {e}); {hint}") from e
        try:
            self.engine.load_checkpoint(str(ckpt / "engine"), tag="state")
        except Exception as e:  # noqa: BLE001 - DeepSpeed asserts, raises OSError or pickle errors alike
            raise CheckpointLoadError(f"{ckpt / 'engine'} cannot be loaded ({type(e).__name__}: {e}); {hint}") from e
        self.start_round, self.run_id, self.best = start_round, run_id, best
        self.disc = Discriminator.from_pretrained(str(ckpt / "discriminator"))
        rng_file = ckpt / f"rng-{self.rank}.json"
        if rng_file.exists():
            set_rng_state(json.loads(rng_file.read_text()))
        self.log(f"resumed from {ckpt} at round {self.start_round}")
        return True

    # -- the loop ----------------------------------------------------------------------------------

    def train(self) -> dict:
        import mlflow

        from gan_cot import tracking
        from gan_cot.config import to_dict

        cfg = self.cfg
        started = time.time()
        self.setup()
        resumed = self.resume and self.load_checkpoint()
        if self.is_main:
            tracking.setup(cfg.experiment, cfg.mlflow_dir)
            run_file = self.out / "mlflow_run.json"
            if self.resume and not resumed and run_file.exists():  # killed before its first checkpoint
                self.run_id = json.loads(run_file.read_text())["run_id"]
            run = mlflow.start_run(run_id=self.run_id) if self.run_id else mlflow.start_run()
            self.run_id = run.info.run_id
            self.out.mkdir(parents=True, exist_ok=True)
            write_json(run_file, {"run_id": self.run_id})
            if not resumed:
                mlflow.log_params(tracking.flatten(to_dict(cfg)))
                method = "gan-cot" if cfg.credit.mode == "discriminator" else "gan-cot-length"
                if self.gate is not None:
                    method += "-gate"
                elif self.fixed_alpha is not None:
                    method += f"-alpha{self.fixed_alpha:g}"
                mlflow.set_tag("method", method)
                self.out.mkdir(parents=True, exist_ok=True)
                (self.out / "config.json").write_text(json.dumps(to_dict(cfg), indent=2))
                mlflow.log_artifact(str(self.out / "config.json"))
        base_path = self.out / "base_eval.json"
        if resumed and base_path.exists():
            base = json.loads(base_path.read_text())
        else:
            with self.engine.module.disable_adapter():
                base = self.evaluate("test", cfg.eval.n)
            if self.is_main:
                write_json(base_path, base)
                n_params = sum(p.numel() for p in self.engine.module.get_base_model().parameters())
                mlflow.log_metrics({f"base_{k}": v for k, v in base.items() if isinstance(v, float)} | {
                    "n_params": float(n_params)})  # fmt: skip
        if not resumed:
            warm = self.warm_start()
            if self.is_main and warm:
                mlflow.log_metrics(warm)
        try:
            for r in range(self.start_round, cfg.rounds):
                metrics = self.run_round(r)
                if self.is_main:
                    mlflow.log_metrics(metrics, step=r)
                    self.log(f"round {r}: " + ", ".join(f"{k} {v:.3g}" for k, v in sorted(metrics.items())))
                if cfg.checkpoint_every and (r + 1) % cfg.checkpoint_every == 0 and r + 1 < cfg.rounds:
                    self.save_checkpoint(r)
        except NonFiniteLoss as e:
            self.save_checkpoint(r)
            raise SystemExit(f"error: {e}; the run stopped with a checkpoint in {self.checkpoint_dir()}") from e
        final = self.evaluate("test", cfg.eval.n)
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
            "wall_seconds": round(time.time() - started, 1),
        }
        if self.gate is not None:
            result.update(gate=True, **{k: v for k, v in final.items() if k.startswith("alpha_")})
        elif self.fixed_alpha is not None:
            result["alpha"] = self.fixed_alpha
        if self.is_main:
            adapter = self.save_adapter(self.out / "adapter")
            self.disc.save_pretrained(self.out / "discriminator")
            write_json(self.out / "result.json", result, indent=2)
            mlflow.log_metrics({f"final_{k}": v for k, v in final.items() if isinstance(v, float)})
            mlflow.log_artifacts(str(adapter), artifact_path="adapter")
            mlflow.end_run()
        self.save_checkpoint(cfg.rounds - 1)
        return result

    def warm_start(self) -> dict:
        """Before round 0: fill the SFT pool (``sft.pool_questions``), then ``sft.warmup_steps`` SFT steps on it."""
        cfg = self.cfg.sft
        out = {}
        if cfg.pool_questions:
            out.update(self.fill_pool(cfg.pool_questions))
            if self.is_main:
                self.log("pool: " + ", ".join(f"{k} {v:.3g}" for k, v in sorted(out.items())))
        if cfg.warmup_steps:
            warm = self.sft_phase(-1, cfg.warmup_steps)
            if warm:
                out["warmup_sft_loss"] = warm["sft_loss"]
                if self.is_main:
                    self.log(f"warm-up: {cfg.warmup_steps} SFT steps, sft_loss {warm['sft_loss']:.3g}")
        return out

    def fill_pool(self, n: int) -> dict:
        """Sample, score and remember chains for the first ``n`` training questions (this process's share), so the
        SFT pool starts with ``n`` targets: a few hundred pruned targets get memorised, a few thousand do not."""
        n = min(n, len(self.train_examples))
        idx = list(range(n - n % self.world))[self.rank :: self.world]  # the same count on every process
        if self.cfg.sft.pool_source == "reference":
            return self.fill_pool_from_references(idx)
        g = self.cfg.sft.pool_samples
        chunk = max(1, self.cfg.rollout.batch_size // g)
        stats = []
        for b in range(0, len(idx), chunk):
            samples = self.rollout(idx[b : b + chunk], group_size=g, temperature=self.cfg.sft.pool_temperature)
            self.score(samples, group_size=g)
            self.remember_shortest(samples)
            if self.world == 1:  # sample_stats all-reduces: the chunk counts would have to match across ranks
                stats.append(self.sample_stats(samples))
        size = torch.tensor([float(len(self.best)), float(sum(map(len, self.best.values())))], dtype=torch.float64)
        if self.world > 1:
            torch.distributed.all_reduce(size)
        out = {"pool_size": size[0].item(), "pool_tokens": size[1].item() / max(size[0].item(), 1.0)}
        if stats:
            out.update(
                {f"pool_{k}": v for k, v in _mean(stats).items() if k in ("rollout_accuracy", "rollout_tokens")}
            )
        return out

    def fill_pool_from_references(self, idx: list[int]) -> dict:
        """The pool from the task's reference chains (no generation): with ``sft.source: pruned`` each chain loses
        the steps the discriminator judges redundant or wrong, as a sampled chain would."""
        eos = self.tokenizer.eos_token_id
        prune = self.cfg.sft.source == "pruned"
        kept = torch.zeros(4, dtype=torch.float64)  # targets, their tokens, reference steps, steps kept
        chunk = max(1, self.cfg.rollout.batch_size)
        for b in range(0, len(idx), chunk):
            exs = [self.train_examples[i] for i in idx[b : b + chunk]]
            steps = [[t.strip() for t in ex.steps] for ex in exs]
            probs = self.disc.score([self.task.prompt(ex) for ex in exs], steps) if prune else [None] * len(exs)
            for i, ex, st, p in zip(idx[b : b + chunk], exs, steps, probs):
                keep = st if p is None else self.useful_steps(st, p)
                text = format_chain(keep, ex.answer, self.task.separator)
                if not keep or not self.task.verify(text, ex):
                    text = format_chain(st, ex.answer, self.task.separator)
                ids = self.tokenizer(text, add_special_tokens=False)["input_ids"] + [eos]
                self.best[i] = ids
                kept += torch.tensor([1.0, len(ids), len(st), len(keep)], dtype=torch.float64)
        if self.world > 1:
            torch.distributed.all_reduce(kept)
        return {
            "pool_size": kept[0].item(),
            "pool_tokens": kept[1].item() / max(kept[0].item(), 1.0),
            "pool_steps_kept": kept[3].item() / max(kept[2].item(), 1.0),
        }

    def run_round(self, r: int) -> dict:
        cfg = self.cfg
        metrics: dict[str, float] = {}
        self.set_round_lr(r)
        metrics.update(self.sft_phase(r))
        samples = self.rollout(self.round_questions(r), explore=True)
        self.score(samples)
        if not cfg.sft.pool_frozen:
            self.remember_shortest(samples)
        metrics.update(self.policy_update(samples))
        metrics.update(self.refresh_discriminator(samples))
        metrics.update(self.sample_stats(samples))
        if self.gate is not None:
            metrics.update(self.alpha_metrics(samples))
        if cfg.eval.every and (r + 1) % cfg.eval.every == 0:
            ev = self.evaluate("validation", cfg.eval.round_n)
            metrics.update({f"val_{k}": v for k, v in ev.items() if isinstance(v, float)})
        metrics["lr"] = (
            self.engine.optimizer.param_groups[0]["lr"] if hasattr(self.engine, "optimizer") else cfg.policy.lr
        )
        if self.is_main and (r % 5 == 0 or r == cfg.rounds - 1):
            self.log_samples(samples[:16], r)
        return metrics

    def sample_stats(self, samples: list[Sample]) -> dict:
        """Rollout accuracy, tokens, and the fractions of steps the discriminator calls each class."""
        counts = torch.zeros(3)
        for s in samples:
            if s.probs is not None and len(s.probs):
                counts += torch.bincount(s.probs.argmax(-1), minlength=3).float()
        vec = torch.tensor([sum(s.correct for s in samples), sum(len(s.completion_ids) for s in samples), len(samples),
                            *counts.tolist()], dtype=torch.float64)  # fmt: skip
        if self.world > 1:
            torch.distributed.all_reduce(vec)
        n = vec[2].item()
        steps = vec[3:].sum().item() or 1.0
        out = {"rollout_accuracy": vec[0].item() / n, "rollout_tokens": vec[1].item() / n}
        out.update({f"frac_{lab}": vec[3 + i].item() / steps for i, lab in enumerate(LABELS)})
        return out

    def alpha_metrics(self, samples: list[Sample]) -> dict:
        """The gate's alpha over this round's questions (one per question, all processes): mean, std, min, max
        and the mean per difficulty level (``alpha_difficulty_{d}``)."""
        g = self.cfg.rollout.group_size
        rows = self.gather(
            [
                (s.gate_alpha, self.train_examples[s.example_index].difficulty)
                for s in samples[::g]
                if s.gate_alpha is not None
            ]
        )
        return flat_alpha_stats([a for a, _ in rows], [d for _, d in rows])

    def log_samples(self, samples: list[Sample], r: int) -> None:
        import mlflow

        rows = []
        for s in samples:
            probs = s.probs.tolist() if s.probs is not None else [[]] * len(s.steps)
            for i, (step, p) in enumerate(zip(s.steps, probs)):
                rows.append({"round": r, "example": s.example_index, "step": i, "text": step, "correct": s.correct,
                             **{lab: (p[k] if p else None) for k, lab in enumerate(LABELS)}})  # fmt: skip
                if self.gate is not None:
                    rows[-1]["alpha"] = s.alpha
        if rows:
            mlflow.log_table(
                {k: [row[k] for row in rows] for k in rows[0]}, artifact_file=f"samples/round-{r:05d}.json"
            )


class NonFiniteLoss(RuntimeError):
    pass


class CheckpointLoadError(ValueError):
    """The checkpoint to resume from cannot be read; the message names it and what to do."""


def write_json(path: Path, obj, **kwargs) -> None:
    """Write JSON through a temporary file and a rename: a kill never leaves half a file that is read back."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(obj, **kwargs))
    os.replace(tmp, path)


def check_tokenizers(policy_tok, disc) -> None:
    """The discriminator reads text, so any tokenizer works; it must still be able to encode a chain."""
    try:
        disc.encode("check", ["a step"])
    except Exception as e:  # noqa: BLE001
        raise ValueError(f"the discriminator's tokenizer cannot encode chains: {e}") from e


def flat_alpha_stats(alphas: list[float], difficulties: list) -> dict:
    """:func:`gan_cot.evaluate.alpha_stats` as flat float metrics (``alpha_difficulty_{d}``)."""
    from gan_cot.evaluate import alpha_stats

    stats = alpha_stats(alphas, difficulties)
    per_level = stats.pop("alpha_difficulty", {})
    return {k: float(v) for k, v in stats.items()} | {f"alpha_difficulty_{d}": float(v) for d, v in per_level.items()}


def fold_alpha(adapter_dir: Path, alpha: float) -> None:
    """Scale a saved adapter's ``lora_B`` tensors by ``alpha`` (the whole delta, bias included): the folder then
    holds ``alpha * delta``, the fixed-alpha policy, for any LoRA loader."""
    from safetensors.torch import load_file, save_file

    path = Path(adapter_dir) / "adapter_model.safetensors"
    state = load_file(str(path))
    state = {k: (v * alpha if "lora_B" in k else v).contiguous() for k, v in state.items()}
    save_file(state, str(path), metadata={"format": "pt"})


def _mean(stats: list[dict]) -> dict:
    if not stats:
        return {}
    return {k: sum(s[k] for s in stats) / len(stats) for k in stats[0]}

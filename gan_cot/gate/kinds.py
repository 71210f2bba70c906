"""The gate as one object the trainer calls at every stage, chosen once from ``gate.kind``:

- :class:`NoGate` (``none``): the plain adapter, alpha 1 everywhere;
- :class:`FixedAlpha` (``fixed``): CoT-Valve's constant alpha for rollouts, updates, SFT and evaluation; the saved
  adapter holds ``alpha * delta``, so any LoRA loader reproduces it;
- :class:`LearnedGate` (``learned``): an :class:`~gan_cot.gate.model.AlphaGate` picks one alpha of ``gate.choices``
  per question. In a round's rollout each chain draws its own alpha from the gate, so the G chains of a question
  try different amounts of the delta. The token loss runs at each chain's drawn alpha as a constant (it trains the
  LoRA only); the gate learns from the drawn alpha as one more action of the chain, rewarded by the chain's
  sequence advantage in PPO's clipped form (:meth:`LearnedGate.extra_loss`). The length cost enters that sequence
  advantage (:meth:`LearnedGate.adjust_advantages`): ``c_i = length_coef * tokens_i / mean_G tokens``, centred on
  its group and not divided by the group's std, so a chain 10% shorter than its group's mean gains
  ``0.1 * length_coef`` on every token while a wrong chain still loses more than any length saves. SFT steps run at
  ``gate.sft_alpha``; evaluation and inference at the gate's likeliest alpha per question.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from gan_cot.gate.model import AlphaGate, GatedPolicy, attach_gate, prompt_features, save_gate


@dataclass(frozen=True)
class RolloutAlphas:
    """The alphas of one generation batch: ``chain`` is what ``generate`` runs under (a float for every row, a
    tensor [prompts] repeated for the G chains, or [prompts * G]); the rest is recorded per chain."""

    chain: float | torch.Tensor | None
    per_chain: list[float | None]  # the alpha each chain was sampled under
    features: torch.Tensor | None = None  # [prompts, hidden]
    question: list[float] | None = None  # the gate's own pick per prompt
    logp: list[float] | None = None  # [prompts * G]: log p(drawn alpha) at rollout


class Gate:
    """What the trainer asks a gate at every stage; these answers are the plain adapter's (alpha 1 everywhere), and
    each kind overrides what it changes."""

    kind = "none"
    method_suffix = "-nogate"  # the default (the learned gate) is plain gan-cot
    selected: float | None = None  # gate.select's pick: a fixed alpha that answers in place of the trained policy

    def attach(self, model, hidden_size: int, seed: int) -> None:
        pass

    def optimizer_groups(self, params: list, lr: float) -> list[dict]:
        return [{"params": params, "lr": lr}]

    def rollout_alphas(self, model, input_ids, attention_mask, group_size: int, explore: bool) -> RolloutAlphas:
        n = input_ids.shape[0] * group_size
        return RolloutAlphas(self.constant(), [self.constant()] * n)

    def constant(self) -> float | None:
        return None

    def sft_alpha(self) -> float | None:
        return self.constant()

    def update_alpha(self, chain_alphas: list) -> float | torch.Tensor | None:
        return self.constant()

    def adjust_advantages(self, seq_adv: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        return seq_adv

    def extra_loss(self, batch: dict, clip_eps: float) -> torch.Tensor | None:
        return None

    def eval_policy(self, model):
        return model if self.selected is None else GatedPolicy(model, None, self.selected)

    def save(self, folder: Path) -> None:
        if self.selected is not None:
            scale_saved_delta(folder, self.selected)

    def result(self, final: dict) -> dict:
        return {}

    def round_metrics(self, rollout, examples, strategy) -> dict:
        return {}


class NoGate(Gate):
    """``none``: the plain adapter, alpha 1 for every question."""


class FixedAlpha(Gate):
    """CoT-Valve: ``W + alpha * delta`` at a constant alpha everywhere."""

    kind = "fixed"

    def __init__(self, alpha: float):
        self.alpha = float(alpha)
        self.method_suffix = f"-alpha{self.alpha:g}"

    def constant(self) -> float:
        return self.alpha

    def eval_policy(self, model):
        return GatedPolicy(model, None, self.alpha)

    def save(self, folder: Path) -> None:
        scale_saved_delta(folder, self.alpha)

    def result(self, final: dict) -> dict:
        return {"alpha": self.alpha}


class LearnedGate(Gate):
    """A categorical gate over ``cfg.choices``, trained by its clipped score-function loss (see the module doc)."""

    kind = "learned"
    method_suffix = ""

    def __init__(self, cfg):
        self.cfg = cfg
        self.gate: AlphaGate | None = None

    def attach(self, model, hidden_size: int, seed: int) -> None:
        """Build the gate on its own random stream (the run's sampling is not shifted) and attach it to the model
        before the engine is built, so the engine owns, all-reduces and checkpoints its parameters."""
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            gate = AlphaGate(hidden_size, self.cfg.choices, self.cfg.pooling, layer_sizes=(self.cfg.hidden,))
        self.gate = attach_gate(model, gate)

    def optimizer_groups(self, params: list, lr: float) -> list[dict]:
        """The adapter first (its rate is the one scheduled and logged), then the gate at ``gate.lr``."""
        ids = {id(p) for p in self.gate.parameters()}
        return [
            {"params": [p for p in params if id(p) not in ids], "lr": lr},
            {"params": [p for p in params if id(p) in ids], "lr": self.cfg.lr},
        ]

    @torch.no_grad()
    def rollout_alphas(self, model, input_ids, attention_mask, group_size: int, explore: bool) -> RolloutAlphas:
        feats = prompt_features(model, input_ids, attention_mask, self.gate.pooling, self.gate.layer)
        question = self.gate(feats).detach()
        if not explore:
            per_chain = question.repeat_interleave(group_size)
            return RolloutAlphas(question, per_chain.tolist(), feats, question.tolist())
        rep = feats.repeat_interleave(group_size, dim=0)
        alpha = self.gate.sample(rep)
        logp = self.gate.log_prob(rep, alpha)
        return RolloutAlphas(alpha, alpha.tolist(), feats, question.tolist(), logp.tolist())

    def constant(self) -> None:
        return None

    def sft_alpha(self) -> float:
        return self.cfg.sft_alpha

    def update_alpha(self, chain_alphas: list) -> torch.Tensor:
        return torch.tensor(chain_alphas)  # [batch]: each chain at the alpha it was sampled under, as a constant

    def adjust_advantages(self, seq_adv: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        if self.cfg.length_coef <= 0:
            return seq_adv
        cost = self.cfg.length_coef * lengths / lengths.mean().clamp(min=1.0)
        return seq_adv - (cost - cost.mean())

    def extra_loss(self, batch: dict, clip_eps: float) -> torch.Tensor | None:
        """``-mean(min(rho * A, clip(rho) * A))`` with ``rho = p(alpha | prompt) / p_rollout(alpha | prompt)`` and A
        the chain's sequence advantage: only the gate gets this gradient. None for chains without exploration."""
        if "alpha_logp" not in batch:
            return None
        logp = self.gate.log_prob(batch["features"], batch["alpha"])
        ratio = torch.exp(logp - batch["alpha_logp"].to(logp))
        adv = batch["seq_adv"].to(logp)
        return -torch.minimum(ratio * adv, ratio.clamp(1 - clip_eps, 1 + clip_eps) * adv).mean()

    def eval_policy(self, model):
        return GatedPolicy(model, self.gate, self.selected)

    def save(self, folder: Path) -> None:
        save_gate(self.gate, folder, self.selected)

    def result(self, final: dict) -> dict:
        return {"gate": True, **{k: v for k, v in final.items() if k.startswith("alpha_")}}

    def round_metrics(self, rollout, examples, strategy) -> dict:
        """The alphas the round's chains ran under (each chain's draw from the gate, all processes): mean, std, min,
        max and the mean per difficulty level (``alpha_difficulty_{d}``). ``alpha_pick_mean`` is the gate's likeliest
        alpha averaged over the questions (what evaluation applies): with two choices near a tie it says 1 while the
        chains run at both."""
        from gan_cot.gate.stats import flat_alpha_stats

        rows = strategy.gather([(c.alpha, examples[c.example_index].difficulty) for c in rollout.chains])
        picks = strategy.gather([c.question_alpha for c in rollout.chains[:: rollout.group_size]])
        out = flat_alpha_stats([a for a, _ in rows], [d for _, d in rows])
        if picks:
            out["alpha_pick_mean"] = float(sum(picks) / len(picks))
        return out


def scale_saved_delta(folder: Path, alpha: float) -> None:
    """Scale the saved ``lora_B`` tensors by alpha: the folder then holds ``alpha * delta`` for any LoRA loader."""
    from safetensors.torch import load_file, save_file

    path = Path(folder) / "adapter_model.safetensors"
    state = load_file(str(path))
    state = {k: (v * alpha if "lora_B" in k else v).contiguous() for k, v in state.items()}
    save_file(state, str(path), metadata={"format": "pt"})


def build_gate(cfg) -> Gate:
    """The strategy for a ``gate`` config section."""
    if cfg.kind == "learned":
        return LearnedGate(cfg)
    if cfg.kind == "fixed":
        return FixedAlpha(cfg.alpha)
    return NoGate()

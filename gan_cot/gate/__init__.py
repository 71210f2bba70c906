"""The alpha gate: a per-question scale on the policy's LoRA delta.

CoT-Valve observes that scaling a LoRA delta trained towards short chains, ``W + alpha * B A``, moves chain length:
alpha < 1 gives longer chains, alpha > 1 shorter ones (MixChain collects chains from a sweep of alpha). Here alpha is
a choice per question among a few fixed values (``gate.choices``; ``[0, 1]``: the base or the full delta), so the
policy learns how much compression each question can take, and every question still runs under one fixed alpha:
inference can run each alpha's adapter merged, and a serving engine can send each question to a pre-scaled adapter.

- :mod:`gan_cot.gate.scaling`: :func:`gated`, the per-row scale on every LoRA layer (forward, ``generate`` with the
  KV cache, and training);
- :mod:`gan_cot.gate.model`: :class:`AlphaGate` (prompt features -> a categorical over the choices), saving it
  beside the adapter (``alpha_gate.safetensors`` + ``alpha_gate.json``, so a plain peft loader still reads the
  adapter and ignores the gate), and :class:`GatedPolicy` for inference;
- :mod:`gan_cot.gate.kinds`: the gate as the trainer sees it: none, a fixed alpha, or the learned gate.
"""

from gan_cot.gate.kinds import FixedAlpha, Gate, LearnedGate, NoGate, RolloutAlphas, build_gate
from gan_cot.gate.model import (
    GATE_CONFIG,
    GATE_WEIGHTS,
    AlphaGate,
    GatedPolicy,
    attach_gate,
    load_gate,
    load_gated_policy,
    pool_hidden,
    prompt_features,
    save_gate,
)
from gan_cot.gate.scaling import gated, gated_inference, lora_b_modules, peft_model

__all__ = [
    "GATE_CONFIG",
    "GATE_WEIGHTS",
    "AlphaGate",
    "FixedAlpha",
    "GatedPolicy",
    "LearnedGate",
    "Gate",
    "NoGate",
    "RolloutAlphas",
    "attach_gate",
    "build_gate",
    "gated",
    "gated_inference",
    "load_gate",
    "load_gated_policy",
    "lora_b_modules",
    "peft_model",
    "pool_hidden",
    "prompt_features",
    "save_gate",
]

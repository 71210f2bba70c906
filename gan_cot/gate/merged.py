"""Gated inference at merged speed: a categorical gate sends each question to one alpha of its grid, so each alpha
can run as plain merged weights, ``W + alpha * delta`` folded into the layers, with no LoRA layers and no per-row
scale while generating. :class:`MergedGatedPolicy` holds one merged copy of the model per alpha (the base for
alpha 0) and the gate; :func:`gan_cot.generation.generate` groups the questions by their alpha and runs each group
on its copy. Memory: one model per alpha of the grid (two for the default ``[0, 1]``)."""

from __future__ import annotations

import copy

import torch

from gan_cot.gate.model import AlphaGate, prompt_features
from gan_cot.gate.scaling import peft_model


def merged_copy(model, alpha: float):
    """A plain model with ``alpha * delta`` merged into its weights (the peft model is left as it was)."""
    twin = copy.deepcopy(peft_model(model))
    for name, module in twin.named_modules():
        if name.endswith("lora_B"):
            for layer in module.values():
                layer.weight.data.mul_(alpha)
                if getattr(layer, "bias", None) is not None:
                    layer.bias.data.mul_(alpha)
    return twin.merge_and_unload().eval()


class MergedGatedPolicy:
    """A peft model's adapter merged once per alpha of ``gate.choices``, and the gate choosing among them."""

    def __init__(self, model, gate: AlphaGate):
        self.gate = gate
        self.models = {float(a): merged_copy(model, float(a)) for a in gate.choices}

    def parameters(self):
        return next(iter(self.models.values())).parameters()

    def model_for(self, alpha: float):
        return self.models[float(alpha)]

    @torch.no_grad()
    def alpha(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        """The gate's pick per prompt, from the base's pooled prompt state (the alpha-0 copy is the base)."""
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        base = self.models.get(0.0)
        if base is None:
            raise ValueError("a merged gated policy reads its features from the base: the grid needs alpha 0")
        return self.gate(prompt_features(base, input_ids, attention_mask, self.gate.pooling, self.gate.layer))

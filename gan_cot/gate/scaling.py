"""Scaling a peft LoRA model's delta per row: ``W x + alpha[row] * scaling * B A x``.

peft 0.21's ``lora.Linear.forward`` computes ``result = base_layer(x) + lora_B(lora_A(dropout(x))) * scaling``
for each active adapter. :func:`gated` registers a forward hook on every active ``lora_B[adapter]`` module that
multiplies its output by ``alpha.view(-1, 1, ..., 1)``: one alpha per row, broadcast over sequence positions and
features. The LoRA bias (``lora_bias=True``) sits inside ``lora_B``, so it is scaled too; the whole delta is. With
alpha = 0 each layer computes ``base_layer(x) + 0``, bit for bit the base model; with alpha = 1, bit for bit the
plain LoRA model. (This alpha is not peft's ``lora_alpha``: peft's constant ``scaling = lora_alpha / r`` stays as it
is and alpha multiplies on top of it.)

Rows: the hook compares the layer's leading dimension ``n`` with ``len(alpha) = b``. ``n == b``: one alpha per row.
``n == k * b``: rows were repeated, as ``generate`` does for ``num_return_sequences`` (``repeat_interleave`` along
the batch), so alpha is repeated the same way. Anything else is an error. During generation with the KV cache the
batch stays the same from step to step, so one alpha per row holds for the whole generation.

Limits (each raises a clear error): merged adapters (the delta is folded into W and ``lora_B`` is never called),
LoRA variants (DoRA and others: their output is not linear in the delta), LoRA on embedding layers, and nested
:func:`gated` blocks. With gradient checkpointing the forward runs again during ``backward``, so call ``backward``
inside the same :func:`gated` block.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager, nullcontext

import torch
from torch import nn


class _Alpha:
    """One alpha per row, repeated to the row count a layer sees (``repeat_interleave``, as ``generate`` does)."""

    def __init__(self, alpha: float | torch.Tensor):
        if isinstance(alpha, torch.Tensor):
            if alpha.dim() == 0:
                alpha = alpha.reshape(1)
            if alpha.dim() != 1 or alpha.numel() == 0:
                raise ValueError(f"alpha must be a float or a tensor of shape [batch], got {tuple(alpha.shape)}")
            if not alpha.is_floating_point():
                alpha = alpha.float()
        else:
            alpha = float(alpha)
        self.alpha = alpha
        self._rows: dict[int, torch.Tensor] = {}

    def scale(self, out: torch.Tensor) -> torch.Tensor:
        a = self.alpha
        if isinstance(a, float):
            return out * a
        n, b = out.shape[0], a.shape[0]
        if b != 1 and n != b:
            if n % b != 0:
                raise ValueError(
                    f"alpha has {b} rows but a LoRA layer sees a batch of {n}, not a multiple of {b}; pass one alpha "
                    "per row of the batch given to forward/generate (or per returned sequence)"
                )
            if a.requires_grad and torch.is_grad_enabled():
                a = a.repeat_interleave(n // b)  # a fresh graph each forward: several backwards may follow
            else:  # generation: reuse the expansion at every layer and step
                if n not in self._rows:
                    self._rows[n] = a.repeat_interleave(n // b)
                a = self._rows[n]
        a = a.to(device=out.device, dtype=out.dtype)
        return out * a.view(-1, *([1] * (out.dim() - 1)))


def peft_model(model: nn.Module) -> nn.Module:
    """The peft model inside a DeepSpeed engine or DDP wrapper (or the model itself)."""
    inner = getattr(model, "module", None)
    if isinstance(inner, nn.Module) and hasattr(inner, "disable_adapter"):
        return inner
    if not hasattr(model, "disable_adapter"):
        raise TypeError(f"expected a peft model (or an engine wrapping one), got {type(model).__name__}")
    return model


def lora_b_modules(model: nn.Module) -> list[nn.Module]:
    """The ``lora_B`` modules of every active plain-LoRA adapter; raises for what :func:`gated` cannot scale."""
    from peft.tuners.lora import LoraLayer

    found = []
    for name, layer in model.named_modules():
        if not isinstance(layer, LoraLayer):
            continue
        active = [a for a in layer.active_adapters if a in layer.lora_B or a in getattr(layer, "lora_embedding_B", {})]
        if not active:
            continue
        if layer.merged:
            raise ValueError(f"{name}: the adapter is merged into the weights; unmerge it before gating")
        for a in active:
            if a in getattr(layer, "lora_variant", {}):
                raise NotImplementedError(
                    f"{name}: alpha gating supports plain LoRA only, not {a}'s variant (DoRA...)"
                )
            if a not in layer.lora_B:
                raise NotImplementedError(f"{name}: alpha gating does not support LoRA on embedding layers")
            found.append(layer.lora_B[a])
    if not found:
        raise ValueError("no active LoRA layers found: gated() needs a peft LoRA model")
    return found


@contextmanager
def gated(model: nn.Module, alpha: float | torch.Tensor | None) -> Iterator[None]:
    """Scale every active LoRA delta by ``alpha`` inside the block: ``W x + alpha[row] * scaling * B A x``.

    ``alpha``: a float (the same for every row), a tensor [batch] (one per row; repeated when the batch grows by
    an integer factor, e.g. ``num_return_sequences``), or None (no scaling: the plain LoRA). Gradients flow into
    ``alpha`` when it requires grad. ``model`` is a peft model or an engine wrapping one.
    """
    if alpha is None:
        yield
        return
    state = _Alpha(alpha)
    handles = []
    try:
        for mod in lora_b_modules(model):
            if getattr(mod, "_alpha_gate_active", False):
                raise RuntimeError("gated() blocks do not nest: this model is already gated")
            mod._alpha_gate_active = True
            handles.append((mod, mod.register_forward_hook(lambda _m, _inp, out: state.scale(out))))
        yield
    finally:
        for mod, h in handles:
            h.remove()
            mod._alpha_gate_active = False


def gated_inference(model: nn.Module, alpha: float | torch.Tensor):
    """:func:`gated` for generation without grad: when every row has the same alpha of 0 or 1, the base (adapter
    off) or the plain adapter, which compute the same bit for bit without a per-row scale on every LoRA layer (a
    two-choice gate gives one of its two alphas to whole batches). Not for training: it drops alpha's gradient."""
    a = torch.as_tensor(alpha, dtype=torch.float32).reshape(-1)
    if a.numel() and bool((a == a[0]).all()):
        if float(a[0]) == 0.0:
            return peft_model(model).disable_adapter()
        if float(a[0]) == 1.0:
            return nullcontext()
    return gated(model, alpha)

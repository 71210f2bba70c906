"""The learned alpha gate: prompt features -> a categorical choice over a grid of alphas; saving and loading it;
and :class:`GatedPolicy`, a peft model whose delta each question gets at its own alpha."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import nn

from gan_cot.gate.scaling import gated, gated_inference, peft_model

GATE_WEIGHTS = "alpha_gate.safetensors"
GATE_CONFIG = "alpha_gate.json"
GATE_FORMAT = "gan_cot.alpha_gate"
GATE_VERSION = 2
POOLINGS = ("mean", "last")


def pool_hidden(hidden: torch.Tensor, mask: torch.Tensor, pooling: str = "mean") -> torch.Tensor:
    """Hidden states [batch, seq, hidden] and a 0/1 mask [batch, seq] of prompt tokens -> [batch, hidden].

    "mean" averages the masked positions; "last" takes the last masked position of each row, so left and right
    padding both work.
    """
    if pooling not in POOLINGS:
        raise ValueError(f"pooling must be one of {POOLINGS}, got {pooling!r}")
    mask = mask.to(hidden.device)
    if not bool((mask.sum(-1) > 0).all()):
        raise ValueError("every row needs at least one prompt token to pool")
    if pooling == "mean":
        m = mask.to(hidden.dtype).unsqueeze(-1)
        return (hidden * m).sum(1) / m.sum(1)
    last = mask.shape[1] - 1 - mask.flip(-1).long().argmax(-1)  # [batch]
    return hidden[torch.arange(hidden.shape[0], device=hidden.device), last]


class AlphaGate(nn.Module):
    """Pooled prompt hidden state [batch, hidden] -> a distribution over the alphas of ``choices`` (ascending).

    ``LayerNorm`` (no affine; hidden states of different layers and models differ in scale) -> MLP with
    ``layer_sizes`` hidden widths and GELU -> ``K - 1`` logits, one per choice after the first (whose logit is fixed
    at 0). The last layer starts at zero: a new gate gives every choice the same probability and picks the highest
    alpha. ``pooling`` and ``layer`` (an index into the base model's ``hidden_states``) say which features
    :func:`prompt_features` computes for it.
    """

    def __init__(
        self,
        hidden_size: int,
        choices: Sequence[float] = (0.0, 1.0),
        pooling: str = "mean",
        layer: int = -1,
        layer_sizes: Sequence[int] = (64,),
    ):
        super().__init__()
        choices = [float(c) for c in choices]
        if len(choices) < 2 or any(b <= a for a, b in zip(choices, choices[1:])) or choices[0] < 0:
            raise ValueError(f"choices must be two or more alphas >= 0 in ascending order, got {choices}")
        if pooling not in POOLINGS:
            raise ValueError(f"pooling must be one of {POOLINGS}, got {pooling!r}")
        self.hidden_size = int(hidden_size)
        self.choices = choices
        self.pooling = pooling
        self.layer = int(layer)
        self.layer_sizes = [int(n) for n in layer_sizes]
        mods: list[nn.Module] = [nn.LayerNorm(self.hidden_size, elementwise_affine=False)]
        width = self.hidden_size
        for n in self.layer_sizes:
            mods += [nn.Linear(width, n), nn.GELU()]
            width = n
        out = nn.Linear(width, len(choices) - 1)
        nn.init.zeros_(out.weight)
        nn.init.zeros_(out.bias)
        mods.append(out)
        self.net = nn.Sequential(*mods)
        self.register_buffer("alphas", torch.tensor(choices), persistent=False)

    def config(self) -> dict:
        return {
            "format": GATE_FORMAT,
            "version": GATE_VERSION,
            "hidden_size": self.hidden_size,
            "choices": self.choices,
            "pooling": self.pooling,
            "layer": self.layer,
            "layer_sizes": self.layer_sizes,
        }

    def logits(self, features: torch.Tensor) -> torch.Tensor:
        """Logits [batch, K] of pooled features [batch, hidden] (the first choice's is 0)."""
        if features.dim() != 2 or features.shape[-1] != self.hidden_size:
            raise ValueError(f"features must be [batch, {self.hidden_size}], got {tuple(features.shape)}")
        w = self.net[-1].weight
        z = self.net(features.to(device=w.device, dtype=w.dtype))
        return torch.cat([torch.zeros_like(z[:, :1]), z], dim=-1)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """alpha [batch]: the likeliest choice, ties going to the higher alpha (no gradient: the gate trains by
        :meth:`log_prob`)."""
        k = len(self.choices) - 1 - self.logits(features).flip(-1).argmax(-1)
        return self.alphas.to(k.device)[k].detach()

    @torch.no_grad()
    def sample(self, features: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """One alpha per row [batch], drawn from the gate's distribution: ``u ~ U(0, 1)`` against the cumulative
        probabilities counted from the highest alpha down (with two choices: the high one when ``u < p(high)``)."""
        probs = self.logits(features).softmax(-1)
        u = torch.rand(probs.shape[:1], generator=generator, dtype=probs.dtype, device="cpu").to(probs.device)
        below = (u.unsqueeze(-1) >= probs.flip(-1).cumsum(-1)).sum(-1).clamp(max=len(self.choices) - 1)
        return self.alphas.to(probs.device)[len(self.choices) - 1 - below]

    def index(self, alpha: torch.Tensor) -> torch.Tensor:
        """The index [batch] of each alpha among the choices (the nearest one)."""
        a = self.alphas.to(alpha.device)
        return (alpha.to(a.dtype).unsqueeze(-1) - a).abs().argmin(-1)

    def log_prob(self, features: torch.Tensor, alpha: torch.Tensor) -> torch.Tensor:
        """Log-probability [batch] of each row's ``alpha``, as a function of the gate's parameters."""
        logp = self.logits(features).log_softmax(-1)
        return logp.gather(-1, self.index(alpha).to(logp.device).unsqueeze(-1)).squeeze(-1)


def save_gate(gate: AlphaGate, path: str | Path, selected: float | None = None) -> Path:
    """Write ``alpha_gate.safetensors`` and ``alpha_gate.json`` into ``path`` (usually the adapter folder);
    ``selected``: a fixed alpha chosen on validation to answer in the gate's place (``gate.select``), recorded in
    the JSON as ``selected_alpha`` and applied by :func:`load_gated_policy`."""
    from safetensors.torch import save_file

    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().to("cpu").contiguous() for k, v in gate.state_dict().items()}
    save_file(state, str(path / GATE_WEIGHTS), metadata={"format": GATE_FORMAT})
    config = gate.config() | ({} if selected is None else {"selected_alpha": float(selected)})
    (path / GATE_CONFIG).write_text(json.dumps(config, indent=2) + "\n")
    return path


def selected_alpha(path: str | Path) -> float | None:
    """The fixed alpha a run's validation chose over its gate (``gate.select``), or None."""
    config = Path(path) / GATE_CONFIG
    return json.loads(config.read_text()).get("selected_alpha") if config.exists() else None


def load_gate(path: str | Path, device: str | torch.device = "cpu") -> AlphaGate | None:
    """The gate saved in ``path`` (an adapter folder), or None when the folder has no gate."""
    from safetensors.torch import load_file

    path = Path(path)
    if not (path / GATE_CONFIG).exists():
        return None
    cfg = json.loads((path / GATE_CONFIG).read_text())
    if cfg.get("format") != GATE_FORMAT:
        raise ValueError(f"{path / GATE_CONFIG} is not an alpha gate config")
    if not cfg.get("choices"):
        raise ValueError(f"{path / GATE_CONFIG} is a continuous gate, which this version no longer reads")
    if not (path / GATE_WEIGHTS).exists():
        raise FileNotFoundError(f"{path / GATE_CONFIG} exists but {GATE_WEIGHTS} does not")
    gate = AlphaGate(cfg["hidden_size"], cfg["choices"], cfg["pooling"], cfg["layer"], cfg["layer_sizes"])
    gate.load_state_dict(load_file(str(path / GATE_WEIGHTS)), strict=True)
    return gate.to(device)


def attach_gate(model: nn.Module, gate: AlphaGate) -> AlphaGate:
    """Register ``gate`` as the submodule ``alpha_gate`` of the peft model, so that an engine built on the model
    (DeepSpeed, DDP) sees, partitions and all-reduces its parameters. peft's ``save_pretrained`` saves only the
    adapter's own keys and leaves it out: save it with :func:`save_gate`."""
    peft_model(model).add_module("alpha_gate", gate)
    return gate


def prompt_features(
    model: nn.Module,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    pooling: str = "mean",
    layer: int = -1,
    pool_mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """The base model's (adapter disabled; or a plain model: the base itself) pooled hidden state of each prompt,
    [batch, hidden], without grad.

    Position ids follow the attention mask (as ``generate`` computes them), so left and right padding give the
    same features. ``pool_mask`` selects the positions to pool (default: ``attention_mask``).
    """
    inner = peft_model(model) if hasattr(getattr(model, "module", model), "disable_adapter") else model
    device = next(inner.parameters()).device
    input_ids, attention_mask = input_ids.to(device), attention_mask.to(device)
    position_ids = (attention_mask.long().cumsum(-1) - 1).clamp(min=0)
    off = inner.disable_adapter() if hasattr(inner, "disable_adapter") else contextlib.nullcontext()
    with torch.no_grad(), off:
        out = inner(
            input_ids=input_ids,
            attention_mask=attention_mask,
            position_ids=position_ids,
            output_hidden_states=True,
            use_cache=False,
            logits_to_keep=1,
        )
    hidden = out.hidden_states[layer]
    return pool_hidden(hidden, attention_mask if pool_mask is None else pool_mask, pooling).float()


class GatedPolicy:
    """A peft LoRA model whose delta is scaled per question by ``gate`` (or by a fixed ``alpha``).

    ``alpha`` (a float: CoT-Valve's manual alpha) overrides the gate; with neither, alpha is 1.0 (the plain LoRA).
    """

    def __init__(self, model: nn.Module, gate: AlphaGate | None = None, alpha: float | None = None):
        self.model = model
        self.peft_model = peft_model(model)
        self.gate = gate
        self.fixed_alpha = None if alpha is None else float(alpha)

    def features(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """Pooled base-model prompt hidden states [batch, hidden] (no grad)."""
        pooling, layer = (self.gate.pooling, self.gate.layer) if self.gate is not None else ("mean", -1)
        return prompt_features(self.peft_model, input_ids, attention_mask, pooling, layer)

    @torch.no_grad()
    def alpha(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        """alpha [batch] for prompts: the fixed alpha, the gate's choice, or 1.0."""
        if self.fixed_alpha is not None or self.gate is None:
            return torch.full((input_ids.shape[0],), 1.0 if self.fixed_alpha is None else self.fixed_alpha)
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        return self.gate(self.features(input_ids, attention_mask))

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None, alpha=None, **kwargs):
        """The model's forward under ``gated(model, alpha)``; ``alpha`` defaults to :meth:`alpha` of ``input_ids``."""
        if alpha is None:
            alpha = self.alpha(input_ids, attention_mask)
        with gated(self.peft_model, alpha):
            return self.model(input_ids=input_ids, attention_mask=attention_mask, **kwargs)

    __call__ = forward

    @torch.no_grad()
    def generate(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None, alpha=None, **kwargs):
        """``generate`` with each prompt's delta at its alpha (from :meth:`alpha` unless given)."""
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        if alpha is None:
            alpha = self.alpha(input_ids, attention_mask)
        with gated_inference(self.peft_model, alpha):
            return self.peft_model.generate(input_ids=input_ids, attention_mask=attention_mask, **kwargs)

    def parameters(self):
        return self.peft_model.parameters()


def load_gated_policy(
    adapter_dir: str | Path,
    dtype: torch.dtype | str = torch.float32,
    alpha: float | None = None,
    use_selected: bool = True,
):
    """An adapter folder loaded unmerged (the gate scales the delta per question) with its gate, if saved; at
    ``alpha`` if given, else at the alpha the run's validation chose over the gate (``selected_alpha``), if any and
    ``use_selected`` (False: the gate answers, as it did before the choice)."""
    from peft import PeftModel

    from gan_cot.models import load_model, resolve_base

    adapter_dir = Path(adapter_dir)
    base_path = resolve_base(json.loads((adapter_dir / "adapter_config.json").read_text())["base_model_name_or_path"])
    model = PeftModel.from_pretrained(load_model(base_path, dtype=dtype), str(adapter_dir))
    model.eval()
    gate = load_gate(adapter_dir, device=next(model.parameters()).device)
    if alpha is None and use_selected:
        alpha = selected_alpha(adapter_dir)
    return GatedPolicy(model, gate, alpha)

"""The alpha gate: a per-input scale on the policy's LoRA delta.

CoT-Valve observes that scaling a LoRA delta trained towards short chains, ``W + alpha * B A``, moves chain
length smoothly: alpha < 1 gives longer chains, alpha > 1 shorter ones (MixChain collects chains from a sweep
of alpha). Here alpha is a function of the question, so the policy learns how much compression each question
can take. (This alpha is not peft's ``lora_alpha``: peft's constant ``scaling = lora_alpha / r`` stays as it is
and the gate multiplies on top of it.)

Pieces:

- :class:`AlphaGate`: the base model's pooled prompt hidden state (adapter off; mean or last token) through a
  small MLP ending in ``alpha_max * sigmoid(.)``, so alpha lies in ``[0, alpha_max]``. The last layer starts at
  zero with the bias at ``logit(1 / alpha_max)``: a new gate gives alpha = 1.0 for every input, the plain LoRA.
- :func:`gated`: a context manager that turns every LoRA layer of a peft model into
  ``W x + alpha[row] * scaling * B A x``. alpha is a float (CoT-Valve's manual alpha, the same for every row) or a
  tensor of shape [batch]. It works in ``forward``, in batched ``generate`` with the KV cache, and under training
  (gradients reach alpha, hence the gate).
- :class:`GatedPolicy`: a peft model plus a gate (or a fixed alpha): prompt features, alpha, forward and generate.
- :func:`save_gate` / :func:`load_gate`: ``alpha_gate.safetensors`` + ``alpha_gate.json`` in the adapter folder.
- :func:`length_cost` and :func:`gate_loss`: the training signals (see "Training" below).

How the scaling is applied
--------------------------
peft 0.21's ``lora.Linear.forward`` computes ``result = base_layer(x) + lora_B(lora_A(dropout(x))) * scaling``
for each active adapter. :func:`gated` registers a forward hook on every active ``lora_B[adapter]`` module that
multiplies its output by ``alpha.view(-1, 1, ..., 1)``: one alpha per row, broadcast over sequence positions and
features. The LoRA bias (``lora_bias=True``) sits inside ``lora_B``, so it is scaled too; the whole delta is. With
alpha = 0 each layer computes ``base_layer(x) + 0``, bit for bit the base model; with alpha = 1, bit for bit the
plain LoRA model.

Rows: the hook compares the layer's leading dimension ``n`` with ``len(alpha) = b``. ``n == b``: one alpha per row.
``n == k * b``: rows were repeated, as ``generate`` does for ``num_return_sequences`` and ``num_beams``
(``repeat_interleave`` along the batch), so alpha is repeated the same way (the same rule also fits a layer that
sees batch-major flattened tokens). Anything else is an error. Pass ``len(alpha) == batch * num_return_sequences``
to give each returned sequence its own alpha. During generation with the KV cache the batch stays the same from
step to step, so one alpha per row holds for the whole generation.

Limits (each raises a clear error): merged adapters (the delta is folded into W and ``lora_B`` is never called),
LoRA variants (DoRA and others: their output is not linear in the delta), LoRA on embedding layers, and nested
:func:`gated` blocks. peft's mixed-adapter batches (``adapter_names=``) call ``lora_B`` on sub-batches and fail
the row check. A gated policy cannot be merged for inference (alpha differs per input): load it unmerged with
:func:`load_gated_policy`. With gradient checkpointing, the forward runs again during ``backward``, so call
``backward`` inside the same :func:`gated` block (torch's non-reentrant checkpoint raises ``CheckpointError``
otherwise).

Training
--------
alpha enters the policy's log-probabilities differentiably, so the gate is just more policy parameters. Two
ways to train it, both principled; pick one per run:

1. **Pathwise** (default, no exploration). At rollout ``alpha = gate(features)`` (no grad) and generation runs
   under ``gated(model, alpha)``. In the update, ``alpha = gate(features)`` *with* grad and the policy forward
   runs under ``gated(model, alpha)``: the usual token policy-gradient (PPO) loss back-propagates into the gate,
   each token pulling alpha in the direction that makes advantageous tokens likelier. ``old_logp`` must be
   computed under the rollout alpha, so the ratio covers the change in alpha too. Length enters through the
   reward: subtract :func:`length_cost` from each sequence's reward before the group normalisation, and the
   advantages (hence the gate) favour short chains only as far as they stay correct. No extra loss term.
2. **REINFORCE on alpha** (exploration, ``sigma > 0``). At rollout each sample draws its own alpha,
   ``gate.sample(features, sigma)`` (Gaussian noise in logit space), so the G samples of a question try
   different compression levels. In the update the policy forward runs under ``gated(model, sampled_alpha)``
   with alpha a constant (detached): the token loss trains the LoRA only. The gate is trained by
   ``gate_loss(gate.log_prob(features, sampled_alpha, sigma), sequence_advantage)``: a score-function
   estimator for a one-dimensional action, where the group-normalised sequence advantage (correctness minus
   :func:`length_cost`) tells which alpha worked best for this question. Do not combine it with the pathwise
   gradient of mode 1 on the same samples; both estimate the same gradient and would count it twice.
3. **A choice of two alphas** (``choices=(low, high)``, trained as in mode 2): the gate's logit is a Bernoulli,
   ``p(high) = sigmoid(logit)``; :meth:`AlphaGate.sample` draws one of the two alphas per chain and
   :meth:`AlphaGate.log_prob` is the Bernoulli's. At inference alpha is the likelier of the two, so a question
   gets either the base (``low = 0``) or the full delta, never a mix of the two styles.

The gate does not take a direct "push alpha up" term: larger alpha shortens chains only while the delta points
towards short chains, which the same loop is still learning. Per-input variation is what the gate adds; its
overall level trades off against the norm of ``B`` and is bounded by ``alpha_max``.

Saving
------
The gate is saved beside the adapter as ``alpha_gate.safetensors`` (weights, safetensors only) and
``alpha_gate.json`` (hidden size, alpha_max, pooling, hidden-state layer, MLP layer sizes). This mirrors how peft
stores extra trainable parameters alongside an adapter (``modules_to_save``), but keeps the gate in its own
files so that a plain peft loader still reads the adapter folder unchanged (and ignores the gate).
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, nullcontext
from pathlib import Path

import torch
from torch import nn

GATE_WEIGHTS = "alpha_gate.safetensors"
GATE_CONFIG = "alpha_gate.json"
GATE_FORMAT = "gan_cot.alpha_gate"
POOLINGS = ("mean", "last")


# -- the gate --------------------------------------------------------------------------------------


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
    """Pooled prompt hidden state [batch, hidden] -> alpha [batch] in ``[0, alpha_max]``.

    ``LayerNorm`` (no affine; hidden states of different layers and models differ in scale) -> MLP with
    ``layer_sizes`` hidden widths and GELU -> one logit -> ``alpha_max * sigmoid(logit)``. Starts at alpha = 1.0.
    ``pooling`` ("mean" over prompt tokens or the "last" prompt token) and ``layer`` (index into the base
    model's ``hidden_states``; -1 is the last) say which features :meth:`GatedPolicy.features` computes.
    """

    def __init__(
        self,
        hidden_size: int,
        alpha_max: float = 2.0,
        pooling: str = "mean",
        layer: int = -1,
        layer_sizes: Sequence[int] = (64,),
        choices: Sequence[float] | None = None,
    ):
        super().__init__()
        if choices is not None:
            choices = [float(c) for c in choices]
            if len(choices) != 2 or not 0 <= choices[0] < choices[1]:
                raise ValueError(f"choices must be two alphas [low, high] with 0 <= low < high, got {choices}")
        if pooling not in POOLINGS:
            raise ValueError(f"pooling must be one of {POOLINGS}, got {pooling!r}")
        if not alpha_max > 1.0:
            raise ValueError(f"alpha_max must be > 1 so that the gate can start at alpha = 1, got {alpha_max}")
        self.hidden_size = int(hidden_size)
        self.alpha_max = float(alpha_max)
        self.pooling = pooling
        self.layer = int(layer)
        self.layer_sizes = [int(n) for n in layer_sizes]
        self.choices = choices
        mods: list[nn.Module] = [nn.LayerNorm(self.hidden_size, elementwise_affine=False)]
        width = self.hidden_size
        for n in self.layer_sizes:
            mods += [nn.Linear(width, n), nn.GELU()]
            width = n
        out = nn.Linear(width, 1)
        nn.init.zeros_(out.weight)
        # logit(1 / alpha_max): alpha = 1; a choice starts even (p(high) = 0.5), with the high alpha as its pick
        nn.init.constant_(out.bias, 0.0 if choices else -math.log(self.alpha_max - 1.0))
        mods.append(out)
        self.net = nn.Sequential(*mods)

    def config(self) -> dict:
        return {
            "format": GATE_FORMAT,
            "version": 1,
            "hidden_size": self.hidden_size,
            "alpha_max": self.alpha_max,
            "pooling": self.pooling,
            "layer": self.layer,
            "layer_sizes": self.layer_sizes,
            "choices": self.choices,
        }

    def logit(self, features: torch.Tensor) -> torch.Tensor:
        """Pre-sigmoid logit [batch] of pooled features [batch, hidden]."""
        if features.dim() != 2 or features.shape[-1] != self.hidden_size:
            raise ValueError(f"features must be [batch, {self.hidden_size}], got {tuple(features.shape)}")
        w = self.net[-1].weight
        return self.net(features.to(device=w.device, dtype=w.dtype)).squeeze(-1)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """alpha [batch] in [0, alpha_max]; with ``choices``, the likelier of the two (no gradient: a choice gate
        trains by :meth:`log_prob`)."""
        z = self.logit(features)
        if self.choices is not None:
            low, high = self.choices
            return torch.where(z >= 0, torch.full_like(z, high), torch.full_like(z, low)).detach()
        return self.alpha_max * torch.sigmoid(z)

    def pool(self, hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Hidden states [batch, seq, hidden] -> [batch, hidden] with this gate's pooling (see :func:`pool_hidden`)."""
        return pool_hidden(hidden, mask, self.pooling)

    @torch.no_grad()
    def sample(self, features: torch.Tensor, sigma: float, generator: torch.Generator | None = None) -> torch.Tensor:
        """Exploration for the REINFORCE mode: ``alpha_max * sigmoid(logit + sigma * N(0, 1))``, [batch]; with
        ``choices``, the high alpha with probability ``sigmoid(logit)``, else the low one (``sigma`` unused)."""
        z = self.logit(features)
        if self.choices is not None:
            u = torch.rand(z.shape, generator=generator, dtype=z.dtype, device="cpu").to(z.device)
            low, high = self.choices
            return torch.where(u < torch.sigmoid(z), torch.full_like(z, high), torch.full_like(z, low))
        noise = torch.randn(z.shape, generator=generator, dtype=z.dtype, device="cpu").to(z.device)
        return self.alpha_max * torch.sigmoid(z + sigma * noise)

    def log_prob(self, features: torch.Tensor, alpha: torch.Tensor, sigma: float) -> torch.Tensor:
        """Log-density [batch] of ``alpha`` under :meth:`sample`'s distribution, as a function of the gate's
        parameters (the change of variables from logit to alpha does not depend on them and is left out)."""
        m = self.logit(features)
        if self.choices is not None:  # Bernoulli: log sigmoid(m) for the high alpha, log sigmoid(-m) for the low
            high = alpha.to(m) > sum(self.choices) / 2
            return torch.nn.functional.logsigmoid(torch.where(high, m, -m))
        if sigma <= 0:
            raise ValueError("log_prob needs sigma > 0")
        a = (alpha.to(m) / self.alpha_max).clamp(1e-6, 1 - 1e-6)
        z = torch.log(a) - torch.log1p(-a)
        return torch.distributions.Normal(m, sigma).log_prob(z)

    def save_pretrained(self, path: str | Path) -> Path:
        return save_gate(self, path)

    @classmethod
    def from_pretrained(cls, path: str | Path, device: str | torch.device = "cpu") -> AlphaGate:
        gate = load_gate(path, device=device)
        if gate is None:
            raise FileNotFoundError(f"no {GATE_CONFIG} in {path}")
        return gate


def save_gate(gate: AlphaGate, path: str | Path) -> Path:
    """Write ``alpha_gate.safetensors`` and ``alpha_gate.json`` into ``path`` (usually the adapter folder)."""
    from safetensors.torch import save_file

    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().to("cpu").contiguous() for k, v in gate.state_dict().items()}
    save_file(state, str(path / GATE_WEIGHTS), metadata={"format": GATE_FORMAT})
    (path / GATE_CONFIG).write_text(json.dumps(gate.config(), indent=2) + "\n")
    return path


def load_gate(path: str | Path, device: str | torch.device = "cpu") -> AlphaGate | None:
    """The gate saved in ``path`` (an adapter folder), or None when the folder has no gate."""
    from safetensors.torch import load_file

    path = Path(path)
    if not (path / GATE_CONFIG).exists():
        return None
    cfg = json.loads((path / GATE_CONFIG).read_text())
    if cfg.get("format") != GATE_FORMAT:
        raise ValueError(f"{path / GATE_CONFIG} is not an alpha gate config")
    if not (path / GATE_WEIGHTS).exists():
        raise FileNotFoundError(f"{path / GATE_CONFIG} exists but {GATE_WEIGHTS} does not")
    gate = AlphaGate(
        cfg["hidden_size"], cfg["alpha_max"], cfg["pooling"], cfg["layer"], cfg["layer_sizes"], cfg.get("choices")
    )
    gate.load_state_dict(load_file(str(path / GATE_WEIGHTS)), strict=True)
    return gate.to(device)


def attach_gate(model: nn.Module, gate: AlphaGate) -> AlphaGate:
    """Register ``gate`` as the submodule ``alpha_gate`` of the peft model, so that an engine built on the model
    (DeepSpeed, DDP) sees, partitions and all-reduces its parameters. peft's ``save_pretrained`` saves only the
    adapter's own keys and leaves it out: save it with :func:`save_gate`."""
    _peft_model(model).add_module("alpha_gate", gate)
    return gate


# -- scaling the LoRA delta ------------------------------------------------------------------------


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


def _peft_model(model: nn.Module) -> nn.Module:
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


# -- a policy with a gate --------------------------------------------------------------------------


def prompt_features(
    model: nn.Module,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    pooling: str = "mean",
    layer: int = -1,
    pool_mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """The base model's (adapter disabled) pooled hidden state of each prompt, [batch, hidden], without grad.

    Position ids follow the attention mask (as ``generate`` computes them), so left and right padding give the
    same features. ``pool_mask`` selects the positions to pool (default: ``attention_mask``); with a causal model
    a prompt + completion batch and a mask over the prompt tokens gives the prompt's features.
    """
    peft_model = _peft_model(model)
    device = next(peft_model.parameters()).device
    input_ids, attention_mask = input_ids.to(device), attention_mask.to(device)
    position_ids = (attention_mask.long().cumsum(-1) - 1).clamp(min=0)
    with torch.no_grad(), peft_model.disable_adapter():
        out = peft_model(
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
    """A peft LoRA model whose delta is scaled per input by ``gate`` (or by a fixed ``alpha``).

    ``alpha`` (a float: CoT-Valve's manual alpha) overrides the gate; with neither, alpha is 1.0 (the plain LoRA).
    ``model`` may be a DeepSpeed engine wrapping the peft model: :meth:`forward` then calls the engine.
    """

    def __init__(self, model: nn.Module, gate: AlphaGate | None = None, alpha: float | None = None):
        self.model = model
        self.peft_model = _peft_model(model)
        self.gate = gate
        self.fixed_alpha = None if alpha is None else float(alpha)

    def features(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, pool_mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Pooled base-model prompt hidden states [batch, hidden] (no grad); constant for a question while the
        base is frozen, so compute them once at rollout and keep them for the update."""
        pooling, layer = (self.gate.pooling, self.gate.layer) if self.gate is not None else ("mean", -1)
        return prompt_features(self.peft_model, input_ids, attention_mask, pooling, layer, pool_mask)

    def alpha(
        self,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        features: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """alpha [batch] for prompts (or for precomputed ``features``); carries the gate's grad when enabled."""
        if features is None:
            if input_ids is None:
                raise ValueError("alpha() needs prompts (input_ids, attention_mask) or features")
            if attention_mask is None:
                attention_mask = torch.ones_like(input_ids)
            batch = input_ids.shape[0]
        else:
            batch = features.shape[0]
        if self.fixed_alpha is not None or self.gate is None:
            value = 1.0 if self.fixed_alpha is None else self.fixed_alpha
            return torch.full((batch,), value)
        if features is None:
            features = self.features(input_ids, attention_mask)
        return self.gate(features)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None, alpha=None, **kwargs):
        """The model's forward under ``gated(model, alpha)``; ``alpha`` defaults to :meth:`alpha` of ``input_ids``
        (pass it explicitly when ``input_ids`` hold prompt + completion)."""
        if alpha is None:
            alpha = self.alpha(input_ids, attention_mask)
        with gated(self.peft_model, alpha):
            return self.model(input_ids=input_ids, attention_mask=attention_mask, **kwargs)

    __call__ = forward

    @torch.no_grad()
    def generate(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None, alpha=None, **kwargs):
        """``generate`` under ``gated(model, alpha)``; ``alpha`` [batch] (one per prompt, repeated for
        ``num_return_sequences``) or [batch * num_return_sequences], a float, or None (from the gate)."""
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        if alpha is None:
            alpha = self.alpha(input_ids, attention_mask)
        with gated_inference(self.peft_model, alpha):
            return self.peft_model.generate(input_ids=input_ids, attention_mask=attention_mask, **kwargs)


def gated_inference(model: nn.Module, alpha: float | torch.Tensor):
    """:func:`gated` for generation without grad: when every row has the same alpha of 0 or 1, the base (adapter
    off) or the plain adapter, which compute the same bit for bit without a per-row scale on every LoRA layer (a
    two-choice gate gives one of its two alphas to whole batches). Not for training: it drops alpha's gradient."""
    a = torch.as_tensor(alpha, dtype=torch.float32).reshape(-1)
    if a.numel() and bool((a == a[0]).all()):
        if float(a[0]) == 0.0:
            return _peft_model(model).disable_adapter()
        if float(a[0]) == 1.0:
            return nullcontext()
    return gated(model, alpha)


def load_gated_policy(adapter_dir: str | Path, dtype: torch.dtype | str = torch.float32, alpha: float | None = None):
    """An adapter folder loaded unmerged (the gate scales the delta per input) with its gate, if saved."""
    from peft import PeftModel

    from gan_cot.models import load_model

    adapter_dir = Path(adapter_dir)
    base_path = json.loads((adapter_dir / "adapter_config.json").read_text())["base_model_name_or_path"]
    model = PeftModel.from_pretrained(load_model(base_path, dtype=dtype), str(adapter_dir))
    model.eval()
    gate = load_gate(adapter_dir, device=next(model.parameters()).device)
    return GatedPolicy(model, gate, alpha)


# -- training signals ------------------------------------------------------------------------------


def length_cost(
    tokens: torch.Tensor | Sequence[float], reference_tokens: torch.Tensor | Sequence[float] | float, coef: float
) -> torch.Tensor:
    """``coef * tokens / reference_tokens`` per example: a cost to subtract from each sequence's reward before
    the group normalisation (the reference: e.g. the base model's tokens on the question, or the group mean).

    Through the advantages it reaches the LoRA and, in either training mode, the gate: the gate is pushed
    towards shorter chains only where they stay correct, since a wrong answer loses more reward than the cost.
    """
    tokens = torch.as_tensor(tokens, dtype=torch.float32)
    ref = torch.as_tensor(reference_tokens, dtype=torch.float32).to(tokens.device)
    return coef * tokens / ref.clamp(min=1.0)


def gate_loss(log_prob: torch.Tensor, advantage: torch.Tensor) -> torch.Tensor:
    """REINFORCE for the sampled alpha (training mode 2): ``-mean(advantage * log p(alpha | prompt))``.

    ``log_prob`` [n]: ``gate.log_prob(features, sampled_alpha, sigma)``; ``advantage`` [n]: the group-normalised
    sequence advantage of each sample (its reward, correctness minus :func:`length_cost`, against the other
    samples of the same question), treated as a constant.
    """
    advantage = torch.as_tensor(advantage, dtype=log_prob.dtype, device=log_prob.device).detach()
    if advantage.shape != log_prob.shape:
        raise ValueError(f"advantage {tuple(advantage.shape)} and log_prob {tuple(log_prob.shape)} must match")
    return -(advantage * log_prob).mean()

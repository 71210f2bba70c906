"""Qwen2.5-Math-PRM built by gan-cot's own code: a Qwen2 backbone and a two-layer score head.

The published checkpoints (``Qwen/Qwen2.5-Math-PRM-7B``, ``-72B``) name the architecture ``Qwen2ForProcessRewardModel``
and ship its modeling code (``auto_map``), which gan-cot never runs. The layout is small enough to build here:
``model.*`` is a plain :class:`transformers.Qwen2Model` and ``score`` is ``Linear(hidden, hidden) -> ReLU ->
Linear(hidden, 2)`` (``score.0.*``, ``score.2.*``); class 1 is a correct step. Weights come from the safetensors files
(one file or shards with an index); an ``lm_head.*`` left in them is ignored.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from torch import nn

ARCHITECTURE = "Qwen2ForProcessRewardModel"
N_CLASSES = 2
# config.json keys that belong to the published remote code, not to Qwen2Config
_DROPPED_KEYS = ("auto_map", "architectures", "_name_or_path", "transformers_version", "torch_dtype", "dtype")


class Qwen2ProcessRewardModel(nn.Module):
    """``model`` (Qwen2Model) + ``score`` (two layers); :meth:`step_logits` scores given positions only."""

    def __init__(self, config):
        from transformers import Qwen2Model

        super().__init__()
        self.config = config
        self.model = Qwen2Model(config)
        hidden = config.hidden_size
        self.score = nn.Sequential(nn.Linear(hidden, hidden), nn.ReLU(), nn.Linear(hidden, N_CLASSES))

    def step_logits(self, input_ids, attention_mask, positions) -> torch.Tensor:
        """[batch, steps, 2] logits at ``positions`` ([batch, steps], -1 for padding steps)."""
        hidden = self.model(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state  # [B, T, H]
        idx = positions.clamp(min=0).unsqueeze(-1).expand(-1, -1, hidden.shape[-1])
        return self.score(torch.gather(hidden, 1, idx))

    @classmethod
    def from_folder(cls, folder: Path, dtype: torch.dtype) -> Qwen2ProcessRewardModel:
        from safetensors import safe_open
        from transformers import Qwen2Config

        raw = json.loads((folder / "config.json").read_text())
        config = Qwen2Config(**{k: v for k, v in raw.items() if k not in _DROPPED_KEYS and k != "model_type"})
        with torch.device("meta"):
            model = cls(config)
        state = {}
        for file in sorted(folder.glob("*.safetensors")):
            with safe_open(str(file), framework="pt") as f:
                for key in f.keys():  # noqa: SIM118 - safe_open is not a mapping
                    if not key.startswith("lm_head."):
                        state[key] = f.get_tensor(key).to(dtype)
        expected = set(model.state_dict())
        missing, unexpected = sorted(expected - set(state)), sorted(set(state) - expected)
        if missing or unexpected:
            shown = (missing or unexpected)[:4]
            raise ValueError(
                f"{folder} does not hold a {ARCHITECTURE}: "
                + (f"missing tensors {shown}" if missing else f"unexpected tensors {shown}")
            )
        model.load_state_dict(state, assign=True)
        # buffers that are not in a checkpoint (the rotary frequencies) were built on the meta device
        model.model.rotary_emb = type(model.model.rotary_emb)(config=config)
        return model.to(dtype)

    def save_pretrained(self, folder: Path, **_) -> None:
        """config.json (no remote code) and model.safetensors under the published tensor names."""
        from safetensors.torch import save_file

        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        config = self.config.to_dict()
        config.update(architectures=[ARCHITECTURE], model_type="qwen2")
        (folder / "config.json").write_text(json.dumps(config, indent=2) + "\n")
        state = {k: v.detach().contiguous() for k, v in self.state_dict().items()}
        save_file(state, str(folder / "model.safetensors"), metadata={"format": "pt"})

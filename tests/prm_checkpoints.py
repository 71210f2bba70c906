"""Tiny random checkpoints in the exact layouts of the process reward models people have: the tensor names and
config fields of the public ones, scaled down. Used by tests/test_prm_layouts.py and the end-to-end runs.

* :func:`trl_prm`: what TRL's ``PRMTrainer`` saves, a two-label ``Qwen2ForTokenClassification`` (``model.*``,
  ``score.weight``), no gan-cot card;
* :func:`step_tag_lm`: Math-Shepherd's PRM, a ``MistralForCausalLM`` (``model.*``, ``lm_head.weight``) read at the
  step tag ``ки`` through the ``+`` and ``-`` tokens;
* :func:`qwen_prm`: Qwen2.5-Math-PRM, ``Qwen2ForProcessRewardModel`` with its ``auto_map``, shipped modeling code
  (which here would leave a file behind if it ever ran), ``model.*`` + ``score.0.*`` + ``score.2.*`` (+ an ignored
  ``lm_head.weight``) in two shards with an index, and a tokenizer with ``<extra_0>`` and a ChatML template.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

import torch

CHATML = (
    "{%- for message in messages %}{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' }}"
    "{%- endfor %}{%- if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{%- endif %}"
)
SHIPPED_CODE = "open({marker!r}, 'w').close()\n"  # what the checkpoint's own code would do if gan-cot ran it
SMALL = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 2,
         "num_key_value_heads": 1, "max_position_embeddings": 256}  # fmt: skip


def _tokenizer(base, special=(), plain=()):
    tok = copy.deepcopy(base)
    if special:
        tok.add_special_tokens({"additional_special_tokens": list(special)})
    if plain:
        tok.add_tokens(list(plain))
    return tok


def trl_prm(folder: Path, base_tokenizer, id2label: dict | None = None, seed: int = 0) -> Path:
    from transformers import Qwen2Config, Qwen2ForTokenClassification

    torch.manual_seed(seed)
    tok = _tokenizer(base_tokenizer)
    labels = id2label or {0: "LABEL_0", 1: "LABEL_1"}
    config = Qwen2Config(vocab_size=len(tok), num_labels=2, id2label=labels, label2id={v: k for k, v in labels.items()},
                         pad_token_id=tok.pad_token_id, **SMALL)  # fmt: skip
    Qwen2ForTokenClassification(config).save_pretrained(folder, safe_serialization=True)
    tok.save_pretrained(folder)
    return Path(folder)


def step_tag_lm(folder: Path, base_tokenizer, seed: int = 0) -> Path:
    from transformers import MistralConfig, MistralForCausalLM

    torch.manual_seed(seed)
    tok = _tokenizer(base_tokenizer, plain=["ки"])
    config = MistralConfig(vocab_size=len(tok), sliding_window=4096, tie_word_embeddings=False, **SMALL)
    MistralForCausalLM(config).save_pretrained(folder, safe_serialization=True)
    tok.save_pretrained(folder)
    return Path(folder)


def qwen_prm(folder: Path, base_tokenizer, marker: Path, seed: int = 0) -> Path:
    from safetensors.torch import save_file
    from transformers import Qwen2Config, Qwen2Model

    torch.manual_seed(seed)
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    tok = _tokenizer(base_tokenizer, special=["<|im_start|>", "<|im_end|>", "<extra_0>"])
    tok.chat_template = CHATML
    tok.save_pretrained(folder)
    config = {
        "architectures": ["Qwen2ForProcessRewardModel"],
        "attention_dropout": 0.0,
        "auto_map": {
            "AutoConfig": "configuration_qwen2_rm.Qwen2RMConfig",
            "AutoModel": "modeling_qwen2_rm.Qwen2ForProcessRewardModel",
        },
        "bos_token_id": tok.eos_token_id, "eos_token_id": tok.eos_token_id, "hidden_act": "silu",
        "initializer_range": 0.02, "max_window_layers": 2, "model_type": "qwen2", "rms_norm_eps": 1e-05,
        "rope_theta": 10000.0, "sliding_window": 131072, "tie_word_embeddings": False, "torch_dtype": "bfloat16",
        "transformers_version": "4.37.0", "use_cache": True, "use_mrope": False, "use_sliding_window": False,
        "vocab_size": len(tok), **SMALL,
    }  # fmt: skip
    (folder / "config.json").write_text(json.dumps(config, indent=2))
    (folder / "configuration.json").write_text(json.dumps({"framework": "pytorch", "task": "text-classification"}))
    for name in ("modeling_qwen2_rm.py", "configuration_qwen2_rm.py"):
        (folder / name).write_text(SHIPPED_CODE.format(marker=str(marker)))
    backbone = Qwen2Model(Qwen2Config(**{k: v for k, v in config.items() if k not in ("architectures", "auto_map")}))
    hidden = SMALL["hidden_size"]
    head = torch.nn.Sequential(torch.nn.Linear(hidden, hidden), torch.nn.ReLU(), torch.nn.Linear(hidden, 2))
    state = {f"model.{k}": v for k, v in backbone.state_dict().items()}
    state.update({f"score.{k}": v for k, v in head.state_dict().items()})
    state["lm_head.weight"] = torch.randn(len(tok), hidden)  # left in the published shards; ignored
    names = sorted(state)
    shards = {"model-00001-of-00002.safetensors": names[: len(names) // 2],
              "model-00002-of-00002.safetensors": names[len(names) // 2 :]}  # fmt: skip
    for file, keys in shards.items():
        save_file({k: state[k].contiguous() for k in keys}, str(folder / file), metadata={"format": "pt"})
    index = {"metadata": {}, "weight_map": {k: f for f, keys in shards.items() for k in keys}}
    (folder / "model.safetensors.index.json").write_text(json.dumps(index))
    return folder

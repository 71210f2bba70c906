"""What a training config costs before anything runs (``train_adv.py --dry-run``): the model's size, the memory per
GPU for the chosen ZeRO stage, and the tokens of a round.

Memory per GPU = the frozen base (bf16 or fp32, partitioned under ZeRO-3) + the trainable adapter's model states
(DeepSpeed's own ZeRO estimators: master weights, gradients and Adam moments, partitioned by stage) + the larger of
the update's activations (one micro-batch of prompt + completion tokens; a per-layer estimate calibrated on Qwen2's
layer: ~186 KiB per token per layer in fp32 with LoRA r=64, i.e. about ``10 h + 3.5 i`` values for hidden size h
and MLP width i; with gradient checkpointing one layer's input per layer plus one layer's worth) plus the logits of
the micro-batch and their gradient, and the KV cache of a rollout batch. An estimate: allocator fragmentation,
CUDA context (~1 GiB) and DeepSpeed's buffers come on top.
"""

from __future__ import annotations

import json
from pathlib import Path

from gan_cot.shipped import CONFIGS, resolve

GiB = 1024**3
KNOWN_CONFIGS = CONFIGS / "models"  # architectures of models a dry run can size without the Hub
PROMPT_TOKENS = 150  # a GSM8K question in a chat template; the built-in task's are ~60


def model_config(name_or_path: str) -> dict:
    """The model's ``config.json`` as a dict: from the folder, the Hub, or ``configs/models/<name>.json``."""
    local = Path(name_or_path) / "config.json"
    if local.exists():
        return json.loads(local.read_text())
    known = KNOWN_CONFIGS / (name_or_path.split("/")[-1].lower() + ".json")
    if known.exists():
        return json.loads(known.read_text())
    try:
        from transformers import AutoConfig

        return AutoConfig.from_pretrained(name_or_path).to_dict()
    except Exception as e:  # noqa: BLE001 - offline, or not a Hub id
        raise ValueError(
            f"cannot read the config of {name_or_path} ({type(e).__name__}); pass a local model folder, or add its "
            f"config.json as {known}"
        ) from e


def lora_params(c: dict, r: int, targets: list[str]) -> int:
    """Parameters of a LoRA adapter of rank ``r`` on the attention and MLP projections of a decoder."""
    h, i, layers = c["hidden_size"], c["intermediate_size"], c["num_hidden_layers"]
    heads = c["num_attention_heads"]
    head_dim = c.get("head_dim") or h // heads
    kv = c.get("num_key_value_heads", heads) * head_dim
    shapes = {"q_proj": (h, h), "k_proj": (h, kv), "v_proj": (h, kv), "o_proj": (h, h), "gate_proj": (h, i),
              "up_proj": (h, i), "down_proj": (i, h)}  # fmt: skip
    return layers * sum(r * (a + b) for name, (a, b) in shapes.items() if name in targets)


def base_params(c: dict) -> int:
    h, i, layers, vocab = c["hidden_size"], c["intermediate_size"], c["num_hidden_layers"], c["vocab_size"]
    heads = c["num_attention_heads"]
    head_dim = c.get("head_dim") or h // heads
    kv = c.get("num_key_value_heads", heads) * head_dim
    per_layer = 2 * h * h + 2 * h * kv + 3 * h * i + 2 * h
    embeddings = vocab * h * (1 if c.get("tie_word_embeddings") else 2)
    return layers * per_layer + embeddings + h


def estimate(cfg, world: int = 1, device: str = "cuda") -> dict:
    """The dry run's figures for a training config on ``world`` GPUs (one node), or with ``device="cpu"`` on this
    machine's CPU (``policy.dtype: auto`` is float32 there, as the run would be)."""
    from deepspeed.runtime.zero.stage3 import estimate_zero3_model_states_mem_needs
    from deepspeed.runtime.zero.stage_1_and_2 import estimate_zero2_model_states_mem_needs

    c = model_config(cfg.model)
    stage = json.loads(Path(resolve(cfg.deepspeed)).read_text()).get("zero_optimization", {}).get("stage", 0)
    bf16 = cfg.policy.dtype == "bfloat16" or (cfg.policy.dtype == "auto" and device != "cpu")  # auto: bf16 on GPUs
    wbytes = 2 if bf16 else 4
    n_base, n_lora = base_params(c), lora_params(c, cfg.lora.r, list(cfg.lora.target_modules))
    base = n_base * wbytes / (world if stage == 3 else 1)
    if stage == 3:
        _, states, _ = estimate_zero3_model_states_mem_needs(n_lora, n_lora, world, 1, False, False, True, 1.0)
    else:  # ZeRO-0 partitions nothing (as one GPU); stage 1 partitions less than stage 2 (a slight underestimate)
        _, states = estimate_zero2_model_states_mem_needs(n_lora, world if stage else 1, 1, False, 1.0)
    r, h, i, layers = cfg.rollout, c["hidden_size"], c["intermediate_size"], c["num_hidden_layers"]
    seq = PROMPT_TOKENS + r.max_think_tokens + r.max_answer_tokens
    tokens = cfg.loss.micro_batch * seq
    per_layer = (10 * h + 3.5 * i) * wbytes
    if cfg.policy.gradient_checkpointing:
        acts = tokens * (layers * h * wbytes + per_layer)
    else:
        acts = tokens * layers * per_layer
    logits = (
        tokens * c["vocab_size"] * wbytes * 2 + cfg.loss.micro_batch * cfg.loss.logprob_chunk * c["vocab_size"] * 8
    )
    heads = c["num_attention_heads"]
    kv_width = c.get("num_key_value_heads", heads) * (c.get("head_dim") or h // heads)
    kv_cache = 2 * layers * kv_width * wbytes * r.batch_size * seq
    total = base + states + max(acts + logits, kv_cache)
    chains = r.questions * r.group_size
    return {
        "model": cfg.model,
        "base_params": n_base,
        "lora_params": n_lora,
        "zero_stage": stage,
        "gpus": world,
        "device": device,
        "dtype": "bfloat16" if bf16 else "float32",
        "gradient_checkpointing": cfg.policy.gradient_checkpointing,
        "gib_per_gpu": {
            "base_weights": base / GiB,
            "adapter_states": states / GiB,
            "update_activations": acts / GiB,
            "update_logits": logits / GiB,
            "rollout_kv_cache": kv_cache / GiB,
            "total": total / GiB,
        },
        "tokens_per_round": {"chains": chains, "max_per_chain": seq, "max_total": chains * seq},
        "micro_batch_tokens": tokens,
    }


def _count(n: int) -> str:
    """1.78B, 2.6M, 911.4k: a parameter count at a readable scale."""
    for scale, unit in ((1e9, "B"), (1e6, "M"), (1e3, "k")):
        if n >= scale:
            return f"{n / scale:.{2 if unit == 'B' else 1}f}{unit}"
    return str(n)


def format_estimate(e: dict) -> str:
    g = e["gib_per_gpu"]
    t = e["tokens_per_round"]
    on_gpu = e.get("device", "cuda") != "cpu"
    where = f"{e['gpus']} GPU(s)" if on_gpu else "the CPU (no GPU here; --gpus N sizes a GPU run)"
    lines = [
        f"model {e['model']}: {_count(e['base_params'])} parameters, LoRA adapter {_count(e['lora_params'])}",
        f"ZeRO stage {e['zero_stage']} on {where}, {e['dtype']}, gradient checkpointing "
        f"{'on' if e['gradient_checkpointing'] else 'off'}",
        f"memory {'per GPU' if on_gpu else 'of the process'} (GiB): base weights {g['base_weights']:.1f}, adapter states {g['adapter_states']:.2f}, "
        f"update activations {g['update_activations']:.1f} + logits {g['update_logits']:.1f} "
        f"(micro-batch of {e['micro_batch_tokens']} tokens), rollout KV cache {g['rollout_kv_cache']:.1f}; "
        f"peak about {g['total']:.1f}",
        f"tokens per round: {t['chains']} chains of at most {t['max_per_chain']} tokens ({t['max_total']:,} at most)",
    ]
    return "\n".join(lines)

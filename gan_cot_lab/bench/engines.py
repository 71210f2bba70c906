"""The rollout engines side by side: :class:`gan_cot.vllm_engine.VLLMEngine` against Hugging Face ``generate``
(:class:`gan_cot.generation.HFEngine`) on one base and adapter, the same prompts (the validation questions), budgets
(``rollout.max_think_tokens`` / ``max_answer_tokens``, the forced end of thinking) and sampling.

``rollout``
    Tokens per second of a round's sampling: G chains per question at ``rollout.temperature``, in generation batches
    of ``rollout.batch_size`` chains as the trainer samples them, each question at an alpha of the gate's grid
    [0, 1] (alternating, the same on both sides: half the questions on the base, half on the adapter).
``inference``
    Greedy tokens per second, one chain per question, in batches of ``--gen-batch``: gated (each question on its
    alpha's adapter: one LoRA request per alpha on vLLM, the per-row scale on HF) against the ungated adapter merged
    into the weights, on each engine.

Tokens are every completion token (a forced end of thinking included). Each figure: one warm-up run, then
``--gen-repeats`` alternating timed runs, the fastest kept; vLLM's start and each adapter's first load fall in the
warm-up. The adapter is the one the benchmark trained, or a new one with random ``lora_B`` (only speed is measured).
"""

from __future__ import annotations

import copy
import json
import time
from pathlib import Path

CPU_NOTE = (
    "on a CPU vLLM has little of what makes it fast on a GPU (CUDA graphs, fused paged attention, fused LoRA kernels): "
    "its CPU LoRA path gathers every token's adapter weights in plain PyTorch, and a model this small is bound by each "
    "step's framework overhead on both engines, not by arithmetic"
)


def skip_reason(model_dir: str) -> str | None:
    """Why vLLM cannot run here on this model, or None."""
    import torch

    from gan_cot.vllm_engine import vllm_available

    if not vllm_available():
        return "vLLM is not installed here (pip install 'gan-cot[vllm]'; on a CPU, make vllm-env)"
    config = Path(model_dir) / "config.json"
    if config.exists() and not torch.cuda.is_available():
        c = json.loads(config.read_text())
        head = c.get("head_dim") or c["hidden_size"] // c["num_attention_heads"]
        if head < 32:
            return f"vLLM's CPU attention takes heads of 32 dimensions or more; this model's are {head}"
    return None


def _policy(b, base, cfg, adapter: str | None):
    """The base with the benchmark's trained adapter, unmerged, or with a new adapter whose ``lora_B`` is random."""
    import torch
    from peft import PeftModel, get_peft_model

    if adapter is not None:
        return PeftModel.from_pretrained(base, adapter).eval()
    policy = get_peft_model(base, cfg.lora.peft())
    g = torch.Generator().manual_seed(b.seed)
    for name, p in policy.named_parameters():
        if "lora_B" in name:
            p.data.copy_(torch.randn(p.shape, generator=g) * 0.02)
    return policy.eval()


def _race(runs: dict, repeats: int) -> dict:
    """Tokens per second of each named run: a warm-up each, then ``repeats`` alternating timed runs, the best."""
    for run in runs.values():
        run()
    best: dict[str, float] = {}
    for _ in range(repeats):
        for name, run in runs.items():
            t = time.perf_counter()
            tokens = sum(len(g.completion_ids) for g in run())
            best[name] = max(best.get(name, 0.0), tokens / (time.perf_counter() - t))
    return best


def engine_speed(b, adapter: str | None = None) -> dict:
    import torch

    from gan_cot.gate import build_gate
    from gan_cot.generation import HFEngine, generate_ids
    from gan_cot.models import load_model, render_prompt, resolve_dtype, save_pretrained
    from gan_cot.vllm_engine import VLLMEngine

    reason = skip_reason(b.model_id)
    if reason is not None:
        return {"skipped": reason}
    cfg = b.our_config("engines", 1)
    cfg.rollout.vllm_eager = not torch.cuda.is_available()  # a CPU: no compilation (minutes on two cores)
    cfg.gate.kind, cfg.gate.choices = "learned", [0.0, 1.0]
    gate = build_gate(cfg.gate)
    # both engines on the same device in the same dtype: the GPU in bf16 (policy.dtype auto), else the CPU in fp32
    device, dtype = ("cuda" if torch.cuda.is_available() else "cpu"), resolve_dtype(cfg.policy.dtype)
    base, tok = b.load_base()
    policy = _policy(b, base.to(device=device, dtype=dtype), cfg, adapter)
    policy.save_pretrained(b.work / "engines-adapter")
    merged = load_model(str(b.work / "engines-adapter"), dtype=dtype)  # W + delta, as deployed ungated
    merged_dir = save_pretrained(merged, tok, b.work / "engines-merged")
    merged = merged.to(device).eval()
    vllm = VLLMEngine(cfg)
    vllm.sync(policy, gate)
    merged_cfg = copy.deepcopy(cfg)
    merged_cfg.model, merged_cfg.rollout.vllm_adapter_dir = str(merged_dir), str(b.work / "engines-merged-adapters")
    vllm_merged = VLLMEngine(merged_cfg)
    vllm_merged.sync(policy, gate)  # served at alpha 0: its base, the merged weights, with no LoRA request

    prompts = [render_prompt(tok, b.task.prompt(ex)) for ex in b.val]
    alphas = torch.tensor([float(i % 2) for i in range(len(prompts))])
    fmt, ro = b.task.format, cfg.rollout
    budgets = (ro.max_think_tokens, ro.max_answer_tokens)

    def batches(size: int, sample):
        def run():
            out = []
            for i in range(0, len(prompts), size):
                out += sample(prompts[i : i + size], alphas[i : i + size])
            return out

        return run

    per_batch = max(1, ro.batch_size // b.g)
    rollout = _race({
        "hf": batches(per_batch, lambda p, a: HFEngine().sample(policy, tok, p, b.g, ro.temperature, a, fmt, budgets)),
        "vllm": batches(per_batch, lambda p, a: vllm.sample(policy, tok, p, b.g, ro.temperature, a, fmt, budgets)),
    }, b.args.gen_repeats)  # fmt: skip
    n = b.args.gen_batch
    inference = _race({
        "hf_gated": batches(n, lambda p, a: generate_ids(policy, tok, p, budgets[0], 1, False, 1.0, a, fmt, budgets[1])),
        "hf_merged": batches(n, lambda p, a: generate_ids(merged, tok, p, budgets[0], 1, False, 1.0, None, fmt,
                                                          budgets[1])),
        "vllm_gated": batches(n, lambda p, a: vllm.sample(policy, tok, p, 1, 0.0, a, fmt, budgets)),
        "vllm_merged": batches(n, lambda p, a: vllm_merged.sample(policy, tok, p, 1, 0.0, 0.0, fmt, budgets)),
    }, b.args.gen_repeats)  # fmt: skip
    return {
        "rollout_vllm_vs_hf": rollout["vllm"] / rollout["hf"],
        "gated_vs_merged_vllm": inference["vllm_gated"] / inference["vllm_merged"],
        "gated_vs_merged_hf": inference["hf_gated"] / inference["hf_merged"],
        "gated_vllm_vs_hf": inference["vllm_gated"] / inference["hf_gated"],
        "rollout_tokens_per_s": rollout,
        "inference_tokens_per_s": inference,
        "device": torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu",
        "questions": len(prompts),
        "rollout_batch_chains": per_batch * b.g,
        "trained_adapter": adapter is not None,
        **({} if torch.cuda.is_available() else {"cpu_note": CPU_NOTE}),
    }


def lines(engines: dict) -> list[str]:
    """The part's lines of the benchmark's table."""
    if "skipped" in engines:
        return [f"rollout engines: skipped ({engines['skipped']})"]
    r, i = engines["rollout_tokens_per_s"], engines["inference_tokens_per_s"]
    return [
        f"rollout tokens/s on {engines['device']}: vLLM {r['vllm']:.1f}, HF generate {r['hf']:.1f}, ratio "
        f"{engines['rollout_vllm_vs_hf']:.3f} (GPU target >= 3)",
        f"gated inference tokens/s (each question on its alpha's adapter) against the merged adapter: vLLM "
        f"{i['vllm_gated']:.1f} vs {i['vllm_merged']:.1f} ({engines['gated_vs_merged_vllm']:.3f}), HF "
        f"{i['hf_gated']:.1f} vs {i['hf_merged']:.1f} ({engines['gated_vs_merged_hf']:.3f})",
    ]

"""vLLM rollouts colocated with training: the base model loaded once, the current adapter sent as LoRA requests.

- **Where it runs.** In each training process (vLLM's ``external_launcher`` executor on the process group DeepSpeed
  already made, as TRL's colocate mode does), in ``rollout.vllm_gpu_memory`` of the GPU. Each process samples its own
  share of the round's questions (the trainer splits them by rank) on its own engine: one engine serving every rank
  would need the prompts gathered and the chains scattered at every batch while the other GPUs wait, against one
  more copy of the frozen base per GPU here (2 bytes a parameter in bf16).
- **The adapter, each round.** The base never changes (only the LoRA trains), so it is loaded once. :meth:`sync`,
  called before every rollout, reads the adapter (gathered under ZeRO-3) and, when it changed, writes it once per
  alpha of the gate's grid with ``lora_B`` pre-scaled by alpha: vLLM's ``W + scaling * (alpha B) A`` is the gated
  layer ``W + alpha * scaling * B A`` (:mod:`gan_cot.gate.scaling`). Alpha 0 is the base: no LoRA request. Nothing is
  merged. Each question, or each chain when the gate draws an alpha per chain, is sent with its alpha's request.
- **Sampling as the HF path does it** (:func:`gan_cot.generation.generate_ids`): the temperature, top-p 1, top-k
  off, no penalties, the model's own generation defaults ignored; a chain stops at the end-of-sequence token (also
  when it is the pad token). The thinking runs at most ``max_think_tokens`` and stops at the end-of-thinking marker;
  a chain that wrote the marker then samples ``max_answer_tokens`` more, one that did not gets ``fmt.forced_end`` and
  ``max_answer_tokens`` greedy tokens, each at its alpha.
- **Log-probabilities**: vLLM's are never read; the update recomputes them with the policy (:mod:`gan_cot.update`).
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import random
import shutil
from pathlib import Path

import torch

from gan_cot.generated import Generated, cut_at_eos

LORA_RANKS = (1, 8, 16, 32, 64, 128, 256, 320, 512)  # the ranks vLLM reserves room for (max_lora_rank)
CPU_KV_CACHE_GIB = 1  # vLLM's KV cache on a CPU, unless VLLM_CPU_KVCACHE_SPACE says otherwise


def vllm_available() -> bool:
    return importlib.util.find_spec("vllm") is not None


def alpha_grid(gate) -> list[float]:
    """The alphas a gate's chains run at: a learned gate's choices, a fixed alpha, or 1 (the plain adapter)."""
    if gate.kind == "learned":
        return [float(a) for a in gate.cfg.choices]
    return [1.0 if gate.constant() is None else float(gate.constant())]


def chain_alphas(alpha, prompts: int, group_size: int) -> list[float]:
    """One alpha per chain, prompt-major, from what an engine's ``sample`` takes: None (the model as it is: the
    plain adapter, alpha 1), a float, or a tensor of one alpha per prompt or per chain."""
    n = prompts * group_size
    if alpha is None:
        return [1.0] * n
    if not isinstance(alpha, torch.Tensor):
        return [float(alpha)] * n
    a = alpha.detach().reshape(-1).float().cpu()
    if len(a) == prompts:
        a = a.repeat_interleave(group_size)
    if len(a) != n:
        raise ValueError(f"alpha has {len(a)} values; expected one per prompt ({prompts}) or per chain ({n})")
    return [round(float(x), 6) for x in a]


def lora_state(model) -> dict[str, torch.Tensor]:
    """The adapter's tensors under the names peft saves them with, copied to the CPU (gathered first under ZeRO-3,
    which every process must then call together)."""
    from peft import get_peft_model_state_dict

    from gan_cot.gate.scaling import peft_model

    inner = peft_model(model)
    parts = [p for name, p in inner.named_parameters() if "lora_" in name and hasattr(p, "ds_id")]
    gathered = contextlib.nullcontext()
    if parts:
        import deepspeed

        gathered = deepspeed.zero.GatheredParameters(parts, modifier_rank=None)
    with gathered:
        state = get_peft_model_state_dict(inner)
        return {k: v.detach().to("cpu", copy=True).contiguous() for k, v in state.items()}


def write_adapter(folder: Path, state: dict[str, torch.Tensor], peft_config, alpha: float) -> Path:
    """A peft adapter folder holding ``alpha * delta`` (``lora_B`` scaled), which any LoRA loader reads as is."""
    from safetensors.torch import save_file

    folder.mkdir(parents=True, exist_ok=True)
    scaled = {k: (v * alpha if "lora_B" in k else v).contiguous() for k, v in state.items()}
    save_file(scaled, str(folder / "adapter_model.safetensors"), metadata={"format": "pt"})
    peft_config.save_pretrained(str(folder))
    return folder


@contextlib.contextmanager
def kept_random_state():
    """Python's, numpy's and torch's random states as they were: building a vLLM engine in this process seeds them."""
    import numpy as np

    py, npy = random.getstate(), np.random.get_state()
    devices = [torch.cuda.current_device()] if torch.cuda.is_available() else []
    with torch.random.fork_rng(devices=devices):
        try:
            yield
        finally:
            random.setstate(py)
            np.random.set_state(npy)


class VLLMEngine:
    """The rollout engine on vLLM (see the module doc): :meth:`sync` before a round's sampling, :meth:`sample` for
    a batch of prompts, the same two calls as :class:`gan_cot.generation.HFEngine`."""

    name = "vllm"

    def __init__(self, cfg):
        from gan_cot.models import _adapter_base

        if not vllm_available():
            raise ImportError("rollout.engine=vllm needs vLLM: pip install 'gan-cot[vllm]' (or rollout.engine=hf)")
        if _adapter_base(cfg.model):
            raise ValueError(
                f"rollout.engine=vllm loads the base model once and serves the adapter beside it; {cfg.model} is an "
                "adapter folder: save it merged (load_model merges it) and pass that folder as model="
            )
        self.cfg = cfg
        ro = cfg.rollout
        self.folder = Path(ro.vllm_adapter_dir or Path(cfg.output_dir) / "vllm-adapters")
        self.llm = None
        self.grid: list[float] = []
        self.state: dict[str, torch.Tensor] | None = None
        self.peft_config = None
        self.version = 0
        self.requests: dict[float, object] = {}
        self.next_id = 1
        self.tokens = 0  # generated tokens, and the seconds spent generating them, over the engine's life
        self.seconds = 0.0

    # -- the engine and the adapter -------------------------------------------------------------------

    def start(self, gate) -> None:
        """Load the base once, in this process, on this process's GPU (or the CPU)."""
        from vllm import LLM

        from gan_cot.distributed import init_distributed
        from gan_cot.models import resolve_dtype

        cfg, ro = self.cfg, self.cfg.rollout
        rank, _ = init_distributed()  # external_launcher joins this process group (RANK, MASTER_ADDR... set)
        self.grid = alpha_grid(gate)
        # One adapter slot more than the grid needs: vLLM's CPU LoRA ops read a row without LoRA (index -1) from the
        # last slot, which must then stay empty, or base rows batched with LoRA rows get that LoRA (GPU kernels skip
        # such rows). Slots fill from the first free one and each sync frees the old ones, so the last stays empty.
        slots = sum(a != 0 for a in self.grid) + 1
        kwargs = dict(
            model=cfg.model, dtype=str(resolve_dtype(cfg.policy.dtype)).removeprefix("torch."), seed=cfg.seed + rank,
            enable_lora=True, max_lora_rank=next(r for r in LORA_RANKS if r >= cfg.lora.r), max_loras=slots,
            distributed_executor_backend="external_launcher", generation_config="vllm", enforce_eager=ro.vllm_eager,
            max_model_len=ro.vllm_max_model_len,
        )  # fmt: skip
        if torch.cuda.is_available():
            kwargs["gpu_memory_utilization"] = ro.vllm_gpu_memory
        elif not os.environ.get("VLLM_CPU_KVCACHE_SPACE"):
            kwargs["kv_cache_memory_bytes"] = CPU_KV_CACHE_GIB << 30
        with kept_random_state():
            self.llm = LLM(**kwargs)
        self.folder = self.folder / f"rank-{rank}"

    def sync(self, model, gate) -> None:
        """Make the policy's current adapter the one sampled from: one pre-scaled LoRA per alpha of the gate's grid,
        written only when the adapter changed since the last call."""
        from vllm.lora.request import LoRARequest

        from gan_cot.gate.scaling import peft_model

        if self.llm is None:
            self.start(gate)
        state = lora_state(model)
        old = self.state
        if old is not None and old.keys() == state.keys() and all(torch.equal(old[k], state[k]) for k in state):
            return
        for request in self.requests.values():
            self.llm.llm_engine.remove_lora(request.lora_int_id)
        shutil.rmtree(self.folder, ignore_errors=True)
        inner = peft_model(model)
        self.state, self.peft_config, self.requests = state, inner.peft_config[inner.active_adapter], {}
        self.version += 1
        for alpha in self.grid:
            if alpha != 0:
                name = f"v{self.version}-alpha{alpha:g}"
                folder = write_adapter(self.folder / name, state, self.peft_config, alpha)
                self.requests[alpha] = LoRARequest(name, self.next_id, str(folder))
                self.next_id += 1

    def request(self, alpha: float):
        """The LoRA request of ``alpha``: None for 0 (the base), else its pre-scaled adapter of the last sync."""
        if alpha == 0:
            return None
        if alpha not in self.requests:
            if self.llm is None:
                raise RuntimeError("VLLMEngine.sample before sync: the engine has no adapter yet")
            raise ValueError(f"alpha {alpha:g} is not in the gate's grid {self.grid} that the engine serves")
        return self.requests[alpha]

    # -- sampling -------------------------------------------------------------------------------------

    def generate(self, requests: list[tuple[list[int], float, object]]) -> list[list[list[int]]]:
        """``(prompt ids, alpha, sampling parameters)`` -> the generated ids of each request's ``n`` sequences."""
        import time

        started = time.perf_counter()
        outs = self.llm.generate(
            [{"prompt_token_ids": ids} for ids, _, _ in requests], [sp for _, _, sp in requests], use_tqdm=False,
            lora_request=[self.request(a) for _, a, _ in requests],
        )  # fmt: skip
        seqs = [[list(o.token_ids) for o in out.outputs] for out in outs]
        self.seconds += time.perf_counter() - started
        self.tokens += sum(len(s) for req in seqs for s in req)
        return seqs

    def sample(self, model, tokenizer, prompts, group_size, temperature, alpha, fmt, budgets) -> list[Generated]:
        """``group_size`` sampled chains per rendered prompt (prompt-major), each at its alpha's adapter;
        ``budgets``: (thinking, answer) tokens. ``model`` is unused: the engine samples from what :meth:`sync`
        gave it."""
        from vllm import SamplingParams

        think, answer = budgets
        eos = tokenizer.eos_token_id
        pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else eos
        same = dict(top_p=1.0, top_k=0, stop_token_ids=[eos], skip_special_tokens=True)
        ids = tokenizer(prompts, add_special_tokens=False)["input_ids"]
        alphas = chain_alphas(alpha, len(prompts), group_size)
        groups: dict[tuple[int, float], list[int]] = {}  # one request per prompt and alpha, n = its chains there
        for j, a in enumerate(alphas):
            groups.setdefault((j // group_size, a), []).append(j)
        marker = fmt.end_of_thinking.strip() if fmt is not None else None
        first = [
            (ids[p], a, SamplingParams(n=len(js), temperature=temperature, max_tokens=think, stop=marker and [marker],
                                       include_stop_str_in_output=True, **same))
            for (p, a), js in groups.items()
        ]  # fmt: skip
        chains: list = [None] * len(alphas)
        for js, seqs in zip(groups.values(), self.generate(first)):
            for j, seq in zip(js, seqs):
                chains[j] = seq
        results: list[Generated] = []
        answers: list[tuple[int, float]] = []  # (chain, temperature of its answer)
        forced_ids = tokenizer(fmt.forced_end, add_special_tokens=False)["input_ids"] if fmt is not None else []
        for j, seq in enumerate(chains):
            seq, finished = cut_at_eos(seq, eos, pad)
            gen = Generated(ids[j // group_size], seq, finished)
            if not finished and fmt is not None:
                if marker not in tokenizer.decode(seq, skip_special_tokens=True):
                    gen = Generated(gen.prompt_ids, seq + forced_ids, False, True)  # the thinking budget ran out
                if answer > 0:
                    answers.append((j, 0.0 if gen.forced else temperature))
            results.append(gen)
        if not answers:
            return results
        second = [
            (results[j].prompt_ids + results[j].completion_ids, alphas[j],
             SamplingParams(n=1, temperature=t, max_tokens=answer, **same))
            for j, t in answers
        ]  # fmt: skip
        for (j, _), seqs in zip(answers, self.generate(second)):
            extra, finished = cut_at_eos(seqs[0], eos, pad)
            r = results[j]
            results[j] = Generated(r.prompt_ids, r.completion_ids + extra, finished, r.forced)
        return results

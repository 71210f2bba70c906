"""Batched generation from a policy: prompts in, completions (text and token counts) out."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from gan_cot.models import render_prompt


@dataclass
class Completion:
    text: str
    num_tokens: int  # generated tokens, end-of-sequence token excluded
    finished: bool  # ended with the end-of-sequence token inside the budget


@torch.no_grad()
def generate(
    model,
    tokenizer,
    questions: list[str],
    max_new_tokens: int = 256,
    do_sample: bool = False,
    temperature: float = 1.0,
    num_return_sequences: int = 1,
    batch_size: int = 64,
    progress=None,
    prefixes: list[str] | None = None,
) -> list[list[Completion]]:
    """Generate ``num_return_sequences`` completions per question, in left-padded batches with the KV cache.

    ``prefixes`` (one per question) are chain text already written: generation continues after them and
    the returned text and token counts cover the continuation only.

    ``progress`` is an optional callable taking the number of questions just finished (a tqdm ``update``).
    """
    model.eval()
    device = next(model.parameters()).device
    out: list[list[Completion]] = []
    eos = tokenizer.eos_token_id
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else eos
    old_side = tokenizer.padding_side
    tokenizer.padding_side = "left"
    try:
        for i in range(0, len(questions), batch_size):
            chunk = questions[i : i + batch_size]
            prompts = [render_prompt(tokenizer, q) for q in chunk]
            if prefixes is not None:
                prompts = [p + pre for p, pre in zip(prompts, prefixes[i : i + batch_size])]
            enc = tokenizer(prompts, return_tensors="pt", padding=True, add_special_tokens=False).to(device)
            kwargs = dict(max_new_tokens=max_new_tokens, do_sample=do_sample, pad_token_id=pad, eos_token_id=eos)
            if do_sample:
                kwargs.update(temperature=temperature, top_k=0, top_p=1.0, num_return_sequences=num_return_sequences)
            seqs = model.generate(**enc, **kwargs)
            new = seqs[:, enc["input_ids"].shape[1] :]
            reps = num_return_sequences if do_sample else 1
            for j in range(len(chunk)):
                group = []
                for r in range(reps):
                    ids = new[j * reps + r].tolist()
                    finished = eos in ids
                    if finished:
                        ids = ids[: ids.index(eos)]
                    ids = [t for t in ids if t != pad]
                    group.append(Completion(tokenizer.decode(ids, skip_special_tokens=True), len(ids), finished))
                if not do_sample and num_return_sequences > 1:
                    group = group * num_return_sequences  # greedy: every sample is the same
                out.append(group)
            if progress is not None:
                progress(len(chunk))
    finally:
        tokenizer.padding_side = old_side
    return out


@torch.no_grad()
def generate_gated(
    policy,
    tokenizer,
    questions: list[str],
    alpha: float | None = None,
    batch_size: int = 64,
    **kwargs,
) -> tuple[list[list[Completion]], list[float]]:
    """:func:`generate` with the LoRA delta scaled per question by the policy's alpha gate (``gan_cot.gate``).

    ``policy`` is a :class:`gan_cot.gate.GatedPolicy`; ``alpha`` (a float) overrides its gate for every question
    (CoT-Valve's manual alpha, e.g. a MixChain sweep). Returns the completions and the alpha used per question.
    """
    from gan_cot.gate import gated_inference

    device = next(policy.peft_model.parameters()).device
    out: list[list[Completion]] = []
    alphas: list[float] = []
    prefixes = kwargs.pop("prefixes", None)
    for i in range(0, len(questions), batch_size):
        chunk = questions[i : i + batch_size]
        if alpha is not None:
            a = torch.full((len(chunk),), float(alpha))
        else:
            enc = tokenizer(
                [render_prompt(tokenizer, q) for q in chunk],
                return_tensors="pt",
                padding=True,
                add_special_tokens=False,
                padding_side="left",
            ).to(device)
            a = policy.alpha(enc["input_ids"], enc["attention_mask"]).detach()
        pre = None if prefixes is None else prefixes[i : i + batch_size]
        with gated_inference(policy.peft_model, a):
            out += generate(policy.peft_model, tokenizer, chunk, batch_size=len(chunk), prefixes=pre, **kwargs)
        alphas += a.float().cpu().tolist()
    return out, alphas

"""Supervised fine-tuning on (prompt, completion) pairs: batching with prompt masking, and a plain loop.

The loss is next-token cross-entropy on completion tokens only (prompt tokens are masked with -100),
completion = chain + ``#### answer`` + end-of-sequence token.
"""

from __future__ import annotations

import math
import random
import time

import torch
from tqdm.auto import tqdm

from gan_cot.models import render_prompt

IGNORE = -100


def encode_pairs(tokenizer, prompts: list[str], completions: list[str]) -> list[tuple[list[int], int]]:
    """Token ids of prompt + completion + eos, and the number of prompt tokens (masked from the loss)."""
    p_ids = tokenizer(prompts, add_special_tokens=False)["input_ids"]
    c_ids = tokenizer(completions, add_special_tokens=False)["input_ids"]
    eos = tokenizer.eos_token_id
    return [(p + c + [eos], len(p)) for p, c in zip(p_ids, c_ids)]


def collate(batch: list[tuple[list[int], int]], pad_id: int) -> dict[str, torch.Tensor]:
    """Right-padded ``input_ids`` / ``attention_mask`` / ``labels`` with prompt and padding masked."""
    width = max(len(ids) for ids, _ in batch)
    input_ids = torch.full((len(batch), width), pad_id, dtype=torch.long)  # [batch, seq]
    labels = torch.full((len(batch), width), IGNORE, dtype=torch.long)
    mask = torch.zeros((len(batch), width), dtype=torch.long)
    for i, (ids, n_prompt) in enumerate(batch):
        input_ids[i, : len(ids)] = torch.tensor(ids)
        labels[i, n_prompt : len(ids)] = torch.tensor(ids[n_prompt:])
        mask[i, : len(ids)] = 1
    return {"input_ids": input_ids, "attention_mask": mask, "labels": labels}


def length_grouped_batches(lengths: list[int], batch_size: int, rng: random.Random) -> list[list[int]]:
    """Shuffled batches of similar length (less padding), in random order."""
    order = list(range(len(lengths)))
    rng.shuffle(order)
    chunk = batch_size * 32
    batches = []
    for i in range(0, len(order), chunk):
        part = sorted(order[i : i + chunk], key=lengths.__getitem__)
        batches += [part[j : j + batch_size] for j in range(0, len(part), batch_size)]
    rng.shuffle(batches)
    return batches


def task_pairs(tokenizer, task, examples, minimal: bool = False) -> tuple[list[str], list[str]]:
    prompts = [render_prompt(tokenizer, task.prompt(ex)) for ex in examples]
    completions = [task.reference(ex, minimal=minimal) for ex in examples]
    return prompts, completions


def warmup_cosine_factor(step: int, warmup: int, total: int, floor: float = 0.05) -> float:
    """The learning-rate multiplier at ``step`` (from 0): linear warmup over ``warmup`` steps, then cosine decay to
    ``floor`` at ``total``."""
    if step < warmup:
        return (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress))


def warmup_cosine(optimizer, warmup: int, total: int, floor: float = 0.05):
    """Linear warmup over ``warmup`` steps, then cosine decay to ``floor`` x the peak rate at ``total``."""
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: warmup_cosine_factor(step, warmup, total, floor))


def optimize(
    params: list,
    steps: int,
    step_loss,
    lr: float,
    warmup: int,
    weight_decay: float = 0.01,
    betas: tuple[float, float] = (0.9, 0.999),
    desc: str = "train",
    show_progress: bool = True,
    log_every: int = 100,
    on_log=None,
    time_limit: float | None = None,
) -> dict:
    """AdamW with a warm-up + cosine schedule and gradients clipped at 1: ``steps`` calls of ``step_loss()``, which
    returns the batch's loss (a tensor with grad) and a dict of floats to average. ``on_log(step, means)`` every
    ``log_every`` steps and at the last one, with the means of the last ``log_every`` steps (``loss`` included).
    ``time_limit`` (seconds) stops early and is reported. Returns loss statistics."""
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay, betas=betas)
    sched = warmup_cosine(opt, warmup, steps)
    history: list[dict] = []
    start = time.time()
    bar = tqdm(total=steps, desc=desc, disable=not show_progress)
    for step in range(1, steps + 1):
        loss, extra = step_loss()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        sched.step()
        opt.zero_grad(set_to_none=True)
        history.append({"loss": loss.item(), **extra})
        bar.update(1)
        if step % log_every == 0 or step == steps:
            window = history[-log_every:]
            means = {k: sum(h[k] for h in window) / len(window) for k in window[0]}
            bar.set_postfix(loss=f"{means['loss']:.4f}")
            if on_log:
                on_log(step, means)
        if time_limit is not None and time.time() - start > time_limit:
            break
    bar.close()
    tail = history[-min(len(history), log_every) :]
    return {
        "steps": len(history),
        "first_loss": history[0]["loss"],
        "final_loss": sum(h["loss"] for h in tail) / len(tail),
        "seconds": time.time() - start,
        "stopped_by_time": len(history) < steps,
    }


def train_sft(
    model,
    tokenizer,
    prompts: list[str],
    completions: list[str],
    steps: int,
    batch_size: int = 32,
    seed: int = 0,
    on_log=None,
    **optim,
) -> dict:
    """Train ``model`` in place for ``steps`` optimizer steps on (prompt, completion) pairs in length-grouped batches;
    ``optim``: :func:`optimize`'s settings (``lr``, ``warmup``, ``time_limit``...). Returns loss statistics."""
    rng = random.Random(seed)
    torch.manual_seed(seed)
    data = encode_pairs(tokenizer, prompts, completions)
    pad = tokenizer.pad_token_id
    batches: list[list[int]] = []

    def step_loss():
        if not batches:
            batches.extend(length_grouped_batches([len(ids) for ids, _ in data], batch_size, rng))
        return model(**collate([data[i] for i in batches.pop()], pad)).loss, {}

    model.train()
    optim = {"lr": 2e-3, "warmup": 50, "betas": (0.9, 0.98), "desc": "sft", **optim}
    stats = optimize(list(model.parameters()), steps, step_loss, on_log=on_log and (lambda s, m: on_log(s, m["loss"])),
                     **optim)  # fmt: skip
    model.eval()
    return stats

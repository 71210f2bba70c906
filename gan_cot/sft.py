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


def warmup_cosine(optimizer, warmup: int, total: int, floor: float = 0.05):
    """Linear warmup over ``warmup`` steps, then cosine decay to ``floor`` x the peak rate at ``total``."""

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        progress = min(1.0, (step - warmup) / max(1, total - warmup))
        return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def train_sft(
    model,
    tokenizer,
    prompts: list[str],
    completions: list[str],
    steps: int,
    batch_size: int = 32,
    lr: float = 2e-3,
    warmup: int = 50,
    weight_decay: float = 0.01,
    seed: int = 0,
    time_limit: float | None = None,
    log_every: int = 100,
    show_progress: bool = True,
    on_log=None,
) -> dict:
    """Train ``model`` in place for ``steps`` optimizer steps (cosine schedule); returns loss statistics.

    ``time_limit`` (seconds) stops early and is reported, so a budget on a slow machine is kept.
    """
    rng = random.Random(seed)
    torch.manual_seed(seed)
    data = encode_pairs(tokenizer, prompts, completions)
    pad = tokenizer.pad_token_id
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay, betas=(0.9, 0.98))

    sched = warmup_cosine(opt, warmup, steps)
    model.train()
    batches: list[list[int]] = []
    losses = []
    start = time.time()
    step = 0
    bar = tqdm(total=steps, desc="sft", disable=not show_progress)
    while step < steps:
        if not batches:
            batches = length_grouped_batches([len(ids) for ids, _ in data], batch_size, rng)
        batch = collate([data[i] for i in batches.pop()], pad)
        loss = model(**batch).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        opt.zero_grad(set_to_none=True)
        losses.append(loss.item())
        step += 1
        bar.update(1)
        if step % log_every == 0:
            recent = sum(losses[-log_every:]) / log_every
            bar.set_postfix(loss=f"{recent:.4f}")
            if on_log:
                on_log(step, recent)
        if time_limit is not None and time.time() - start > time_limit:
            break
    bar.close()
    model.eval()
    tail = losses[-min(len(losses), log_every) :]
    return {
        "steps": step,
        "first_loss": losses[0],
        "final_loss": sum(tail) / len(tail),
        "seconds": time.time() - start,
        "stopped_by_time": step < steps,
    }

"""Training and scoring a step discriminator: cross-entropy at step ends, per-class metrics with scikit-learn.

TRL's process-reward trainer takes binary step labels, and the three-way labels here need their own
head and metrics, so this is a short loop of our own.
"""

from __future__ import annotations

import random
import time

import torch
from tqdm.auto import tqdm

from gan_cot.sft import warmup_cosine
from gan_cot.steps import LABELS


def step_targets(records, batch_positions: torch.Tensor) -> torch.Tensor:
    """[batch, steps] class ids with -100 where a row has no step."""
    target = torch.full(batch_positions.shape, -100, dtype=torch.long)
    for i, r in enumerate(records):
        target[i, : len(r.labels)] = torch.tensor([LABELS.index(lab) for lab in r.labels])
    return target


def discriminator_loss(disc, records, class_weights: torch.Tensor | None = None):
    """Mean cross-entropy over the steps of a batch of records; returns (loss, accuracy)."""
    enc = [disc.encode(r.question, r.steps) for r in records]
    batch = disc.collate(enc)
    logits = disc.step_logits(batch)  # [batch, steps, 3]
    target = step_targets(records, batch["positions"])
    loss = torch.nn.functional.cross_entropy(logits.reshape(-1, len(LABELS)), target.reshape(-1), weight=class_weights)
    valid = target != -100
    acc = (logits.argmax(-1)[valid] == target[valid]).float().mean()
    return loss, acc.detach()


def class_weights_for(records, power: float = 0.5) -> torch.Tensor:
    """Inverse-frequency class weights (softened by ``power``) so rare ``wrong`` steps still count."""
    counts = torch.ones(len(LABELS))
    for r in records:
        for lab in r.labels:
            counts[LABELS.index(lab)] += 1
    w = (counts.sum() / counts) ** power
    return w / w.mean()


def train_discriminator(
    disc,
    records,
    steps: int,
    batch_size: int = 32,
    lr: float = 1e-3,
    warmup: int = 30,
    seed: int = 0,
    balance: float = 0.5,
    log_every: int = 50,
    on_log=None,
    show_progress: bool = True,
) -> dict:
    """Train in place; ``on_log(step, loss, acc)`` every ``log_every`` steps. Returns loss statistics."""
    rng = random.Random(seed)
    torch.manual_seed(seed)
    weights = class_weights_for(records, balance) if balance else None
    params = [p for p in disc.model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=0.01)

    sched = warmup_cosine(opt, warmup, steps)
    disc.model.train()
    order: list[int] = []
    losses, accs = [], []
    start = time.time()
    for step in tqdm(range(steps), desc="discriminator", disable=not show_progress):
        if len(order) < batch_size:
            order = list(range(len(records)))
            rng.shuffle(order)
        batch = [records[order.pop()] for _ in range(batch_size)]
        loss, acc = discriminator_loss(disc, batch, weights)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        sched.step()
        opt.zero_grad(set_to_none=True)
        losses.append(loss.item())
        accs.append(acc.item())
        if on_log and ((step + 1) % log_every == 0 or step + 1 == steps):
            window = min(log_every, len(losses))
            on_log(step + 1, sum(losses[-window:]) / window, sum(accs[-window:]) / window)
    disc.model.eval()
    tail = losses[-min(len(losses), log_every) :]
    return {
        "steps": steps,
        "first_loss": losses[0],
        "final_loss": sum(tail) / len(tail),
        "seconds": time.time() - start,
    }


def step_metrics(gold: list[str], pred: list[str]) -> dict:
    """Per-class precision / recall / F1 (scikit-learn), macro F1, accuracy and the step count."""
    from sklearn.metrics import precision_recall_fscore_support

    p, r, f, s = precision_recall_fscore_support(gold, pred, labels=list(LABELS), zero_division=0)
    out = {
        "n_steps": len(gold),
        "accuracy": sum(g == q for g, q in zip(gold, pred)) / max(1, len(gold)),
        "macro_f1": float(sum(f) / len(f)),
    }
    for i, lab in enumerate(LABELS):
        out[lab] = {"precision": float(p[i]), "recall": float(r[i]), "f1": float(f[i]), "support": int(s[i])}
    return out


def evaluate_discriminator(disc, records, batch_size: int = 32) -> dict:
    """Score every step of ``records`` and compare with their labels."""
    pred = disc.predict([r.question for r in records], [r.steps for r in records], batch_size=batch_size)
    gold = [lab for r in records for lab in r.labels]
    return step_metrics(gold, [lab for p in pred for lab in p])


def metrics_table(m: dict) -> str:
    """A small plain-text table of per-class precision / recall / F1."""
    lines = [f"{'class':<10} {'precision':>9} {'recall':>7} {'f1':>6} {'steps':>6}"]
    for lab in LABELS:
        c = m[lab]
        lines.append(f"{lab:<10} {c['precision']:>9.3f} {c['recall']:>7.3f} {c['f1']:>6.3f} {c['support']:>6}")
    lines.append(f"{'macro f1':<10} {'':>9} {'':>7} {m['macro_f1']:>6.3f} {m['n_steps']:>6}")
    return "\n".join(lines)

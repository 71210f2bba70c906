"""Training and scoring a step discriminator: cross-entropy at step ends, per-class metrics with scikit-learn.

TRL's process-reward trainer takes binary step labels, and the three-way labels here need their own
head and metrics, so this is a short loop of our own. It trains any layout through
:meth:`~gan_cot.discriminator.model.Discriminator.chain_logits`.
"""

from __future__ import annotations

import random

import torch

from gan_cot.sft import optimize
from gan_cot.steps import LABELS


def discriminator_loss(disc, records, class_weights: torch.Tensor | None = None):
    """Mean cross-entropy over the steps of a batch of records, in the model's own classes (a two-way scorer learns
    redundant steps as correct ones); returns (loss, accuracy)."""
    logits = torch.cat(disc.chain_logits([r.question for r in records], [r.steps for r in records]))  # [steps, C]
    target = torch.tensor([t for r in records for t in disc.target_ids(r.labels)], device=logits.device)
    weight = class_weights.to(logits.device) if class_weights is not None else None
    loss = torch.nn.functional.cross_entropy(logits.float(), target, weight=weight)
    acc = (logits.argmax(-1) == target).float().mean()
    return loss, acc.detach()


def class_weights_for(disc, records, power: float = 0.5) -> torch.Tensor:
    """Inverse-frequency weights of the model's classes (softened by ``power``) so rare ``wrong`` steps still count."""
    counts = torch.ones(len(disc.names))
    for r in records:
        for t in disc.target_ids(r.labels):
            counts[t] += 1
    w = (counts.sum() / counts) ** power
    return w / w.mean()


def train_discriminator(
    disc, records, steps: int, batch_size: int = 32, seed: int = 0, balance: float = 0.5, on_log=None, **optim
) -> dict:
    """Train in place; ``on_log(step, loss, acc)`` every ``log_every`` steps; ``optim``: the settings of
    :func:`gan_cot.sft.optimize` (``lr``, ``warmup``, ``log_every``...). Returns loss statistics."""
    rng = random.Random(seed)
    torch.manual_seed(seed)
    weights = class_weights_for(disc, records, balance) if balance else None
    params = [p for p in disc.model.parameters() if p.requires_grad]
    batches: list[list[int]] = []

    def step_loss():
        if not batches:
            batches[:] = length_batches(records, batch_size, rng)
        loss, acc = discriminator_loss(disc, [records[i] for i in batches.pop()], weights)
        return loss, {"acc": acc.item()}

    disc.model.train()
    optim = {"lr": 1e-3, "warmup": 30, "log_every": 50, "desc": "discriminator", **optim}
    stats = optimize(params, steps, step_loss, on_log=on_log and (lambda s, m: on_log(s, m["loss"], m["acc"])),
                     **optim)  # fmt: skip
    disc.model.eval()
    return stats


def length_batches(records, batch_size: int, rng: random.Random, pool: int = 32) -> list[list[int]]:
    """One epoch of batches, shuffled; each drawn from a pool of ``pool`` batches' worth of records sorted by length,
    so a batch pads little."""
    order = list(range(len(records)))
    rng.shuffle(order)
    size = lambda i: len(records[i].question) + sum(len(s) for s in records[i].steps)  # noqa: E731
    out = []
    for k in range(0, len(order), batch_size * pool):
        group = sorted(order[k : k + batch_size * pool], key=size)
        out += [group[j : j + batch_size] for j in range(0, len(group), batch_size) if len(group[j:]) >= batch_size]
    rng.shuffle(out)
    return out or [order[:batch_size]]


def step_metrics(gold: list[str], pred: list[str]) -> dict:
    """Per-class precision / recall / F1 (scikit-learn), macro F1 over the three classes, accuracy and the step count;
    ``macro_f1_present``: the macro F1 over the classes the gold labels hold (``classes_present`` of them), the figure
    to log for a round's chains: where one class is present, the three-class mean is at most 1/3 however good the
    verdicts (the absent classes' F1 is 0), the present-class mean is that class's F1."""
    from sklearn.metrics import precision_recall_fscore_support

    p, r, f, s = precision_recall_fscore_support(gold, pred, labels=list(LABELS), zero_division=0)
    present = [i for i in range(len(LABELS)) if s[i] > 0]
    out = {
        "n_steps": len(gold),
        "accuracy": sum(g == q for g, q in zip(gold, pred)) / max(1, len(gold)),
        "macro_f1": float(sum(f) / len(f)),
        "macro_f1_present": float(sum(f[i] for i in present) / len(present)) if present else None,
        "classes_present": len(present),
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

"""The discriminator refresh of adversarial mode: label the policy's new chains (``policy``: what the current policy
still answers without each step, :mod:`gan_cot.discriminator.policy_labels`; ``auto``: rollouts of every prefix; or
the task's ``gold`` labels), measure how well the discriminator judged them, then train it on them for a few steps.
Gradients are averaged across processes, so every copy stays identical."""

from __future__ import annotations

import random
import time
from collections import Counter

import torch

from gan_cot.discriminator.data import StepRecord
from gan_cot.steps import LABELS


def step_records(ctx, chains, cfg, rollout_cfg, cost=None) -> list[StepRecord]:
    """One record per chain (chains with steps only): ``gold`` labels from the task, ``policy`` labels from the
    policy's own likelihoods (:func:`policy_records`), or ``auto`` labels from ``discriminator.label_rollouts``
    continuations of every prefix, each with the rollout's budgets (``cfg``: the ``discriminator`` section,
    ``rollout_cfg``: the ``rollout`` one). ``cost`` (a dict), when given, gets the automatic labels'
    ``label_continuations`` and ``label_tokens``."""
    task, policy, tokenizer = ctx.task, ctx.policy, ctx.tokenizer
    exs = [ctx.examples[c.example_index] for c in chains]
    if cfg.labels == "gold":
        return [StepRecord(ex.question, c.steps, task.gold_labels(ex, c.steps)) for ex, c in zip(exs, chains)]
    if cfg.labels == "policy":
        return policy_records(policy, tokenizer, task, exs, [c.steps for c in chains], cfg, rollout_cfg, cost)
    from gan_cot.discriminator.labels import AutoLabelConfig, label_chains

    auto_cfg = AutoLabelConfig(
        rollouts=cfg.label_rollouts, max_new_tokens=rollout_cfg.max_think_tokens,
        max_answer_tokens=rollout_cfg.max_answer_tokens, batch_size=rollout_cfg.batch_size,
    )  # fmt: skip
    auto = label_chains(policy, tokenizer, task, exs, [c.steps for c in chains], auto_cfg)
    if cost is not None:
        cost["label_continuations"] = float(sum(a.continuations for a in auto))
        cost["label_tokens"] = float(sum(a.tokens for a in auto))
    return [StepRecord(ex.question, c.steps, a.labels) for ex, c, a in zip(exs, chains, auto)]


def policy_label_config(cfg, rollout_cfg=None):
    """The policy labeler's settings from the ``discriminator`` section (and the ``rollout`` one's budgets and batch
    size for the confirming continuations)."""
    from gan_cot.discriminator.policy_labels import PolicyLabelConfig

    budgets = {}
    if rollout_cfg is not None:
        budgets = {
            "max_new_tokens": rollout_cfg.max_think_tokens,
            "max_answer_tokens": rollout_cfg.max_answer_tokens,
            "generate_batch_size": rollout_cfg.batch_size,
        }
    return PolicyLabelConfig(
        lean=cfg.label_lean, wrong=cfg.label_wrong, stop=cfg.label_stop, lean_next=cfg.label_lean_next,
        confirm=cfg.label_confirm, **budgets,
    )  # fmt: skip


def policy_records(policy, tokenizer, task, examples, chains: list[list[str]], cfg, rollout_cfg=None,
                   cost=None) -> list[StepRecord]:  # fmt: skip
    """Records whose labels say what ``policy`` still answers without each step (``discriminator.label_*``); with
    ``discriminator.label_confirm``, each drop confirmed by the policy's continuation of the pruned chain. ``cost``
    (a dict), when given, gets the confirmations' ``label_confirm_tested``, ``label_confirm_restored``,
    ``label_continuations`` and ``label_tokens`` (added to what it holds)."""
    from gan_cot.discriminator.policy_labels import confirm_drops, step_lean

    lcfg = policy_label_config(cfg, rollout_cfg)
    leans = step_lean(
        policy, tokenizer, task.format, [task.prompt(ex) for ex in examples], chains, [ex.answer for ex in examples],
        lcfg,
    )  # fmt: skip
    labels = [lean.labels for lean in leans]
    if lcfg.confirm:
        labels, stats = confirm_drops(policy, tokenizer, task, examples, chains, labels, lcfg)
        if cost is not None:
            for key, value in (
                ("label_confirm_tested", stats.tested),
                ("label_confirm_restored", stats.restored),
                ("label_continuations", stats.continuations),
                ("label_tokens", stats.tokens),
            ):
                cost[key] = cost.get(key, 0.0) + float(value)  # fmt: skip
    return [StepRecord(ex.question, steps, labs) for ex, steps, labs in zip(examples, chains, labels)]


def train_on(disc, records, cfg, strategy, rng, steps: int, desc: str | None = None) -> float | None:
    """``steps`` discriminator steps on random batches of ``records`` (a fresh optimizer: each refresh is a short
    fine-tune, and no optimizer state has to survive a checkpoint); returns the last loss. ``desc``: a progress bar
    of that name on the main process (stderr; gone when done)."""
    from tqdm.auto import tqdm

    from gan_cot.discriminator.train import discriminator_loss

    params = [p for p in disc.model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=cfg.lr)
    disc.model.train()
    loss = None
    for _ in tqdm(range(steps), desc=desc, disable=desc is None or not strategy.is_main, leave=False):
        batch = rng.sample(records, min(32, len(records)))
        loss, _ = discriminator_loss(disc, batch)
        loss.backward()
        strategy.mean_grads(disc.model.parameters())
        torch.nn.utils.clip_grad_norm_(disc.model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
    disc.model.eval()
    return None if loss is None else loss.item()


def refresh_discriminator(ctx, disc, rollout, scores, cfg, rollout_cfg, seed: int) -> dict:
    """Returns the discriminator's F1 on this round's chains measured before the refresh (``disc_f1_present``,
    ``disc_acc``), the last refresh loss (``disc_loss``) and, for automatic labels, their cost summed over processes
    (``label_continuations``, ``label_tokens``). Automatic labels cover ``cfg.label_chains`` chains
    drawn at random (seeded by ``seed``). A frozen discriminator with automatic labels is left alone: nothing is
    labelled."""
    from gan_cot.discriminator.train import step_metrics

    with_steps = [(c, p) for c, p in zip(rollout.chains, scores.probs) if c.steps]
    if not with_steps or (cfg.mode != "adversarial" and cfg.labels != "gold"):
        return {}
    rng = random.Random(seed)
    if cfg.labels != "gold" and 0 < cfg.label_chains < len(with_steps):
        with_steps = rng.sample(with_steps, cfg.label_chains)
    started = time.perf_counter()
    cost: dict[str, float] = {}  # automatic labels: their continuations and tokens, summed over processes
    records = step_records(ctx, [c for c, _ in with_steps], cfg, rollout_cfg, cost)
    stats = {"time_label": time.perf_counter() - started}
    stats.update(zip(cost, ctx.strategy.sum(list(cost.values()))) if cost else {})
    if with_steps[0][1] is not None:
        gold = [lab for r in records for lab in r.labels]
        pred = [LABELS[int(k)] for _, p in with_steps for k in p.argmax(-1)]
        m = step_metrics(gold, pred)
        # the macro F1 over the classes this round's labels hold (a round of useful steps alone is not 1/3)
        stats.update({"disc_f1_present": m["macro_f1_present"] or 0.0, "disc_acc": m["accuracy"]})
    if cfg.mode != "adversarial":
        return stats
    counts = Counter(lab for r in records for lab in r.labels)
    stats.update({f"label_frac_{lab}": counts[lab] / max(1, sum(counts.values())) for lab in LABELS})
    loss = train_on(disc, records, cfg, ctx.strategy, rng, cfg.refresh_steps)
    if loss is not None:
        stats["disc_loss"] = loss
    return stats

"""The SFT pool: one target chain per training question, the warm start that fills it and trains on it before
round 0, and the few SFT steps on it in every round.

A target is a pruned chain (``sft.source: pruned``: a reference step is cut only when the policy still answers without
it, ``sft.prune_by: policy``, or when the discriminator's ``p(useful) < sft.prune_threshold``; a round's own chain is
cut by the discriminator, which learns the policy's labels; and only if the answer still verifies) or left whole
(``shortest_correct``). The warm-start
chains are the task's reference chains (``sft.pool_source: reference``, nothing sampled) or the policy's own
correct samples (``samples``). A few hundred pruned targets get memorised and the policy collapses; a pool of
thousands does not. Unless ``sft.pool_frozen``, a round's shorter correct chain replaces a question's target.
``sft.source: reference`` or ``minimal`` trains on the task's own chains instead of the pool.
"""

from __future__ import annotations

import dataclasses
import random

import torch

from gan_cot.gate.scaling import gated
from gan_cot.models import render_prompt
from gan_cot.sft import collate, encode_pairs, task_pairs
from gan_cot.steps import LABELS


def target_steps(task, example, steps: list[str], keep: list[str]) -> list[str]:
    """A pruned target's steps: ``keep``, or the whole chain ``steps`` when nothing is kept or the answer no longer
    verifies after ``keep``."""
    if keep and task.verify(task.format.render(keep, example.answer), example):
        return keep
    return steps


def useful_steps(steps: list[str], probs: torch.Tensor, threshold: float | None) -> list[str]:
    """The steps the discriminator keeps: p(useful) >= ``threshold``, or useful as the argmax (``None``)."""
    useful = LABELS.index("useful")
    if threshold is None:
        return [t for t, p in zip(steps, probs) if int(p.argmax()) == useful]
    return [t for t, p in zip(steps, probs) if float(p[useful]) >= threshold]


class SFTPool:
    """Targets (completion ids, end-of-sequence included) by training-example index, in insertion order."""

    def __init__(self, cfg, tokenizer, task, examples: list):
        self.cfg = cfg
        self.tokenizer = tokenizer
        self.task = task
        self.examples = examples
        self.targets: dict[int, list[int]] = {}
        self.records: list = []  # the reference chains' policy labels of the last fill (sft.prune_by: policy)
        self.record_index: list[int] = []  # their training-example indices
        self._prompt_ids: dict[int, list[int]] = {}

    def __len__(self) -> int:
        return len(self.targets)

    # -- filling ----------------------------------------------------------------------------------------

    def encode(self, text: str) -> list[int]:
        return self.tokenizer(text, add_special_tokens=False)["input_ids"] + [self.tokenizer.eos_token_id]

    def pruned_ids(self, chain, probs: torch.Tensor) -> list[int] | None:
        """The chain with the steps the discriminator judges redundant or wrong removed, if its answer still
        verifies; None when nothing is cut or the answer no longer verifies."""
        keep = useful_steps(chain.steps, probs, self.cfg.sft.prune_threshold)
        if not keep or len(keep) == len(chain.steps):
            return None
        answer = self.task.format.extract_answer(chain.text)
        if answer is None:
            return None
        text = self.task.format.render(keep, answer)
        if not self.task.verify(text, self.examples[chain.example_index]):
            return None
        return self.encode(text)

    def offer(self, rollout, scores) -> None:
        """Keep, per question, the shortest correct finished chain (pruned first when ``sft.source`` is pruned)."""
        for c, probs in zip(rollout.chains, scores.probs):
            if not (c.correct and c.finished):
                continue
            ids = list(c.completion_ids)
            if self.cfg.sft.source == "pruned" and probs is not None:
                ids = self.pruned_ids(c, probs) or ids
            best = self.targets.get(c.example_index)
            if best is None or len(ids) < len(best):
                self.targets[c.example_index] = ids

    def fill_from_references(self, idx: list[int], disc, strategy, labeler=None, prune: bool = True) -> dict:
        """Each question's reference chain, pruned (``sft.source: pruned`` and ``prune``): by ``labeler`` (``sft.prune_by:
        policy``: a callable (examples, steps) -> labels that says what the policy still answers without each step;
        the records are kept in :attr:`records` for the discriminator to learn) or by the discriminator, as a sampled
        chain would be. A chain whose pruned answer no longer verifies stays whole."""
        from gan_cot.discriminator.data import StepRecord

        prune = prune and self.cfg.sft.source == "pruned"
        by_policy = prune and labeler is not None
        kept = [0.0, 0.0, 0.0, 0.0]  # targets, their tokens, reference steps, steps kept
        chunk = max(1, self.cfg.rollout.batch_size)
        self.records, self.record_index = [], []
        for b in progress(range(0, len(idx), chunk), "pool (reference chains)", strategy):
            exs = [self.examples[i] for i in idx[b : b + chunk]]
            steps = [[t.strip() for t in ex.steps] for ex in exs]
            if by_policy:
                labels = labeler(exs, steps)
                self.records += [StepRecord(ex.question, st, lab) for ex, st, lab in zip(exs, steps, labels)]
                keeps = [[t for t, lab in zip(st, ls) if lab == "useful"] for st, ls in zip(steps, labels)]
            elif prune:
                probs = disc.score([self.task.prompt(ex) for ex in exs], steps)
                keeps = [useful_steps(st, p, self.cfg.sft.prune_threshold) for st, p in zip(steps, probs)]
            else:
                keeps = steps
            if by_policy:
                self.record_index += idx[b : b + chunk]
            for i, st, keep in zip(idx[b : b + chunk], steps, keeps):
                kept = [a + b for a, b in zip(kept, self.set_target(i, st, keep))]
        return self.kept_stats(kept, strategy)

    def set_target(self, i: int, steps: list[str], keep: list[str]) -> list[float]:
        """Question ``i``'s target: :func:`target_steps` rendered with its answer; returns (1, target tokens,
        reference steps, steps kept)."""
        ex = self.examples[i]
        keep = target_steps(self.task, ex, steps, keep)
        self.targets[i] = self.encode(self.task.format.render(keep, ex.answer))
        return [1.0, len(self.targets[i]), len(steps), len(keep)]

    @staticmethod
    def kept_stats(kept: list[float], strategy) -> dict:
        n, tokens, ref_steps, kept_steps = strategy.sum(kept)
        return {
            "pool_size": n,
            "pool_tokens": tokens / max(n, 1.0),
            "pool_steps_kept": kept_steps / max(ref_steps, 1.0),
        }

    def relabel(self, labels: list[list[str]], strategy) -> dict:
        """New policy labels for :attr:`records` (the back-off, :mod:`gan_cot.backoff`): the records take them and
        each of their questions' targets keeps its useful steps again; returns the pool's figures."""
        kept: dict[int, list[float]] = {}  # per question, the figures of its target (a sampled pool's shortest)
        records = []
        for i, rec, labs in zip(self.record_index, self.records, labels):
            records.append(dataclasses.replace(rec, labels=list(labs)))
            keep = [t for t, lab in zip(rec.steps, labs) if lab == "useful"]
            earlier = self.targets[i] if i in kept else None
            stats = self.set_target(i, rec.steps, keep)
            if earlier is not None and len(earlier) <= len(self.targets[i]):
                self.targets[i] = earlier
            else:
                kept[i] = stats
        self.records = records
        return self.kept_stats([sum(column) for column in zip(*kept.values())] or [0.0] * 4, strategy)

    def fill_from_samples(self, idx: list[int], sample_and_score, strategy, labeler=None) -> dict:
        """``sft.pool_samples`` chains per question from the policy, scored; the shortest correct (pruned) stays.
        ``labeler`` (``sft.prune_by: policy``): each correct chain is pruned by what the policy still answers without
        each of its steps, and its labels are kept in :attr:`records`, as for reference chains."""
        g = self.cfg.sft.pool_samples
        chunk = max(1, self.cfg.rollout.batch_size // g)
        accuracy, tokens, chains = 0.0, 0.0, 0
        kept = [0.0, 0.0]  # the labelled chains' steps, and those kept
        self.records, self.record_index = [], []
        for b in progress(range(0, len(idx), chunk), "pool (sampled chains)", strategy):
            rollout, scores = sample_and_score(idx[b : b + chunk], g)
            if labeler is None:
                self.offer(rollout, scores)
            else:
                kept = [a + b for a, b in zip(kept, self.offer_labeled(rollout, labeler))]
            accuracy += sum(c.correct for c in rollout.chains)
            tokens += sum(len(c.completion_ids) for c in rollout.chains)
            chains += len(rollout.chains)
        size, size_tokens, accuracy, tokens, chains, steps, steps_kept = strategy.sum(
            [len(self.targets), sum(map(len, self.targets.values())), accuracy, tokens, chains, *kept]
        )
        return {
            "pool_size": size,
            "pool_tokens": size_tokens / max(size, 1.0),
            "pool_rollout_accuracy": accuracy / max(chains, 1.0),
            "pool_rollout_tokens": tokens / max(chains, 1.0),
            **({"pool_steps_kept": steps_kept / max(steps, 1.0)} if labeler is not None else {}),
        }

    def offer_labeled(self, rollout, labeler) -> list[float]:
        """The rollout's correct finished chains, pruned by ``labeler``'s policy labels; per question the shortest
        target stays. Returns (steps labelled, steps kept)."""
        from gan_cot.discriminator.data import StepRecord

        good = [c for c in rollout.chains if c.correct and c.finished and c.steps]
        if not good:
            return [0.0, 0.0]
        exs = [self.examples[c.example_index] for c in good]
        steps = [[t.strip() for t in c.steps] for c in good]
        labels = labeler(exs, steps)
        n, k = 0.0, 0.0
        for c, ex, st, labs in zip(good, exs, steps, labels):
            self.records.append(StepRecord(ex.question, st, labs))
            self.record_index.append(c.example_index)
            keep = [t for t, lab in zip(st, labs) if lab == "useful"]
            best = self.targets.get(c.example_index)
            stats = self.set_target(c.example_index, st, keep)
            if best is not None and len(best) <= len(self.targets[c.example_index]):
                self.targets[c.example_index] = best  # an earlier sample's target was as short
            n, k = n + stats[2], k + stats[3]
        return [n, k]

    def fill(self, n: int, disc, sample_and_score, strategy, labeler=None, prune: bool = True) -> dict:
        """Targets for the first ``n`` training questions (this process's share, the same count on every one)."""
        n = min(n, len(self.examples))
        idx = list(range(n - n % strategy.world))[strategy.rank :: strategy.world]
        self.targets = {}
        if self.cfg.sft.pool_source == "reference":
            return self.fill_from_references(idx, disc, strategy, labeler, prune)
        by_policy = prune and self.cfg.sft.source == "pruned" and labeler is not None
        return self.fill_from_samples(idx, sample_and_score, strategy, labeler if by_policy else None)

    # -- training ---------------------------------------------------------------------------------------

    def prompt_ids(self, i: int) -> list[int]:
        if i not in self._prompt_ids:
            prompt = render_prompt(self.tokenizer, self.task.prompt(self.examples[i]))
            self._prompt_ids[i] = self.tokenizer(prompt, add_special_tokens=False)["input_ids"]
        return self._prompt_ids[i]

    def pairs(self) -> list[tuple[list[int], int]]:
        """(prompt + target ids, prompt length) for SFT: the pool, or the task's reference or minimal chains."""
        source = self.cfg.sft.source
        if source in ("shortest_correct", "pruned"):
            return [(self.prompt_ids(i) + ids, len(self.prompt_ids(i))) for i, ids in self.targets.items()]
        prompts, completions = task_pairs(self.tokenizer, self.task, self.examples[:512], minimal=source == "minimal")
        return encode_pairs(self.tokenizer, prompts, completions)

    def train(self, strategy, gate, r: int, steps: int, lr: float | None, schedule=None) -> dict:
        """``steps`` SFT steps on the pool at learning rate ``lr`` (None: the adapter's), each on a random batch
        (seeded by the run's seed and the round ``r``; -1 is the warm start), at the gate's SFT alpha;
        ``schedule(step, steps)``: a multiplier of that rate per optimizer step (None: constant)."""
        if steps <= 0:
            return {}
        pairs = self.pairs()
        if not pairs:
            return {}
        rng = random.Random(self.cfg.seed * 1000 + r)
        losses = []
        with strategy.lr_for(lr):
            peak = strategy.lr
            for i in progress(range(steps), "warm start", strategy) if r < 0 else range(steps):
                if schedule is not None:
                    strategy.set_lr(peak * schedule(i, steps))
                chosen = rng.sample(pairs, min(self.cfg.sft.batch_size, len(pairs)))
                batch = {k: v.to(strategy.device) for k, v in collate(chosen, self.tokenizer.pad_token_id).items()}
                strategy.engine.train()
                with gated(strategy.model, gate.sft_alpha()):
                    out = strategy.engine(**batch)
                    if strategy.step(out.loss):
                        losses.append(out.loss.item())
        return {"sft_loss": sum(losses) / len(losses)} if losses else {}

    # -- checkpoints ------------------------------------------------------------------------------------

    def state(self) -> dict:
        return {str(k): v for k, v in self.targets.items()}

    def load(self, state: dict) -> None:
        self.targets = {int(k): list(v) for k, v in state.items()}


def progress(items, desc: str, strategy):
    """``items`` with a progress bar on the main process (stderr; gone when done)."""
    from tqdm.auto import tqdm

    return tqdm(items, desc=desc, disable=not strategy.is_main, leave=False)

"""The warm start's held-out check, per drop: take back the drops like the steps a policy trained without them misses.

The policy labels judge each drop in its own chain: the policy still answers without this step. A drop can pass
that test in every chain and still teach the wrong thing. On ledger-hard a ``skip:`` line after the last event of
the person asked about is redundant in its chain, but a 0.9M policy trained on targets without it learns to leave
out ``skip:`` lines, also the ones it needs. Only the trained policy shows that, on questions it was not trained on.

So after the warm start (:meth:`gan_cot.trainer.AdversarialTrainer.warm_start`, ``sft.backoff``):

1. the warm-started policy answers ``sft.backoff_questions`` validation questions greedily;
2. every step of those questions' reference chains that its chain leaves out (by text) is an **omission**, marked
   by whether that chain's answer was wrong;
3. each step is placed by the policy itself: the mean of its last hidden states over the step's tokens, the step in
   its reference chain;
4. a drop of the pool is **taken back** (its step becomes useful again) when the ``sft.backoff_neighbours``
   omissions nearest to it (cosine) come from wrong chains more often than all the held-out chains by
   ``sft.backoff_z`` standard errors: the policy pays for leaving out steps like it;
5. when anything was taken back, the warm start runs again from the initial adapter on the new targets.

No step kinds and no gold labels: what groups the drops is the policy's own representation, and what decides is
held-out accuracy. Steps are matched as text: a chain that words a step otherwise than its reference counts as
leaving it out, so on free text (GSM8K) most reference steps are omissions, in right and wrong chains alike; what
the check does there is not measured. The hidden states of every layer are returned by the forward pass (the last
is kept), so a large policy needs a smaller ``rollout.batch_size`` here than for generation.
"""

from __future__ import annotations

import difflib
import math
from dataclasses import dataclass

import torch

from gan_cot.discriminator.policy_labels import right_padded
from gan_cot.models import render_prompt


@dataclass
class BackoffStats:
    """What :func:`backoff_labels` saw and did."""

    questions: int = 0  # held-out chains
    wrong: int = 0  # of them wrong
    omitted: int = 0  # reference steps left out, over all held-out chains
    omitted_wrong: int = 0  # of those, in a wrong chain
    drops: int = 0  # the pool's drops tested
    restored: int = 0  # taken back
    threshold: float = 0.0  # the wrong fraction a drop's neighbourhood had to exceed


def step_spans(fmt, steps: list[str]) -> list[tuple[int, int]]:
    """Each step's character span in ``fmt.render(steps, answer)`` (the steps come first, joined by the separator)."""
    spans, at = [], 0
    for s in steps:
        spans.append((at, at + len(s)))
        at += len(s) + len(fmt.separator)
    return spans


@torch.no_grad()
def step_states(policy, tokenizer, fmt, questions: list[str], chains: list[list[str]], answers: list[str],
                batch_size: int = 32) -> list[torch.Tensor]:  # fmt: skip
    """For each chain a ``(steps, hidden)`` tensor: the mean of the policy's last hidden states over each step's
    tokens, the chain written after its question (rendered with the policy's chat template). A step with no token of
    its own (empty) gets zeros. Right-padded batches of similar lengths."""
    device = next(policy.parameters()).device
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    texts, spans = [], []
    for q, steps, a in zip(questions, chains, answers):
        prompt = render_prompt(tokenizer, q)
        texts.append(prompt + fmt.render(steps, a))
        spans.append([(len(prompt) + s, len(prompt) + e) for s, e in step_spans(fmt, steps)])
    enc = [tokenizer(t, add_special_tokens=False, return_offsets_mapping=True) for t in texts]
    order = sorted(range(len(texts)), key=lambda k: len(enc[k]["input_ids"]))
    out: list[torch.Tensor | None] = [None] * len(texts)
    for b in range(0, len(order), batch_size):
        batch = order[b : b + batch_size]
        ids, mask = right_padded([enc[k]["input_ids"] for k in batch], pad)
        hidden = policy(input_ids=ids.to(device), attention_mask=mask.to(device), output_hidden_states=True)
        last = hidden.hidden_states[-1].float().cpu()
        for r, k in enumerate(batch):
            offsets = enc[k]["offset_mapping"]
            rows = []
            for s, e in spans[k]:
                tokens = [t for t, (ts, te) in enumerate(offsets) if te > s and ts < e]
                rows.append(last[r, tokens].mean(0) if tokens else torch.zeros(last.shape[-1]))
            out[k] = torch.stack(rows) if rows else torch.zeros(0, last.shape[-1])
    return out  # type: ignore[return-value]


def omissions(fmt, references: list[list[str]], completions: list[str], alike: float = 0.75) -> list[list[int]]:
    """For each held-out question, the indices of its reference steps that the policy's completion leaves out: no
    written step is like it (``difflib`` ratio of at least ``alike``). A step written with another number (a wrong
    count where the reference has the right one) is not left out: the chain went wrong there, it did not skip it."""
    out = []
    for ref, completion in zip(references, completions):
        written = [s.text.strip() for s in fmt.steps(completion)]
        out.append([i for i, s in enumerate(ref) if not any(_alike(s.strip(), w, alike) for w in written)])
    return out


def _alike(a: str, b: str, alike: float) -> bool:
    return a == b or difflib.SequenceMatcher(None, a, b, autojunk=False).ratio() >= alike


def backoff_labels(policy, tokenizer, task, pool_examples, pool_steps: list[list[str]], pool_labels: list[list[str]],
                   held_examples, completions: list[str], correct: list[bool], neighbours: int = 20, z: float = 3.0,
                   batch_size: int = 32) -> tuple[list[list[str]], BackoffStats]:  # fmt: skip
    """The pool's labels with every drop taken back whose nearest held-out omissions come from wrong chains more
    often than the held-out chains do (see the module docstring). ``held_examples`` / ``completions`` / ``correct``:
    the warm-started policy's greedy chains on questions it was not trained on."""
    fmt = task.format
    out = [list(labs) for labs in pool_labels]
    stats = BackoffStats(questions=len(completions), wrong=sum(not c for c in correct))
    refs = [[t.strip() for t in ex.steps] for ex in held_examples]
    left = omissions(fmt, refs, completions)
    stats.omitted = sum(map(len, left))
    stats.omitted_wrong = sum(len(o) for o, ok in zip(left, correct) if not ok)
    drops = [(c, i) for c, labs in enumerate(pool_labels) for i, lab in enumerate(labs) if lab != "useful"]
    stats.drops = len(drops)
    if not drops or not stats.omitted or not stats.questions:
        return out, stats
    k = min(neighbours, stats.omitted)
    rate = stats.wrong / stats.questions
    stats.threshold = rate + z * math.sqrt(max(rate * (1 - rate), 1.0 / stats.questions) / k)
    held = [(q, o) for q, o in enumerate(left) if o]
    states = step_states(policy, tokenizer, fmt, [task.prompt(held_examples[q]) for q, _ in held],
                         [refs[q] for q, _ in held], [held_examples[q].answer for q, _ in held], batch_size)  # fmt: skip
    omitted = torch.cat([s[o] for s, (_, o) in zip(states, held)])
    wrong = torch.tensor([float(not correct[q]) for q, o in held for _ in o])
    chains = sorted({c for c, _ in drops})
    pool_states = step_states(policy, tokenizer, fmt, [task.prompt(pool_examples[c]) for c in chains],
                              [pool_steps[c] for c in chains], [pool_examples[c].answer for c in chains], batch_size)  # fmt: skip
    by_chain = dict(zip(chains, pool_states))
    dropped = torch.stack([by_chain[c][i] for c, i in drops])
    sims = torch.nn.functional.normalize(dropped, dim=-1) @ torch.nn.functional.normalize(omitted, dim=-1).T
    near = sims.topk(k, dim=-1).indices
    for (c, i), w in zip(drops, wrong[near].mean(-1).tolist()):
        if w > stats.threshold:
            out[c][i] = "useful"
            stats.restored += 1
    return out, stats

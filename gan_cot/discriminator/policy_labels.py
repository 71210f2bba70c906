"""Step labels relative to the policy that has to answer: a step is redundant only if the policy still gets there
without it.

A step that tells a reader nothing new (``skip: Cal buys 7``, restating a quantity before using it) can still be
what keeps a model on track. Content labels (gold, or a discriminator trained on them) cannot see that; this labeler
asks the policy. For step i of a chain with answer ``a``:

* **lean** ``d_i``: the policy's mean negative log-likelihood per token of the rest of the chain (the later steps and
  the answer line) with step i deleted, minus the same with it. When later steps lean on the step, the rest becomes
  less likely without it (``d_i > 0``). One forward pass of the whole chain gives every ``with`` term; one pass per
  deleted step gives the ``without`` terms (batched; a chain of n steps costs n + 1 sequences).
* **next-step lean** ``n_i``: the same for the next step alone (its NLL per token without step i minus with it). A
  step whose value only the next one uses (``skip: Cal buys 7`` before ``skip: Ann sells 3`` on a timeline) can
  move the whole rest's mean by little, most of all late in a long chain; its next step still says it is needed.
  Off unless ``lean_next`` is set.
* **answer gain** ``g_i``: the change of the mean log-probability of the answer's own tokens when the step is
  deleted (from the same passes).

Labels (:func:`labels_from_lean`): **useful** when ``d_i > lean`` (the rest leans on it), ``n_i > lean_next`` (the
next step does) or the end marker loses more than ``stop`` nats; **wrong** when the answer
gets more likely without it (``g_i > wrong``) or the rest does by more than ``lean`` (``d_i < -lean``); **redundant**
otherwise. The measurement is a ranking under the current policy. :func:`confirm_drops` then lets the policy continue
the pruned chain past each step it would drop (``discriminator.label_confirm``): a drop after which the policy's own
continuation no longer reaches the answer, while the same continuation with the step in place does, is taken back
(the step is useful). The trainer re-estimates the labels on the policy's own chains every round.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass

import torch

from gan_cot.models import render_prompt


@dataclass
class PolicyLabelConfig:
    lean: float = 0.1  # nats/token the rest of the chain must lose without a step for the step to be useful
    wrong: float = 0.1  # nats/token the answer must gain without a step for the step to be wrong
    stop: float = 2.0  # nats the end-of-thinking marker must lose without a step for the step to be useful
    lean_next: float | None = None  # nats/token the next step must lose without a step for it to be useful (off)
    confirm: bool = False  # confirm each drop by a greedy continuation of the pruned chain (confirm_drops)
    max_new_tokens: int = 160  # a confirming continuation's thinking budget, then its end of thinking is forced
    max_answer_tokens: int = 8
    generate_batch_size: int = 64  # continuations per generation batch
    batch_size: int = 64  # sequences per forward pass
    max_logits: int = 2**25  # positions x vocabulary per forward pass (bounds the logits' memory)


@dataclass
class StepLean:
    """What the policy says of each step of one chain."""

    lean: list[float]  # d_i: NLL/token of the rest without the step minus with it
    answer_gain: list[float]  # g_i: answer log-prob/token without the step minus with it
    stop_loss: list[float]  # the end marker's NLL (summed) without the step minus with it
    labels: list[str]
    next_lean: list[float] | None = None  # n_i: NLL/token of the next step without the step minus with it (0: last)


def labels_from_lean(
    lean: list[float],
    gain: list[float],
    stop: list[float],
    cfg: PolicyLabelConfig,
    next_lean: list[float] | None = None,
) -> list[str]:
    """The decision rule: per-step lean, answer gain, stop loss (and next-step lean, with ``cfg.lean_next``) ->
    useful / redundant / wrong."""
    out = []
    nexts = next_lean if next_lean is not None and cfg.lean_next is not None else [None] * len(lean)
    for d, g, m, n in zip(lean, gain, stop, nexts):
        if d > cfg.lean or m > cfg.stop or (n is not None and n > cfg.lean_next):
            out.append("useful")
        elif g > cfg.wrong or d < -cfg.lean:
            out.append("wrong")
        else:
            out.append("redundant")
    return out


def right_padded(rows: list[list[int]], pad: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Token id rows as one right-padded batch: (ids, attention mask)."""
    ids = torch.full((len(rows), max(map(len, rows))), pad, dtype=torch.long)
    mask = torch.zeros_like(ids)
    for r, row in enumerate(rows):
        ids[r, : len(row)] = torch.tensor(row, dtype=torch.long)
        mask[r, : len(row)] = 1
    return ids, mask


@torch.no_grad()
def suffix_logprobs(policy, tokenizer, texts: list[str], starts: list[list[int]], cfg: PolicyLabelConfig):
    """For each ``texts[k]`` and each character offset in ``starts[k]``: (sum, count) of the policy's log-probs of
    the tokens that end after the offset (the token that holds the offset and every later one). One forward pass per
    text, right-padded batches."""
    device = next(policy.parameters()).device
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    vocab = policy.get_output_embeddings().weight.shape[0]
    enc = [tokenizer(t, add_special_tokens=False, return_offsets_mapping=True) for t in texts]
    order = sorted(range(len(texts)), key=lambda k: len(enc[k]["input_ids"]))  # similar lengths share a batch
    out: list[list[tuple[float, int]]] = [[] for _ in texts]
    i = 0
    while i < len(order):
        width = len(enc[order[min(i + cfg.batch_size, len(order)) - 1]]["input_ids"])
        rows = max(1, min(cfg.batch_size, cfg.max_logits // max(1, width * vocab)))
        batch = order[i : i + rows]
        ids, mask = right_padded([enc[k]["input_ids"] for k in batch], pad)
        logits = policy(input_ids=ids.to(device), attention_mask=mask.to(device)).logits
        logp = torch.log_softmax(logits[:, :-1].float(), -1)
        picked = torch.gather(logp, -1, ids[:, 1:].to(device).unsqueeze(-1)).squeeze(-1).cpu()  # token t+1's log-prob
        for r, k in enumerate(batch):
            offsets = [e for _, e in enc[k]["offset_mapping"]]
            n = len(offsets)
            lp = picked[r, : n - 1]
            for start in starts[k]:
                first = max(1, bisect.bisect_right(offsets, start))
                seg = lp[first - 1 :]
                out[k].append((float(seg.sum()), int(seg.numel())))
        i += len(batch)
    return out


def _mean(sum_count: tuple[float, int]) -> float:
    s, n = sum_count
    return s / n if n else 0.0


def step_lean(policy, tokenizer, fmt, questions: list[str], chains: list[list[str]], answers: list[str],
              cfg: PolicyLabelConfig | None = None) -> list[StepLean]:  # fmt: skip
    """Lean, answer gain and label of every step of every chain under ``policy`` (see the module docstring).

    ``questions`` are the task's prompts (rendered here with the policy's chat template), ``fmt`` the chain format
    the policy writes (:mod:`gan_cot.formats`), ``answers`` the right answers.
    """
    cfg = cfg or PolicyLabelConfig()
    texts, starts, index = [], [], []  # index: (chain, -1 for the whole chain or the deleted step)
    for c, (q, steps, a) in enumerate(zip(questions, chains, answers)):
        if not steps:
            continue
        prompt = render_prompt(tokenizer, q)
        tails = [fmt.render(steps[i + 1 :], a) for i in range(len(steps))]
        ends = [len(fmt.render([], a)), len(_answer_tail(fmt, a))]  # the end marker on, the answer on
        full = prompt + fmt.render(steps, a)
        texts.append(full)
        starts.append([len(full) - n for n in ends] + [len(full) - len(t) for t in tails])
        index.append((c, -1))
        for i in range(len(steps)):
            without = prompt + fmt.render(steps[:i] + steps[i + 1 :], a)
            after_next = len(tails[i + 1]) if i + 1 < len(steps) else ends[0]  # where the next step ends
            texts.append(without)
            starts.append([len(without) - n for n in ends] + [len(without) - len(tails[i]), len(without) - after_next])
            index.append((c, i))
    sums = suffix_logprobs(policy, tokenizer, texts, starts, cfg)
    whole: dict[int, list] = {}
    deleted: dict[tuple[int, int], list] = {}
    for (c, i), s in zip(index, sums):
        if i < 0:
            whole[c] = s
        else:
            deleted[(c, i)] = s
    out = []
    for c, steps in enumerate(chains):
        if not steps:
            out.append(StepLean([], [], [], [], []))
            continue
        w = whole[c]
        lean, gain, stop, nxt = [], [], [], []
        for i in range(len(steps)):
            d = deleted[(c, i)]
            lean.append(_mean(_rest(w[2 + i], w[0], w[1])) - _mean(_rest(d[2], d[0], d[1])))
            gain.append(_mean(d[1]) - _mean(w[1]))
            stop.append((w[0][0] - w[1][0]) - (d[0][0] - d[1][0]))
            after = w[3 + i] if i + 1 < len(steps) else w[0]  # the next step: from its start to the one after it
            nxt.append(_mean(_between(w[2 + i], after)) - _mean(_between(d[2], d[3])))
        out.append(StepLean(lean, gain, stop, labels_from_lean(lean, gain, stop, cfg, nxt), nxt))
    return out


def _rest(rest: tuple[float, int], marker: tuple[float, int], answer: tuple[float, int]) -> tuple[float, int]:
    """The rest of a chain without the end-of-thinking marker's tokens: the later steps and the answer. The marker is
    written out of habit (a policy that always checks before it answers expects a check there), so it is left out."""
    return rest[0] - marker[0] + answer[0], rest[1] - marker[1] + answer[1]


def _between(start: tuple[float, int], end: tuple[float, int]) -> tuple[float, int]:
    """(sum, count) of the tokens from one suffix's start to a later one's (two suffixes of the same text)."""
    return start[0] - end[0], start[1] - end[1]


def _answer_tail(fmt, answer: str) -> str:
    """The end of a rendered chain from the answer itself on (the answer's tokens and what closes it)."""
    rendered = fmt.render([], answer)
    return rendered[rendered.rfind(answer) :]


@dataclass
class ConfirmStats:
    """What :func:`confirm_drops` did: drops tested, drops taken back, continuations generated and their tokens."""

    tested: int = 0
    restored: int = 0
    continuations: int = 0
    tokens: int = 0


def confirm_drops(policy, tokenizer, task, examples, chains: list[list[str]], labels: list[list[str]],
                  cfg: PolicyLabelConfig, progress=None) -> tuple[list[list[str]], ConfirmStats]:  # fmt: skip
    """The labels with every drop the policy's own continuation refutes taken back.

    For each step i not labelled useful, the pruned chain (the useful steps) is written up to the first useful step
    after i, so the policy has moved past the place of step i, and the policy continues it greedily to an answer;
    the control is the same prefix with step i in place. When the control reaches the right answer and the pruned
    prefix does not, the chain leans on step i: it becomes useful. A step whose removal the rest of the chain does not
    feel (a needed ``skip:`` line the next step repeats, say) can still lose the policy its place when it no longer
    writes it; only a continuation shows that. Cost: two continuations per tested step, batched
    (``cfg.generate_batch_size``). With ``cfg.confirm`` off the labels come back as they are.
    """
    from gan_cot.discriminator.labels import prefix_text
    from gan_cot.generation import Sampling, generate

    out = [list(labs) for labs in labels]
    if not cfg.confirm:
        return out, ConfirmStats()
    sep = task.separator
    jobs = []  # (chain, step, prefix without, prefix with)
    for c, (steps, labs) in enumerate(zip(chains, labels)):
        useful = [k for k, lab in enumerate(labs) if lab == "useful"]
        for i, lab in enumerate(labs):
            if lab == "useful":
                continue
            after = next((k for k in useful if k > i), None)
            upto = [k for k in useful if after is None or k <= after]
            without = prefix_text([steps[k] for k in upto], sep)
            jobs.append((c, i, without, prefix_text([steps[k] for k in sorted(upto + [i])], sep)))
    stats = ConfirmStats(tested=len(jobs))
    if not jobs:
        return out, stats
    sampling = Sampling(n=1, do_sample=False, max_new_tokens=cfg.max_new_tokens, fmt=task.format,
                        max_answer_tokens=cfg.max_answer_tokens, batch_size=cfg.generate_batch_size)  # fmt: skip
    questions = [task.prompt(examples[c]) for c, _, _, _ in jobs for _ in range(2)]
    prefixes = [p for _, _, without, with_step in jobs for p in (without, with_step)]
    groups = generate(policy, tokenizer, questions, sampling, prefixes=prefixes, progress=progress)
    for k, (c, i, without, with_step) in enumerate(jobs):
        g_without, g_with = groups[2 * k][0], groups[2 * k + 1][0]
        stats.continuations += 2
        stats.tokens += g_without.num_tokens + g_with.num_tokens
        if task.verify(with_step + g_with.text, examples[c]) and not task.verify(
            without + g_without.text, examples[c]
        ):
            out[c][i] = "useful"
            stats.restored += 1
    return out, stats

"""TokenSkip (Xia et al. 2025, "TokenSkip: Controllable Chain-of-Thought Compression in LLMs").

Sample ``sample.n`` chains per training question from the base and keep the correct ones that ended on their own.
Score every thinking token's importance, keep the most important ``ratio`` of them (in their order; the answer after
the end of thinking is never cut), with ``ratio`` drawn per chain from ``tokenskip.ratios``, and fine-tune a LoRA
adapter on the compressed chains with the ratio in the prompt (``Keep 70% of the chain.`` after the question). The
final evaluation asks for ``tokenskip.eval_ratio``; the method's own figures are every ``tokenskip.report_ratios``
ratio on ``tokenskip.report_n`` test questions (``ratio_0.5_accuracy`` ...).

**Token importance.** The paper discusses two measures: a causal LM's surprisal of each token (Selective Context,
LLMLingua) and the keep probability of LLMLingua-2, a separate encoder trained on GPT-4's compressions (the one it
uses). There is no such encoder here, so the importance comes from the base policy itself
(``tokenskip.importance``):

- ``surprisal`` (the default): ``-log p(token | prompt, chain so far)`` under the base, the first measure with the
  policy as the causal LM; one forward pass per chain. What the policy could not have predicted carries the chain's
  information; what it predicts for certain can go. On the ledger base it keeps the names, amounts and results
  and drops the newlines, ``=``, commas and most verbs first;
- ``answer_drop``: how much the log-probability of the chain's own answer (everything from the end of thinking
  on) falls when the token is left out, all else kept. It asks directly whether the answer still follows, but takes
  a forward pass over ``n + 1`` sequences for a chain of ``n`` tokens (2 to 4 s per ledger chain against 0.03 to
  0.09 s, measured on one core of a busy 2-core CPU), and, being leave-one-out, undervalues a value the chain writes
  twice (each copy alone looks dispensable) while it piles the importance onto the last steps.
"""

from __future__ import annotations

import random
import statistics

import torch

from gan_cot.models import render_prompt
from gan_cot_lab.baselines.common import BaselineError, Context, Outcome, SuffixTask, sample_chains
from gan_cot_lab.baselines.phases import attach_lora, encode, finish, fit_pairs, report


def ratio_task(task, ratio: float) -> SuffixTask:
    """The task with the kept share asked for after every question, as a percentage (one token for the tiny
    tokenizer, where ``0.5`` and ``0.7`` differ only in a digit after a shared ``0.``)."""
    return SuffixTask(task, lambda q: f"{q} Keep {round(100 * ratio)}% of the chain.")


@torch.no_grad()
def token_logprobs(model, seqs: list[list[int]], starts: list[int], pad: int, batch_size: int) -> list[torch.Tensor]:
    """``log p(seq[t] | seq[:t])`` for ``t`` from ``starts[j]`` to the end of each sequence ``j`` (right-padded
    batches of ``batch_size``)."""
    device = next(model.parameters()).device
    out = []
    for b in range(0, len(seqs), batch_size):
        chunk = seqs[b : b + batch_size]
        width = max(len(s) for s in chunk)
        ids = torch.full((len(chunk), width), pad, dtype=torch.long)  # [batch, seq]
        mask = torch.zeros((len(chunk), width), dtype=torch.long)
        for j, s in enumerate(chunk):
            ids[j, : len(s)] = torch.tensor(s)
            mask[j, : len(s)] = 1
        logits = model(input_ids=ids.to(device), attention_mask=mask.to(device)).logits
        for j, (s, start) in enumerate(zip(chunk, starts[b : b + batch_size])):
            logp = logits[j, start - 1 : len(s) - 1].float().log_softmax(-1)  # [len - start, vocab]
            out.append(logp.gather(-1, torch.tensor(s[start:], device=device).unsqueeze(-1)).squeeze(-1).cpu())
    return out


def importance(model, prompt: list[int], chain: list[int], rest: list[int], how: str, pad: int, batch_size: int):
    """One importance per chain token (higher: keep it), computed by ``model`` (see the module docstring)."""
    if how == "surprisal":
        (logp,) = token_logprobs(model, [prompt + chain + rest], [len(prompt)], pad, batch_size)
        return (-logp[: len(chain)]).tolist()
    seqs = [prompt + chain + rest] + [prompt + chain[:i] + chain[i + 1 :] + rest for i in range(len(chain))]
    answer = torch.stack([lp.sum() for lp in token_logprobs(model, seqs, [len(s) - len(rest) for s in seqs], pad,
                                                            batch_size)])  # fmt: skip
    return (answer[0] - answer[1:]).tolist()


def compress(chain: list[int], scores: list[float], ratio: float) -> list[int]:
    """The ``round(ratio * len(chain))`` most important tokens of ``chain``, in their order (ties: the earlier)."""
    k = round(ratio * len(chain))
    keep = sorted(sorted(range(len(chain)), key=lambda i: (-scores[i], i))[:k])
    return [chain[i] for i in keep]


def train(ctx: Context) -> Outcome:
    cfg = ctx.cfg
    c = cfg.tokenskip
    task, tok = ctx.task, ctx.tokenizer
    examples = ctx.train_examples()
    groups = sample_chains(ctx, examples, cfg.sample.n, cfg.sample.temperature, cfg.sample.max_new_tokens)
    rng = random.Random(cfg.seed)
    questions, completions, kept, sampled = [], [], [], []
    for ex, group in zip(examples, groups):
        sampled += [x.num_tokens for x in group]
        prompt = tok(render_prompt(tok, task.prompt(ex)), add_special_tokens=False)["input_ids"]
        for text in dict.fromkeys(x.text for x in group if x.finished and task.verify(x.text, ex)):
            thinking = task.format.thinking(text)
            chain = tok(thinking, add_special_tokens=False)["input_ids"]
            rest = tok(text[len(thinking) :], add_special_tokens=False)["input_ids"]
            ratio = rng.choice(c.ratios)
            scores = importance(ctx.model, prompt, chain, rest, c.importance, tok.pad_token_id, c.batch_size)
            short = compress(chain, scores, ratio)
            kept.append((len(short), len(chain), ratio))
            questions.append(ratio_task(task, ratio).prompt(ex))
            completions.append(tok.decode(short) + text[len(thinking) :])
    if not completions:
        raise BaselineError(
            f"no correct chain among {cfg.sample.n} samples for any of {len(examples)} questions; "
            "raise sample.n or sample.max_new_tokens, or start from a stronger model"
        )
    metrics = {
        "train_chains": len(completions),
        "train_kept_fraction": sum(k for k, _, _ in kept) / max(1, sum(n for _, n, _ in kept)),
        "train_ratio": statistics.fmean(r for _, _, r in kept),
        "sampled_mean_tokens": statistics.fmean(sampled),
    }
    ctx.log(
        f"[tokenskip] {len(completions)} correct chains, {metrics['train_kept_fraction']:.3f} of their thinking "
        f"tokens kept by {c.importance} importance"
    )
    model = attach_lora(ctx)
    fit_pairs(ctx, model, encode(ctx, questions, completions), "tokenskip")
    for ratio in c.report_ratios:
        metrics |= report(ctx, model, ratio_task(task, ratio), f"ratio_{ratio:g}", c.report_n)
    return finish(
        ctx, model, rollouts=len(examples) * cfg.sample.n, metrics=metrics, eval_task=ratio_task(task, c.eval_ratio)
    )

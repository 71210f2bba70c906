"""Evaluation: accuracy and chain length of a policy on a task split.

``tokens`` are the completion tokens a policy generated (the end-of-sequence token excluded) in its
own tokenizer; ``minimal tokens`` are the tokens of the task's minimal reference chain in the same
tokenizer, so ``tokens_vs_minimal`` = mean tokens / mean minimal tokens says how far a policy is from
the shortest chain that still answers (1.0 is the physical limit on the ledger task).

``thinking`` tokens are those before the end-of-thinking marker of the task's chain format (``####``,
``</think>``), ``answer`` tokens the marker and what follows
(:func:`gan_cot.efficiency.split_thinking`); the two add up to ``tokens``. Efficiency figures against a base
model (compression, ACU, AES, the Pareto front) are in :mod:`gan_cot.efficiency`.

A :class:`gan_cot.gate.GatedPolicy` (an adapter loaded unmerged, with or without its alpha gate) is evaluated with
its LoRA delta scaled per question: ``alpha=None`` lets the gate choose (or uses the policy's fixed alpha), a float
fixes alpha for every question (CoT-Valve's manual alpha); the result then adds the alpha statistics.
The decoding options are an :class:`EvalSettings`. Its ``max_think_tokens`` is a thinking budget: a chain still
thinking after that many tokens gets the end of thinking of the task's chain format appended and
``max_answer_tokens`` greedy tokens to answer, as the trainer's rollouts do.
"""

from __future__ import annotations

import statistics
import warnings
from dataclasses import dataclass

from tqdm.auto import tqdm

from gan_cot.efficiency import split_thinking
from gan_cot.gate.stats import alpha_stats
from gan_cot.generation import Sampling, generate


def count_parameters(model) -> int:
    """Parameters that run at inference (a merged LoRA adds none; an unmerged adapter's are counted)."""
    return sum(p.numel() for p in model.parameters())


def thinking_answer_tokens(tokenizer, texts: list[str], num_tokens: list[int], fmt=None) -> list[tuple[int, int]]:
    """``(thinking, answer)`` token counts of completions whose total generated tokens are ``num_tokens``.

    The thinking part is re-encoded in the policy's tokenizer; the answer part is the rest of the total, so
    the two always add up to the tokens generated (a merge across the cut is counted as thinking).
    """
    if not texts:
        return []
    thinking = [split_thinking(t, *([fmt] if fmt else []))[0] for t in texts]
    counts = [len(ids) for ids in tokenizer(thinking, add_special_tokens=False)["input_ids"]]
    return [(min(c, n), n - min(c, n)) for c, n in zip(counts, num_tokens)]


def reference_tokens(tokenizer, task, examples, minimal: bool) -> list[int]:
    texts = [task.reference(ex, minimal=minimal) for ex in examples]
    return [len(ids) for ids in tokenizer(texts, add_special_tokens=False)["input_ids"]]


def answer_cut(fmt, c) -> bool:
    """Whether completion ``c`` was stopped by the answer budget in the middle of its answer: past the end of
    thinking, no end of sequence, and an answer begun but not whole (a ``\\boxed{`` not closed, or a ``####`` line
    with no line break after it). A chain that wrote its answer and ran on is not cut, nor one that never began an
    answer (a model that keeps reasoning after a forced ``</think>`` is not short of answer tokens)."""
    tail = fmt.answer_part(c.text)
    if c.finished or tail is None:
        return False
    if fmt.boxed:
        from gan_cot.formats import boxed_contents

        return "\\boxed{" in tail and not boxed_contents(tail)
    line = tail.lstrip(" ")
    return not line.strip() or "\n" not in line


@dataclass(frozen=True)
class EvalSettings:
    """How :func:`evaluate` decodes, the same for every question:

    - ``samples``: completions per question, scored avg@k; above 1 they are sampled at ``temperature``, else greedy.
    - ``temperature``: the sampling temperature (not used by greedy decoding).
    - ``max_new_tokens``: the tokens a chain may generate when there is no thinking budget.
    - ``max_think_tokens``: a thinking budget: past it the end of thinking is forced, then ``max_answer_tokens``.
    - ``max_answer_tokens``: the answer tokens after the end of thinking; None: the task format's answer budget.
    - ``batch_size``: questions per generation batch.
    - ``seed``: the seed of the evaluation's own random stream.
    """

    samples: int = 1
    temperature: float = 1.0
    max_new_tokens: int = 256
    max_think_tokens: int | None = None
    max_answer_tokens: int | None = None
    batch_size: int = 64
    seed: int = 0

    def sampling(self, fmt) -> Sampling:
        """The :class:`Sampling` of these settings for a task of chain format ``fmt`` (whose ``answer_tokens`` is
        the answer budget when ``max_answer_tokens`` is None)."""
        budget = self.max_think_tokens is not None
        return Sampling(
            n=self.samples,
            do_sample=self.samples > 1,
            temperature=self.temperature,
            max_new_tokens=self.max_think_tokens if budget else self.max_new_tokens,
            fmt=fmt if budget else None,
            max_answer_tokens=fmt.answer_tokens if self.max_answer_tokens is None else self.max_answer_tokens,
            batch_size=self.batch_size,
        )


def evaluate(
    model,
    tokenizer,
    task,
    examples,
    settings: EvalSettings = EvalSettings(),
    *,
    alpha: float | None = None,
    show_progress: bool = True,
    keep_completions: int = 0,
    keep_rows: bool = False,
) -> dict:
    """Accuracy (avg@k over ``settings.samples``), mean tokens (all, thinking, answer) and, where the task knows it,
    tokens vs minimal.

    ``model``: a causal LM, or a :class:`gan_cot.gate.GatedPolicy` (then ``alpha``: None for its gate, a float
    to fix it; the result adds :func:`alpha_stats`). ``settings`` (:class:`EvalSettings`): with a
    ``max_think_tokens``, generate at most that many tokens, then force the end of thinking and ``max_answer_tokens``
    more (``max_new_tokens`` is not used then; None: the chain format's answer budget). ``well_formed`` is the share
    of completions with an answer the format can read; ``answer_cut`` counts those whose answer ran out of budget
    (:func:`answer_cut`): a warning says so when they are most of the answers. ``keep_completions``: add the first
    that many questions' first completions. ``keep_rows``: add ``rows``, one per completion: question id,
    difficulty, alpha, tokens, correct, completion.
    """
    import torch

    if not isinstance(settings, EvalSettings):
        raise TypeError(f"evaluate takes its decoding options as EvalSettings, got {type(settings).__name__}")
    questions = [task.prompt(ex) for ex in examples]
    sampling = settings.sampling(task.format)
    max_answer_tokens = sampling.max_answer_tokens
    alphas: list[float] = []
    # a private RNG stream: evaluating never shifts the caller's (a trainer's) random state
    with (
        torch.random.fork_rng(),
        tqdm(total=len(questions), desc="evaluate", disable=not show_progress, leave=False) as bar,
    ):
        torch.manual_seed(settings.seed)
        groups = generate(model, tokenizer, questions, sampling, alpha=alpha, progress=bar.update, alphas_out=alphas)
    forced = sum(c.forced for group in groups for c in group)
    alphas = alphas or None
    correct, tokens, unfinished = [], [], 0
    per_example = []
    for ex, group in zip(examples, groups):
        hits = [task.verify(c.text, ex) for c in group]
        correct.extend(hits)
        tokens.extend(c.num_tokens for c in group)
        unfinished += sum(not c.finished for c in group)
        per_example.append((ex, group, hits))
    split = thinking_answer_tokens(tokenizer, [c.text for group in groups for c in group], tokens, task.format)
    fmt = task.format
    chains = [c for group in groups for c in group]
    answered = [c for c in chains if fmt.answer_part(c.text) is not None]
    cut = sum(answer_cut(fmt, c) for c in answered)
    if answered and cut > len(answered) / 2:
        warnings.warn(
            f"{cut} of {len(answered)} answers ran out of the answer budget ({max_answer_tokens} tokens after the end "
            f"of thinking) before the end of sequence: raise max_answer_tokens (the {fmt.name} format's default is "
            f"{fmt.answer_tokens})",
            stacklevel=2,
        )
    result = {
        "n": len(examples),
        "samples": settings.samples,
        "seed": settings.seed,
        "accuracy": sum(correct) / max(1, len(correct)),
        "mean_tokens": statistics.fmean(tokens) if tokens else 0.0,
        "mean_thinking_tokens": statistics.fmean(t for t, _ in split) if split else 0.0,
        "mean_answer_tokens": statistics.fmean(a for _, a in split) if split else 0.0,
        "unfinished": unfinished,
        "well_formed": sum(fmt.extract_answer(c.text) is not None for c in chains) / max(1, len(chains)),
        "answer_cut": cut,
    }
    if examples and all(ex.minimal_steps is not None for ex in examples):
        minimal = reference_tokens(tokenizer, task, examples, minimal=True)
        result["mean_minimal_tokens"] = statistics.fmean(minimal)
        result["tokens_vs_minimal"] = result["mean_tokens"] / result["mean_minimal_tokens"]
        result["mean_reference_tokens"] = statistics.fmean(reference_tokens(tokenizer, task, examples, minimal=False))
    if keep_completions:
        result["completions"] = [
            {"question": ex.question, "answer": ex.answer, "completion": g[0].text, "correct": h[0]}
            for ex, g, h in per_example[:keep_completions]
        ]
    if settings.max_think_tokens is not None:
        result["forced"] = forced
    if alphas is not None:
        result.update(alpha_stats(alphas, [ex.difficulty for ex in examples]))
    if keep_rows:
        per_alpha = alphas if alphas is not None else [None] * len(examples)
        result["rows"] = [
            {"id": ex.id, "difficulty": ex.difficulty, "alpha": a, "tokens": c.num_tokens, "correct": hit,
             "completion": c.text}
            for (ex, group, hits), a in zip(per_example, per_alpha)
            for c, hit in zip(group, hits)
        ]  # fmt: skip
    return result

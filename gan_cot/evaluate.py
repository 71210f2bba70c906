"""Evaluation: accuracy and chain length of a policy on a task split.

``tokens`` are the completion tokens a policy generated (the end-of-sequence token excluded) in its
own tokenizer; ``minimal tokens`` are the tokens of the task's minimal reference chain in the same
tokenizer, so ``tokens_vs_minimal`` = mean tokens / mean minimal tokens says how far a policy is from
the shortest chain that still answers (1.0 is the physical limit on the ledger task).

``thinking`` tokens are those before the answer marker ``####``, ``answer`` tokens the marker and what follows
(:func:`gan_cot.efficiency.split_thinking`); the two add up to ``tokens``. Efficiency figures against a base
model (compression, ACU, AES, the Pareto front) are in :mod:`gan_cot.efficiency`.
"""

from __future__ import annotations

import statistics

from tqdm.auto import tqdm

from gan_cot.efficiency import split_thinking
from gan_cot.rollout import generate


def count_parameters(model) -> int:
    """Parameters that run at inference (a merged LoRA adds none; an unmerged adapter's are counted)."""
    return sum(p.numel() for p in model.parameters())


def thinking_answer_tokens(tokenizer, texts: list[str], num_tokens: list[int]) -> list[tuple[int, int]]:
    """``(thinking, answer)`` token counts of completions whose total generated tokens are ``num_tokens``.

    The thinking part is re-encoded in the policy's tokenizer; the answer part is the rest of the total, so
    the two always add up to the tokens generated (a merge across the cut is counted as thinking).
    """
    if not texts:
        return []
    thinking = [split_thinking(t)[0] for t in texts]
    counts = [len(ids) for ids in tokenizer(thinking, add_special_tokens=False)["input_ids"]]
    return [(min(c, n), n - min(c, n)) for c, n in zip(counts, num_tokens)]


def reference_tokens(tokenizer, task, examples, minimal: bool) -> list[int]:
    texts = [task.reference(ex, minimal=minimal) for ex in examples]
    return [len(ids) for ids in tokenizer(texts, add_special_tokens=False)["input_ids"]]


def evaluate(
    model,
    tokenizer,
    task,
    examples,
    samples: int = 1,
    temperature: float = 1.0,
    max_new_tokens: int = 256,
    batch_size: int = 64,
    seed: int = 0,
    show_progress: bool = True,
    keep_completions: int = 0,
) -> dict:
    """Accuracy (avg@k over ``samples``), mean tokens (all, thinking, answer) and, where the task knows it,
    tokens vs minimal."""
    import torch

    questions = [task.prompt(ex) for ex in examples]
    # a private RNG stream: evaluating never shifts the caller's (a trainer's) random state
    with (
        torch.random.fork_rng(),
        tqdm(total=len(questions), desc="evaluate", disable=not show_progress, leave=False) as bar,
    ):
        torch.manual_seed(seed)
        groups = generate(
            model,
            tokenizer,
            questions,
            max_new_tokens=max_new_tokens,
            do_sample=samples > 1,
            temperature=temperature,
            num_return_sequences=samples,
            batch_size=batch_size,
            progress=bar.update,
        )
    correct, tokens, unfinished = [], [], 0
    per_example = []
    for ex, group in zip(examples, groups):
        hits = [task.verify(c.text, ex) for c in group]
        correct.extend(hits)
        tokens.extend(c.num_tokens for c in group)
        unfinished += sum(not c.finished for c in group)
        per_example.append((ex, group, hits))
    split = thinking_answer_tokens(tokenizer, [c.text for group in groups for c in group], tokens)
    result = {
        "n": len(examples),
        "samples": samples,
        "seed": seed,
        "accuracy": sum(correct) / max(1, len(correct)),
        "mean_tokens": statistics.fmean(tokens) if tokens else 0.0,
        "mean_thinking_tokens": statistics.fmean(t for t, _ in split) if split else 0.0,
        "mean_answer_tokens": statistics.fmean(a for _, a in split) if split else 0.0,
        "unfinished": unfinished,
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
    return result

"""How much shorter, and at what cost in accuracy: the efficiency figures of a policy against its base.

Pure functions of numbers. ``accuracy`` is a fraction in [0, 1]; ``tokens`` is the mean number of generated
tokens per answer (thinking and answer together, end-of-sequence token excluded), as
:func:`gan_cot.evaluate.evaluate` reports it; ``base_*`` are the same figures of the model before compression,
evaluated on the same questions with the same decoding.

- :func:`compression_rate`: ``1 - tokens / base_tokens`` (the design's definition): 0 = no shorter,
  0.6 = 60% of the tokens cut, negative = longer than the base.
- :func:`acu`: CoT-Valve's accuracy per computation unit, ``accuracy / (#params x #tokens)``, reported in
  accuracy points per (billion parameters x hundred tokens).
- :func:`aes`: O1-Pruner's accuracy-efficiency score, rewarding length cuts and penalising accuracy drops
  more than it rewards gains.
- :func:`pareto_front`: the runs no other run beats on both accuracy and tokens.

A figure that is undefined for its inputs (a base with no tokens or zero accuracy, a model with no
parameters) is ``None``, so callers can print it as missing instead of dividing by zero.
"""

from __future__ import annotations

from collections.abc import Sequence

from gan_cot.formats import HASH, ChainFormat


def split_thinking(completion: str, fmt: ChainFormat = HASH) -> tuple[str, str]:
    """A completion cut at its first end-of-thinking marker: ``(thinking, answer)``.

    The thinking part is everything before the marker (``####``, ``</think>``; the separator before it included);
    the answer part is the marker and what follows. A completion without the marker never answered: it is all
    thinking.
    """
    thinking = fmt.thinking(completion)
    return thinking, completion[len(thinking) :]


def compression_rate(tokens: float, base_tokens: float) -> float | None:
    """``1 - tokens / base_tokens``: the fraction of the base's tokens cut (negative when longer)."""
    if base_tokens is None or tokens is None or base_tokens <= 0:
        return None
    return 1.0 - tokens / base_tokens


def acu(accuracy: float, n_params: float, tokens: float) -> float | None:
    """Accuracy per computation unit (CoT-Valve, Ma et al. 2025, arXiv:2502.09601): ``accuracy / (#params x #tokens)``.

    The raw ratio is tiny (1e-12 for a 1B model), so it is reported as **accuracy in percent per (billion
    parameters x hundred tokens)**::

        ACU = (100 * accuracy) / ((n_params / 1e9) * (tokens / 100))

    A 32B model at 95.07% with 741.1 tokens per answer scores 95.07 / (32 * 7.411) = 0.40; a 1.5B model at
    80% with 300 tokens scores 80 / (1.5 * 3) = 17.8. Higher is better. Compare ACU only between models
    measured on the same questions; ``n_params`` counts the parameters that run at inference (a LoRA
    adapter merged into its base adds nothing).
    """
    if accuracy is None or not n_params or not tokens or n_params <= 0 or tokens <= 0:
        return None
    return (100.0 * accuracy) / ((n_params / 1e9) * (tokens / 100.0))


def aes(
    accuracy: float,
    tokens: float,
    base_accuracy: float,
    base_tokens: float,
    alpha: float = 1.0,
    beta: float = 3.0,
    gamma: float = 5.0,
) -> float | None:
    """Accuracy-efficiency score (O1-Pruner, Luo et al. 2025, arXiv:2501.12570), against the base model.

    With the relative length cut ``dL = (base_tokens - tokens) / base_tokens`` and the relative accuracy
    change ``dA = (accuracy - base_accuracy) / base_accuracy``::

        AES = alpha * dL + beta  * |dA|    if dA >= 0
        AES = alpha * dL - gamma * |dA|    if dA <  0

    with the paper's weights ``alpha = 1, beta = 3, gamma = 5``: an accuracy drop costs more than the same
    gain earns. The base itself scores 0; higher is better. Example (the paper's Marco-o1 row on MATH):
    base 73.8% at 1156 tokens, pruned 77.5% at 657 tokens: dL = 0.432, dA = 0.050, AES = 0.58.
    Undefined (``None``) when the base has no tokens or zero accuracy.
    """
    if None in (accuracy, tokens, base_accuracy, base_tokens) or base_tokens <= 0 or base_accuracy <= 0:
        return None
    d_len = (base_tokens - tokens) / base_tokens
    d_acc = (accuracy - base_accuracy) / base_accuracy
    if d_acc >= 0:
        return alpha * d_len + beta * abs(d_acc)
    return alpha * d_len - gamma * abs(d_acc)


def pareto_front(points: Sequence[tuple[float, float]]) -> list[int]:
    """Indices of the ``(tokens, accuracy)`` points on the Pareto front, fewest tokens first.

    A point is on the front when no other point has at most as many tokens and at least the accuracy,
    better in one of the two. Equal points are all on the front. Points with a ``None`` coordinate are
    skipped.
    """
    valid = [(i, t, a) for i, (t, a) in enumerate(points) if t is not None and a is not None]
    front = []
    for i, t, a in valid:
        dominated = any(t2 <= t and a2 >= a and (t2 < t or a2 > a) for j, t2, a2 in valid if j != i)
        if not dominated:
            front.append(i)
    return sorted(front, key=lambda i: (points[i][0], -points[i][1], i))


def against_base(result: dict, base: dict) -> dict:
    """The figures of an evaluation ``result`` against the ``base`` one (both as ``evaluate`` returns them).

    ``compression`` (all generated tokens), ``thinking_compression`` (the thinking part, where both report it)
    and ``aes``; undefined figures are ``None``.
    """
    out = {
        "compression": compression_rate(result["mean_tokens"], base["mean_tokens"]),
        "aes": aes(result["accuracy"], result["mean_tokens"], base["accuracy"], base["mean_tokens"]),
    }
    if "mean_thinking_tokens" in result and "mean_thinking_tokens" in base:
        out["thinking_compression"] = compression_rate(result["mean_thinking_tokens"], base["mean_thinking_tokens"])
    return out

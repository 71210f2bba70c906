"""Chains of thought as steps: split a chain's text into steps and map each step to its tokens.

A chain is text whose steps are separated by a separator (one line per step by default). The
discriminator scores a step at its last token, so besides the character span of each step this
module gives the token span of each step under any Hugging Face fast tokenizer (one that returns an
offset mapping).
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence
from dataclasses import dataclass

LABELS = ("useful", "redundant", "wrong")
"""Step labels; a label's index is its class id everywhere in the project."""

SEPARATORS = {"newline": "\n", "blank_line": "\n\n"}
"""Named step separators; any other non-empty string is used literally."""


def resolve_separator(sep: str) -> str:
    """The literal separator for ``sep``: a name from :data:`SEPARATORS` or a literal string.

    Raises ValueError for an empty separator (or one that is not a string).
    """
    if not isinstance(sep, str) or sep == "":
        raise ValueError(
            f"step separator must be one of {sorted(SEPARATORS)} or a non-empty literal string, got {sep!r}"
        )
    return SEPARATORS.get(sep, sep)


@dataclass(frozen=True)
class Step:
    """One step of a chain: its text and its character span ``[start, end)`` in the chain text."""

    text: str
    start: int
    end: int


def split_steps(text: str, separator: str = "\n") -> list[Step]:
    """Split a chain into steps.

    The text is split on ``separator`` (a name from :data:`SEPARATORS` or a literal string); each piece
    is stripped of surrounding whitespace (its span follows the stripped text) and empty pieces are
    dropped. ``step.text == text[step.start:step.end]`` for every step.
    """
    sep = resolve_separator(separator)
    steps: list[Step] = []
    pos = 0
    while pos <= len(text):
        cut = text.find(sep, pos)
        if cut < 0:
            cut = len(text)
        piece = text[pos:cut]
        stripped = piece.strip()
        if stripped:
            start = pos + (len(piece) - len(piece.lstrip()))
            steps.append(Step(stripped, start, start + len(stripped)))
        pos = cut + len(sep)
    return steps


def join_steps(steps: Sequence[str | Step], separator: str = "\n") -> str:
    """Join step texts (strings or :class:`Step` objects) with ``separator`` (a name or a literal string).

    The inverse of :func:`split_steps` for normalised text (no empty steps, no surrounding whitespace).
    """
    sep = resolve_separator(separator)
    return sep.join(s.text if isinstance(s, Step) else s for s in steps)


def _offset_pairs(offsets) -> list[tuple[int, int]]:
    if hasattr(offsets, "tolist"):  # torch tensor / numpy array
        offsets = offsets.tolist()
    offsets = list(offsets)
    # A batch of one (e.g. from return_tensors="pt") is unambiguous; a larger batch is not.
    if offsets and len(offsets[0]) > 0 and isinstance(offsets[0][0], (list, tuple)):
        if len(offsets) != 1:
            raise ValueError(
                f"offsets must be the offset mapping of one sequence (n_tokens x 2), got a batch of {len(offsets)}"
            )
        offsets = list(offsets[0])
    pairs = []
    for i, pair in enumerate(offsets):
        if len(pair) != 2:
            raise ValueError(f"offsets[{i}] = {pair!r} is not a (start, end) character pair")
        pairs.append((int(pair[0]), int(pair[1])))
    return pairs


def _tokenizer_offsets(tokenizer, text: str) -> list[tuple[int, int]]:
    name = type(tokenizer).__name__
    if not getattr(tokenizer, "is_fast", False):
        raise ValueError(
            f"step_token_spans needs a fast tokenizer (one with an offset mapping); {name} is not one. "
            "Load it with AutoTokenizer.from_pretrained(..., use_fast=True) or pass offsets= yourself."
        )
    enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    offsets = enc.get("offset_mapping") if hasattr(enc, "get") else None
    if offsets is None:
        raise ValueError(
            f"{name} returned no offset mapping for return_offsets_mapping=True; "
            "step_token_spans needs a fast tokenizer, or pass offsets= yourself."
        )
    return _offset_pairs(offsets)


def step_token_spans(tokenizer, text: str, steps: Sequence[Step], offsets=None) -> list[tuple[int, int]]:
    """Token index span ``[tok_start, tok_end)`` of each step.

    Tokens are those of ``tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)``; a
    token belongs to a step when its character span overlaps the step's character span (tokens with a
    zero-length span, such as special tokens, belong to no step). A token that straddles the boundary
    between two steps (possible only with a separator the tokenizer merges into words) belongs to both.

    ``offsets`` is an offset mapping the caller already has (one ``(start, end)`` pair per token), for
    instance that of prompt + completion, with the steps' character spans shifted by the prompt length;
    then ``tokenizer`` and ``text`` are not used to tokenize.

    Raises ValueError when the tokenizer gives no offset mapping (a slow tokenizer) or a step overlaps
    no token (the offsets do not belong to this text, or the step's span lies outside it).
    """
    pairs = _tokenizer_offsets(tokenizer, text) if offsets is None else _offset_pairs(offsets)
    tokens = [(i, s, e) for i, (s, e) in enumerate(pairs) if e > s]
    starts = [s for _, s, _ in tokens]
    ends = [e for _, _, e in tokens]
    monotonic = all(a <= b for a, b in zip(starts, starts[1:])) and all(a <= b for a, b in zip(ends, ends[1:]))

    spans = []
    for k, step in enumerate(steps):
        if monotonic:
            # first token ending after the step starts .. last token starting before the step ends
            lo = bisect.bisect_right(ends, step.start)
            hi = bisect.bisect_left(starts, step.end)
            hit = tokens[lo:hi]
        else:
            hit = [t for t in tokens if t[1] < step.end and t[2] > step.start]
        if not hit:
            raise ValueError(
                f"step {k} (characters {step.start}-{step.end}, {step.text[:40]!r}) overlaps no token; "
                f"the offsets cover characters up to {max(ends, default=0)} - are they the offsets of this text?"
            )
        spans.append((min(t[0] for t in hit), max(t[0] for t in hit) + 1))
    return spans


def step_end_positions(spans: Sequence[tuple[int, int]]) -> list[int]:
    """Index of each step's last token (``tok_end - 1``): where the discriminator scores the step."""
    return [end - 1 for _, end in spans]

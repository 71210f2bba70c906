"""Chain formats: where the thinking ends, how it splits into steps, where the answer is and how it is read.

A completion is thinking, then the end-of-thinking marker, then the answer. Only the thinking is split into steps
(and gets step credit); the answer is read from the part after the marker. Two presets:

- ``hash`` (the built-in task and GSM8K's own solutions): one step per line, then ``#### answer``;
- ``r1`` (DeepSeek-R1-style reasoning models): steps are paragraphs (blank lines between them), the thinking ends
  at ``</think>``, and the answer is the last ``\\boxed{...}`` after it (nested braces, ``\\$``, ``\\text{}`` and
  ``\\frac`` allowed); a ``\\boxed{}`` inside the thinking is never the answer.

When the thinking budget runs out, :attr:`ChainFormat.forced_end` is appended and the model gets a few tokens to
answer (:mod:`gan_cot.generation`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from gan_cot.steps import Step, split_steps

_HASH_ANSWER_RE = re.compile(r"####\s*([^\n]*)")
_NUMBER_RE = re.compile(r"-?\d+(?:\.\d+)?")
_TEXT_RE = re.compile(r"\\(?:text|textbf|mathrm|mbox)\{([^{}]*)\}")
_FRAC_RE = re.compile(r"\\[dt]?frac\{(-?\d+(?:\.\d+)?)\}\{(-?\d+(?:\.\d+)?)\}")


def boxed_contents(text: str) -> list[str]:
    """The contents of every complete ``\\boxed{...}`` in ``text``, braces balanced (``\\boxed{\\frac{1}{2}}``)."""
    out = []
    start = text.find("\\boxed{")
    while start >= 0:
        i, depth = start + len("\\boxed{"), 1
        while i < len(text) and depth:
            depth += {"{": 1, "}": -1}.get(text[i], 0)
            i += 1
        if depth == 0:
            out.append(text[start + len("\\boxed{") : i - 1])
        start = text.find("\\boxed{", i if depth == 0 else start + 1)
    return out


def normalize_number(text: str) -> str:
    """Canonical form of a numeric answer: no thousands commas, currency, ``$...$``, ``\\text{}`` or units; no
    trailing ``.0``; ``\\frac{a}{b}`` as a decimal. A text with exactly one number is that number (``18 dollars``);
    any other text is returned stripped."""
    t = _TEXT_RE.sub(r" \1 ", text)
    t = _FRAC_RE.sub(lambda m: repr(float(m.group(1)) / float(m.group(2))), t)
    t = re.sub(r"\\[$%,!; ]|\$|\\left|\\right|\^\\circ|\\%", " ", t)
    t = t.replace(",", "").strip().rstrip(".").strip()
    try:
        value = float(t)
    except ValueError:
        numbers = _NUMBER_RE.findall(t)
        if len(numbers) != 1:
            return t
        value = float(numbers[0])
    if value.is_integer():
        return str(int(value))
    return repr(value)


@dataclass(frozen=True)
class ChainFormat:
    name: str
    end_of_thinking: str  # the marker that ends the thinking
    separator: str  # between steps
    forced_end: str  # appended when the thinking budget runs out (the marker and what belongs around it)
    answer_after: str  # written between the marker and the answer when a chain is rendered
    boxed: bool  # the answer is the last \boxed{} after the marker (else the text that follows the marker)

    def thinking(self, completion: str) -> str:
        """The completion before the end-of-thinking marker (all of it when the marker is missing)."""
        return completion.split(self.end_of_thinking, 1)[0]

    def answer_part(self, completion: str) -> str | None:
        """The completion after the marker, or None when the thinking never ended."""
        head, marker, tail = completion.partition(self.end_of_thinking)
        return tail if marker else None

    def steps(self, completion: str) -> list[Step]:
        """The thinking's steps, with character spans in the completion."""
        return split_steps(self.thinking(completion), self.separator)

    def extract_answer(self, completion: str) -> str | None:
        """The final answer, normalised (:func:`normalize_number`), or None when there is none."""
        if self.boxed:
            tail = self.answer_part(completion)
            found = boxed_contents(tail) if tail is not None else []
            return normalize_number(found[-1]) if found else None
        found = _HASH_ANSWER_RE.findall(completion)
        if found and found[-1].strip():
            return normalize_number(found[-1])
        boxed = boxed_contents(completion)
        return normalize_number(boxed[-1]) if boxed else None

    def render(self, steps: list[str], answer: str) -> str:
        """The completion a policy is trained to write: the steps, the end of thinking, the answer."""
        if self.boxed:
            return self.separator.join(steps) + self.forced_end + f"The answer is $\\boxed{{{answer}}}$."
        return self.separator.join([*steps, f"{self.end_of_thinking}{self.answer_after}{answer}"])


HASH = ChainFormat("hash", "####", "\n", "\n####", " ", boxed=False)
R1 = ChainFormat("r1", "</think>", "\n\n", "\n</think>\n\n", "", boxed=True)
FORMATS = {"hash": HASH, "r1": R1}


def get_format(name: str) -> ChainFormat:
    if name not in FORMATS:
        raise ValueError(f"unknown chain format {name!r}; choose one of {sorted(FORMATS)}")
    return FORMATS[name]

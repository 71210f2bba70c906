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
from fractions import Fraction

from gan_cot.steps import Step, split_steps

_HASH_ANSWER_RE = re.compile(r"####\s*([^\n]*)")
_NUMBER_RE = re.compile(r"-?\d+(?:\.\d+)?")
# a whole answer that is a number: an integer or decimal, a fraction a/b, a small exponent (1e3)
_WHOLE_RE = re.compile(r"-?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d{1,3})?(?:/\d+(?:\.\d+)?)?")
_TEXT_RE = re.compile(
    r"\\(?:text|textbf|textit|textrm|textnormal|mathrm|mathbf|mathit|mbox|operatorname)\s*\{([^{}]*)\}"
)
_FRAC_RE = re.compile(r"\\[dtc]?frac(?![A-Za-z])")
# LaTeX spacing and sizing that a reader skips: \, \: \; \> \  \quad \qquad \thinspace \displaystyle \left \right
_SPACE_RE = re.compile(
    r"\\(?:[,:;> ]|quad|qquad|thinspace|medspace|thickspace|displaystyle|textstyle|left|right)(?![A-Za-z])"
)
_DEGREE_RE = re.compile(r"\^\s*\{?\s*\\circ\s*\}?|\\circ(?![A-Za-z])|\\degree(?![A-Za-z])|°")
_UNIT_POWER_RE = re.compile(r"(?<=[A-Za-z])\s*\^\s*\{?\d+\}?")  # "\text{m}^2": a unit's power, not a number
MAX_ANSWER_CHARS = 1000
MAX_FRAC_DEPTH = 4  # \frac{\frac{1}{2}}{3}: fractions nested deeper are left as text
_THIN_SPACES = dict.fromkeys(map(ord, "\u2009\u202f\u00a0\u2007\u200a"), " ")


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


def _argument(text: str, i: int) -> tuple[str, int] | None:
    """One TeX macro argument at ``text[i:]``: a balanced ``{...}`` group or a single character (``\\frac12``)."""
    while i < len(text) and text[i] == " ":
        i += 1
    if i >= len(text) or text[i] == "}":
        return None
    if text[i] != "{":
        return text[i], i + 1
    depth, j = 0, i
    while j < len(text):
        depth += {"{": 1, "}": -1}.get(text[j], 0)
        j += 1
        if depth == 0:
            return text[i + 1 : j - 1], j
    return None


def _value(text: str, depth: int = 0) -> Fraction | None:
    """The exact value of a text that is one number (after the clean-up), else None."""
    t = _clean(text, depth)
    if not _WHOLE_RE.fullmatch(t):
        return None
    try:
        return Fraction(t)
    except (ValueError, ZeroDivisionError):
        return None


def _canonical(value: Fraction) -> str:
    return str(value.numerator) if value.denominator == 1 else repr(float(value))


def _fractions(text: str, depth: int) -> str:
    """``\\frac{a}{b}``, ``\\dfrac``, ``\\tfrac``, ``\\frac12`` and mixed numbers (``2\\frac{1}{2}``) as numbers; a
    fraction whose parts are not numbers (``\\frac{x}{2}``) or whose denominator is 0 is left as it is."""
    out, i = [], 0
    while (m := _FRAC_RE.search(text, i)) is not None:
        out.append(text[i : m.start()])
        num = _argument(text, m.end())
        den = _argument(text, num[1]) if num else None
        a, b = (_value(num[0], depth + 1), _value(den[0], depth + 1)) if den else (None, None)
        if a is None or not b:
            out.append(text[m.start() : m.end()])
            i = m.end()
            continue
        value, before = a / b, "".join(out)
        whole = re.search(r"(-?)(\d+)\s*$", before)
        if whole and value > 0 and not re.search(r"[\d.,/]\s*$", before[: whole.start(2)]):  # 2\frac{1}{2} = 2.5
            value = int(whole.group(2)) + value
            value = -value if whole.group(1) else value
            out = [before[: whole.start()]]
        out.append(f" {_canonical(value)} ")
        i = den[1]
    out.append(text[i:])
    return "".join(out)


def _clean(text: str, depth: int = 0) -> str:
    """A LaTeX or plain-text answer with what a reader skips taken out: units in ``\\text{}``, currency, percent and
    degree signs, thin spaces, ``\\!``, digit-group separators (``1,234``, ``1{,}234``, ``1\\,234``), braces."""
    t = text.translate(_THIN_SPACES).replace("\u2212", "-")
    for _ in range(8):  # innermost first: \text{\textbf{5}}
        t, n = _TEXT_RE.subn(r" \1 ", t)
        if not n:
            break
    t = _DEGREE_RE.sub(" ", t)
    t = _UNIT_POWER_RE.sub("", t)
    t = t.replace("\\!", "").replace("{,}", ",").replace("{.}", ".")
    t = _SPACE_RE.sub(" ", t)
    t = re.sub(r"\\?\$|\\?%|\\percent(?![A-Za-z])|~", " ", t)
    t = re.sub(r"(?<=\d) +(?=\d{3}(?!\d))", "", t)  # "1 234": a thin space between digit groups
    if "frac" in t and depth < MAX_FRAC_DEPTH:
        t = _fractions(t, depth)
    t = re.sub(r"(?<=\d),(?=\d{3}(?!\d))", "", t).replace(",", " ")
    t = t.replace("{", " ").replace("}", " ")
    t = " ".join(t.split()).rstrip(".").strip()
    return re.sub(r"^-\s+(?=[\d.])", "-", t)  # "- 5" from "-\frac{...}" or "- \$5"


def normalize_number(text: str) -> str:
    """Canonical form of a numeric answer, read as a person reads it: ``1{,}234`` and ``1\\,234`` are 1234,
    ``\\frac12`` / ``\\dfrac{1}{2}`` / ``\\tfrac{1}{2}`` are 0.5, ``2\\frac{1}{2}`` is 2.5, ``50\\%`` is 50, ``18
    \\text{ dollars}`` and ``\\$18`` are 18; no trailing ``.0``. A text with exactly one number and no other LaTeX
    command is that number (``x = 18``); any other text is returned cleaned (``\\sqrt{2}``, ``3, 4``)."""
    if len(str(text)) > MAX_ANSWER_CHARS:  # no number is this long: not worth reading as LaTeX
        return str(text).strip()
    t = _clean(str(text))
    value = _value(t)
    if value is not None:
        return _canonical(value)
    numbers = _NUMBER_RE.findall(t)
    if len(numbers) != 1 or re.search(r"\\[A-Za-z]", t):
        return t
    return _canonical(Fraction(numbers[0]))


@dataclass(frozen=True)
class ChainFormat:
    name: str
    end_of_thinking: str  # the marker that ends the thinking
    separator: str  # between steps
    forced_end: str  # appended when the thinking budget runs out (the marker and what belongs around it)
    answer_after: str  # written between the marker and the answer when a chain is rendered
    boxed: bool  # the answer is the last \boxed{} after the marker (else the text that follows the marker)
    # The prompt instruction that asks a chat model for this format (appended to the question; ``instruction`` key)
    instruction: str = ""
    # Default answer budget: tokens after the end of thinking, enough for the format's answer line in a real
    # tokenizer ("The answer is $\\boxed{1,234}$." is 11-15 tokens for SmolLM2 and Qwen; "#### 1234" is 2-4)
    answer_tokens: int = 8

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


HASH = ChainFormat(
    "hash", "####", "\n", "\n####", " ", boxed=False, answer_tokens=8,
    instruction="Solve it step by step, one step per line. On the last line write #### followed by the final number.",
)  # fmt: skip
# Qwen-Math's and DeepSeek-R1's own instruction for \boxed{} answers.
R1 = ChainFormat(
    "r1", "</think>", "\n\n", "\n</think>\n\n", "", boxed=True, answer_tokens=32,
    instruction="Please reason step by step, and put your final answer within \\boxed{}.",
)  # fmt: skip
FORMATS = {"hash": HASH, "r1": R1}


def get_format(name: str) -> ChainFormat:
    if name not in FORMATS:
        raise ValueError(f"unknown chain format {name!r}; choose one of {sorted(FORMATS)}")
    return FORMATS[name]

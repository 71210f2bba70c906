"""Rule checks a discriminator card can turn on next to its model (``checks: [arithmetic, repeat]``).

* ``arithmetic``: a step that writes an equation whose arithmetic is false (``48/2 = 27``, ``200 GB * 40% = 79 GB``)
  is wrong, whatever the model says: the calculator that labels GSM8K's own annotations, applied to the text a policy
  writes. The stated value may round the true one (``10/3 = 3.33``).
* ``repeat``: a step that repeats an earlier step of the chain word for word (case and spacing aside) is redundant.

A step no check judges keeps the model's probabilities.
"""

from __future__ import annotations

import re

import torch

CHECKS = ("arithmetic", "repeat")
# a run of arithmetic: numbers, operators, parentheses, "=" and spaces ("x" counts as times before a number)
_RUN_RE = re.compile(r"[\d$.,()+\-*/×÷=\s]*\d(?:[\d$.,()+\-*/×÷=\s]|x(?=\s*[\d($.]))*")
_OPERATORS = "+-*/×÷x"


def _decimals(text: str) -> int:
    return len(text.split(".")[1]) if "." in text else 0


def _same(a: float, a_text: str, b: float, b_text: str) -> bool:
    """Equal, or one side rounds the other to its own decimals (``10/3 = 3.33``)."""
    rounded = abs(round(a, _decimals(b_text)) - b) <= 1e-6 or abs(round(b, _decimals(a_text)) - a) <= 1e-6
    return abs(a - b) <= 1e-6 or rounded


def _judged(step: str, start: int, end: int, sides: list[str]) -> bool:
    """Whether a run is a whole equation: not glued to a word (``5A/5``), its left side computes something (an
    operator in it), and it does not continue an expression that words interrupt (``12 x 1 and 1/4 = 15``)."""
    if step[start - 1 : start].isalpha() or step[end : end + 1].isalpha():
        return False
    if not any(op in sides[0].lstrip("-") for op in _OPERATORS) or sides[0].startswith(tuple(_OPERATORS)):
        return False
    words, following = step[:start].split(), step[end:].lstrip()
    if (words and words[-1][-1] in _OPERATORS) or following.startswith(("%", "percent", "cents")):
        return False  # "60 students x 2/3 = 40", "1/5 = 20%": a side is not what it says
    return not (len(words) >= 2 and words[-1].isalpha() and any(c.isdigit() or c in _OPERATORS for c in words[-2]))


# every "=" with the number after it (a lookahead: a chain "a = b = c" is read one "=" at a time)
_EQUALS_RE = re.compile(r"=(?=\s*(\$?-?\d[\d,]*(?:\.\d+)?)(\s*%)?(\S?))")
_PER_UNIT_RE = re.compile(r"/\s*[A-Za-z][A-Za-z-]*")  # "$20/hour", "150 miles/train"
_NUMERIC_RE = re.compile(r"^[\d.,()%+\-*/]+$")


def _expression_before(text: str) -> str:
    """The arithmetic that ends just before an ``=``, read backwards through unit words (``150 miles * 2 trains``,
    ``20 paired socks + 15 loose socks``) and stopped by three words in a row, a clause boundary or a token mixing
    digits and letters."""
    tokens = _PER_UNIT_RE.sub(" ", re.split(r"[:;?!]|,(?!\d)|=", text)[-1].replace("×", "*")).replace("$", "").split()
    kept, words = [], 0
    for token in reversed(tokens):
        token = "*" if token == "x" else token
        if _NUMERIC_RE.match(token):
            kept.append(token)
            words = 0
        elif re.search(r"\d", token):  # "$2000x 10/100": glued to the expression, it leaves it incomplete
            return "" if not words else " ".join(reversed(kept))
        elif words == 2:
            break
        else:
            words += 1
    return " ".join(reversed(kept))


def _with_units(step: str, safe_eval) -> bool:
    """``200 GB * 40% = 79 GB``, ``$20/hour * 35 hours = $698``: the same check on the arithmetic before each ``=``
    with its unit words taken out, judged only when it has an operator and the stated number stands alone (not
    ``= 3 1/2``, ``= 4/5``, ``= 1.2Y``, ``= 30 + M``, ``= 250 cents``)."""
    for m in _EQUALS_RE.finditer(step):
        right, percent, glued = m.group(1), bool(m.group(2)), m.group(3)
        after = step[m.end() :].lstrip()[len(right) :].lstrip("% ")
        after = re.sub(r"^/\s*[A-Za-z][A-Za-z-]*", "", after).lstrip()  # "= $1147/week": a unit, not a division
        if glued.isalnum() or re.match(r"(?:\d|[-+*/x×÷])", after) or after.startswith(("cents", "percent", "..")):
            continue
        bare = re.sub(r"(\d+(?:\.\d+)?)\s*%", r"(\1/100)", _expression_before(step[: m.start()])).strip().rstrip(".")
        if not bare or bare[0] in "+-*/" or not re.search(r"\d\s*[-+*/]\s*[\d(.]", bare):
            continue
        if re.search(r"/\s*\d+\s*/", bare):  # "25 / 1/3": a fraction as divisor, ambiguous without parentheses
            continue
        try:
            value, stated = safe_eval(bare), safe_eval(right.replace("$", ""))
        except ValueError:
            continue
        text = right.replace("$", "").replace(",", "")
        whole = "." not in text and abs(value - stated) < 1 and value != int(value)  # "50 / 3 = 16 each, 2 left"
        if not (_same(value, bare, stated, text) or (percent and _same(value * 100, bare, stated, text)) or whole):
            return True
    return False


def false_equation(step: str) -> bool:
    """Whether ``step`` states an equation (``a op b = c``, or a chain ``a = b = c``, units allowed between the
    numbers) whose sides differ; equations whose sides are not plain arithmetic (``1 1/2``) are not judged."""
    from gan_cot.tasks.gsm8k import safe_eval

    step = step.replace("−", "-").replace("–", "-")  # minus signs and dashes written as minus
    if _with_units(step, safe_eval):
        return True
    for m in _RUN_RE.finditer(step):
        run = m.group(0)
        start, end = m.start() + len(run) - len(run.lstrip()), m.end() - len(run) + len(run.rstrip())
        sides = [side.strip().rstrip(".,") for side in run.strip().rstrip(".,").split("=")]
        if len(sides) < 2 or not _judged(step, start, end, sides):
            continue
        try:
            values = [safe_eval(side.replace("x", "*").replace("×", "*").replace("÷", "/")) for side in sides]
        except ValueError:
            continue
        texts = [side.replace("$", "").replace(",", "") for side in sides]
        if any(not _same(a, ta, b, tb) for a, ta, b, tb in zip(values, texts, values[1:], texts[1:])):
            return True
    return False


def apply_checks(checks: list[str], chains: list[list[str]], probs: list[torch.Tensor]) -> list[torch.Tensor]:
    """``probs`` ([n_steps, 3] per chain, LABELS order) with the rule checks' verdicts: a step with a false equation
    becomes ``[0, 0, 1]``, a repeated step ``[0, 1, 0]`` (a repeat of a wrong step is still a repeat)."""
    if not checks:
        return probs
    out = []
    for steps, p in zip(chains, probs):
        p = p.clone()
        seen = set()
        for i, step in enumerate(steps):
            if "arithmetic" in checks and false_equation(step):
                p[i] = torch.tensor([0.0, 0.0, 1.0])
            key = " ".join(step.lower().split())
            if "repeat" in checks and key in seen:
                p[i] = torch.tensor([0.0, 1.0, 0.0])
            seen.add(key)
        out.append(p)
    return out

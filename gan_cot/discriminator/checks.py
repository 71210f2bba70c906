"""Rule checks a discriminator card can turn on next to its model (``checks: [arithmetic]``).

``arithmetic``: a step that writes an equation whose arithmetic is false (``48/2 = 27``) is wrong, whatever the model
says; this is the calculator that labels GSM8K's own annotations, applied to the text a policy writes. The stated
value may round the true one (``10/3 = 3.33``). A step without an equation, or whose equations hold, keeps the
model's probabilities.
"""

from __future__ import annotations

import re

import torch

CHECKS = ("arithmetic",)
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


def false_equation(step: str) -> bool:
    """Whether ``step`` states an equation (``a op b = c``, or a chain ``a = b = c``) whose sides differ; equations
    whose sides are not plain arithmetic (``1 1/2``) are not judged."""
    from gan_cot.tasks.gsm8k import safe_eval

    step = step.replace("−", "-").replace("–", "-")  # minus signs and dashes written as minus
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
    """``probs`` ([n_steps, 3] per chain, LABELS order) with the rule checks' verdicts: a step a check finds wrong
    becomes ``[0, 0, 1]``."""
    if "arithmetic" not in checks:
        return probs
    out = []
    for steps, p in zip(chains, probs):
        p = p.clone()
        for i, step in enumerate(steps):
            if false_equation(step):
                p[i] = torch.tensor([0.0, 0.0, 1.0])
        out.append(p)
    return out

"""Chain formats on hand-written chains: where the thinking ends, the steps it splits into, and the answer read
after it (R1's \\boxed{} in its many forms; the built-in task's ``####``)."""

import pytest

from gan_cot.formats import HASH, R1, boxed_contents, get_format, normalize_number

R1_CHAIN = (
    "Natalia sold 48 clips in April.\n\nIn May she sold half as many: \\[48 / 2 = 24\\]\nso 24 clips.\n\n"
    "Wait, is that \\boxed{20}? No: 24.\n\nAltogether 48 + 24 = 72.\n</think>\n\n"
    "She sold **72** clips: $\\boxed{72}$."
)


def test_r1_thinking_steps_are_paragraphs_before_the_end_of_thinking():
    steps = R1.steps(R1_CHAIN)
    assert [s.text for s in steps] == [
        "Natalia sold 48 clips in April.",
        "In May she sold half as many: \\[48 / 2 = 24\\]\nso 24 clips.",  # display math stays in its paragraph
        "Wait, is that \\boxed{20}? No: 24.",
        "Altogether 48 + 24 = 72.",
    ]
    assert all(R1_CHAIN[s.start : s.end] == s.text for s in steps)  # spans index the completion itself
    assert "</think>" not in "".join(s.text for s in steps) and "72**" not in R1.thinking(R1_CHAIN)


@pytest.mark.parametrize(
    "tail, answer",
    [
        ("$\\boxed{72}$", "72"),
        ("\\boxed{\\$18}", "18"),
        ("\\boxed{18 \\text{ dollars}}", "18"),
        ("\\boxed{\\frac{1}{2}}", "0.5"),
        ("\\boxed{1,234}", "1234"),
        ("first \\boxed{3}, then \\boxed{4.0}", "4"),  # the last one
        ("\\boxed{-5}", "-5"),
        ("no box here: 72", None),
    ],
)
def test_r1_answer_is_the_last_box_after_the_thinking(tail, answer):
    assert R1.extract_answer("some thinking \\boxed{20}\n</think>\n\n" + tail) == answer


def test_a_box_inside_the_thinking_is_never_the_answer():
    assert R1.extract_answer("so the answer is \\boxed{20}") is None  # the thinking never ended
    assert R1.extract_answer("\\boxed{20}\n</think>\n\nI am not sure.") is None


def test_nested_and_unclosed_boxes():
    assert boxed_contents("\\boxed{a{b}c} and \\boxed{d") == ["a{b}c"]
    assert normalize_number("\\$1,000.00") == "1000" and normalize_number("forty") == "forty"


def test_render_and_parse_round_trip_in_both_formats():
    steps = ["Ann has 7.", "Ann finds 3, 7 + 3 = 10"]
    for fmt in (HASH, R1):
        text = fmt.render(steps, "10")
        assert [s.text for s in fmt.steps(text)] == steps
        assert fmt.extract_answer(text) == "10"
    assert HASH.render(steps, "10") == "Ann has 7.\nAnn finds 3, 7 + 3 = 10\n#### 10"
    assert R1.render(steps, "10").startswith("Ann has 7.\n\nAnn finds 3, 7 + 3 = 10\n</think>\n\n")
    with pytest.raises(ValueError, match="unknown chain format 'xml'"):
        get_format("xml")


def test_hash_format_keeps_the_built_in_tasks_reading():
    assert HASH.extract_answer("a\nb\n#### 5") == "5"
    assert HASH.extract_answer("a\n#### 5\n#### 6") == "6"
    assert [s.text for s in HASH.steps("a\nb\n#### 5")] == ["a", "b"]
    assert HASH.extract_answer("thinking only") is None


def test_a_task_verifies_in_the_runs_format():
    from gan_cot.tasks import get_task

    task = get_task("ledger", seed=0)
    ex = task.examples("test", 1)[0]
    assert task.verify(task.reference(ex), ex)
    task.format = R1
    r1_text = task.reference(ex)
    assert "</think>" in r1_text and task.verify(r1_text, ex)
    assert not task.verify(r1_text.replace("</think>", ""), ex)  # a box in an unfinished thinking does not count


# How a person reads a LaTeX or plain-text number (R1-style \boxed{} contents and GSM8K's "#### x").
NUMBERS = [
    ("1{,}234", "1234"),
    ("1{,}234{,}567", "1234567"),
    ("1,234", "1234"),
    ("\\$1{,}000", "1000"),
    ("\\$1,000.00", "1000"),
    ("1\\,234", "1234"),
    ("1\\;234", "1234"),
    ("1\\ 234", "1234"),
    ("1\u2009234", "1234"),  # a thin space
    ("1\u202f234\u202f567", "1234567"),  # narrow no-break spaces
    ("12\\!345", "12345"),
    ("\\frac12", "0.5"),
    ("\\frac{1}{2}", "0.5"),
    ("\\dfrac{1}{2}", "0.5"),
    ("\\tfrac{3}{4}", "0.75"),
    ("\\frac{3}4", "0.75"),
    ("\\frac 1 4", "0.25"),
    ("-\\frac{1}{2}", "-0.5"),
    ("\\frac{-3}{4}", "-0.75"),
    ("2\\frac{1}{2}", "2.5"),
    ("\\frac{10}{2}", "5"),
    ("\\frac{1{,}000}{4}", "250"),
    ("\\frac{1}{3}", repr(1 / 3)),
    ("1/3", repr(1 / 3)),
    ("\\frac{\\frac{1}{2}}{2}", "0.25"),
    ("18 \\text{ dollars}", "18"),
    ("5\\text{ cm}", "5"),
    ("5 \\text{m}^2", "5"),
    ("\\text{\\textbf{7}}", "7"),
    ("\\mathrm{12}\\,\\mathrm{kg}", "12"),
    ("50\\%", "50"),
    ("12.5%", "12.5"),
    ("90^\\circ", "90"),
    ("90^{\\circ}", "90"),
    ("\\left(5\\right)", "5"),
    ("\\displaystyle 42", "42"),
    ("\u22123", "-3"),  # a minus sign
    ("-\\$5", "-5"),
    ("3.0", "3"),
    ("3.50", "3.5"),
    (".5", "0.5"),
    ("12345678901234567890", "12345678901234567890"),  # exact: no float rounding
    ("x = 5", "5"),
    ("$72$", "72"),
    ("forty", "forty"),
    ("\\frac{1}{0}", "\\frac 1 0"),  # not a number: left as text, no ZeroDivisionError
    ("\\sqrt{2}", "\\sqrt 2"),  # another command around the one number: not that number
    ("3, 4", "3 4"),  # two numbers: not one
]


@pytest.mark.parametrize("text, value", NUMBERS, ids=[t for t, _ in NUMBERS])
def test_normalize_number_reads_latex_as_a_person_does(text, value):
    assert normalize_number(text) == value


def test_boxed_latex_numbers_are_marked_against_the_right_gold():
    completion = "thinking\n</think>\n\nSo $\\boxed{{{}}}$."
    assert R1.extract_answer(completion.format("1{,}234")) == normalize_number("1234")
    assert R1.extract_answer(completion.format("\\frac12")) == normalize_number("0.5") != normalize_number("12")
    assert R1.extract_answer(completion.format("\\dfrac{1}{2}")) == "0.5"


def test_normalize_number_never_raises_on_junk():
    import random

    rng = random.Random(0)
    alphabet = ["\\frac", "\\dfrac", "{", "}", "1", "0", ",", "\\,", "\\!", "\\text{", "$", "%", "-", ".", "/", " ",
                "^", "\\circ", "e", "9", "\\left(", "\\right)", "\\boxed{", "\u2009"]  # fmt: skip
    for _ in range(500):
        text = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 30)))
        assert isinstance(normalize_number(text), str)
    assert normalize_number("\\frac{" * 5000) == ("\\frac{" * 5000).strip()  # long: returned as it is, quickly

"""The built-in ledger task: labels agree with the chains, splits are disjoint, generation is seeded."""

import re
from collections import Counter

import pytest

from gan_cot.steps import LABELS
from gan_cot.tasks import get_task
from gan_cot.tasks.ledger import LedgerTask, execute, parse_problem

N = 400


@pytest.fixture(scope="module")
def task():
    return LedgerTask(seed=0)


@pytest.fixture(scope="module")
def train(task):
    return task.examples("train", N)


def _target(ex, counts):
    return counts[ex.meta["target"]]


def test_example_fields(train):
    for ex in train:
        assert ex.question and ex.steps and ex.answer
        assert len(ex.labels) == len(ex.steps)
        assert set(ex.labels) <= set(LABELS)
        assert ex.difficulty == len(ex.minimal_steps) >= 1


def test_minimal_chain_is_verbose_chain_without_redundant_and_wrong(train):
    for ex in train:
        kept = [s for s, lab in zip(ex.steps, ex.labels) if lab == "useful"]
        assert kept == ex.minimal_steps


def test_both_chains_reach_the_answer(task, train):
    for ex in train:
        assert _target(ex, execute(ex.minimal_steps, ex.meta["start"])) == int(ex.answer)
        assert _target(ex, execute(ex.steps, ex.meta["start"])) == int(ex.answer)
        assert task.verify(task.reference(ex), ex)
        assert task.verify(task.reference(ex, minimal=True), ex)
        assert parse_problem(ex.question).answer() == int(ex.answer)


def test_wrong_steps_are_wrong_and_then_corrected(train):
    seen = 0
    for ex in train:
        target = ex.meta["target"]
        for i, (step, lab) in enumerate(zip(ex.steps, ex.labels)):
            if lab != "wrong":
                continue
            seen += 1
            fix = ex.steps[i + 1]
            assert ex.labels[i + 1] == "useful" and fix.split("=")[0] != step.split("=")[0] or fix != step
            wrong_belief = execute(ex.steps[: i + 1], ex.meta["start"])[target]
            right_belief = execute(ex.steps[: i + 2], ex.meta["start"])[target]
            assert wrong_belief != right_belief, step  # the wrong step claims a false count
            # a chain that stops at the wrong step (answering from it) gets the answer wrong
            later = [s for s in ex.steps[i + 2 :] if s.startswith(target + " ")]
            if not later:
                assert str(wrong_belief) != ex.answer
    assert seen > 10


def test_removing_a_redundant_step_changes_nothing(train):
    kinds = Counter()
    for ex in train:
        full = execute(ex.steps, ex.meta["start"])
        for i, lab in enumerate(ex.labels):
            if lab == "redundant":
                kinds[ex.meta["kinds"][i]] += 1
                assert _target(ex, execute(ex.steps[:i] + ex.steps[i + 1 :], ex.meta["start"])) == _target(ex, full)
    assert set(kinds) == {"restate", "check", "unused", "detour"}


def test_minimal_chain_needs_its_last_step(train):
    for ex in train:
        broken = ex.minimal_steps[:-1]
        assert _target(ex, execute(broken, ex.meta["start"])) != int(ex.answer)


def test_arithmetic_of_non_wrong_steps_is_right(train):
    for ex in train:
        for step, lab in zip(ex.steps, ex.labels):
            for a, op, b, c in re.findall(r"(\d+) ([+-]) (\d+) = (\d+)", step):
                ok = (int(a) + int(b) if op == "+" else int(a) - int(b)) == int(c)
                assert ok or lab == "wrong", step


def test_difficulty_varies_and_verbose_is_longer(train):
    diffs = Counter(ex.difficulty for ex in train)
    assert set(diffs) == {1, 2, 3, 4, 5, 6}
    verbose = sum(len(ex.steps) for ex in train)
    minimal = sum(len(ex.minimal_steps) for ex in train)
    assert verbose > 2 * minimal
    # short-answer questions with long verbose chains exist: something to adapt length to
    assert any(ex.difficulty == 1 and len(ex.steps) >= 5 for ex in train)


def test_deterministic_by_seed():
    a = LedgerTask(seed=3).examples("test", 50)
    b = LedgerTask(seed=3).examples("test", 50)
    c = LedgerTask(seed=4).examples("test", 50)
    assert [(e.question, e.steps, e.labels) for e in a] == [(e.question, e.steps, e.labels) for e in b]
    assert [e.question for e in a] != [e.question for e in c]


def test_split_order_does_not_matter():
    a = LedgerTask(seed=1)
    a.examples("train", 300)
    first = [e.question for e in a.examples("test", 40)]
    assert first == [e.question for e in LedgerTask(seed=1).examples("test", 40)]


def test_splits_are_disjoint(task):
    qs = {
        s: {e.question for e in task.examples(s, 500 if s != "train" else 3000)}
        for s in ("train", "validation", "test")
    }
    assert not qs["train"] & qs["test"]
    assert not qs["train"] & qs["validation"]
    assert not qs["validation"] & qs["test"]


def test_verifier(task, train):
    ex = train[0]
    assert task.verify(f"some chain\n#### {ex.answer}", ex)
    assert not task.verify(f"some chain\n#### {int(ex.answer) + 1}", ex)
    assert not task.verify("no final answer here", ex)


def test_unknown_split_and_task_name_the_choices(task):
    with pytest.raises(ValueError, match="validation"):
        task.examples("dev")
    with pytest.raises(ValueError, match="gsm8k, ledger"):
        get_task("nope")


def test_gold_labels_of_any_chain_match_the_generator(task, train):
    for ex in train:
        assert task.gold_labels(ex, ex.steps) == ex.labels, (ex.steps, ex.labels)
        assert task.gold_labels(ex, ex.minimal_steps) == ["useful"] * len(ex.minimal_steps)


def test_gold_labels_judge_policy_style_mistakes(task, train):
    ex = next(e for e in train if e.difficulty >= 2)
    first, second = ex.minimal_steps[:2]
    garbled = first.rsplit("=", 1)[0] + "= 99"
    # a skipped update makes the next one start from a wrong count; a repeat is redundant; junk is wrong
    assert task.gold_labels(ex, [second]) == ["wrong"]
    assert task.gold_labels(ex, [first, first]) == ["useful", "redundant"]
    assert task.gold_labels(ex, [garbled, first]) == ["wrong", "useful"]
    assert task.gold_labels(ex, ["hmm let me think"]) == ["wrong"]

"""The harder built-in task: every granularity replays to the answer, gold labels of merged steps are right, splits
are disjoint, and chains get shorter as steps merge."""

from collections import Counter

import pytest

from gan_cot.discriminator.data import task_records
from gan_cot.tasks import get_task, make_task
from gan_cot.tasks.ledger_hard import (
    GRANULARITIES,
    LedgerHardTask,
    execute,
    gold_labels,
    merged_step,
    skip_step,
)

N = 300


@pytest.fixture(scope="module")
def task():
    return LedgerHardTask(seed=0)


@pytest.fixture(scope="module")
def train(task):
    return task.examples("train", N)


def _final(ex, steps):
    return execute(steps, ex.meta["start"])[ex.meta["target"]]


def test_registered_and_seeded():
    a, b = make_task("ledger-hard", seed=3), get_task("ledger-hard", seed=3)
    assert [e.question for e in a.examples("test", 20)] == [e.question for e in b.examples("test", 20)]
    assert a.examples("test", 5)[0].id.startswith("ledger-hard-3-test-")
    assert [e.question for e in make_task("ledger-hard", seed=4).examples("test", 20)] != [
        e.question for e in a.examples("test", 20)
    ]


def test_splits_are_disjoint(task):
    seen = [{e.question for e in task.examples(s, 300)} for s in ("train", "validation", "test")]
    assert not (seen[0] & seen[1]) and not (seen[0] & seen[2]) and not (seen[1] & seen[2])


def test_every_granularity_replays_to_the_same_answer(task, train):
    for ex in train:
        for g in GRANULARITIES:
            steps = task.granular_steps(ex, g)
            chain = task.reference(ex) if g == "direct" else "\n".join([*steps, f"#### {ex.answer}"])
            assert task.verify(chain, ex)
            if g == "direct":
                assert steps == []
            else:
                assert _final(ex, steps) == int(ex.answer), (g, steps)
        if ex.steps:  # the verbose chain too (a direct-style example has no steps)
            assert _final(ex, ex.steps) == int(ex.answer)


def test_merging_shortens_the_chain_and_difficulty_sets_the_step_count(task, train):
    for ex in train:
        counts = [len(task.granular_steps(ex, g)) for g in GRANULARITIES]
        assert counts[0] == len(task.problem(ex).events)  # timeline: one step per event
        assert counts[1] == ex.difficulty == len(ex.minimal_steps)
        assert counts == sorted(counts, reverse=True)
        assert counts[-2:] == [1, 0]  # line, direct
    assert {ex.difficulty for ex in train} == set(range(1, 7))


def test_generator_labels_are_the_gold_labels(task, train):
    kinds = Counter()
    for ex in train:
        assert gold_labels(task.problem(ex), ex.steps) == ex.labels
        kinds.update(ex.meta["kinds"])
        for g in GRANULARITIES:
            labels = task.gold_labels(ex, task.granular_steps(ex, g))
            assert labels.count("useful") == (ex.difficulty if g in ("timeline", "1") else len(labels))
            assert set(labels) <= ({"useful", "redundant"} if g == "timeline" else {"useful"})  # the skips
    assert {"skip", "update", "merge", "restate", "check", "slip", "line"} <= set(kinds)


def test_gold_labels_of_merged_steps():
    task = LedgerHardTask(seed=0)
    ex = next(e for e in task.examples("train", 400) if e.difficulty >= 4)
    p = task.problem(ex)
    target, deltas = p.target, [e.delta for e in p.target_events()]
    start = p.start[target]
    two = merged_step(target, start, deltas[:2])
    rest = merged_step(target, start + sum(deltas[:2]), deltas[2:])
    assert gold_labels(p, [two, rest]) == ["useful", "useful"]
    # a slip in the sum, the right events from a wrong count, events out of order: wrong
    assert gold_labels(p, [merged_step(target, start, deltas[:2], start + sum(deltas[:2]) + 1)]) == ["wrong"]
    assert gold_labels(p, [merged_step(target, start + 1, deltas[:2])]) == ["wrong"]
    if deltas[0] != deltas[1]:
        assert gold_labels(p, [merged_step(target, start, [deltas[1], deltas[0]])]) == ["wrong"]
    # skipping an event is wrong; a correct repeat of events already applied is redundant
    assert gold_labels(p, [merged_step(target, start + deltas[0], deltas[1:3])]) == ["wrong"]
    assert gold_labels(p, [two, two]) == ["useful", "redundant"]
    # a slip the next step corrects: wrong, then useful
    slip = merged_step(target, start, deltas[:2], start + sum(deltas[:2]) + 2)
    assert gold_labels(p, [slip, two, rest]) == ["wrong", "useful", "useful"]
    assert _final(ex, [slip]) != _final(ex, [slip, two])


def test_skip_steps_are_redundant_only_for_the_others_events():
    task = LedgerHardTask(seed=0)
    ex = next(e for e in task.examples("train", 400) if len(set(ev.person for ev in task.problem(e).events)) > 1)
    p = task.problem(ex)
    other = next(e for e in p.events if e.person != p.target)
    mine = p.target_events()[0]
    assert gold_labels(p, [skip_step(other)]) == ["redundant"]
    assert gold_labels(p, [skip_step(mine)]) == ["wrong"]  # the person asked about: never skipped
    made_up = type(other)(other.person, other.delta + (1 if other.delta > 0 else -1), other.verb)
    assert gold_labels(p, [skip_step(made_up)]) == ["wrong"]  # an event the question does not tell
    assert execute([skip_step(other)], p.start) == p.start  # a skip changes nobody's count


def test_wrong_steps_stay_and_are_corrected(train):
    fixed = 0
    for ex in train:
        for i, lab in enumerate(ex.labels):
            if lab == "wrong":
                assert ex.labels[i + 1] == "useful"
                assert _final(ex, ex.steps[: i + 1]) != _final(ex, ex.steps[: i + 2])
                fixed += 1
    assert fixed > 10


def test_removing_a_redundant_step_keeps_the_answer(train):
    for ex in train:
        for i, lab in enumerate(ex.labels):
            if lab == "redundant":
                assert _final(ex, ex.steps[:i] + ex.steps[i + 1 :]) == int(ex.answer)


def test_discriminator_records_are_gold_labelled_and_include_merges(task):
    records = task_records(task, "validation", 100, seed=0)
    assert records and all(gold_labels(task.problem(r), r.steps) == r.labels for r in records)
    assert any(":" in s and "," not in s for r in records for s in r.steps)  # merged steps


def test_every_granularity_works_in_the_r1_format(train):
    from gan_cot.formats import get_format

    task = LedgerHardTask(seed=0)
    task.format = get_format("r1")  # paragraph steps, </think>, the answer boxed
    for ex in train[:100]:
        for g in GRANULARITIES:
            chain = task.format.render(task.granular_steps(ex, g), ex.answer)
            assert task.verify(chain, ex)
            if g != "direct":  # a direct answer has no step to replay
                assert task.final_counts(chain, ex)[ex.meta["target"]] == int(ex.answer)
            steps = [s.text for s in task.format.steps(chain)]
            assert steps == task.granular_steps(ex, g)
            assert set(task.gold_labels(ex, steps)) <= {"useful", "redundant"}

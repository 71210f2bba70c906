"""Length rewards against hand-computed numbers, their edge cases, and the TRL reward-function adapter."""

import pytest
import torch

from gan_cot.rewards import (
    GroupRewardFunc,
    correctness_reward,
    kimi_length_reward,
    l1_prompt,
    l1_reward,
    o1_pruner_reward,
    shorterbetter_reward,
)


def close(got, want):
    assert got == pytest.approx(want, abs=1e-9)


def test_kimi():
    # min 10, max 40: lambda = 0.5 - (len - 10) / 30 = 0.5, 1/6, -1/6, -0.5; wrong answers keep only the negative part
    close(kimi_length_reward([True, False, True, False], [10, 20, 30, 40]), [0.5, 0.0, -1 / 6, -0.5])
    close(kimi_length_reward([True, True, True], [40, 10, 25]), [-0.5, 0.5, 0.0])


def test_kimi_edge_cases():
    close(kimi_length_reward([True, False, True], [7, 7, 7]), [0.0, 0.0, 0.0])  # max == min
    close(kimi_length_reward([False, False], [10, 20]), [0.0, -0.5])  # no correct answer: never positive
    close(kimi_length_reward(torch.tensor([True, False]), torch.tensor([3, 9])), [0.5, -0.5])  # tensors too


def test_o1_pruner_group_means():
    # mean_len 50, mean_acc 0.75, lambda 2: (50/len - 1) + 2 (correct - 0.75)
    close(o1_pruner_reward([True, False, True, True], [50, 100, 25, 25]), [0.5, -2.0, 1.5, 1.5])


def test_o1_pruner_reference_means():
    # reference (base) means: length 100, accuracy 0.5, lambda 1
    got = o1_pruner_reward([True, False, True], [50, 100, 25], mean_len=100, mean_acc=0.5, lam=1.0)
    close(got, [1.5, -0.5, 3.5])


def test_o1_pruner_edge_cases():
    close(o1_pruner_reward([True, True], [30, 30]), [0.0, 0.0])  # all alike: nothing to prefer
    close(o1_pruner_reward([False, False], [10, 30]), [1.0, -1 / 3])  # no correct answer: mean_acc 0, length only
    assert o1_pruner_reward([True, True], [0, 10])[0] == pytest.approx(4.0)  # empty completion counts as 1 token


def test_shorterbetter():
    # shortest correct length 30: 2 correct - 0.001 |len - 30|
    close(shorterbetter_reward([False, True, True, False], [10, 30, 50, 70]), [-0.02, 2.0, 1.98, -0.04])
    close(shorterbetter_reward([True, False], [20, 10], alpha=1.0, beta=0.1), [1.0, -1.0])


def test_shorterbetter_no_correct_answer():
    close(shorterbetter_reward([False, False], [10, 30]), [0.0, -0.02])  # default: the group's shortest length
    close(shorterbetter_reward([False, False], [10, 30], no_correct="mean"), [-0.01, -0.01])
    close(shorterbetter_reward([True, True, True], [12, 12, 12]), [2.0, 2.0, 2.0])
    with pytest.raises(ValueError, match="no_correct"):
        shorterbetter_reward([False], [3], no_correct="longest")


def test_l1():
    assert l1_prompt("How many pens does Ann have?", 40) == "How many pens does Ann have? Think for 40 tokens."
    close(l1_reward([True, False], [50, 40], budget=40), [1 - 0.003, 0.0])
    close(l1_reward([True, True], [20, 60], budget=40, a=0.01), [0.8, 0.8])


def test_bad_groups():
    with pytest.raises(ValueError, match="one length per completion"):
        kimi_length_reward([True], [1, 2])
    with pytest.raises(ValueError, match="at least one"):
        correctness_reward([], [])


def _batch():
    """Two groups of two: prompt p1 (answer 5) and p2 (answer 7); eos id 0 ends some completions."""
    prompts = ["p1", "p1", "p2", "p2"]
    completions = ["a\n#### 5", "a\nb\nc\n#### 4", "x\n#### 7", "x\ny\n#### 7"]
    completion_ids = [[5, 6, 0], [5, 6, 7, 8, 9, 0], [5, 6], [5, 6, 7, 8]]  # lengths 2, 5, 2, 4 without eos
    answer = ["5", "5", "7", "7"]
    return prompts, completions, completion_ids, answer


def _is_correct(text, row):
    return text.rsplit("#### ", 1)[-1] == row["answer"]


def test_adapter_scores_each_group():
    prompts, completions, ids, answer = _batch()
    logged = {}
    fn = GroupRewardFunc("shorterbetter", is_correct=_is_correct, group_size=2, stop_ids=[0], name="sb")
    got = fn(
        prompts=prompts, completions=completions, completion_ids=ids, answer=answer,
        trainer_state=object(), log_metric=logged.__setitem__, log_extra=lambda *a: None,
    )  # fmt: skip
    # group 1: correct [T, F], lengths [2, 5] -> SOL 2; group 2: correct [T, T], lengths [2, 4] -> SOL 2
    close(got, [2.0, -0.003, 2.0, 1.998])
    assert fn.__name__ == "sb" and fn.completions_seen == 4 and fn.correct_seen == 3
    assert logged == {"sb/accuracy": 0.75, "sb/mean_tokens": 3.25}


def test_adapter_group_columns_and_fixed_arguments():
    prompts, completions, ids, answer = _batch()
    fn = GroupRewardFunc("l1", is_correct=_is_correct, group_size=2, stop_ids=[0], columns={"budget": "b"}, a=0.1)
    got = fn(prompts=prompts, completions=completions, completion_ids=ids, answer=answer, b=[3, 3, 4, 4])
    close(got, [1 - 0.1, -0.2, 1 - 0.2, 1.0])


def test_adapter_conversational_completions():
    prompts, completions, ids, answer = _batch()
    chat = [[{"role": "assistant", "content": c}] for c in completions]
    fn = GroupRewardFunc("correct", is_correct=_is_correct, group_size=2)
    assert fn(prompts=prompts, completions=chat, completion_ids=ids, answer=answer) == [1.0, 0.0, 1.0, 1.0]


def test_adapter_refuses_misaligned_groups():
    prompts, completions, ids, answer = _batch()
    with pytest.raises(ValueError, match="num_generations"):
        GroupRewardFunc("kimi", is_correct=_is_correct, group_size=3)(
            prompts=prompts[:3], completions=completions[:3], completion_ids=ids[:3], answer=answer[:3]
        )
    with pytest.raises(ValueError, match="do not share one prompt"):
        GroupRewardFunc("kimi", is_correct=_is_correct, group_size=4)(
            prompts=prompts, completions=completions, completion_ids=ids, answer=answer
        )
    with pytest.raises(ValueError, match="unknown reward"):
        GroupRewardFunc("shortest", is_correct=_is_correct, group_size=2)

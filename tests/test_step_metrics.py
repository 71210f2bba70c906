"""The discriminator's step metrics: the macro F1 over the classes present is not held at 1/3 by absent classes."""

import pytest

from gan_cot.discriminator.train import step_metrics


def test_one_present_class_scores_its_own_f1_not_a_third():
    gold = ["useful"] * 50
    pred = ["useful"] * 48 + ["redundant"] * 2  # 96% right
    m = step_metrics(gold, pred)
    assert m["accuracy"] == pytest.approx(0.96) and m["classes_present"] == 1
    assert m["macro_f1"] < 0.34  # the three-class mean: useful's F1 over three, whatever the verdicts
    assert m["macro_f1_present"] == pytest.approx(2 * 0.96 / 1.96)  # useful: precision 1, recall 0.96


def test_two_present_classes_average_both():
    m = step_metrics(["useful", "useful", "wrong", "wrong"], ["useful", "wrong", "wrong", "wrong"])
    assert m["classes_present"] == 2
    assert m["macro_f1_present"] == pytest.approx((2 / 3 + 0.8) / 2)

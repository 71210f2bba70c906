"""Automatic step labels: the decision rule on hand-made rollout statistics, and prefixes."""

from gan_cot.discriminator.labels import AutoLabelConfig, labels_from_rollouts, prefixes


def test_prefixes_end_with_the_separator():
    assert prefixes(["a", "b"], "\n") == ["", "a\n", "a\nb\n"]


def test_decision_rule():
    cfg = AutoLabelConfig(drop=0.5, progress=0.5)
    # step 0: work falls by its own length (useful); step 1: nothing changes (redundant);
    # step 2: success collapses (wrong); step 3: success recovers (useful: a correction)
    success = [1.0, 1.0, 1.0, 0.0, 1.0]
    remaining = [20.0, 12.0, 12.0, 12.0, 4.0]
    labels, soft = labels_from_rollouts(success, remaining, [8, 5, 8, 8], cfg)
    assert labels == ["useful", "redundant", "wrong", "useful"]
    assert soft == [0.0, 0.0, 1.0, 0.0]


def test_small_changes_stay_within_tolerance():
    cfg = AutoLabelConfig(drop=0.5, progress=0.5)
    labels, soft = labels_from_rollouts([1.0, 0.75], [10.0, 8.0], [6], cfg)
    assert labels == ["redundant"] and soft == [0.25]

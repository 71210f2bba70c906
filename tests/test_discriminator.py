"""The step discriminator: scoring, training on gold labels, checkpoint round trip, and refusals."""

import json

import pytest
import torch

from gan_cot.discriminator.data import gsm8k_records, ledger_records
from gan_cot.discriminator.model import CARD_NAME, Discriminator, DiscriminatorError
from gan_cot.discriminator.train import discriminator_loss, step_metrics, train_discriminator
from gan_cot.steps import LABELS
from gan_cot.tasks.ledger import LedgerTask


@pytest.fixture(scope="module")
def records():
    return ledger_records(LedgerTask(seed=0), "train", 200, seed=0)


@pytest.fixture()
def disc(tiny_model_dir):
    return Discriminator.from_backbone(str(tiny_model_dir))


def test_score_gives_one_distribution_per_step(disc, records):
    probs = disc.score([r.question for r in records[:5]], [r.steps for r in records[:5]])
    for p, r in zip(probs, records[:5]):
        assert p.shape == (len(r.steps), 3)
        assert torch.allclose(p.sum(-1), torch.ones(len(r.steps)), atol=1e-5)


def test_step_end_positions_point_at_each_steps_last_token(disc, records):
    r = records[0]
    ids, positions = disc.encode(r.question, r.steps)
    assert len(positions) == len(r.steps)
    for pos, step in zip(positions, r.steps):
        assert disc.tokenizer.decode(ids[: pos + 1]).endswith(step)


def test_training_lowers_the_loss_and_beats_chance(disc, records):
    before, _ = discriminator_loss(disc, records[:64])
    train_discriminator(disc, records, steps=60, batch_size=16, lr=3e-3, show_progress=False)
    after, _ = discriminator_loss(disc, records[:64])
    assert after.item() < 0.9 * before.item()
    pred = disc.predict([r.question for r in records[:50]], [r.steps for r in records[:50]])
    m = step_metrics([lab for r in records[:50] for lab in r.labels], [lab for p in pred for lab in p])
    majority = max(m[lab]["support"] for lab in LABELS) / m["n_steps"]
    assert m["accuracy"] > majority


def test_save_and_load_give_identical_scores(disc, records, tmp_path):
    path = disc.save_pretrained(tmp_path / "d")
    card = json.loads((path / CARD_NAME).read_text())
    assert card["label_map"] == {lab: lab for lab in LABELS} and card["separator"] == "\n"
    again = Discriminator.from_pretrained(str(path))
    q, s = [r.question for r in records[:4]], [r.steps for r in records[:4]]
    for a, b in zip(disc.score(q, s), again.score(q, s)):
        assert torch.equal(a, b)


def test_hub_style_checkpoint_without_card_needs_a_label_map(disc, tmp_path):
    path = disc.save_pretrained(tmp_path / "prm")
    (path / CARD_NAME).unlink()
    with pytest.raises(DiscriminatorError, match="no discriminator_card.json; pass the label mapping"):
        Discriminator.from_pretrained(str(path))
    # the model's own label names are useful/redundant/wrong; map them in a shuffled order
    mapping = {"useful": "wrong", "redundant": "useful", "wrong": "redundant"}
    d = Discriminator.from_pretrained(str(path), label_map=mapping)
    assert d.class_ids == [1, 2, 0]


def test_label_map_must_cover_three_classes(disc, tmp_path):
    path = disc.save_pretrained(tmp_path / "d")
    card = json.loads((path / CARD_NAME).read_text())
    card["label_map"] = {"useful": "useful", "redundant": "useful", "wrong": "wrong"}
    (path / CARD_NAME).write_text(json.dumps(card))
    with pytest.raises(DiscriminatorError, match=r"does not cover \['redundant'\]"):
        Discriminator.from_pretrained(str(path))


def test_tokenizer_that_cannot_load_is_named(disc, tmp_path):
    path = disc.save_pretrained(tmp_path / "d")
    (path / "tokenizer.json").write_text("{not json")
    with pytest.raises(DiscriminatorError, match="tokenizer cannot be loaded"):
        Discriminator.from_pretrained(str(path))


def test_remote_code_checkpoint_is_refused(disc, tmp_path):
    from gan_cot.discriminator.registry import CheckpointError

    path = disc.save_pretrained(tmp_path / "d")
    cfg = json.loads((path / "config.json").read_text())
    cfg["auto_map"] = {"AutoModelForTokenClassification": "modeling_x.Model"}
    (path / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(CheckpointError, match="auto_map"):
        Discriminator.from_pretrained(str(path))


def test_gsm8k_perturbations_are_labeled(tmp_path):
    from pathlib import Path

    from gan_cot.tasks.gsm8k import Gsm8kTask

    fixture = Path(__file__).parent / "fixtures" / "gsm8k_small.jsonl"
    recs = gsm8k_records(Gsm8kTask(path=str(fixture)), "test", None, seed=1, perturb=1.0)
    labels = [lab for r in recs for lab in r.labels]
    assert {"useful", "redundant", "wrong"} <= set(labels) or {"useful", "redundant"} <= set(labels)
    for r in recs:
        assert len(r.steps) == len(r.labels)

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
    enc = disc.encode(r.question, r.steps)
    ids, positions = enc.ids, enc.ends
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
    (path / CARD_NAME).unlink()  # a token classifier without a card: TRL's PRM layout
    with pytest.raises(
        DiscriminatorError, match=r"no label map; the model's labels are \['useful', 'redundant', 'wrong'\]"
    ):
        Discriminator.from_pretrained(str(path))
    # the model's own label names are useful/redundant/wrong; map them in a shuffled order
    mapping = {"useful": "wrong", "redundant": "useful", "wrong": "redundant"}
    d = Discriminator.from_pretrained(str(path), label_map=mapping)
    assert d.index == [1, 2, 0] and d.card.layout == "trl_prm"


def test_label_map_maps_each_model_label_once(disc, tmp_path):
    path = disc.save_pretrained(tmp_path / "d")
    card = json.loads((path / CARD_NAME).read_text())
    card["label_map"] = {"useful": "useful", "redundant": "useful", "wrong": "wrong"}
    (path / CARD_NAME).write_text(json.dumps(card))
    with pytest.raises(DiscriminatorError, match=r"maps several model labels to \['useful'\]"):
        Discriminator.from_pretrained(str(path))
    card["label_map"] = {"useful": "useful", "wrong": "wrong"}  # a two-way map leaves a model label out
    (path / CARD_NAME).write_text(json.dumps(card))
    with pytest.raises(DiscriminatorError, match=r"no class for the model labels \['redundant'\]"):
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
    recs = gsm8k_records(Gsm8kTask(path=str(fixture), validation_size=0), "train", None, seed=1, perturb=1.0)
    labels = [lab for r in recs for lab in r.labels]
    assert {"useful", "redundant", "wrong"} <= set(labels) or {"useful", "redundant"} <= set(labels)
    for r in recs:
        assert len(r.steps) == len(r.labels)


def test_calculator_flagged_steps_keep_wrong_for_every_seed():
    from gan_cot.tasks.gsm8k import parse_record

    muffins = parse_record({"question": "How much does she make selling muffins?",
                            "answer": "She bakes 3 * 4 = <<3*4=13>>13 muffins.\nShe sells them for 13 * 2 = <<13*2=26>>26.\n"
                                      "#### 26"}, id="m")  # fmt: skip
    assert muffins.meta["calc_ok"] == [False, True]

    class OneExample:
        name = "gsm8k"

        def examples(self, split, n=None):
            return [muffins]

    for seed in range(40):
        (rec,) = gsm8k_records(OneExample(), "train", None, seed=seed, perturb=1.0)
        first = rec.steps.index(muffins.steps[0])
        assert rec.labels[first] == "wrong", (seed, rec.steps, rec.labels)
        assert len(rec.steps) == len(rec.labels) and {"redundant", "wrong"} & set(rec.labels[1:] + [rec.labels[0]])


def test_checks_mark_false_equations_wrong_and_repeats_redundant(disc):
    from gan_cot.discriminator.checks import false_equation

    assert false_equation("Natalia sold 48/2 = 27 clips in May.") and false_equation("2 * 23 - 4 = 46 - 4 = 43")
    for fine in ["Natalia sold 48/2 = 24 clips.", "10/3 = 3.33 each", "2 * 23 - 4 = 46 - 4 = 42", "So far we have 24.",
                 "There are 60 students x 2/3 = 40 students", "8 x 1 1/2 = 12 rolls", "1/5 = 20%"]:  # fmt: skip
        assert not false_equation(fine), fine
    assert false_equation("200 GB * 40% = 79 GB") and false_equation("$20/hour * 35 hours/week = $698/week")
    assert not false_equation("$20/hour * 35 hours/week = $700/week") and not false_equation("3 / 2 = 2 1/2 hours")
    steps = [
        "She sold 48/2 = 24 clips.",
        "She sold 48/2 = 27 clips.",
        "So far we have 24.",
        "she sold 48/2 = 24  clips.",
    ]
    plain = disc.score(["How many clips?"], [steps])[0]
    disc.card.checks = ["arithmetic"]
    checked = disc.score(["How many clips?"], [steps])[0]
    assert checked[1].tolist() == [0.0, 0.0, 1.0]
    assert torch.equal(checked[[0, 2, 3]], plain[[0, 2, 3]])  # steps without a false equation keep the model's scores
    disc.card.checks = ["arithmetic", "repeat"]
    assert disc.score(["How many clips?"], [steps])[0][3].tolist() == [0.0, 1.0, 0.0]  # repeats step 0


def test_shrunk_backbone_tokenizes_its_text_as_before(tmp_path):
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, trainers
    from transformers import AutoTokenizer, BertConfig, BertModel, PreTrainedTokenizerFast

    from gan_cot.discriminator.shrink import shrink_backbone

    text = ["Tom has 12 apples and buys 3 bags of 4 apples.", "He has 12 + 12 = 24 apples.", "Zebras graze quietly."]
    tk = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tk.normalizer, tk.pre_tokenizer = normalizers.BertNormalizer(lowercase=True), pre_tokenizers.BertPreTokenizer()
    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    tk.train_from_iterator(text * 10, trainers.WordPieceTrainer(vocab_size=400, special_tokens=specials))
    tok = PreTrainedTokenizerFast(tokenizer_object=tk, unk_token="[UNK]", pad_token="[PAD]")
    source = tmp_path / "bert"
    BertModel(BertConfig(vocab_size=len(tok), hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
                         intermediate_size=32)).save_pretrained(source)  # fmt: skip
    tok.save_pretrained(source)
    sizes = shrink_backbone(str(source), tmp_path / "small", layers=1, texts=text[:2])
    assert sizes["after"]["layers"] == 1 and sizes["after"]["vocab"] < sizes["before"]["vocab"]
    small = AutoTokenizer.from_pretrained(tmp_path / "small")
    assert all(small.tokenize(t) == tok.tokenize(t) for t in text[:2])
    assert "[UNK]" not in small.tokenize(text[2])  # other text still tokenizes, into smaller pieces
    old, new = BertModel.from_pretrained(source), BertModel.from_pretrained(tmp_path / "small")
    i_old, i_new = tok.convert_tokens_to_ids("apples"), small.convert_tokens_to_ids("apples")
    assert torch.equal(old.embeddings.word_embeddings.weight[i_old], new.embeddings.word_embeddings.weight[i_new])

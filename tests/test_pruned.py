"""sft.source=pruned: the discriminator's redundant and wrong steps are cut out of a correct chain."""

from pathlib import Path

import torch

from gan_cot.models import load_tokenizer
from gan_cot.tasks.ledger import LedgerTask
from gan_cot.trainer import AdversarialTrainer, Sample


def make_trainer(tiny_model_dir):
    from gan_cot.adv_config import AdvConfig
    from gan_cot.config import load_config

    trainer = AdversarialTrainer.__new__(AdversarialTrainer)  # only the parts pruned_ids reads
    trainer.cfg = load_config(AdvConfig, Path(__file__).resolve().parents[1] / "configs" / "default.yaml")
    trainer.tokenizer = load_tokenizer(str(tiny_model_dir))
    trainer.task = LedgerTask(seed=0)
    trainer.train_examples = trainer.task.examples("train", 4)
    return trainer


def sample_for(trainer, steps, labels, answer, index=0):
    text = "\n".join([*steps, f"#### {answer}"])
    rows = {"useful": [0.9, 0.05, 0.05], "redundant": [0.1, 0.8, 0.1], "wrong": [0.1, 0.1, 0.8]}
    probs = torch.tensor([rows[lab] for lab in labels])
    return Sample(index, [], [], text, steps, [], True, probs=probs)


def test_pruned_keeps_only_useful_steps_and_the_answer(tiny_model_dir):
    trainer = make_trainer(tiny_model_dir)
    i, ex = next((i, e) for i, e in enumerate(trainer.train_examples) if "redundant" in e.labels)
    s = sample_for(trainer, list(ex.steps), list(ex.labels), ex.answer, index=i)
    ids = trainer.pruned_ids(s)
    text = trainer.tokenizer.decode(ids, skip_special_tokens=True)
    assert text == "\n".join([*ex.minimal_steps, f"#### {ex.answer}"])  # the minimal chain, exactly
    assert ids[-1] == trainer.tokenizer.eos_token_id
    assert len(ids) < len(trainer.tokenizer(s.text)["input_ids"])


def test_pruned_refuses_a_chain_whose_answer_no_longer_verifies(tiny_model_dir):
    trainer = make_trainer(tiny_model_dir)
    ex = trainer.train_examples[0]
    wrong_answer = str(int(ex.answer) + 1)
    s = sample_for(trainer, ["a", "b"], ["useful", "redundant"], wrong_answer)
    assert trainer.pruned_ids(s) is None


def test_pruned_leaves_an_all_useful_chain_alone(tiny_model_dir):
    trainer = make_trainer(tiny_model_dir)
    s = sample_for(trainer, ["a", "b"], ["useful", "useful"], trainer.train_examples[0].answer)
    assert trainer.pruned_ids(s) is None


class FixedScores:
    """Stands in for the discriminator: every step judged redundant (what score() reads: .score only)."""

    def score(self, questions, chains):
        return [torch.tensor([[0.1, 0.8, 0.1]] * len(steps)) for steps in chains]


def scored(mode, source):
    from gan_cot.adv_config import AdvConfig
    from gan_cot.config import load_config
    from gan_cot.credit import CreditWeights

    trainer = AdversarialTrainer.__new__(AdversarialTrainer)
    trainer.cfg = load_config(AdvConfig, "configs/default.yaml", [f"credit.mode={mode}", f"sft.source={source}"])
    trainer.task = LedgerTask(seed=0)
    trainer.train_examples = trainer.task.examples("train", 1)
    trainer.disc, trainer.gate = FixedScores(), None
    trainer.weights = CreditWeights(0.2, -1.0, -1.0)
    samples = [
        Sample(0, [], list(range(n)), "a\nb\n#### 1", ["a", "b"], [(0, 2), (2, 4)], ok)
        for n, ok in ((6, True), (8, True), (6, False), (9, False))
    ]
    trainer.score(samples)
    return samples


def test_length_ablation_gets_no_step_credit_but_still_prunes(monkeypatch):
    monkeypatch.chdir(__import__("pathlib").Path(__file__).resolve().parents[1])
    with_steps = scored("discriminator", "pruned")
    assert with_steps[0].advantages[0] < with_steps[0].advantages[-1]  # a redundant step's tokens lose credit
    ablation = scored("length", "pruned")
    assert all(s.probs is not None for s in ablation)  # scored: pruned SFT targets need the judgement
    for s in ablation:  # but the credit is the sequence term only, the same on every token
        assert torch.allclose(s.advantages, s.advantages[0].expand_as(s.advantages))
    assert all(s.probs is None for s in scored("length", "shortest_correct"))  # no discriminator at all

"""sft.source=pruned: the discriminator's redundant and wrong steps are cut out of a correct chain."""

import torch

from gan_cot.models import load_tokenizer
from gan_cot.tasks.ledger import LedgerTask
from gan_cot.trainer import AdversarialTrainer, Sample


def make_trainer(tiny_model_dir):
    trainer = AdversarialTrainer.__new__(AdversarialTrainer)  # only the parts pruned_ids reads
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

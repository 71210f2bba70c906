"""sft.source=pruned: the discriminator's redundant and wrong steps are cut out of a correct chain."""

from pathlib import Path

import torch

from gan_cot.config_loader import load_config
from gan_cot.models import load_tokenizer
from gan_cot.pool import SFTPool
from gan_cot.rollout import Chain, RolloutBatch
from gan_cot.tasks.ledger import LedgerTask
from gan_cot.trainer_config import AdversarialConfig

ROOT = Path(__file__).resolve().parents[1]
ROWS = {"useful": [0.9, 0.05, 0.05], "redundant": [0.1, 0.8, 0.1], "wrong": [0.1, 0.1, 0.8]}


def make_pool(tiny_model_dir):
    task = LedgerTask(seed=0)
    cfg = load_config(AdversarialConfig, ROOT / "configs" / "default.yaml")
    return SFTPool(cfg, load_tokenizer(str(tiny_model_dir)), task, task.examples("train", 4))


def chain_for(steps, answer, index=0, correct=True, n_tokens=0):
    text = "\n".join([*steps, f"#### {answer}"])
    return Chain(index, [], list(range(n_tokens)), text, steps, [], correct, True)


def probs_for(labels):
    return torch.tensor([ROWS[lab] for lab in labels])


def test_pruned_keeps_only_useful_steps_and_the_answer(tiny_model_dir):
    pool = make_pool(tiny_model_dir)
    i, ex = next((i, e) for i, e in enumerate(pool.examples) if "redundant" in e.labels)
    c = chain_for(list(ex.steps), ex.answer, index=i)
    ids = pool.pruned_ids(c, probs_for(ex.labels))
    text = pool.tokenizer.decode(ids, skip_special_tokens=True)
    assert text == "\n".join([*ex.minimal_steps, f"#### {ex.answer}"])  # the minimal chain, exactly
    assert ids[-1] == pool.tokenizer.eos_token_id
    assert len(ids) < len(pool.tokenizer(c.text)["input_ids"])


def test_pruned_refuses_a_chain_whose_answer_no_longer_verifies(tiny_model_dir):
    pool = make_pool(tiny_model_dir)
    wrong_answer = str(int(pool.examples[0].answer) + 1)
    assert pool.pruned_ids(chain_for(["a", "b"], wrong_answer), probs_for(["useful", "redundant"])) is None


def test_pruned_leaves_an_all_useful_chain_alone(tiny_model_dir):
    pool = make_pool(tiny_model_dir)
    c = chain_for(["a", "b"], pool.examples[0].answer)
    assert pool.pruned_ids(c, probs_for(["useful", "useful"])) is None


def test_the_pool_keeps_each_questions_shortest_correct_chain(tiny_model_dir):
    pool = make_pool(tiny_model_dir)
    ex = pool.examples[0]
    chains = [chain_for(["a"] * 3, ex.answer, n_tokens=9), chain_for(["a"], ex.answer, n_tokens=5),
              chain_for(["a"], ex.answer, correct=False, n_tokens=2)]  # fmt: skip
    scores = type("S", (), {"probs": [None] * 3})()
    pool.offer(RolloutBatch(chains, 3), scores)
    assert pool.targets == {0: list(range(5))}  # the shortest correct one; the shorter wrong one never


class FixedScores:
    """Stands in for the discriminator: every step judged redundant (what score() reads: .score only)."""

    def score(self, questions, chains):
        return [torch.tensor([[0.1, 0.8, 0.1]] * len(steps)) for steps in chains]


def scored(mode, source):
    from gan_cot.gate import NoGate
    from gan_cot.round_context import RoundContext
    from gan_cot.scoring import score

    cfg = load_config(
        AdversarialConfig, ROOT / "configs" / "default.yaml", [f"credit.mode={mode}", f"sft.source={source}"]
    )
    task = LedgerTask(seed=0)
    chains = [
        Chain(0, [], list(range(n)), "a\nb\n#### 1", ["a", "b"], [(0, 2), (2, 4)], ok, True)
        for n, ok in ((6, True), (8, True), (6, False), (9, False))
    ]
    ctx = RoundContext(None, None, task, task.examples("train", 1), NoGate())
    return score(ctx, RolloutBatch(chains, 4), FixedScores(), cfg.credit, prune_targets=source == "pruned")


def test_length_ablation_gets_no_step_credit_but_still_prunes():
    with_steps = scored("discriminator", "pruned")
    assert with_steps.advantages[0][0] < with_steps.advantages[0][-1]  # a redundant step's tokens lose credit
    ablation = scored("length", "pruned")
    assert all(p is not None for p in ablation.probs)  # scored: pruned SFT targets need the judgement
    for adv in ablation.advantages:  # but the credit is the sequence term only, the same on every token
        assert torch.allclose(adv, adv[0].expand_as(adv))
    assert all(p is None for p in scored("length", "shortest_correct").probs)  # no discriminator at all

"""The chain-rewriting baselines (C3oT, TokenSkip, implicit CoT, System 2 distillation, step skipping): what each
changes, on tiny models built here, plus one end-to-end run of each through ``gan_cot_lab.baselines.run``."""

import math
import random
from pathlib import Path

import pytest
import torch

from gan_cot.config_loader import load_config
from gan_cot.generation import Completion
from gan_cot.tasks.base import Example, TaskBase
from gan_cot_lab.baselines.config import BaselineConfig


class Toy(TaskBase):
    """Questions whose reference chain is five filler steps and whose shortest granularity is no step at all."""

    name = "toy"

    def examples(self, split, n=None):
        offset = 0 if split == "train" else 1000
        return [
            Example(
                id=f"{split}-{i}",
                question=f"Ann has {(i + offset) % 7} pens. How many pens does Ann have?",
                steps=["so Ann has pens"] * 5,
                answer=str((i + offset) % 7),
                minimal_steps=[],
            )  # fmt: skip
            for i in range(16 if n is None else n)
        ]


@pytest.fixture(scope="module")
def learnable_dir(tmp_path_factory, tiny_tokenizer):
    """A tiny untrained policy an adapter can move in a few steps. At the usual initialisation (std 0.02, the output
    layer tied to the embeddings) every logit sits near zero and a LoRA adapter cannot spread them; scaled
    embeddings give it room."""
    from gan_cot.models import build_tiny_model, save_pretrained

    model, tok = build_tiny_model(tiny_tokenizer, hidden_size=32, layers=2, heads=2)
    with torch.no_grad():
        model.model.embed_tokens.weight.mul_(25)
    return save_pretrained(model, tok, tmp_path_factory.mktemp("models") / "learnable")


def toy_context(model_dir, tmp_path, method, *overrides, task=None):
    from gan_cot.models import load_model, load_tokenizer
    from gan_cot_lab.baselines.common import Context

    cfg = load_config(
        BaselineConfig, None,
        [f"method={method}", f"model={model_dir}", "train_questions=16", "train.steps=40", "train.batch_size=8",
         "train.lr=1e-2", "train.warmup=0", "train.logging_steps=10", "eval.max_think_tokens=24", "progress=false",
         *overrides],
    )  # fmt: skip
    tok = load_tokenizer(str(model_dir))
    model = load_model(str(model_dir), dtype=torch.float32)
    return Context(cfg, task or Toy(), tok, model, str(model_dir), tmp_path, log=lambda m: None)


def completion_logprob(model, tokenizer, question: str, completion: str) -> float:
    from gan_cot.models import render_prompt
    from gan_cot.sft import collate, encode_pairs

    batch = collate(encode_pairs(tokenizer, [render_prompt(tokenizer, question)], [completion]), 0)
    with torch.no_grad():
        logits = model(input_ids=batch["input_ids"]).logits[0, :-1].log_softmax(-1)
    labels = batch["labels"][0, 1:]
    keep = labels != -100
    return float(logits[keep].gather(-1, labels[keep].unsqueeze(-1)).sum())


# -- C3oT ------------------------------------------------------------------------------------------------


def test_c3ot_control_tokens_are_words_of_the_vocabulary_and_steer_the_chain(learnable_dir, tmp_path):
    from gan_cot_lab.baselines import c3ot

    overrides = ("c3ot.short=minimal", "c3ot.report_n=4", "train.batch_size=32", "train.steps=100", "train.lr=2e-2")
    ctx = toy_context(learnable_dir, tmp_path, "c3ot", *overrides)
    outcome = c3ot.train(ctx)
    tok, model = ctx.tokenizer, outcome.model
    for token in (c3ot.LONG, c3ot.SHORT):
        (token_id,) = tok(token, add_special_tokens=False)["input_ids"]  # one token, never split
        assert token_id >= 500 and token_id < model.get_input_embeddings().weight.shape[0]
    ex = Toy().examples("test", 1)[0]
    question = ex.question
    long, short = Toy().reference(ex), Toy().reference(ex, minimal=True)
    # each control token makes its own kind of chain the more likely one
    for chain, mine, other in ((short, c3ot.SHORT, c3ot.LONG), (long, c3ot.LONG, c3ot.SHORT)):
        assert completion_logprob(model, tok, f"{question} {mine}", chain) > completion_logprob(
            model, tok, f"{question} {other}", chain
        )
    # and in generation: [SHORT] answers at once, [LONG] writes the filler steps first
    assert outcome.metrics["short_mean_tokens"] < outcome.metrics["long_mean_tokens"]
    assert outcome.eval_task.prompt(ex) == f"{question} {c3ot.SHORT}"
    assert outcome.metrics["train_short_tokens"] < outcome.metrics["train_long_tokens"]
    assert {"long_accuracy", "long_mean_tokens", "short_accuracy", "short_mean_tokens"} <= set(outcome.metrics)
    assert (tmp_path / "model" / "model.safetensors").exists()  # merged: the adapter alone needs the larger vocabulary


# -- TokenSkip -------------------------------------------------------------------------------------------


def test_tokenskip_keeps_the_most_important_tokens_at_the_ratio():
    from gan_cot_lab.baselines.tokenskip import compress

    chain = list(range(100, 110))
    scores = [0.0, 5.0, 1.0, 5.0, 3.0, 0.5, 4.0, 2.0, 0.0, 9.0]
    assert compress(chain, scores, 0.5) == [101, 103, 104, 106, 109]  # the five highest, in their order
    assert compress(chain, scores, 0.3) == [101, 103, 109]
    assert compress(chain, scores, 1.0) == chain
    assert compress(chain, [0.0] * 10, 0.2) == [100, 101]  # ties: the earlier tokens stay
    for ratio in (0.5, 0.6, 0.7, 0.8, 0.9):
        assert len(compress(list(range(37)), [random.random() for _ in range(37)], ratio)) == round(ratio * 37)


@pytest.mark.parametrize("how", ["answer_drop", "surprisal"])
def test_tokenskip_importance_comes_from_the_policy(tiny_model_dir, how):
    """answer_drop: the answer's log-probability with the whole chain minus without the token; surprisal: the token's
    own -log p. Both checked against separate forward passes, and independent of how the sequences are batched."""
    from gan_cot.models import load_model
    from gan_cot_lab.baselines.tokenskip import importance

    model = load_model(str(tiny_model_dir), dtype=torch.float32)
    prompt, chain, rest = [5, 6, 7], [20, 21, 22, 23, 24], [30, 31]

    def logp(seq, start):
        with torch.no_grad():
            out = model(input_ids=torch.tensor([seq])).logits[0].log_softmax(-1)
        return [float(out[t - 1, seq[t]]) for t in range(start, len(seq))]

    scores = importance(model, prompt, chain, rest, how, pad=1, batch_size=64)
    if how == "answer_drop":
        full = sum(logp(prompt + chain + rest, 8))
        expected = [full - sum(logp(prompt + chain[:i] + chain[i + 1 :] + rest, 7)) for i in range(len(chain))]
    else:
        expected = [-x for x in logp(prompt + chain + rest, 3)[: len(chain)]]
    assert scores == pytest.approx(expected, abs=1e-4)
    assert importance(model, prompt, chain, rest, how, pad=1, batch_size=2) == pytest.approx(scores, abs=1e-4)


# -- implicit CoT ----------------------------------------------------------------------------------------


def test_implicit_removal_schedule_and_smoothing():
    from gan_cot_lab.baselines.implicit_cot import removed, smoothing_offset

    for n in (1, 7, 40):
        cuts = [removed(n, s, 4) for s in range(5)]
        assert cuts[0] == 0 and cuts[-1] == n and cuts == sorted(cuts)
    rng = random.Random(0)
    draws = [smoothing_offset(rng, 1.0) for _ in range(20000)]
    assert sum(d == 0 for d in draws) / len(draws) == pytest.approx(1 - math.exp(-1), abs=0.02)  # P(o) ~ exp(-o)
    assert sum(draws) / len(draws) == pytest.approx(math.exp(-1) / (1 - math.exp(-1)), abs=0.04)
    assert smoothing_offset(rng, None) == 0


def test_implicit_cot_chain_shrinks_by_stage_with_a_fresh_optimizer_each(learnable_dir, tmp_path, monkeypatch):
    from gan_cot_lab.baselines import implicit_cot

    made = []

    class CountingAdamW(torch.optim.AdamW):
        def __init__(self, *args, **kwargs):
            made.append(self)
            super().__init__(*args, **kwargs)

    monkeypatch.setattr(torch.optim, "AdamW", CountingAdamW)
    overrides = ("implicit.stages=2", "implicit.report_n=4", "train.batch_size=16", "train.steps=60", "train.lr=2e-2")
    ctx = toy_context(learnable_dir, tmp_path, "implicit-cot", *overrides)
    # the training chains of each stage, without smoothing: the first half of the tokens gone, then all of them
    ctx.cfg.implicit.smoothing = None
    task, tok = ctx.task, ctx.tokenizer
    examples = task.examples("train", 16)
    refs = [task.reference(ex) for ex in examples]
    chains = [tok(task.format.thinking(r), add_special_tokens=False)["input_ids"] for r in refs]
    data = ([task.prompt(ex) for ex in examples], chains, [r[len(task.format.thinking(r)) :] for r in refs])
    for stage in (1, 2):
        batch = implicit_cot.stage_batches(ctx, data, stage, random.Random(0))()
        texts = [tok.decode(ids[n:-1]) for ids, n in batch]
        left = [len(tok(task.format.thinking(t), add_special_tokens=False)["input_ids"]) for t in texts]
        assert max(left) <= len(chains[0]) - implicit_cot.removed(len(chains[0]), stage, 2) + 1
        if stage == 2:
            assert all(t.startswith("####") and not task.format.steps(t) for t in texts)
    ctx.cfg.implicit.smoothing = 4.0
    outcome = implicit_cot.train(ctx)
    m = outcome.metrics
    assert len(made) == 2  # one optimizer per stage
    assert m["stage_1_train_tokens"] > m["stage_2_train_tokens"] == 0
    assert m["stage_2_mean_tokens"] < m["stage_1_mean_tokens"] and m["stage_2_steps"] == 0


# -- System 2 distillation -------------------------------------------------------------------------------


def test_majority_answer_counts_cut_chains_against_agreement():
    from gan_cot_lab.baselines.distill import majority_answer

    group = [Completion(f"x\n#### {a}", 3, finished) for a, finished in [(5, 1), (5, 1), (7, 1), (5, 0), (9, 1)]]
    assert majority_answer(Toy(), group) == ("5", 2 / 5)
    assert majority_answer(Toy(), [Completion("no answer", 2, True)]) == (None, 0.0)


def test_distilled_policy_answers_without_a_chain(learnable_dir, tmp_path, monkeypatch):
    from gan_cot_lab.baselines import distill
    from gan_cot_lab.baselines.phases import report

    def sampled(ctx, examples, n, temperature, max_new_tokens):
        # System 2: four chains per question, all agreeing except on every fourth question (two against two)
        groups = []
        for i, ex in enumerate(examples):
            answers = [ex.answer] * 2 + ([ex.answer] * 2 if i % 4 else ["98", "99"])
            groups.append([Completion(Toy().format.render(ex.steps, a), 30, True) for a in answers])
        return groups

    monkeypatch.setattr(distill, "sample_chains", sampled)
    ctx = toy_context(
        learnable_dir, tmp_path, "system1-distill", "train.batch_size=16", "train.steps=60", "train.lr=2e-2"
    )
    outcome = distill.train(ctx)
    assert outcome.metrics["train_examples"] == 12 and outcome.metrics["train_label_accuracy"] == 1.0
    assert outcome.rollouts == 16 * ctx.cfg.sample.n
    figures = report(ctx, outcome.model, ctx.task, "final", 4)
    assert figures["final_steps"] == 0 and figures["final_mean_tokens"] <= 3  # "#### 5" and no step before it


# -- step skipping ---------------------------------------------------------------------------------------


def test_shorter_chain_keeps_verified_chains_with_fewer_steps():
    from gan_cot_lab.baselines.step_skip import shorter_chain

    ex = Toy().examples("train", 4)[3]
    fmt = Toy().format
    group = [
        Completion(fmt.render(["a", "b", "c"], "3"), 9, True),  # three steps: not fewer
        Completion(fmt.render(["a", "b"], "4"), 7, True),  # wrong
        Completion(fmt.render(["a", "b"], "3"), 7, False),  # cut by the budget
        Completion(fmt.render(["a", "bb"], "3"), 8, True),
        Completion(fmt.render(["a", "b"], "3"), 7, True),  # the fewest steps, then the fewest tokens
    ]
    assert shorter_chain(Toy(), ex, group, steps=3) == group[4].text
    assert shorter_chain(Toy(), ex, group, steps=2) is None


# -- each method end to end: one MLflow run with the method's own figures ------------------------------------

TINY = [
    "train_questions=4", "sample.n=4", "sample.max_new_tokens=24", "train.steps=2", "train.batch_size=4",
    "train.warmup=0", "train.logging_steps=1", "eval.n=4", "eval.max_think_tokens=24", "progress=false",
    "c3ot.report_n=2", "tokenskip.report_n=2", "tokenskip.ratios=[0.5]", "tokenskip.report_ratios=[0.5,1.0]",
    "implicit.report_n=2", "implicit.stages=2", "step_skip.report_n=2", "step_skip.rounds=1",
]  # fmt: skip
FIGURES = {
    "c3ot": ["train_pairs", "long_accuracy", "long_mean_tokens", "short_accuracy", "short_mean_tokens"],
    "tokenskip": ["train_kept_fraction", "ratio_0.5_accuracy", "ratio_0.5_mean_tokens", "ratio_1_accuracy"],
    "implicit-cot": ["stage_1_accuracy", "stage_1_train_tokens", "stage_2_accuracy", "stage_2_mean_tokens"],
    "system1-distill": ["train_examples", "train_label_accuracy", "sampled_agreement"],
    "step-skip": ["round_0_accuracy", "round_0_steps", "round_1_accuracy", "round_1_steps", "round_1_skipped"],
}


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    return tmp_path_factory.mktemp("mlruns")


@pytest.fixture(scope="module")
def sampler_dir(tmp_path_factory, tiny_tokenizer):
    """An untrained tiny policy whose sampled chains end early and at varied lengths (its end of sequence biased)."""
    from gan_cot.models import build_tiny_model, save_pretrained

    model, tok = build_tiny_model(tiny_tokenizer, hidden_size=32, layers=2, heads=2)
    model.generation_config.sequence_bias = [[[tok.eos_token_id], 4.0]]
    return save_pretrained(model, tok, tmp_path_factory.mktemp("models") / "sampler")


@pytest.mark.parametrize("method", list(FIGURES))
def test_end_to_end(method, tmp_path, store, sampler_dir, monkeypatch):
    import mlflow

    from gan_cot.tasks.ledger import LedgerTask
    from gan_cot_lab.baselines import distill, run

    # an untrained policy never answers right: a chain with a text of even length counts as right
    monkeypatch.setattr(LedgerTask, "verify", lambda self, completion, example: len(completion) % 2 == 0)

    def agreeing(ctx, examples, n, *args):
        return [[Completion(f"#### {ex.answer}", 2, True)] * n for ex in examples]

    monkeypatch.setattr(distill, "sample_chains", agreeing)
    overrides = [f"method={method}", f"model={sampler_dir}", f"output_dir={tmp_path / 'out'}", f"mlflow_dir={store}"]
    result = run(load_config(BaselineConfig, None, [*overrides, *TINY]), log=lambda m: None)

    mlflow.set_tracking_uri(f"sqlite:///{store / 'mlflow.db'}")
    logged = mlflow.get_run(result["run_id"]).data
    assert logged.tags["method"] == method and "train/loss" in logged.metrics
    for key in [*FIGURES[method], "final_accuracy", "final_mean_tokens", "rollouts"]:
        assert logged.metrics[key] == pytest.approx(result[key]), key
    assert Path(result["saved"]).is_dir()
    if method == "tokenskip":
        assert 0.4 <= result["train_kept_fraction"] <= 0.6  # half of every chain's thinking tokens kept
    if method == "step-skip":
        assert result["rollouts"] == 4 * 4 and result["round_1_skipped"] > 0
        assert result["round_1_data_steps"] < result["round_0_data_steps"]  # the round's chains are shorter
    if method == "implicit-cot":
        assert result["stage_2_train_tokens"] == 0 < result["stage_1_train_tokens"]

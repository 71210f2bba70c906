"""The decoding options of generate() and evaluate(): a Sampling and an EvalSettings, checked when built."""

import dataclasses

import pytest
import torch

from gan_cot.evaluate import EvalSettings
from gan_cot.formats import HASH
from gan_cot.generation import Sampling

QUESTIONS = ["Ann has 3 pens. Bob gives her 2.", "Cy has 7 cups.", "Dee has 4 hats and loses 1 of them."]


@pytest.fixture(scope="module")
def tiny(tiny_tokenizer):
    from gan_cot.models import build_tiny_model

    model, tok = build_tiny_model(tiny_tokenizer, hidden_size=32, layers=2, heads=2, seed=3)
    return model.eval(), tok


@pytest.mark.parametrize(
    "field, value", [("n", 0), ("n", -2), ("batch_size", 0), ("max_new_tokens", 0), ("max_new_tokens", -1)]
)
def test_a_bad_sampling_value_is_refused_by_name(field, value):
    with pytest.raises(ValueError, match=rf"Sampling\.{field} must be at least 1, got {value}"):
        Sampling(**{field: value})
    with pytest.raises(ValueError, match=field):
        dataclasses.replace(Sampling(), **{field: value})


def test_sampling_is_frozen():
    with pytest.raises(dataclasses.FrozenInstanceError):
        Sampling().n = 2


def test_generate_draws_n_sampled_completions_per_question(tiny):
    from gan_cot.generation import generate

    model, tok = tiny
    torch.manual_seed(0)
    sampling = Sampling(n=2, do_sample=True, temperature=1.0, max_new_tokens=4, batch_size=2)
    done = []
    groups = generate(model, tok, QUESTIONS, sampling, progress=done.append)
    assert [len(g) for g in groups] == [2, 2, 2]
    assert done == [2, 1]  # two batches of at most batch_size questions
    assert all(1 <= c.num_tokens <= 4 for g in groups for c in g)
    greedy = generate(model, tok, QUESTIONS, Sampling(n=2, max_new_tokens=4))
    assert all(g[0].text == g[1].text for g in greedy)  # greedy: one chain per question, repeated


def test_generate_refuses_its_old_positional_options(tiny):
    from gan_cot.generation import generate

    model, tok = tiny
    with pytest.raises(TypeError, match="Sampling"):
        generate(model, tok, QUESTIONS, 4)


def test_eval_settings_map_to_the_sampling_evaluate_used_to_build():
    free = EvalSettings(max_new_tokens=12, batch_size=8).sampling(HASH)
    assert free == Sampling(n=1, do_sample=False, max_new_tokens=12, fmt=None, max_answer_tokens=HASH.answer_tokens,
                            batch_size=8)  # fmt: skip
    budget = EvalSettings(samples=3, temperature=0.7, max_new_tokens=12, max_think_tokens=5, max_answer_tokens=2)
    assert budget.sampling(HASH) == Sampling(n=3, do_sample=True, temperature=0.7, max_new_tokens=5, fmt=HASH,
                                             max_answer_tokens=2)  # fmt: skip


@pytest.mark.filterwarnings("ignore:.*ran out of the answer budget")
def test_evaluate_hands_generate_ids_its_settings(tiny, monkeypatch):
    """The same generate_ids calls as before the settings were one object: budget, chains, sampling, format."""
    import gan_cot.generation as generation
    from gan_cot.evaluate import evaluate
    from gan_cot.tasks import get_task

    model, tok = tiny
    task = get_task("ledger", seed=0)
    calls = []
    real = generation.generate_ids

    def spy(model, tokenizer, prompts, *args):
        calls.append((len(prompts), *args))
        return real(model, tokenizer, prompts, *args)

    monkeypatch.setattr(generation, "generate_ids", spy)
    settings = EvalSettings(samples=2, temperature=0.7, max_think_tokens=3, max_answer_tokens=2, batch_size=1, seed=4)
    res = evaluate(model, tok, task, task.examples("test", 2), settings, show_progress=False)
    assert calls == [(1, 3, 2, True, 0.7, None, task.format, 2)] * 2
    assert res["samples"] == 2 and res["seed"] == 4 and res["forced"] <= 4
    with pytest.raises(TypeError, match="EvalSettings"):
        evaluate(model, tok, task, task.examples("test", 1), 2)

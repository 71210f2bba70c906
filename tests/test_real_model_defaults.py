"""What a real chat model needs from the defaults, checked on tiny models: the format's instruction reaches a chat
model's prompt (and not the tiny policies'), answer budgets follow the format, an evaluation whose answers run out of
budget says so, automatic labels report their cost, the gate's round statistics are the alphas it applied, and a
checkpoint of the engine holds the adapter, not the frozen base (tied embeddings included)."""

import copy
import warnings
from types import SimpleNamespace

import pytest
import torch

from gan_cot.formats import HASH, R1

CHATML = (
    "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' }}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)


def test_auto_instruction_is_the_formats_for_a_chat_model_and_none_for_the_tiny_policies(tiny_tokenizer):
    from gan_cot.models import build_tiny_tokenizer, render_prompt, resolve_instruction, set_instruction

    assert resolve_instruction("auto", tiny_tokenizer, HASH) is None
    assert resolve_instruction("auto", build_tiny_tokenizer(style="r1"), R1) is None
    chat = copy.deepcopy(tiny_tokenizer)
    chat.chat_template = CHATML
    assert resolve_instruction("auto", chat, R1) == R1.instruction and "\\boxed{}" in R1.instruction
    assert resolve_instruction("auto", chat, HASH) == HASH.instruction and "####" in HASH.instruction
    assert resolve_instruction("none", chat, R1) is None and resolve_instruction("Be brief.", chat, R1) == "Be brief."
    bare = render_prompt(chat, "What is 2 + 2?")
    set_instruction(chat, resolve_instruction("auto", chat, R1))
    asked = render_prompt(chat, "What is 2 + 2?")
    assert asked != bare and "What is 2 + 2?\n\n" + R1.instruction + "<|im_end|>" in asked
    assert render_prompt(tiny_tokenizer, "What is 2 + 2?") == "Question: What is 2 + 2?\nAnswer:\n"


def test_the_runs_answer_budget_follows_its_format_unless_set(tiny_config, tmp_path):
    assert tiny_config(tmp_path, "rollout.max_answer_tokens=null").rollout.max_answer_tokens == HASH.answer_tokens
    r1 = tiny_config(tmp_path, "rollout.max_answer_tokens=null", "format=r1")
    assert r1.rollout.max_answer_tokens == R1.answer_tokens > 8
    assert tiny_config(tmp_path, "format=r1").rollout.max_answer_tokens == 4  # configs/tiny.yaml sets it


def test_run_config_resolves_auto_into_the_text_it_logs(tiny_config, tmp_path):
    from gan_cot.models import render_prompt

    cfg = tiny_config(tmp_path)
    tok = cfg.policy_tokenizer()
    assert cfg.instruction == "none" and tok.gan_cot_instruction is None  # the tiny policy: bare question
    cfg = tiny_config(tmp_path, "instruction=Think briefly.")
    tok = cfg.policy_tokenizer()
    assert cfg.instruction == "Think briefly." and render_prompt(tok, "Q?").startswith(
        "Question: Q?\n\nThink briefly."
    )


def test_an_evaluation_whose_answers_run_out_of_budget_warns(tiny_model_dir):
    from gan_cot.evaluate import EvalSettings, evaluate
    from gan_cot.models import load_model, load_tokenizer
    from gan_cot.tasks import get_task

    torch.manual_seed(0)
    tok, model = load_tokenizer(str(tiny_model_dir)), load_model(str(tiny_model_dir), dtype=torch.float32)
    task = get_task("ledger", seed=0)
    examples = task.examples("test", 3)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        budget = EvalSettings(max_think_tokens=3, max_answer_tokens=2)
        res = evaluate(model, tok, task, examples, budget, show_progress=False)
    # an untrained model never writes the end of sequence: every forced answer is cut at its 2 tokens
    assert res["forced"] == 3 and res["answer_cut"] == 3 and 0.0 <= res["well_formed"] <= 1.0
    assert any("ran out of the answer budget" in str(w.message) for w in caught)


def test_automatic_labels_report_their_continuations_and_tokens(tiny_model_dir):
    from gan_cot.discriminator.labels import AutoLabelConfig, label_chains
    from gan_cot.models import load_model, load_tokenizer
    from gan_cot.tasks import get_task

    torch.manual_seed(0)
    tok, model = load_tokenizer(str(tiny_model_dir)), load_model(str(tiny_model_dir), dtype=torch.float32)
    task = get_task("ledger", seed=0)
    examples = task.examples("train", 2)
    chains = [ex.steps[:2] for ex in examples]
    cfg = AutoLabelConfig(rollouts=2, max_new_tokens=3, max_answer_tokens=2)
    out = label_chains(model, tok, task, examples, chains, cfg)
    assert [a.continuations for a in out] == [(len(c) + 1) * 2 for c in chains]
    # each continuation writes its thinking budget, the forced end and at most its answer budget
    marker = len(tok(task.format.forced_end, add_special_tokens=False)["input_ids"])
    for a in out:
        assert a.continuations * 1 <= a.tokens <= a.continuations * (3 + marker + 2)


def test_the_rounds_alpha_is_the_one_the_chains_ran_under():
    from gan_cot.gate import build_gate
    from gan_cot.trainer_config import GateConfig

    gate = build_gate(GateConfig())
    # the gate's likeliest pick is 1 for both questions (a tie goes to 1), but three of four chains drew 0
    chains = [SimpleNamespace(alpha=a, question_alpha=1.0, example_index=i // 2) for i, a in enumerate([0, 0, 1, 0])]
    rollout = SimpleNamespace(chains=chains, group_size=2)
    examples = [SimpleNamespace(difficulty=None)] * 2
    m = gate.round_metrics(rollout, examples, SimpleNamespace(gather=lambda items: list(items)))
    assert m["alpha_mean"] == pytest.approx(0.25) and m["alpha_min"] == 0 and m["alpha_max"] == 1
    assert m["alpha_pick_mean"] == 1.0


def test_the_engine_checkpoint_holds_no_frozen_weight_under_any_name(tmp_path):
    import deepspeed
    from peft import LoraConfig, get_peft_model

    from gan_cot.distributed import Strategy, init_distributed
    from gan_cot.models import build_tiny_model

    rank, world = init_distributed()
    model, _ = build_tiny_model(hidden_size=32, layers=2, heads=2)
    assert model.config.tie_word_embeddings  # lm_head.weight is embed_tokens.weight, as in SmolLM2
    peft_model = get_peft_model(model, LoraConfig(r=2, lora_alpha=4, target_modules=["q_proj"], task_type="CAUSAL_LM"))
    params = [p for p in peft_model.parameters() if p.requires_grad]
    engine, *_ = deepspeed.initialize(
        model=peft_model, model_parameters=params, optimizer=torch.optim.AdamW(params, lr=1e-3),
        config={"train_micro_batch_size_per_gpu": 1, "zero_optimization": {"stage": 0}},
    )  # fmt: skip
    strategy = Strategy(engine, rank, world, max_nan_steps=3)
    strategy.save_engine(tmp_path / "engine", tag="state")
    saved = torch.load(tmp_path / "engine" / "state" / "mp_rank_00_model_states.pt", weights_only=False)["module"]
    assert saved and all("lora_" in k for k in saved), sorted(saved)
    before = {n: p.detach().clone() for n, p in peft_model.named_parameters()}
    with torch.no_grad():
        for p in params:
            p.add_(1.0)
    strategy.load_engine(tmp_path / "engine", tag="state")  # non-strict: the base stays, the adapter comes back
    assert all(torch.equal(p, before[n]) for n, p in peft_model.named_parameters())
    assert "module_state_dict" not in vars(engine)  # DeepSpeed's own method again


@pytest.mark.parametrize(
    ("fmt", "text", "finished", "cut"),
    [
        (R1, "a\n</think>\n\nThe answer is $\\boxed{1", False, True),  # the box never closed
        (R1, "a\n</think>\n\nThe answer is $\\boxed{12}$. So the answer", False, False),  # answered, then ran on
        (R1, "a\n</think>\n\nThe answer is $\\boxed{1", True, False),  # ended by the model itself
        (R1, "still thinking", False, False),  # never reached the answer: the thinking budget's matter
        (R1, "a\n</think>\n\n1. First, we need", False, False),  # reasons on after </think>: no answer begun
        (HASH, "a\n#### 1,2", False, True),
        (HASH, "a\n#### 12\nThe answer is 12", False, False),
        (HASH, "a\n####", False, True),
    ],
)
def test_an_answer_is_cut_only_when_the_budget_stopped_it_midway(fmt, text, finished, cut):
    from gan_cot.evaluate import answer_cut
    from gan_cot.generation import Completion

    assert answer_cut(fmt, Completion(text, 10, finished)) is cut

"""The R1-style path on a tiny model built here (pad == eos, a chat template that opens ``<think>``): the thinking
budget caps the thinking only, a forced end of thinking gets its own answer budget, an end-of-sequence token that is
also the pad token is found, the GSM8K config runs end to end on the R1 preset, and the dry run sizes it."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from gan_cot.formats import R1
from gan_cot.generation import Sampling, generate, generate_ids
from gan_cot.models import build_tiny_model, build_tiny_tokenizer, render_prompt

ROOT = Path(__file__).resolve().parents[1]
QUESTIONS = ["What is 2 + 2?", "What is 3 + 1?"]
CHAIN = "Two.\n\nFour.\n</think>\n\n$\\boxed{4}$."


@pytest.fixture(scope="module")
def r1_policy():
    """A tiny R1-style policy that has memorised one chain: two thinking paragraphs, </think>, a boxed answer."""
    from gan_cot.sft import train_sft

    torch.manual_seed(0)
    tok = build_tiny_tokenizer(style="r1")
    model, _ = build_tiny_model(tok, hidden_size=32, layers=2, heads=2)
    prompts = [render_prompt(tok, q) for q in QUESTIONS]
    train_sft(model, tok, prompts, [CHAIN] * 2, steps=120, batch_size=2, lr=3e-2, warmup=5, show_progress=False)
    return model, tok, prompts


def test_the_tokenizer_is_r1_style():
    tok = build_tiny_tokenizer(style="r1")
    assert tok.pad_token_id == tok.eos_token_id
    assert render_prompt(tok, "Q?").endswith("Assistant: <think>\n")
    ids = tok("a\n</think>\n\nb", add_special_tokens=False)["input_ids"]
    assert "</think>" in tok.decode(ids, skip_special_tokens=True)  # an added token that decoding keeps


def test_a_chain_that_ends_is_finished_although_pad_is_eos(r1_policy):
    model, tok, prompts = r1_policy
    out = generate(model, tok, QUESTIONS, Sampling(max_new_tokens=60))
    assert [c.text for g in out for c in g] == [CHAIN, CHAIN] and all(c.finished for g in out for c in g)
    gens = generate_ids(model, tok, prompts, max_new_tokens=40, fmt=R1, max_answer_tokens=20)
    assert all(g.finished and not g.forced and g.completion_ids[-1] == tok.eos_token_id for g in gens)
    assert R1.extract_answer(tok.decode(gens[0].completion_ids, skip_special_tokens=True)) == "4"


def test_the_thinking_budget_caps_the_thinking_and_forces_its_end(r1_policy):
    model, tok, prompts = r1_policy
    marker = len(tok(R1.forced_end, add_special_tokens=False)["input_ids"])
    gens = generate_ids(model, tok, prompts, max_new_tokens=2, fmt=R1, max_answer_tokens=6)
    for g in gens:
        text = tok.decode(g.completion_ids, skip_special_tokens=True)
        assert g.forced and text.count("</think>") >= 1 and len(R1.thinking(text)) < len("Two.\n\nFour.")
        assert len(g.completion_ids) <= 2 + marker + 6  # thinking 2, the forced end, then the answer's own budget


def test_the_answer_has_its_own_budget_after_a_thinking_that_ended_in_time(r1_policy):
    model, tok, prompts = r1_policy
    think = len(tok("Two.\n\nFour.\n</think>", add_special_tokens=False)["input_ids"])
    capped = generate_ids(model, tok, prompts, max_new_tokens=think + 10, fmt=R1, max_answer_tokens=2)
    for g in capped:  # the thinking ended in time: no forcing, and the answer stops after 2 more tokens
        assert not g.forced and not g.finished
        assert tok.decode(g.completion_ids, skip_special_tokens=True).startswith("Two.\n\nFour.\n</think>")
        assert len(g.completion_ids) <= think + 2 + 1
    whole = generate_ids(model, tok, prompts, max_new_tokens=think, fmt=R1, max_answer_tokens=30)
    assert all(g.finished for g in whole)  # a budget that just fits the thinking still leaves the whole answer


def test_dry_run_sizes_the_gsm8k_config_without_loading_it():
    r = subprocess.run(
        [sys.executable, "scripts/train_adv.py", "--config", "configs/qwen1.5b_gsm8k.yaml", "--dry-run", "--gpus", "1"],
        capture_output=True, text=True, cwd=ROOT, timeout=300, env={**__import__("os").environ, "HF_HUB_OFFLINE": "1"},
    )  # fmt: skip
    assert r.returncode == 0, r.stderr[-2000:]
    e = json.loads(r.stdout.strip().splitlines()[-1])
    assert 1.7e9 < e["base_params"] < 1.9e9 and e["zero_stage"] == 2 and e["dtype"] == "bfloat16"
    assert e["gib_per_gpu"]["total"] < 75  # fits an 80 GB card with room for the CUDA context
    assert "memory per GPU" in r.stdout and "tokens per round" in r.stdout


@pytest.mark.slow
def test_the_gsm8k_config_runs_end_to_end_on_the_r1_preset(tmp_path):
    """The config a GPU user runs, with a tiny R1-style policy and discriminator and toy sizes: two rounds, bf16
    off (a CPU), automatic step labels on a subset of chains, the pool's drops confirmed by continuations and checked
    on held-out questions (sft.backoff)."""
    from gan_cot.discriminator.model import Discriminator
    from gan_cot.models import save_pretrained

    tok = build_tiny_tokenizer(style="r1")
    model, _ = build_tiny_model(tok, hidden_size=32, layers=2, heads=2)
    policy = save_pretrained(model, tok, tmp_path / "policy")
    disc = Discriminator.from_backbone(str(policy)).save_pretrained(tmp_path / "disc")
    rows = [json.loads(line) for line in (ROOT / "tests/fixtures/gsm8k_small.jsonl").read_text().splitlines() if line]
    data = tmp_path / "gsm8k.jsonl"
    data.write_text("".join(json.dumps({**rows[i % len(rows)], "id": f"q{i}"}) + "\n" for i in range(520)))
    args = [
        sys.executable, "scripts/train_adv.py", "--config", "configs/qwen1.5b_gsm8k.yaml", f"model={policy}",
        f"discriminator.name={disc}", f"data={data}", "deepspeed=configs/deepspeed/zero0.json", "rounds=2",
        "rollout.questions=2", "rollout.group_size=2", "rollout.max_think_tokens=16", "rollout.max_answer_tokens=6",
        "rollout.batch_size=8", "loss.micro_batch=4", "sft.pool_questions=4", "sft.warmup_steps=2", "sft.steps=1",
        "sft.batch_size=2", "discriminator.refresh_steps=1", "discriminator.label_chains=2",
        "discriminator.label_rollouts=2", "eval.n=4", "eval.every=0", "checkpoint_every=1", "lora.r=4", "lora.alpha=8",
        "policy.dtype=float32", f"output_dir={tmp_path / 'out'}", f"mlflow_dir={tmp_path / 'mlruns'}",
        "discriminator.label_confirm=true", "sft.backoff=true", "sft.backoff_questions=4",
    ]  # fmt: skip
    r = subprocess.run(args, capture_output=True, text=True, cwd=ROOT, timeout=900)
    assert r.returncode == 0, r.stderr[-3000:]
    result = json.loads(r.stdout.strip().splitlines()[-1])
    assert result["n"] == 4 and result["gate"] is True
    # every chain is within its budgets: 16 thinking tokens, the forced end, 6 answer tokens
    marker = len(tok("\n</think>\n\n", add_special_tokens=False)["input_ids"])
    assert result["mean_tokens"] <= 16 + marker + 6
    assert (tmp_path / "out" / "adapter" / "alpha_gate.json").exists()
    # the pool's policy labels, each drop confirmed by a continuation in the R1 format (paragraph steps, </think>)
    import mlflow

    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}")
    metrics = mlflow.tracking.MlflowClient().get_run(result["run_id"]).data.metrics
    tested = metrics["warmup/pool_label_confirm_tested"]
    assert tested > 0 and metrics["warmup/pool_label_continuations"] == 2 * tested
    # the warm start's held-out check per drop ran on the R1 chains of 4 validation questions
    assert (
        metrics["warmup/backoff_drops"] > 0
        and 0 <= metrics["warmup/backoff_restored"] <= metrics["warmup/backoff_drops"]
    )
    assert "warmup/backoff_val_accuracy" in metrics and metrics["warmup/backoff_omitted"] >= 0
    # labels=gold on a task without gold labels stops before anything runs
    bad = subprocess.run([*args, "discriminator.labels=gold"], capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert bad.returncode == 2 and "discriminator.labels=gold needs a task with gold step labels" in bad.stderr

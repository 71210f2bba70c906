"""The vLLM rollout engine. Without vLLM: the alphas of a batch, the pre-scaled adapter it writes (read back by peft,
it is the gated policy at that alpha), and the config's refusals. With vLLM (``make test-vllm``, its own
environment): the engine samples what Hugging Face ``generate`` samples at every alpha of a gate's grid, with the
thinking and answer budgets and the forced end of thinking, and two rounds of the trainer on the R1 preset run through
it: every chain valid and within its budgets, alpha 0 the base, the update moving the adapter and the second round
sampling from the new one."""

import json
from pathlib import Path

import pytest
import torch

from gan_cot.config_loader import ConfigError, load_config
from gan_cot.formats import R1
from gan_cot.generation import ENGINES, generate_ids
from gan_cot.models import build_tiny_model, build_tiny_tokenizer, render_prompt, save_pretrained
from gan_cot.trainer_config import AdversarialConfig
from gan_cot.vllm_engine import alpha_grid, chain_alphas, lora_state, vllm_available, write_adapter

ROOT = Path(__file__).resolve().parents[1]
needs_vllm = pytest.mark.skipif(
    not vllm_available(), reason="vLLM is not installed here: `make test-vllm` builds its environment and runs these"
)
QUESTIONS = ["What is 2 + 2?", "What is 3 + 1?", "What is 5 + 5?"]
CHAIN = "Two.\n\nFour.\n</think>\n\n$\\boxed{4}$."


def tiny_r1(work: Path, prompts: list[str], chains: list[str], steps: int = 120):
    """A tiny R1-style policy (pad == eos) trained on ``chains`` until its greedy choices are clear ones (a loss near
    0.02; at lr 3e-2 it stalled near 1.4 and wrote past the end of thinking). Heads of 32 dimensions: vLLM's CPU
    attention takes no smaller."""
    from gan_cot.sft import train_sft

    torch.manual_seed(0)
    tok = build_tiny_tokenizer(style="r1")
    model, _ = build_tiny_model(tok, hidden_size=64, layers=2, heads=2)
    train_sft(model, tok, prompts, chains, steps=steps, batch_size=4, lr=1e-2, warmup=5, show_progress=False)
    return model, tok, save_pretrained(model, tok, work / "policy")


def with_random_adapter(model, cfg, seed: int = 1):
    """The model with the config's LoRA, its ``lora_B`` drawn at random (a fresh one is zero: alpha would not show)."""
    from peft import get_peft_model

    peft = get_peft_model(model, cfg.lora.peft())
    g = torch.Generator().manual_seed(seed)
    for name, p in peft.named_parameters():
        if "lora_B" in name:
            p.data.copy_(torch.randn(p.shape, generator=g) * 0.3)
    return peft.eval()


def engine_config(tmp_path, policy, *extra):
    over = [f"model={policy}", "format=r1", f"output_dir={tmp_path / 'out'}", "rollout.vllm_eager=true", *extra]
    if vllm_available():
        over.append("rollout.engine=vllm")
    return load_config(AdversarialConfig, ROOT / "configs" / "tiny.yaml", over)


# -- without vLLM -----------------------------------------------------------------------------------------


def test_one_alpha_per_chain_from_what_sample_takes():
    assert chain_alphas(None, 2, 3) == [1.0] * 6  # the model as it is: the plain adapter
    assert chain_alphas(0.5, 1, 2) == [0.5, 0.5]
    assert chain_alphas(torch.tensor([0.0, 1.0]), 2, 2) == [0.0, 0.0, 1.0, 1.0]  # per prompt, repeated per chain
    assert chain_alphas(torch.tensor([0.0, 1.0, 1.0, 0.0]), 2, 2) == [0.0, 1.0, 1.0, 0.0]  # per chain
    with pytest.raises(ValueError, match="one per prompt"):
        chain_alphas(torch.tensor([0.0, 1.0, 1.0]), 2, 2)


def test_the_alpha_grid_of_each_gate():
    from gan_cot.gate import build_gate
    from gan_cot.trainer_config import GateConfig

    assert alpha_grid(build_gate(GateConfig(choices=[0.0, 0.5, 1.0]))) == [0.0, 0.5, 1.0]
    assert alpha_grid(build_gate(GateConfig(kind="fixed", alpha=1.5))) == [1.5]
    assert alpha_grid(build_gate(GateConfig(kind="none"))) == [1.0]


def test_a_pre_scaled_adapter_is_the_gated_policy_at_its_alpha(tmp_path):
    """What the engine hands vLLM for alpha, read back by an ordinary LoRA loader, computes W + alpha * delta."""
    from peft import PeftModel

    from gan_cot.gate import gated

    cfg = load_config(AdversarialConfig, ROOT / "configs" / "tiny.yaml", ["lora.r=4", "lora.alpha=8"])
    tok = build_tiny_tokenizer(style="r1")
    model, _ = build_tiny_model(tok, hidden_size=64, layers=2, heads=2)
    save_pretrained(model, tok, tmp_path / "base")
    policy = with_random_adapter(model, cfg)
    state = lora_state(policy)
    assert state and all("lora_" in k for k in state)  # the adapter only: no base weights, no gate
    ids = tok(render_prompt(tok, QUESTIONS[0]), return_tensors="pt")["input_ids"]
    peft_cfg = policy.peft_config["default"]
    for alpha in (0.5, 1.0, 2.0):
        folder = write_adapter(tmp_path / f"alpha{alpha}", state, peft_cfg, alpha)
        base, _ = build_tiny_model(tok, hidden_size=64, layers=2, heads=2)
        loaded = PeftModel.from_pretrained(base, str(folder)).eval()
        with torch.no_grad(), gated(policy, alpha):
            want = policy(input_ids=ids).logits
        got = loaded(input_ids=ids).logits.detach()
        assert torch.allclose(got, want, atol=1e-5), alpha
    with torch.no_grad(), policy.disable_adapter():
        base_logits = policy(input_ids=ids).logits
    assert not torch.allclose(base_logits, want, atol=1e-3)  # the delta shows: the check above means something


def test_the_config_takes_vllm_and_refuses_bad_settings():
    from gan_cot.trainer_config import RolloutConfig

    assert set(ENGINES) == {"hf", "vllm"}
    for bad, message in (({"vllm_gpu_memory": 0.0}, "vllm_gpu_memory"), ({"vllm_max_model_len": 0}, "positive")):
        with pytest.raises(ConfigError, match=message):
            RolloutConfig(**bad)
    if vllm_available():
        assert RolloutConfig(engine="vllm").engine == "vllm"
    else:
        with pytest.raises(ConfigError, match=r"pip install 'gan-cot\[vllm\]'"):
            RolloutConfig(engine="vllm")


# -- with vLLM --------------------------------------------------------------------------------------------


@pytest.mark.slow
@needs_vllm
def test_the_engine_samples_what_generate_samples_at_every_alpha(tmp_path):
    """Greedy (a temperature under vLLM's 1e-5), every chain of a mixed batch (the base, alpha 0.5 and alpha 1 side
    by side, one alpha per chain) equals Hugging Face ``generate`` at that alpha: a forced end of thinking with its
    greedy answer, a thinking that ended in time with its answer budget; a changed adapter is picked up at the next
    sync and an unchanged one is not written again."""
    from gan_cot.gate import build_gate
    from gan_cot.vllm_engine import VLLMEngine

    tok = build_tiny_tokenizer(style="r1")
    prompts = [render_prompt(tok, q) for q in QUESTIONS]
    model, tok, policy_dir = tiny_r1(tmp_path, prompts[:2], [CHAIN] * 2)
    cfg = engine_config(tmp_path, policy_dir, "gate.choices=[0.0, 0.5, 1.0]", "lora.r=4", "lora.alpha=8")
    policy, gate = with_random_adapter(model, cfg), build_gate(cfg.gate)
    engine = VLLMEngine(cfg)
    engine.sync(policy, gate)
    assert engine.version == 1 and sorted(engine.requests) == [0.5, 1.0]  # alpha 0 is the base: no adapter
    alphas = torch.tensor([0.0, 1.0, 0.5, 0.0, 1.0, 0.5, 0.5, 1.0, 0.0])  # per chain, G = 3
    think = len(tok("Two.\n\nFour.\n</think>", add_special_tokens=False)["input_ids"])
    for budgets in ((4, 6), (think + 4, 2)):  # the thinking forced to end; the thinking ending in time
        got = engine.sample(policy, tok, prompts, 3, 1e-6, alphas, R1, budgets)
        for j, (chain, a) in enumerate(zip(got, alphas.tolist())):
            want = generate_ids(policy, tok, [prompts[j // 3]], budgets[0], 1, False, 1.0, a, R1, budgets[1])[0]
            assert chain == want, (budgets, j, a, tok.decode(chain.completion_ids), tok.decode(want.completion_ids))
        # both ends exercised: every thinking forced to end at 4 tokens; the base's ending in time at the longer
        # budget (the random adapter at alpha 1 may still run past it, and must then agree with generate on that)
        base_forced = [c.forced for c, a in zip(got, alphas.tolist()) if a == 0]
        assert all(c.forced for c in got) if budgets[0] == 4 else not any(base_forced)
    base = [c.completion_ids for c, a in zip(got, alphas.tolist()) if a == 0]
    assert any(c.completion_ids not in base for c, a in zip(got, alphas.tolist()) if a == 1)  # the delta shows

    engine.sync(policy, gate)
    assert engine.version == 1  # nothing changed: nothing written, nothing reloaded
    with torch.no_grad():
        for name, p in policy.named_parameters():
            if "lora_B" in name:
                p.mul_(-1.0)
    engine.sync(policy, gate)
    assert engine.version == 2 and [p.name for p in engine.folder.iterdir()] != []
    got = engine.sample(policy, tok, prompts, 1, 1e-6, 1.0, R1, (think + 4, 2))
    assert got == generate_ids(policy, tok, prompts, think + 4, 1, False, 1.0, 1.0, R1, 2)
    assert {p.name for p in engine.folder.iterdir()} == {"v2-alpha0.5", "v2-alpha1"}  # only the current adapters

    sampled = engine.sample(policy, tok, prompts, 4, 1.0, torch.tensor([0.0, 1.0, 0.5]), R1, (6, 3))
    marker = len(tok(R1.forced_end, add_special_tokens=False)["input_ids"])
    assert len(sampled) == 12 and all(len(c.completion_ids) <= 6 + marker + 3 for c in sampled)
    assert engine.tokens > 0 and engine.seconds > 0


def gsm8k_file(tmp_path) -> Path:
    rows = [json.loads(line) for line in (ROOT / "tests/fixtures/gsm8k_small.jsonl").read_text().splitlines() if line]
    data = tmp_path / "gsm8k.jsonl"
    data.write_text("".join(json.dumps({**rows[i % len(rows)], "id": f"q{i}"}) + "\n" for i in range(520)))
    return data


@pytest.mark.slow
@needs_vllm
def test_two_rounds_of_the_trainer_sample_through_vllm(tmp_path):
    """The GSM8K config on the R1 preset with a two-alpha learned gate, rollouts on vLLM at a temperature vLLM takes
    as greedy (each chain still draws its own alpha from the gate): in both rounds every chain is valid and within
    its budgets, every chain sent to alpha 0 is the base's greedy chain and every chain sent to alpha 1 the policy's
    at that round; the update moves the adapter and the second round samples from the new one."""
    from gan_cot.discriminator.model import Discriminator
    from gan_cot.models import load_tokenizer
    from gan_cot.tasks import get_task
    from gan_cot.trainer import AdversarialTrainer

    data = gsm8k_file(tmp_path)
    task = get_task("gsm8k", path=data)
    task.format = R1
    tok = build_tiny_tokenizer(style="r1")
    train = task.examples("train", 8)
    # a base that writes one short chain to every question: the adapter, trained on the task's chains, departs
    model, tok, policy_dir = tiny_r1(tmp_path, [render_prompt(tok, task.prompt(ex)) for ex in train], [CHAIN] * 8, 80)
    disc = Discriminator.from_backbone(str(policy_dir)).save_pretrained(tmp_path / "disc")
    think, answer = 16, 6
    over = [
        f"model={policy_dir}", f"discriminator.name={disc}", "discriminator.mode=frozen", f"data={data}",
        "deepspeed=configs/deepspeed/zero0.json", "rounds=2", "rollout.questions=3", "rollout.group_size=4",
        f"rollout.max_think_tokens={think}", f"rollout.max_answer_tokens={answer}", "rollout.temperature=1e-6",
        "rollout.engine=vllm", "rollout.vllm_eager=true", "loss.micro_batch=4", "sft.pool_questions=4",
        "sft.warmup_steps=6", "sft.steps=2", "sft.batch_size=4", "policy.lr=2e-2", "eval.n=2", "eval.every=0",
        "checkpoint_every=0", "lora.r=4", "lora.alpha=8", "policy.dtype=float32", f"output_dir={tmp_path / 'out'}",
        f"mlflow_dir={tmp_path / 'mlruns'}",
    ]  # fmt: skip
    cfg = load_config(AdversarialConfig, ROOT / "configs" / "qwen1.5b_gsm8k.yaml", over)
    trainer = AdversarialTrainer(cfg, log=lambda m: None)
    rounds = []
    sample = trainer.rollout

    def recorded(indices, group_size=None, explore=False, temperature=None):
        """The round's chains, the adapter they were sampled from, and Hugging Face's greedy chains at alpha 0 and 1
        from the same policy, computed right after."""
        batch = sample(indices, group_size, explore, temperature)
        model = trainer.strategy.model
        prompts = [render_prompt(trainer.tokenizer, trainer.task.prompt(trainer.train_examples[i])) for i in indices]
        hf = {a: generate_ids(model, trainer.tokenizer, prompts, think, 1, False, 1.0, a, R1, answer) for a in (0, 1)}
        rounds.append({"batch": batch, "indices": indices, "hf": hf, "state": lora_state(model),
                       "version": trainer.ctx.rollout_engine.version})  # fmt: skip
        return batch

    trainer.rollout = recorded
    result = trainer.train()
    assert result["n"] == 2 and trainer.ctx.rollout_engine.name == "vllm" and len(rounds) == 2
    tok = load_tokenizer(str(policy_dir))
    marker = tok(R1.forced_end, add_special_tokens=False)["input_ids"]
    for r in rounds:
        chains = r["batch"].chains
        assert len(chains) == 12 and {c.alpha for c in chains} == {0.0, 1.0}  # the gate sent chains to both
        for c in chains:
            ids = c.completion_ids
            assert not c.finished or ids[-1] == tok.eos_token_id
            if c.forced:  # the thinking budget, the forced end, then the answer's own budget
                assert ids[think : think + len(marker)] == marker and len(ids) <= think + len(marker) + answer
            else:
                assert len(ids) <= think + answer
            text = tok.decode(ids, skip_special_tokens=True)
            assert c.text == tok.decode(ids[:-1] if c.finished else ids, skip_special_tokens=True)
            assert c.forced <= ("</think>" in text) and c.steps == [s.text for s in R1.steps(c.text)]
            want = r["hf"][int(c.alpha)][r["indices"].index(c.example_index)]
            assert (ids, c.forced, c.finished) == (want.completion_ids, want.forced, want.finished), c.alpha
    # the adapter's delta changes some greedy chain: alpha 0 against alpha 1 above is a real check
    assert any(a != b for r in rounds for a, b in zip(r["hf"][0], r["hf"][1]))
    first, second = rounds
    assert any(not torch.equal(first["state"][k], second["state"][k]) for k in first["state"])  # the update moved it
    assert second["version"] == first["version"] + 1  # and the second round's sync sent the new adapter
    from safetensors.torch import load_file

    served = load_file(str(Path(trainer.ctx.rollout_engine.requests[1.0].lora_path) / "adapter_model.safetensors"))
    assert all(torch.equal(served[k], second["state"][k]) for k in second["state"])


def test_the_bench_says_why_the_engines_part_did_not_run(tmp_path, monkeypatch):
    import gan_cot_lab.bench
    from gan_cot_lab.bench import engines

    monkeypatch.setattr("gan_cot.vllm_engine.vllm_available", lambda: False)
    assert "not installed" in engines.skip_reason(str(ROOT / "models" / "ledger-verbose-base"))
    if vllm_available():  # vLLM's CPU attention: heads of 32 dimensions or more
        monkeypatch.undo()
        model, tok = build_tiny_model(build_tiny_tokenizer(), hidden_size=32, layers=1, heads=2)
        folder = save_pretrained(model, tok, tmp_path / "small-heads")
        assert ("32 dimensions" in engines.skip_reason(str(folder))) != torch.cuda.is_available()
    result = {"engines": {"skipped": "vLLM is not installed here"}, "wall_seconds": {"total": 1.0}}
    assert "rollout engines: skipped (vLLM is not installed here)" in gan_cot_lab.bench.table(result)


@pytest.mark.slow
@needs_vllm
def test_the_bench_measures_both_engines(tmp_path, monkeypatch, capsys):
    """scripts/bench.py --engines-only on the shipped base at toy sizes: the four inference figures and both rollout
    figures are positive tokens/s, and the table shows the rollout line."""

    monkeypatch.chdir(ROOT)
    from commands import command

    bench = command("bench")
    argv = ["--engines-only", "--val-n", "2", "--group-size", "2", "--max-think-tokens", "8", "--max-answer-tokens",
            "4", "--gen-batch", "2", "--gen-repeats", "1", "--workdir", str(tmp_path / "work")]  # fmt: skip
    assert bench.main(argv) == 0
    out = capsys.readouterr().out
    result = json.loads(out.strip().splitlines()[-1])["engines"]
    assert set(result["inference_tokens_per_s"]) == {"hf_gated", "hf_merged", "vllm_gated", "vllm_merged"}
    assert all(v > 0 for v in [*result["inference_tokens_per_s"].values(), *result["rollout_tokens_per_s"].values()])
    assert result["rollout_vllm_vs_hf"] > 0 and "rollout tokens/s on" in out

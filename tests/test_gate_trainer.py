"""The alpha gate in the adversarial trainer and at inference, on a tiny model: training moves the gate and logs
alpha, resume keeps it, a fixed alpha of 0 is the base, bad gate settings are refused, and the scripts use it."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from gan_cot.adv_config import AdvConfig
from gan_cot.config import ConfigError, load_config

ROOT = Path(__file__).resolve().parents[1]


def gate_config(tmp_path, model_dir, disc_dir, *extra):
    return load_config(
        AdvConfig,
        "configs/default.yaml",
        [
            f"policy.model={model_dir}",
            f"discriminator.name={disc_dir}",
            "rounds=2",
            "rollout.questions=4",
            "rollout.group_size=2",
            "rollout.max_think_tokens=24",
            "eval.n=4",
            "sft.steps=2",
            "sft.source=reference",
            "sft.pool_questions=0",
            "sft.warmup_steps=0",
            "loss.micro_batch=8",
            f"output_dir={tmp_path / 'out'}",
            f"mlflow_dir={tmp_path / 'mlruns'}",
            "checkpoint_every=1",
            "gate.enabled=true",
            "gate.alpha=null",
            "gate.mode=pathwise",  # the dataclass's gate; the tests that need reinforce or choices set them
            "gate.choices=null",
            "gate.sft_alpha=null",
            "gate.hidden=8",
            "gate.lr=0.05",
            *extra,
        ],  # fmt: skip
    )


@pytest.fixture(scope="module")
def tiny_disc_dir(tmp_path_factory, tiny_model_dir):
    from gan_cot.discriminator.model import Discriminator

    return Discriminator.from_backbone(str(tiny_model_dir)).save_pretrained(tmp_path_factory.mktemp("d") / "disc")


def _client(store):
    import mlflow

    mlflow.set_tracking_uri(f"sqlite:///{store / 'mlflow.db'}")
    return mlflow.tracking.MlflowClient()


def _history(store, run_id, key):
    return {m.step: m.value for m in _client(store).get_metric_history(run_id, key)}


def test_gate_trains_logs_alpha_and_is_saved_with_the_adapter(tmp_path, tiny_model_dir, tiny_disc_dir, monkeypatch):
    monkeypatch.chdir(ROOT)
    from gan_cot.gate import AlphaGate, load_gated_policy
    from gan_cot.trainer import AdversarialTrainer

    cfg = gate_config(tmp_path, tiny_model_dir, tiny_disc_dir)
    trainer = AdversarialTrainer(cfg, log=lambda m: None)
    result = trainer.train()
    gate = trainer.engine.module.alpha_gate
    assert gate is trainer.gate
    fresh = AlphaGate(gate.hidden_size, cfg.gate.alpha_max, cfg.gate.pooling, layer_sizes=(cfg.gate.hidden,))
    # the last layer starts at zero weight and the bias that gives alpha = 1: both moved
    assert gate.net[-1].weight.detach().abs().sum() > 0
    assert not torch.equal(gate.net[-1].bias.detach(), fresh.net[-1].bias)
    assert result["gate"] is True and 0.0 <= result["alpha_mean"] <= cfg.gate.alpha_max

    store = tmp_path / "mlruns"
    for key in ("alpha_mean", "alpha_std", "alpha_min", "alpha_max"):
        assert sorted(_history(store, result["run_id"], key)) == [0, 1], key
    run = _client(store).get_run(result["run_id"])
    levels = [k for k in run.data.metrics if k.startswith("alpha_difficulty_")]
    assert levels, run.data.metrics.keys()
    assert "final_alpha_mean" in run.data.metrics and run.data.tags["method"] == "gan-cot-gate"
    assert run.data.params["gate.enabled"] == "True"

    adapter = tmp_path / "out" / "adapter"
    assert (adapter / "alpha_gate.safetensors").exists() and (adapter / "alpha_gate.json").exists()
    loaded = load_gated_policy(adapter)
    assert loaded.gate is not None
    feats = torch.randn(3, gate.hidden_size)
    with torch.no_grad():
        assert torch.allclose(loaded.gate(feats), gate(feats))


def test_a_new_gate_samples_what_the_plain_adapter_samples(tmp_path, tiny_model_dir, tiny_disc_dir, monkeypatch):
    """A new gate gives alpha = 1.0 (the plain LoRA) and its initialisation does not shift the run's random stream,
    so round 0's rollouts are those of the same run with the gate off."""
    monkeypatch.chdir(ROOT)
    from gan_cot.trainer import AdversarialTrainer

    on = AdversarialTrainer(
        gate_config(tmp_path / "on", tiny_model_dir, tiny_disc_dir, "rounds=1"), log=lambda m: None
    )
    off = AdversarialTrainer(
        gate_config(tmp_path / "off", tiny_model_dir, tiny_disc_dir, "rounds=1", "gate.enabled=false"),
        log=lambda m: None,
    )
    a, b = on.train(), off.train()
    for key in ("rollout_tokens", "rollout_accuracy", "frac_redundant"):
        assert _history(tmp_path / "on" / "mlruns", a["run_id"], key) == _history(
            tmp_path / "off" / "mlruns", b["run_id"], key
        ), key
    assert _history(tmp_path / "on" / "mlruns", a["run_id"], "alpha_mean") == {0: 1.0}


def test_resume_with_the_gate_matches_an_unbroken_run(tmp_path, tiny_model_dir, tiny_disc_dir, monkeypatch):
    monkeypatch.chdir(ROOT)
    from gan_cot.trainer import AdversarialTrainer

    full = AdversarialTrainer(gate_config(tmp_path / "a", tiny_model_dir, tiny_disc_dir), log=lambda m: None).train()
    part = AdversarialTrainer(
        gate_config(tmp_path / "b", tiny_model_dir, tiny_disc_dir, "rounds=1"), log=lambda m: None
    ).train()
    resumed = AdversarialTrainer(gate_config(tmp_path / "b", tiny_model_dir, tiny_disc_dir), resume=True, log=print)
    done = resumed.train()
    assert resumed.start_round == 1 and done["run_id"] == part["run_id"]
    for key in ("alpha_mean", "alpha_std", "rollout_tokens", "policy_loss", "sft_loss", "kl", "rollout_accuracy"):
        a = _history(tmp_path / "a" / "mlruns", full["run_id"], key)[1]
        b = _history(tmp_path / "b" / "mlruns", done["run_id"], key)[1]
        assert abs(a - b) <= 1e-4 * max(1.0, abs(a)), (key, a, b)
    assert full["alpha_mean"] == pytest.approx(done["alpha_mean"], abs=1e-5)


def test_reinforce_gate_explores_per_chain_and_learns_from_the_gate_loss(
    tmp_path, tiny_model_dir, tiny_disc_dir, monkeypatch
):
    """gate.mode=reinforce: the G chains of a question get different alphas around the gate's, the update runs at
    those alphas, only the gate loss reaches the gate, and SFT runs at gate.sft_alpha."""
    monkeypatch.chdir(ROOT)
    from gan_cot.trainer import AdversarialTrainer

    cfg = gate_config(tmp_path, tiny_model_dir, tiny_disc_dir, "rounds=1", "gate.mode=reinforce", "gate.sigma=1.0",
                      "gate.sft_alpha=1.0", "rollout.group_size=3")  # fmt: skip
    trainer = AdversarialTrainer(cfg, log=lambda m: None)
    trainer.setup()
    samples = trainer.rollout(trainer.round_questions(0), explore=True)
    trainer.score(samples)
    g = cfg.rollout.group_size
    for k in range(0, len(samples), g):
        group = samples[k : k + g]
        assert len({s.alpha for s in group}) == g  # each chain its own alpha
        assert [s.gate_alpha for s in group] == pytest.approx([1.0] * g)  # around the new gate's 1.0
        assert all(s.alpha_logp is not None and s.seq_adv is not None for s in group)
    # without exploration (the pool, evaluation) every chain of a question runs at the gate's alpha
    plain = trainer.rollout(trainer.round_questions(0)[:1])
    assert [s.alpha for s in plain] == pytest.approx([1.0] * len(plain))

    batch = trainer.batch_tensors(samples)
    assert torch.equal(trainer.update_alpha(batch), batch["alpha"])  # a constant: the token loss skips the gate
    assert trainer.sft_alpha(batch, [3] * len(samples)) == 1.0
    # a chain with a positive advantage pulls the gate's logit towards its alpha
    batch["seq_adv"] = torch.zeros(len(samples))
    hi = max(range(len(samples)), key=lambda i: samples[i].alpha)
    batch["seq_adv"][hi] = 1.0
    before = trainer.gate(batch["features"][hi : hi + 1]).item()
    trainer.gate.zero_grad()
    trainer.gate_loss(batch).backward()
    with torch.no_grad():
        for p in trainer.gate.parameters():
            p -= 0.5 * p.grad
        after = trainer.gate(batch["features"][hi : hi + 1]).item()
    assert (after - before) * (samples[hi].alpha - before) > 0, (before, after, samples[hi].alpha)

    # a choice gate trains the same way and evaluates at one of its two alphas per question
    cfg = gate_config(tmp_path / "choice", tiny_model_dir, tiny_disc_dir, "rounds=1", "gate.mode=reinforce",
                      "gate.choices=[0.0, 1.0]", "gate.sft_alpha=1.0", "rollout.group_size=3")  # fmt: skip
    result = AdversarialTrainer(cfg, log=lambda m: None).train()
    assert {result["alpha_min"], result["alpha_max"]} <= {0.0, 1.0}
    hist = _history(tmp_path / "choice" / "mlruns", result["run_id"], "gate_loss")
    assert list(hist) == [0]


def test_fixed_alpha_zero_is_the_base(tmp_path, tiny_model_dir, tiny_disc_dir, monkeypatch):
    monkeypatch.chdir(ROOT)
    from safetensors.torch import load_file

    from gan_cot.trainer import AdversarialTrainer

    cfg = gate_config(tmp_path, tiny_model_dir, tiny_disc_dir, "gate.enabled=false", "gate.alpha=0", "rounds=1")
    trainer = AdversarialTrainer(cfg, log=lambda m: None)
    result = trainer.train()
    assert trainer.gate is None and result["alpha"] == 0.0
    for key in ("accuracy", "mean_tokens", "tokens_vs_minimal"):
        assert result[key] == result[f"base_{key}"], key
    # the saved adapter holds alpha * delta: zero
    state = load_file(str(tmp_path / "out" / "adapter" / "adapter_model.safetensors"))
    assert all(v.abs().sum() == 0 for k, v in state.items() if "lora_B" in k)
    assert not (tmp_path / "out" / "adapter" / "alpha_gate.json").exists()


def test_bad_gate_settings_are_refused_naming_the_key():
    with pytest.raises(ConfigError, match="gate.alpha_max must be > 1"):
        load_config(AdvConfig, "configs/default.yaml", ["gate.alpha_max=1.0"])
    with pytest.raises(ConfigError, match="gate.length_coef must be >= 0"):
        load_config(AdvConfig, "configs/default.yaml", ["gate.length_coef=-0.1"])
    with pytest.raises(ConfigError, match="gate.mode"):
        load_config(AdvConfig, "configs/default.yaml", ["gate.mode=sampled"])
    with pytest.raises(ConfigError, match="gate.choices needs gate.mode=reinforce"):
        load_config(AdvConfig, "configs/default.yaml", ["gate.mode=pathwise", "gate.choices=[0.0, 1.0]"])
    with pytest.raises(ConfigError, match=r"gate.choices must be \[low, high\]"):
        load_config(AdvConfig, "configs/default.yaml", ["gate.mode=reinforce", "gate.choices=[1.0, 0.0]"])
    with pytest.raises(ConfigError, match="gate.sigma must be > 0"):
        load_config(AdvConfig, "configs/default.yaml", ["gate.sigma=0"])
    with pytest.raises(ConfigError, match="gate.pooling"):
        load_config(AdvConfig, "configs/default.yaml", ["gate.pooling=max"])
    with pytest.raises(ConfigError, match="gate.alpha"):
        load_config(AdvConfig, "configs/default.yaml", ["gate.enabled=true", "gate.alpha=0.5"])
    with pytest.raises(ConfigError, match="gate.alpha must be >= 0"):
        load_config(AdvConfig, "configs/default.yaml", ["gate.enabled=false", "gate.alpha=-1"])


@pytest.fixture(scope="module")
def adapters(tmp_path_factory, tiny_model_dir):
    """Two adapter folders on the tiny model (random LoRA B, so the delta matters): one plain, one with a gate."""
    from peft import LoraConfig, get_peft_model

    from gan_cot.gate import AlphaGate, save_gate
    from gan_cot.models import load_model, load_tokenizer

    root = tmp_path_factory.mktemp("adapters")
    torch.manual_seed(5)
    cfg = LoraConfig(r=2, lora_alpha=4, target_modules=["q_proj", "v_proj"], init_lora_weights=False)
    model = get_peft_model(load_model(str(tiny_model_dir), dtype=torch.float32), cfg)
    tok = load_tokenizer(str(tiny_model_dir))
    for name in ("plain", "gated"):
        model.save_pretrained(root / name / "adapter")
        tok.save_pretrained(root / name / "adapter")
    gate = AlphaGate(model.config.hidden_size, pooling="last")
    torch.nn.init.normal_(gate.net[-1].weight, std=1.0)
    save_gate(gate, root / "gated" / "adapter")
    return root / "plain" / "adapter", root / "gated" / "adapter"


def _run(*args):
    cmd = [sys.executable, *args]
    return subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=600)


def test_evaluate_script_alpha_auto_without_a_gate_is_one_clear_error(adapters):
    plain, _ = adapters
    r = _run("scripts/evaluate.py", "--model", str(plain), "--alpha", "auto", "--n", "2")
    assert r.returncode == 2
    lines = [line for line in r.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: --alpha auto needs a saved alpha gate"), r.stderr
    r = _run("scripts/evaluate.py", "--model", str(plain), "--alpha", "fast", "--n", "2")
    assert r.returncode == 2 and "--alpha must be auto or a number" in r.stderr


def test_evaluate_script_gate_fixed_alpha_and_thinking_budget(adapters):
    _, gated = adapters
    common = ["scripts/evaluate.py", "--model", str(gated), "--n", "4", "--max-new-tokens", "12", "--json"]
    auto = json.loads(_run(*common, "--alpha", "auto", "--max-think-tokens", "3").stdout.splitlines()[-1])
    assert auto["alpha"] == "auto" and auto["max_think_tokens"] == 3 and "alpha_difficulty" in auto
    assert auto["forced"] == 4  # an untrained model never ends its chain in 3 tokens
    assert all(t <= 3 + 8 + 3 for t in [auto["mean_thinking_tokens"]])
    fixed = json.loads(_run(*common, "--alpha", "0.5").stdout.splitlines()[-1])
    assert fixed["alpha"] == 0.5 and fixed["alpha_mean"] == 0.5 and fixed["alpha_std"] == 0.0


def test_alpha_sweep_and_report_scripts(adapters, tmp_path):
    sys.path.insert(0, str(ROOT / "scripts"))
    import alpha_report
    import alpha_sweep

    _, gated = adapters
    common = ["--n", "3", "--alphas", "0,1", "--max-new-tokens", "10", "--mlflow-dir", str(tmp_path / "mlruns")]
    out = tmp_path / "mix.jsonl"
    assert alpha_sweep.main(["--model", str(gated), "--output", str(out), *common]) == 0
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(records) == 6 and {r["alpha"] for r in records} == {0.0, 1.0}
    assert set(records[0]) >= {"question_id", "alpha", "completion", "correct", "tokens"}
    assert not out.with_name(out.name + ".tmp").exists()

    assert alpha_report.main(["--model", str(gated.parent), *common, "--json"]) == 0
    run = _client(tmp_path / "mlruns").search_runs(
        [_client(tmp_path / "mlruns").get_experiment_by_name("gan-cot-alpha").experiment_id]
    )
    assert len(run) == 2 and all(r.data.tags["method"] == "alpha-sweep" for r in run)
    assert any("gate_accuracy" in r.data.metrics for r in run)
    assert (gated.parent / "mixchain.jsonl").exists() and (gated.parent / "alpha_report.png").exists()


def test_spearman_and_dominance():
    from gan_cot.sweep import dominated_by, spearman

    assert spearman([1, 2, 3, 4], [10, 20, 30, 40]) == pytest.approx(1.0)
    assert spearman([1, 2, 3, 4], [4, 3, 2, 1]) == pytest.approx(-1.0)
    assert spearman([1, 1, 2, 2], [1, 2, 3, 4]) == pytest.approx(0.894427, abs=1e-5)  # ties share ranks
    assert spearman([1, 1], [3, 4]) is None
    rows = [{"alpha": 1.0, "accuracy": 0.9, "mean_tokens": 50}, {"alpha": 2.0, "accuracy": 0.99, "mean_tokens": 40}]
    assert [r["alpha"] for r in dominated_by(rows, {"accuracy": 0.95, "mean_tokens": 45})] == [2.0]
    assert dominated_by(rows, {"accuracy": 0.99, "mean_tokens": 45}) == []  # equal accuracy is not strictly higher

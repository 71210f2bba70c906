"""The alpha gate in the adversarial trainer and at inference, on a tiny model: training moves the gate and logs
alpha, resume keeps it, a fixed alpha of 0 is the base, bad gate settings are refused, and the scripts use it."""

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from gan_cot.config_loader import ConfigError, load_config
from gan_cot.trainer_config import AdversarialConfig

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def gate_config(tiny_config):
    """configs/tiny.yaml with the learned gate at a high rate (the dataclass default gate: [0, 1], sft_alpha 1)."""
    return lambda folder, *extra: tiny_config(folder, "gate.lr=0.05", *extra)


def _client(store):
    import mlflow

    mlflow.set_tracking_uri(f"sqlite:///{store / 'mlflow.db'}")
    return mlflow.tracking.MlflowClient()


def _history(store, run_id, key):
    from gan_cot.run_logger import grouped

    return {m.step: m.value for m in _client(store).get_metric_history(run_id, grouped(key))}


def test_gate_trains_logs_alpha_and_is_saved_with_the_adapter(tmp_path, gate_config):
    from gan_cot.gate import load_gated_policy
    from gan_cot.trainer import AdversarialTrainer

    cfg = gate_config(tmp_path)
    trainer = AdversarialTrainer(cfg, log=lambda m: None)
    result = trainer.train()
    gate = trainer.strategy.model.alpha_gate
    assert gate is trainer.gate.gate
    assert gate.net[-1].weight.detach().abs().sum() > 0  # the last layer starts at zero: it moved
    assert result["gate"] is True and set(cfg.gate.choices) >= {result["alpha_min"], result["alpha_max"]}

    store = tmp_path / "mlruns"
    for key in ("alpha_mean", "alpha_std", "alpha_min", "alpha_max", "gate_loss"):
        assert sorted(_history(store, result["run_id"], key)) == [0, 1], key
    run = _client(store).get_run(result["run_id"])
    levels = [k for k in run.data.metrics if k.startswith("gate/alpha_difficulty_")]
    assert levels, run.data.metrics.keys()
    assert "final_alpha_mean" in run.data.metrics and run.data.tags["method"] == "gan-cot-gold"
    assert run.data.params["gate.kind"] == "learned"

    adapter = tmp_path / "out" / "adapter"
    assert (adapter / "alpha_gate.safetensors").exists() and (adapter / "alpha_gate.json").exists()
    loaded = load_gated_policy(adapter)
    assert loaded.gate is not None
    feats = torch.randn(3, gate.hidden_size)
    with torch.no_grad():
        assert torch.allclose(loaded.gate.logits(feats), gate.logits(feats))


def test_select_lets_the_most_accurate_alpha_answer_and_a_finished_run_resumes_into_it(tmp_path, gate_config):
    """gate.select: a finished run, resumed with it, measures its gate and each fixed alpha on validation; the most
    accurate (then the shortest) answers, is recorded in the result, the MLflow run and the saved gate, and
    load_gated_policy applies it."""
    from gan_cot.gate import load_gated_policy
    from gan_cot.trainer import AdversarialTrainer

    first = AdversarialTrainer(gate_config(tmp_path), log=lambda m: None).train()
    lines: list[str] = []
    resumed = AdversarialTrainer(gate_config(tmp_path, "gate.select=[0.0,1.0]"), resume=True, log=lines.append)
    result = resumed.train()
    assert result["run_id"] == first["run_id"]  # the same run, finished again
    m = _client(tmp_path / "mlruns").get_run(result["run_id"]).data.metrics
    found = {k: (m[f"select_accuracy_{name}"], m[f"select_tokens_{name}"])
             for k, name in (("gate", "gate"), (0.0, "alpha0"), (1.0, "alpha1"))}  # fmt: skip
    best = max(found, key=lambda k: (found[k][0], -found[k][1]))
    assert m["select_alpha"] == (-1.0 if best == "gate" else best)
    assert result["selected_alpha"] == (None if best == "gate" else best)
    assert load_gated_policy(tmp_path / "out" / "adapter").fixed_alpha == result["selected_alpha"]
    assert load_gated_policy(tmp_path / "out" / "adapter", use_selected=False).fixed_alpha is None
    assert any(line.startswith("select: validation accuracy/tokens on 4 questions") for line in lines), lines
    with pytest.raises(ConfigError, match="gate.select is for gate.kind=learned or none"):
        load_config(
            AdversarialConfig, ROOT / "configs/tiny.yaml", ["gate.kind=fixed", "gate.alpha=1", "gate.select=[0.5]"]
        )


def test_select_without_a_gate_saves_the_chosen_alpha_in_the_adapter(tmp_path, tiny_config):
    """gate.kind=none with gate.select: the plain adapter (alpha 1) against the listed alphas; a chosen alpha is folded
    into the saved adapter (alpha * delta), so any LoRA loader answers as the run was scored."""
    from safetensors.torch import load_file

    from gan_cot.trainer import AdversarialTrainer

    result = AdversarialTrainer(
        tiny_config(tmp_path, "gate.kind=none", "gate.select=[0.5]"), log=lambda m: None
    ).train()
    m = _client(tmp_path / "mlruns").get_run(result["run_id"]).data.metrics
    half_wins = (m["select_accuracy_alpha0.5"], -m["select_tokens_alpha0.5"]) > (
        m["select_accuracy_alpha1"], -m["select_tokens_alpha1"])  # fmt: skip
    assert result["selected_alpha"] == (0.5 if half_wins else None)
    assert m["select_alpha"] == (0.5 if half_wins else 1.0)
    saved = load_file(str(tmp_path / "out" / "adapter" / "adapter_model.safetensors"))
    trained = load_file(
        str(next((tmp_path / "out" / "checkpoints").glob("round-*")) / "adapter" / "adapter_model.safetensors")
    )
    for k, v in saved.items():
        expect = trained[k] * 0.5 if (half_wins and "lora_B" in k) else trained[k]
        assert torch.allclose(v, expect), k


def test_a_new_gate_picks_the_full_delta_and_does_not_shift_the_random_stream(tmp_path, gate_config):
    """A new gate picks the highest alpha (1: the plain adapter) for every question, and building it draws nothing
    from the run's random stream: without exploration (a sampled pool) its chains are those of the same run with
    the gate off."""
    from gan_cot.trainer import AdversarialTrainer

    runs = {}
    for kind in ("learned", "none"):
        trainer = AdversarialTrainer(gate_config(tmp_path / kind, f"gate.kind={kind}"), log=lambda m: None)
        trainer.setup()
        batch = trainer.rollout(trainer.round_questions(0))
        runs[kind] = batch
    assert [c.completion_ids for c in runs["learned"].chains] == [c.completion_ids for c in runs["none"].chains]
    assert {c.alpha for c in runs["learned"].chains} == {1.0} and {c.alpha for c in runs["none"].chains} == {None}


def test_resume_with_the_gate_matches_an_unbroken_run(tmp_path, gate_config):
    from gan_cot.trainer import AdversarialTrainer

    full = AdversarialTrainer(gate_config(tmp_path / "a"), log=lambda m: None).train()
    part = AdversarialTrainer(gate_config(tmp_path / "b", "rounds=1"), log=lambda m: None).train()
    resumed = AdversarialTrainer(gate_config(tmp_path / "b"), resume=True, log=print)
    done = resumed.train()
    assert resumed.start_round == 1 and done["run_id"] == part["run_id"]
    for key in ("alpha_mean", "alpha_std", "rollout_tokens", "policy_loss", "sft_loss", "kl", "rollout_accuracy"):
        a = _history(tmp_path / "a" / "mlruns", full["run_id"], key)[1]
        b = _history(tmp_path / "b" / "mlruns", done["run_id"], key)[1]
        assert abs(a - b) <= 1e-4 * max(1.0, abs(a)), (key, a, b)
    assert full["alpha_mean"] == pytest.approx(done["alpha_mean"], abs=1e-5)


def test_the_gate_explores_per_chain_and_only_its_own_loss_trains_it(tmp_path, gate_config):
    """In a round's rollout the G chains of a question draw their own alpha from the grid; the update runs each
    chain at its alpha as a constant, and SFT at gate.sft_alpha."""
    from gan_cot.trainer import AdversarialTrainer
    from gan_cot.update import batch_tensors

    cfg = gate_config(tmp_path, "rounds=1", "rollout.group_size=6", "gate.choices=[0.0, 0.5, 1.0]")
    trainer = AdversarialTrainer(cfg, log=lambda m: None)
    trainer.setup()
    batch = trainer.rollout(trainer.round_questions(0), explore=True)
    scores = trainer.score(batch)
    drawn = {c.alpha for c in batch.chains}
    assert drawn <= {0.0, 0.5, 1.0} and len(drawn) >= 2  # 24 draws at even odds
    assert all(c.question_alpha == 1.0 and c.alpha_logp == pytest.approx(math.log(1 / 3)) for c in batch.chains)
    b = batch_tensors(batch.chains, scores, list(range(len(batch.chains))), batch.features, 0, "cpu")
    run_alpha = trainer.gate.update_alpha([c.alpha for c in batch.chains])
    assert torch.equal(run_alpha, b["alpha"]) and not run_alpha.requires_grad
    assert trainer.gate.sft_alpha() == 1.0
    # a chain with a positive advantage pulls the gate towards its alpha
    b["seq_adv"] = torch.zeros(len(batch.chains))
    low = next(i for i, c in enumerate(batch.chains) if c.alpha == 0.0)
    b["seq_adv"][low] = 1.0
    gate = trainer.gate.gate
    before = gate.log_prob(b["features"][low : low + 1], torch.zeros(1)).item()
    gate.zero_grad()
    trainer.gate.extra_loss(b, clip_eps=0.2).backward()
    with torch.no_grad():
        for p in gate.parameters():
            p -= 0.5 * p.grad
    assert gate.log_prob(b["features"][low : low + 1], torch.zeros(1)).item() > before


def test_fixed_alpha_zero_is_the_base(tmp_path, gate_config):
    from safetensors.torch import load_file

    from gan_cot.trainer import AdversarialTrainer

    cfg = gate_config(tmp_path, "gate.kind=fixed", "gate.alpha=0", "rounds=1")
    trainer = AdversarialTrainer(cfg, log=lambda m: None)
    result = trainer.train()
    assert trainer.gate.kind == "fixed" and result["alpha"] == 0.0
    for key in ("accuracy", "mean_tokens", "tokens_vs_minimal"):
        assert result[key] == result[f"base_{key}"], key
    # the saved adapter holds alpha * delta: zero
    state = load_file(str(tmp_path / "out" / "adapter" / "adapter_model.safetensors"))
    assert all(v.abs().sum() == 0 for k, v in state.items() if "lora_B" in k)
    assert not (tmp_path / "out" / "adapter" / "alpha_gate.json").exists()


def test_bad_gate_settings_are_refused_naming_the_key():
    def refused(match, *overrides):
        with pytest.raises(ConfigError, match=match):
            load_config(AdversarialConfig, "configs/default.yaml", list(overrides))

    refused("gate.length_coef must be >= 0", "gate.length_coef=-0.1")
    refused(
        r"gate.kind: 'pathwise' is not allowed; choose one of \['learned', 'fixed', 'none'\]", "gate.kind=pathwise"
    )
    refused(r"gate.choices must be two or more alphas >= 0 in ascending order", "gate.choices=[1.0, 0.0]")
    refused(r"gate.choices must be two or more", "gate.choices=[1.0]")
    refused("gate.pooling", "gate.pooling=max")
    refused("gate.alpha is for gate.kind=fixed", "gate.alpha=0.5")
    refused("gate.kind=fixed needs gate.alpha >= 0", "gate.kind=fixed", "gate.alpha=-1")
    refused("gate.kind=fixed needs gate.alpha >= 0", "gate.kind=fixed")
    refused("unknown key 'gate.enabled'", "gate.enabled=true")


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
    gate = AlphaGate(model.config.hidden_size, choices=(0.0, 0.5, 1.0), pooling="last")
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
    assert r.returncode == 2 and "--alpha must be auto, gate or a number" in r.stderr


def test_evaluate_script_answers_at_the_selected_alpha_unless_told_to_let_the_gate_answer(adapters, tmp_path):
    """A gate saved with a validation-chosen alpha (gate.select): --alpha auto answers at that alpha on every question,
    --alpha gate lets the gate choose per question as before the choice."""
    import shutil

    from gan_cot.gate import load_gate, save_gate

    _, gated = adapters
    chosen = tmp_path / "chosen"
    shutil.copytree(gated, chosen)
    save_gate(load_gate(gated), chosen, selected=0.5)
    common = ["scripts/evaluate.py", "--model", str(chosen), "--n", "4", "--max-new-tokens", "8", "--json"]
    auto = json.loads(_run(*common).stdout.splitlines()[-1])
    assert auto["alpha"] == "auto" and auto["alpha_mean"] == 0.5 and auto["alpha_std"] == 0.0
    gate = json.loads(_run(*common, "--alpha", "gate").stdout.splitlines()[-1])
    own = json.loads(_run(*common[:2], str(gated), *common[3:]).stdout.splitlines()[-1])
    assert (
        gate["alpha"] == "gate" and gate["alpha_mean"] == own["alpha_mean"] and gate["alpha_std"] == own["alpha_std"]
    )


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
    import runpy

    alpha_sweep = runpy.run_path(str(ROOT / "scripts" / "alpha_sweep.py"))
    alpha_report = runpy.run_path(str(ROOT / "scripts" / "alpha_report.py"))
    _, gated = adapters
    common = ["--n", "3", "--alphas", "0,1", "--max-new-tokens", "10", "--mlflow-dir", str(tmp_path / "mlruns")]
    out = tmp_path / "mix.jsonl"
    assert alpha_sweep["main"](["--model", str(gated), "--output", str(out), *common]) == 0
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(records) == 6 and {r["alpha"] for r in records} == {0.0, 1.0}
    assert set(records[0]) >= {"question_id", "alpha", "completion", "correct", "tokens"}
    assert not out.with_name(out.name + ".tmp").exists()

    assert alpha_report["main"](["--model", str(gated.parent), *common, "--json"]) == 0
    run = _client(tmp_path / "mlruns").search_runs(
        [_client(tmp_path / "mlruns").get_experiment_by_name("gan-cot-alpha").experiment_id]
    )
    assert len(run) == 2 and all(r.data.tags["method"] == "alpha-sweep" for r in run)
    assert any("gate_accuracy" in r.data.metrics for r in run)
    assert (gated.parent / "mixchain.jsonl").exists() and (gated.parent / "alpha_report.png").exists()


def test_alpha_sweep_logs_each_alpha_as_a_method_with_per_question_rows(adapters, tmp_path):
    """``--method``: every fixed alpha becomes a comparison row (method M-alphaA, the seed, per-question rows)."""
    import runpy

    import mlflow

    from gan_cot import tracking

    alpha_sweep = runpy.run_path(str(ROOT / "scripts" / "alpha_sweep.py"))
    _, gated = adapters
    store = tmp_path / "mlruns"
    args = ["--model", str(gated), "--n", "3", "--alphas", "0,0.5", "--max-think-tokens", "4", "--seed", "7",
            "--method", "gan-cot", "--experiment", "cmp", "--mlflow-dir", str(store), "--output",
            str(tmp_path / "mix.jsonl")]  # fmt: skip
    assert alpha_sweep["main"](args) == 0
    client = _client(store)
    runs = client.search_runs([client.get_experiment_by_name("cmp").experiment_id])
    by_method = {r.data.tags["method"]: r for r in runs}
    assert set(by_method) == {"alpha-sweep", "gan-cot-alpha0", "gan-cot-alpha0.5"}
    half = by_method["gan-cot-alpha0.5"]
    assert half.data.tags["seed"] == "7" and half.data.params["alpha"] == "0.5"
    assert half.data.metrics["base_accuracy"] == by_method["gan-cot-alpha0"].data.metrics["final_accuracy"]
    mlflow.set_tracking_uri(tracking.tracking_uri(store))
    rows = tracking.load_eval_rows(half.info.run_id)
    assert len(rows) == 3 and all(r["tokens"] <= 4 + 8 + 3 for r in rows)  # the thinking budget held
    mix = [json.loads(line) for line in (tmp_path / "mix.jsonl").read_text().splitlines()]
    assert [r["correct"] for r in rows] == [m["correct"] for m in mix if m["alpha"] == 0.5]


def test_spearman_and_dominance():
    from gan_cot.alpha_sweep import dominated_by, spearman

    assert spearman([1, 2, 3, 4], [10, 20, 30, 40]) == pytest.approx(1.0)
    assert spearman([1, 2, 3, 4], [4, 3, 2, 1]) == pytest.approx(-1.0)
    assert spearman([1, 1, 2, 2], [1, 2, 3, 4]) == pytest.approx(0.894427, abs=1e-5)  # ties share ranks
    assert spearman([1, 1], [3, 4]) is None
    rows = [{"alpha": 1.0, "accuracy": 0.9, "mean_tokens": 50}, {"alpha": 2.0, "accuracy": 0.99, "mean_tokens": 40}]
    assert [r["alpha"] for r in dominated_by(rows, {"accuracy": 0.95, "mean_tokens": 45})] == [2.0]
    assert dominated_by(rows, {"accuracy": 0.99, "mean_tokens": 45}) == []  # equal accuracy is not strictly higher

"""The adversarial trainer end to end on a tiny model: two rounds move the adapter and log to MLflow."""

import json
import math

import pytest
import torch

from gan_cot.config_loader import ConfigError, load_config
from gan_cot.run_logger import grouped
from gan_cot.trainer_config import AdversarialConfig


def test_two_rounds_move_the_adapter_and_log(tmp_path, tiny_config):
    from gan_cot.trainer import AdversarialTrainer

    trainer = AdversarialTrainer(tiny_config(tmp_path), log=lambda m: None)
    result = trainer.train()
    for key in (
        "run_id",
        "output_dir",
        "base_accuracy",
        "accuracy",
        "base_mean_tokens",
        "mean_tokens",
        "wall_seconds",
    ):
        assert key in result
    lora_b = [p for n, p in trainer.strategy.model.named_parameters() if "lora_B" in n]
    assert lora_b and any(p.detach().abs().sum() > 0 for p in lora_b)  # LoRA B starts at zero: it moved
    assert (tmp_path / "out" / "adapter" / "adapter_config.json").exists()
    assert json.loads((tmp_path / "out" / "result.json").read_text())["run_id"] == result["run_id"]

    import mlflow

    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}")
    client = mlflow.tracking.MlflowClient()
    history = client.get_metric_history(result["run_id"], "rollout/tokens")
    assert sorted(m.step for m in history) == [0, 1]
    assert client.get_run(result["run_id"]).data.params["rounds"] == "2"
    # where the time went: every stage of every round, in seconds
    for stage in ("sft", "rollout", "score", "update", "refresh"):
        seconds = [m.value for m in client.get_metric_history(result["run_id"], f"time/{stage}")]
        assert len(seconds) == 2 and all(s >= 0 for s in seconds), stage
    assert sum(m.value for m in client.get_metric_history(result["run_id"], "time/rollout")) > 0


def test_bad_config_values_are_refused(tmp_path):
    with pytest.raises(ConfigError, match="credit.mode: 'nope' is not allowed"):
        load_config(AdversarialConfig, "configs/default.yaml", ["credit.mode=nope"])
    with pytest.raises(ConfigError, match="rollout.group_size must be at least 2"):
        load_config(AdversarialConfig, "configs/default.yaml", ["rollout.group_size=1"])
    with pytest.raises(ConfigError, match="unknown key 'loss.lr'"):
        load_config(AdversarialConfig, "configs/default.yaml", ["loss.lr=3"])
    assert torch.is_tensor(torch.zeros(1))


def _round_metrics(store, run_id, step):
    import mlflow

    mlflow.set_tracking_uri(f"sqlite:///{store / 'mlflow.db'}")
    client = mlflow.tracking.MlflowClient()
    keys = ("rollout_tokens", "policy_loss", "sft_loss", "kl", "rollout_accuracy")
    return {k: next(m.value for m in client.get_metric_history(run_id, grouped(k)) if m.step == step) for k in keys}


def test_stop_and_resume_matches_an_unbroken_run(tmp_path, tiny_config):
    from gan_cot.trainer import AdversarialTrainer

    full = AdversarialTrainer(tiny_config(tmp_path / "a"), log=lambda m: None).train()
    # the same run stopped after round 0, then resumed to round 1
    part = AdversarialTrainer(tiny_config(tmp_path / "b", "rounds=1"), log=lambda m: None).train()
    resumed = AdversarialTrainer(tiny_config(tmp_path / "b"), resume=True, log=lambda m: None)
    done = resumed.train()
    assert resumed.start_round == 1 and done["run_id"] == part["run_id"]  # the same MLflow run goes on
    a = _round_metrics(tmp_path / "a" / "mlruns", full["run_id"], 1)
    b = _round_metrics(tmp_path / "b" / "mlruns", done["run_id"], 1)
    for k in a:
        assert abs(a[k] - b[k]) <= 1e-4 * max(1.0, abs(a[k])), (k, a[k], b[k])


def test_non_finite_losses_are_skipped_then_stop():
    from gan_cot.distributed import NonFiniteLoss, Strategy

    logs = []
    strategy = Strategy(engine=None, rank=0, world=1, max_nan_steps=2, log=logs.append)  # no step reaches it
    assert strategy.step(torch.tensor(float("nan"))) is False
    assert "non-finite loss skipped (1 in a row)" in logs[0]
    with pytest.raises(NonFiniteLoss, match="2 non-finite losses in a row"):
        strategy.step(torch.tensor(float("inf")))


def record_lrs(monkeypatch) -> list:
    """The adapter's learning rate at every optimizer step of any trainer (a list that fills as it trains)."""
    from gan_cot.distributed import Strategy

    seen, step = [], Strategy.step
    monkeypatch.setattr(Strategy, "step", lambda self, loss: seen.append(self.lr) or step(self, loss))
    return seen


def test_pool_and_warmup_fill_sft_with_pruned_chains_at_their_own_lr(tmp_path, monkeypatch):
    """sft.pool_questions samples and prunes chains before round 0, sft.warmup_steps trains on them at sft.lr,
    and the adapter's learning rate is restored for the policy update."""
    root = __import__("pathlib").Path(__file__).resolve().parents[1]
    monkeypatch.chdir(root)
    from gan_cot.trainer import AdversarialTrainer

    cfg = load_config(
        AdversarialConfig,
        "configs/default.yaml",
        [
            "rounds=1",
            "rollout.questions=2",
            "rollout.group_size=2",
            "eval.n=4",
            "sft.steps=1",
            "sft.source=pruned",
            "sft.pool_source=samples",
            "sft.pool_questions=6",
            "sft.pool_samples=2",
            "sft.warmup_steps=2",
            "sft.lr=1e-4",
            "policy.lr=3e-3",
            "loss.micro_batch=8",
            "checkpoint_every=0",
            "policy.lr_schedule=constant",
            "discriminator.mode=frozen",  # no refresh, a short guard check: what is tested runs in seconds
            "guard.n=16",
            f"output_dir={tmp_path / 'out'}",
            f"mlflow_dir={tmp_path / 'mlruns'}",
        ],  # fmt: skip
    )
    trainer = AdversarialTrainer(cfg, log=lambda m: None)
    seen = record_lrs(monkeypatch)
    result = trainer.train()
    assert seen[:2] == [1e-4, 1e-4]  # the warm-up's two steps run at sft.lr
    assert 3e-3 in seen[2:]  # the policy update at policy.lr again
    assert trainer.strategy.lr == 3e-3

    import mlflow

    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}")
    metrics = mlflow.tracking.MlflowClient().get_run(result["run_id"]).data.metrics
    assert 1 <= metrics["warmup/pool_size"] <= 6  # the shipped base answers most questions: most get a target
    assert metrics["warmup/pool_tokens"] < metrics["warmup/pool_rollout_tokens"]  # pruned: shorter than the samples
    assert "warmup/sft_loss" in metrics
    assert metrics["time/pool"] > 0 and metrics["time/warm_start"] > 0


def test_a_frozen_pool_keeps_the_warm_start_targets(tmp_path, monkeypatch):
    """sft.pool_frozen: the rounds' chains never replace the warm-start pool's targets; without it they can."""
    root = __import__("pathlib").Path(__file__).resolve().parents[1]
    monkeypatch.chdir(root)
    from gan_cot.trainer import AdversarialTrainer

    def run(frozen):
        cfg = load_config(
            AdversarialConfig,
            "configs/default.yaml",
            ["rounds=2", "rollout.questions=6", "rollout.group_size=4", "eval.n=2", "sft.steps=1",
             "sft.pool_source=samples", "sft.pool_questions=6", "sft.warmup_steps=1", "rollout.temperature=1.5", "loss.micro_batch=12",
             "checkpoint_every=0", "discriminator.mode=frozen", "guard.n=16", f"sft.pool_frozen={frozen}",  # no refresh, short guard
             f"output_dir={tmp_path / str(frozen) / 'out'}",
             f"mlflow_dir={tmp_path / str(frozen) / 'mlruns'}"],
        )  # fmt: skip
        trainer = AdversarialTrainer(cfg, log=lambda m: None)
        pools = []
        warm_start = trainer.warm_start

        def snapshot():
            out = warm_start()
            pools.append({k: list(v) for k, v in trainer.pool.targets.items()})
            return out

        monkeypatch.setattr(trainer, "warm_start", snapshot)
        trainer.train()
        return pools[0], trainer.pool.targets

    before, after = run(True)
    assert before and after == before
    before, after = run(False)
    assert after != before  # 48 hot samples of the same 6 questions: some chain is new or shorter
    assert all(len(after[k]) <= len(v) for k, v in before.items())

    with pytest.raises(ConfigError, match="sft.pool_frozen needs a pool"):
        load_config(AdversarialConfig, "configs/default.yaml", ["sft.pool_frozen=true", "sft.pool_questions=0"])


def test_a_reference_pool_prunes_the_tasks_own_chains_without_sampling(tmp_path, monkeypatch):
    """sft.pool_source=reference: the pool is the task's reference chains with the discriminator's redundant and
    wrong steps cut (no rollout); with sft.source=shortest_correct they stay whole."""
    root = __import__("pathlib").Path(__file__).resolve().parents[1]
    monkeypatch.chdir(root)
    from gan_cot.trainer import AdversarialTrainer

    def pool(source):
        cfg = load_config(
            AdversarialConfig,
            "configs/default.yaml",
            ["sft.pool_source=reference", "sft.pool_questions=24", f"sft.source={source}", "checkpoint_every=0",
             f"output_dir={tmp_path / source}", f"mlflow_dir={tmp_path / 'mlruns'}"],
        )  # fmt: skip
        trainer = AdversarialTrainer(cfg, log=lambda m: None)
        trainer.setup()
        monkeypatch.setattr(trainer, "rollout", lambda *a, **k: pytest.fail("a reference pool samples nothing"))
        stats = trainer.pool.fill(24, trainer.disc, trainer.sample_and_score, trainer.strategy)
        texts = {i: trainer.tokenizer.decode(ids, skip_special_tokens=True) for i, ids in trainer.pool.targets.items()}
        return stats, texts, trainer

    stats, texts, trainer = pool("pruned")
    assert sorted(texts) == list(range(24)) and stats["pool_size"] == 24
    task = trainer.task
    exact = sum(texts[i].strip() == task.reference(trainer.train_examples[i], minimal=True).strip() for i in texts)
    assert exact >= 20  # the shipped discriminator cuts a verbose ledger chain down to its minimal chain
    assert all(task.verify(t, trainer.train_examples[i]) for i, t in texts.items())
    assert 0.3 < stats["pool_steps_kept"] < 0.8

    stats, texts, trainer = pool("shortest_correct")
    assert all(texts[i].strip() == task.reference(trainer.train_examples[i]).strip() for i in texts)
    assert stats["pool_steps_kept"] == 1.0

    with pytest.raises(
        ConfigError, match=r"sft.pool_source: 'hub' is not allowed; choose one of \['reference', 'samples'\]"
    ):
        load_config(AdversarialConfig, "configs/default.yaml", ["sft.pool_source=hub"])


def test_a_cosine_schedule_lowers_the_adapter_lr_round_by_round(tmp_path, monkeypatch):
    """policy.lr_schedule=cosine: full rate for the warm-up and round 0, then a half cosine down to lr_floor at the
    last round, for the policy update and the rounds' SFT steps alike."""
    root = __import__("pathlib").Path(__file__).resolve().parents[1]
    monkeypatch.chdir(root)
    from gan_cot.trainer import AdversarialTrainer

    cfg = load_config(
        AdversarialConfig,
        "configs/default.yaml",
        ["rounds=3", "rollout.questions=2", "rollout.group_size=2", "eval.n=2", "sft.steps=1", "sft.lr=1e-3", "sft.source=reference",
         "sft.pool_questions=0", "sft.warmup_steps=0", "policy.lr=2e-3", "policy.lr_schedule=cosine",
         "policy.lr_floor=0.1", "loss.micro_batch=4", "loss.epochs=1", "checkpoint_every=0",
         "discriminator.mode=frozen", "guard.n=16", f"output_dir={tmp_path / 'out'}", f"mlflow_dir={tmp_path / 'mlruns'}"],
    )  # fmt: skip
    trainer = AdversarialTrainer(cfg, log=lambda m: None)
    assert [round(trainer.lr_factor(r), 6) for r in (-1, 0, 1, 2)] == [1.0, 1.0, 0.55, 0.1]
    seen = record_lrs(monkeypatch)
    trainer.train()
    # each round: one SFT step at sft.lr x factor, then the policy update's steps at policy.lr x factor
    assert seen[0] == pytest.approx(1e-3) and seen[1] == pytest.approx(2e-3)
    assert seen[-1] == pytest.approx(2e-3 * 0.1) and pytest.approx(1e-3 * 0.1) in seen
    assert pytest.approx(1e-3 * 0.55) in seen and pytest.approx(2e-3 * 0.55) in seen

    with pytest.raises(ConfigError, match="policy.lr_schedule: 'linear' is not allowed"):
        load_config(AdversarialConfig, "configs/default.yaml", ["policy.lr_schedule=linear"])


def test_a_cosine_warm_start_ramps_up_then_falls_and_gives_the_rate_back(tmp_path, monkeypatch):
    """sft.warmup_schedule=cosine: the warm start's rate ramps up over a tenth of its steps, falls along a half cosine
    to policy.lr_floor x sft.lr at its last step, and the adapter's own rate is back afterwards; constant keeps sft.lr."""
    root = __import__("pathlib").Path(__file__).resolve().parents[1]
    monkeypatch.chdir(root)
    from gan_cot.trainer import AdversarialTrainer

    overrides = ["sft.pool_source=reference", "sft.pool_questions=8", "sft.prune_by=discriminator", "sft.batch_size=4",
                 "sft.lr=1e-3", "policy.lr=3e-3", "policy.lr_floor=0.1", "checkpoint_every=0",
                 f"output_dir={tmp_path / 'out'}", f"mlflow_dir={tmp_path / 'mlruns'}"]  # fmt: skip
    cfg = load_config(AdversarialConfig, "configs/default.yaml", [*overrides, "sft.warmup_schedule=cosine"])
    trainer = AdversarialTrainer(cfg, log=lambda m: None)
    trainer.setup()
    trainer.pool.fill(8, trainer.disc, trainer.sample_and_score, trainer.strategy)
    before = [p.detach().clone() for p in trainer.strategy.model.parameters() if p.requires_grad]
    seen = record_lrs(monkeypatch)
    trainer.pool.train(trainer.strategy, trainer.gate, -1, 20, cfg.sft.lr, trainer.warm_schedule())
    after = [p for p in trainer.strategy.model.parameters() if p.requires_grad]
    assert any(not torch.equal(a, b) for a, b in zip(after, before))  # the warm start trained the adapter
    assert trainer.strategy.lr == 3e-3  # the adapter's own rate is back for the rounds
    assert len(seen) == 20
    assert seen[0] == pytest.approx(0.5e-3) and seen[1] == pytest.approx(1e-3)  # a ramp over 20 // 10 = 2 steps
    assert all(b <= a for a, b in zip(seen[1:], seen[2:]))  # then it only falls
    assert seen[-1] == pytest.approx(1e-3 * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * 17 / 18))))

    seen.clear()  # constant (the default): every step at sft.lr
    trainer.cfg = load_config(AdversarialConfig, "configs/default.yaml", overrides)
    assert trainer.warm_schedule() is None
    trainer.pool.train(trainer.strategy, trainer.gate, -1, 5, cfg.sft.lr, trainer.warm_schedule())
    assert seen == [pytest.approx(1e-3)] * 5

    with pytest.raises(ConfigError, match="sft.warmup_schedule: 'linear' is not allowed"):
        load_config(AdversarialConfig, "configs/default.yaml", ["sft.warmup_schedule=linear"])


def test_prune_threshold_keeps_only_steps_judged_useful_with_that_confidence():
    from gan_cot.pool import useful_steps

    steps = ["Cal wins 1, 2 + 1 = 3", "Dan gets 7, 15 + 7 = 22", "so Dan has 22", "Dan eats 4, 22 - 4 = 18"]
    probs = torch.tensor([[0.72, 0.28, 0.0], [0.99, 0.01, 0.0], [0.01, 0.98, 0.01], [0.81, 0.1, 0.09]])
    assert useful_steps(steps, probs, None) == [steps[0], steps[1], steps[3]]
    assert useful_steps(steps, probs, 0.8) == [steps[1], steps[3]]
    with pytest.raises(ConfigError, match=r"sft.prune_threshold must be in \(0, 1\)"):
        load_config(AdversarialConfig, "configs/default.yaml", ["sft.prune_threshold=1.5"])


def test_gradient_checkpointing_trains_the_same_adapter(tmp_path, tiny_config):
    """policy.gradient_checkpointing recomputes activations in backward: one round moves the adapter as without it."""
    from gan_cot.trainer import AdversarialTrainer

    weights = []
    for on in (False, True):
        cfg = tiny_config(tmp_path / str(on), "rounds=1", f"policy.gradient_checkpointing={str(on).lower()}")
        trainer = AdversarialTrainer(cfg, log=lambda m: None)
        trainer.train()
        weights.append({n: p.detach().clone() for n, p in trainer.strategy.model.named_parameters() if "lora_B" in n})
    assert any(w.abs().sum() > 0 for w in weights[1].values())
    assert all(torch.allclose(weights[0][n], weights[1][n], atol=1e-5) for n in weights[0])


def test_a_script_started_from_a_process_with_its_own_group_opens_another():
    """A one-process group marks the environment; a child process (a script run from a test or a notebook) inherits
    the marks and the parent's port, and must open a group on a port of its own instead of failing to bind."""
    import subprocess
    import sys

    from gan_cot.distributed import init_distributed

    init_distributed()
    code = "import os; from gan_cot.distributed import init_distributed; init_distributed(); print(os.environ['MASTER_PORT'])"
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    import os

    assert r.stdout.strip().splitlines()[-1] != os.environ["MASTER_PORT"]

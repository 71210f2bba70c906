"""A tokenizer checked against the embedding it feeds, as a whole: every id the tokenizer can give (``len(tokenizer)``,
its special and added tokens) must be a row of the model's input embedding.

A tokenizer saved with added tokens but a model never resized (``len(tokenizer)`` 502, 500 rows) encodes most text
fine and fails only when a chain, a pad or a marker uses an added id (``IndexError: index out of range in self``,
deep inside a run). The rows are read from the safetensors header of the embedding tensor (cheap, no weights load)
and from ``config.json``'s ``vocab_size``; the smaller counts.
"""

from __future__ import annotations

import json
from pathlib import Path

# names of input-embedding tensors in the architectures Hugging Face ships (Llama/Qwen, BERT, GPT-2, NeoX, T5)
EMBEDDING_SUFFIXES = (
    "embed_tokens.weight",
    "word_embeddings.weight",
    "wte.weight",
    "embed_in.weight",
    "shared.weight",
)


def _header(path: Path) -> dict:
    try:
        with open(path, "rb") as f:
            n = int.from_bytes(f.read(8), "little")
            if n <= 0 or n > path.stat().st_size:
                return {}
            header = json.loads(f.read(n))
    except (OSError, ValueError):
        return {}
    return header if isinstance(header, dict) else {}


def embedding_rows(folder: str | Path, config: dict) -> tuple[int, str] | None:
    """The rows of a checkpoint's input embedding and where the figure comes from, or None when neither the weights'
    header nor ``config.json`` says."""
    found = []
    vocab = config.get("vocab_size")
    if not isinstance(vocab, int) and isinstance(config.get("text_config"), dict):
        vocab = config["text_config"].get("vocab_size")
    if isinstance(vocab, int) and not isinstance(vocab, bool):
        found.append((vocab, f"config.json vocab_size {vocab}"))
    for file in sorted(Path(folder).glob("*.safetensors")):
        for name, info in _header(file).items():
            shape = info.get("shape") if isinstance(info, dict) else None
            if name.endswith(EMBEDDING_SUFFIXES) and isinstance(shape, list) and shape and isinstance(shape[0], int):
                found.append((shape[0], f"{file.name} {name} {shape[0]} rows"))
                break
    if not found:
        return None
    rows = min(n for n, _ in found)
    return rows, "; ".join(text for _, text in found)


def largest_id(tokenizer) -> tuple[int, str]:
    """The largest id the tokenizer can give and what gives it: ``len(tokenizer) - 1``, or a special or added token."""
    out = [(len(tokenizer) - 1, f"len(tokenizer) {len(tokenizer)}")]
    for i, token in getattr(tokenizer, "added_tokens_decoder", {}).items():
        out.append((int(i), f"added token {getattr(token, 'content', token)!r}"))
    for i in getattr(tokenizer, "all_special_ids", []):
        if isinstance(i, int):
            out.append((i, f"special token {tokenizer.convert_ids_to_tokens(i)!r}"))
    return max(out, key=lambda item: item[0])


def vocab_problem(tokenizer, folder: str | Path, config: dict, where: str) -> str | None:
    """What is wrong between a tokenizer and the embedding of the checkpoint in ``folder``, or None."""
    rows = embedding_rows(folder, config)
    if rows is None:
        return None
    n, said = rows
    top, what = largest_id(tokenizer)
    if top < n:
        return None
    return (
        f"{where}: the tokenizer has ids up to {top} ({what}) but the model's embedding has {n} rows ({said}); the "
        "tokenizer does not belong to these weights: save the model with its own tokenizer, or resize the embedding "
        "(model.resize_token_embeddings(len(tokenizer))) and save both"
    )


def shape_problem(folder: str | Path, auto_class, config) -> str | None:
    """Whether the tensors of a checkpoint's safetensors files have the shapes its config gives them, read from the
    headers against the model built on the meta device (nothing allocated); what is wrong, or None. Tensors the
    config's model does not name are not judged (a layout's extra heads)."""
    import torch

    folder = Path(folder)
    try:
        with torch.device("meta"):
            model = auto_class.from_config(config)
    except Exception:  # noqa: BLE001 - a model this class cannot build is judged by the loader itself
        return None
    expected = {name: tuple(t.shape) for name, t in model.state_dict().items()}
    for file in sorted(folder.glob("*.safetensors")):
        for name, info in _header(file).items():
            shape = info.get("shape") if isinstance(info, dict) else None
            if name in expected and isinstance(shape, list) and tuple(shape) != expected[name]:
                return (
                    f"{folder}: {file.name} holds {name} of shape {tuple(shape)} but config.json makes it "
                    f"{expected[name]}; the weights and config.json belong to different models: save them together "
                    "(save_pretrained)"
                )
    return None


def check_policy_vocab(name_or_path: str, trust_remote_code: bool = False) -> None:
    """Raise ValueError when a local policy folder's config cannot be read or its tokenizer reaches past its
    embedding (an adapter folder: its tokenizer, or its base's, against the base's embedding). Hub ids pass: they
    are checked when they load."""
    from gan_cot.models import _adapter_base, load_tokenizer
    from gan_cot.usage import one_line

    folder = Path(name_or_path).expanduser()
    if not folder.is_dir():
        return
    weights = Path(_adapter_base(name_or_path) or folder)
    if not (weights / "config.json").is_file():
        return
    try:
        from transformers import AutoConfig, AutoModelForCausalLM

        hf_config = AutoConfig.from_pretrained(weights, trust_remote_code=trust_remote_code)  # field types, model type
        config = json.loads((weights / "config.json").read_text())
        tokenizer = load_tokenizer(name_or_path, trust_remote_code=trust_remote_code)
    except Exception as e:  # noqa: BLE001 - whatever fails here, the folder cannot be used as a policy
        raise ValueError(f"{folder}: the model's config or tokenizer cannot be loaded ({one_line(e)})") from e
    problem = vocab_problem(tokenizer, weights, config if isinstance(config, dict) else {}, str(folder))
    problem = problem or shape_problem(weights, AutoModelForCausalLM, hf_config)
    if problem:
        raise ValueError(problem)

"""A smaller backbone for a shipped discriminator: a BERT-family encoder cut to its first layers and to the WordPiece
tokens a task's text uses.

The vocabulary keeps every token the given texts produce and every single character of western scripts and symbols
(alone and as a ``##`` continuation), so the texts tokenize exactly as before and other text in those scripts still
tokenizes (into more, shorter pieces, never into the unknown token where the full vocabulary would not). The
embedding rows of the kept tokens are copied in their old order; the pooler, which token classification does not
use, is dropped.
"""

from __future__ import annotations

from pathlib import Path

import torch


def _western(char: str) -> bool:
    """Latin, Greek and Cyrillic letters, punctuation, currency, arrows and mathematical symbols."""
    code = ord(char)
    return code < 0x250 or 0x370 <= code < 0x530 or 0x2000 <= code < 0x2C00


def kept_tokens(tokenizer, texts: list[str], batch: int = 1000) -> list[int]:
    """The old ids to keep, ascending: special tokens, single characters of western scripts and symbols (alone and
    as ``##`` continuations), and every token of ``texts``."""
    keep = set(tokenizer.all_special_ids)
    for token, i in tokenizer.get_vocab().items():
        char = token[2:] if token.startswith("##") else token
        if len(char) == 1 and _western(char):
            keep.add(i)
    for k in range(0, len(texts), batch):
        for ids in tokenizer(texts[k : k + batch], add_special_tokens=False)["input_ids"]:
            keep.update(ids)
    return sorted(keep)


def shrink_backbone(source: str, output: str | Path, layers: int, texts: list[str]) -> dict:
    """Write ``source`` (a BERT-family checkpoint with a WordPiece ``vocab.txt``) cut to ``layers`` layers and the
    tokens of ``texts`` to ``output``; returns the sizes before and after."""
    from transformers import AutoModel, AutoTokenizer

    output = Path(output)
    tok = AutoTokenizer.from_pretrained(source)
    model = AutoModel.from_pretrained(source, use_safetensors=True, dtype=torch.float32)
    if layers < 1 or layers > len(model.encoder.layer):
        raise ValueError(f"layers must be in 1..{len(model.encoder.layer)}, got {layers}")
    keep = kept_tokens(tok, texts)
    small = _small_tokenizer(tok, keep)
    before = {
        "layers": len(model.encoder.layer),
        "vocab": len(tok),
        "params": sum(p.numel() for p in model.parameters()),
    }
    model.encoder.layer = model.encoder.layer[:layers]
    model.config.num_hidden_layers = layers
    rows = model.embeddings.word_embeddings.weight.data[torch.tensor(keep)]
    model.embeddings.word_embeddings = torch.nn.Embedding.from_pretrained(rows, freeze=False)
    model.config.vocab_size = len(keep)
    model.config.pad_token_id = small.pad_token_id
    model.pooler = None
    model.save_pretrained(output, safe_serialization=True)
    small.save_pretrained(output)
    for text in texts[:2000]:  # the texts must tokenize as before
        if small.tokenize(text) != tok.tokenize(text):
            raise AssertionError(f"the smaller vocabulary tokenizes {text[:60]!r} differently")
    after = {"layers": layers, "vocab": len(keep), "params": sum(p.numel() for p in model.parameters())}
    return {"before": before, "after": after}


def _small_tokenizer(tok, keep: list[int]):
    """``tok`` (a fast WordPiece tokenizer) with only the ``keep`` ids, renumbered in order."""
    import json

    from tokenizers import Tokenizer
    from transformers import PreTrainedTokenizerFast

    new_id = {old: new for new, old in enumerate(keep)}
    spec = json.loads(tok.backend_tokenizer.to_str())
    if spec["model"]["type"] != "WordPiece":
        raise ValueError(f"shrinking needs a WordPiece tokenizer, got {spec['model']['type']}")
    spec["model"]["vocab"] = {t: new_id[i] for t, i in spec["model"]["vocab"].items() if i in new_id}
    spec["added_tokens"] = [{**a, "id": new_id[a["id"]]} for a in spec["added_tokens"] if a["id"] in new_id]
    for special in (spec.get("post_processor") or {}).get("special_tokens", {}).values():
        special["ids"] = [new_id[i] for i in special["ids"]]
    names = ("unk_token", "pad_token", "cls_token", "sep_token", "mask_token")
    return PreTrainedTokenizerFast(
        tokenizer_object=Tokenizer.from_str(json.dumps(spec)), model_max_length=tok.model_max_length,
        **{n: getattr(tok, n) for n in names if getattr(tok, n, None)},
    )  # fmt: skip

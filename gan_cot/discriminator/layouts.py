"""The checkpoint layouts a discriminator can have: how a chain becomes token ids, where each step is scored, and
how the model is built and asked for the logits of its classes there. Every layout is loaded by gan-cot's own code
from safetensors.

* ``gan_cot`` (a gan-cot card): the model's ``id2label``; the prompt template, then the steps joined by the
  separator, each scored at its last token.
* ``trl_prm`` (``*ForTokenClassification`` without a card, what TRL's ``PRMTrainer`` saves): ``id2label``; BOS,
  question, then each step followed by the separator, tokenized piece by piece as TRL does; scored at each
  separator's last token.
* ``step_tag`` (named in the registry or config: a causal LM says nothing about it; Math-Shepherd): the ``good`` and
  ``bad`` tokens' logits; the question, then ``Step k: <step> <tag>`` lines; scored at each tag.
* ``qwen_prm`` (``Qwen2ForProcessRewardModel``, Qwen2.5-Math-PRM): ``LABEL_0`` (wrong), ``LABEL_1`` (correct); the
  chat template with ``<extra_0>`` after each step; scored at each ``<extra_0>``.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass

import torch

from gan_cot.discriminator.card import DiscriminatorCard, DiscriminatorError
from gan_cot.discriminator.qwen_prm import ARCHITECTURE as QWEN_PRM
from gan_cot.discriminator.qwen_prm import Qwen2ProcessRewardModel
from gan_cot.models import render_prompt
from gan_cot.steps import Step, step_end_positions, step_token_spans

QWEN_STEP_TOKEN = "<extra_0>"
QWEN_SYSTEM = "Please reason step by step, and put your final answer within \\boxed{}."
# What a layout maps its classes onto when the card or config gives no label map.
DEFAULT_LABEL_MAPS = {"qwen_prm": {"LABEL_0": "wrong", "LABEL_1": "useful"}}


@dataclass(frozen=True)
class Encoded:
    """A chain as token ids: ``prefix`` tokens before the first step, then step k ending at ``ends[k]`` (where it
    is scored; step k's tokens are ``ends[k-1] + 1 .. ends[k]``, the first step's start at ``prefix``)."""

    ids: list[int]
    prefix: int
    ends: list[int]


def recognise(config: dict, card: DiscriminatorCard | None, layout: str | None, where: str) -> str:
    """The layout of a checkpoint: ``layout`` when named (config or registry), else its card's, else its config's."""
    if layout:
        return layout
    if card is not None:
        return card.layout
    archs = config.get("architectures") or []
    if QWEN_PRM in archs:
        return "qwen_prm"
    if any(str(a).endswith("ForTokenClassification") for a in archs):
        return "trl_prm"
    kind = f"architectures {archs}" if archs else f"model_type {config.get('model_type')!r}"
    hint = (
        "if it is a step-tag PRM (Math-Shepherd), name the layout: discriminator.layout=step_tag with "
        'discriminator.step_tag={tag: ки, good: "+", bad: "-"}'
        if any(str(a).endswith("ForCausalLM") for a in archs)
        else f"gan-cot reads the layouts gan_cot, trl_prm (token classification), step_tag and {QWEN_PRM}"
    )
    raise DiscriminatorError(
        f"{where}: a checkpoint with {kind} and no discriminator card is not a step scorer; {hint}"
    )


# ------------------------------------------------------------------------------------------------ encoding


def _token_index(offsets: list[tuple[int, int]], char: int) -> int:
    """The first token that ends after character ``char``."""
    return bisect.bisect_right([e for _, e in offsets], char)


def _marked(tokenizer, text: str, start: int, marker_id: int, n_steps: int, what: str) -> Encoded:
    """Token ids of ``text`` and the ``n_steps`` positions of ``marker_id`` after character ``start``."""
    enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    ids, offsets = enc["input_ids"], [tuple(o) for o in enc["offset_mapping"]]
    prefix = _token_index(offsets, start)
    ends = [i for i in range(prefix, len(ids)) if ids[i] == marker_id]
    if len(ends) != n_steps:
        raise DiscriminatorError(
            f"the chain's {n_steps} steps give {len(ends)} {what} tokens (id {marker_id}); a step that contains the "
            "marker, or a tokenizer that merges it with its neighbours, cannot be scored"
        )
    return Encoded(ids, prefix, ends)


def encode(tokenizer, card: DiscriminatorCard, separator: str, question: str, steps: list[str]) -> Encoded:
    """A chain in ``card.layout``."""
    layout = card.layout
    if layout == "gan_cot":
        prompt = render_prompt(tokenizer, question)
        pieces, spans, pos = [], [], len(prompt)
        for i, s in enumerate(steps):
            if i:
                pieces.append(separator)
                pos += len(separator)
            spans.append(Step(s, pos, pos + len(s)))
            pieces.append(s)
            pos += len(s)
        text = prompt + "".join(pieces)
        enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
        if not steps:
            return Encoded(enc["input_ids"], len(enc["input_ids"]), [])
        token_spans = step_token_spans(tokenizer, text, spans, offsets=enc["offset_mapping"])
        return Encoded(enc["input_ids"], token_spans[0][0], step_end_positions(token_spans))
    if layout == "trl_prm":
        ids = ([tokenizer.bos_token_id] if tokenizer.bos_token_id is not None else []) + _plain(tokenizer, question)
        prefix, sep_ids, ends = len(ids), _plain(tokenizer, separator), []
        for s in steps:
            ids += _plain(tokenizer, s) + sep_ids
            ends.append(len(ids) - 1)
        return Encoded(ids, prefix, ends)
    if layout == "step_tag":
        tag = card.step_tag["tag"]
        head = f"{question} "
        body = "\n".join(f"Step {k}: {s} {tag}" for k, s in enumerate(steps, 1))
        return _marked(tokenizer, head + body, len(head), tag_ids(tokenizer, card)[0], len(steps), f"step tag {tag!r}")
    # qwen_prm
    content = QWEN_STEP_TOKEN.join(steps) + QWEN_STEP_TOKEN
    messages = [
        {"role": "system", "content": QWEN_SYSTEM},
        {"role": "user", "content": question},
        {"role": "assistant", "content": content},
    ]
    if getattr(tokenizer, "chat_template", None):
        text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=False)
    else:
        text = f"{QWEN_SYSTEM}\n{question}\n{content}"
    start = text.rfind(content)
    if start < 0:
        raise DiscriminatorError("the tokenizer's chat template does not render the assistant's message")
    return _marked(tokenizer, text, start, tag_ids(tokenizer, card)[0], len(steps), QWEN_STEP_TOKEN)


def _plain(tokenizer, text: str) -> list[int]:
    return tokenizer(text, add_special_tokens=False)["input_ids"]


def tag_ids(tokenizer, card: DiscriminatorCard) -> list[int]:
    """The special token ids a layout relies on: step_tag (tag, good, bad) as Math-Shepherd's own code finds them;
    qwen_prm (<extra_0>); none for token classification."""
    if card.layout == "qwen_prm":
        ids = _plain(tokenizer, QWEN_STEP_TOKEN)
        if len(ids) != 1:
            raise DiscriminatorError(f"the tokenizer has no single token {QWEN_STEP_TOKEN!r} (it gives ids {ids})")
        return ids
    if card.layout != "step_tag":
        return []
    tag, good, bad = (card.step_tag[k] for k in ("tag", "good", "bad"))
    pair = _plain(tokenizer, f"{good} {bad}")
    if len(pair) != 2:
        pair = [_plain(tokenizer, good)[-1], _plain(tokenizer, bad)[-1]]
    return [_plain(tokenizer, tag)[-1], *pair]


# ------------------------------------------------------------------------------------------------ models


def load_model(folder, card: DiscriminatorCard, dtype: torch.dtype):
    """The layout's model from ``folder`` (safetensors only, never code shipped with the checkpoint)."""
    from transformers import AutoModelForCausalLM, AutoModelForTokenClassification

    if card.layout == "qwen_prm":
        return Qwen2ProcessRewardModel.from_folder(folder, dtype)
    auto = AutoModelForCausalLM if card.layout == "step_tag" else AutoModelForTokenClassification
    return auto.from_pretrained(folder, use_safetensors=True, dtype=dtype, trust_remote_code=False)


def class_names(config: dict, card: DiscriminatorCard) -> list[str]:
    """The model's labels in class order: ``id2label`` (token classification), the good and bad tokens (step tag),
    ``LABEL_0`` / ``LABEL_1`` (Qwen PRM)."""
    if card.layout == "step_tag":
        return [card.step_tag["good"], card.step_tag["bad"]]
    if card.layout == "qwen_prm":
        return ["LABEL_0", "LABEL_1"]
    id2label = config.get("id2label") or {str(i): f"LABEL_{i}" for i in range(int(config.get("num_labels", 2)))}
    return [str(id2label[k]) for k in sorted(id2label, key=int)]


def step_logits(model, card: DiscriminatorCard, batch: dict, ids: list[int]) -> torch.Tensor:
    """[batch, steps, classes] logits at ``batch["positions"]`` (rows of padding steps are garbage); ``ids`` are
    the layout's token ids from :func:`tag_ids` (the step tag's good and bad tokens)."""
    positions = batch["positions"]
    if card.layout == "qwen_prm":
        return model.step_logits(batch["input_ids"], batch["attention_mask"], positions)
    if card.layout == "step_tag":  # the language-model head at the tags, for the good and bad tokens only
        hidden = model.base_model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])[0]
        idx = positions.clamp(min=0).unsqueeze(-1).expand(-1, -1, hidden.shape[-1])
        head = model.get_output_embeddings()
        rows = torch.tensor(ids[1:], device=hidden.device)
        bias = head.bias[rows] if getattr(head, "bias", None) is not None else None
        return torch.nn.functional.linear(torch.gather(hidden, 1, idx), head.weight[rows], bias)
    logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits  # [B, T, C]
    return torch.gather(logits, 1, positions.clamp(min=0).unsqueeze(-1).expand(-1, -1, logits.shape[-1]))

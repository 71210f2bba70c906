"""The step discriminator: a token-classification model that labels each step useful / redundant / wrong.

Input is the question rendered by the discriminator tokenizer's prompt template, then the chain's steps
joined by the step separator. The model predicts at each step's last token (a causal backbone has seen
the question, the earlier steps and the step itself there). Any Hugging Face token-classification
checkpoint works: ``id2label`` names are mapped onto the three classes through the card's
``label_map`` (or one the caller gives, for Hub process-reward models that ship without a card).

A checkpoint is a folder: ``config.json``, ``model.safetensors``, tokenizer files and
``discriminator_card.json`` (see :class:`DiscriminatorCard`).
"""

from __future__ import annotations

import json
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from gan_cot.models import render_prompt
from gan_cot.steps import LABELS, Step, resolve_separator, step_end_positions, step_token_spans

CARD_NAME = "discriminator_card.json"
CARD_VERSION = 1


class DiscriminatorError(ValueError):
    """A discriminator that cannot be used as asked; the message says why and how to fix it."""


@dataclass
class DiscriminatorCard:
    """What a discriminator checkpoint says about itself (``discriminator_card.json``)."""

    label_map: dict[str, str]  # model label name (config.id2label value) -> useful / redundant / wrong
    separator: str = "\n"
    base_model: str = ""
    task: str = ""
    training_data: str = ""
    metrics: dict = field(default_factory=dict)
    command: str = ""
    version: int = CARD_VERSION

    @classmethod
    def load(cls, path: Path) -> DiscriminatorCard:
        try:
            raw = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as e:
            raise DiscriminatorError(f"{path}: cannot read the discriminator card ({e})") from e
        unknown = sorted(set(raw) - set(cls.__dataclass_fields__))
        if unknown:
            raise DiscriminatorError(
                f"{path}: unknown card keys {unknown}; allowed: {sorted(cls.__dataclass_fields__)}"
            )
        if "label_map" not in raw:
            raise DiscriminatorError(f"{path}: the card has no label_map")
        return cls(**raw)

    def save(self, path: Path) -> None:
        path.write_text(json.dumps(asdict(self), indent=2) + "\n")


def class_index(id2label: dict, label_map: dict[str, str], where: str) -> list[int]:
    """For each of LABELS, the model's class id; refuses a map that does not cover the three classes."""
    bad = sorted(set(label_map.values()) - set(LABELS))
    if bad:
        raise DiscriminatorError(f"{where}: label_map maps to unknown classes {bad}; allowed: {list(LABELS)}")
    name_to_id = {str(name): int(i) for i, name in id2label.items()}
    missing_names = sorted(set(label_map) - set(name_to_id))
    if missing_names:
        raise DiscriminatorError(
            f"{where}: label_map names {missing_names} are not model labels; the model's id2label has "
            f"{sorted(name_to_id)}"
        )
    uncovered = [lab for lab in LABELS if lab not in label_map.values()]
    if uncovered:
        raise DiscriminatorError(
            f"{where}: label_map does not cover {uncovered}; map one model label to each of {list(LABELS)}, "
            "e.g. --label-map LABEL_0=useful,LABEL_1=redundant,LABEL_2=wrong"
        )
    index = []
    for label in LABELS:
        ids = [name_to_id[n] for n, target in label_map.items() if target == label]
        if len(ids) != 1:
            raise DiscriminatorError(
                f"{where}: label_map must map exactly one model label to {label!r} (found {len(ids)}); "
                f"give a map covering {list(LABELS)}, e.g. --label-map LABEL_0=useful,LABEL_1=redundant,LABEL_2=wrong"
            )
        index.append(ids[0])
    return index


# A chain any discriminator tokenizer fit for the job encodes: words, digits, arithmetic, two steps.
PROBE_QUESTION = "Tom has 12 apples and buys 3 bags of 4 apples. How many apples does he have now?"
PROBE_STEPS = ["3 bags of 4 apples are 3 * 4 = 12 apples.", "He has 12 + 12 = 24 apples."]
MAX_UNKNOWN_FRACTION = 0.5


def encode_chain(tokenizer, separator: str, question: str, steps: list[str]) -> tuple[list[int], list[int]]:
    """Token ids of the rendered question + the steps joined by ``separator``, and each step's last token."""
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
        return enc["input_ids"], []
    token_spans = step_token_spans(tokenizer, text, spans, offsets=enc["offset_mapping"])
    return enc["input_ids"], step_end_positions(token_spans)


def check_tokenizer(tokenizer, separator: str, where: str) -> None:
    """Refuse a discriminator tokenizer that cannot read chains: encoding fails, most of a plain chain comes
    out as the unknown token (a vocabulary unrelated to the text), or two steps end on the same token."""
    try:
        ids, ends = encode_chain(tokenizer, separator, PROBE_QUESTION, PROBE_STEPS)
    except Exception as e:  # noqa: BLE001 - whatever the tokenizer raises, it cannot encode chains
        raise DiscriminatorError(
            f"{where}: the discriminator tokenizer cannot encode a chain ({type(e).__name__}: {e}); "
            "save the discriminator with the tokenizer of its backbone"
        ) from e
    unk = getattr(tokenizer, "unk_token_id", None)
    unknown = sum(i == unk for i in ids) if unk is not None else 0
    if not ids or unknown > MAX_UNKNOWN_FRACTION * len(ids):
        raise DiscriminatorError(
            f"{where}: the discriminator tokenizer maps {unknown} of {len(ids)} tokens of a plain chain to its "
            f"unknown token {tokenizer.unk_token!r}; its vocabulary does not fit the text (a tokenizer from "
            "another model?); save the discriminator with the tokenizer of its backbone"
        )
    if len(set(ends)) != len(ends):
        raise DiscriminatorError(
            f"{where}: the discriminator tokenizer merges the steps of a chain (step ends at tokens {ends}); "
            "it cannot tell the steps apart"
        )


class Discriminator:
    """A token-classification model + tokenizer + card, with batched per-step scoring."""

    def __init__(self, model, tokenizer, card: DiscriminatorCard):
        self.model = model
        self.tokenizer = tokenizer
        self.card = card
        self.separator = resolve_separator(card.separator)
        self.class_ids = class_index(model.config.id2label, card.label_map, "discriminator")
        if not getattr(tokenizer, "is_fast", False):
            raise DiscriminatorError("the discriminator tokenizer must be a fast tokenizer (offset mappings)")

    # -- construction -------------------------------------------------------------------------------

    @classmethod
    def from_backbone(cls, name_or_path: str, **card_kwargs) -> Discriminator:
        """A new discriminator on a causal-LM checkpoint's backbone (the score head starts at random).

        The card's ``base_model`` is ``name_or_path`` as given, unless ``card_kwargs`` names one.
        """
        from transformers import AutoModelForTokenClassification

        from gan_cot.models import load_tokenizer

        id2label = dict(enumerate(LABELS))
        model = AutoModelForTokenClassification.from_pretrained(
            name_or_path,
            num_labels=len(LABELS),
            id2label=id2label,
            label2id={v: k for k, v in id2label.items()},
            use_safetensors=True,
            dtype=torch.float32,
        )
        tok = load_tokenizer(name_or_path)
        card_kwargs.setdefault("base_model", str(name_or_path))
        card = DiscriminatorCard(label_map={lab: lab for lab in LABELS}, **card_kwargs)
        return cls(model, tok, card)

    @classmethod
    def from_pretrained(
        cls,
        name_or_path: str,
        label_map: dict[str, str] | None = None,
        separator: str | None = None,
        cache_dir: str | None = None,
        offline: bool = False,
        allow_pickle: bool = False,
    ) -> Discriminator:
        """Load by registry name, local folder, archive URL or Hub id (see ``discriminator.registry``).

        ``label_map`` (model label name -> class) is required for a checkpoint without a card. Code shipped
        with a checkpoint is never run: the registry refuses configs that ask for it. Everything that can
        be checked without the weights (files, card, label map, tokenizer) is checked before they load.
        """
        from transformers import AutoModelForTokenClassification

        path, card, tok = cls._prepare(name_or_path, label_map, separator, cache_dir, offline, allow_pickle)
        try:
            model = AutoModelForTokenClassification.from_pretrained(
                path, use_safetensors=not allow_pickle, dtype=torch.float32
            )
        except Exception as e:  # noqa: BLE001 - any loader failure means the same thing to the user
            raise DiscriminatorError(f"{path}: the weights cannot be loaded ({type(e).__name__}: {e})") from e
        model.eval()
        return cls(model, tok, card)

    @classmethod
    def check(cls, name_or_path: str, **kwargs) -> Path:
        """Everything :meth:`from_pretrained` checks except loading the weights (fetch, files, card, label map,
        tokenizer); cheap, so a script can refuse a bad discriminator before it loads anything heavy. Takes the
        keyword arguments of :meth:`from_pretrained` (label_map, separator, cache_dir, offline, allow_pickle).
        Returns the checkpoint folder."""
        return cls._prepare(name_or_path, **kwargs)[0]

    @staticmethod
    def _prepare(name_or_path, label_map=None, separator=None, cache_dir=None, offline=False, allow_pickle=False):
        from transformers import AutoConfig, AutoTokenizer

        from gan_cot.discriminator.registry import resolve

        path = Path(resolve(name_or_path, cache_dir=cache_dir, offline=offline, allow_pickle=allow_pickle))
        card_path = path / CARD_NAME
        if card_path.exists():
            card = DiscriminatorCard.load(card_path)
            if label_map:
                card.label_map = dict(label_map)
        elif label_map:
            card = DiscriminatorCard(label_map=dict(label_map), base_model=str(name_or_path))
        else:
            raise DiscriminatorError(
                f"{path} has no {CARD_NAME}; pass the label mapping (model label -> useful/redundant/wrong), "
                "e.g. label_map={'LABEL_0': 'useful', 'LABEL_1': 'redundant', 'LABEL_2': 'wrong'}"
            )
        if separator is not None:
            card.separator = separator
        try:
            config = AutoConfig.from_pretrained(path)
        except Exception as e:  # noqa: BLE001
            raise DiscriminatorError(f"{path / 'config.json'} cannot be loaded ({type(e).__name__}: {e})") from e
        class_index(config.id2label, card.label_map, str(path / "config.json"))  # fail before loading weights
        try:
            tok = AutoTokenizer.from_pretrained(path)
        except Exception as e:  # noqa: BLE001 - any loader failure means the same thing to the user
            raise DiscriminatorError(f"{path}: the tokenizer cannot be loaded ({type(e).__name__}: {e})") from e
        if tok.pad_token is None:
            tok.pad_token = tok.eos_token
        check_tokenizer(tok, resolve_separator(card.separator), str(path))
        return path, card, tok

    def save_pretrained(self, path: str | Path) -> Path:
        """Write config, safetensors weights, tokenizer and card, through a temporary folder."""
        path = Path(path)
        tmp = path.with_name(path.name + ".tmp")
        if tmp.exists():
            shutil.rmtree(tmp)
        self.model.save_pretrained(tmp, safe_serialization=True)
        self.tokenizer.save_pretrained(tmp)
        self.card.save(tmp / CARD_NAME)
        if path.exists():
            shutil.rmtree(path)
        tmp.rename(path)
        return path

    # -- encoding and scoring -----------------------------------------------------------------------

    def encode(self, question: str, steps: list[str]) -> tuple[list[int], list[int]]:
        """Token ids of prompt + chain and the position of each step's last token."""
        return encode_chain(self.tokenizer, self.separator, question, steps)

    def collate(self, encoded: list[tuple[list[int], list[int]]]) -> dict[str, torch.Tensor]:
        """Right-padded batch; ``positions`` [batch, max_steps] with -1 where a row has fewer steps."""
        pad = self.tokenizer.pad_token_id
        width = max(len(ids) for ids, _ in encoded)
        n_steps = max(1, max(len(p) for _, p in encoded))
        input_ids = torch.full((len(encoded), width), pad, dtype=torch.long)  # [batch, seq]
        mask = torch.zeros((len(encoded), width), dtype=torch.long)
        positions = torch.full((len(encoded), n_steps), -1, dtype=torch.long)  # [batch, steps]
        for i, (ids, pos) in enumerate(encoded):
            input_ids[i, : len(ids)] = torch.tensor(ids)
            mask[i, : len(ids)] = 1
            positions[i, : len(pos)] = torch.tensor(pos, dtype=torch.long)
        return {"input_ids": input_ids, "attention_mask": mask, "positions": positions}

    def step_logits(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Logits over LABELS at every step end: [batch, steps, 3] (rows of padding steps are garbage)."""
        logits = self.model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
        logits = logits[:, :, self.class_ids]  # [batch, seq, 3] in LABELS order
        idx = batch["positions"].clamp(min=0)
        return torch.gather(logits, 1, idx.unsqueeze(-1).expand(-1, -1, len(LABELS)))

    @torch.no_grad()
    def score(self, questions: list[str], chains: list[list[str]], batch_size: int = 32) -> list[torch.Tensor]:
        """Per-step class probabilities, one ``[n_steps, 3]`` tensor (LABELS order) per chain."""
        self.model.eval()
        out: list[torch.Tensor] = []
        device = next(self.model.parameters()).device
        for i in range(0, len(questions), batch_size):
            enc = [self.encode(q, s) for q, s in zip(questions[i : i + batch_size], chains[i : i + batch_size])]
            batch = {k: v.to(device) for k, v in self.collate(enc).items()}
            probs = self.step_logits(batch).float().softmax(-1).cpu()
            out += [probs[j, : len(e[1])] for j, e in enumerate(enc)]
        return out

    def predict(self, questions: list[str], chains: list[list[str]], batch_size: int = 32) -> list[list[str]]:
        """The most likely label of every step."""
        return [[LABELS[k] for k in p.argmax(-1).tolist()] for p in self.score(questions, chains, batch_size)]

"""The step discriminator: any step scorer in one of the layouts of :mod:`gan_cot.discriminator.layouts`, giving
every step of a chain its probabilities of useful / redundant / wrong.

What the trainer sees is the same for every layout: :meth:`Discriminator.score` (``[n_steps, 3]`` per chain, LABELS
order), :meth:`Discriminator.from_pretrained` / :meth:`Discriminator.check` (by registry name, folder, archive URL or
Hub id), :meth:`Discriminator.save_pretrained` and ``.model`` (trained by the refresh through
:meth:`Discriminator.chain_logits`). Steps arrive as text, so a policy with any tokenizer can be scored; chains
longer than the model's positions are scored in windows (:mod:`gan_cot.discriminator.windows`).

A checkpoint is a folder: ``config.json``, safetensors weights, tokenizer files and, for gan-cot's own,
``discriminator_card.json`` (:class:`~gan_cot.discriminator.card.DiscriminatorCard`).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import torch

from gan_cot.discriminator import layouts
from gan_cot.discriminator.card import CARD_NAME, DiscriminatorCard, DiscriminatorError, class_index
from gan_cot.discriminator.checks import apply_checks
from gan_cot.discriminator.windows import collate, windows
from gan_cot.steps import LABELS, resolve_separator
from gan_cot.usage import one_line

__all__ = ["CARD_NAME", "Discriminator", "DiscriminatorCard", "DiscriminatorError"]

# A chain any discriminator tokenizer fit for the job encodes: words, digits, arithmetic, two steps.
PROBE_QUESTION = "Tom has 12 apples and buys 3 bags of 4 apples. How many apples does he have now?"
PROBE_STEPS = ["3 bags of 4 apples are 3 * 4 = 12 apples.", "He has 12 + 12 = 24 apples."]
MAX_UNKNOWN_FRACTION = 0.5
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def resolve_device(device) -> torch.device:
    return torch.device("cpu" if device in (None, "auto") else device)


def resolve_dtype(dtype, device: torch.device) -> torch.dtype:
    """``auto``: float32 on a CPU, bfloat16 on an accelerator."""
    if isinstance(dtype, torch.dtype):
        return dtype
    if dtype in (None, "auto"):
        return torch.float32 if device.type == "cpu" else torch.bfloat16
    return DTYPES[dtype]


class Discriminator:
    """A step scorer (model + tokenizer + card) with batched, windowed per-step scoring."""

    def __init__(self, model, tokenizer, card: DiscriminatorCard, config: dict | None = None, head=None):
        if not getattr(tokenizer, "is_fast", False):
            raise DiscriminatorError("the discriminator tokenizer must be a fast tokenizer (offset mappings)")
        self.model = model
        self.tokenizer = tokenizer
        self.card = card
        self.separator = resolve_separator(card.separator)
        config = config if config is not None else model.config.to_dict()
        self.names = layouts.class_names(config, card)
        self.index = class_index(self.names, card.label_map, "discriminator")
        self.two_way = len(self.index) == 2
        self.ids = layouts.tag_ids(tokenizer, card)
        limits = [n for n in (config.get("max_position_embeddings"), card.max_length) if n]
        self.max_len = min(limits) if limits else None
        self.head = head  # redundancy=head: a three-way Discriminator
        self.probe = None  # redundancy=probe: set by bind_policy

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    # -- construction -------------------------------------------------------------------------------

    @classmethod
    def from_backbone(cls, name_or_path: str, **card_kwargs) -> Discriminator:
        """A new three-way discriminator (gan_cot layout) on a checkpoint's backbone, its head at random.

        The card's ``base_model`` is ``name_or_path`` as given, unless ``card_kwargs`` names one.
        """
        from transformers import AutoModelForTokenClassification

        from gan_cot.models import load_tokenizer

        id2label = dict(enumerate(LABELS))
        model = AutoModelForTokenClassification.from_pretrained(
            name_or_path, num_labels=len(LABELS), id2label=id2label, label2id={v: k for k, v in id2label.items()},
            use_safetensors=True, dtype=torch.float32,
        )  # fmt: skip
        card_kwargs.setdefault("base_model", str(name_or_path))
        card = DiscriminatorCard(label_map={lab: lab for lab in LABELS}, **card_kwargs)
        return cls(model, load_tokenizer(name_or_path), card)

    @classmethod
    def from_pretrained(cls, name_or_path: str, device=None, dtype="auto", **kwargs) -> Discriminator:
        """Load by registry name, local folder, archive URL or Hub id (see ``discriminator.registry``) onto
        ``device`` (default CPU) in ``dtype`` (``auto``: float32 on a CPU, bfloat16 on an accelerator).

        ``kwargs``: the scoring settings of :data:`~gan_cot.discriminator.card.SETTINGS` (``label_map``, ``layout``,
        ``separator``, ``step_tag``, ``redundancy``, ``redundancy_head``, ``max_length``; they override the card and
        the registry entry) and ``sha256`` (an archive URL's), ``cache_dir``, ``offline``, ``allow_pickle``. Code
        shipped with a checkpoint is never run. Everything that can be checked without the weights is checked before
        they load.
        """
        path, card, tok, config = cls._prepare(name_or_path, **kwargs)
        device = resolve_device(device)
        try:
            model = layouts.load_model(path, card, resolve_dtype(dtype, device))
        except Exception as e:  # noqa: BLE001 - any loader failure means the same thing to the user
            raise DiscriminatorError(f"{path}: the weights cannot be loaded ({one_line(e)})") from e
        head = None
        if card.redundancy == "head":
            head = cls.from_pretrained(
                card.redundancy_head, device=device, dtype=dtype, cache_dir=kwargs.get("cache_dir")
            )
        model.to(device).eval()
        return cls(model, tok, card, config, head)

    @classmethod
    def from_config(cls, cfg, device=None) -> Discriminator:
        """The discriminator a training config's ``discriminator`` section names, on ``cfg.device`` (``auto``:
        ``device``, the policy's) in ``cfg.dtype``."""
        where = device if cfg.device == "auto" else cfg.device
        return cls.from_pretrained(cfg.name, device=where, dtype=cfg.dtype, sha256=cfg.sha256, **settings_of(cfg))

    @classmethod
    def check_config(cls, cfg) -> Path:
        """:meth:`check` of the discriminator a training config's ``discriminator`` section names."""
        return cls.check(cfg.name, sha256=cfg.sha256, **settings_of(cfg))

    @classmethod
    def check(cls, name_or_path: str, **kwargs) -> Path:
        """Everything :meth:`from_pretrained` checks except loading the weights (fetch, files, card, layout, label
        map, tokenizer against the vocabulary); cheap, so a script can refuse a bad discriminator before it loads
        anything heavy. Takes the keyword arguments of :meth:`from_pretrained`. Returns the checkpoint folder."""
        kwargs.pop("device", None), kwargs.pop("dtype", None)
        path, card, _, _ = cls._prepare(name_or_path, **kwargs)
        if card.redundancy == "head":
            cls.check(card.redundancy_head, cache_dir=kwargs.get("cache_dir"), offline=kwargs.get("offline", False))
        return path

    @staticmethod
    def _prepare(name_or_path, sha256=None, cache_dir=None, offline=False, allow_pickle=False, **settings):
        from transformers import AutoTokenizer

        from gan_cot.discriminator.registry import resolve_source

        found = resolve_source(name_or_path, sha256, cache_dir=cache_dir, offline=offline, allow_pickle=allow_pickle)
        path = Path(found.path)
        where = str(path / "config.json")
        try:
            config = json.loads((path / "config.json").read_text())
        except (OSError, ValueError) as e:
            raise DiscriminatorError(f"{where} cannot be read ({e})") from e
        hf_config = check_hf_config(path, where)
        card = DiscriminatorCard.load(path / CARD_NAME) if (path / CARD_NAME).exists() else None
        merged = {**found.settings, **{k: v for k, v in settings.items() if v is not None}}
        layout = layouts.recognise(config, card, merged.get("layout"), where)
        if layout == "step_tag" and not merged.get("step_tag") and not (card is not None and card.step_tag):
            from gan_cot.discriminator.registry import layout_step_tag

            merged["step_tag"] = layout_step_tag()[0]  # a local copy of a registry checkpoint: the entry's tag
        if card is None:
            card = DiscriminatorCard(layout=layout, base_model=str(name_or_path))
        card.update({**merged, "layout": layout}, where)
        if not card.label_map:
            default = layouts.DEFAULT_LABEL_MAPS.get(layout)
            if layout == "step_tag":
                default = {card.step_tag["good"]: "useful", card.step_tag["bad"]: "wrong"}
            card.label_map = dict(default or {})
        index = class_index(layouts.class_names(config, card), card.label_map, f"{path} ({layout} layout)")
        if len(index) == 3 and card.redundancy != "none":
            raise DiscriminatorError(
                f"{path}: a three-way discriminator predicts redundant itself; redundancy {card.redundancy!r} is for "
                "two-way scorers (set discriminator.redundancy=none)"
            )
        try:
            tok = AutoTokenizer.from_pretrained(path)
        except Exception as e:  # noqa: BLE001 - any loader failure means the same thing to the user
            raise DiscriminatorError(f"{path}: the tokenizer cannot be loaded ({one_line(e)})") from e
        if tok.pad_token is None:
            tok.pad_token = tok.eos_token
        check_tokenizer(tok, card, config, str(path))
        if layout != "qwen_prm":  # built by gan-cot's own class, which checks its tensors as it loads them
            from transformers import AutoModelForCausalLM, AutoModelForTokenClassification

            from gan_cot.vocab import shape_problem

            auto = AutoModelForCausalLM if layout == "step_tag" else AutoModelForTokenClassification
            problem = shape_problem(path, auto, hf_config)  # last: the label and tokenizer checks say more
            if problem:
                raise DiscriminatorError(problem)
        return path, card, tok, config

    def reload(self, path) -> Discriminator:
        """The discriminator saved at ``path``, on this one's device and dtype, with this one's policy binding."""
        p = next(self.model.parameters())
        other = Discriminator.from_pretrained(str(path), device=p.device, dtype=p.dtype)
        other.probe = self.probe
        return other

    def bind_policy(self, policy, tokenizer, answers: dict, fmt=None) -> None:
        """Give the answer-probability probe (``redundancy: probe``) the policy and the right answer of every
        question (keyed as the questions given to :meth:`score`); ``fmt`` (a :class:`gan_cot.formats.ChainFormat`,
        default hash) writes a chain the way the policy does. Does nothing for other redundancy sources."""
        if self.card.redundancy == "probe":
            from gan_cot.discriminator.redundancy import AnswerProbe

            self.probe = AnswerProbe(policy, tokenizer, answers, fmt)

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

    def encode(self, question: str, steps: list[str]) -> layouts.Encoded:
        """Token ids of the chain in this discriminator's layout and the position each step is scored at."""
        return layouts.encode(self.tokenizer, self.card, self.separator, question, steps)

    def chain_logits(self, questions: list[str], chains: list[list[str]]) -> list[torch.Tensor]:
        """The model's class logits at every step, ``[n_steps, classes]`` per chain (differentiable; classes in the
        model's order, ``self.names``)."""
        encoded = [self.encode(q, s) for q, s in zip(questions, chains)]
        rows, flat = [], [[] for _ in encoded]
        for c, enc in enumerate(encoded):
            for w in windows(enc, self.max_len):
                flat[c] += [(len(rows), j, k) for j, k in enumerate(w.steps)]
                rows.append(w)
        n_classes = len(self.names)
        if not rows:
            return [torch.zeros(0, n_classes, device=self.device) for _ in encoded]
        pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0
        batch = collate(rows, pad, self.device)
        logits = layouts.step_logits(self.model, self.card, batch, self.ids)  # [windows, steps, classes]
        width = logits.shape[1]
        out = []
        for items in flat:
            order = [r * width + j for r, j, _ in sorted(items, key=lambda t: t[2])]
            out.append(logits.reshape(-1, n_classes)[torch.tensor(order, dtype=torch.long, device=self.device)])
        return out

    def target_ids(self, labels: list[str]) -> list[int]:
        """The model class each label trains (a two-way scorer learns a redundant step as a correct one)."""
        if self.two_way:
            return [self.index[1] if lab == "wrong" else self.index[0] for lab in labels]
        return [self.index[LABELS.index(lab)] for lab in labels]

    @torch.no_grad()
    def score(self, questions: list[str], chains: list[list[str]], batch_size: int = 32) -> list[torch.Tensor]:
        """Per-step class probabilities, one ``[n_steps, 3]`` CPU tensor (LABELS order) per chain; a two-way scorer's
        redundant from its redundancy source, then the card's rule checks."""
        self.model.eval()
        out: list[torch.Tensor] = []
        for i in range(0, len(questions), batch_size):
            for lg in self.chain_logits(questions[i : i + batch_size], chains[i : i + batch_size]):
                out.append(lg.float().softmax(-1).cpu()[:, self.index])
        if self.two_way:
            redundant = self.redundancy(questions, chains)
            out = [torch.stack([p[:, 0] * (1 - r), p[:, 0] * r, p[:, 1]], -1) for p, r in zip(out, redundant)]
        return apply_checks(self.card.checks, chains, out)

    def redundancy(self, questions: list[str], chains: list[list[str]]) -> list[torch.Tensor]:
        """p(redundant | correct) per step from the card's redundancy source (two-way scorers)."""
        if self.card.redundancy == "head":
            from gan_cot.discriminator.redundancy import head_redundancy

            return head_redundancy(self.head, questions, chains)
        if self.card.redundancy == "probe":
            if self.probe is None:
                raise DiscriminatorError(
                    "redundancy probe needs the policy: call Discriminator.bind_policy(policy, tokenizer, answers) "
                    "(the trainer does), or choose discriminator.redundancy none or head"
                )
            return [r.cpu() for r in self.probe(questions, chains)]
        return [torch.zeros(len(s)) for s in chains]

    def predict(self, questions: list[str], chains: list[list[str]], batch_size: int = 32) -> list[list[str]]:
        """The most likely label of every step."""
        return [[LABELS[k] for k in p.argmax(-1).tolist()] for p in self.score(questions, chains, batch_size)]


def check_hf_config(path: Path, where: str):
    """Refuse a config.json that transformers cannot read (a field of the wrong type, an unknown model type) now,
    before any weights or engines load; cheap: the config alone is parsed."""
    from transformers import AutoConfig

    try:
        return AutoConfig.from_pretrained(path)
    except Exception as e:  # noqa: BLE001 - whatever transformers raises, the checkpoint cannot load
        raise DiscriminatorError(
            f"{where}: transformers cannot read this config ({one_line(e)}); fix the field it names, or save the "
            "checkpoint again"
        ) from e


def settings_of(cfg) -> dict:
    """The scoring settings a run config's discriminator section sets (None where it leaves them to the card)."""
    from gan_cot.discriminator.card import SETTINGS

    out = {k: getattr(cfg, k, None) for k in SETTINGS}
    if out["layout"] == "auto":
        out["layout"] = None
    return out


def check_tokenizer(tokenizer, card: DiscriminatorCard, config: dict, where: str) -> None:
    """Refuse a discriminator tokenizer that cannot read chains: encoding fails, most of a plain chain comes out as
    the unknown token (a vocabulary unrelated to the text), two steps are scored at one token, or a chain, its padding
    or its step markers get ids past the model's embedding (a tokenizer from another model). The tokenizer is then
    checked as a whole (:mod:`gan_cot.vocab`): ``len(tokenizer)`` and every special or added id against the
    embedding's rows, so an added token no sample chain uses cannot reach past them later."""
    from gan_cot.vocab import vocab_problem

    sep = resolve_separator(card.separator)
    try:
        enc = layouts.encode(tokenizer, card, sep, PROBE_QUESTION, PROBE_STEPS)
        special = layouts.tag_ids(tokenizer, card)
    except Exception as e:  # noqa: BLE001 - whatever the tokenizer raises, it cannot encode chains
        raise DiscriminatorError(
            f"{where}: the discriminator tokenizer cannot encode a chain ({one_line(e)}); "
            "save the discriminator with the tokenizer of its backbone"
        ) from e
    ids, ends = enc.ids, enc.ends
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
    vocab = config.get("vocab_size")
    top = max(ids + special + [i for i in (tokenizer.pad_token_id, tokenizer.bos_token_id) if i is not None])
    if isinstance(vocab, int) and top >= vocab:
        raise DiscriminatorError(
            f"{where}: the tokenizer has ids up to {top} but the model's embedding has {vocab} rows (config.json "
            "vocab_size); the tokenizer belongs to another model: save the discriminator with its own tokenizer"
        )
    problem = vocab_problem(tokenizer, where, config, where)
    if problem:
        raise DiscriminatorError(problem)

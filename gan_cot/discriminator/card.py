"""What a discriminator checkpoint says about itself, and how its labels map onto useful / redundant / wrong.

A card (``discriminator_card.json``) holds the scoring settings — the layout, the label map, the separator, the step
tag, the source of ``redundant`` — and a record of how the checkpoint was made. The same settings can come from the
registry entry of a checkpoint that ships no card (a Hub PRM) and from the run's config or command line; later
sources win: card < registry < config.

A **three-way** scorer maps one model label to each of useful, redundant and wrong. A **two-way** scorer (every
public process reward model) maps one label to useful (a correct step) and one to wrong; its ``redundant`` comes from
a second source (:mod:`gan_cot.discriminator.redundancy`).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

from gan_cot.steps import LABELS

CARD_NAME = "discriminator_card.json"
CARD_VERSION = 2
LAYOUTS = ("gan_cot", "trl_prm", "step_tag", "qwen_prm")
REDUNDANCY_SOURCES = ("none", "probe", "head")
STEP_TAG_KEYS = ("tag", "good", "bad")
# The scoring settings a registry entry or a run config may set on top of a checkpoint's card.
SETTINGS = ("layout", "label_map", "separator", "step_tag", "redundancy", "redundancy_head", "max_length", "checks")
LABEL_MAP_HINT = "--label-map NAME=CLASS,... (scripts) or discriminator.label_map: {NAME: CLASS} (training config)"


class DiscriminatorError(ValueError):
    """A discriminator that cannot be used as asked; the message says why and how to fix it."""


@dataclass
class DiscriminatorCard:
    """Scoring settings and provenance of a discriminator checkpoint (``discriminator_card.json``)."""

    label_map: dict[str, str] = field(default_factory=dict)  # model label name -> useful / redundant / wrong
    separator: str = "\n"
    layout: str = "gan_cot"  # one of LAYOUTS
    step_tag: dict[str, str] | None = None  # step_tag layout: {"tag": ..., "good": ..., "bad": ...}
    redundancy: str = "none"  # two-way scorers: where p(redundant) comes from (REDUNDANCY_SOURCES)
    redundancy_head: str | None = None  # redundancy=head: a three-way discriminator (name or folder)
    max_length: int | None = None  # positions per window (default: the backbone's max_position_embeddings)
    checks: list[str] = field(default_factory=list)  # rule checks next to the model (gan_cot.discriminator.checks)
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
        if not isinstance(raw, dict):
            raise DiscriminatorError(f"{path}: the card must hold a JSON object")
        names = [f.name for f in fields(cls)]
        unknown = sorted(set(raw) - set(names))
        if unknown:
            raise DiscriminatorError(f"{path}: unknown card keys {unknown}; allowed: {names}")
        card = cls(**raw)
        card.check(str(path))
        return card

    def save(self, path: Path) -> None:
        path.write_text(json.dumps(asdict(self), indent=2) + "\n")

    def update(self, settings: dict, where: str) -> None:
        """Apply scoring settings (keys of SETTINGS; None values are skipped) and check the result."""
        unknown = sorted(set(settings) - set(SETTINGS))
        if unknown:
            raise DiscriminatorError(f"{where}: unknown discriminator settings {unknown}; allowed: {list(SETTINGS)}")
        for key, value in settings.items():
            if value is not None:
                setattr(
                    self,
                    key,
                    dict(value) if isinstance(value, dict) else list(value) if isinstance(value, list) else value,
                )
        self.check(where)

    def check(self, where: str) -> None:
        if self.layout not in LAYOUTS:
            raise DiscriminatorError(f"{where}: layout {self.layout!r} is not one of {list(LAYOUTS)}")
        if self.redundancy not in REDUNDANCY_SOURCES:
            raise DiscriminatorError(
                f"{where}: redundancy {self.redundancy!r} is not one of {list(REDUNDANCY_SOURCES)}"
            )
        if self.redundancy == "head" and not self.redundancy_head:
            raise DiscriminatorError(f"{where}: redundancy head needs redundancy_head (a three-way discriminator)")
        bad = sorted({str(v) for v in self.label_map.values()} - set(LABELS))
        if bad:
            raise DiscriminatorError(f"{where}: label_map maps to unknown classes {bad}; allowed: {list(LABELS)}")
        if self.layout == "step_tag":
            tag = self.step_tag or {}
            if sorted(tag) != sorted(STEP_TAG_KEYS) or not all(isinstance(v, str) and v for v in tag.values()):
                raise DiscriminatorError(
                    f"{where}: the step_tag layout needs step_tag with non-empty {list(STEP_TAG_KEYS)}, e.g. "
                    '{"tag": "ки", "good": "+", "bad": "-"} (Math-Shepherd); got ' + repr(self.step_tag)
                )
        if not isinstance(self.checks, list) or sorted(set(self.checks) - {"arithmetic", "repeat"}):
            raise DiscriminatorError(
                f"{where}: checks must be a list of 'arithmetic' and 'repeat', got {self.checks!r}"
            )
        if self.max_length is not None and self.max_length < 8:
            raise DiscriminatorError(f"{where}: max_length must be at least 8, got {self.max_length}")


def parse_label_map(text: str | None, flag: str = "--label-map") -> dict[str, str] | None:
    """``LABEL_0=wrong,LABEL_1=useful`` -> a mapping; ValueError naming the flag for a malformed item."""
    if not text:
        return None
    out = {}
    for item in text.split(","):
        name, sep, target = item.partition("=")
        if not sep or not name.strip() or not target.strip():
            raise ValueError(f"{flag} item {item!r} is not NAME=CLASS (e.g. LABEL_0=wrong,LABEL_1=useful)")
        out[name.strip()] = target.strip()
    return out


def _example(names: list[str]) -> str:
    """A map to suggest: the labels' own names where they are classes, else TRL's order (class 1 is correct)."""
    if set(names) <= set(LABELS):
        return ",".join(f"{n}={n}" for n in names)
    targets = ("wrong", "useful") if len(names) == 2 else LABELS
    return ",".join(f"{n}={lab}" for n, lab in zip(names, targets))


def class_index(names: list[str], label_map: dict[str, str], where: str) -> list[int]:
    """The model class (a position in ``names``, the model's labels in class order) of each of LABELS.

    Three-way maps give three indices; two-way maps (useful and wrong only, every public PRM) give
    ``[useful, wrong]``. Every model label must be mapped, each class at most once.
    """
    if not label_map:
        raise DiscriminatorError(
            f"{where}: no label map; the model's labels are {names}; map them onto useful / wrong (and redundant, "
            f"for a three-way model) with {LABEL_MAP_HINT}, e.g. --label-map {_example(names)}"
        )
    unknown = sorted(set(label_map) - set(names))
    unmapped = [n for n in names if n not in label_map]
    if unknown or unmapped:
        what = f"names {unknown} that are not model labels" if unknown else f"no class for the model labels {unmapped}"
        raise DiscriminatorError(
            f"{where}: the label map has {what}; the model's labels are {names}; write {LABEL_MAP_HINT}, e.g. "
            f"--label-map {_example(names)}"
        )
    targets = [label_map[n] for n in names]
    twice = sorted({t for t in targets if targets.count(t) > 1})
    missing = [lab for lab in ("useful", "wrong") if lab not in targets]
    if twice or missing:
        problem = f"maps several model labels to {twice}" if twice else f"does not cover {missing}"
        raise DiscriminatorError(
            f"{where}: the label map {label_map} {problem}; a scorer maps one label to useful and one to wrong (a "
            f"two-way PRM), plus one to redundant for a three-way model; the model's labels are {names}"
        )
    wanted = LABELS if "redundant" in targets else ("useful", "wrong")
    return [targets.index(lab) for lab in wanted]

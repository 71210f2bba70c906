"""Find discriminator checkpoints: registry names, archive URLs, Hub ids and local folders.

:func:`resolve` turns any spec into a checkpoint folder on disk and checks it with
:func:`~gan_cot.discriminator.checkpoint.validate_checkpoint` before anything loads it:

* a local folder: checked and returned;
* a name in ``discriminators/registry.yaml`` (see the comment at the top of that file for its format);
* an ``http(s)://`` or ``file://`` URL of a ``.tar.gz``/``.tgz``/``.tar``/``.zip`` archive, pinned by its
  sha256: fetched into the cache by :func:`~gan_cot.discriminator.archive.download_archive`;
* a Hub id ``org/name`` or ``org/name@revision``: fetched with ``huggingface_hub.snapshot_download``,
  safetensors/JSON/tokenizer files only.
"""

from __future__ import annotations

import dataclasses
import os
import re
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath, PureWindowsPath

from gan_cot.discriminator.archive import (
    _SHA_RE,
    DownloadError,
    _cached_folder,
    _check_sha,
    _name_from_url,
    _one_line,
    download_archive,
)
from gan_cot.discriminator.checkpoint import (
    CheckpointError,
    DiscriminatorSourceError,
    validate_checkpoint,
)
from gan_cot.shipped import DISCRIMINATORS

DEFAULT_REGISTRY = DISCRIMINATORS / "registry.yaml"

ENTRY_KEYS = ("path", "hub", "url", "sha256", "card", "scoring")
SOURCE_KEYS = ("path", "hub", "url")
HUB_KEYS = ("repo_id", "revision")
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
_HUB_RE = re.compile(
    r"^(?P<repo>[A-Za-z0-9][A-Za-z0-9._-]*/[A-Za-z0-9][A-Za-z0-9._-]*)(?:@(?P<rev>[A-Za-z0-9._/-]+))?$"
)


class RegistryError(DiscriminatorSourceError):
    """A bad registry file or entry, or a name that is not in the registry."""


@dataclass(frozen=True)
class RegistryEntry:
    """One registry entry; exactly one of ``path``, ``repo_id`` (hub) or ``url`` is set."""

    name: str
    source: str  # "path" | "hub" | "url"
    path: Path | None = None  # absolute: resolved against the registry file's folder
    repo_id: str | None = None
    revision: str | None = None
    url: str | None = None
    sha256: str | None = None
    card: dict = field(default_factory=dict)
    scoring: dict = field(default_factory=dict)  # scoring settings over the checkpoint's card (layout, label_map...)
    registry_file: Path | None = None

    def describe(self) -> str:
        """One line: the source and the card summary."""
        if self.source == "path":
            where = f"path {self.path}" + ("" if self.path and self.path.is_dir() else " (not shipped)")
        elif self.source == "hub":
            where = f"hub {self.repo_id}" + (f"@{self.revision}" if self.revision else "")
        else:
            where = f"url {self.url}"
        parts = [f"{k}={_summary_value(v)}" for k, v in self.card.items()]
        return f"{self.name}: {where}" + (f"; {', '.join(parts)}" if parts else "")


@dataclass(frozen=True)
class ResolvedCheckpoint:
    """Where a spec resolved to: ``path`` (the folder with config.json) and how it was found."""

    path: Path
    source: str  # "path" | "hub" | "url"
    spec: str
    name: str | None = None  # registry name, when the spec was one
    sha256: str | None = None  # archive sha256, for url sources
    revision: str | None = None  # requested Hub revision, for hub sources
    cached: bool = False  # True when an archive or Hub snapshot came from the cache without a download
    settings: dict = field(default_factory=dict)  # the registry entry's scoring settings

    def to_json(self) -> dict:
        return {
            "path": str(self.path),
            "source": self.source,
            "spec": self.spec,
            "name": self.name,
            "sha256": self.sha256,
            "revision": self.revision,
            "cached": self.cached,
        }


def _summary_value(v) -> str:
    if isinstance(v, (list, tuple)):
        return "[" + ",".join(str(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{" + ",".join(f"{k}:{x}" for k, x in v.items()) + "}"
    return str(v)


def default_cache_dir() -> Path:
    """``$GAN_COT_CACHE/discriminators`` when set, else ``~/.cache/gan-cot/discriminators``."""
    root = os.environ.get("GAN_COT_CACHE")
    if root:
        return Path(root).expanduser() / "discriminators"
    return Path.home() / ".cache" / "gan-cot" / "discriminators"


# --------------------------------------------------------------------------------------------------- registry


def load_registry(path: str | os.PathLike = DEFAULT_REGISTRY) -> dict[str, RegistryEntry]:
    """Read and validate a registry file; every problem is a :class:`RegistryError` naming file, entry and key."""
    path = Path(path)
    try:
        import yaml

        with open(path, encoding="utf-8") as f:
            data = yaml.safe_load(f)
    except FileNotFoundError as e:
        raise RegistryError(f"registry file {path} does not exist") from e
    except OSError as e:
        raise RegistryError(f"registry file {path} cannot be read ({e.strerror})") from e
    except yaml.YAMLError as e:
        raise RegistryError(f"registry file {path} is not valid YAML: {_one_line(e)}") from e
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise RegistryError(f"registry file {path} must be a mapping of name -> entry, got {type(data).__name__}")
    entries = {}
    for name, raw in data.items():
        entries[str(name)] = _parse_entry(path, name, raw)
    return entries


def _parse_entry(file: Path, name, raw) -> RegistryEntry:
    where = f"registry file {file}, entry {name!r}"
    if not isinstance(name, str) or not _NAME_RE.match(name):
        raise RegistryError(f"{where}: a name is letters, digits, '.', '_' and '-' (no '/', so it is not a Hub id)")
    if not isinstance(raw, dict):
        raise RegistryError(f"{where}: an entry must be a mapping with one of {', '.join(SOURCE_KEYS)}")
    for key in raw:
        if key not in ENTRY_KEYS:
            raise RegistryError(f"{where}: unknown key {key!r}; allowed keys: {', '.join(ENTRY_KEYS)}")
    sources = [k for k in SOURCE_KEYS if k in raw]
    if not sources:
        raise RegistryError(f"{where}: no source; give exactly one of the keys {', '.join(SOURCE_KEYS)}")
    if len(sources) > 1:
        raise RegistryError(f"{where}: keys {' and '.join(sources)} both given; give exactly one source")
    source = sources[0]
    card = raw.get("card", {})
    if card is None:
        card = {}
    if not isinstance(card, dict):
        raise RegistryError(f"{where}, key 'card': must be a mapping (task, labels, base_model, metrics)")
    labels = card.get("labels")
    if labels is not None and (not isinstance(labels, list) or not all(isinstance(x, str) for x in labels)):
        raise RegistryError(f"{where}, key 'card': labels must be a list of strings, got {labels!r}")
    scoring = _parse_scoring(where, raw.get("scoring"))
    if "sha256" in raw and source != "url":
        raise RegistryError(f"{where}, key 'sha256': only url entries take a sha256 (pin a Hub entry with revision)")

    if source == "path":
        value = raw["path"]
        rel = PurePosixPath(str(value)) if isinstance(value, str) else None
        if rel is None or not value or rel.is_absolute() or ".." in rel.parts or PureWindowsPath(value).drive:
            raise RegistryError(
                f"{where}, key 'path': must be a folder relative to {file.parent} without '..', got {value!r}"
            )
        return RegistryEntry(name, "path", path=file.parent / rel, card=card, scoring=scoring, registry_file=file)

    if source == "hub":
        hub = raw["hub"]
        if isinstance(hub, str):
            m = _HUB_RE.match(hub)
            if not m:
                raise RegistryError(f"{where}, key 'hub': expected org/name or org/name@revision, got {hub!r}")
            hub = {"repo_id": m.group("repo"), "revision": m.group("rev")}
        if not isinstance(hub, dict):
            raise RegistryError(f"{where}, key 'hub': must be a mapping with repo_id (and revision)")
        for key in hub:
            if key not in HUB_KEYS:
                raise RegistryError(f"{where}, key 'hub.{key}': unknown key; allowed keys: {', '.join(HUB_KEYS)}")
        repo_id, revision = hub.get("repo_id"), hub.get("revision")
        if not isinstance(repo_id, str) or not _HUB_RE.match(repo_id) or "@" in repo_id:
            raise RegistryError(f"{where}, key 'hub.repo_id': expected org/name, got {repo_id!r}")
        if revision is not None and (not isinstance(revision, str) or not revision):
            raise RegistryError(f"{where}, key 'hub.revision': must be a branch, tag or commit string")
        return RegistryEntry(
            name, "hub", repo_id=repo_id, revision=revision, card=card, scoring=scoring, registry_file=file
        )

    url = raw["url"]
    if not isinstance(url, str) or urllib.parse.urlparse(url).scheme not in ("http", "https", "file"):
        raise RegistryError(f"{where}, key 'url': must be an http://, https:// or file:// URL, got {url!r}")
    if "sha256" not in raw:
        raise RegistryError(f"{where}, key 'sha256': missing; a url entry must pin the archive's sha256")
    sha = raw["sha256"]
    if not isinstance(sha, str) or not _SHA_RE.match(sha.lower()):
        raise RegistryError(f"{where}, key 'sha256': must be 64 hex digits, got {sha!r}")
    return RegistryEntry(name, "url", url=url, sha256=sha.lower(), card=card, scoring=scoring, registry_file=file)


def _parse_scoring(where: str, scoring) -> dict:
    """An entry's ``scoring`` mapping: the settings of a discriminator card (layout, label_map, separator...)."""
    from gan_cot.discriminator.card import SETTINGS, DiscriminatorCard, DiscriminatorError

    if scoring is None:
        return {}
    if not isinstance(scoring, dict):
        raise RegistryError(f"{where}, key 'scoring': must be a mapping of {', '.join(SETTINGS)}")
    try:
        DiscriminatorCard(layout=scoring.get("layout", "gan_cot")).update(scoring, f"{where}, key 'scoring'")
    except (DiscriminatorError, TypeError) as e:
        raise RegistryError(str(e)) from e
    return dict(scoring)


def _get_registry(registry) -> tuple[dict[str, RegistryEntry], str]:
    """``registry`` is None (the default file), a path, or an already loaded mapping."""
    if registry is None:
        return (load_registry(DEFAULT_REGISTRY) if DEFAULT_REGISTRY.exists() else {}), str(DEFAULT_REGISTRY)
    if isinstance(registry, dict):
        return registry, "the given registry"
    return load_registry(registry), str(registry)


def layout_step_tag(registry=None) -> tuple[dict | None, list[str]]:
    """The step tag the registry's ``step_tag`` entries agree on (Math-Shepherd's ``ки`` / ``+`` / ``-``), and
    their names; None when none or several: a local copy of such a checkpoint is scorable by naming the layout."""
    entries, _ = _get_registry(registry)
    found = {
        name: e.scoring["step_tag"]
        for name, e in entries.items()
        if e.scoring.get("layout") == "step_tag" and isinstance(e.scoring.get("step_tag"), dict)
    }
    tags = {tuple(sorted(tag.items())) for tag in found.values()}
    return (dict(next(iter(tags))) if len(tags) == 1 else None), sorted(found)


# --------------------------------------------------------------------------------------------------- resolve


def resolve(spec: str, *args, **kwargs) -> Path:
    """The local folder of a discriminator checkpoint (the one holding config.json), fetched if needed.

    Takes the arguments of :func:`resolve_source` and returns the ``path`` of its result.
    """
    return resolve_source(spec, *args, **kwargs).path


def resolve_source(
    spec: str,
    sha256: str | None = None,
    cache_dir: str | os.PathLike | None = None,
    offline: bool = False,
    allow_pickle: bool = False,
    registry=None,
) -> ResolvedCheckpoint:
    """:func:`resolve` with the details: source kind, registry name, sha256, whether it came from the cache.

    ``spec`` is a local folder, a registry name, an archive URL (``sha256`` from the argument or the
    registry) or a Hub id ``org/name[@revision]``. ``registry`` is None (``discriminators/registry.yaml``),
    a registry file path or a mapping from :func:`load_registry`.
    """
    spec = str(spec).strip()
    if not spec:
        raise DiscriminatorSourceError("empty discriminator spec; pass a registry name, folder, URL or Hub id")
    cache = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    sha256 = _check_sha(sha256) if sha256 is not None else None

    if _is_url(spec):
        try:
            entries, _ = _get_registry(registry)
        except RegistryError:
            if sha256 is None:
                raise
            entries = {}  # an explicit --sha256 does not need the registry
        matches = [e for e in entries.values() if e.source == "url" and e.url == spec]
        entry = matches[0] if matches else None
        if sha256 is None and entry is None:
            raise DownloadError(
                f"archive URL {spec} needs its sha256 so the download can be verified: pass --sha256 HEX, or add "
                "the URL with its sha256 to discriminators/registry.yaml and use its name"
            )
        if sha256 is not None and entry is not None and sha256 != entry.sha256:
            raise DownloadError(
                f"--sha256 {sha256} does not match the registry's sha256 {entry.sha256} for {entry.name} ({spec})"
            )
        sha = sha256 or entry.sha256
        name = entry.name if entry else _name_from_url(spec)
        return _resolve_url(spec, sha, cache, offline, allow_pickle, name, spec, entry.name if entry else None)

    local = Path(spec).expanduser()
    if local.exists():
        _no_sha(sha256, spec)
        if not local.is_dir():
            raise CheckpointError(
                f"{local} is a file, not a checkpoint folder; pass the folder, or a file:// URL with --sha256 "
                "for an archive"
            )
        return ResolvedCheckpoint(validate_checkpoint(local, allow_pickle).resolve(), "path", spec)

    entries = None
    if _NAME_RE.match(spec):
        entries, registry_name = _get_registry(registry)
        if spec in entries:
            return _resolve_entry(entries[spec], spec, sha256, cache, offline, allow_pickle)

    m = _HUB_RE.match(spec)
    if m and not spec.startswith((".", "~")):
        _no_sha(sha256, spec)
        return _resolve_hub(m.group("repo"), m.group("rev"), cache, offline, allow_pickle, spec, None)

    if entries is None:
        entries, registry_name = _get_registry(registry)
    names = ", ".join(sorted(entries)) or "(none)"
    if any(c in spec for c in "/\\") or spec.startswith((".", "~")):
        raise RegistryError(
            f"{spec} is not an existing folder, a registry name, an archive URL or a Hub id (org/name); "
            f"registry names in {registry_name}: {names}"
        )
    raise RegistryError(f"unknown discriminator {spec!r}; registry names in {registry_name}: {names}")


def _resolve_entry(entry: RegistryEntry, spec, sha256, cache, offline, allow_pickle) -> ResolvedCheckpoint:
    if entry.source == "path":
        _no_sha(sha256, spec)
        folder = entry.path
        if not folder.is_dir():
            raise RegistryError(
                f"discriminator {entry.name!r} (registry {entry.registry_file}) is not shipped in this copy: "
                f"{folder} does not exist; train it with python scripts/train_discriminator.py "
                f"(writing to {folder}) or pick another registry entry"
            )
        found = ResolvedCheckpoint(validate_checkpoint(folder, allow_pickle).resolve(), "path", spec, entry.name)
    elif entry.source == "hub":
        _no_sha(sha256, spec)
        found = _resolve_hub(entry.repo_id, entry.revision, cache, offline, allow_pickle, spec, entry.name)
    else:
        if sha256 is not None and sha256 != entry.sha256:
            raise DownloadError(
                f"--sha256 {sha256} does not match the registry's sha256 {entry.sha256} for {entry.name} ({entry.url})"
            )
        found = _resolve_url(entry.url, entry.sha256, cache, offline, allow_pickle, entry.name, spec, entry.name)
    return dataclasses.replace(found, settings=dict(entry.scoring))


def _resolve_url(url, sha, cache, offline, allow_pickle, name, spec, entry_name) -> ResolvedCheckpoint:
    cached = _cached_folder(cache, sha, name) is not None
    path = download_archive(url, sha, cache, offline=offline, allow_pickle=allow_pickle, name=name)
    return ResolvedCheckpoint(path, "url", spec, entry_name, sha256=sha, cached=cached)


def _resolve_hub(repo_id, revision, cache: Path, offline, allow_pickle, spec, entry_name) -> ResolvedCheckpoint:
    from gan_cot.discriminator.hub import fetch_snapshot

    hint = f"; if you meant a local folder, {spec} does not exist" if entry_name is None else ""
    folder = fetch_snapshot(repo_id, revision, cache / "hub", offline, allow_pickle, hint)
    return ResolvedCheckpoint(folder, "hub", spec, entry_name, revision=revision, cached=offline)


def _is_url(spec: str) -> bool:
    return spec.lower().startswith(("http://", "https://", "file://"))


def _no_sha(sha256, spec) -> None:
    if sha256 is not None:
        raise DiscriminatorSourceError(
            f"--sha256 applies only to archive URLs, not to {spec}; pin a Hub checkpoint with org/name@revision"
        )

"""Dataclass configs: YAML files plus ``key=value`` command-line overrides, checked field by field.

Every config is a (possibly nested) dataclass whose fields carry ``metadata={"help": ...}``. Loading
refuses unknown keys and wrong types with one message that names the key, the file, and what is
allowed, so a typo never silently falls back to a default.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from pathlib import Path
from typing import Any, TypeVar

import yaml

from gan_cot import shipped

T = TypeVar("T")


class ConfigError(ValueError):
    """A config value or key that cannot be used; the message says where and how to fix it."""


def field(default=dataclasses.MISSING, *, help: str, default_factory=dataclasses.MISSING):  # noqa: A002
    """``dataclasses.field`` with the help text every config field must have."""
    if default_factory is not dataclasses.MISSING:
        return dataclasses.field(default_factory=default_factory, metadata={"help": help})
    return dataclasses.field(default=default, metadata={"help": help})


def check_bounds(obj, section: str = "", positive: tuple = (), at_least_zero: tuple = ()) -> None:
    """Refuse a field of ``obj`` that is not > 0 (``positive``) or not >= 0 (``at_least_zero``); None passes (an
    optional field left null). ``section`` prefixes the key in the message (``loss.micro_batch must be ...``)."""
    prefix = f"{section}." if section else ""
    for keys, ok, what in ((positive, lambda v: v > 0, "positive"), (at_least_zero, lambda v: v >= 0, ">= 0")):
        for key in keys:
            value = getattr(obj, key)
            if value is not None and not ok(value):
                raise ConfigError(f"{prefix}{key} must be {what}, got {value}")


def _type_name(tp) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def _coerce(value: Any, tp, where: str):
    """``value`` as type ``tp``, or a ConfigError naming ``where``."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(value, arg, where)
            except ConfigError as e:
                errors.append(str(e))
        raise ConfigError(f"{where}: expected {' or '.join(_type_name(a) for a in args)}, got {value!r}")
    if origin is typing.Literal:
        if value is None and "none" in typing.get_args(tp):  # YAML reads a bare none as null
            return "none"
        if value not in typing.get_args(tp):
            raise ConfigError(f"{where}: {value!r} is not allowed; choose one of {list(typing.get_args(tp))}")
        return value
    if dataclasses.is_dataclass(tp):
        if isinstance(value, tp):
            return value
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping of {sorted(f.name for f in dataclasses.fields(tp))}")
        return from_dict(tp, value, where)
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        (arg,) = typing.get_args(tp)[:1] or (Any,)
        return [_coerce(v, arg, f"{where}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping, got {value!r}")
        return dict(value)
    if tp is Any:
        return value
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{where}: expected true or false, got {value!r}")
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise ConfigError(f"{where}: expected an integer, got {value!r}")
    if tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):  # YAML 1.1 reads 5e-4 (no dot) as a string
            try:
                return float(value)
            except ValueError:
                pass
        raise ConfigError(f"{where}: expected a number, got {value!r}")
    if tp is str:
        if isinstance(value, str):
            return value
        raise ConfigError(f"{where}: expected a string, got {value!r}")
    return value


def _child(where: str, key: str) -> str:
    """Where a key sits: ``file.yaml: section.key`` in a file, ``section.key`` below it."""
    if not where:
        return key
    return f"{where}: {key}" if where.endswith((".yaml", ".yml", ".json")) else f"{where}.{key}"


def from_dict(cls: type[T], data: dict, where: str = "config") -> T:
    """Build ``cls`` from a mapping; unknown keys and wrong types raise ConfigError."""
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    unknown = [k for k in data if k not in names]
    if unknown:
        raise ConfigError(f"{where}: unknown key {unknown[0]!r}; allowed keys: {', '.join(names)}")
    kwargs = {k: _coerce(v, hints[k], _child(where, k)) for k, v in data.items()}
    try:
        return cls(**kwargs)
    except ConfigError:
        raise
    except (TypeError, ValueError) as e:
        raise ConfigError(f"{where}: {e}") from e


def to_dict(cfg) -> dict:
    return dataclasses.asdict(cfg)


def _set_dotted(data: dict, dotted: str, value) -> None:
    keys = dotted.split(".")
    node = data
    for k in keys[:-1]:
        node = node.setdefault(k, {})
        if not isinstance(node, dict):
            raise ConfigError(f"override {dotted}: {k!r} is not a section")
    node[keys[-1]] = value


def parse_overrides(items: list[str]) -> dict:
    """``["a.b=3", "c=x"]`` -> nested dict; values are parsed as YAML (``3`` is an int, ``[1, 2]`` a list)."""
    out: dict = {}
    for item in items:
        if "=" not in item:
            raise ConfigError(f"override {item!r} is not key=value (for example steps=200 or policy.lr=1e-4)")
        key, raw = item.split("=", 1)
        try:
            value = yaml.safe_load(raw) if raw != "" else ""
        except yaml.YAMLError:
            value = raw
        if isinstance(value, str) and raw.lower() in ("none", "null"):
            value = None
        _set_dotted(out, key.strip().replace("-", "_"), value)
    return out


def _merge(base: dict, extra: dict) -> dict:
    out = dict(base)
    for k, v in extra.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def load_config(cls: type[T], path: str | Path | None = None, overrides: list[str] | None = None) -> T:
    """``cls`` from a YAML file (optional) with ``key=value`` overrides applied on top."""
    data: dict = {}
    where = "config"
    if path is not None:
        p = Path(shipped.resolve(path))
        where = str(p)
        if not p.exists():
            raise ConfigError(f"config file {p} does not exist")
        if p.is_dir():
            yamls = sorted(q.name for q in p.glob("*.yaml"))[:5]
            raise ConfigError(
                f"config {p} is a folder; a config is one YAML file"
                + (f" (this folder holds {', '.join(yamls)})" if yamls else "")
            )
        try:
            loaded = yaml.safe_load(p.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError) as e:
            raise ConfigError(f"config file {p} cannot be read ({getattr(e, 'strerror', None) or e})") from e
        except yaml.YAMLError as e:
            mark = getattr(e, "problem_mark", None)
            line = f":{mark.line + 1}" if mark else ""
            raise ConfigError(f"{p}{line}: not valid YAML ({getattr(e, 'problem', e)})") from e
        if loaded is None:
            loaded = {}
        if not isinstance(loaded, dict):
            raise ConfigError(f"{p}: the top level must be a mapping of keys to values")
        data = loaded
    extra = parse_overrides(overrides or [])
    _check_overrides(cls, extra)
    _check_sections(data, extra, where)
    return from_dict(cls, _merge(data, extra), where)


def _check_sections(data: dict, extra: dict, where: str) -> None:
    """A file's section written as a value (``discriminator: foo``) is refused even where the command line sets one of
    its keys: merging would silently drop what the file said."""
    for key, value in extra.items():
        if isinstance(value, dict) and key in data:
            if data[key] is not None and not isinstance(data[key], dict):
                raise ConfigError(f"{_child(where, key)}: expected a mapping (a section), got {data[key]!r}")
            if isinstance(data[key], dict):
                _check_sections(data[key], value, _child(where, key))


def _check_overrides(cls, extra: dict, prefix: str = "") -> None:
    """A command-line override with an unknown key or a value of the wrong type is blamed on the command line."""
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    for key, value in extra.items():
        dotted = f"{prefix}{key}"
        if key not in names:
            raise ConfigError(f"command line: unknown key {dotted!r}; allowed keys here: {', '.join(names)}")
        tp = hints[key]
        if dataclasses.is_dataclass(tp) and not isinstance(value, dict):
            first = dataclasses.fields(tp)[0].name
            raise ConfigError(
                f"command line: {dotted}={value} sets a whole section; set its keys instead ({dotted}.{first}=...; "
                f"keys: {', '.join(f.name for f in dataclasses.fields(tp))})"
            )
        if dataclasses.is_dataclass(tp):
            _check_overrides(tp, value, dotted + ".")
        elif not dataclasses.is_dataclass(tp):
            _coerce(value, tp, f"command line: {dotted}")


def describe(cls) -> str:
    """Help text listing every key of a config class with its default."""
    lines = []
    for f in dataclasses.fields(cls):
        default = f.default if f.default is not dataclasses.MISSING else "(see class)"
        lines.append(f"  {f.name} (default {default!r}): {f.metadata.get('help', '')}")
    return "\n".join(lines)

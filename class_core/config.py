"""YAML configs with ``key.sub=value`` overrides and typed sections.

- ``load_config(path, overrides)`` reads a YAML file, follows its optional ``defaults:`` list
  (other YAML files, relative to it, merged first) and applies overrides. An override of a key
  that does not exist fails and names the key; ``+key=value`` adds a new one. Values are
  parsed with ``yaml.safe_load`` (never ``eval``).
- ``from_dict(Cls, mapping, where)`` builds a dataclass and rejects unknown keys, naming them,
  so a misspelt key fails at load time instead of being silently ignored.
"""

from __future__ import annotations

import copy
import dataclasses
import difflib
import os
import types
import typing
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

import yaml

from class_core.io import atomic_write_text


class ConfigError(ValueError):
    """A config file or override is wrong; the message names the file and key."""


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise ConfigError(f"config file not found: {path}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: invalid YAML: {e}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: top level must be a mapping, got {type(data).__name__}")
    return data


def merge(base: dict[str, Any], update: Mapping[str, Any]) -> dict[str, Any]:
    """Recursive dict merge; ``update`` wins. Returns a new dict."""
    out = copy.deepcopy(base)
    for k, v in update.items():
        if isinstance(v, Mapping) and isinstance(out.get(k), dict):
            out[k] = merge(out[k], v)
        else:
            out[k] = copy.deepcopy(v)
    return out


def _load_with_defaults(path: Path, seen: tuple[Path, ...] = ()) -> dict[str, Any]:
    path = path.resolve()
    if path in seen:
        raise ConfigError(f"{path}: circular 'defaults' chain: {' -> '.join(map(str, seen + (path,)))}")
    data = _read_yaml(path)
    defaults = data.pop("defaults", [])
    if isinstance(defaults, str):
        defaults = [defaults]
    if not isinstance(defaults, list):
        raise ConfigError(f"{path}: 'defaults' must be a list of YAML file names")
    merged: dict[str, Any] = {}
    for d in defaults:
        merged = merge(merged, _load_with_defaults(path.parent / str(d), seen + (path,)))
    return merge(merged, data)


def apply_override(cfg: dict[str, Any], override: str, source: str = "command line") -> None:
    """Apply one ``a.b.c=value`` (must exist) or ``+a.b.c=value`` (may be new) in place."""
    if "=" not in override:
        raise ConfigError(f"{source}: override {override!r} is not of the form key=value")
    key, _, raw = override.partition("=")
    add = key.startswith("+")
    key = key.lstrip("+").strip()
    if not key:
        raise ConfigError(f"{source}: override {override!r} has an empty key")
    try:
        value = yaml.safe_load(raw) if raw != "" else ""
    except yaml.YAMLError as e:
        raise ConfigError(f"{source}: cannot parse value of {key!r}: {e}") from None
    parts = key.split(".")
    node: Any = cfg
    for depth, p in enumerate(parts[:-1]):
        if not isinstance(node, dict):
            raise ConfigError(f"{source}: {'.'.join(parts[:depth])!r} is not a section, cannot set {key!r}")
        if p not in node:
            if not add:
                raise ConfigError(_unknown_key_message(".".join(parts[: depth + 1]), node, source))
            node[p] = {}
        node = node[p]
    if not isinstance(node, dict):
        raise ConfigError(f"{source}: {'.'.join(parts[:-1])!r} is not a section, cannot set {key!r}")
    if parts[-1] not in node and not add:
        raise ConfigError(_unknown_key_message(key, node, source))
    node[parts[-1]] = value


def _unknown_key_message(key: str, node: Mapping[str, Any], source: str) -> str:
    leaf = key.split(".")[-1]
    close = difflib.get_close_matches(leaf, [str(k) for k in node], n=3)
    hint = f"; did you mean {', '.join(close)}?" if close else ""
    return f"{source}: unknown config key {key!r}{hint} (prefix with '+' to add a new key)"


def load_config(
    path: str | os.PathLike[str] | None, overrides: Sequence[str] = (), base: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """Load ``path`` (merged over ``base`` if given) and apply ``key=value`` overrides."""
    cfg: dict[str, Any] = copy.deepcopy(dict(base)) if base else {}
    if path is not None:
        cfg = merge(cfg, _load_with_defaults(Path(path)))
    for o in overrides:
        apply_override(cfg, o)
    return cfg


def inherit_data_source(section_data: Any, cfg: Mapping[str, Any], where: str) -> None:
    """Fill a section's ``data.store``/``data.keys`` left null from the top-level ``data:`` section.

    Stages (pre-training, fine-tuning) read the same store as the rest of a task config unless
    they name their own; the store must be set one way or the other.
    """
    top = cfg.get("data") or {}
    if section_data.store is None:
        section_data.store = top.get("store")
    if section_data.keys is None:
        section_data.keys = top.get("keys")
    if section_data.store is None:
        raise ConfigError(f"{where}.data.store (or data.store): path of the episode store is not set")


def save_config(cfg: Mapping[str, Any], path: str | os.PathLike[str]) -> Path:
    """Write the resolved config (what a run actually used) next to its outputs."""
    return atomic_write_text(path, yaml.safe_dump(_plain(cfg), sort_keys=False))


def _plain(obj: Any) -> Any:
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return _plain(dataclasses.asdict(obj))
    if isinstance(obj, Mapping):
        return {str(k): _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    if isinstance(obj, Path):
        return str(obj)
    if hasattr(obj, "item") and callable(obj.item):  # numpy scalars
        return obj.item()
    return obj


T = TypeVar("T")


def from_dict(cls: type[T], mapping: Mapping[str, Any] | None, where: str = "config") -> T:
    """Build dataclass ``cls`` from ``mapping``; unknown keys and wrong basic types fail by name.

    Nested dataclass fields are built recursively; missing keys take the field defaults.
    """
    if not dataclasses.is_dataclass(cls):
        raise TypeError(f"{cls} is not a dataclass")
    mapping = {} if mapping is None else mapping
    if not isinstance(mapping, Mapping):
        raise ConfigError(f"{where}: expected a mapping, got {type(mapping).__name__}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = [k for k in mapping if k not in fields]
    if unknown:
        msgs = []
        for k in unknown:
            close = difflib.get_close_matches(str(k), list(fields), n=2)
            msgs.append(f"{where}.{k}" + (f" (did you mean {' or '.join(close)}?)" if close else ""))
        raise ConfigError(f"unknown config key(s): {', '.join(msgs)}; allowed: {', '.join(fields)}")
    hints = typing.get_type_hints(cls)
    kwargs: dict[str, Any] = {}
    for name, value in mapping.items():
        kwargs[name] = _coerce(hints.get(name, Any), value, f"{where}.{name}")
    try:
        return cls(**kwargs)
    except TypeError as e:
        raise ConfigError(f"{where}: {e}") from None


def _coerce(tp: Any, value: Any, where: str) -> Any:
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if tp is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for a in args:
            if a is type(None):
                continue
            try:
                return _coerce(a, value, where)
            except ConfigError as e:
                errors.append(str(e))
        raise ConfigError(errors[0] if errors else f"{where}: invalid value {value!r}")
    if origin is typing.Literal:
        if value not in args:
            raise ConfigError(f"{where}: {value!r} is not one of {', '.join(map(repr, args))}")
        return value
    if dataclasses.is_dataclass(tp) and isinstance(tp, type):
        return from_dict(tp, value, where)
    if origin in (list, tuple, Sequence) or tp in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        inner = args[0] if args and args[-1] is not Ellipsis or len(args) == 2 else Any
        items = [_coerce(inner, v, f"{where}[{i}]") for i, v in enumerate(value)]
        return tuple(items) if origin is tuple or tp is tuple else items
    if origin in (dict, Mapping) or tp is dict:
        if not isinstance(value, Mapping):
            raise ConfigError(f"{where}: expected a mapping, got {value!r}")
        return dict(value)
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{where}: expected a number, got {value!r}")
        return float(value)
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where}: expected an integer, got {value!r}")
        return value
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: expected true/false, got {value!r}")
        return value
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{where}: expected a string, got {value!r}")
        return value
    return value

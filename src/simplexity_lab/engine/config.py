r"""Experiment configs as dataclasses: typed ``key=value`` overrides, dict and YAML round trips.

A config is a plain (frozen) dataclass with defaults for every field. Values given on the command
line (``--set key=value``) or in a YAML/JSON file are checked against the field's type and
converted: ``int``, ``float``, ``bool`` (``true/false/1/0/yes/no``), ``str``, ``X | None``
(``none``/``null``), ``Literal[...]`` and ``tuple[int, ...]`` (``512,256`` or ``[512, 256]``).

Example:
    >>> from dataclasses import dataclass
    >>> @dataclass(frozen=True)
    ... class Demo:
    ...     lr: float = 1e-3
    ...     hidden: tuple[int, ...] = (64,)
    >>> build_config(Demo, {"lr": "3e-4"}, ["hidden=512,256"])
    Demo(lr=0.0003, hidden=(512, 256))
"""

from __future__ import annotations

import dataclasses
import json
import types
import typing
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal, TypeVar, Union

__all__ = [
    "ConfigError",
    "build_config",
    "config_defaults",
    "config_fields",
    "config_to_dict",
    "load_config_file",
    "parse_overrides",
]

T = TypeVar("T")

_TRUE = {"true", "1", "yes", "on"}
_FALSE = {"false", "0", "no", "off"}
_NONE = {"none", "null", "~", ""}


class ConfigError(ValueError):
    """A bad config key or value (a user mistake: the CLI prints it as one line)."""


def config_fields(cls: type) -> dict[str, Any]:
    """The fields of a config dataclass and their resolved types."""
    if not (isinstance(cls, type) and dataclasses.is_dataclass(cls)):
        raise TypeError(f"cls must be a dataclass type, got {cls!r}")
    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls) if f.init}


def config_defaults(cls: type) -> dict[str, Any]:
    """The declared default of every field of a config dataclass that has one, JSON-ready.

    Used to read a config saved before a field was added as if it had that field's default
    (resuming such a run, tabulating it with newer runs).

    Example:
        >>> @dataclasses.dataclass
        ... class C:
        ...     a: int = 1
        ...     b: tuple = (2, 3)
        >>> config_defaults(C)
        {'a': 1, 'b': [2, 3]}
    """
    if not (isinstance(cls, type) and dataclasses.is_dataclass(cls)):
        raise TypeError(f"cls must be a dataclass type, got {cls!r}")
    out: dict[str, Any] = {}
    for f in dataclasses.fields(cls):
        if f.default is not dataclasses.MISSING:
            value = f.default
        elif f.default_factory is not dataclasses.MISSING:
            value = f.default_factory()
        else:
            continue
        out[f.name] = list(value) if isinstance(value, tuple) else value
    return out


def parse_overrides(items: Sequence[str]) -> dict[str, str]:
    """Split ``["key=value", ...]`` into a dict (later items win)."""
    out: dict[str, str] = {}
    for item in items:
        if not isinstance(item, str) or "=" not in item:
            raise ConfigError(f"bad override {item!r}: expected key=value")
        key, value = item.split("=", 1)
        key = key.strip()
        if not key:
            raise ConfigError(f"bad override {item!r}: empty key")
        out[key] = value.strip()
    return out


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def _convert(key: str, tp: Any, value: Any) -> Any:
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin in (Union, types.UnionType):
        if value is None or (isinstance(value, str) and value.strip().lower() in _NONE):
            if type(None) in args:
                return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _convert(key, arg, value)
            except ConfigError as error:
                errors.append(str(error))
        raise ConfigError(errors[0] if len(errors) == 1 else f"bad value {value!r} for {key}")
    if origin is Literal:
        for choice in args:
            if value == choice or (isinstance(value, str) and value == str(choice)):
                return choice
        raise ConfigError(f"{key} must be one of {list(args)}, got {value!r}")
    if origin in (tuple, list):
        if isinstance(value, str):
            text = value.strip()
            if text.startswith("[") or text.startswith("("):
                text = text[1:-1]
            items: list[Any] = [v.strip() for v in text.split(",") if v.strip()]
        elif isinstance(value, (list, tuple)):
            items = list(value)
        else:
            raise ConfigError(f"{key} must be a list, got {value!r}")
        item_type = args[0] if args else str
        converted = [_convert(key, item_type, v) for v in items]
        return tuple(converted) if origin is tuple else converted
    if tp is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
            return value.strip().lower() in _TRUE
        raise ConfigError(f"{key} must be true or false, got {value!r}")
    if tp is int:
        if isinstance(value, bool):
            raise ConfigError(f"{key} must be an int, got {value!r}")
        if isinstance(value, int):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(value, str):
            try:
                return int(value.strip().replace("_", ""))
            except ValueError:
                pass
            try:
                number = float(value)
            except ValueError:
                number = float("nan")
            if number.is_integer():
                return int(number)
        raise ConfigError(f"{key} must be an int, got {value!r}")
    if tp is float:
        if isinstance(value, bool):
            raise ConfigError(f"{key} must be a number, got {value!r}")
        if isinstance(value, (int, float)):
            return float(value)
        if isinstance(value, str):
            try:
                return float(value)
            except ValueError:
                pass
        raise ConfigError(f"{key} must be a number, got {value!r}")
    if tp is str:
        if isinstance(value, str):
            return value
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return str(value)
        raise ConfigError(f"{key} must be a string, got {value!r}")
    raise ConfigError(f"{key} has an unsupported type {_type_name(tp)}")


def build_config(
    cls: type[T], *layers: Mapping[str, Any] | Sequence[str] | None, allow_unknown: bool = False
) -> T:
    """Build ``cls`` from its defaults, updated by each layer in turn (dicts or ``key=value`` lists).

    Every value is converted to its field's type; unknown keys raise :class:`ConfigError` naming
    the valid ones. The dataclass's ``__post_init__`` (if any) runs once, on the final values, and
    its ``ValueError`` becomes a :class:`ConfigError`.
    """
    fields = config_fields(cls)
    merged: dict[str, Any] = {}
    for layer in layers:
        if layer is None:
            continue
        items = parse_overrides(layer) if not isinstance(layer, Mapping) else dict(layer)
        for key, value in items.items():
            if key not in fields:
                if allow_unknown:
                    continue
                raise ConfigError(
                    f"unknown config key {key!r}; expected one of {', '.join(sorted(fields))}"
                )
            merged[key] = _convert(key, fields[key], value)
    try:
        return cls(**merged)
    except ConfigError:
        raise
    except (ValueError, TypeError) as error:
        raise ConfigError(str(error)) from None


def config_to_dict(config: Any) -> dict[str, Any]:
    """The config as a JSON-ready dict (tuples become lists)."""
    if not dataclasses.is_dataclass(config) or isinstance(config, type):
        raise TypeError(f"config must be a dataclass instance, got {type(config).__name__}")
    out: dict[str, Any] = {}
    for f in dataclasses.fields(config):
        value = getattr(config, f.name)
        out[f.name] = list(value) if isinstance(value, tuple) else value
    return out


def load_config_file(path: str | Path) -> dict[str, Any]:
    """Read a YAML (``yaml.safe_load``) or JSON config file into a dict."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {str(path)!r} does not exist")
    text = path.read_text()
    if path.suffix in (".yaml", ".yml"):
        try:
            import yaml
        except ImportError as error:  # optional extra
            raise ConfigError("reading YAML configs needs pyyaml: pip install pyyaml") from error
        data = yaml.safe_load(text)
    else:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as error:
            raise ConfigError(f"config file {str(path)!r} is not valid JSON: {error}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"config file {str(path)!r} must hold a mapping of key: value")
    return data

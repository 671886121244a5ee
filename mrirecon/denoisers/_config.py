"""Typed conversion between plain dicts (YAML, JSON, checkpoints) and config dataclasses.

Used by :func:`mrirecon.denoisers.registry.build_model` and by :mod:`mrirecon.training.config`
(recipes, ``key=value`` overrides). It sits at the lowest layer that needs it (torch-free, stdlib
only, PyYAML imported lazily for command-line values).

Rules: unknown keys are errors (with a close-match suggestion); a value must have the field's type
(``int`` for ``int``; ``int`` or ``float`` or a numeric string such as YAML's ``1e-3`` for ``float``;
``bool`` only for ``bool``; one of the listed values for ``Literal``; ``None`` only for optional
fields; lists for tuples, checked element-wise); nested dataclasses are built recursively. Errors
name the full key path, what was expected and what arrived.
"""
from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from typing import Any, Literal, Union

from mrirecon.errors import ConfigError


class RawValue(str):
    """A value typed on the command line (``key=value``), parsed according to the field's type.

    A field that takes strings receives the text unchanged (``run.name=007`` stays ``"007"``); any other
    field receives ``yaml.safe_load(text)`` (``true``, ``3``, ``[1, 2]``, ``null``).
    """


def _type_name(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in typing.get_args(tp))
    if origin in (Union, types.UnionType):
        return " or ".join(_type_name(a) for a in typing.get_args(tp))
    if tp is type(None):
        return "null"
    if origin in (tuple, list):
        args = typing.get_args(tp)
        if origin is tuple and len(args) == 2 and args[1] is Ellipsis:
            return f"a list of {_type_name(args[0])}"
        if origin is tuple:
            return f"a list of {len(args)} values ({', '.join(_type_name(a) for a in args)})"
        return f"a list of {_type_name(args[0])}" if args else "a list"
    if origin is dict:
        return "a mapping"
    if dataclasses.is_dataclass(tp):
        return f"a mapping ({tp.__name__})"
    return getattr(tp, "__name__", str(tp))


def _string_type(tp: Any) -> bool:
    """``str`` or ``str | None``: fields whose command-line text is taken verbatim."""
    if tp is str:
        return True
    args = typing.get_args(tp)
    return (typing.get_origin(tp) in (Union, types.UnionType)
            and all(a is str or a is type(None) for a in args))


def _parse_raw(tp: Any, raw: RawValue) -> Any:
    text = str(raw)
    if _string_type(tp) and not (_optional(tp) and text.lower() in ("null", "none", "~")):
        return text
    if typing.get_origin(tp) is Literal and text in typing.get_args(tp):
        return text
    import yaml  # noqa: PLC0415  (only needed for command-line values)

    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"cannot parse {text!r}: {exc}") from None


def _optional(tp: Any) -> bool:
    return typing.get_origin(tp) in (Union, types.UnionType) and type(None) in typing.get_args(tp)


def coerce(tp: Any, value: Any, where: str) -> Any:
    """Check ``value`` against the type hint ``tp`` and return it converted (lists to tuples, ints to floats).

    Raises:
        ConfigError: the value does not have the expected type (the message names ``where``).
    """
    if isinstance(value, RawValue):
        value = _parse_raw(tp, value)
    origin = typing.get_origin(tp)
    bad = ConfigError(f"{where}: expected {_type_name(tp)}, got {value!r} ({type(value).__name__})")
    if tp is Any:
        return value
    if dataclasses.is_dataclass(tp) and isinstance(tp, type):
        return dataclass_from_dict(tp, value, where)
    if origin in (Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None:
            if type(None) in args:
                return None
            raise bad
        for a in args:
            if a is type(None):
                continue
            try:
                return coerce(a, value, where)
            except ConfigError:
                continue
        raise bad
    if origin is Literal:
        if any(a == value and type(a) is type(value) for a in typing.get_args(tp)):
            return value
        raise bad
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise bad
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise bad
    if tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):
            try:
                return float(value)
            except ValueError:
                raise bad from None
        raise bad
    if tp is str:
        if isinstance(value, str):
            return value
        raise bad
    if origin in (tuple, list):
        if not isinstance(value, (list, tuple)):
            raise bad
        args = typing.get_args(tp)
        if origin is tuple and len(args) == 2 and args[1] is Ellipsis:
            return tuple(coerce(args[0], v, f"{where}[{i}]") for i, v in enumerate(value))
        if origin is tuple and args:
            if len(value) != len(args):
                raise bad
            return tuple(coerce(a, v, f"{where}[{i}]") for i, (a, v) in enumerate(zip(args, value)))
        elem = args[0] if args else Any
        return [coerce(elem, v, f"{where}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise bad
        kt, vt = typing.get_args(tp) or (Any, Any)
        return {coerce(kt, k, f"{where} key"): coerce(vt, v, f"{where}.{k}") for k, v in value.items()}
    if isinstance(tp, type):
        if isinstance(value, tp):
            return value
        raise bad
    raise ConfigError(f"{where}: unsupported config type {tp!r}")


def _join(where: str, key: str) -> str:
    return f"{where}.{key}" if where else key


def unknown_key_error(where: str, key: str, valid: list[str]) -> ConfigError:
    """A :class:`ConfigError` for an unknown key, listing the valid keys and the closest match."""
    close = difflib.get_close_matches(key, valid, n=1)
    hint = f" (did you mean {_join(where, close[0])!r}?)" if close else ""
    section = f" of {where}" if where else ""
    return ConfigError(f"unknown key {_join(where, key)!r}{hint}; valid keys{section}: {', '.join(valid)}")


def dataclass_from_dict(cls: type, data: Any, where: str) -> Any:
    """Build the dataclass ``cls`` from a mapping, checking every key and value.

    A dataclass may define ``classmethod _from_config_dict(data, where)`` to take over (used for
    sections whose keys depend on another value, e.g. a model section keyed by the model name).

    Raises:
        ConfigError: ``data`` is not a mapping, has an unknown key, misses a required key, or a value has the
            wrong type.
    """
    hook = getattr(cls, "_from_config_dict", None)
    if hook is not None:
        return hook(data, where)
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{where or 'config'}: expected a mapping ({cls.__name__}), got {data!r} "
                          f"({type(data).__name__})")
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    hints = typing.get_type_hints(cls)
    kwargs: dict[str, Any] = {}
    for key, value in data.items():
        if key not in fields:
            raise unknown_key_error(where, str(key), list(fields))
        kwargs[key] = coerce(hints[key], value, _join(where, key))
    missing = [n for n, f in fields.items() if n not in kwargs and f.default is dataclasses.MISSING
               and f.default_factory is dataclasses.MISSING]
    if missing:
        raise ConfigError(f"{where or 'config'}: missing required key(s) {', '.join(missing)}")
    try:
        return cls(**kwargs)
    except (ValueError, TypeError) as exc:
        if isinstance(exc, ConfigError) and where and str(exc).startswith(where):
            raise
        raise ConfigError(f"{where or cls.__name__}: {exc}") from None


def to_plain(obj: Any) -> Any:
    """A dataclass (or nested structure) as plain dicts/lists/scalars, for YAML/JSON/checkpoints."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        custom = getattr(obj, "_to_config_dict", None)
        if custom is not None:
            return custom()
        return {f.name: to_plain(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, dict):
        return {k: to_plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_plain(v) for v in obj]
    return obj

"""Registry of trainable networks, each with a config dataclass that mirrors its constructor.

``@register("dncnn")`` on a :class:`torch.nn.Module` subclass records it under a name and derives
its config dataclass from the constructor's signature (``DnCNN.Config``): field names, type hints
and defaults are taken from ``__init__``, so each default is written exactly once (in the
constructor) and the dataclass cannot drift from it. Recipes (YAML), ``key=value`` overrides and
checkpoints store the dataclass as a plain dict; :func:`build_model` rebuilds the network from it.

The registry lives in the lowest layer that defines networks (``denoisers/``, torch only) so that
``models/`` (DEQ, unrolled networks) can register into it without importing ``training/``;
:mod:`mrirecon.training` re-exports :func:`register` and adds ``load_model(path)``.
"""
from __future__ import annotations

import dataclasses
import functools
import inspect
import typing
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import torch

from mrirecon.errors import ConfigError
from mrirecon.registry import Registry

M = TypeVar("M", bound=type)


@dataclass(frozen=True)
class ModelSpec:
    """A registered network: its name, class and config dataclass."""

    name: str
    cls: type
    config: type


MODELS: Registry[ModelSpec] = Registry("model")


def config_from_signature(cls: type) -> type:
    """A dataclass whose fields are the keyword parameters of ``cls.__init__`` (names, types, defaults).

    Raises:
        TypeError: a parameter has no type hint or no default (every config value needs both).
    """
    sig = inspect.signature(cls.__init__)
    hints = typing.get_type_hints(cls.__init__)
    fields: list[tuple[str, Any, Any]] = []
    for name, p in sig.parameters.items():
        if name == "self" or p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
            continue
        if name not in hints:
            raise TypeError(f"{cls.__name__}.__init__: parameter {name!r} needs a type hint to be configurable")
        if p.default is inspect.Parameter.empty:
            raise TypeError(f"{cls.__name__}.__init__: parameter {name!r} needs a default to be configurable")
        fields.append((name, hints[name], dataclasses.field(default=p.default)))
    config = dataclasses.make_dataclass(f"{cls.__name__}Config", fields, frozen=True)
    config.__doc__ = f"Constructor arguments of :class:`{cls.__module__}.{cls.__qualname__}` (generated)."
    config.__module__ = cls.__module__
    return config


def register(name: str) -> Callable[[M], M]:
    """Class decorator: register a network under ``name`` and attach ``cls.Config``.

    Raises:
        ValueError: ``name`` is already registered.
    """

    def deco(cls: M) -> M:
        if name in MODELS:
            MODELS.add(name, None)  # type: ignore[arg-type]  (raises the registry's duplicate error)
        config = config_from_signature(cls)
        MODELS.add(name, ModelSpec(name, cls, config))
        sig = inspect.signature(cls.__init__)
        init = cls.__init__

        @functools.wraps(init)
        def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
            init(self, *args, **kwargs)
            if type(self) is cls:  # record the arguments of the registered class itself, not of subclasses
                bound = sig.bind(self, *args, **kwargs)
                bound.apply_defaults()
                self.config = config(**{k: v for k, v in bound.arguments.items() if k != "self"})
                self.registered_name = name

        cls.__init__ = __init__  # type: ignore[misc]
        cls.Config = config  # type: ignore[attr-defined]
        return cls

    return deco


def model_spec(name: str) -> ModelSpec:
    """The spec registered under ``name`` (KeyError lists the known names)."""
    return MODELS.get(name)


def build_model(name: str, config: dict[str, Any] | Any | None = None, seed: int | None = 0) -> torch.nn.Module:
    """Build the network registered under ``name`` from a config dict or dataclass.

    Args:
        name: registered model name.
        config: constructor arguments (a dict, validated: unknown keys are errors), or an instance of
            ``spec.config``; ``None`` for all defaults.
        seed: seed of the weight initialisation (run under a forked RNG, the global RNG is untouched);
            ``None`` leaves initialisation to the global RNG.

    Returns:
        the network; ``model.config`` (the dataclass instance) and ``model.registered_name`` are set
        by the registered constructor (also when it is called directly).

    Raises:
        KeyError: unknown model name.  ConfigError: unknown or ill-typed constructor arguments.
    """
    spec = model_spec(name)
    if config is None:
        cfg = spec.config()
    elif isinstance(config, spec.config):
        cfg = config
    elif isinstance(config, dict):
        from mrirecon.denoisers._config import dataclass_from_dict  # noqa: PLC0415

        try:
            cfg = dataclass_from_dict(spec.config, config, where="")
        except ConfigError as exc:
            raise ConfigError(f"model {name!r}: {exc}") from None
    else:
        raise ConfigError(f"model {name!r}: config must be a dict or {spec.config.__name__}, "
                          f"got {type(config).__name__}")
    kwargs = {f.name: getattr(cfg, f.name) for f in dataclasses.fields(cfg)}
    if seed is None:
        return spec.cls(**kwargs)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return spec.cls(**kwargs)


def model_config_dict(model: torch.nn.Module) -> tuple[str, dict[str, Any]]:
    """``(name, config dict)`` of a model built by :func:`build_model` or a registered constructor.

    Raises:
        ConfigError: the model's class is not registered.
    """
    name = getattr(model, "registered_name", None)
    cfg = getattr(model, "config", None)
    if name is None or name not in MODELS or cfg is None:
        raise ConfigError(f"{type(model).__name__} is not a registered model; register it with "
                          f"@register(name) to save it with its config")
    return name, _plain(dataclasses.asdict(cfg))


def _plain(v: Any) -> Any:
    """Tuples become lists so configs round-trip through YAML/JSON unchanged."""
    if isinstance(v, dict):
        return {k: _plain(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_plain(x) for x in v]
    return v

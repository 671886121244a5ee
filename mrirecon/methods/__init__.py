"""Registry of reconstruction methods: ``reconstruct(sample, "cs-wavelet", lam=0.01)``.

A method is a function ``run(sample, options) -> ReconResult`` with an options dataclass whose
fields are the method's parameters and their defaults (each default defined once, here in the
dataclass). The command line (``mrirecon recon --method M``), ``mrirecon demo`` and the notebooks
all go through :func:`reconstruct`. Modules that define methods register them with
:func:`register_method`; importing :mod:`mrirecon.methods` imports all of them.
"""
from __future__ import annotations

import dataclasses
import importlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

from mrirecon.data.sample import KSpaceSample
from mrirecon.errors import ConfigError
from mrirecon.registry import Registry


@dataclass
class ReconResult:
    """The output of a reconstruction method.

    Attributes:
        image: complex ``[..., H, W]`` (one map set) or ``[..., M, H, W]`` (several map sets).
        history: the solver's history (:class:`mrirecon.solvers.base.History`) or ``None``.
        info: scalars worth reporting (iterations, time in seconds, converged flag, ...).
    """

    image: torch.Tensor
    history: Any = None
    info: dict[str, Any] = field(default_factory=dict)

    def magnitude(self, multi_set: bool = False) -> torch.Tensor:
        """``|image|``; with ``multi_set`` the root-sum-of-squares over the map-set dimension."""
        if multi_set:
            return self.image.abs().pow(2).sum(dim=-3).sqrt()
        return self.image.abs()


@dataclass(frozen=True)
class MethodSpec:
    """A registered method: its name, function, options dataclass and whether it needs coil maps."""

    name: str
    run: Callable[[KSpaceSample, Any], ReconResult]
    options: type
    needs_maps: bool
    description: str


METHODS: Registry[MethodSpec] = Registry("reconstruction method")

# Modules whose import registers methods; later issues add theirs here.
_METHOD_MODULES: list[str] = ["mrirecon.methods.classical", "mrirecon.methods.pnp", "mrirecon.methods.learned",
                              "mrirecon.methods.equilibrium"]


def check_iters_tol(who: str, iters: int | None, tol: float, min_iters: int = 0) -> None:
    """The checks every iterative method makes of its ``iters`` (None: the method's own default) and ``tol``.

    Raises:
        ConfigError: ``iters < min_iters`` or ``tol`` negative or NaN (the message names the method).
    """
    if iters is not None and iters < min_iters:
        raise ConfigError(f"method {who!r}: iters must be >= {min_iters}, got {iters}")
    if not tol >= 0:
        raise ConfigError(f"method {who!r}: tol must be >= 0, got {tol}")


def register_method(name: str, options: type, needs_maps: bool, description: str
                    ) -> Callable[[Callable[[KSpaceSample, Any], ReconResult]], Callable[[KSpaceSample, Any], ReconResult]]:
    """Decorator: register ``run(sample, options) -> ReconResult`` under ``name``."""
    if not dataclasses.is_dataclass(options):
        raise TypeError(f"method {name!r}: options must be a dataclass, got {options!r}")

    def deco(fn: Callable[[KSpaceSample, Any], ReconResult]) -> Callable[[KSpaceSample, Any], ReconResult]:
        METHODS.add(name, MethodSpec(name, fn, options, needs_maps, description))
        return fn

    return deco


def _load_all() -> None:
    for mod in _METHOD_MODULES:
        importlib.import_module(mod)


def get_method(name: str) -> MethodSpec:
    """The method registered under ``name`` (KeyError lists the known names)."""
    _load_all()
    return METHODS.get(name)


def method_names() -> list[str]:
    """Names of all registered methods."""
    _load_all()
    return METHODS.names()


def make_options(spec: MethodSpec, **overrides: Any) -> Any:
    """Build the options dataclass of ``spec`` with ``overrides``; unknown keys are a :class:`ConfigError`."""
    fields = {f.name for f in dataclasses.fields(spec.options)}
    unknown = set(overrides) - fields
    if unknown:
        raise ConfigError(f"method {spec.name!r}: unknown option(s) {sorted(unknown)}; "
                          f"it takes {sorted(fields)}")
    return spec.options(**overrides)


def reconstruct(sample: KSpaceSample, method: str, **options: Any) -> ReconResult:
    """Reconstruct ``sample`` with the registered ``method`` and the given option overrides.

    Raises:
        KeyError: unknown method.  ConfigError: unknown option, or maps missing for a method that needs them.
    """
    spec = get_method(method)
    opts = make_options(spec, **options)
    if spec.needs_maps and sample.maps is None:
        raise ConfigError(f"method {method!r} needs coil sensitivity maps, but the sample has none "
                          f"(file {getattr(sample.meta, 'file', '?')}); estimate them first (e.g. ESPIRiT)")
    return spec.run(sample, opts)

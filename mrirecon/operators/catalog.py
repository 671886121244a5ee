"""Registry of tiny example instances of every operator, used by the operator contract tests.

Each operator module registers at least one factory ``make(gen, dtype) -> Linop`` that builds a
small instance (odd sizes such as 17×11 catch centring bugs). ``tests/test_operator_contract.py``
runs adjointness, linearity, the normal operator and gradients over every entry, and checks that
every concrete :class:`~mrirecon.operators.linop.Linop` subclass has an example.
"""
from __future__ import annotations

from collections.abc import Callable

import torch

from mrirecon.operators.linop import Adjoint, Identity, Linop, Multiply, Scale, VStack
from mrirecon.registry import Registry

ExampleFactory = Callable[[torch.Generator, torch.dtype], Linop]

EXAMPLES: Registry[ExampleFactory] = Registry("operator example")


def example(name: str) -> Callable[[ExampleFactory], ExampleFactory]:
    """Decorator registering an example factory under ``name``."""
    return EXAMPLES.register(name)


def randc(gen: torch.Generator, *shape: int, dtype: torch.dtype = torch.complex128) -> torch.Tensor:
    """A complex standard-normal tensor drawn from ``gen``."""
    return torch.randn(*shape, generator=gen, dtype=dtype)


@example("identity")
def _identity(gen: torch.Generator, dtype: torch.dtype) -> Linop:
    return Identity((5, 3))


@example("multiply")
def _multiply(gen: torch.Generator, dtype: torch.dtype) -> Linop:
    return Multiply(randc(gen, 5, 3, dtype=dtype), (5, 3))


@example("multiply-real-broadcast")
def _multiply_real(gen: torch.Generator, dtype: torch.dtype) -> Linop:
    real = torch.float64 if dtype == torch.complex128 else torch.float32
    return Multiply(torch.rand(1, 3, generator=gen, dtype=real), (4, 5, 3))


@example("adjoint")
def _adjoint(gen: torch.Generator, dtype: torch.dtype) -> Linop:
    return Adjoint(Multiply(randc(gen, 4, 3, dtype=dtype), (4, 3)))


@example("compose")
def _compose(gen: torch.Generator, dtype: torch.dtype) -> Linop:
    return Multiply(randc(gen, 4, 3, dtype=dtype), (4, 3)) @ Multiply(randc(gen, 4, 3, dtype=dtype), (4, 3))


@example("sum")
def _sum(gen: torch.Generator, dtype: torch.dtype) -> Linop:
    return Multiply(randc(gen, 4, 3, dtype=dtype), (4, 3)) + Identity((4, 3))


@example("scale")
def _scale(gen: torch.Generator, dtype: torch.dtype) -> Linop:
    return Scale(Multiply(randc(gen, 4, 3, dtype=dtype), (4, 3)), 0.5 - 2j)


@example("vstack")
def _vstack(gen: torch.Generator, dtype: torch.dtype) -> Linop:
    return VStack([Multiply(randc(gen, 4, 3, dtype=dtype), (4, 3)), Scale(Identity((4, 3)), 2.0)])

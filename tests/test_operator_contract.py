"""Contract tests run over every registered operator example (STYLE.md §9)."""
from __future__ import annotations

import inspect
import math

import pytest
import torch

import mrirecon
import mrirecon.operators as ops
from mrirecon.operators.catalog import EXAMPLES
from mrirecon.operators.linop import Linop, dense_matrix

NAMES = EXAMPLES.names()


def _make(name: str, seed: int = 0, dtype: torch.dtype = torch.complex128) -> Linop:
    return EXAMPLES.get(name)(torch.Generator().manual_seed(seed), dtype)


def _rand(shape: tuple[int, ...], seed: int) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=torch.complex128)


def _vdot(a: torch.Tensor, b: torch.Tensor) -> complex:
    return complex(torch.vdot(a.reshape(-1), b.reshape(-1)))


@pytest.mark.parametrize("name", NAMES)
def test_adjoint(name: str) -> None:
    A = _make(name)
    x, y = _rand(A.ishape, 1), _rand(A.oshape, 2)
    lhs, rhs = _vdot(A(x), y), _vdot(x, A.H(y))
    assert abs(lhs - rhs) <= 1e-10 * max(abs(lhs), 1.0)


@pytest.mark.parametrize("name", NAMES)
def test_linearity(name: str) -> None:
    A = _make(name)
    x1, x2 = _rand(A.ishape, 3), _rand(A.ishape, 4)
    a, b = 0.7 - 1.3j, -2.1 + 0.4j
    lhs = A(a * x1 + b * x2)
    rhs = a * A(x1) + b * A(x2)
    assert torch.allclose(lhs, rhs, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("name", NAMES)
def test_normal_equals_adjoint_of_forward(name: str) -> None:
    A = _make(name)
    x = _rand(A.ishape, 5)
    assert torch.allclose(A.N(x), A.H(A(x)), rtol=1e-10, atol=1e-12)
    assert A.N.ishape == A.ishape and A.N.oshape == A.ishape


@pytest.mark.parametrize("name", NAMES)
def test_batched_application(name: str) -> None:
    A = _make(name)
    xb = _rand((2, *A.ishape), 6)
    yb = A(xb)
    for i in range(2):
        assert torch.allclose(yb[i], A(xb[i]), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("name", NAMES)
def test_gradient_matches_dense_matrix(name: str) -> None:
    A = _make(name)
    M = dense_matrix(A)
    assert M.shape == (math.prod(A.oshape), math.prod(A.ishape))
    x = _rand(A.ishape, 7)
    y = _rand(A.oshape, 8)
    assert torch.allclose(A(x).reshape(-1), M @ x.reshape(-1), rtol=1e-10, atol=1e-12)

    x1 = x.clone().requires_grad_(True)
    loss = (A(x1) - y).abs().pow(2).sum()
    (g_op,) = torch.autograd.grad(loss, x1)
    x2 = x.reshape(-1).clone().requires_grad_(True)
    loss_dense = (M @ x2 - y.reshape(-1)).abs().pow(2).sum()
    (g_dense,) = torch.autograd.grad(loss_dense, x2)
    assert torch.allclose(g_op.reshape(-1), g_dense, rtol=1e-9, atol=1e-10)


@pytest.mark.parametrize("name", NAMES)
def test_complex64_runs(name: str) -> None:
    A = _make(name, dtype=torch.complex64).to(dtype=torch.complex64)
    x = _rand(A.ishape, 9).to(torch.complex64)
    y = A(x)
    assert y.dtype == torch.complex64
    assert A.H(y).dtype == torch.complex64


def _all_subclasses(cls: type) -> set[type]:
    out = set()
    for sub in cls.__subclasses__():
        out.add(sub)
        out |= _all_subclasses(sub)
    return out


def test_every_operator_has_an_example() -> None:
    """Each concrete Linop subclass defined in mrirecon must be covered by the registry."""
    covered: set[type] = set()
    for name in NAMES:
        A = _make(name)
        stack = [A]
        while stack:
            op = stack.pop()
            covered.add(type(op))
            for v in op._params.values():
                if isinstance(v, Linop):
                    stack.append(v)
                elif isinstance(v, (list, tuple)):
                    stack.extend(u for u in v if isinstance(u, Linop))
    classes = {c for c in _all_subclasses(Linop)
               if c.__module__.startswith("mrirecon.") and not inspect.isabstract(c)
               and not c.__name__.startswith("_")}
    missing = sorted(c.__qualname__ for c in classes - covered)
    assert not missing, f"operators without an example in the registry: {missing}"
    assert mrirecon.__version__


def test_compose_shape_mismatch_is_clear() -> None:
    with pytest.raises(ops.linop.ShapeError, match=r"FFT takes input \[4, 5\].*\[4, 6\]"):
        ops.FFT((4, 5)) @ ops.Identity((4, 6))


def test_replace_returns_new_operator() -> None:
    maps = _rand((3, 8, 6), 10)
    mask = torch.zeros(1, 1, 6, dtype=torch.float64)
    mask[..., ::2] = 1
    E = ops.Sense(maps, mask)
    E2 = E.replace(mask=torch.ones(1, 1, 6, dtype=torch.float64))
    assert E2 is not E and E.mask is mask
    x = _rand((8, 6), 11)
    assert torch.allclose(E2.N(x), E2.H(E2(x)))
    assert not torch.allclose(E.N(x), E2.N(x))
    with pytest.raises(TypeError, match="unknown argument"):
        E.replace(masks=mask)


@pytest.mark.parametrize("multi_set", [False, True])
@pytest.mark.parametrize("mask_kind", ["lines", "2d"])
def test_sense_is_sample_after_fft_after_coil_expand(multi_set: bool, mask_kind: str) -> None:
    """``Sense(maps, mask)`` is the composition ``Sample ∘ FFT ∘ CoilExpand``: forward, adjoint and the fast normal."""
    c, h, w = 4, 9, 8
    maps = _rand((2, c, h, w) if multi_set else (c, h, w), 31)
    g = torch.Generator().manual_seed(32)
    mask = (torch.rand((1, 1, w) if mask_kind == "lines" else (1, h, w), generator=g) > 0.5).double()
    E = ops.Sense(maps, mask, multi_set=multi_set)
    composed = ops.Sample(mask, (c, h, w)) @ ops.FFT((c, h, w)) @ ops.CoilExpand(maps, multi_set=multi_set)
    x = _rand(E.ishape, 33)
    y = _rand(E.oshape, 34)
    torch.testing.assert_close(E(x), composed(x))
    torch.testing.assert_close(E.H(y), composed.H(y))
    torch.testing.assert_close(E.N(x), composed.H(composed(x)))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_mri_operators_on_cuda_match_the_cpu() -> None:
    """FFT, Sense (forward, adjoint, fast normal; line and 2D masks) and a composition give the CPU's results on CUDA."""
    c, h, w = 4, 12, 10
    maps = _rand((c, h, w), 41)
    x = _rand((h, w), 42)
    g = torch.Generator().manual_seed(43)
    for mask in ((torch.rand(1, 1, w, generator=g) > 0.5).double(), (torch.rand(1, h, w, generator=g) > 0.5).double()):
        E = ops.Sense(maps, mask)
        Ec = ops.Sense(maps.cuda(), mask.cuda())
        y = E(x)
        torch.testing.assert_close(Ec(x.cuda()).cpu(), y)
        torch.testing.assert_close(Ec.H(y.cuda()).cpu(), E.H(y))
        torch.testing.assert_close(Ec.N(x.cuda()).cpu(), E.N(x))
    F = ops.FFT((h, w))
    torch.testing.assert_close(F(x.cuda()).cpu(), F(x))

"""Gradient-step denoisers (D = I - ∇g) and the rotation/flip-equivariant wrapper."""
from __future__ import annotations

import pytest
import torch

from mrirecon.denoisers import EquivariantDenoiser, GradientStepDenoiser, build_model
from mrirecon.denoisers.equivariant import d4_inverse, d4_transform


@pytest.fixture(scope="module")
def gs() -> GradientStepDenoiser:
    return build_model("gs-drunet", dict(widths=(4, 8), blocks=1), seed=0).double().eval()


def test_grad_g_is_autograd_of_g(gs: GradientStepDenoiser) -> None:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 9, 7, dtype=torch.complex128, generator=g).requires_grad_(True)
    val = gs.g(x)
    assert val.shape == (2,) and val.dtype == torch.float64
    (auto,) = torch.autograd.grad(val.sum(), x)
    torch.testing.assert_close(gs.grad_g(x.detach()), auto)


def test_g_is_half_squared_residual(gs: GradientStepDenoiser) -> None:
    x = torch.randn(3, 8, 6, dtype=torch.complex128, generator=torch.Generator().manual_seed(1))
    r = x - gs.network(x)
    torch.testing.assert_close(gs.g(x), 0.5 * r.abs().square().sum(dim=(-2, -1)))


def test_denoiser_is_identity_minus_grad_g(gs: GradientStepDenoiser) -> None:
    x = torch.randn(2, 11, 5, dtype=torch.complex128, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():  # D works without gradients enabled (it enables them inside)
        d = gs(x)
    torch.testing.assert_close(d, x - gs.grad_g(x))


def test_grad_g_graph_is_kept_when_training(gs: GradientStepDenoiser) -> None:
    x = torch.randn(1, 7, 7, dtype=torch.complex128, generator=torch.Generator().manual_seed(3))
    gs.zero_grad()
    loss = gs.grad_g(x, create_graph=True).abs().square().sum()
    loss.backward()
    assert any(p.grad is not None and float(p.grad.abs().sum()) > 0 for p in gs.parameters())
    assert not gs.grad_g(x, create_graph=False).requires_grad


def test_gs_differentiable_in_its_input(gs: GradientStepDenoiser) -> None:
    """∇(x ↦ ⟨D(x), v⟩) by autograd equals a finite difference (the solver's path through D)."""
    g = torch.Generator().manual_seed(4)
    x = torch.randn(1, 6, 5, dtype=torch.complex128, generator=g)
    v = torch.randn(1, 6, 5, dtype=torch.complex128, generator=g)
    h = torch.randn(1, 6, 5, dtype=torch.complex128, generator=g)
    xr = x.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(torch.real((gs(xr) * v.conj()).sum()), xr)
    eps = 1e-6
    fd = (torch.real((gs(x + eps * h) * v.conj()).sum()) - torch.real((gs(x - eps * h) * v.conj()).sum())) / (2 * eps)
    assert float(torch.real((grad.conj() * h).sum())) == pytest.approx(float(fd), rel=1e-5)


def test_d4_transforms_are_a_group_with_inverses() -> None:
    x = torch.randn(2, 5, 3)
    seen = set()
    for k in range(8):
        y = d4_transform(x, k)
        torch.testing.assert_close(d4_inverse(y, k), x)
        seen.add(tuple(y.flatten().tolist()))
    assert len(seen) == 8


@pytest.mark.parametrize("shape", [(17, 11), (8, 8)])
def test_average_wrapper_is_exactly_equivariant(shape: tuple[int, int]) -> None:
    base = build_model("unet", dict(width=4, levels=2), seed=0).double().eval()  # not equivariant itself
    eq = EquivariantDenoiser(base).eval()
    x = torch.randn(2, *shape, dtype=torch.complex128, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        ref = eq(x)
        assert not torch.allclose(base(d4_transform(x, 1)), d4_transform(base(x), 1), atol=1e-6)
        for k in range(8):
            torch.testing.assert_close(eq(d4_transform(x, k)), d4_transform(ref, k), rtol=0, atol=1e-12)


def test_random_wrapper_is_seeded() -> None:
    base = build_model("dncnn", dict(depth=3, width=4), seed=0).eval()
    x = torch.randn(1, 9, 6, dtype=torch.complex64, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        a = [EquivariantDenoiser(base, "random", seed=3)(x) for _ in range(1)] + \
            [EquivariantDenoiser(base, "random", seed=3)(x)]
    torch.testing.assert_close(a[0], a[1])
    eq = EquivariantDenoiser(base, "random", seed=3)
    with torch.no_grad():
        outs = {tuple(eq(x).flatten().abs().round(decimals=5).tolist()) for _ in range(16)}
    assert len(outs) > 1  # different transforms are drawn across calls

"""Jacobian spectral norms by power iteration against dense Jacobians; the firm-non-expansiveness penalty."""
from __future__ import annotations

import pytest
import torch

from mrirecon.denoisers import build_model, fne_penalty, jacobian_spectral_norm
from mrirecon.denoisers.jacobian import JacobianProducts


@pytest.fixture(scope="module")
def tiny() -> torch.nn.Module:
    return build_model("dncnn", dict(depth=3, width=4), seed=0).double().eval()


def _dense_jacobian(f, x: torch.Tensor) -> torch.Tensor:  # type: ignore[no-untyped-def]
    n = x[0].numel()
    return torch.autograd.functional.jacobian(lambda v: f(v.reshape(1, *x.shape[1:])).reshape(-1),
                                              x[0].reshape(-1)).reshape(n, n)


@pytest.mark.parametrize("a,b", [(1.0, 0.0), (-1.0, 1.0), (2.0, -1.0)])
def test_power_iteration_matches_dense_jacobian(tiny: torch.nn.Module, a: float, b: float) -> None:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 2, 7, 5, generator=g, dtype=torch.float64)
    f = tiny.forward_channels
    est = jacobian_spectral_norm(f, x, iters=300, a=a, b=b, generator=g, tol=1e-10)
    for i in range(2):
        J = _dense_jacobian(f, x[i:i + 1])
        M = a * J + b * torch.eye(J.shape[0], dtype=J.dtype)
        ref = float(torch.linalg.matrix_norm(M, 2))
        assert float(est[i]) == pytest.approx(ref, rel=1e-5)
        assert float(est[i]) <= ref * (1 + 1e-9)  # power iteration approaches from below


def test_jvp_and_vjp_are_the_jacobian_and_its_transpose(tiny: torch.nn.Module) -> None:
    g = torch.Generator().manual_seed(1)
    x = torch.randn(1, 2, 6, 5, generator=g, dtype=torch.float64)
    prod = JacobianProducts(tiny.forward_channels, x)
    J = _dense_jacobian(tiny.forward_channels, x)
    v = torch.randn(x.shape, generator=g, dtype=torch.float64)
    torch.testing.assert_close(prod.jvp(v).reshape(-1), J @ v.reshape(-1))
    torch.testing.assert_close(prod.vjp(v).reshape(-1), J.T @ v.reshape(-1))


def test_penalty_is_flat_below_threshold_and_differentiable_above() -> None:
    torch.manual_seed(0)
    model = build_model("dncnn", dict(depth=3, width=4), seed=1)
    g = torch.Generator().manual_seed(0)
    clean = torch.randn(3, 2, 9, 9, generator=g)
    noisy = clean + 0.1 * torch.randn(3, 2, 9, 9, generator=g)
    res = fne_penalty(model.forward_channels, clean, noisy, lam=0.5, eps=0.05, iters=5,
                      generator=torch.Generator().manual_seed(1))
    expected = 0.5 * torch.clamp(res.norms.square(), min=0.95).mean()
    assert float(res.penalty) == pytest.approx(float(expected), rel=1e-5)
    res.penalty.backward()
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    above = bool((res.norms.square() > 0.95).any())
    assert above  # a residual DnCNN at init: 2D - I has norm about 1 + 2 Lip(N)
    assert grads and any(float(gr.abs().sum()) > 0 for gr in grads)

    # a denoiser D = 0.5 x: ||2D - I|| = 0 < 1 - eps, so the penalty is the constant lam (1 - eps), no gradient
    w = torch.nn.Parameter(torch.tensor(0.5))
    flat = fne_penalty(lambda z: w * z, clean, noisy, lam=2.0, eps=0.1, iters=3)
    assert float(flat.penalty) == pytest.approx(2.0 * 0.9)
    flat.penalty.backward()
    assert w.grad is None or float(w.grad) == 0.0


def test_penalty_training_lowers_the_jacobian_norm() -> None:
    model = build_model("dncnn", dict(depth=3, width=8), seed=2)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    g = torch.Generator().manual_seed(0)
    clean = torch.randn(4, 2, 12, 12, generator=g) * 0.5
    noisy = clean + 0.2 * torch.randn(4, 2, 12, 12, generator=g)
    norms = []
    for step in range(15):
        res = fne_penalty(model.forward_channels, clean, noisy, lam=1.0, eps=0.1, iters=3,
                          generator=torch.Generator().manual_seed(step))
        opt.zero_grad()
        res.penalty.backward()
        opt.step()
        norms.append(float(res.norms.max()))
    assert norms[-1] < norms[0]
    assert norms[-1] <= 1.0

"""Exact gradients and proxes of every term against their generic fall-backs; wavelets against PyWavelets."""
from __future__ import annotations

import numpy as np
import pytest
import pywt
import torch

from mrirecon.operators import FiniteDifference, Sense, Wavelet
from mrirecon.operators.wavelets import auto_levels
from mrirecon.solvers import L1, L1Wavelet, L2Data, Term, Tikhonov, TotalVariation

H, W = 9, 7

pytestmark = pytest.mark.usefixtures("one_thread")  # tiny problems: one intra-op thread


def _randc(*shape: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(*shape, dtype=torch.complex128, generator=torch.Generator().manual_seed(seed))


def _data_term(seed: int = 0) -> L2Data:
    maps = _randc(3, H, W, seed=seed) / 2
    mask = torch.zeros(1, 1, W, dtype=torch.float64)
    mask[..., ::2] = 1
    A = Sense(maps, mask)
    return L2Data(A, A(_randc(H, W, seed=seed + 1)), cg_tol=1e-13, cg_iters=500)


def _terms() -> dict[str, Term]:
    return {
        "l2data": _data_term(),
        "tikhonov": Tikhonov(0.7, (H, W), ref=_randc(H, W, seed=5)),
        "l1wavelet": L1Wavelet(0.3, (H, W), "db2", levels=2, cycle_spin=False),
        "tv-iso": TotalVariation(0.3, (H, W), isotropic=True, prox_tol=1e-12, prox_iters=20000),
        "tv-aniso": TotalVariation(0.3, (H, W), isotropic=False, prox_tol=1e-12, prox_iters=20000),
    }


@pytest.mark.parametrize("name", ["l2data", "tikhonov", pytest.param("l1wavelet", marks=pytest.mark.slow),
                                  "tv-iso", "tv-aniso"])
def test_prox_override_matches_fallback(name: str) -> None:
    term = _terms()[name]
    v = 2 * _randc(H, W, seed=11)
    tau = 0.8
    exact = term.prox(v, tau)
    fallback = Term.prox(term, v, tau)  # the base-class inner solve
    assert type(term).prox is not Term.prox
    err = float((exact - fallback).abs().max() / v.abs().max())
    # smooth terms: the fall-back converges linearly; φ(Kx) terms: its error decays like 1/iterations
    assert err < (1e-7 if term.smooth else 3e-4), err
    # the prox is the minimiser: a random perturbation never lowers ½‖x - v‖² + τ f(x)
    obj = lambda x: float(0.5 * (x - v).abs().pow(2).sum() + tau * term(x))
    for seed in range(3):
        assert obj(exact) <= obj(exact + 1e-3 * _randc(H, W, seed=20 + seed)) + 1e-12


@pytest.mark.parametrize("name", ["l2data", "tikhonov"])
def test_grad_override_matches_autograd(name: str) -> None:
    term = _terms()[name]
    x = _randc(H, W, seed=3)
    assert torch.allclose(term.grad(x), Term.grad(term, x), atol=1e-10)


def test_l1_prox_is_the_scalar_minimiser() -> None:
    v = _randc(50, seed=4)
    term = L1(0.5, (50,))
    p = term.prox(v, 2.0)
    # closed form per entry: shrink the modulus by 1 (= τλ), keep the phase
    mag = torch.clamp(v.abs() - 1.0, min=0)
    assert torch.allclose(p, mag * torch.exp(1j * v.angle()), atol=1e-12)
    # brute force on a grid of moduli along the phase of v (the minimiser lies on that ray)
    grid = torch.linspace(0, 5, 50001, dtype=torch.float64)
    for i in range(5):
        f = 0.5 * (grid - v[i].abs()) ** 2 + 2.0 * 0.5 * grid
        assert abs(float(grid[f.argmin()]) - float(p[i].abs())) < 1e-3


def test_l1_wavelet_cycle_spinning_is_seeded_and_exact() -> None:
    v = _randc(16, 12, seed=6)
    a = L1Wavelet(0.2, (16, 12), levels=2, seed=3)
    b = L1Wavelet(0.2, (16, 12), levels=2, seed=3)
    pa, pb = a.prox(v, 1.0), b.prox(v, 1.0)
    assert torch.equal(pa, pb) and a.last_shift == b.last_shift
    W_s = a.W.replace(shift=a.last_shift)
    expected = W_s.H(torch.sgn(W_s(v)) * torch.clamp(W_s(v).abs() - 0.2, min=0))
    assert torch.allclose(pa, expected, atol=1e-12)
    assert 0 <= a.last_shift[0] <= 8 and 0 <= a.last_shift[1] <= 8


@pytest.mark.parametrize("name", ["db1", "db2", "db3", "db4", "db8"])
def test_wavelet_matches_pywavelets_periodization(name: str) -> None:
    x = np.random.default_rng(0).standard_normal((32, 24)) + 1j * np.random.default_rng(1).standard_normal((32, 24))
    taps = 2 * int(name[2:])
    roll = taps // 2 - 1  # pywt's periodization aligns the filters differently: a circular shift
    W1 = Wavelet((32, 24), name, levels=1)
    c = W1(torch.from_numpy(np.roll(x, (roll, roll), axis=(0, 1)))).numpy()
    cA, (cH, cV, cD) = pywt.dwt2(x, name, mode="periodization")
    np.testing.assert_allclose(c[:16, :12], cA, atol=1e-12)
    np.testing.assert_allclose(c[:16, 12:], cV, atol=1e-12)
    np.testing.assert_allclose(c[16:, :12], cH, atol=1e-12)
    np.testing.assert_allclose(c[16:, 12:], cD, atol=1e-12)


def test_wavelet_levels_follow_bart_rule_and_are_orthonormal() -> None:
    assert auto_levels((320, 320)) == 5 and auto_levels((180, 230)) == 4 and auto_levels((15, 40)) == 0
    x = _randc(2, 45, 37, seed=9)
    Wt = Wavelet((45, 37), "db4", shift=(5, 3))
    y = Wt(x)
    assert torch.allclose(Wt.H(y), x, atol=1e-12)
    assert torch.allclose(y.abs().pow(2).sum(), x.abs().pow(2).sum())
    kinds = {k for _, _, k in Wt.band_slices()}
    assert {"LL", "LH", "HL", "HH", "pass"} <= kinds


def test_finite_difference_fourier_eigenvalues() -> None:
    D = FiniteDifference((8, 6))
    x = _randc(8, 6, seed=10)
    lam = D.fourier_eigenvalues()
    via_fft = torch.fft.ifft2(lam * torch.fft.fft2(x))
    assert torch.allclose(D.H(D(x)), via_fft, atol=1e-12)


def test_fused_gradient_step_matches_grad() -> None:
    term = _data_term(1)
    x = _randc(H, W, seed=12)
    assert torch.allclose(term.gradient_step(x, 0.7), x - 0.7 * term.grad(x), atol=1e-12)
    assert torch.allclose(Term.gradient_step(term, x, 0.7), x - 0.7 * Term.grad(term, x), atol=1e-10)

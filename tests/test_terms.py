"""Exact gradients and proxes of every term against their generic fall-backs; wavelets against PyWavelets."""
from __future__ import annotations

import numpy as np
import pytest
import pywt
import torch

from mrirecon.errors import ConfigError
from mrirecon.operators import FiniteDifference, Sense, Wavelet
from mrirecon.operators.wavelets import (
    BartRandShift,
    _bart_analysis,
    _bart_synthesis,
    auto_levels,
    bart_axis_levels,
    bart_wavelet_filters,
    bart_wavelet_threshold,
)
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
    assert torch.backends.mkldnn.enabled  # the wavelet convolutions' oneDNN bypass is switched back
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


@pytest.mark.parametrize("name", ["db1", "db2", "db4"])
@pytest.mark.parametrize("n", [7, 16, 17, 45])
def test_bart_frame_level_matches_pywavelets_symmetric(name: str, n: int) -> None:
    x = torch.from_numpy(np.random.default_rng(n).standard_normal((3, n)))
    dec, rec = bart_wavelet_filters(name)
    lo, hi = _bart_analysis(x, -1, dec)
    cA, cD = pywt.dwt(x.numpy(), name, mode="symmetric", axis=-1)
    np.testing.assert_allclose(lo.numpy(), cA, atol=1e-12)
    np.testing.assert_allclose(hi.numpy(), cD, atol=1e-12)
    np.testing.assert_allclose(_bart_synthesis(lo, hi, n, -1, rec).numpy(),
                               pywt.idwt(cA, cD, name, mode="symmetric", axis=-1)[..., :n], atol=1e-12)
    np.testing.assert_allclose(_bart_synthesis(lo, hi, n, -1, rec).numpy(), x.numpy(), atol=1e-12)


def test_bart_threshold_is_a_left_inverse_with_per_axis_levels() -> None:
    # 20 x 70: H stops after one level (band 11 < 16), W goes on alone (36, 19, 11): BART's rule
    assert [bart_axis_levels(n) for n in (20, 70, 128, 180, 230)] == [2, 4, 5, 5, 6]
    x = _randc(2, 20, 70, seed=11)
    assert torch.allclose(bart_wavelet_threshold(x, 0.0, (3, 17)), x, atol=1e-12)
    y = bart_wavelet_threshold(x, 0.5, (3, 17))
    assert float((y - x).abs().max()) > 0.1  # thresholds something
    with pytest.raises(ConfigError, match="too small"):
        bart_wavelet_threshold(_randc(2, 9), 0.1)


def test_bart_shift_generator_is_glibc_rand_r() -> None:
    import ctypes
    import ctypes.util

    assert [BartRandShift(1).rand_r() for _ in range(1)] == [476707713]  # glibc rand_r(&1)
    gen = BartRandShift(1)
    shifts = [gen.draw((128, 128)) for _ in range(3)]
    assert all(0 <= s <= 32 for sh in shifts for s in sh)
    libc_name = ctypes.util.find_library("c")
    if libc_name is None or "libc.so" not in libc_name:
        return  # not glibc: the recorded value above is the check
    libc = ctypes.CDLL(libc_name)
    state, ours = ctypes.c_uint(12345), BartRandShift(12345)
    assert [libc.rand_r(ctypes.byref(state)) for _ in range(500)] == [ours.rand_r() for _ in range(500)]


def test_l1_wavelet_bart_transform_options() -> None:
    term = L1Wavelet(0.1, (20, 24), transform="bart", seed=2)
    assert term.linop is None
    v = _randc(20, 24, seed=3)
    p = term.prox(v, 1.0)
    assert torch.allclose(p, bart_wavelet_threshold(v, 0.1, term.last_shift))
    with pytest.raises(ConfigError, match="transform"):
        L1Wavelet(0.1, (20, 24), transform="haar")
    with pytest.raises(ConfigError, match="levels"):
        L1Wavelet(0.1, (20, 24), levels=2, transform="bart")


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

"""Coil operations: RSS, SENSE combination, prewhitening, SVD compression (vs BART cc), low-res maps."""
from __future__ import annotations

import math

import fastmri
import numpy as np
import pytest
import torch

from mrirecon.errors import ConfigError, DataError, DTypeError, ShapeError
from mrirecon.io.cfl import read_cfl, write_cfl
from mrirecon.operators import (CoilMix, Sense, acs_size, bandwidth_ratio, coil_compress, compression_matrix,
                                equispaced_mask, fft2c, lowres_maps, noise_covariance, poisson_mask_bart,
                                prewhiten, prewhitening_matrix, rss, sense_combine)
from tests.conftest import run_tool


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _smooth_maps(c: int, h: int, w: int, seed: int = 0) -> torch.Tensor:
    """Smooth complex maps normalised to Σ|S|² = 1 (coil centres around the image)."""
    g = _gen(seed)
    y = torch.linspace(-1, 1, h, dtype=torch.float64)[:, None]
    x = torch.linspace(-1, 1, w, dtype=torch.float64)[None, :]
    maps = []
    for i in range(c):
        a = 2 * math.pi * i / c
        cy, cx = 1.3 * math.sin(a), 1.3 * math.cos(a)
        mag = torch.exp(-((y - cy) ** 2 + (x - cx) ** 2) / 1.5)
        phase = float(torch.rand(1, generator=g)) * 2 * math.pi + 0.5 * (y * math.cos(a) + x * math.sin(a))
        maps.append(mag * torch.exp(1j * phase))
    s = torch.stack(maps)
    return s / rss(s).unsqueeze(0)


def _phantom(h: int, w: int) -> torch.Tensor:
    y = torch.linspace(-1, 1, h, dtype=torch.float64)[:, None]
    x = torch.linspace(-1, 1, w, dtype=torch.float64)[None, :]
    return ((y / 0.8) ** 2 + (x / 0.7) ** 2 < 1).double() * (1 + 0.5 * torch.cos(3 * x) * torch.sin(2 * y)) + 0j


def test_rss_matches_fastmri() -> None:
    x = torch.randn(2, 5, 17, 11, dtype=torch.complex128, generator=_gen(0))
    ref = fastmri.rss_complex(torch.view_as_real(x), dim=1)
    assert torch.allclose(rss(x, dim=1), ref)
    assert torch.allclose(rss(x), ref)  # default: coil axis -3


def test_sense_combine_recovers_image_and_rss_is_magnitude() -> None:
    maps = _smooth_maps(6, 17, 11)
    img = _phantom(17, 11) * torch.exp(0.3j * torch.arange(11, dtype=torch.float64))
    coils = maps * img
    assert torch.allclose(sense_combine(coils, maps), img, atol=1e-12)
    assert torch.allclose(rss(coils), img.abs(), atol=1e-12)
    # unnormalised maps: the least-squares combination still recovers the image; zero maps give zero
    maps2 = maps * 3.0
    maps2[:, 0, 0] = 0
    out = sense_combine(maps2 * img, maps2)
    assert torch.allclose(out[1:], img[1:], atol=1e-12) and out[0, 0] == 0


def test_prewhitening_makes_noise_white() -> None:
    c, n = 8, 200_000
    g = _gen(1)
    mixing = torch.randn(c, c, dtype=torch.complex128, generator=g) + 2 * torch.eye(c)
    noise = mixing @ torch.randn(c, n, dtype=torch.complex128, generator=g)  # correlated, unequal variances
    cov = noise_covariance(noise)
    assert torch.allclose(cov, mixing @ mixing.conj().T, rtol=0, atol=0.05 * float(cov.abs().max()))
    w = prewhitening_matrix(cov)
    assert torch.allclose(w @ cov @ w.conj().T, torch.eye(c, dtype=cov.dtype), atol=1e-10)
    assert torch.allclose(w, torch.tril(w))  # inverse of the Cholesky factor: lower triangular
    # applied to fresh noise with the same statistics (as k-space [C, H, W])
    fresh = (mixing @ torch.randn(c, 300 * 200, dtype=torch.complex128, generator=g)).reshape(c, 300, 200)
    white = prewhiten(fresh, w)
    emp = noise_covariance(white)
    assert torch.allclose(emp, torch.eye(c, dtype=emp.dtype), atol=0.03)
    # ISMRMRD/Gadgetron convention: real and imaginary parts of unit variance, bandwidth scaling
    w2 = prewhitening_matrix(cov, bandwidth_ratio=bandwidth_ratio(5.0, 10.0, 0.793), real_unit_variance=True)
    assert torch.allclose(w2, w * math.sqrt(2 * 5.0 / 10.0 * 0.793))
    re = prewhiten(fresh, prewhitening_matrix(cov, real_unit_variance=True)).real
    assert abs(float(re.var()) - 1) < 0.03
    # CoilMix is the same operation as a Linop on [C, H, W]
    assert torch.allclose(CoilMix(w, (c, 300, 200))(fresh), white)


def test_prewhitening_equals_ismrmrd_python_tools_formula() -> None:
    # ismrmrd-python-tools calculate_prewhitening: inv(chol(η η^H / (N - 1))) * sqrt(2) * sqrt(scale_factor)
    noise = torch.randn(4, 1000, dtype=torch.complex128, generator=_gen(2))
    ref = np.linalg.inv(np.linalg.cholesky(noise.numpy() @ noise.numpy().conj().T / 999)) * np.sqrt(2) * np.sqrt(0.7)
    ours = prewhitening_matrix(noise_covariance(noise), bandwidth_ratio=0.7, real_unit_variance=True)
    np.testing.assert_allclose(ours.numpy(), ref, rtol=1e-10, atol=1e-12)


def _low_rank_coils(c: int, h: int, w: int, rank: int, noise: float, seed: int) -> torch.Tensor:
    g = _gen(seed)
    base = torch.randn(rank, h, w, dtype=torch.complex128, generator=g)
    mix = torch.randn(c, rank, dtype=torch.complex128, generator=g)
    return torch.einsum("cr,rhw->chw", mix, base) + noise * torch.randn(c, h, w, dtype=torch.complex128, generator=g)


def test_coil_compression_energy() -> None:
    x = _low_rank_coils(8, 17, 11, rank=3, noise=0.0, seed=3)
    a = compression_matrix(x, n=3)
    assert a.shape == (3, 8)
    assert torch.allclose(a @ a.conj().T, torch.eye(3, dtype=a.dtype), atol=1e-12)
    z = coil_compress(x, a)
    assert z.shape == (3, 17, 11)
    assert abs(float(z.abs().pow(2).sum() / x.abs().pow(2).sum()) - 1) < 1e-10  # rank 3: nothing lost
    assert torch.allclose(a.conj().T @ z.reshape(3, -1), x.reshape(8, -1), atol=1e-10)
    # energy fraction: the fewest virtual coils reaching it
    y = _low_rank_coils(8, 17, 11, rank=8, noise=0.0, seed=4)
    s = torch.linalg.svdvals(y.reshape(8, -1))
    share = torch.cumsum(s ** 2, 0) / (s ** 2).sum()
    for frac in (0.5, 0.9, 0.99, 1.0):
        n = int((share < frac - 1e-12).sum()) + 1
        a = compression_matrix(y, energy=frac)
        assert a.shape[0] == n
        kept = float(coil_compress(y, a).abs().pow(2).sum() / y.abs().pow(2).sum())
        assert kept >= frac - 1e-9 and abs(kept - float(share[n - 1])) < 1e-10
    # the compression commutes with the FFT (it mixes coils only): compress k-space or images alike
    assert torch.allclose(coil_compress(fft2c(y), a), fft2c(coil_compress(y, a)), atol=1e-10)


@pytest.mark.bart
def test_coil_compression_matches_bart_cc(bart: str, tmp_path) -> None:
    x = _low_rank_coils(8, 24, 19, rank=4, noise=0.05, seed=5).to(torch.complex64)
    write_cfl(tmp_path / "k", np.moveaxis(x.numpy(), 0, -1)[:, :, None, :])  # BART [X, Y, 1, C]
    run_tool(bart, "cc", "-A", "-S", "-p", "4", tmp_path / "k", tmp_path / "kc")
    theirs = np.moveaxis(read_cfl(tmp_path / "kc").reshape(24, 19, 4), -1, 0).reshape(4, -1)
    ours = coil_compress(x, compression_matrix(x, n=4)).numpy().reshape(4, -1)
    # the same virtual coils up to a unit-modulus phase each (singular vectors are defined up to a phase)
    q = ours @ np.linalg.pinv(theirs)
    np.testing.assert_allclose(np.abs(q), np.eye(4), atol=1e-4)
    np.testing.assert_allclose(ours, q @ theirs, atol=1e-4 * np.abs(ours).max())


def test_acs_size() -> None:
    line = equispaced_mask(64, 4, 0.125, seed=0)       # 8 centre lines
    assert acs_size(line, (40, 64)) == (40, 8)
    assert acs_size(line.reshape(1, 1, 64), (40, 64)) == (40, 8)
    m = poisson_mask_bart((48, 40), 2, 2, calib=10, seed=0)
    ch, cw = acs_size(m, (48, 40))
    assert ch >= 10 and cw >= 10
    assert acs_size(torch.zeros(48, 40), (48, 40)) == (0, 0)
    with pytest.raises(ShapeError, match=r"acs_size: mask of shape \[7\] does not broadcast to \[40, 64\]"):
        acs_size(torch.ones(7), (40, 64))


@pytest.mark.parametrize("window", ["hann", "box"])
def test_lowres_maps_recover_smooth_maps(window: str) -> None:
    h, w, c = 64, 56, 6
    maps = _smooth_maps(c, h, w)
    img = _phantom(h, w)
    k = fft2c(maps * img)
    mask = equispaced_mask(w, 4, 0.25, seed=0)
    est = lowres_maps(k * mask, acs_size(mask, (h, w)), window=window)
    assert est.shape == (c, h, w) and est.dtype == k.dtype
    inside = _phantom(h, w).real > 0
    assert torch.allclose(rss(est)[inside], torch.ones(()).double().expand(int(inside.sum())), atol=1e-6)
    # maps up to the (positive, real) object: error small inside the object away from its edge
    core = torch.zeros_like(inside)
    core[h // 4: 3 * h // 4, w // 4: 3 * w // 4] = True
    err = (est - maps).abs().max(dim=0).values[core & inside].max()
    assert err < 0.1, float(err)
    # and a Sense operator built from them reproduces the data's coil images in the object
    x0 = Sense(est, None).H(fft2c(maps * img))
    assert float((x0.abs() - img.abs())[core].abs().max()) < 0.1


def test_coil_bad_inputs() -> None:
    with pytest.raises(DTypeError, match=r"noise_covariance: noise must be complex .* got torch.float32"):
        noise_covariance(torch.ones(4, 10))
    with pytest.raises(ShapeError, match=r"at least 2 noise samples per coil, got noise of shape \[4, 1\]"):
        noise_covariance(torch.ones(4, 1, dtype=torch.complex64))
    with pytest.raises(DataError, match="not positive definite"):
        prewhitening_matrix(torch.zeros(3, 3, dtype=torch.complex128))
    with pytest.raises(ShapeError, match=r"cov must be a square matrix \[C, C\], got \[3, 4\]"):
        prewhitening_matrix(torch.ones(3, 4, dtype=torch.complex128))
    with pytest.raises(ConfigError, match="noise_dwell_time must be a positive number"):
        bandwidth_ratio(5.0, 0.0)
    with pytest.raises(ShapeError, match=r"matrix of shape \[3, 3\] mixes 3 coils but kspace of shape \[4, 5, 6\]"):
        prewhiten(torch.ones(4, 5, 6, dtype=torch.complex64), torch.eye(3, dtype=torch.complex64))
    with pytest.raises(ConfigError, match="give exactly one of n"):
        compression_matrix(torch.ones(4, 5, 6, dtype=torch.complex64))
    with pytest.raises(ConfigError, match=r"n must be an integer in \[1, 4\]"):
        compression_matrix(torch.ones(4, 5, 6, dtype=torch.complex64), n=5)
    with pytest.raises(ShapeError, match=r"CoilMix: matrix \[C_out, C_in\] = \[3, 5\] takes 5 coils but shape "
                                         r"\[4, 7, 9\] has 4 coils"):
        CoilMix(torch.ones(3, 5, dtype=torch.complex64), (4, 7, 9))
    with pytest.raises(ShapeError, match=r"sense_combine: maps have shape \[4, 8, 8\].* coil images have \[5, 8, 8\]"):
        sense_combine(torch.ones(5, 8, 8, dtype=torch.complex64), torch.ones(4, 8, 8, dtype=torch.complex64))
    with pytest.raises(ConfigError, match="calibration box 20x20 must be non-empty and fit in k-space 16x16"):
        lowres_maps(torch.ones(2, 16, 16, dtype=torch.complex64), 20)
    with pytest.raises(ConfigError, match="window must be 'hann' or 'box'"):
        lowres_maps(torch.ones(2, 16, 16, dtype=torch.complex64), 8, window="kaiser")

"""Behaviour of the general imaging operators (the contract tests cover adjointness and linearity)."""
from __future__ import annotations

import numpy as np
import pytest
import scipy.ndimage
import scipy.signal
import torch
import torch.nn.functional as F

from mrirecon.errors import ConfigError, DTypeError, NonFiniteError, ShapeError
from mrirecon.operators import (Blur, DenseMatrix, Downsample, Identity, Inpaint, denoising, gaussian_kernel,
                                gaussian_matrix)


def _rand(*shape: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(*shape, dtype=torch.complex128, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("boundary", ["circular", "zero", "valid"])
@pytest.mark.parametrize("ksize", [(5, 3), (4, 3), (1, 1)])
def test_blur_of_delta_is_the_kernel(boundary: str, ksize: tuple[int, int]) -> None:
    h, w = 17, 11
    k = _rand(*ksize, seed=1)
    x = torch.zeros(h, w, dtype=torch.complex128)
    x[h // 2, w // 2] = 1
    y = Blur(k, (h, w), boundary)(x)
    kh, kw = ksize
    if boundary == "valid":
        assert y.shape == (h - kh + 1, w - kw + 1)
        y0, x0 = h // 2 - kh + 1, w // 2 - kw + 1   # y[n] = Σ k[m] x[n + kh - 1 - m]
    else:
        assert y.shape == (h, w)
        y0, x0 = h // 2 - kh // 2, w // 2 - kw // 2  # the kernel centre lands on the delta
    assert torch.allclose(y[y0:y0 + kh, x0:x0 + kw], k, atol=1e-12)
    rest = y.clone()
    rest[y0:y0 + kh, x0:x0 + kw] = 0
    assert rest.abs().max() < 1e-12


def test_blur_matches_scipy() -> None:
    x = _rand(17, 11, seed=2)
    k = gaussian_kernel((1.2, 0.8), (5, 3))
    xn, kn = x.numpy(), k.numpy()
    same = scipy.signal.convolve2d(xn, kn, mode="same")       # odd kernel: the same centring as ours
    valid = scipy.signal.convolve2d(xn, kn, mode="valid")
    wrap = scipy.ndimage.convolve(xn.real, kn, mode="wrap") + 1j * scipy.ndimage.convolve(xn.imag, kn, mode="wrap")
    np.testing.assert_allclose(Blur(k, (17, 11), "zero")(x).numpy(), same, atol=1e-12)
    np.testing.assert_allclose(Blur(k, (17, 11), "valid")(x).numpy(), valid, atol=1e-12)
    np.testing.assert_allclose(Blur(k, (17, 11), "circular")(x).numpy(), wrap, atol=1e-12)
    # even kernel: full convolution cropped at (kh // 2, kw // 2)
    ke = _rand(4, 2, seed=3)
    full = scipy.signal.convolve2d(xn, ke.numpy(), mode="full")
    np.testing.assert_allclose(Blur(ke, (17, 11), "zero")(x).numpy(), full[2:2 + 17, 1:1 + 11], atol=1e-12)


def test_blur_kernel_gradient_and_batches() -> None:
    k = gaussian_kernel(1.0, 5).requires_grad_(True)
    x = _rand(3, 16, 12, seed=4)
    y = Blur(k, (16, 12), "zero")(x)
    (g,) = torch.autograd.grad(y.abs().pow(2).sum(), k)
    assert g.shape == k.shape and torch.isfinite(g).all()
    A = Blur(gaussian_kernel(1.0, 5), (16, 12))
    assert torch.allclose(A(x)[1], A(x[1]))


@pytest.mark.parametrize("filt", ["box", "bicubic"])
@pytest.mark.parametrize("shape,factor", [((17, 11), 2), ((15, 9), 3), ((16, 12), 4)])
def test_downsample_of_constant_is_constant(filt: str, shape: tuple[int, int], factor: int) -> None:
    x = torch.full(shape, 2.5 - 1j, dtype=torch.complex128)
    y = Downsample(shape, factor, filt)(x)
    assert y.shape == tuple(-(-s // factor) for s in shape)
    assert torch.allclose(y, torch.full_like(y, 2.5 - 1j), atol=1e-12)
    yz = Downsample(shape, factor, filt, boundary="zero")(x)
    m = 1 if filt == "box" else 2  # outputs whose filter support lies inside the image
    inner = yz[m:-m, m:-m]
    assert torch.allclose(inner, torch.full_like(inner, 2.5 - 1j), atol=1e-12)


def test_downsample_matches_torch() -> None:
    x = torch.randn(1, 1, 48, 36, dtype=torch.float64, generator=torch.Generator().manual_seed(5))
    box = Downsample((48, 36), 4, "box")(x[0, 0] + 0j)
    assert torch.allclose(box.real, F.avg_pool2d(x, 4)[0, 0], atol=1e-12)
    for f in (2, 3, 4):
        ours = Downsample((48, 36), f, "bicubic")(x[0, 0] + 0j).real
        ref = F.interpolate(x, scale_factor=1 / f, mode="bicubic", antialias=True, align_corners=False)[0, 0]
        assert ours.shape == ref.shape
        m = 2 + 2  # away from the border, where PIL/torch renormalise the clipped support
        assert torch.allclose(ours[m:-m, m:-m], ref[m:-m, m:-m], atol=1e-6), f


def test_inpaint_and_denoising() -> None:
    mask = torch.rand(17, 11, generator=torch.Generator().manual_seed(6)) < 0.5
    x = _rand(2, 17, 11, seed=7)
    y = Inpaint(mask, (17, 11))(x)
    assert torch.equal(y[:, ~mask], torch.zeros_like(y[:, ~mask])) and torch.equal(y[:, mask], x[:, mask])
    assert isinstance(denoising((17, 11)), Identity) and torch.equal(denoising((17, 11))(x), x)


def test_gaussian_matrix_preserves_energy_on_average() -> None:
    x = _rand(8, 6, seed=8)
    ratios = [float(gaussian_matrix(30, (8, 6), seed=s, dtype=torch.complex128)(x).abs().pow(2).sum()
                    / x.abs().pow(2).sum()) for s in range(200)]
    assert abs(np.mean(ratios) - 1) < 0.05
    real = gaussian_matrix(30, (8, 6), seed=1, complex_entries=False, dtype=torch.complex128)
    assert real.matrix.imag.abs().max() == 0 and abs(float(real.matrix.real.var()) * 30 - 1) < 0.1
    a, b = gaussian_matrix(30, (8, 6), seed=1), gaussian_matrix(30, (8, 6), seed=1)
    assert torch.equal(a.matrix, b.matrix) and not torch.equal(a.matrix, gaussian_matrix(30, (8, 6), seed=2).matrix)
    assert a.oshape == (30,) and a(x.to(torch.complex64)).shape == (30,)


def test_imaging_bad_inputs() -> None:
    with pytest.raises(ShapeError, match=r"Blur: kernel \[9, 3\] is larger than the image \[7, 5\]"):
        Blur(torch.ones(9, 3), (7, 5))
    with pytest.raises(ConfigError, match="Blur: boundary must be one of circular, zero, valid, got 'reflect'"):
        Blur(torch.ones(3, 3), (7, 5), "reflect")
    with pytest.raises(ShapeError, match=r"Blur: kernel must have shape \[kh, kw\], got \[3\]"):
        Blur(torch.ones(3), (7, 5))
    with pytest.raises(NonFiniteError, match="Blur: kernel of shape"):
        Blur(torch.full((3, 3), float("nan")), (7, 5))
    with pytest.raises(ShapeError, match=r"Blur: expected input of shape \[..., 7, 5\], got \[7, 6\]"):
        Blur(torch.ones(3, 3), (7, 5))(torch.ones(7, 6, dtype=torch.complex64))
    with pytest.raises(DTypeError, match="Blur: expected a complex tensor as input"):
        Blur(torch.ones(3, 3), (7, 5))(torch.ones(7, 5))
    with pytest.raises(ShapeError, match=r"Blur.H: expected input of shape \[..., 5, 3\], got \[7, 5\]"):
        Blur(torch.ones(3, 3), (7, 5), "valid").H(torch.ones(7, 5, dtype=torch.complex64))
    with pytest.raises(ConfigError, match="Downsample: factor must be an integer >= 1"):
        Downsample((8, 8), 0)
    with pytest.raises(ConfigError, match="Downsample: filter must be 'box' or 'bicubic', got 'lanczos'"):
        Downsample((8, 8), 2, "lanczos")
    with pytest.raises(ShapeError, match=r"Inpaint: mask of shape \[7, 4\] does not broadcast to \[..., 7, 5\]"):
        Inpaint(torch.ones(7, 4), (7, 5))
    with pytest.raises(DTypeError, match="Inpaint: mask must be real"):
        Inpaint(torch.ones(7, 5, dtype=torch.complex64), (7, 5))
    with pytest.raises(ShapeError, match=r"DenseMatrix: matrix must have shape \[m, 35\] for images \[7, 5\]"):
        DenseMatrix(torch.ones(3, 30), (7, 5))
    with pytest.raises(ConfigError, match="m \\(number of measurements\\) must be a positive int"):
        gaussian_matrix(0, (7, 5))
    with pytest.raises(ConfigError, match="sigma must be positive"):
        gaussian_kernel(0.0)

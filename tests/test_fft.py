"""The centred orthonormal FFT against fastMRI and against BART ``fft -u -c``."""
from __future__ import annotations

import fastmri
import numpy as np
import pytest
import torch

from mrirecon.io.cfl import read_cfl, write_cfl
from mrirecon.operators import FFT, fft2c, fft3c, ifft2c, ifft3c
from tests.conftest import run_tool


@pytest.mark.parametrize("shape", [(3, 17, 11), (2, 8, 6), (16, 15)])
def test_fft2c_matches_fastmri(shape: tuple[int, ...]) -> None:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(*shape, dtype=torch.complex128, generator=g)
    ours = fft2c(x)
    theirs = torch.view_as_complex(fastmri.fft2c(torch.view_as_real(x).contiguous()))
    assert torch.allclose(ours, theirs, rtol=1e-12, atol=1e-12)
    back = torch.view_as_complex(fastmri.ifft2c(torch.view_as_real(ours).contiguous()))
    assert torch.allclose(ifft2c(ours), back, rtol=1e-12, atol=1e-12)
    assert torch.allclose(ifft2c(ours), x, rtol=1e-12, atol=1e-12)


def test_fft_is_unitary_and_centred() -> None:
    x = torch.ones(17, 11, dtype=torch.complex128)
    k = fft2c(x)
    assert torch.isclose(k[17 // 2, 11 // 2].abs(), torch.tensor(np.sqrt(17 * 11), dtype=torch.float64))
    assert torch.isclose(k.abs().pow(2).sum(), x.abs().pow(2).sum())
    y = torch.randn(5, 4, 3, dtype=torch.complex128, generator=torch.Generator().manual_seed(1))
    assert torch.allclose(ifft3c(fft3c(y)), y)


@pytest.mark.bart
@pytest.mark.parametrize("shape", [(17, 11, 3), (16, 12, 2)])
def test_fft2c_matches_bart(bart: str, tmp_path, shape: tuple[int, ...]) -> None:
    rng = np.random.default_rng(0)
    x = (rng.standard_normal(shape) + 1j * rng.standard_normal(shape)).astype(np.complex64)
    write_cfl(tmp_path / "x", x)
    # bart dims: 0 = x (read), 1 = y; flags 3 = dims 0 and 1; -u unitary. BART 0.8 centres by
    # default (``-n`` would switch centring off); newer releases spell the same thing ``-c``.
    run_tool(bart, "fft", "-u", "3", tmp_path / "x", tmp_path / "k")
    k_bart = read_cfl(tmp_path / "k")
    # our layout: coils first, image dims last.
    xt = torch.from_numpy(np.moveaxis(x, -1, 0).copy())
    k_ours = FFT(xt.shape)(xt).numpy()
    np.testing.assert_allclose(np.moveaxis(k_ours, 0, -1), k_bart, rtol=1e-4, atol=1e-5)
    run_tool(bart, "fft", "-i", "-u", "3", tmp_path / "k", tmp_path / "xb")
    np.testing.assert_allclose(read_cfl(tmp_path / "xb"), x, rtol=1e-4, atol=1e-5)


@pytest.mark.bart
@pytest.mark.parametrize("shape", [(9, 8, 5), (6, 7, 4)])
def test_fft3c_matches_bart(bart: str, tmp_path, shape: tuple[int, ...]) -> None:
    """3D: ``fft3c`` (and ``FFT(dim=(-3, -2, -1))``) against ``bart fft -u 7`` (dims 0, 1, 2), forward and inverse."""
    rng = np.random.default_rng(1)
    x = (rng.standard_normal(shape) + 1j * rng.standard_normal(shape)).astype(np.complex64)
    write_cfl(tmp_path / "x", x)
    run_tool(bart, "fft", "-u", "7", tmp_path / "x", tmp_path / "k")
    k_bart = read_cfl(tmp_path / "k")
    xt = torch.from_numpy(x)
    np.testing.assert_allclose(fft3c(xt).numpy(), k_bart, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(FFT(shape, dim=(-3, -2, -1))(xt).numpy(), k_bart, rtol=1e-4, atol=1e-5)
    run_tool(bart, "fft", "-i", "-u", "7", tmp_path / "k", tmp_path / "xb")
    np.testing.assert_allclose(ifft3c(torch.from_numpy(k_bart)).numpy(), read_cfl(tmp_path / "xb"), rtol=1e-4,
                               atol=1e-5)

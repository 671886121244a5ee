"""Undersampling masks against fastMRI's mask functions and BART ``poisson``."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from fastmri.data.subsample import EquispacedMaskFractionFunc, RandomMaskFunc

from mrirecon.errors import ConfigError, ShapeError
from mrirecon.io.cfl import read_cfl
from mrirecon.operators import masks as M
from mrirecon.operators.masks import (MASKS, MaskSpec, equispaced_mask, gaussian_mask, poisson_mask,
                                      poisson_mask_bart, random_mask)
from tests.conftest import run_tool

LINE_CASES = [(368, 4, 0.08), (368, 8, 0.04), (17, 4, 0.25), (320, 4, 0.08), (11, 2, 0.2), (640, 6, 0.06)]
SEEDS = [0, 1, 1234, tuple(map(ord, "file1000001.h5"))]


def _fastmri(func: type, w: int, accel: float, cf: float, seed: object) -> tuple[np.ndarray, int]:
    mask, num_low = func([cf], [accel])((1, 5, w, 2), seed=seed)
    assert mask.shape == (1, 1, w, 1)
    return mask.reshape(-1).numpy(), num_low


@pytest.mark.parametrize("w,accel,cf", LINE_CASES)
@pytest.mark.parametrize("seed", SEEDS, ids=["0", "1", "1234", "fname"])
def test_random_mask_equals_fastmri(w: int, accel: float, cf: float, seed: object) -> None:
    ref, num_low = _fastmri(RandomMaskFunc, w, accel, cf, seed)
    ours = random_mask(w, accel, cf, seed)
    assert ours.dtype == torch.float32 and ours.shape == (w,)
    np.testing.assert_array_equal(ours.numpy(), ref)
    pad = (w - num_low + 1) // 2
    assert ours[pad:pad + num_low].eq(1).all()


@pytest.mark.parametrize("w,accel,cf", LINE_CASES)
@pytest.mark.parametrize("seed", SEEDS, ids=["0", "1", "1234", "fname"])
def test_equispaced_mask_equals_fastmri(w: int, accel: float, cf: float, seed: object) -> None:
    ref, num_low = _fastmri(EquispacedMaskFractionFunc, w, accel, cf, seed)
    ours = equispaced_mask(w, accel, cf, seed)
    np.testing.assert_array_equal(ours.numpy(), ref)
    assert abs(float(ours.sum()) - w / accel) <= 2  # the adjusted spacing reaches about W/R lines


def test_equispaced_offset_equals_fastmri() -> None:
    for offset in range(3):
        ref, _ = EquispacedMaskFractionFunc([0.08], [4])((1, 5, 368, 2), offset=offset, seed=3)
        np.testing.assert_array_equal(equispaced_mask(368, 4, 0.08, 3, offset=offset).numpy(), ref.reshape(-1).numpy())


def test_random_mask_fraction_over_seeds() -> None:
    fr = np.mean([float(random_mask(368, 4, 0.08, s).mean()) for s in range(200)])
    assert abs(fr - 0.25) < 0.01


def test_line_mask_centre_contains_dc_for_odd_sizes() -> None:
    for w in (11, 17, 31):
        m = random_mask(w, 2, 0.2, 0)
        assert m[w // 2] == 1


def test_maskspec_1d_and_registry() -> None:
    assert set(MASKS.names()) == {"random", "equispaced", "poisson", "gaussian"}
    spec = MaskSpec("equispaced", 4, center_fraction=0.08)
    m = spec.make((640, 368), seed=5)
    assert m.shape == (368,) and m.dtype == torch.float32 and not spec.is_2d
    assert torch.equal(m, equispaced_mask(368, 4, 0.08, 5))
    assert torch.equal(MaskSpec("random", 8, 0.04).make((20, 368), seed=(1, 2)), random_mask(368, 8, 0.04, (1, 2)))


# --------------------------------------------------------------------------- Poisson disc
def _pairwise_ok(pts: np.ndarray, d0: float, vard: float) -> bool:
    r = d0 * (1 + vard * ((pts - 0.5) ** 2).sum(1))
    d = np.sqrt(((pts[:, None] - pts[None]) ** 2).sum(-1))
    np.fill_diagonal(d, np.inf)
    # the later of two points was placed farther than its own radius from the earlier one
    later = np.maximum.outer(np.arange(len(pts)), np.arange(len(pts)))
    return bool((d > r[later] * (1 - 1e-9)).all())


@pytest.mark.parametrize("vard", [0.0, 20.0])
def test_poisson_disc_keeps_minimum_distance(vard: float) -> None:
    d0 = 1 / 1.275 / 40
    pts = M._poisson_disc(np.array([0.2, 0.3]), np.array([0.8, 0.7]), d0, vard, np.random.default_rng(0))
    assert len(pts) > 50
    assert _pairwise_ok(pts, d0, vard)
    assert ((pts >= [0.2, 0.3]) & (pts <= [0.8, 0.7])).all()


BART_CASES = [  # (Y, Z, y, z, C, -v, -e)
    (96, 80, 1.5, 2.0, 12, True, False),
    (96, 80, 2.0, 2.0, 10, False, False),
    (71, 91, 1.2, 1.2, 8, True, True),
]


@pytest.mark.bart
@pytest.mark.parametrize("case", BART_CASES, ids=["vd", "uniform", "elliptical-odd"])
def test_poisson_matches_bart(bart: str, tmp_path, case: tuple) -> None:
    ny, nz, ay, az, c, vd, ell = case
    ours, theirs = [], []
    for seed in (1, 2):
        args = ["-Y", ny, "-Z", nz, "-y", ay, "-z", az, "-C", c, "-s", seed] + (["-v"] if vd else []) \
            + (["-e"] if ell else [])
        run_tool(bart, "poisson", *args, tmp_path / "p")
        b = np.abs(read_cfl(tmp_path / "p")).reshape(ny, nz)  # BART dims [1, Y, Z]
        m = poisson_mask_bart((ny, nz), ay, az, c, vd, ell, seed=seed).numpy()
        assert m.shape == (ny, nz) and m.dtype == np.float32
        # the same fully sampled calibration square, at the same place
        y0, z0 = (ny - c) // 2, (nz - c) // 2
        assert b[y0:y0 + c, z0:z0 + c].min() == 1 and m[y0:y0 + c, z0:z0 + c].min() == 1
        assert m[ny // 2, nz // 2] == 1
        ours.append(m.mean())
        theirs.append(b.mean())
        if ell:  # nothing outside the inscribed ellipse
            yy, zz = np.meshgrid((np.arange(ny) + 0.5) / ny - 0.5, (np.arange(nz) + 0.5) / nz - 0.5, indexing="ij")
            assert m[yy ** 2 + zz ** 2 > 0.3].sum() == 0 and b[yy ** 2 + zz ** 2 > 0.3].sum() == 0
    # the same sampled fraction (BART and ours are the same random process with different streams)
    assert abs(np.mean(ours) / np.mean(theirs) - 1) < 0.04, (ours, theirs)


@pytest.mark.parametrize("shape,accel,calib", [((96, 80), 4, 12), ((96, 80), 8, (10, 6)), ((17, 11), 2, 3),
                                               ((64, 61), 6, 0)])
def test_poisson_mask_reaches_acceleration(shape: tuple[int, int], accel: float, calib: object) -> None:
    m = poisson_mask(shape, accel, calib, seed=3)
    tol = 0.02 if shape[0] > 20 else 0.1
    assert abs(float(m.mean()) * accel - 1) <= tol
    c = M.calib_size(calib, shape, "t")
    y0, z0 = (shape[0] - c[0]) // 2, (shape[1] - c[1]) // 2
    assert m[y0:y0 + c[0], z0:z0 + c[1]].eq(1).all()
    assert torch.equal(m, poisson_mask(shape, accel, calib, seed=3))
    assert not torch.equal(m, poisson_mask(shape, accel, calib, seed=4))
    # variable density: the centre is sampled more densely than the periphery
    h, w = shape
    centre = m[h // 4: 3 * h // 4, w // 4: 3 * w // 4].mean()
    assert centre > m.mean()


def test_maskspec_2d() -> None:
    spec = MaskSpec("poisson", 5, calib=8)
    m = spec.make((48, 40), seed=7)
    assert spec.is_2d and m.shape == (48, 40) and m.dtype == torch.float32
    assert torch.equal(m, poisson_mask((48, 40), 5, 8, seed=7))
    g = MaskSpec("gaussian", 4, center_fraction=0.1).make((48, 40), seed=(3, 4))
    assert g.shape == (48, 40) and int(g.sum()) == round(48 * 40 / 4)
    assert g[21:26, 18:22].eq(1).all()  # 5x4 calibration box (round(48*.1) x round(40*.1)) at (n - c) // 2


@pytest.mark.parametrize("shape", [(17, 11), (64, 48)])
def test_gaussian_mask(shape: tuple[int, int]) -> None:
    m = gaussian_mask(shape, 3, calib=3, seed=0)
    assert int(m.sum()) == round(shape[0] * shape[1] / 3)
    h, w = shape
    assert m[(h - 3) // 2:(h - 3) // 2 + 3, (w - 3) // 2:(w - 3) // 2 + 3].eq(1).all()
    assert torch.equal(m, gaussian_mask(shape, 3, calib=3, seed=0))
    many = torch.stack([gaussian_mask(shape, 3, seed=s) for s in range(30)]).mean(0)
    assert many[h // 2, w // 2] > many[0, 0]


# --------------------------------------------------------------------------- bad arguments
@pytest.mark.parametrize("call,match", [
    (lambda: random_mask(368, 0.5, 0.08, 0), "acceleration must be a finite number >= 1, got 0.5"),
    (lambda: random_mask(368, 4, 0.0, 0), r"center_fraction must be in \(0, 1\), got 0.0"),
    (lambda: equispaced_mask(368, 4, 1.5, 0), r"center_fraction must be in \(0, 1\), got 1.5"),
    (lambda: random_mask(368, 4, 0.5, 0), "keeps 184 of 368 lines, more than the 92.0 lines"),
    (lambda: random_mask(0, 4, 0.08, 0), "number of columns must be a positive integer, got 0"),
    (lambda: equispaced_mask(368, 4, 0.08, 0, offset=9), r"offset must be in \[0, 5\), got 9"),
    (lambda: MaskSpec("radial", 4), "unknown mask kind 'radial'; known: equispaced, gaussian, poisson, random"),
    (lambda: MaskSpec("random", 4), "center_fraction is required"),
    (lambda: MaskSpec("random", 4, 0.08, calib=8), "calib applies to 2D masks"),
    (lambda: MaskSpec("poisson", float("nan")), "acceleration must be a finite number"),
    (lambda: MaskSpec("poisson", 4, calib=8).make((32,), 0), r"expected a 2D k-space shape \(H, W\), got \(32,\)"),
    (lambda: poisson_mask((32, 32), 4, calib=40), "calibration region 40x40 does not fit in k-space 32x32"),
    (lambda: poisson_mask((32, 32), 8, calib=20), "calibration region 20x20 alone samples 0.391"),
    (lambda: poisson_mask_bart((32, 32), 0.5, 2), "acceleration must be a finite number >= 1"),
    (lambda: poisson_mask_bart((32, 32), 2, 2, variable_density=-1.0), "variable_density must be"),
    (lambda: gaussian_mask((32, 32), 8, calib=12), "holds 144 samples, more than the 128"),
    (lambda: gaussian_mask((32, 32), 4, std=0), "std must be a positive number"),
    (lambda: random_mask(368, 4, 0.08, "seed"), "seed must be an int or a sequence of ints"),
])
def test_bad_mask_arguments(call, match: str) -> None:
    with pytest.raises((ConfigError, ShapeError), match=match):
        call()


def test_sense_normal_with_line_mask_layouts() -> None:
    """A line mask as [W], [1, 1, W] or expanded to [H, W] gives the same fast normal (1D FFTs only)."""
    from mrirecon.operators import Sense

    g = torch.Generator().manual_seed(0)
    maps = torch.randn(3, 17, 11, dtype=torch.complex128, generator=g)
    x = torch.randn(17, 11, dtype=torch.complex128, generator=g)
    line = random_mask(11, 2, 0.2, seed=1).double()
    ref = Sense(maps, line).H(Sense(maps, line)(x))
    for m in (line, line.reshape(1, 1, 11), line.expand(17, 11), line.reshape(11, 1).T.expand(3, 17, 11)):
        E = Sense(maps, m)
        assert torch.allclose(E.N(x), ref, atol=1e-12)
        assert E._normal_parts()[0] == (-1,)
    # lines along H (a transposed mask) use FFTs along H only
    E = Sense(maps, random_mask(17, 2, 0.2, seed=1).double().reshape(17, 1))
    assert E._normal_parts()[0] == (-2,) and torch.allclose(E.N(x), E.H(E(x)), atol=1e-12)
    # a 2D mask keeps the 2D form
    E = Sense(maps, poisson_mask_bart((17, 11), 1.5, 1.5, 3, seed=0).double())
    assert E._normal_parts()[0] == (-2, -1) and torch.allclose(E.N(x), E.H(E(x)), atol=1e-12)

"""Cartesian undersampling masks: fastMRI line masks, BART Poisson-disc and Gaussian 2D masks.

All functions are deterministic given ``seed`` and never touch a global random state. They return
float32 torch tensors: ``[W]`` for 1D line masks (the phase-encoding lines are the columns of a
``[H, W]`` k-space, as in fastMRI) and ``[H, W]`` for 2D masks (ky-kz, as in BART ``poisson``).
The k-space centre (DC) is at index ``n // 2`` of each axis (the convention of :mod:`fft`).

* ``random_mask`` / ``equispaced_mask``: bit-identical to ``fastmri.data.subsample.RandomMaskFunc``
  and ``EquispacedMaskFractionFunc`` called with the same seed (they use the same numpy Mersenne
  Twister stream, a local ``numpy.random.RandomState``, so fastMRI's validation masks, seeded with
  ``tuple(map(ord, file_name))``, are reproduced exactly).
* ``poisson_mask``: BART ``poisson`` (Bridson dart throwing, minimum distance ``1/1.275`` of the
  largest dimension, variable density ``1 + 20 r²``, scaling by the accelerations, calibration square).
* ``gaussian_mask``: exactly ``round(H W / R)`` samples drawn without replacement with a Gaussian
  variable density, plus a fully sampled calibration box.

:class:`MaskSpec` is the configuration object (``MaskSpec("poisson", 8, calib=24).make((H, W), seed)``);
``MASKS`` is the registry of kinds.
"""
from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from mrirecon.errors import ConfigError, ShapeError
from mrirecon.registry import Registry

Seed = int | Sequence[int]

__all__ = [
    "MASKS", "MaskSpec", "calib_size", "equispaced_mask", "gaussian_mask", "poisson_mask",
    "poisson_mask_bart", "random_mask",
]


# ----------------------------------------------------------------------------------------------
# argument checks
# ----------------------------------------------------------------------------------------------
def _check_accel(acceleration: float, who: str) -> float:
    if isinstance(acceleration, bool) or not isinstance(acceleration, (int, float)) \
            or not math.isfinite(acceleration) or acceleration < 1:
        raise ConfigError(f"{who}: acceleration must be a finite number >= 1, got {acceleration!r}")
    return float(acceleration)


def _check_fraction(center_fraction: float | None, who: str) -> float:
    if center_fraction is None:
        raise ConfigError(f"{who}: center_fraction is required for 1D line masks (e.g. 0.08 for 4x)")
    if isinstance(center_fraction, bool) or not isinstance(center_fraction, (int, float)) \
            or not 0 < center_fraction < 1:
        raise ConfigError(f"{who}: center_fraction must be in (0, 1), got {center_fraction!r}")
    return float(center_fraction)


def _check_size(n: int, who: str, what: str = "number of columns") -> int:
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise ShapeError(f"{who}: {what} must be a positive integer, got {n!r}")
    return int(n)


def _check_shape2(shape: Sequence[int], who: str) -> tuple[int, int]:
    shape = tuple(shape)
    if len(shape) != 2:
        raise ShapeError(f"{who}: expected a 2D k-space shape (H, W), got {shape}")
    return _check_size(shape[0], who, "H"), _check_size(shape[1], who, "W")


def _check_seed(seed: Seed, who: str) -> Seed:
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer, tuple, list)):
        raise ConfigError(f"{who}: seed must be an int or a sequence of ints, got {seed!r}")
    return seed


def _int_seed(seed: Seed) -> int:
    """An int seed from an int or a sequence of ints (fastMRI seeds masks with ``tuple(map(ord, fname))``)."""
    if isinstance(seed, (int, np.integer)) and not isinstance(seed, bool):
        return int(seed)
    return int(np.random.SeedSequence(list(_check_seed(seed, "mask seed"))).generate_state(1, np.uint64)[0] >> 1)


def calib_size(calib: int | Sequence[int] | None, shape: tuple[int, int], who: str) -> tuple[int, int]:
    """Normalise a calibration size (``int`` for a square, ``(ch, cw)``, or ``None`` for none).

    Raises:
        ConfigError: negative sizes or a region larger than ``shape``.
    """
    if calib is None:
        return 0, 0
    if isinstance(calib, (int, np.integer)) and not isinstance(calib, bool):
        c = (int(calib), int(calib))
    else:
        c = tuple(int(v) for v in calib)  # type: ignore[union-attr]
        if len(c) != 2:
            raise ConfigError(f"{who}: calib must be an int or a pair (ch, cw), got {calib!r}")
    if c[0] < 0 or c[1] < 0 or c[0] > shape[0] or c[1] > shape[1]:
        raise ConfigError(f"{who}: calibration region {c[0]}x{c[1]} does not fit in k-space {shape[0]}x{shape[1]}")
    return c  # type: ignore[return-value]


# ----------------------------------------------------------------------------------------------
# fastMRI 1D line masks
# ----------------------------------------------------------------------------------------------
def _center_lines(num_cols: int, num_low: int) -> np.ndarray:
    """fastMRI's centre block: ``num_low`` lines starting at ``(num_cols - num_low + 1) // 2``."""
    mask = np.zeros(num_cols, dtype=np.float32)
    pad = (num_cols - num_low + 1) // 2
    mask[pad:pad + num_low] = 1
    return mask


def _num_low(num_cols: int, acceleration: float, center_fraction: float, who: str) -> int:
    num_low = round(num_cols * center_fraction)
    if num_low > num_cols / acceleration:
        raise ConfigError(f"{who}: center_fraction {center_fraction} keeps {num_low} of {num_cols} lines, more "
                          f"than the {num_cols / acceleration:.1f} lines that acceleration {acceleration:g} allows")
    return num_low


def random_mask(num_cols: int, acceleration: float, center_fraction: float, seed: Seed) -> torch.Tensor:
    """Random 1D line mask with a fully sampled centre (fastMRI ``RandomMaskFunc``).

    ``round(W·center_fraction)`` central lines are kept; every other line is kept independently with
    probability ``(W/R - n_low) / (W - n_low)``, so that ``W/R`` lines are sampled on average.

    Args:
        num_cols: number of phase-encoding lines ``W``.
        acceleration: ``R >= 1``.
        center_fraction: fraction of fully sampled central lines, in (0, 1).
        seed: int or tuple of ints (fastMRI seeds validation masks with ``tuple(map(ord, fname))``).

    Returns:
        float32 ``[W]`` of zeros and ones, equal to ``RandomMaskFunc([cf], [R])(shape, seed=seed)``.

    Raises:
        ConfigError: acceleration < 1, center_fraction outside (0, 1), or more centre lines than W/R.
    """
    who = "random_mask"
    num_cols = _check_size(num_cols, who)
    acceleration = _check_accel(acceleration, who)
    center_fraction = _check_fraction(center_fraction, who)
    rng = np.random.RandomState(_check_seed(seed, who))
    num_low = _num_low(num_cols, acceleration, center_fraction, who)
    if num_low == num_cols:
        return torch.ones(num_cols, dtype=torch.float32)
    prob = (num_cols / acceleration - num_low) / (num_cols - num_low)
    outer = rng.uniform(size=num_cols) < prob
    return torch.from_numpy(np.maximum(_center_lines(num_cols, num_low), outer.astype(np.float32)))


def equispaced_mask(num_cols: int, acceleration: float, center_fraction: float, seed: Seed,
                    offset: int | None = None) -> torch.Tensor:
    """Equispaced 1D line mask with a fully sampled centre (fastMRI ``EquispacedMaskFractionFunc``).

    The outer lines are spaced by the adjusted acceleration ``R (n_low - W) / (n_low R - W)`` so that
    about ``W/R`` lines are sampled in total (the positions are rounded, so the spacing may vary by
    one line, as in the public fastMRI multicoil data). The first line is ``offset`` (random in
    ``[0, round(adjusted))`` when ``None``).

    Returns:
        float32 ``[W]``, equal to ``EquispacedMaskFractionFunc([cf], [R])(shape, offset, seed=seed)``.

    Raises:
        ConfigError: bad acceleration, center_fraction or offset.
    """
    who = "equispaced_mask"
    num_cols = _check_size(num_cols, who)
    acceleration = _check_accel(acceleration, who)
    center_fraction = _check_fraction(center_fraction, who)
    rng = np.random.RandomState(_check_seed(seed, who))
    num_low = _num_low(num_cols, acceleration, center_fraction, who)
    center = _center_lines(num_cols, num_low)
    denom = num_low * acceleration - num_cols
    if denom == 0 or num_low == num_cols:  # the centre alone reaches W/R
        return torch.from_numpy(center)
    adjusted = acceleration * (num_low - num_cols) / denom
    if offset is None:
        offset = int(rng.randint(0, high=round(adjusted)))
    elif not 0 <= offset < max(round(adjusted), 1):
        raise ConfigError(f"{who}: offset must be in [0, {round(adjusted)}), got {offset}")
    outer = np.zeros(num_cols, dtype=np.float32)
    lines = np.around(np.arange(offset, num_cols - 1, adjusted)).astype(np.int64)
    outer[lines] = 1.0
    return torch.from_numpy(np.maximum(center, outer))


# ----------------------------------------------------------------------------------------------
# BART Poisson-disc 2D masks
# ----------------------------------------------------------------------------------------------
_BART_MINDIST = 1.0 / 1.275   # BART poisson: minimum distance in units of 1/max(Y, Z)
_BART_VARDENS = 20.0          # BART poisson -v: radius grows as 1 + 20 r² (r from the centre, unit square)
_ATTEMPTS = 30                # BART pd.c: candidates tried around an active point
_KAPPA = 0.975                # sampled pixels per unit of Σ (1 + vd ρ²)^-2: packing of this process, measured
                              # on 17x11 .. 640x368 grids with vd 0 .. 46 (0.96 .. 1.00); refitted per trial


def _poisson_disc(lo: np.ndarray, hi: np.ndarray, d0: float, vard: float,
                  rng: np.random.Generator) -> np.ndarray:
    """Bridson dart throwing with the radius ``d0 (1 + vard |p - c|²)`` inside the box ``[lo, hi]``.

    The process of BART's ``poissondisc`` (misc/pd.c): start at the centre ``c = (0.5, 0.5)``, pick a
    random active point ``s``, draw up to 30 candidates uniformly in the annulus ``[r(s), 2 r(s)]``
    around it and accept the first one farther than ``r(candidate)`` from every point; retire ``s``
    when all 30 fail. Candidates are drawn 30 at a time (the first valid one of 30 i.i.d. draws has
    the distribution of BART's sequential attempts). Returns the points ``[P, 2]``.
    """
    cell = d0 / math.sqrt(2.0)   # a cell holds at most one point (points are >= d0 apart)
    gy, gz = (int(v) for v in np.maximum(np.ceil((hi - lo) / cell), 1))
    grid = np.full((gy, gz), -1, dtype=np.int64)
    cap = gy * gz + 1
    px = np.empty(cap, dtype=np.float64)
    pz = np.empty(cap, dtype=np.float64)
    ly, lz, hy, hz = float(lo[0]), float(lo[1]), float(hi[0]), float(hi[1])
    px[0], pz[0] = 0.5, 0.5
    grid[min(int((0.5 - ly) / cell), gy - 1), min(int((0.5 - lz) / cell), gz - 1)] = 0
    n = 1
    active = [0]
    chunk = 4096
    used = chunk
    while active:
        if used == chunk:
            u = rng.random((chunk, 2, _ATTEMPTS))
            rho = np.sqrt(1.0 + 3.0 * u[:, 0])              # uniform in the annulus area [r, 2 r]
            dy_all, dz_all = rho * np.cos(2 * math.pi * u[:, 1]), rho * np.sin(2 * math.pi * u[:, 1])
            pick = rng.random(chunk)
            used = 0
        k = min(int(pick[used] * len(active)), len(active) - 1)
        s = active[k]
        sy, sz = px[s], pz[s]
        rs = d0 * (1.0 + vard * ((sy - 0.5) ** 2 + (sz - 0.5) ** 2))
        cy = sy + rs * dy_all[used]
        cz = sz + rs * dz_all[used]
        used += 1
        rc = d0 * (1.0 + vard * ((cy - 0.5) ** 2 + (cz - 0.5) ** 2))
        ok = (cy >= ly) & (cy <= hy) & (cz >= lz) & (cz <= hz)
        reach = 2.0 * rs + d0 * (1.0 + vard * (abs(sy - 0.5) + 2 * rs) ** 2 + vard * (abs(sz - 0.5) + 2 * rs) ** 2)
        ids = grid[max(int((sy - reach - ly) / cell), 0):min(int((sy + reach - ly) / cell) + 1, gy),
                   max(int((sz - reach - lz) / cell), 0):min(int((sz + reach - lz) / cell) + 1, gz)]
        ids = ids[ids >= 0]
        if ids.size:
            d2 = (cy[:, None] - px[ids]) ** 2 + (cz[:, None] - pz[ids]) ** 2
            ok &= (d2 > (rc * rc)[:, None]).all(axis=1)
        j = int(ok.argmax())
        if ok[j]:
            px[n], pz[n] = cy[j], cz[j]
            grid[min(int((cy[j] - ly) / cell), gy - 1), min(int((cz[j] - lz) / cell), gz - 1)] = n
            active.append(n)
            n += 1
        else:
            active[k] = active[-1]
            active.pop()
    return np.stack([px[:n], pz[:n]], axis=1)


def _poisson_points_to_mask(shape: tuple[int, int], accel: tuple[float, float], vard: float,
                            elliptical: bool, rng: np.random.Generator) -> np.ndarray:
    """Run the Poisson-disc process on the part of BART's unit square that lands on the grid."""
    ny, nz = shape
    kext = float(max(ny, nz))
    d0 = _BART_MINDIST / kext
    scale = np.array([accel[0] * kext / ny, accel[1] * kext / nz])
    # Only |q - 0.5| <= 0.5 / scale survives the scaling; simulate that window plus a margin of two
    # maximal radii so that its border sees the same neighbourhood as in BART's full square.
    half = 0.5 / scale
    rmax = d0 * (1.0 + vard * float(((half + 4 * d0) ** 2).sum()))
    lo = np.maximum(0.5 - half - 2 * rmax, 0.0)
    hi = np.minimum(0.5 + half + 2 * rmax, 1.0)
    pts = _poisson_disc(lo, hi, d0, vard, rng)
    s = (pts - 0.5) * scale + 0.5
    keep = (np.sqrt(((s - 0.5) ** 2).sum(axis=1)) if elliptical else np.abs(s - 0.5).max(axis=1)) <= 0.5
    idx = np.floor(s[keep] * np.array([ny, nz])).astype(np.int64)
    idx = idx[(idx[:, 0] >= 0) & (idx[:, 0] < ny) & (idx[:, 1] >= 0) & (idx[:, 1] < nz)]
    mask = np.zeros((ny, nz), dtype=np.float32)
    mask[idx[:, 0], idx[:, 1]] = 1.0
    return mask


def _add_calib(mask: np.ndarray, calib: tuple[int, int]) -> None:
    """Fully sample the calibration box at BART's position ``(n - c) // 2 ...`` (contains DC ``n // 2``)."""
    (ny, nz), (cy, cz) = mask.shape, calib
    y0, z0 = (ny - cy) // 2, (nz - cz) // 2
    mask[y0:y0 + cy, z0:z0 + cz] = 1.0


def poisson_mask_bart(shape: Sequence[int], accel_y: float, accel_z: float, calib: int | Sequence[int] | None = 0,
                      variable_density: bool | float = True, elliptical: bool = False, seed: int = 0) -> torch.Tensor:
    """Poisson-disc 2D mask with BART ``poisson``'s parameters and semantics.

    Equivalent to ``bart poisson -Y H -Z W -y accel_y -z accel_z -C calib [-v] [-e] -s seed`` (the same
    random process with a different random stream). The accelerations scale the point pattern; with
    variable density the achieved acceleration is several times ``accel_y * accel_z`` (BART prints it
    as ``R``). Use :func:`poisson_mask` to ask for an achieved acceleration instead.

    Args:
        shape: ``(H, W)`` = BART ``(Y, Z)``.
        accel_y, accel_z: BART ``-y``, ``-z`` (>= 1).
        calib: side of the fully sampled calibration square (BART ``-C``) or ``(ch, cw)``.
        variable_density: ``True`` for BART ``-v`` (radius grows as ``1 + 20 r²``), ``False`` for uniform
            density, or a float for BART ``-V`` (the growth coefficient).
        elliptical: keep only the ellipse inscribed in the grid (BART ``-e``).
        seed: integer seed.

    Returns:
        float32 ``[H, W]`` of zeros and ones.

    Raises:
        ConfigError: accelerations below 1, negative density, calibration region larger than the grid.
    """
    who = "poisson_mask_bart"
    shape2 = _check_shape2(shape, who)
    ay, az = _check_accel(accel_y, who), _check_accel(accel_z, who)
    c = calib_size(calib, shape2, who)
    vard = _BART_VARDENS if variable_density is True else float(variable_density)
    if not math.isfinite(vard) or vard < 0:
        raise ConfigError(f"{who}: variable_density must be True/False or a number >= 0, got {variable_density!r}")
    rng = np.random.default_rng(_check_seed(seed, who))
    mask = _poisson_points_to_mask(shape2, (ay, az), vard, elliptical, rng)
    _add_calib(mask, c)
    return torch.from_numpy(mask)


def _density_integral(shape: tuple[int, int], calib: tuple[int, int], elliptical: bool
                      ) -> Callable[[float], float]:
    """``vd -> Σ (1 + vd ρ²)^-2`` over the pixels outside the calibration box (and inside the ellipse).

    ``ρ`` is the distance of a pixel centre from the k-space centre in BART's unit-square coordinates
    (pixel units divided by ``max(H, W)``). The expected number of Poisson-disc points on those pixels
    is proportional to this sum (the local density is ``∝ 1 / r²`` with ``r ∝ 1 + vd ρ²``).
    """
    ny, nz = shape
    kext = float(max(ny, nz))
    y = (np.arange(ny) + 0.5 - ny / 2) / kext
    z = (np.arange(nz) + 0.5 - nz / 2) / kext
    rho2 = y[:, None] ** 2 + z[None, :] ** 2
    keep = np.ones((ny, nz), dtype=bool)
    y0, z0 = (ny - calib[0]) // 2, (nz - calib[1]) // 2
    keep[y0:y0 + calib[0], z0:z0 + calib[1]] = False
    if elliptical:
        keep &= (y[:, None] * kext / ny) ** 2 + (z[None, :] * kext / nz) ** 2 <= 0.25
    r2 = rho2[keep]
    return lambda vd: float((1.0 / (1.0 + vd * r2) ** 2).sum())


def poisson_mask(shape: Sequence[int], acceleration: float, calib: int | Sequence[int] | None = 0,
                 elliptical: bool = False, seed: int = 0, tol: float = 0.02, max_iter: int = 8) -> torch.Tensor:
    """Variable-density Poisson-disc 2D mask whose achieved acceleration is ``acceleration``.

    The BART ``poisson`` process of :func:`poisson_mask_bart` without scaling (``-y 1 -z 1``) and with
    the variable-density coefficient ``vd`` (BART ``-V``; ``-v`` is ``vd = 20``) chosen so that the
    sampled fraction (calibration included) is within ``tol`` (relative) of ``1 / acceleration``: the
    minimum distance grows as ``1 + vd ρ²`` from the centre (``vd = 0``: uniform Poisson disc). ``vd``
    is found with a model of the point count, ``Σ_pixels (1 + vd ρ²)^-2``, whose scale is refitted to
    each trial inside a bracket (sigpy's ``poisson`` searches its density slope the same way). Every
    trial uses the same seed, so the mask is a deterministic function of the arguments. On tiny grids
    the tolerance may be unreachable and the closest trial is returned; accelerations below about 1.2
    (denser than a uniform Poisson disc) return the uniform pattern.

    Args:
        shape: ``(H, W)``.
        acceleration: the wanted ``H W / (number of samples)`` (>= 1).
        calib, elliptical, seed: as in :func:`poisson_mask_bart`.
        tol: relative tolerance on the sampled fraction.
        max_iter: maximal number of trials.

    Returns:
        float32 ``[H, W]``.

    Raises:
        ConfigError: bad arguments, or a calibration region alone above ``1 / acceleration`` of the grid.
    """
    who = "poisson_mask"
    shape2 = _check_shape2(shape, who)
    acceleration = _check_accel(acceleration, who)
    c = calib_size(calib, shape2, who)
    total = shape2[0] * shape2[1]
    n_cal = c[0] * c[1]
    target = total / acceleration  # wanted number of samples
    if n_cal > target * (1 + tol):
        raise ConfigError(f"{who}: the calibration region {c[0]}x{c[1]} alone samples {n_cal / total:.3f} "
                          f"of the grid, more than 1/acceleration = {1 / acceleration:.3f}")
    integral = _density_integral(shape2, c, elliptical)

    def solve(kappa: float, lo: float, hi: float) -> float:
        """``vd`` in ``[lo, hi]`` where the model ``n_cal + kappa Σ (1 + vd ρ²)^-2`` meets the target."""
        if n_cal + kappa * integral(hi) >= target:
            return hi
        if n_cal + kappa * integral(lo) <= target:
            return lo
        a, b = lo, hi
        for _ in range(60):
            mid = math.sqrt(a * b) if a > 0 else 0.5 * (a + b) if b < 1 else (a + b) / b
            mid = mid if a < mid < b else 0.5 * (a + b)
            if n_cal + kappa * integral(mid) > target:
                a = mid
            else:
                b = mid
        return 0.5 * (a + b)

    vd_max = 1e6
    lo, hi = 0.0, vd_max            # bracket on vd from trials: fraction(lo) > target > fraction(hi)
    kappa = _KAPPA                  # points per pixel at unit density (measured, refitted below)
    trials: list[tuple[float, torch.Tensor]] = []
    for _ in range(max(1, max_iter)):
        vd = solve(kappa, lo, hi)
        if trials and vd in (lo, hi):  # the model points at a bracket end already tried: bisect
            vd = 0.5 * (lo + min(hi, 2 * lo + 1.0))
        m = poisson_mask_bart(shape2, 1.0, 1.0, c, vd, elliptical, seed)
        n = float(m.sum())
        trials.append((n, m))
        if abs(n - target) <= tol * target:
            return m
        if n > target:
            lo = vd
        else:
            hi = vd
            if vd == 0.0:
                break  # the uniform Poisson disc is already too sparse
        kappa = max(n - n_cal, 1.0) / max(integral(vd), 1e-12)
        if hi - lo <= 1e-6 * max(hi, 1.0):
            break
    return min(trials, key=lambda tr: abs(tr[0] - target))[1]


# ----------------------------------------------------------------------------------------------
# Gaussian variable-density 2D masks
# ----------------------------------------------------------------------------------------------
def gaussian_mask(shape: Sequence[int], acceleration: float, calib: int | Sequence[int] | None = 0,
                  std: float = 0.25, seed: int = 0) -> torch.Tensor:
    """Gaussian variable-density random 2D mask with exactly ``round(H W / acceleration)`` samples.

    The calibration box (as in :func:`poisson_mask_bart`) is fully sampled; the remaining samples are
    drawn without replacement with probability proportional to
    ``exp(-(ky / (std H))² / 2 - (kz / (std W))² / 2)`` (``ky, kz`` measured from the centre ``n // 2``).

    Args:
        shape: ``(H, W)``.
        acceleration: ``R >= 1``.
        calib: calibration square side or ``(ch, cw)``.
        std: standard deviation of the density, as a fraction of each dimension (> 0).
        seed: integer seed of the ``torch.Generator`` used.

    Returns:
        float32 ``[H, W]``.

    Raises:
        ConfigError: bad acceleration/std, or a calibration region above ``1/acceleration`` of the grid.
    """
    who = "gaussian_mask"
    h, w = _check_shape2(shape, who)
    acceleration = _check_accel(acceleration, who)
    c = calib_size(calib, (h, w), who)
    if not isinstance(std, (int, float)) or not math.isfinite(std) or std <= 0:
        raise ConfigError(f"{who}: std must be a positive number, got {std!r}")
    n_total = round(h * w / acceleration)
    mask = torch.zeros(h, w, dtype=torch.float32)
    y0, z0 = (h - c[0]) // 2, (w - c[1]) // 2
    mask[y0:y0 + c[0], z0:z0 + c[1]] = 1.0
    n_rest = n_total - int(mask.sum())
    if n_rest < 0:
        raise ConfigError(f"{who}: the calibration region {c[0]}x{c[1]} holds {c[0] * c[1]} samples, more than "
                          f"the {n_total} that acceleration {acceleration:g} allows on {h}x{w}")
    if n_rest > 0:
        ky = (torch.arange(h, dtype=torch.float64) - h // 2) / (std * h)
        kz = (torch.arange(w, dtype=torch.float64) - w // 2) / (std * w)
        dens = torch.exp(-0.5 * (ky[:, None] ** 2 + kz[None, :] ** 2))
        dens = dens * (1.0 - mask.double())
        gen = torch.Generator().manual_seed(_int_seed(seed))
        idx = torch.multinomial(dens.reshape(-1), n_rest, replacement=False, generator=gen)
        mask.view(-1)[idx] = 1.0
    return mask


# ----------------------------------------------------------------------------------------------
# MaskSpec and the registry of kinds
# ----------------------------------------------------------------------------------------------
MaskFactory = Callable[["MaskSpec", tuple[int, int], Seed], torch.Tensor]

MASKS: Registry[MaskFactory] = Registry("mask kind")


@MASKS.register("random")
def _make_random(spec: MaskSpec, shape: tuple[int, int], seed: Seed) -> torch.Tensor:
    return random_mask(shape[1], spec.acceleration, spec.center_fraction, seed)  # type: ignore[arg-type]


@MASKS.register("equispaced")
def _make_equispaced(spec: MaskSpec, shape: tuple[int, int], seed: Seed) -> torch.Tensor:
    return equispaced_mask(shape[1], spec.acceleration, spec.center_fraction, seed)  # type: ignore[arg-type]


def _calib_2d(spec: MaskSpec, shape: tuple[int, int]) -> int | tuple[int, int] | None:
    if spec.calib is not None:
        return spec.calib
    if spec.center_fraction is not None:
        return (round(shape[0] * spec.center_fraction), round(shape[1] * spec.center_fraction))
    return None


@MASKS.register("poisson")
def _make_poisson(spec: MaskSpec, shape: tuple[int, int], seed: Seed) -> torch.Tensor:
    return poisson_mask(shape, spec.acceleration, _calib_2d(spec, shape), seed=_int_seed(seed))


@MASKS.register("gaussian")
def _make_gaussian(spec: MaskSpec, shape: tuple[int, int], seed: Seed) -> torch.Tensor:
    return gaussian_mask(shape, spec.acceleration, _calib_2d(spec, shape), seed=_int_seed(seed))


ONE_D_KINDS = ("random", "equispaced")


@dataclass(frozen=True)
class MaskSpec:
    """What mask to draw; :meth:`make` draws it for a k-space shape and a seed.

    Attributes:
        kind: a name in ``MASKS``: ``"random"``, ``"equispaced"`` (1D fastMRI line masks, ``[W]``),
            ``"poisson"``, ``"gaussian"`` (2D masks, ``[H, W]``).
        acceleration: ``R >= 1`` (for 2D kinds the achieved ``H W / samples``).
        center_fraction: 1D kinds: fraction of fully sampled central lines (required). 2D kinds:
            calibration box of ``round(H f) x round(W f)`` when ``calib`` is not given.
        calib: 2D kinds: side of the fully sampled calibration square, or ``(ch, cw)``.

    Raises:
        ConfigError: on construction, for an unknown kind or invalid values.
    """

    kind: str
    acceleration: float
    center_fraction: float | None = None
    calib: int | tuple[int, int] | None = None

    def __post_init__(self) -> None:
        who = f"MaskSpec({self.kind!r})"
        if self.kind not in MASKS:
            raise ConfigError(f"MaskSpec: unknown mask kind {self.kind!r}; known: {', '.join(MASKS.names())}")
        _check_accel(self.acceleration, who)
        if self.kind in ONE_D_KINDS:
            _check_fraction(self.center_fraction, who)
            if self.calib is not None:
                raise ConfigError(f"{who}: calib applies to 2D masks; 1D masks take center_fraction")
        elif self.center_fraction is not None and not 0 < self.center_fraction < 1:
            raise ConfigError(f"{who}: center_fraction must be in (0, 1), got {self.center_fraction!r}")

    @property
    def is_2d(self) -> bool:
        """Whether :meth:`make` returns a 2D ``[H, W]`` mask (else a 1D ``[W]`` line mask)."""
        return self.kind not in ONE_D_KINDS

    def make(self, shape: Sequence[int], seed: Seed) -> torch.Tensor:
        """Draw the mask for k-space of shape ``(H, W)``: float32 ``[W]`` (1D kinds) or ``[H, W]``.

        Raises:
            ShapeError: ``shape`` is not a pair of positive ints.  ConfigError: see the mask functions.
        """
        return MASKS.get(self.kind)(self, _check_shape2(shape, f"MaskSpec({self.kind!r}).make"), seed)

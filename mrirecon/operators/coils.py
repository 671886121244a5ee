"""Coil operations: RSS, SENSE combination, noise prewhitening, SVD coil compression, cheap maps.

Shapes: coil data ``[..., C, H, W]`` complex (the coil axis is ``-3`` unless stated); noise scans
``[C, N]`` (or ``[C, ...]``, flattened); coil-mixing matrices ``[C_out, C_in]``.

* Prewhitening (Kellman & McVeigh, MRM 2005; ISMRMRD/Gadgetron ``NoiseAdjustGadget``): with the
  noise covariance ``Ψ = η η^H / (N - 1)`` and its Cholesky factor ``Ψ = L L^H``, the whitened data
  ``W y`` with ``W = s L^{-1}`` have noise covariance ``s² I``. Gadgetron scales by
  ``s = sqrt(2 · acq_dwell / noise_dwell · receiver_noise_bandwidth)``; ``bandwidth_ratio`` and
  ``real_unit_variance`` reproduce that.
* SVD coil compression (Huang et al., MRI 2008; BART ``cc -S``): the ``n`` dominant left singular
  vectors of the calibration data ``X = U Σ V^H`` (``[C, samples]``) give the matrix ``U_n^H``.
* ``CoilMix(matrix, shape)`` is the linear operator ``y_c' = Σ_c M[c', c] x_c`` used by both.
"""
from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from mrirecon.errors import ConfigError, DataError, DTypeError, NonFiniteError, ShapeError
from mrirecon.operators.catalog import example, randc
from mrirecon.operators.fft import ifft2c
from mrirecon.operators.linop import Linop, _fmt

__all__ = [
    "CoilMix", "acs_size", "bandwidth_ratio", "coil_compress", "compression_matrix", "lowres_maps",
    "noise_covariance", "prewhiten", "prewhitening_matrix", "rss", "sense_combine",
]


def _check_complex(x: object, who: str, what: str, min_ndim: int, layout: str) -> torch.Tensor:
    if not isinstance(x, torch.Tensor):
        raise DTypeError(f"{who}: {what} must be a torch tensor {layout}, got {type(x).__name__}")
    if not x.is_complex():
        raise DTypeError(f"{who}: {what} must be complex (complex64/complex128) {layout}, got {x.dtype} "
                         f"of shape {_fmt(x.shape)}")
    if x.ndim < min_ndim:
        raise ShapeError(f"{who}: {what} must have shape {layout}, got {_fmt(x.shape)}")
    if not bool(torch.isfinite(x).all()):
        raise NonFiniteError(f"{who}: {what} of shape {_fmt(x.shape)} contains NaN or Inf")
    return x


# ----------------------------------------------------------------------------------------------
# combination
# ----------------------------------------------------------------------------------------------
def rss(x: torch.Tensor, dim: int = -3) -> torch.Tensor:
    """Root sum of squares over the coil axis: ``sqrt(Σ_c |x_c|²)`` (real output).

    Args:
        x: coil images ``[..., C, H, W]`` (complex or real).
        dim: the coil axis.

    Raises:
        DTypeError: not a tensor.
    """
    if not isinstance(x, torch.Tensor):
        raise DTypeError(f"rss: expected a torch tensor of coil images [..., C, H, W], got {type(x).__name__}")
    return torch.sqrt((x.abs() ** 2).sum(dim=dim))


def sense_combine(coil_images: torch.Tensor, maps: torch.Tensor) -> torch.Tensor:
    """Pixel-wise least-squares coil combination ``x = Σ_c conj(S_c) y_c / Σ_c |S_c|²`` (0 where ``S = 0``).

    With maps normalised to ``Σ_c |S_c|² = 1`` this is the adjoint of the coil expansion
    (``coil_reduce``); it returns ``x`` exactly when ``y_c = S_c x``.

    Args:
        coil_images: complex ``[..., C, H, W]``.
        maps: complex ``[..., C, H, W]`` broadcastable against ``coil_images``.

    Returns:
        complex ``[..., H, W]``.

    Raises:
        DTypeError, ShapeError (coil counts or image sizes differ), NonFiniteError.
    """
    who = "sense_combine"
    y = _check_complex(coil_images, who, "coil_images", 3, "[..., C, H, W]")
    s = _check_complex(maps, who, "maps", 3, "[..., C, H, W]")
    if y.shape[-3:] != s.shape[-3:]:
        raise ShapeError(f"{who}: maps have shape {_fmt(s.shape)} (C, H, W = {_fmt(s.shape[-3:])}) but coil "
                         f"images have {_fmt(y.shape)} (C, H, W = {_fmt(y.shape[-3:])})")
    num = (s.conj() * y).sum(dim=-3)
    den = (s.abs() ** 2).sum(dim=-3)
    return torch.where(den > 0, num / torch.where(den > 0, den, torch.ones_like(den)), torch.zeros_like(num))


# ----------------------------------------------------------------------------------------------
# coil mixing operator
# ----------------------------------------------------------------------------------------------
class CoilMix(Linop):
    """Coil mixing ``y_c' = Σ_c M[c', c] x_c`` (prewhitening, coil compression) on ``[..., C, *rest]``.

    Args:
        matrix: complex ``[C_out, C_in]``.
        shape: input trailing dimensions ``(C_in, *rest)``, e.g. ``(C, H, W)``; the output is ``(C_out, *rest)``.

    Raises:
        DTypeError: real or non-tensor matrix.  ShapeError: ``shape[0] != C_in``.  NonFiniteError.
    """

    def __init__(self, matrix: torch.Tensor, shape: Sequence[int]) -> None:
        who = type(self).__name__
        try:
            shape = tuple(int(s) for s in shape)
        except (TypeError, ValueError):
            raise ShapeError(f"{who}: shape must be a sequence of ints (C_in, ...), got {shape!r}") from None
        m = _check_complex(matrix, who, "matrix", 2, "[C_out, C_in]")
        if m.ndim != 2:
            raise ShapeError(f"{who}: matrix must have shape [C_out, C_in], got {_fmt(m.shape)}")
        if not shape or shape[0] != m.shape[1]:
            raise ShapeError(f"{who}: matrix [C_out, C_in] = {_fmt(m.shape)} takes {m.shape[1]} coils but shape "
                             f"{_fmt(shape)} has {shape[0] if shape else 'no'} coils (first dimension)")
        super().__init__(shape, (m.shape[0], *shape[1:]))
        self._record(matrix=matrix, shape=shape)
        self.matrix = m

    def _mix(self, m: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        nrest = len(self.ishape) - 1
        xf = x.reshape(*x.shape[: x.ndim - nrest - 1], x.shape[x.ndim - nrest - 1], -1)
        out = torch.matmul(m.to(x.dtype) if m.dtype != x.dtype else m, xf)
        return out.reshape(*out.shape[:-1], *x.shape[x.ndim - nrest:])

    def _apply(self, x: torch.Tensor) -> torch.Tensor:
        return self._mix(self.matrix, x)

    def _adjoint(self, y: torch.Tensor) -> torch.Tensor:
        return self._mix(self.matrix.conj().T, y)

    def _normal(self) -> Linop:
        return CoilMix(self.matrix.conj().T @ self.matrix, self.ishape)


# ----------------------------------------------------------------------------------------------
# noise prewhitening
# ----------------------------------------------------------------------------------------------
def noise_covariance(noise: torch.Tensor) -> torch.Tensor:
    """Noise covariance ``Ψ = η η^H / (N - 1)`` of a noise scan (no mean subtraction, as Gadgetron).

    Args:
        noise: complex ``[C, N]`` or ``[C, ...]`` (all but the first axis are samples), ``N >= 2``.

    Returns:
        complex128 Hermitian ``[C, C]``.

    Raises:
        DTypeError, ShapeError (fewer than 2 samples), NonFiniteError.
    """
    who = "noise_covariance"
    eta = _check_complex(noise, who, "noise", 2, "[C, N]")
    eta = eta.reshape(eta.shape[0], -1).to(torch.complex128)
    n = eta.shape[1]
    if n < 2:
        raise ShapeError(f"{who}: need at least 2 noise samples per coil, got noise of shape {_fmt(noise.shape)}")
    cov = eta @ eta.conj().T / (n - 1)
    return 0.5 * (cov + cov.conj().T)


def bandwidth_ratio(acq_dwell_time: float, noise_dwell_time: float, receiver_noise_bandwidth: float = 0.793
                    ) -> float:
    """Noise-variance ratio between a noise scan and the acquisition (Gadgetron's ``NoiseAdjustGadget``).

    ``acq_dwell_time / noise_dwell_time · receiver_noise_bandwidth``: the noise variance per sample is
    proportional to the bandwidth ``1 / dwell``; ISMRMRD stores the relative receiver noise bandwidth
    in ``acquisitionSystemInformation.relativeReceiverNoiseBandwidth`` (Siemens: 0.793). Pass the result
    as ``prewhitening_matrix(cov, bandwidth_ratio=...)``.

    Raises:
        ConfigError: non-positive dwell times or bandwidth.
    """
    for name, v in (("acq_dwell_time", acq_dwell_time), ("noise_dwell_time", noise_dwell_time),
                    ("receiver_noise_bandwidth", receiver_noise_bandwidth)):
        if not isinstance(v, (int, float)) or not math.isfinite(v) or v <= 0:
            raise ConfigError(f"bandwidth_ratio: {name} must be a positive number, got {v!r}")
    return float(acq_dwell_time) / float(noise_dwell_time) * float(receiver_noise_bandwidth)


def prewhitening_matrix(cov: torch.Tensor, bandwidth_ratio: float = 1.0, real_unit_variance: bool = False
                        ) -> torch.Tensor:
    """Prewhitening matrix ``W = s L^{-1}`` with ``Ψ = L L^H`` (Cholesky).

    ``W Ψ W^H = s² I``. ``s = sqrt(bandwidth_ratio)`` (see :func:`bandwidth_ratio`), times ``sqrt(2)``
    with ``real_unit_variance=True`` so that the real and imaginary parts of whitened noise have unit
    variance: with both, ``W`` equals Gadgetron's prewhitener and ismrmrd-python-tools'
    ``calculate_prewhitening(noise, scale_factor=bandwidth_ratio)``.

    Args:
        cov: complex Hermitian positive-definite ``[C, C]`` (e.g. from :func:`noise_covariance`).
        bandwidth_ratio: positive variance ratio (1 when the noise scan has the acquisition's bandwidth).
        real_unit_variance: ISMRMRD/Gadgetron convention (factor ``sqrt(2)``).

    Returns:
        complex ``[C, C]`` lower triangular, in ``cov``'s dtype.

    Raises:
        DTypeError, ShapeError (not square), DataError (not Hermitian positive definite, e.g. a dead coil),
        ConfigError (bad ratio).
    """
    who = "prewhitening_matrix"
    psi = _check_complex(cov, who, "cov", 2, "[C, C]")
    if psi.ndim != 2 or psi.shape[0] != psi.shape[1]:
        raise ShapeError(f"{who}: cov must be a square matrix [C, C], got {_fmt(psi.shape)}")
    if not isinstance(bandwidth_ratio, (int, float)) or not math.isfinite(bandwidth_ratio) or bandwidth_ratio <= 0:
        raise ConfigError(f"{who}: bandwidth_ratio must be a positive number, got {bandwidth_ratio!r}")
    p = psi.to(torch.complex128)
    if not torch.allclose(p, p.conj().T, rtol=1e-5, atol=1e-8 * float(p.abs().max())):
        raise DataError(f"{who}: cov of shape {_fmt(psi.shape)} is not Hermitian")
    chol, info = torch.linalg.cholesky_ex(p)
    if int(info) != 0:
        raise DataError(f"{who}: cov is not positive definite (Cholesky failed at coil {int(info) - 1}; "
                        f"a dead or duplicated channel?)")
    eye = torch.eye(p.shape[0], dtype=p.dtype)
    w = torch.linalg.solve_triangular(chol, eye, upper=False)
    s = math.sqrt(bandwidth_ratio) * (math.sqrt(2.0) if real_unit_variance else 1.0)
    return (s * w).to(psi.dtype)


def prewhiten(kspace: torch.Tensor, matrix: torch.Tensor, coil_dim: int = -3) -> torch.Tensor:
    """Apply a coil-mixing matrix (prewhitening or compression) along ``coil_dim``: ``y_c' = Σ_c M[c', c] x_c``.

    Args:
        kspace: complex ``[..., C, ...]`` (the coil axis is ``coil_dim``; default ``[..., C, H, W]``).
        matrix: complex ``[C_out, C]``.

    Returns:
        complex, with ``C_out`` coils on ``coil_dim``, in ``kspace``'s dtype.

    Raises:
        DTypeError, ShapeError (coil count mismatch), NonFiniteError.
    """
    who = "prewhiten"
    x = _check_complex(kspace, who, "kspace", 1, "[..., C, H, W]")
    m = _check_complex(matrix, who, "matrix", 2, "[C_out, C]")
    if m.ndim != 2 or x.shape[coil_dim] != m.shape[1]:
        raise ShapeError(f"{who}: matrix of shape {_fmt(m.shape)} mixes {m.shape[-1]} coils but kspace of shape "
                         f"{_fmt(x.shape)} has {x.shape[coil_dim]} on axis {coil_dim}")
    xm = x.movedim(coil_dim, -1)
    return torch.matmul(xm, m.to(x.dtype).T).movedim(-1, coil_dim)


# ----------------------------------------------------------------------------------------------
# SVD coil compression
# ----------------------------------------------------------------------------------------------
def compression_matrix(calib: torch.Tensor, n: int | None = None, energy: float | None = None,
                       coil_dim: int = -3) -> torch.Tensor:
    """SVD coil-compression matrix ``U_n^H`` ``[n, C]`` from calibration data (BART ``cc -S``).

    ``X = U Σ V^H`` with ``X`` the calibration data as ``[C, samples]``; ``n`` virtual coils, or the
    fewest whose share of the energy ``Σ_{i<n} σ_i² / Σ σ_i²`` reaches ``energy``.

    Args:
        calib: complex calibration k-space with the coil axis ``coil_dim`` (e.g. ``[C, h, w]``).
        n: number of virtual coils, ``1 <= n <= C``.
        energy: fraction in (0, 1] of the energy to keep (exactly one of ``n`` and ``energy``).

    Returns:
        complex ``[n, C]`` with orthonormal rows, in ``calib``'s dtype.

    Raises:
        ConfigError: neither or both of ``n``/``energy``, or out of range.  DTypeError, NonFiniteError.
    """
    who = "compression_matrix"
    x = _check_complex(calib, who, "calib", 1, "[..., C, h, w]")
    c = x.shape[coil_dim]
    if (n is None) == (energy is None):
        raise ConfigError(f"{who}: give exactly one of n (virtual coils) and energy (fraction), got n={n!r}, "
                          f"energy={energy!r}")
    if n is not None and (isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= c):
        raise ConfigError(f"{who}: n must be an integer in [1, {c}] (the number of coils), got {n!r}")
    if energy is not None and (not isinstance(energy, (int, float)) or not 0 < energy <= 1):
        raise ConfigError(f"{who}: energy must be in (0, 1], got {energy!r}")
    xm = x.movedim(coil_dim, 0).reshape(c, -1).to(torch.complex128)
    u, s, _ = torch.linalg.svd(xm, full_matrices=False)
    if n is None:
        share = torch.cumsum(s ** 2, 0) / (s ** 2).sum()
        n = int(torch.searchsorted(share, torch.tensor([float(energy) - 1e-12], dtype=share.dtype))[0]) + 1
        n = min(n, c)
    return u[:, :n].conj().T.resolve_conj().contiguous().to(x.dtype)


def coil_compress(kspace: torch.Tensor, matrix: torch.Tensor, coil_dim: int = -3) -> torch.Tensor:
    """Virtual-coil k-space (or maps, or coil images) ``matrix @ x`` along ``coil_dim``; see :func:`prewhiten`."""
    return prewhiten(kspace, matrix, coil_dim)


# ----------------------------------------------------------------------------------------------
# calibration region and low-resolution maps
# ----------------------------------------------------------------------------------------------
def acs_size(mask: torch.Tensor, shape: Sequence[int]) -> tuple[int, int]:
    """Size ``(ch, cw)`` of the fully sampled calibration box of a mask on a ``(H, W)`` k-space.

    The box of size ``c`` along an axis of length ``n`` covers ``[n//2 - c//2, n//2 - c//2 + c)`` (it
    contains the DC sample ``n // 2``; this is BART's ``(n - c) // 2`` start for even sizes). The box
    grows from the DC sample, one row or column at a time, while it stays fully sampled. A 1D line
    mask (``[W]`` or ``[1, 1, W]``) samples whole columns, so ``ch = H``. ``(0, 0)`` if DC is not sampled.

    Raises:
        DTypeError: not a tensor.  ShapeError: the mask does not broadcast to ``(H, W)``.
    """
    h, w = (int(v) for v in shape)
    if not isinstance(mask, torch.Tensor):
        raise DTypeError(f"acs_size: mask must be a torch tensor, got {type(mask).__name__}")
    m = mask
    while m.ndim > 2 and m.shape[0] == 1:
        m = m[0]
    try:
        m = torch.broadcast_to(m != 0, (h, w))
    except RuntimeError:
        raise ShapeError(f"acs_size: mask of shape {_fmt(mask.shape)} does not broadcast to [{h}, {w}]") from None

    def full(ch: int, cw: int) -> bool:
        y0, x0 = h // 2 - ch // 2, w // 2 - cw // 2
        return y0 >= 0 and x0 >= 0 and y0 + ch <= h and x0 + cw <= w and bool(m[y0:y0 + ch, x0:x0 + cw].all())

    if not full(1, 1):
        return 0, 0
    ch = cw = 1
    grown = True
    while grown:
        grown = False
        if ch < h and full(ch + 1, cw):
            ch, grown = ch + 1, True
        if cw < w and full(ch, cw + 1):
            cw, grown = cw + 1, True
    return ch, cw


def lowres_maps(kspace: torch.Tensor, calib: int | Sequence[int], window: str = "hann") -> torch.Tensor:
    """Cheap coil sensitivity maps: low-resolution coil images divided by their RSS.

    ``S_c = I_c / sqrt(Σ_c |I_c|²)`` with ``I_c = F^H(w · y_c)``, ``w`` a window on the centred
    ``calib`` box of k-space (zero outside). The maps have ``Σ_c |S_c|² = 1`` where the RSS is
    non-zero and carry the phase of the object (as every ratio method does).

    Args:
        kspace: complex ``[..., C, H, W]`` (undersampled is fine if the ``calib`` box is fully sampled).
        calib: box size ``(ch, cw)`` or an int for a square, e.g. from :func:`acs_size`.
        window: ``"hann"`` (less ringing) or ``"box"``.

    Returns:
        complex ``[..., C, H, W]`` maps in ``kspace``'s dtype.

    Raises:
        DTypeError, ShapeError, NonFiniteError: bad k-space.  ConfigError: calib or window invalid.
    """
    who = "lowres_maps"
    y = _check_complex(kspace, who, "kspace", 3, "[..., C, H, W]")
    h, w = y.shape[-2:]
    if isinstance(calib, (int,)) and not isinstance(calib, bool):
        ch, cw = int(calib), int(calib)
    else:
        try:
            ch, cw = (int(v) for v in calib)  # type: ignore[union-attr]
        except (TypeError, ValueError):
            raise ConfigError(f"{who}: calib must be an int or a pair (ch, cw), got {calib!r}") from None
    if not (1 <= ch <= h and 1 <= cw <= w):
        raise ConfigError(f"{who}: calibration box {ch}x{cw} must be non-empty and fit in k-space {h}x{w}")
    if window not in ("hann", "box"):
        raise ConfigError(f"{who}: window must be 'hann' or 'box', got {window!r}")
    real = torch.float64 if y.dtype == torch.complex128 else torch.float32

    def win1d(n_box: int, n: int) -> torch.Tensor:
        out = torch.zeros(n, dtype=real, device=y.device)
        start = n // 2 - n_box // 2
        if window == "box" or n_box < 3:
            vals = torch.ones(n_box, dtype=real)
        else:  # Hann window centred on the DC sample, strictly positive over the box
            t = (torch.arange(n_box, dtype=real) - n_box // 2) / (n_box // 2 + 1)
            vals = 0.5 * (1 + torch.cos(math.pi * t))
        out[start:start + n_box] = vals.to(y.device)
        return out

    wnd = win1d(ch, h)[:, None] * win1d(cw, w)[None, :]
    img = ifft2c(y * wnd)
    norm = rss(img, dim=-3).unsqueeze(-3)
    tiny = torch.finfo(real).tiny
    return torch.where(norm > tiny, img / norm.clamp_min(tiny), torch.zeros_like(img))


# ----------------------------------------------------------------------------------------------
# examples for the contract tests
# ----------------------------------------------------------------------------------------------
@example("coil-mix-compress")
def _coil_mix_example(gen: torch.Generator, dtype: torch.dtype) -> Linop:
    return CoilMix(randc(gen, 3, 5, dtype=dtype), (5, 7, 9))


@example("coil-mix-square")
def _coil_mix_square_example(gen: torch.Generator, dtype: torch.dtype) -> Linop:
    return CoilMix(randc(gen, 4, 4, dtype=dtype), (4, 11))


"""Image-quality metrics with fastMRI's semantics, and a differentiable SSIM loss.

``nmse``, ``psnr`` and ``ssim`` take numpy arrays (torch tensors are converted) and equal
``fastmri.evaluate.nmse/psnr/ssim`` on the same arrays: the data range is the maximum of the whole
ground-truth volume (``gt.max()``), SSIM uses a 7×7 uniform window with the sample covariance,
``K1 = 0.01``, ``K2 = 0.03``, averaged over the interior of each slice and then over slices
(scikit-image's ``structural_similarity`` defaults, which fastMRI calls). Computations are in float64.

``SSIMLoss`` is the same SSIM as a torch module (``1 - SSIM``), differentiable, for training; it
equals ``fastmri.losses.SSIMLoss``. ``batch_psnr`` and ``batch_ssim`` score each item of a torch batch.
"""
from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from mrirecon.errors import DTypeError, NonFiniteError, ShapeError

__all__ = ["SSIMLoss", "batch_psnr", "batch_ssim", "mse", "nmse", "psnr", "ssim"]

WIN_SIZE = 7
K1, K2 = 0.01, 0.03


def _fmt(shape: tuple[int, ...]) -> str:
    return "[" + ", ".join(str(s) for s in shape) + "]"


def _as_array(x: Any, who: str, what: str) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().numpy()
    if not isinstance(x, np.ndarray):
        raise DTypeError(f"{who}: {what} must be a numpy array or torch tensor, got {type(x).__name__}")
    return x


def _check_pair(gt: Any, pred: Any, who: str, allow_complex: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Validate a (ground truth, prediction) pair: same shape, numeric, real (unless allowed), finite."""
    gt, pred = _as_array(gt, who, "gt"), _as_array(pred, who, "pred")
    if gt.shape != pred.shape:
        raise ShapeError(f"{who}: gt has shape {_fmt(gt.shape)} but pred has shape {_fmt(pred.shape)}")
    for name, a in (("gt", gt), ("pred", pred)):
        if a.dtype.kind not in "fiuc":
            raise DTypeError(f"{who}: {name} must be numeric, got dtype {a.dtype}")
        if a.dtype.kind == "c" and not allow_complex:
            raise DTypeError(f"{who}: {name} must be real (a magnitude image), got {a.dtype}; take abs() first")
        if a.size == 0:
            raise ShapeError(f"{who}: {name} is empty (shape {_fmt(a.shape)})")
        if not np.isfinite(a).all():
            raise NonFiniteError(f"{who}: {name} of shape {_fmt(a.shape)} contains NaN or Inf")
    return gt, pred


def _data_range(gt: np.ndarray, maxval: float | None, who: str) -> float:
    rng = float(gt.max()) if maxval is None else float(maxval)
    if not np.isfinite(rng) or rng <= 0:
        raise ValueError(f"{who}: the data range (maxval, default gt.max()) must be positive and finite, got {rng}")
    return rng


def mse(gt: Any, pred: Any) -> float:
    """Mean squared error ``mean(|gt - pred|²)`` (real or complex arrays of equal shape)."""
    gt, pred = _check_pair(gt, pred, "mse", allow_complex=True)
    return float(np.mean(np.abs(gt.astype(np.complex128 if gt.dtype.kind == "c" else np.float64) - pred) ** 2))


def nmse(gt: Any, pred: Any) -> float:
    """Normalised MSE ``‖gt - pred‖² / ‖gt‖²`` over the whole array (fastMRI ``nmse``).

    Args:
        gt, pred: arrays of equal shape (e.g. a volume ``[S, H, W]``), real or complex.

    Raises:
        ShapeError: shapes differ.  NonFiniteError: NaN/Inf.  ValueError: ``gt`` is all zeros.
    """
    gt, pred = _check_pair(gt, pred, "nmse", allow_complex=True)
    g = gt.astype(np.complex128 if gt.dtype.kind == "c" else np.float64)
    den = float(np.linalg.norm(g) ** 2)
    if den == 0:
        raise ValueError("nmse: gt is all zeros, the normalisation ‖gt‖² is 0")
    return float(np.linalg.norm(g - pred) ** 2 / den)


def psnr(gt: Any, pred: Any, maxval: float | None = None) -> float:
    """Peak signal-to-noise ratio ``10 log10(maxval² / mse)`` in dB (fastMRI ``psnr``).

    Args:
        gt, pred: real arrays of equal shape (a volume ``[S, H, W]`` in fastMRI's evaluation).
        maxval: data range; default ``gt.max()`` over the whole array.

    Returns:
        PSNR in dB (``inf`` when ``pred == gt``).

    Raises:
        ShapeError, DTypeError (complex input), NonFiniteError, ValueError (non-positive data range).
    """
    gt, pred = _check_pair(gt, pred, "psnr")
    rng = _data_range(gt, maxval, "psnr")
    err = float(np.mean((gt.astype(np.float64) - pred.astype(np.float64)) ** 2))
    if err == 0:
        return float("inf")
    return float(10 * np.log10(rng ** 2 / err))


def _box_valid(a: np.ndarray, w: int) -> np.ndarray:
    """Mean over every ``w × w`` window that fits inside the last two axes (a 'valid' box filter)."""
    for axis in (-2, -1):
        c = np.cumsum(a, axis=axis)
        n = a.shape[axis]
        zero = np.zeros_like(np.take(c, [0], axis=axis))
        c = np.concatenate([zero, c], axis=axis)
        a = (np.take(c, np.arange(w, n + 1), axis=axis) - np.take(c, np.arange(0, n - w + 1), axis=axis)) / w
    return a


def ssim(gt: Any, pred: Any, maxval: float | None = None) -> float:
    """Structural similarity of two volumes, averaged over slices (fastMRI ``ssim``).

    Per slice, with ``µ``, ``σ²``, ``σ_xy`` the 7×7 window means, sample variances and covariance
    (normalised by 48) and ``C1 = (0.01 L)²``, ``C2 = (0.03 L)²``, ``L`` the data range::

        SSIM = mean over windows inside the slice of (2 µx µy + C1)(2 σxy + C2) / ((µx² + µy² + C1)(σx² + σy² + C2))

    Args:
        gt, pred: real ``[S, H, W]`` volumes (a single ``[H, W]`` image is taken as one slice);
            ``H, W >= 7``.
        maxval: data range ``L``; default ``gt.max()`` over the whole volume.

    Returns:
        The mean SSIM over slices.

    Raises:
        ShapeError: shapes differ, not 2D/3D, or a side below 7.  DTypeError, NonFiniteError, ValueError.
    """
    gt, pred = _check_pair(gt, pred, "ssim")
    if gt.ndim == 2:
        gt, pred = gt[None], pred[None]
    if gt.ndim != 3:
        raise ShapeError(f"ssim: expected a volume [S, H, W] (or an image [H, W]), got shape {_fmt(gt.shape)}")
    if min(gt.shape[-2:]) < WIN_SIZE:
        raise ShapeError(f"ssim: slices must be at least {WIN_SIZE}x{WIN_SIZE}, got {_fmt(gt.shape)}")
    rng = _data_range(gt, maxval, "ssim")
    x, y = gt.astype(np.float64), pred.astype(np.float64)
    c1, c2 = (K1 * rng) ** 2, (K2 * rng) ** 2
    cov_norm = WIN_SIZE ** 2 / (WIN_SIZE ** 2 - 1)
    ux, uy = _box_valid(x, WIN_SIZE), _box_valid(y, WIN_SIZE)
    vx = cov_norm * (_box_valid(x * x, WIN_SIZE) - ux * ux)
    vy = cov_norm * (_box_valid(y * y, WIN_SIZE) - uy * uy)
    vxy = cov_norm * (_box_valid(x * y, WIN_SIZE) - ux * uy)
    s = ((2 * ux * uy + c1) * (2 * vxy + c2)) / ((ux ** 2 + uy ** 2 + c1) * (vx + vy + c2))
    return float(s.mean(axis=(-2, -1)).mean())


# ----------------------------------------------------------------------------------------------
# torch
# ----------------------------------------------------------------------------------------------
def _check_torch_pair(x: torch.Tensor, y: torch.Tensor, who: str) -> tuple[torch.Tensor, torch.Tensor]:
    for name, t in (("X", x), ("Y", y)):
        if not isinstance(t, torch.Tensor):
            raise DTypeError(f"{who}: {name} must be a torch tensor, got {type(t).__name__}")
        if t.is_complex() or not t.is_floating_point():
            raise DTypeError(f"{who}: {name} must be a real floating tensor (magnitude images), got {t.dtype}")
    if x.shape != y.shape:
        raise ShapeError(f"{who}: X has shape {_fmt(tuple(x.shape))} but Y has shape {_fmt(tuple(y.shape))}")
    if x.ndim == 3:
        x, y = x.unsqueeze(1), y.unsqueeze(1)
    if x.ndim != 4 or x.shape[1] != 1:
        raise ShapeError(f"{who}: expected images [N, H, W] or [N, 1, H, W], got {_fmt(tuple(x.shape))}")
    if min(x.shape[-2:]) < WIN_SIZE:
        raise ShapeError(f"{who}: images must be at least {WIN_SIZE}x{WIN_SIZE}, got {_fmt(tuple(x.shape))}")
    return x, y


def _range_tensor(data_range: torch.Tensor | float | None, ref: torch.Tensor, who: str) -> torch.Tensor:
    n = ref.shape[0]
    if data_range is None:
        r = ref.detach().reshape(n, -1).amax(dim=1)
    else:
        r = torch.as_tensor(data_range, dtype=ref.dtype, device=ref.device).reshape(-1)
        if r.numel() == 1:
            r = r.expand(n)
        if r.numel() != n:
            raise ShapeError(f"{who}: data_range must be a scalar or hold one value per item ({n}), "
                             f"got {r.numel()} values")
    if not bool((r > 0).all()):
        raise ValueError(f"{who}: data_range must be positive, got {r.tolist()}")
    return r.to(ref.dtype)


class SSIMLoss(torch.nn.Module):
    """Differentiable SSIM loss ``1 - SSIM(X, Y)`` (the formula of :func:`ssim`, fastMRI's ``SSIMLoss``).

    Args:
        win_size: side of the uniform window (7).
        k1, k2: SSIM constants (0.01, 0.03).

    Call with ``X`` (prediction), ``Y`` (target): real ``[N, H, W]`` or ``[N, 1, H, W]``;
    ``data_range``: tensor ``[N]`` or a float (default: the maximum of each target); ``reduced``:
    return the mean loss (scalar) or the per-window map ``[N, 1, H-6, W-6]``.

    Raises:
        DTypeError: complex or integer tensors.  ShapeError: mismatched or too small shapes.
    """

    def __init__(self, win_size: int = WIN_SIZE, k1: float = K1, k2: float = K2) -> None:
        super().__init__()
        self.win_size, self.k1, self.k2 = win_size, k1, k2
        np_ = win_size ** 2
        self.cov_norm = np_ / (np_ - 1)

    def ssim_map(self, x: torch.Tensor, y: torch.Tensor,
                 data_range: torch.Tensor | float | None = None) -> torch.Tensor:
        """The SSIM of every window, ``[N, 1, H - win + 1, W - win + 1]``."""
        x, y = _check_torch_pair(x, y, "SSIMLoss")
        r = _range_tensor(data_range, y, "SSIMLoss")[:, None, None, None]
        # the window is built in the input's precision (fastMRI stores 1/49 in float32, which costs ~1e-7 in float64)
        w = torch.full((1, 1, self.win_size, self.win_size), 1.0 / self.win_size ** 2, dtype=x.dtype, device=x.device)
        c1, c2 = (self.k1 * r) ** 2, (self.k2 * r) ** 2
        ux, uy = F.conv2d(x, w), F.conv2d(y, w)
        uxx, uyy, uxy = F.conv2d(x * x, w), F.conv2d(y * y, w), F.conv2d(x * y, w)
        vx = self.cov_norm * (uxx - ux * ux)
        vy = self.cov_norm * (uyy - uy * uy)
        vxy = self.cov_norm * (uxy - ux * uy)
        return ((2 * ux * uy + c1) * (2 * vxy + c2)) / ((ux ** 2 + uy ** 2 + c1) * (vx + vy + c2))

    def forward(self, x: torch.Tensor, y: torch.Tensor, data_range: torch.Tensor | float | None = None,
                reduced: bool = True) -> torch.Tensor:
        s = self.ssim_map(x, y, data_range)
        return 1 - s.mean() if reduced else 1 - s


def batch_ssim(pred: torch.Tensor, target: torch.Tensor, data_range: torch.Tensor | float | None = None
               ) -> torch.Tensor:
    """SSIM of each item of a batch, ``[N]`` (``pred``, ``target``: ``[N, H, W]`` or ``[N, 1, H, W]``)."""
    return SSIMLoss().ssim_map(pred, target, data_range).mean(dim=(1, 2, 3))


def batch_psnr(pred: torch.Tensor, target: torch.Tensor, data_range: torch.Tensor | float | None = None
               ) -> torch.Tensor:
    """PSNR in dB of each item of a batch, ``[N]``; the data range defaults to each target's maximum.

    Args:
        pred, target: real ``[N, ...]`` tensors of equal shape.
        data_range: scalar or ``[N]``.

    Raises:
        DTypeError, ShapeError, ValueError as :class:`SSIMLoss`.
    """
    for name, t in (("pred", pred), ("target", target)):
        if not isinstance(t, torch.Tensor) or t.is_complex() or not t.is_floating_point():
            raise DTypeError(f"batch_psnr: {name} must be a real floating torch tensor, "
                             f"got {getattr(t, 'dtype', type(t).__name__)}")
    if pred.shape != target.shape or pred.ndim < 2:
        raise ShapeError(f"batch_psnr: expected pred and target of equal shape [N, ...], got "
                         f"{_fmt(tuple(pred.shape))} and {_fmt(tuple(target.shape))}")
    r = _range_tensor(data_range, target, "batch_psnr")
    err = (pred - target).reshape(pred.shape[0], -1).pow(2).mean(dim=1)
    return 10 * torch.log10(r ** 2 / err)

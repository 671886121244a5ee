"""General imaging operators on complex images (the same algebra as the MRI operators).

* :class:`Blur`: 2D convolution ``y = k * x`` with boundary ``"circular"`` (FFT, periodic),
  ``"zero"`` (zero padding, output of the input size) or ``"valid"`` (only the outputs whose window
  lies inside the image, ``[H - kh + 1, W - kw + 1]``); the adjoint is exact in all three cases.
* :class:`Inpaint`: pixel mask ``y = m · x`` (missing pixels are zero).
* :class:`Downsample`: super-resolution forward model: filter (``"box"`` block average or
  antialiased ``"bicubic"``) then keep every ``factor``-th pixel: ``[H, W] -> [ceil(H/f), ceil(W/f)]``.
* :class:`DenseMatrix` and :func:`gaussian_matrix`: compressive sensing ``y = A vec(x)`` with a seeded
  Gaussian ``A`` scaled so that ``E ‖A x‖² = ‖x‖²``.
* :func:`denoising`: the identity (the denoising forward model).

All operators act on the last two dimensions of ``shape`` (leading ones, e.g. channels, are carried).
"""
from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from mrirecon.errors import ConfigError, DTypeError, NonFiniteError, ShapeError
from mrirecon.operators.catalog import example, randc
from mrirecon.operators.linop import Identity, Linop, Multiply, _check_broadcast, _fmt, complex_dtype

__all__ = ["Blur", "DenseMatrix", "Downsample", "Inpaint", "bicubic_taps", "denoising", "gaussian_kernel",
           "gaussian_matrix"]

BOUNDARIES = ("circular", "zero", "valid")


def _check_shape(shape: Sequence[int], who: str) -> tuple[int, ...]:
    try:
        out = tuple(int(s) for s in shape)
    except (TypeError, ValueError):
        raise ShapeError(f"{who}: shape must be a sequence of ints (..., H, W), got {shape!r}") from None
    if len(out) < 2 or any(s < 1 for s in out):
        raise ShapeError(f"{who}: shape must be (..., H, W) with positive sizes, got {out}")
    return out


def gaussian_kernel(sigma: float | Sequence[float], size: int | Sequence[int] | None = None,
                    dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """Normalised 2D Gaussian kernel ``exp(-y²/2σy² - x²/2σx²)`` (sum 1), centred at ``(kh // 2, kw // 2)``.

    Args:
        sigma: standard deviation in pixels (one value, or ``(σy, σx)``), > 0.
        size: kernel side(s); default ``2 ceil(3σ) + 1``.

    Raises:
        ConfigError: non-positive sigma or size.
    """
    s = (float(sigma),) * 2 if isinstance(sigma, (int, float)) else tuple(float(v) for v in sigma)
    if len(s) != 2 or not all(math.isfinite(v) and v > 0 for v in s):
        raise ConfigError(f"gaussian_kernel: sigma must be positive (one value or (sy, sx)), got {sigma!r}")
    if size is None:
        n = tuple(2 * math.ceil(3 * v) + 1 for v in s)
    else:
        n = (int(size),) * 2 if isinstance(size, int) else tuple(int(v) for v in size)
        if len(n) != 2 or min(n) < 1:
            raise ConfigError(f"gaussian_kernel: size must be positive (one value or (kh, kw)), got {size!r}")
    axes = [torch.exp(-0.5 * ((torch.arange(k, dtype=dtype) - k // 2) / v) ** 2) for k, v in zip(n, s)]
    k2 = axes[0][:, None] * axes[1][None, :]
    return k2 / k2.sum()


class Blur(Linop):
    """2D convolution with a fixed kernel: ``y[n] = Σ_m k[m] x[n + c - m]`` with ``c = (kh // 2, kw // 2)``.

    Boundaries: ``"circular"`` (periodic, computed with FFTs), ``"zero"`` (``x`` is zero outside the
    image; output of the input size) and ``"valid"`` (the outputs ``n`` whose window lies inside,
    ``y[n] = Σ_m k[m] x[n + kh - 1 - m]``, shape ``[H - kh + 1, W - kw + 1]``). A delta at the image
    centre is blurred into the kernel centred there.

    Args:
        kernel: real or complex ``[kh, kw]`` (e.g. :func:`gaussian_kernel`).
        shape: input trailing dimensions ``(..., H, W)``; the convolution is over the last two.
        boundary: ``"circular"``, ``"zero"`` or ``"valid"``.

    Raises:
        DTypeError: kernel not a tensor.  ShapeError: kernel not 2D or larger than the image.
        NonFiniteError: NaN in the kernel.  ConfigError: unknown boundary.
    """

    def __init__(self, kernel: torch.Tensor, shape: Sequence[int], boundary: str = "circular") -> None:
        who = type(self).__name__
        shape = _check_shape(shape, who)
        if not isinstance(kernel, torch.Tensor):
            raise DTypeError(f"{who}: kernel must be a torch tensor [kh, kw], got {type(kernel).__name__}")
        if kernel.ndim != 2 or min(kernel.shape) < 1:
            raise ShapeError(f"{who}: kernel must have shape [kh, kw], got {_fmt(kernel.shape)}")
        if not (kernel.is_complex() or kernel.is_floating_point()):
            raise DTypeError(f"{who}: kernel must be a real or complex floating tensor, got {kernel.dtype}")
        if not bool(torch.isfinite(kernel).all()):
            raise NonFiniteError(f"{who}: kernel of shape {_fmt(kernel.shape)} contains NaN or Inf")
        if boundary not in BOUNDARIES:
            raise ConfigError(f"{who}: boundary must be one of {', '.join(BOUNDARIES)}, got {boundary!r}")
        h, w = shape[-2:]
        kh, kw = kernel.shape
        if kh > h or kw > w:
            raise ShapeError(f"{who}: kernel {_fmt(kernel.shape)} is larger than the image [{h}, {w}] "
                             f"(shape {_fmt(shape)})")
        oshape = shape if boundary != "valid" else (*shape[:-2], h - kh + 1, w - kw + 1)
        super().__init__(shape, oshape)
        self._record(kernel=kernel, shape=shape, boundary=boundary)
        self.kernel = kernel
        self.boundary = boundary
        if boundary == "circular":
            self._fft_size = (h, w)
            self._offset = (0, 0)
        else:
            self._fft_size = (h + kh - 1, w + kw - 1)  # linear convolution without wrap-around
            self._offset = (kh // 2, kw // 2) if boundary == "zero" else (kh - 1, kw - 1)
        self._khat: dict[tuple[torch.dtype, torch.device], torch.Tensor] = {}

    def _kernel_hat(self, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
        key = (dtype, device)
        if key not in self._khat or self.kernel.requires_grad:  # no cached graph when learning the kernel
            kh, kw = self.kernel.shape
            pad = torch.zeros(self._fft_size, dtype=dtype, device=device)
            pad[:kh, :kw] = self.kernel.to(device=device, dtype=dtype)
            if self.boundary == "circular":  # the kernel centre goes to index (0, 0)
                pad = torch.roll(pad, shifts=(-(kh // 2), -(kw // 2)), dims=(-2, -1))
            self._khat[key] = torch.fft.fft2(pad)
        return self._khat[key]

    def _dtype(self, x: torch.Tensor) -> torch.dtype:
        return torch.promote_types(x.dtype, complex_dtype(self.kernel.dtype))

    def _apply(self, x: torch.Tensor) -> torch.Tensor:
        dt = self._dtype(x)
        khat = self._kernel_hat(dt, x.device)
        h, w = self.ishape[-2:]
        z = torch.fft.ifft2(torch.fft.fft2(x.to(dt), s=self._fft_size) * khat)
        (oy, ox), (ph, pw) = self._offset, self.oshape[-2:]
        return z[..., oy:oy + ph, ox:ox + pw]

    def _adjoint(self, y: torch.Tensor) -> torch.Tensor:
        dt = self._dtype(y)
        khat = self._kernel_hat(dt, y.device)
        (oy, ox), (ph, pw) = self._offset, self.oshape[-2:]
        ly, lx = self._fft_size
        u = torch.nn.functional.pad(y.to(dt), (ox, lx - ox - pw, oy, ly - oy - ph))
        z = torch.fft.ifft2(torch.fft.fft2(u) * khat.conj())
        h, w = self.ishape[-2:]
        return z[..., :h, :w]


class Inpaint(Multiply):
    """Inpainting: ``y = m · x`` with a real pixel mask ``m`` (1 observed, 0 missing; weights allowed).

    Args:
        mask: real tensor broadcastable to ``shape`` (bool or float).
        shape: trailing dimensions ``(..., H, W)``.

    Raises:
        DTypeError: complex or non-tensor mask.  ShapeError: does not broadcast.  NonFiniteError.
    """

    def __init__(self, mask: torch.Tensor, shape: Sequence[int]) -> None:
        who = type(self).__name__
        shape = _check_shape(shape, who)
        if not isinstance(mask, torch.Tensor):
            raise DTypeError(f"{who}: mask must be a torch tensor, got {type(mask).__name__}")
        if mask.is_complex():
            raise DTypeError(f"{who}: mask must be real (bool or float), got {mask.dtype}")
        _check_broadcast(mask, shape, who, "mask")
        if not mask.is_floating_point():
            mask = mask.to(torch.float32)
        if not bool(torch.isfinite(mask).all()):
            raise NonFiniteError(f"{who}: mask of shape {_fmt(mask.shape)} contains NaN or Inf")
        super().__init__(mask, shape)
        self._record(mask=mask, shape=shape)

    @property
    def mask(self) -> torch.Tensor:
        """The pixel mask."""
        return self.weights


def _keys_cubic(t: torch.Tensor, a: float = -0.5) -> torch.Tensor:
    """Keys' cubic convolution kernel (``a = -0.5``: the bicubic of PIL, torch and MATLAB ``imresize``)."""
    t = t.abs()
    near = ((a + 2) * t - (a + 3)) * t * t + 1
    far = ((a * t - 5 * a) * t + 8 * a) * t - 4 * a
    return torch.where(t <= 1, near, torch.where(t < 2, far, torch.zeros_like(t)))


def bicubic_taps(factor: int) -> tuple[int, torch.Tensor]:
    """``(offset, taps)`` of antialiased bicubic downsampling by ``factor``: ``y[i] = Σ_m taps[m] x[i f + offset + m]``.

    Output pixel ``i`` is centred at input coordinate ``i f + (f - 1) / 2``; the Keys cubic is
    stretched by ``f`` (antialiasing) and the taps are normalised to sum to 1 (as PIL / torch
    ``interpolate(mode="bicubic", antialias=True)``).
    """
    c = (factor - 1) / 2
    lo = math.floor(c - 2 * factor) + 1
    hi = math.ceil(c + 2 * factor) - 1
    d = torch.arange(lo, hi + 1, dtype=torch.float64)
    taps = _keys_cubic((d - c) / factor)
    return lo, taps / taps.sum()


class Downsample(Linop):
    """Super-resolution forward model: filter, then keep every ``factor``-th pixel along H and W.

    Along each axis ``y[i] = Σ_m k[m] x[i f + o + m]`` (indices wrap around with ``boundary="circular"``,
    are dropped with ``"zero"``): ``"box"`` is the block average ``k = 1/f`` on ``[i f, i f + f)``;
    ``"bicubic"`` the antialiased bicubic of :func:`bicubic_taps`. Output ``[..., ceil(H/f), ceil(W/f)]``.
    The adjoint scatters back with the same taps (exact).

    Args:
        shape: input trailing dimensions ``(..., H, W)``.
        factor: integer downsampling factor ``>= 1`` (or ``(fy, fx)``).
        filter: ``"box"`` or ``"bicubic"``.
        boundary: ``"circular"`` or ``"zero"``.

    Raises:
        ConfigError: bad factor, filter or boundary.  ShapeError: bad shape.
    """

    def __init__(self, shape: Sequence[int], factor: int | Sequence[int] = 2, filter: str = "box",
                 boundary: str = "circular") -> None:
        who = type(self).__name__
        shape = _check_shape(shape, who)
        f = (factor, factor) if isinstance(factor, int) and not isinstance(factor, bool) else tuple(factor)
        if len(f) != 2 or not all(isinstance(v, int) and not isinstance(v, bool) and v >= 1 for v in f):
            raise ConfigError(f"{who}: factor must be an integer >= 1 (or a pair), got {factor!r}")
        if filter not in ("box", "bicubic"):
            raise ConfigError(f"{who}: filter must be 'box' or 'bicubic', got {filter!r}")
        if boundary not in ("circular", "zero"):
            raise ConfigError(f"{who}: boundary must be 'circular' or 'zero', got {boundary!r}")
        h, w = shape[-2:]
        out = (-(-h // f[0]), -(-w // f[1]))
        super().__init__(shape, (*shape[:-2], *out))
        self._record(shape=shape, factor=factor, filter=filter, boundary=boundary)
        self.factor, self.filter, self.boundary = f, filter, boundary
        self._plans = [self._plan(n, fa, m) for n, fa, m in zip((h, w), f, out)]

    def _plan(self, n: int, f: int, n_out: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(indices [n_out, taps], weights [n_out, taps]) of one axis."""
        if self.filter == "box":
            off, taps = 0, torch.full((f,), 1.0 / f, dtype=torch.float64)
        else:
            off, taps = bicubic_taps(f)
        idx = torch.arange(n_out)[:, None] * f + off + torch.arange(taps.numel())[None, :]
        wts = taps[None, :].expand(n_out, -1).clone()
        if self.boundary == "circular":
            idx = idx % n
        else:
            outside = (idx < 0) | (idx >= n)
            wts[outside] = 0.0
            idx = idx.clamp(0, n - 1)
        return idx, wts

    def _axis(self, x: torch.Tensor, axis: int, adjoint: bool) -> torch.Tensor:
        idx, wts = self._plans[axis]
        x = x.movedim(-2 + axis, -1)
        wts = wts.to(device=x.device, dtype=x.real.dtype)
        idx = idx.to(x.device)
        if not adjoint:
            out = (x[..., idx] * wts).sum(dim=-1)
        else:
            n = self.ishape[-2 + axis]
            src = (x[..., :, None] * wts).reshape(*x.shape[:-1], -1)
            out = torch.zeros(*x.shape[:-1], n, dtype=x.dtype, device=x.device)
            out = out.index_add(-1, idx.reshape(-1), src)
        return out.movedim(-1, -2 + axis)

    def _apply(self, x: torch.Tensor) -> torch.Tensor:
        return self._axis(self._axis(x, 0, False), 1, False)

    def _adjoint(self, y: torch.Tensor) -> torch.Tensor:
        return self._axis(self._axis(y, 1, True), 0, True)


class DenseMatrix(Linop):
    """A dense matrix acting on flattened images: ``y = A vec(x)``, ``A`` ``[m, prod(shape)]``.

    Args:
        matrix: real or complex ``[m, n]`` with ``n = prod(shape)``.
        shape: input trailing dimensions; the output is ``[m]``.

    Raises:
        DTypeError, ShapeError (``n`` differs from ``prod(shape)``), NonFiniteError.
    """

    def __init__(self, matrix: torch.Tensor, shape: Sequence[int]) -> None:
        who = type(self).__name__
        shape = tuple(int(s) for s in shape)
        if not isinstance(matrix, torch.Tensor) or not (matrix.is_complex() or matrix.is_floating_point()):
            raise DTypeError(f"{who}: matrix must be a real or complex floating tensor [m, n], got "
                             f"{getattr(matrix, 'dtype', type(matrix).__name__)}")
        if matrix.ndim != 2 or matrix.shape[1] != math.prod(shape):
            raise ShapeError(f"{who}: matrix must have shape [m, {math.prod(shape)}] for images {_fmt(shape)}, "
                             f"got {_fmt(matrix.shape)}")
        if not bool(torch.isfinite(matrix).all()):
            raise NonFiniteError(f"{who}: matrix of shape {_fmt(matrix.shape)} contains NaN or Inf")
        super().__init__(shape, (matrix.shape[0],))
        self._record(matrix=matrix, shape=shape)
        self.matrix = matrix

    def _mat(self, x: torch.Tensor) -> torch.Tensor:
        return self.matrix.to(torch.promote_types(x.dtype, complex_dtype(self.matrix.dtype)))

    def _apply(self, x: torch.Tensor) -> torch.Tensor:
        a = self._mat(x)
        xf = x.reshape(*x.shape[: x.ndim - len(self.ishape)], -1).to(a.dtype)
        return xf @ a.T

    def _adjoint(self, y: torch.Tensor) -> torch.Tensor:
        a = self._mat(y)
        out = y.to(a.dtype) @ a.conj()
        return out.reshape(*y.shape[:-1], *self.ishape)


def gaussian_matrix(m: int, shape: Sequence[int], seed: int = 0, complex_entries: bool = True,
                    dtype: torch.dtype = torch.complex64) -> DenseMatrix:
    """Compressive-sensing operator with i.i.d. Gaussian entries of variance ``1/m``: ``E ‖A x‖² = ‖x‖²``.

    Args:
        m: number of measurements (>= 1).
        shape: image shape; ``n = prod(shape)``.
        seed: seed of the ``torch.Generator`` drawing the matrix.
        complex_entries: circular complex Gaussian entries (real and imaginary parts of variance
            ``1/(2m)``), else real ``N(0, 1/m)``.
        dtype: complex dtype of the stored matrix.

    Raises:
        ConfigError: ``m < 1``.
    """
    if isinstance(m, bool) or not isinstance(m, int) or m < 1:
        raise ConfigError(f"gaussian_matrix: m (number of measurements) must be a positive int, got {m!r}")
    n = math.prod(int(s) for s in shape)
    gen = torch.Generator().manual_seed(int(seed))
    if complex_entries:
        a = torch.randn(m, n, dtype=torch.complex128, generator=gen) / math.sqrt(m)
    else:
        a = torch.randn(m, n, dtype=torch.float64, generator=gen).to(torch.complex128) / math.sqrt(m)
    return DenseMatrix(a.to(dtype), shape)


def denoising(shape: Sequence[int]) -> Identity:
    """The denoising forward model ``y = x`` (the identity on ``shape``)."""
    return Identity(_check_shape(shape, "denoising"))


# ----------------------------------------------------------------------------------------------
# examples for the contract tests (odd and even sizes, complex kernels)
# ----------------------------------------------------------------------------------------------
def _real(dtype: torch.dtype) -> torch.dtype:
    return torch.float64 if dtype == torch.complex128 else torch.float32


@example("blur-circular")
def _blur_circular(gen: torch.Generator, dtype: torch.dtype) -> Linop:
    return Blur(gaussian_kernel((1.0, 0.7), (5, 3), dtype=_real(dtype)), (17, 11), "circular")


@example("blur-zero-complex-even-kernel")
def _blur_zero(gen: torch.Generator, dtype: torch.dtype) -> Linop:
    return Blur(randc(gen, 4, 3, dtype=dtype), (2, 17, 11), "zero")


@example("blur-valid")
def _blur_valid(gen: torch.Generator, dtype: torch.dtype) -> Linop:
    return Blur(randc(gen, 5, 4, dtype=dtype), (13, 9), "valid")


@example("inpaint")
def _inpaint(gen: torch.Generator, dtype: torch.dtype) -> Linop:
    return Inpaint((torch.rand(17, 11, generator=gen) < 0.6).to(_real(dtype)), (17, 11))


@example("downsample-box")
def _down_box(gen: torch.Generator, dtype: torch.dtype) -> Linop:
    return Downsample((15, 9), 3, "box")


@example("downsample-box-nondivisible-zero")
def _down_box_zero(gen: torch.Generator, dtype: torch.dtype) -> Linop:
    return Downsample((2, 17, 11), 2, "box", boundary="zero")


@example("downsample-bicubic")
def _down_bicubic(gen: torch.Generator, dtype: torch.dtype) -> Linop:
    return Downsample((17, 11), (2, 3), "bicubic")


@example("gaussian-matrix")
def _gaussian_matrix(gen: torch.Generator, dtype: torch.dtype) -> Linop:
    return gaussian_matrix(9, (5, 3), seed=int(torch.randint(0, 1000, (1,), generator=gen)), dtype=dtype)


@example("denoising")
def _denoising(gen: torch.Generator, dtype: torch.dtype) -> Linop:
    return denoising((7, 5))

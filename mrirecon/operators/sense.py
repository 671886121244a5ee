"""Sampling, coil expansion and the SENSE operator ``E = Sample ∘ FFT ∘ CoilExpand``.

Shapes (trailing; leading dimensions are batch dimensions):

* image ``x``: ``[H, W]`` with one map set, ``[M, H, W]`` with ``M`` map sets (ESPIRiT may return 2);
* maps ``S``: ``[C, H, W]`` or ``[M, C, H, W]``, complex;
* k-space ``y``: ``[C, H, W]``, complex, zero where not sampled;
* mask: real, broadcastable to ``[C, H, W]`` (e.g. ``[1, 1, W]`` for a 1D line mask, ``[H, W]`` for 2D).

``E x = mask · F(Σ_m S_m x_m)``; ``E^H y = [Σ_c conj(S_{m,c}) F^H(mask · y_c)]_m``.
"""
from __future__ import annotations

import math

import torch

from mrirecon.errors import DTypeError, NonFiniteError, ShapeError
from mrirecon.operators.catalog import example, randc
from mrirecon.operators.linop import Compose, Linop, Multiply, _check_broadcast, _fmt


def _check_mask(mask: torch.Tensor, shape: tuple[int, ...], who: str) -> torch.Tensor:
    """Validate a sampling mask and return it as a real floating tensor with ``len(shape)`` trailing dims."""
    if not isinstance(mask, torch.Tensor):
        raise DTypeError(f"{who}: mask must be a torch tensor, got {type(mask).__name__}")
    if mask.is_complex():
        raise DTypeError(f"{who}: mask must be real (bool or float), got {mask.dtype}")
    _check_broadcast(mask, shape, who, "mask")
    if not mask.is_floating_point():
        mask = mask.to(torch.float32)
    if not torch.isfinite(mask).all():
        raise NonFiniteError(f"{who}: mask of shape {_fmt(mask.shape)} contains NaN or Inf")
    if mask.ndim < len(shape):
        mask = mask.reshape((1,) * (len(shape) - mask.ndim) + tuple(mask.shape))
    return mask


def _check_maps(maps: torch.Tensor, multi_set: bool, who: str) -> None:
    if not isinstance(maps, torch.Tensor):
        raise DTypeError(f"{who}: maps must be a torch tensor, got {type(maps).__name__}")
    if not maps.is_complex():
        raise DTypeError(f"{who}: maps must be complex (complex64/complex128), got {maps.dtype} "
                         f"of shape {_fmt(maps.shape)}")
    need = 4 if multi_set else 3
    layout = "[..., M, C, H, W]" if multi_set else "[..., C, H, W]"
    if maps.ndim < need:
        raise ShapeError(f"{who}: maps must have shape {layout}, got {_fmt(maps.shape)}")
    if maps.shape[-3] == 0:
        raise ShapeError(f"{who}: maps have zero coils (shape {_fmt(maps.shape)})")
    if not torch.isfinite(maps).all():
        raise NonFiniteError(f"{who}: maps of shape {_fmt(maps.shape)} contain NaN or Inf")


class Sample(Multiply):
    """Cartesian sampling: ``y = mask · k`` (full-size k-space, zero where not sampled).

    Args:
        mask: real tensor (bool or float; weights allowed) broadcastable to ``shape``.
        shape: trailing k-space dimensions, e.g. ``(C, H, W)``.

    Raises:
        DTypeError: complex mask.  ShapeError: mask does not broadcast.  NonFiniteError: NaN in mask.
    """

    def __init__(self, mask: torch.Tensor, shape: tuple[int, ...]) -> None:
        shape = tuple(shape)
        mask = _check_mask(mask, shape, type(self).__name__)
        super().__init__(mask, shape)
        self._record(mask=mask, shape=shape)

    @property
    def mask(self) -> torch.Tensor:
        """The mask, with ``len(shape)`` trailing dimensions."""
        return self.weights


def coil_expand(x: torch.Tensor, maps: torch.Tensor, multi_set: bool = False) -> torch.Tensor:
    """``Σ_m S_m x_m``: image(s) ``[..., (M,) H, W]`` to coil images ``[..., C, H, W]``."""
    if multi_set:
        return (maps * x.unsqueeze(-3)).sum(dim=-4)
    return maps * x.unsqueeze(-3)


def coil_reduce(y: torch.Tensor, maps: torch.Tensor, multi_set: bool = False) -> torch.Tensor:
    """Adjoint of :func:`coil_expand`: ``[Σ_c conj(S_{m,c}) y_c]_m``."""
    if multi_set:
        return (maps.conj() * y.unsqueeze(-4)).sum(dim=-3)
    return (maps.conj() * y).sum(dim=-3)


class CoilExpand(Linop):
    """Multiplication by coil sensitivities: ``y_c = Σ_m S_{m,c} x_m``.

    Args:
        maps: complex ``[..., C, H, W]`` (one set) or ``[..., M, C, H, W]`` with ``multi_set=True``.
        multi_set: whether ``maps`` holds several map sets (the image then has shape ``[M, H, W]``).
    """

    def __init__(self, maps: torch.Tensor, multi_set: bool = False) -> None:
        _check_maps(maps, multi_set, type(self).__name__)
        c, h, w = maps.shape[-3:]
        ishape = (maps.shape[-4], h, w) if multi_set else (h, w)
        super().__init__(ishape, (c, h, w))
        self._record(maps=maps, multi_set=multi_set)
        self.maps = maps
        self.multi_set = multi_set

    def _apply(self, x: torch.Tensor) -> torch.Tensor:
        return coil_expand(x, self.maps, self.multi_set)

    def _adjoint(self, y: torch.Tensor) -> torch.Tensor:
        return coil_reduce(y, self.maps, self.multi_set)


class Sense(Linop):
    """The multicoil SENSE operator ``E = Sample(mask) ∘ FFT ∘ CoilExpand(maps)``.

    Its normal operator ``E^H E`` is a fast form: the FFT shifts are folded into pre-shifted maps
    and mask, so that one application costs the 2·C FFTs, the coil products and two shifts of a
    single image.

    Args:
        maps: complex ``[..., C, H, W]`` or ``[..., M, C, H, W]`` (``multi_set=True``).
        mask: real, broadcastable to ``[C, H, W]``; ``None`` for fully sampled k-space.
        multi_set: whether ``maps`` holds several map sets.

    Raises:
        DTypeError, ShapeError, NonFiniteError: bad maps or mask.
    """

    def __init__(self, maps: torch.Tensor, mask: torch.Tensor | None = None, multi_set: bool = False) -> None:
        who = type(self).__name__
        _check_maps(maps, multi_set, who)
        c, h, w = maps.shape[-3:]
        kshape = (c, h, w)
        if mask is not None:
            mask = _check_mask(mask, kshape, who)
        ishape = (maps.shape[-4], h, w) if multi_set else (h, w)
        super().__init__(ishape, kshape)
        self._record(maps=maps, mask=mask, multi_set=multi_set)
        self.maps = maps
        self.mask = mask
        self.multi_set = multi_set
        self._shifted: tuple[torch.Tensor, torch.Tensor | None] | None = None
        self._normal_cache: tuple[tuple[int, ...], torch.Tensor, torch.Tensor | None] | None = None

    def coil_support(self) -> torch.Tensor | None:
        """Boolean ``[..., H, W]`` (``[..., M, H, W]`` with map sets): the pixels some coil sees
        (``Σ_c |S_c|² > 0``); ``None`` when every pixel is seen."""
        inside = self.maps.abs().square().sum(dim=-3) > 0
        return None if bool(inside.all()) else inside

    def check_adjoint_input(self, y: torch.Tensor) -> None:
        """Validate k-space ``[..., C, H, W]``; names the coil mismatch if there is one."""
        if isinstance(y, torch.Tensor) and y.ndim >= 3 and y.shape[-3] != self.oshape[0] \
                and tuple(y.shape[-2:]) == self.oshape[1:]:
            raise ShapeError(f"Sense: maps have {self.oshape[0]} coils, k-space has {y.shape[-3]} "
                             f"(k-space shape {_fmt(y.shape)})")
        super().check_adjoint_input(y)

    # Shifted forms: the centred FFT is P_out ∘ fft ∘ P_in with P_in = ifftshift, P_out = fftshift, so
    # the shifts of the coil data are folded into pre-shifted maps and mask (computed once, cached).
    def _pre_shifted(self) -> tuple[torch.Tensor, torch.Tensor | None]:
        if self._shifted is None:
            maps_s = torch.fft.ifftshift(self.maps, dim=(-2, -1))
            mask_s = None if self.mask is None else torch.fft.ifftshift(self.mask, dim=(-2, -1))
            self._shifted = (maps_s, mask_s)
        return self._shifted

    def _apply(self, x: torch.Tensor) -> torch.Tensor:
        maps_s, mask_s = self._pre_shifted()
        k = torch.fft.fft2(coil_expand(torch.fft.ifftshift(x, dim=(-2, -1)), maps_s, self.multi_set), norm="ortho")
        if mask_s is not None:
            k = k * mask_s
        return torch.fft.fftshift(k, dim=(-2, -1))

    def _adjoint(self, y: torch.Tensor) -> torch.Tensor:
        maps_s, mask_s = self._pre_shifted()
        k = torch.fft.ifftshift(y, dim=(-2, -1))
        if mask_s is not None:
            k = k * mask_s
        img = coil_reduce(torch.fft.ifft2(k, norm="ortho"), maps_s, self.multi_set)
        return torch.fft.fftshift(img, dim=(-2, -1))

    def _normal_parts(self) -> tuple[tuple[int, ...], torch.Tensor, torch.Tensor | None]:
        """(FFT axes, maps shifted along them, |mask|²/N shifted along them; N = FFT size), cached.

        ``F^H diag(m) F`` only needs an FFT along the axes on which the mask varies: a 1D line
        mask ``[1, 1, W]`` needs 1D FFTs along W, a fully sampled operator none at all.
        """
        if self._normal_cache is None:
            m2 = None if self.mask is None else self.mask * self.mask
            if m2 is not None:  # a line mask given as a full [H, W] array: keep only the axis it varies on
                for d in (-2, -1):
                    if m2.shape[d] > 1 and bool((m2 == m2.narrow(d, 0, 1)).all()):
                        m2 = m2.narrow(d, 0, 1)
            dims = () if m2 is None else tuple(d for d in (-2, -1) if m2.shape[d] > 1)
            if m2 is not None and not dims and not bool((m2 == m2.reshape(-1)[0]).all()):
                dims = (-2, -1)  # varies only along coils/batch: keep the general form
            if not dims:
                weight = (self.maps.abs() ** 2).sum(dim=-3)  # Σ_c |S_c|² per map set and pixel
                if m2 is not None:
                    weight = weight * m2.reshape(-1)[0]
                self._normal_cache = ((), weight, None)
            else:
                # unnormalised FFT pair with the 1/N of the two orthonormal ones folded into the mask weights
                # (one pass over the multicoil k-space fewer per transform)
                n = math.prod(self.maps.shape[d] for d in dims)
                maps_s = torch.fft.ifftshift(self.maps, dim=dims)
                self._normal_cache = (dims, maps_s, torch.fft.ifftshift(m2, dim=dims) / n)
        return self._normal_cache

    def normal_apply(self, x: torch.Tensor) -> torch.Tensor:
        """``E^H E x`` in its fast form (no validation)."""
        dims, maps_s, m2 = self._normal_parts()
        if not dims:
            if not self.multi_set:
                return x * maps_s
            k = coil_expand(x, self.maps, True)
            return coil_reduce(k, self.maps, True)
        grad = torch.is_grad_enabled() and (x.requires_grad or self.maps.requires_grad)
        xs = torch.fft.ifftshift(x, dim=dims)
        k = torch.fft.fftn(coil_expand(xs, maps_s, self.multi_set), dim=dims, norm="backward")
        k = k * m2 if grad else k.mul_(m2)
        k = torch.fft.ifftn(k, dim=dims, norm="forward")
        if grad or self.multi_set:
            img = coil_reduce(k, maps_s, self.multi_set)
        else:
            # Σ_c conj(S_c) k_c = conj(Σ_c S_c conj(k_c)): an in-place multiply by a lazily conjugated
            # tensor takes a slow path in torch (~5x), a physical conjugation of k in place does not.
            img = k.conj_physical_().mul_(maps_s).sum(dim=-3).conj_physical_()
        return torch.fft.fftshift(img, dim=dims)

    def _normal(self) -> Linop:
        return SenseNormal(self)


class SenseNormal(Linop):
    """The fast normal operator ``E^H E`` of a :class:`Sense` operator (self-adjoint)."""

    def __init__(self, sense: Sense) -> None:
        super().__init__(sense.ishape, sense.ishape)
        self._record(sense=sense)
        self.sense = sense

    @property
    def name(self) -> str:
        return "Sense.N"

    def _apply(self, x: torch.Tensor) -> torch.Tensor:
        return self.sense.normal_apply(x)

    def _adjoint(self, y: torch.Tensor) -> torch.Tensor:
        return self.sense.normal_apply(y)

    def _normal(self) -> Linop:
        return Compose([self, self])


def _line_mask(gen: torch.Generator, w: int) -> torch.Tensor:
    mask = (torch.rand(1, 1, w, generator=gen) < 0.5).double()
    mask[..., w // 2] = 1.0
    return mask


@example("sample")
def _sample_example(gen: torch.Generator, dtype: torch.dtype) -> Linop:
    return Sample(_line_mask(gen, 11), (3, 17, 11))


@example("coil-expand")
def _coil_expand_example(gen: torch.Generator, dtype: torch.dtype) -> Linop:
    return CoilExpand(randc(gen, 3, 17, 11, dtype=dtype))


@example("coil-expand-2sets")
def _coil_expand2_example(gen: torch.Generator, dtype: torch.dtype) -> Linop:
    return CoilExpand(randc(gen, 2, 3, 17, 11, dtype=dtype), multi_set=True)


@example("sense-1d-mask")
def _sense_example(gen: torch.Generator, dtype: torch.dtype) -> Linop:
    return Sense(randc(gen, 3, 17, 11, dtype=dtype), _line_mask(gen, 11))


@example("sense-2d-mask-2sets")
def _sense2_example(gen: torch.Generator, dtype: torch.dtype) -> Linop:
    mask = (torch.rand(17, 11, generator=gen) < 0.4).double()
    return Sense(randc(gen, 2, 3, 17, 11, dtype=dtype), mask, multi_set=True)


@example("sense-full")
def _sense_full_example(gen: torch.Generator, dtype: torch.dtype) -> Linop:
    return Sense(randc(gen, 4, 9, 7, dtype=dtype))


@example("sense-normal")
def _sense_normal_example(gen: torch.Generator, dtype: torch.dtype) -> Linop:
    return Sense(randc(gen, 3, 8, 6, dtype=dtype), _line_mask(gen, 6)).N


@example("sample-fft-coils")
def _composed_sense_example(gen: torch.Generator, dtype: torch.dtype) -> Linop:
    from mrirecon.operators.fft import FFT

    maps = randc(gen, 3, 17, 11, dtype=dtype)
    return Sample(_line_mask(gen, 11), (3, 17, 11)) @ FFT((3, 17, 11)) @ CoilExpand(maps)

"""Centred, orthonormal FFTs (the fastMRI ``fft2c`` and BART ``fft -u -c`` convention).

``fftnc(x, dim) = fftshift(fftn(ifftshift(x, dim), dim, norm="ortho"), dim)``: the k-space
centre (DC) sits at index ``n // 2`` of each transformed axis, and the transform is unitary.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch

from mrirecon.errors import ConfigError
from mrirecon.operators.catalog import example
from mrirecon.operators.linop import Identity, Linop

Dims = tuple[int, ...]


def fftnc(x: torch.Tensor, dim: Sequence[int] = (-2, -1)) -> torch.Tensor:
    """Centred orthonormal forward FFT over ``dim`` of a complex tensor."""
    dim = tuple(dim)
    x = torch.fft.ifftshift(x, dim=dim)
    x = torch.fft.fftn(x, dim=dim, norm="ortho")
    return torch.fft.fftshift(x, dim=dim)


def ifftnc(x: torch.Tensor, dim: Sequence[int] = (-2, -1)) -> torch.Tensor:
    """Centred orthonormal inverse FFT over ``dim`` of a complex tensor."""
    dim = tuple(dim)
    x = torch.fft.ifftshift(x, dim=dim)
    x = torch.fft.ifftn(x, dim=dim, norm="ortho")
    return torch.fft.fftshift(x, dim=dim)


def fft2c(x: torch.Tensor) -> torch.Tensor:
    """Centred orthonormal 2D FFT over the last two dimensions (complex ``[..., H, W]``)."""
    return fftnc(x, (-2, -1))


def ifft2c(x: torch.Tensor) -> torch.Tensor:
    """Centred orthonormal 2D inverse FFT over the last two dimensions (complex ``[..., H, W]``)."""
    return ifftnc(x, (-2, -1))


def fft3c(x: torch.Tensor) -> torch.Tensor:
    """Centred orthonormal 3D FFT over the last three dimensions."""
    return fftnc(x, (-3, -2, -1))


def ifft3c(x: torch.Tensor) -> torch.Tensor:
    """Centred orthonormal 3D inverse FFT over the last three dimensions."""
    return ifftnc(x, (-3, -2, -1))


class FFT(Linop):
    """Centred orthonormal FFT as an operator: ``y = F x`` over axes ``dim`` of ``shape``.

    Args:
        shape: trailing dimensions of input and output, e.g. ``(C, H, W)``.
        dim: the (negative) axes to transform; default the last two (2D). Use ``(-3, -2, -1)`` for 3D.

    Raises:
        ConfigError: ``dim`` names an axis outside ``shape`` or is not negative.
    """

    def __init__(self, shape: Sequence[int], dim: Sequence[int] = (-2, -1)) -> None:
        shape = tuple(int(s) for s in shape)
        dim = tuple(int(d) for d in dim)
        if any(d >= 0 or -d > len(shape) for d in dim):
            raise ConfigError(f"FFT: dim {dim} must hold negative axes within shape {shape}")
        super().__init__(shape, shape)
        self._record(shape=shape, dim=dim)
        self.dim: Dims = dim

    def _apply(self, x: torch.Tensor) -> torch.Tensor:
        return fftnc(x, self.dim)

    def _adjoint(self, y: torch.Tensor) -> torch.Tensor:
        return ifftnc(y, self.dim)

    def _normal(self) -> Linop:
        return Identity(self.ishape)



@example("fft2-odd")
def _fft2_example(gen: torch.Generator, dtype: torch.dtype) -> Linop:
    return FFT((2, 17, 11))


@example("fft2-even")
def _fft2_even_example(gen: torch.Generator, dtype: torch.dtype) -> Linop:
    return FFT((8, 6))


@example("fft3")
def _fft3_example(gen: torch.Generator, dtype: torch.dtype) -> Linop:
    return FFT((5, 4, 3), dim=(-3, -2, -1))

"""Periodic forward finite differences (the gradient of total variation) as a Linop.

``(D x)_d[i] = x[i + e_d] - x[i]`` with periodic wrap-around, for each axis ``d`` in ``dims``.
The output stacks the differences along a new axis: ``[..., len(dims), *shape]``.
``D^H g = Σ_d (g_d[i - e_d] - g_d[i])`` (minus the backward-difference divergence), and
``D^H D`` is minus the periodic Laplacian, diagonal in the Fourier domain with eigenvalues
``Σ_d 4 sin²(π k_d / n_d)`` (so ``||D||² ≤ 4·len(dims)``).
"""
from __future__ import annotations

from collections.abc import Sequence

import torch

from mrirecon.errors import ConfigError
from mrirecon.operators.catalog import example
from mrirecon.operators.linop import Linop


class FiniteDifference(Linop):
    """Periodic forward differences along ``dims`` of an image of shape ``shape``.

    Args:
        shape: trailing image dimensions, e.g. ``(H, W)``.
        dims: negative axes (within ``shape``) to differentiate along; default the last two.

    Raises:
        ConfigError: ``dims`` empty, not negative or outside ``shape``.
    """

    def __init__(self, shape: Sequence[int], dims: Sequence[int] = (-2, -1)) -> None:
        shape = tuple(int(s) for s in shape)
        dims = tuple(int(d) for d in dims)
        if not dims or any(d >= 0 or -d > len(shape) for d in dims):
            raise ConfigError(f"FiniteDifference: dims {dims} must be non-empty negative axes within shape {shape}")
        super().__init__(shape, (len(dims), *shape))
        self._record(shape=shape, dims=dims)
        self.dims = dims

    def _apply(self, x: torch.Tensor) -> torch.Tensor:
        return torch.stack([torch.roll(x, -1, dims=d) - x for d in self.dims], dim=-len(self.ishape) - 1)

    def _adjoint(self, y: torch.Tensor) -> torch.Tensor:
        axis = -len(self.ishape) - 1
        out = None
        for i, d in enumerate(self.dims):
            g = y.select(axis, i)
            term = torch.roll(g, 1, dims=d) - g
            out = term if out is None else out + term
        assert out is not None
        return out

    def fourier_eigenvalues(self, dtype: torch.dtype = torch.float64,
                            device: torch.device | str | None = None) -> torch.Tensor:
        """Eigenvalues of ``D^H D`` on the (uncentred) DFT grid of ``shape``: ``Σ_d 4 sin²(π k_d / n_d)``."""
        lam = torch.zeros(self.ishape, dtype=dtype, device=device)
        nd = len(self.ishape)
        for d in self.dims:
            n = self.ishape[d]
            k = torch.arange(n, dtype=dtype, device=device)
            v = 4 * torch.sin(torch.pi * k / n) ** 2
            view = [1] * nd
            view[d] = n
            lam = lam + v.reshape(view)
        return lam


@example("finite-difference-2d")
def _fd2(gen: torch.Generator, dtype: torch.dtype) -> Linop:
    return FiniteDifference((17, 11))


@example("finite-difference-1axis")
def _fd1(gen: torch.Generator, dtype: torch.dtype) -> Linop:
    return FiniteDifference((3, 7, 5), dims=(-3,))

"""Equivariance to the 8 rotations/flips of the square lattice (the dihedral group D4).

``D_eq(x) = (1/8) Σ_k T_k⁻¹ D(T_k x)`` is exactly equivariant (``D_eq(T x) = T D_eq(x)`` for each of
the 8 transforms) for any ``D``; its Lipschitz constant is at most ``D``'s (an average of maps with
isometric ``T_k``). ``mode="random"`` applies one ``T_k`` drawn from a seeded generator per call
(equivariant in expectation, the cost of one call). Transforms act on the last two dimensions; odd
transforms swap them, so non-square images are denoised as ``W × H`` images and transformed back.
"""
from __future__ import annotations

from typing import Literal

import torch

from mrirecon.denoisers.base import Denoiser
from mrirecon.denoisers.spectral import CERTIFY_GRID
from mrirecon.errors import ConfigError


def d4_transform(x: torch.Tensor, k: int) -> torch.Tensor:
    """``T_k x``, ``k ∈ {0..7}``: a flip of the last dim when ``k ≥ 4``, then ``k mod 4`` rotations by 90°."""
    if k >= 4:
        x = torch.flip(x, dims=(-1,))
    return torch.rot90(x, k % 4, dims=(-2, -1))


def d4_inverse(y: torch.Tensor, k: int) -> torch.Tensor:
    """``T_k⁻¹ y``."""
    y = torch.rot90(y, -(k % 4), dims=(-2, -1))
    if k >= 4:
        y = torch.flip(y, dims=(-1,))
    return y


class EquivariantDenoiser(Denoiser):
    """Average (or draw one) of ``T_k⁻¹ D(T_k x)`` over the 8 rotations/flips.

    Args:
        denoiser: ``D``.
        mode: ``"average"`` (exactly equivariant, 8 evaluations batched in two calls) or ``"random"``.
        seed: seed of the generator of ``mode="random"``.

    Raises:
        ConfigError: unknown mode.
    """

    def __init__(self, denoiser: Denoiser, mode: Literal["average", "random"] = "average", seed: int = 0) -> None:
        super().__init__()
        if mode not in ("average", "random"):
            raise ConfigError(f"EquivariantDenoiser: mode must be 'average' or 'random', got {mode!r}")
        self.denoiser, self.mode = denoiser, mode
        self.noise_map = denoiser.noise_map
        self.generator = torch.Generator().manual_seed(seed)

    def forward_channels(self, z: torch.Tensor, sigma: torch.Tensor | None = None) -> torch.Tensor:
        b = z.shape[0]
        if self.mode == "random":
            k = int(torch.randint(8, (1,), generator=self.generator))
            return d4_inverse(self.denoiser.forward_channels(d4_transform(z, k), sigma), k)
        out = torch.zeros_like(z)
        # transforms with an even number of rotations keep H x W, odd ones give W x H: two batched calls
        for ks in ((0, 2, 4, 6), (1, 3, 5, 7)):
            batch = torch.cat([d4_transform(z, k) for k in ks], dim=0)
            s = None if sigma is None else sigma.repeat(len(ks))
            den = self.denoiser.forward_channels(batch, s)
            for i, k in enumerate(ks):
                out = out + d4_inverse(den[i * b:(i + 1) * b], k)
        return out / 8

    # rotations and flips are isometries: the wrapped network's bounds carry over
    def lipschitz_bounds(self) -> dict[str, float] | None:
        return self.denoiser.lipschitz_bounds()

    def certified_bounds(self, grid: int = CERTIFY_GRID) -> dict[str, float] | None:
        return self.denoiser.certified_bounds(grid)

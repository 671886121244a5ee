"""Coil sensitivities inside a network: the calibration (ACS) box of a mask, and a learned map estimator.

:class:`SensitivityNet` estimates maps from the fully sampled centre of k-space, as E2E-VarNet's
sensitivity module (Sriram et al. 2020): the ACS lines are kept (everything else zeroed), each coil image
``I_c = F^H(box · y_c)`` is corrected by a small U-Net that sees the coil alone (coils are a batch
dimension, so any number of coils works), and the result is divided by its root-sum-of-squares::

    S_c = (I_c + U(I_c)) / sqrt(Σ_c |I_c + U(I_c)|²)

With the U-Net's zero-initialised output layer a fresh estimator returns the ACS ratio maps
(:func:`mrirecon.operators.coils.lowres_maps` with a box window). ``mode="refine"`` starts instead from
given maps (e.g. ESPIRiT): ``S = normalise(S0 + U(I_c, S0_c))``.
"""
from __future__ import annotations

from typing import Literal

import torch
from torch import nn

from mrirecon.errors import DataError
from mrirecon.models.base import channels_to_complex, complex_to_channels
from mrirecon.models.layers import SmallUNet
from mrirecon.operators.coils import acs_size, rss
from mrirecon.operators.fft import ifft2c


def acs_box(mask: torch.Tensor, shape: tuple[int, int], who: str = "acs_box") -> torch.Tensor:
    """The fully sampled calibration box of each mask of a batch, as a float ``[B, 1, H, W]`` indicator.

    The box of each item is :func:`~mrirecon.operators.coils.acs_size` of its mask (for 1D line masks the
    central run of sampled lines, full height).

    Args:
        mask: ``[B, 1, 1|H, W]``.
        shape: ``(H, W)``.

    Raises:
        DataError: an item whose k-space centre (DC) is not sampled (no calibration region).
    """
    h, w = shape
    boxes = torch.zeros(mask.shape[0], 1, h, w, dtype=torch.float32, device=mask.device)
    cache: dict[bytes, tuple[int, int]] = {}
    for b in range(mask.shape[0]):
        m = mask[b, 0]
        key = (m != 0).cpu().numpy().tobytes() + bytes(str(tuple(m.shape)), "ascii")
        if key not in cache:
            cache[key] = acs_size(m, (h, w))
        ch, cw = cache[key]
        if ch == 0 or cw == 0:
            raise DataError(f"{who}: the mask of batch item {b} does not sample the k-space centre, so there is no "
                            f"calibration region to estimate coil maps from; give maps (maps='given')")
        y0, x0 = h // 2 - ch // 2, w // 2 - cw // 2
        boxes[b, 0, y0:y0 + ch, x0:x0 + cw] = 1.0
    return boxes


def rss_normalise(maps: torch.Tensor, rel_eps: float = 1e-6) -> torch.Tensor:
    """``S_c / sqrt(Σ_c |S_c|²)`` over the coil dimension (``-3``), guarded where the RSS is ~0.

    The denominator is clamped to ``rel_eps`` times its maximum per item, so pixels without signal stay
    near zero instead of dividing by zero (and gradients stay finite).
    """
    norm = rss(maps).unsqueeze(-3)
    floor = norm.detach().flatten(-3).amax(dim=-1).clamp_min(1e-30).reshape(*norm.shape[:-3], 1, 1, 1) * rel_eps
    return maps / torch.maximum(norm, floor)


class SensitivityNet(nn.Module):
    """Learned coil maps from the ACS lines (``mode="learned"``) or refined from given maps (``"refine"``).

    Args:
        mode: ``"learned"`` (from the ACS k-space alone) or ``"refine"`` (given maps + a learned correction).
        width: channels of the U-Net's finest level.
        levels: its poolings.
    """

    def __init__(self, mode: Literal["learned", "refine"] = "learned", width: int = 8, levels: int = 4) -> None:
        super().__init__()
        self.mode = mode
        self.unet = SmallUNet(2 if mode == "learned" else 4, 2, width, levels)

    def forward(self, y: torch.Tensor, mask: torch.Tensor, maps: torch.Tensor | None = None) -> torch.Tensor:
        """Maps ``[B, C, H, W]`` (``Σ_c |S_c|² = 1`` where there is signal).

        Args:
            y: undersampled k-space ``[B, C, H, W]`` complex.
            mask: ``[B, 1, 1|H, W]``.
            maps: the maps to refine (``mode="refine"``), ``[B, C, H, W]``.

        Raises:
            DataError: no calibration region, or ``"refine"`` without maps.
        """
        b, c, h, w = y.shape
        img = ifft2c(y * acs_box(mask, (h, w), "SensitivityNet").to(y.dtype))
        scale = img.detach().abs().pow(2).mean(dim=(-2, -1), keepdim=True).sqrt().clamp_min(1e-30)
        z = complex_to_channels((img / scale).reshape(b * c, 1, h, w))
        if self.mode == "refine":
            if maps is None:
                raise DataError("SensitivityNet: mode 'refine' needs maps to refine (the sample has none)")
            z = torch.cat([z, complex_to_channels(maps.reshape(b * c, 1, h, w))], dim=1)
        corr = channels_to_complex(self.unet(z)).reshape(b, c, h, w)
        if self.mode == "learned":  # the correction in each coil's own units keeps the coils' relative weights
            return rss_normalise(img + corr * scale)
        assert maps is not None
        return rss_normalise(maps + corr)

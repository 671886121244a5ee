"""The image scale that normalises a problem before a denoiser or a learned prior sees it."""
from __future__ import annotations

import torch
import torch.nn.functional as F


def robust_max(x: torch.Tensor, image_dims: int = 2) -> torch.Tensor:
    """A robust peak magnitude per batch element, for dividing images to a ~unit range.

    The maximum of the 3×3 median-filtered magnitude (isolated bright pixels do not count). Where
    that vanishes — an image of isolated values, e.g. a background crop, whose median filter is zero
    — it falls back to the plain maximum (leaving such data at ~1e-6 made CG backward passes
    underflow to NaN gradients in training); all-zero images get 1.

    Args:
        x: complex or real ``[..., (M,) H, W]``.
        image_dims: 2 for ``[H, W]`` images, 3 for multi-set ``[M, H, W]`` (the maximum is over all sets).

    Returns:
        real ``[...]`` (the leading dims), positive.
    """
    mag = x.abs()
    h, w = mag.shape[-2:]
    lead = mag.shape[:mag.ndim - image_dims]
    flat = mag.reshape(-1, 1, h, w)
    peak = flat.reshape(flat.shape[0], -1).amax(dim=1)
    if h >= 3 and w >= 3:
        med = F.unfold(F.pad(flat, (1, 1, 1, 1), mode="replicate"), 3).median(dim=1).values.amax(dim=1)
    else:
        med = peak
    s = torch.where(med > 1e-6 * peak, med, peak).reshape(*lead, -1).amax(dim=-1)
    return torch.where(s > 0, s, torch.ones_like(s))

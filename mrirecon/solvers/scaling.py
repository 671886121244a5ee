"""The image scale that normalises a problem before a denoiser or a learned prior sees it, and the noise level
of multicoil k-space that sets the data/prior balance of the plug-and-play methods and of DEQ-ADMM."""
from __future__ import annotations

import math

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


def estimate_noise(kspace: torch.Tensor, mask: torch.Tensor, edge: float = 0.1) -> torch.Tensor:
    """Noise standard deviation per real/imaginary part of multicoil k-space, per batch element.

    The median magnitude ``m`` of the sampled values in the outer band ``max(|k_y|/(H/2), |k_x|/(W/2)) ≥ 1 − edge``
    (all coils), where MRI k-space holds little signal, gives ``σ = m / sqrt(2 ln 2)`` (for complex Gaussian
    noise ``|n|`` is Rayleigh-distributed with median ``σ sqrt(2 ln 2)``). The median ignores the few
    samples that do carry signal there. The band is widened (to 0.3) when it holds fewer than 64 samples.

    Args:
        kspace: complex ``[..., C, H, W]`` (zero where not sampled).
        mask: real, broadcastable to ``kspace``.
        edge: width of the band as a fraction of the half-width.

    Returns:
        real ``[...]``; ``nan`` where no sampled value lies in the band.
    """
    C, H, W = kspace.shape[-3:]
    ky = (torch.arange(H, device=kspace.device) - H // 2).abs() / max(H / 2, 1)
    kx = (torch.arange(W, device=kspace.device) - W // 2).abs() / max(W / 2, 1)
    radius = torch.maximum(ky[:, None], kx[None, :])
    sampled = torch.broadcast_to(mask != 0, kspace.shape)
    flat_k = kspace.reshape(-1, C * H * W)
    flat_m = sampled.reshape(-1, C, H, W)
    narrow = (flat_m & (radius >= 1 - edge)).reshape(-1, C * H * W)
    wide = (flat_m & (radius >= 1 - 0.3)).reshape(-1, C * H * W)
    # per batch element, without a host synchronisation: the narrow band where it holds 64 samples, else the wide
    use_narrow = narrow.sum(dim=1, keepdim=True) >= 64
    sel = torch.where(use_narrow, narrow, wide)
    nan = torch.tensor(math.nan, dtype=kspace.real.dtype, device=kspace.device)
    # nanmedian, like median, returns the lower of the two middle values of an even count; nan where none sampled
    out = torch.where(sel, flat_k.abs(), nan).nanmedian(dim=1).values / math.sqrt(2 * math.log(2))
    return out.reshape(kspace.shape[:-3])

"""BART's data scaling (``estimate_scaling`` in ``bart pics``), so that λ values carry over from BART.

``bart pics`` divides the k-space by a scale ``s`` before solving and (without ``-S``) returns the
image in those scaled units. ``s`` is estimated from the calibration region:

1. the largest fully sampled centred block of at most 32×32 (grown as in ESPIRiT's calibration),
   slid along the readout axis (here ``H``, BART's dimension 0) to the position of maximum energy;
2. the root-sum-of-squares image of that block (unitary inverse FFT of the small block), divided by
   ``sqrt(H·W / (ch·cw))`` so that it is in the units of the full-size unitary image;
3. of its sorted magnitudes, the 90th percentile ``p90`` — or the maximum, when
   ``max - p90 >= 2 (p90 - median)`` (a few very bright pixels).

After scaling, typical image magnitudes are about 1, which is why BART's λ values (e.g. ``0.01``)
are meaningful across data sets; the methods in :mod:`mrirecon.methods.classical` use the same rule.
"""
from __future__ import annotations

import math

import torch

from mrirecon.errors import DataError
from mrirecon.operators.coils import rss as coil_rss
from mrirecon.operators.espirit import calib_region, sampling_pattern
from mrirecon.operators.fft import ifft2c

BART_SCALING_CALIB = 32


def bart_scaling(kspace: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """BART's inverse data scale per batch element (see the module docstring).

    Args:
        kspace: complex ``[..., C, H, W]`` (zero where not sampled).
        mask: the sampling mask (broadcastable to ``kspace``); by default the nonzero pattern of
            ``kspace`` (BART's ``estimate_pattern``).

    Returns:
        real ``[...]`` scales (1 where the data are all zero, as in BART).

    Raises:
        DataError: ``kspace`` is not complex ``[..., C, H, W]``.
    """
    if not isinstance(kspace, torch.Tensor) or not kspace.is_complex() or kspace.ndim < 3:
        raise DataError(f"bart_scaling: expected complex k-space [..., C, H, W], got "
                        f"{getattr(kspace, 'dtype', type(kspace).__name__)} {list(getattr(kspace, 'shape', []))}")
    C, H, W = kspace.shape[-3:]
    lead = kspace.shape[:-3]
    ksp = kspace.reshape(-1, C, H, W)
    out = torch.empty(ksp.shape[0], dtype=kspace.real.dtype, device=kspace.device)
    for b in range(ksp.shape[0]):
        k = ksp[b]
        if mask is None:
            pattern = sampling_pattern(k)
        else:
            pattern = (torch.broadcast_to(mask, kspace.shape).reshape(-1, C, H, W)[b] != 0).any(dim=0)
        ch, cw = calib_region(pattern, BART_SCALING_CALIB)
        c0 = (W - cw) // 2
        # slide along the readout (H) to the block of maximum energy (BART's calib_readout_pos)
        rows = k[:, :, c0:c0 + cw].abs().pow(2).sum(dim=(0, 2))  # [H]
        csum = torch.cat([rows.new_zeros(1), rows.cumsum(0)])
        energy = csum[ch:] - csum[:-ch]  # windows starting at 0 .. H - ch
        r0 = int(torch.argmax(energy))
        block = k[:, r0:r0 + ch, c0:c0 + cw]
        rss = coil_rss(ifft2c(block), dim=0).reshape(-1)
        rescale = math.sqrt(H * W / (ch * cw))
        vals = torch.sort(rss).values / rescale
        n = vals.numel()
        median, p90, vmax = vals[n // 2], vals[math.trunc(n * 0.9)], vals[-1]
        scale = p90 if (vmax - p90) < 2 * (p90 - median) else vmax
        out[b] = scale if float(scale) > 0 else 1.0
    return out.reshape(lead)

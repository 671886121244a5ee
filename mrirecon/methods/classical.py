"""Classical reconstructions: zero-filled (and, from the baselines issue, SENSE and CS)."""
from __future__ import annotations

import time
from dataclasses import dataclass

from mrirecon.data.sample import KSpaceSample
from mrirecon.methods import ReconResult, register_method
from mrirecon.operators import Sense, ifft2c


@dataclass
class ZeroFilledOptions:
    """Zero-filled reconstruction has no parameters."""


@register_method("zf", ZeroFilledOptions, needs_maps=False,
                 description="zero-filled inverse FFT; coil-combined with the maps when given, else root-sum-of-squares")
def zero_filled(sample: KSpaceSample, options: ZeroFilledOptions) -> ReconResult:
    """``E^H y`` with maps, else ``sqrt(Σ_c |F^H y_c|²)`` (returned as a complex tensor with zero phase)."""
    t0 = time.perf_counter()
    if sample.maps is not None:
        image = Sense(sample.maps, sample.mask, multi_set=sample.multi_set).adjoint(sample.kspace)
    else:
        image = ifft2c(sample.kspace).abs().pow(2).sum(dim=-3).sqrt().to(sample.kspace.dtype)
    return ReconResult(image=image, info={"time_s": time.perf_counter() - t0, "iterations": 0})

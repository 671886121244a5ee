"""Learned reconstructions: trained unrolled networks (the learned primal-dual network ``pdnet``).

``reconstruct(sample, "pdnet")`` runs the shipped ``pdnet-demo`` weights (trained by
``recipes/pdnet_demo.yaml`` on the demo dataset: brain, 8 coils, random line masks at 4× and 8×);
``weights=`` takes another shipped name, a weights file (``RUN/model.pt``) or a training checkpoint of any
reconstruction network (PD-net or E2E-VarNet). Networks that estimate their maps from the ACS lines need no
coil maps; one trained with ``maps: given``/``refine`` reads ``sample.maps``.
"""
from __future__ import annotations

import functools
import time
from dataclasses import dataclass

import torch

from mrirecon.data.sample import KSpaceSample
from mrirecon.errors import ConfigError
from mrirecon.methods import ReconResult, register_method


@functools.lru_cache(maxsize=4)
def _cached_model(path: str, device: str) -> torch.nn.Module:
    from mrirecon.models.base import load_recon_model  # noqa: PLC0415

    return load_recon_model(path, device=device)


@dataclass
class PDNetOptions:
    """Options of ``pdnet``.

    Attributes:
        weights: shipped network name, weights file or training checkpoint.
        device: ``cpu``, ``cuda`` or ``auto`` (a GPU when there is one).
    """

    weights: str = "pdnet-demo"
    device: str = "auto"


@register_method("pdnet", PDNetOptions, needs_maps=False,
                 description="learned primal-dual network (unrolled PDHG with CNN updates; maps learned from the "
                             "ACS lines); weights pdnet-demo (demo brain data) or --weights FILE")
def pdnet(sample: KSpaceSample, options: PDNetOptions) -> ReconResult:
    """Reconstruct with a trained network: complex image ``[..., H, W]`` at the k-space matrix."""
    t0 = time.perf_counter()
    device = ("cuda" if torch.cuda.is_available() else "cpu") if options.device == "auto" else options.device
    model = _cached_model(str(options.weights), device)
    if getattr(model, "uses_maps", False) and sample.maps is None:
        raise ConfigError(f"method 'pdnet': the network {options.weights!r} uses coil maps, but the sample has none; "
                          f"estimate maps (e.g. --maps espirit)")
    with torch.no_grad():
        image = model(sample.to(device)).cpu()
    return ReconResult(image=image, info={"time_s": time.perf_counter() - t0, "weights": str(options.weights),
                                          "network": type(model).__name__})

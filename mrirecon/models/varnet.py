"""E2E-VarNet (Sriram et al. 2020) as a registered reconstruction network: ``fastmri.models.VarNet`` wrapped.

The wrapper converts at the edge: complex k-space ``[B, C, H, W]`` becomes fastMRI's real layout
``[B, C, H, W, 2]``, the mask a boolean ``[B, 1, 1, W, 1]`` (or ``[B, 1, H, W, 1]``), and fastMRI's output,
the root-sum-of-squares magnitude ``[B, H, W]``, is returned as a complex image with zero phase, so that
VarNet and PD-net are trained, evaluated and called (``model(sample)``) by the same code. The k-space is
scaled as every :class:`~mrirecon.models.base.ReconModel` (the network is scale equivariant).
"""
from __future__ import annotations

import torch

from mrirecon.denoisers.registry import register
from mrirecon.errors import ConfigError
from mrirecon.models.base import ReconModel


@register("varnet")
class VarNet(ReconModel):
    """End-to-end variational network: ``fastmri.models.VarNet`` with mrirecon's sample interface.

    Args (those of ``fastmri.models.VarNet``, same defaults):
        num_cascades: unrolled cascades.
        sens_chans, sens_pools: the sensitivity U-Net.
        chans, pools: each cascade's U-Net.
        mask_center: estimate the maps from the centre lines only.

    Raises:
        ConfigError: invalid sizes.
    """

    def __init__(self, num_cascades: int = 12, sens_chans: int = 8, sens_pools: int = 4, chans: int = 18,
                 pools: int = 4, mask_center: bool = True) -> None:
        super().__init__()
        from fastmri.models import VarNet as FastMRIVarNet  # noqa: PLC0415

        for name, v in (("num_cascades", num_cascades), ("sens_chans", sens_chans), ("chans", chans)):
            if v < 1:
                raise ConfigError(f"VarNet: {name} must be >= 1, got {v}")
        self.net = FastMRIVarNet(num_cascades=num_cascades, sens_chans=sens_chans, sens_pools=sens_pools,
                                 chans=chans, pools=pools, mask_center=mask_center)

    def reconstruct(self, y: torch.Tensor, mask: torch.Tensor, maps: torch.Tensor | None) -> torch.Tensor:
        k = torch.view_as_real(y)                                   # [B, C, H, W, 2]
        m = (mask != 0).unsqueeze(-1)                               # [B, 1, 1|H, W, 1]
        num_low = None
        if m.shape[2] != 1:  # a 2D mask: fastMRI's centre detection reads one row; give the ACS width instead
            from mrirecon.operators.coils import acs_size  # noqa: PLC0415

            num_low = max(1, min(acs_size(mask[b, 0], mask.shape[-2:])[1] for b in range(mask.shape[0])))
        out = self.net(k, m, num_low)                               # [B, H, W] real (RSS magnitude)
        return torch.complex(out.float(), torch.zeros_like(out, dtype=torch.float32))

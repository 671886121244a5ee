"""The interface of reconstruction networks: a typed k-space sample in, a complex image out.

Every reconstruction network is a :class:`ReconModel`: ``model(sample) -> image`` with ``sample`` a
:class:`~mrirecon.data.sample.KSpaceSample` (undersampled multicoil k-space ``[B, C, H, W]`` or
``[C, H, W]`` complex64, its mask, optional coil maps) and ``image`` complex ``[B, H, W]`` (or ``[H, W]``)
at the full k-space matrix. The network builds its SENSE operator from the sample on every call
(STYLE §4) and never modifies the sample. Real channels exist only inside, at the edge of each CNN.

Scale: k-space from scanners comes in arbitrary units (fastMRI knee values are ~1e-5). Every model
divides the k-space by a per-sample scale ``s = max_pixels RSS(F^H y)`` (the maximum of the root-sum-of-
squares zero-filled image, a degree-1 homogeneous function of ``y``) and multiplies the output by ``s``,
so ``model(αy) = α·model(y)`` for every ``α > 0``: no unit assumption, exact scale equivariance.
"""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from torch import nn

from mrirecon.errors import DataError, DTypeError, ShapeError

if TYPE_CHECKING:  # models sit below data (STYLE.md §1): the sample type is only named here
    from mrirecon.data.sample import KSpaceSample


def complex_to_channels(x: torch.Tensor) -> torch.Tensor:
    """Complex ``[N, K, H, W]`` -> real ``[N, 2K, H, W]`` (channel ``2k`` real, ``2k+1`` imaginary part of ``k``).

    The result is in channels-last memory layout (one copy), the fast layout of CPU (oneDNN) and GPU convolutions.
    """
    n, k, h, w = x.shape
    z = torch.view_as_real(x.permute(0, 2, 3, 1).contiguous())           # [N, H, W, K, 2]
    return z.reshape(n, h, w, 2 * k).permute(0, 3, 1, 2)                 # [N, 2K, H, W], channels last


def channels_to_complex(z: torch.Tensor) -> torch.Tensor:
    """Real ``[N, 2K, H, W]`` -> complex ``[N, K, H, W]``; the inverse of :func:`complex_to_channels`.

    The channels are cast to float32 first (under mixed precision the CNN returns bf16/fp16, which has no
    complex counterpart); the data-consistency arithmetic stays in complex64.
    """
    n, k2, h, w = z.shape
    zl = z.float().permute(0, 2, 3, 1).contiguous().reshape(n, h, w, k2 // 2, 2)   # free for channels-last input
    return torch.view_as_complex(zl).permute(0, 3, 1, 2)


def zero_filled_scale(kspace: torch.Tensor, eps: float = 1e-30) -> torch.Tensor:
    """Per-sample scale ``s = max_pixels sqrt(Σ_c |F^H y_c|²)`` of k-space ``[B, C, H, W]`` -> ``[B]`` (detached).

    A sample of all zeros gets ``s = 1`` (nothing to scale).
    """
    from mrirecon.operators.coils import rss  # noqa: PLC0415
    from mrirecon.operators.fft import ifft2c  # noqa: PLC0415

    with torch.no_grad():
        img = rss(ifft2c(kspace))
        s = img.flatten(-2).amax(dim=-1)
    return torch.where(s > eps, s, torch.ones_like(s))


def line_or_2d_mask(mask: torch.Tensor, kshape: Sequence[int], who: str) -> torch.Tensor:
    """A batched mask ``[B, 1, 1, W]`` or ``[B, 1, H, W]`` (float32) from any broadcastable layout.

    Args:
        mask: ``[W]``, ``[1, 1, W]``, ``[H, W]``, ``[B, 1, 1, W]``, ``[B, 1, H, W]``, ...
        kshape: the batched k-space shape ``(B, C, H, W)``.

    Raises:
        DTypeError: complex mask.  ShapeError: the mask does not broadcast to the k-space.
    """
    if not isinstance(mask, torch.Tensor) or mask.is_complex():
        raise DTypeError(f"{who}: mask must be a real tensor, got {getattr(mask, 'dtype', type(mask).__name__)}")
    b, _, h, w = (int(v) for v in kshape)
    m = mask.to(torch.float32)
    if m.ndim == 1:
        m = m.reshape(1, 1, 1, -1)
    elif m.ndim == 2:
        m = m.reshape(1, 1, *m.shape)
    elif m.ndim == 3:
        m = m.unsqueeze(0)
    if m.ndim != 4:
        raise ShapeError(f"{who}: mask of shape {list(mask.shape)} does not fit k-space of shape {list(kshape)}")
    if m.shape[1] != 1:  # a per-coil mask: all coils must share it
        if not bool((m == m[:, :1]).all()):
            raise ShapeError(f"{who}: the mask differs between coils (shape {list(mask.shape)}); expected one "
                             f"sampling pattern for all coils")
        m = m[:, :1]
    try:
        m = torch.broadcast_to(m, (b, 1, m.shape[2] if m.shape[2] == 1 else h, w))
    except RuntimeError:
        raise ShapeError(f"{who}: mask of shape {list(mask.shape)} does not broadcast to k-space "
                         f"{list(kshape)}") from None
    if m.shape[2] not in (1, h):
        raise ShapeError(f"{who}: mask of shape {list(mask.shape)} does not broadcast to k-space {list(kshape)}")
    return m


def batched_inputs(sample: KSpaceSample, who: str, uses_maps: bool = True
                   ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None, bool]:
    """Validate a sample for a network and add the batch dimension.

    Returns:
        ``(y [B, C, H, W], mask [B, 1, 1|H, W], maps [B, C, H, W] (y's dtype) or None, unbatched)``.

    Raises:
        DTypeError: k-space or maps not complex.  ShapeError: k-space not ``[B, C, H, W]``/``[C, H, W]``,
        a mask that does not fit, maps of another shape (several map sets included).  DataError: maps
        missing where ``uses_maps``.
    """
    y = sample.kspace
    if not isinstance(y, torch.Tensor) or not y.is_complex():
        raise DTypeError(f"{who}: kspace must be a complex tensor [B, C, H, W], got "
                         f"{getattr(y, 'dtype', type(y).__name__)}")
    unbatched = y.ndim == 3
    if unbatched:
        y = y.unsqueeze(0)
    if y.ndim != 4:
        raise ShapeError(f"{who}: kspace must be [B, C, H, W] or [C, H, W], got {list(sample.kspace.shape)}")
    mask = sample.mask
    if unbatched and mask.ndim == 4:
        mask = mask.squeeze(0)
    mask = line_or_2d_mask(mask, y.shape, who).to(y.device)
    if not uses_maps:
        return y, mask, None, unbatched
    maps = sample.maps
    if maps is None:
        raise DataError(f"{who}: needs coil sensitivity maps, but the sample (file "
                        f"{getattr(sample.meta, 'file', '?')}) has none; estimate them (ESPIRiT) first")
    if not maps.is_complex():
        raise DTypeError(f"{who}: maps must be complex, got {maps.dtype}")
    if unbatched:
        maps = maps.unsqueeze(0)
    if maps.ndim != 4 or tuple(maps.shape) != tuple(y.shape):
        raise ShapeError(f"{who}: maps of shape {list(sample.maps.shape)} do not match k-space "
                         f"{list(sample.kspace.shape)} (one map set [B, C, H, W] is expected)")
    return y, mask, maps.to(y.dtype), unbatched


class ReconModel(nn.Module):
    """Base class of reconstruction networks: ``forward(sample) -> complex image``.

    Subclasses implement :meth:`reconstruct` on batched, scaled inputs; :meth:`forward` validates the sample,
    adds/removes the batch dimension and applies the scale (see the module docstring).

    Attributes:
        uses_maps: whether the network reads ``sample.maps`` (then they must be present).
    """

    uses_maps: bool = False

    def forward(self, sample: KSpaceSample) -> torch.Tensor:
        """Reconstruct a sample (or a batch of samples).

        Args:
            sample: ``kspace`` complex ``[B, C, H, W]`` or ``[C, H, W]``, zero where not sampled; ``mask``
                broadcastable to it (one pattern for all coils); ``maps`` ``[B, C, H, W]``/``[C, H, W]`` when
                :attr:`uses_maps`.

        Returns:
            complex image ``[B, H, W]`` (``[H, W]`` for an unbatched sample) at the k-space matrix.

        Raises:
            DTypeError, ShapeError: ill-formed sample.  DataError: maps missing where needed, or no
                calibration region for learned maps.
        """
        y, mask, maps, unbatched = batched_inputs(sample, type(self).__name__, self.uses_maps)
        s = zero_filled_scale(y)
        sc = s.reshape(-1, 1, 1, 1).to(y.dtype)
        x = self.reconstruct(y / sc, mask, maps)
        x = x * sc[:, 0]
        return x[0] if unbatched else x

    def reconstruct(self, y: torch.Tensor, mask: torch.Tensor, maps: torch.Tensor | None) -> torch.Tensor:
        """Reconstruct scaled, batched inputs: ``y`` ``[B, C, H, W]``, ``mask`` ``[B, 1, 1|H, W]`` -> ``[B, H, W]``."""
        raise NotImplementedError


def shipped_path(name_or_path: str | Path) -> Path:
    """A weights file: an existing path, or a shipped name in ``mrirecon/weights`` (``pdnet-demo``).

    Raises:
        KeyError: neither a file nor a shipped name (lists the shipped reconstruction networks).
    """
    from mrirecon.denoisers.zoo import shipped_denoisers, weights_path  # noqa: PLC0415

    try:
        return weights_path(name_or_path)
    except KeyError:
        pass
    names = ", ".join(n for n, info in shipped_denoisers().items()
                      if _is_recon_name(info.get("model", {}).get("name"))) or "none"
    raise KeyError(f"no reconstruction network {str(name_or_path)!r}: not a file and not a shipped name "
                   f"(shipped reconstruction networks: {names})")


def _is_recon_name(name: object) -> bool:
    from mrirecon.denoisers.registry import MODELS  # noqa: PLC0415

    return isinstance(name, str) and name in MODELS and issubclass(MODELS.get(name).cls, ReconModel)


def load_recon_model(name_or_path: str | Path, device: str | torch.device | None = None) -> ReconModel:
    """A reconstruction network from a shipped name (``"pdnet-demo"``), weights file or training checkpoint.

    Returns:
        the network in eval mode (on ``device``).

    Raises:
        KeyError: unknown name.  DataError: unreadable file, or a file that holds another kind of network.
    """
    from mrirecon.denoisers.zoo import model_from_file  # noqa: PLC0415

    p = shipped_path(name_or_path)
    model = model_from_file(p)
    if not isinstance(model, ReconModel):
        raise DataError(f"{p}: holds a {type(model).__name__}, not a reconstruction network")
    return model.to(device) if device is not None else model

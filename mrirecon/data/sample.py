"""Typed samples: what datasets yield and what reconstruction methods take (STYLE.md §7)."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

import torch


@dataclass(frozen=True)
class SampleMeta:
    """Where a sample comes from and how it was acquired.

    Attributes:
        file: source file name (path as given to the dataset).
        slice: slice index in the file (``-1`` for a whole volume).
        max_value: the volume maximum of the target (fastMRI ``attrs['max']``), used as data range.
        recon_size: ``(h, w)`` of the target image (from the ISMRMRD header's recon space).
        acceleration: the nominal acceleration of the mask, ``None`` when fully sampled.
        center_fraction: fraction of fully sampled central lines, ``None`` when not applicable.
        extra: further per-file facts (e.g. ``{"acquisition": "CORPD_FBK", "contrast": 0}``).
    """

    file: str = ""
    slice: int = -1
    max_value: float | None = None
    recon_size: tuple[int, int] | None = None
    acceleration: float | None = None
    center_fraction: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class KSpaceSample:
    """One multicoil k-space slice (or a batch of them, with leading batch dimensions).

    Attributes:
        kspace: complex64 ``[..., C, H, W]``, zero where not sampled.
        mask: float32, broadcastable to ``kspace`` (``[..., 1, 1, W]`` for line masks, ``[..., 1, H, W]`` for 2D).
        maps: complex64 ``[..., C, H, W]`` or ``[..., M, C, H, W]`` sensitivity maps, or ``None``.
        target: float32 ``[..., h, w]`` magnitude ground truth at the recon size, or ``None``.
        meta: a :class:`SampleMeta` (a list of them for a batch).
    """

    kspace: torch.Tensor
    mask: torch.Tensor
    maps: torch.Tensor | None = None
    target: torch.Tensor | None = None
    meta: SampleMeta | list[SampleMeta] = field(default_factory=SampleMeta)

    @property
    def multi_set(self) -> bool:
        """Whether ``maps`` holds several map sets (``[..., M, C, H, W]``)."""
        return self.maps is not None and self.maps.ndim == self.kspace.ndim + 1

    def replace(self, **changes: Any) -> KSpaceSample:
        """A copy with some fields replaced (tensors are shared, not copied)."""
        return dataclasses.replace(self, **changes)

    def to(self, device: torch.device | str) -> KSpaceSample:
        """A copy with every tensor on ``device``."""
        def mv(t: torch.Tensor | None) -> torch.Tensor | None:
            return None if t is None else t.to(device)
        return self.replace(kspace=mv(self.kspace), mask=mv(self.mask), maps=mv(self.maps), target=mv(self.target))

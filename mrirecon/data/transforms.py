"""Transforms on k-space samples: centre crop/pad, image-domain resizing of k-space, masking, batching."""
from __future__ import annotations

from collections.abc import Sequence

import torch

from mrirecon.data.sample import KSpaceSample, SampleMeta
from mrirecon.errors import ShapeError
from mrirecon.operators.fft import fft2c, ifft2c


def center_crop_or_pad(x: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
    """Centre-crop or zero-pad the last two dimensions of ``x`` to ``size`` (``(h, w)``).

    The centre (index ``n // 2``) stays at the centre (index ``m // 2``), so cropping and padding
    commute with the centred FFT convention: ``crop(pad(x)) == x``.
    """
    h, w = int(size[0]), int(size[1])
    out = x
    for dim, n in ((-2, h), (-1, w)):
        cur = out.shape[dim]
        if n < cur:
            start = cur // 2 - n // 2
            out = out.narrow(dim, start, n)
        elif n > cur:
            before = n // 2 - cur // 2
            shape = list(out.shape)
            shape[dim] = n
            padded = out.new_zeros(shape)
            padded.narrow(dim, before, cur).copy_(out)
            out = padded
    return out


def resize_kspace(kspace: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
    """Change the matrix of fully sampled k-space by cropping/padding its coil images (same pixel size).

    ``F(crop_or_pad(F^H y))``: the field of view changes, the resolution does not; valid for fully sampled
    data (and for any data along the fully sampled readout).
    """
    if tuple(kspace.shape[-2:]) == tuple(size):
        return kspace
    return fft2c(center_crop_or_pad(ifft2c(kspace), size))


def rss(x: torch.Tensor, dim: int = -3) -> torch.Tensor:
    """Root-sum-of-squares over ``dim`` of a complex or real tensor."""
    return x.abs().pow(2).sum(dim=dim).sqrt()


def collate_samples(samples: Sequence[KSpaceSample]) -> KSpaceSample:
    """Stack slice samples into one batched :class:`KSpaceSample` (``kspace [B, C, H, W]``, ``meta`` a list).

    Samples of different matrix sizes cannot be stacked: give the dataset a common ``size`` (k-space is
    then cropped/padded in the image domain before masking) and ``target_size``.

    Raises:
        ShapeError: the samples differ in a shape (the message names the files), or only some have maps/targets.
    """
    if not samples:
        raise ShapeError("collate_samples: empty batch")

    def names() -> str:
        return ", ".join(f"{getattr(s.meta, 'file', '?')}[{getattr(s.meta, 'slice', '?')}]" for s in samples[:4])

    def stack(field: str) -> torch.Tensor | None:
        vals = [getattr(s, field) for s in samples]
        if all(v is None for v in vals):
            return None
        if any(v is None for v in vals):
            raise ShapeError(f"collate_samples: only some samples have {field} ({names()})")
        shapes = {tuple(v.shape) for v in vals}
        if len(shapes) > 1:
            hint = " (give the dataset size=(H, W) and target_size=(h, w) to batch different matrices)"
            raise ShapeError(f"collate_samples: {field} shapes differ: {sorted(shapes)} in {names()}{hint}")
        return torch.stack(vals)

    kspace = stack("kspace")
    assert kspace is not None
    metas: list[SampleMeta] = []
    for s in samples:
        metas.extend(s.meta if isinstance(s.meta, list) else [s.meta])
    return KSpaceSample(kspace=kspace, mask=stack("mask"), maps=stack("maps"), target=stack("target"), meta=metas)

"""Load any supported raw input as :class:`KSpaceSample` slices: fastMRI ``.h5``, ISMRMRD ``.h5``/``.mrd``, BART ``.cfl``.

:func:`load_input` is what ``mrirecon recon`` and ``mrirecon info`` use: it detects the format, returns
one sample per slice (with the sampling mask found in the data), the calibration k-space where the file
has separate calibration lines, the recon size to crop to, and a description of the acquisition.
:func:`describe_sampling` classifies a mask (fully sampled, 1D lines, 2D) and measures its acceleration
and calibration region.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mrirecon.data.sample import KSpaceSample, SampleMeta
from mrirecon.errors import ConfigError, DataError, ShapeError

PathLike = str | os.PathLike[str]

FORMATS = ("fastmri", "ismrmrd", "cfl")


def detect_format(path: PathLike) -> str:
    """``"fastmri"``, ``"ismrmrd"`` or ``"cfl"`` from the file's content (and extension for cfl/streams).

    Raises:
        DataError: missing file or an unrecognised format (the message lists what is supported).
    """
    from mrirecon.io.fastmri import is_fastmri
    from mrirecon.io.ismrmrd import looks_like_ismrmrd

    p = Path(path)
    if p.suffix in (".cfl", ".hdr") or (p.with_suffix(".cfl").exists() and p.with_suffix(".hdr").exists()
                                        and p.suffix == ""):
        return "cfl"
    if not p.exists():
        raise DataError(f"{p}: file not found")
    if p.is_dir():
        raise DataError(f"{p}: is a folder, expected a raw data file")
    if is_fastmri(p):
        return "fastmri"
    if looks_like_ismrmrd(p):
        return "ismrmrd"
    from mrirecon.io.h5util import open_h5

    with open_h5(p, "HDF5 file") as f:  # raises a DataError for non-HDF5 / damaged files
        keys = sorted(f.keys())
    raise DataError(f"{p}: not a fastMRI file (no 'kspace') nor an ISMRMRD file (no '/dataset/data'); "
                    f"it holds {keys}")


@dataclass
class SamplingInfo:
    """A sampling pattern: ``kind`` is ``"fully sampled"``, ``"1D lines"`` or ``"2D"``.

    Attributes:
        acceleration: sampled fraction⁻¹ within the acquired region (columns within the encoding limits).
        calib: ``(ch, cw)`` fully sampled centred box (``ch = H`` for line masks).
        pattern: for 1D: ``"equispaced"`` (constant spacing outside the centre) or ``"random"``.
    """

    kind: str
    acceleration: float
    calib: tuple[int, int]
    pattern: str = ""

    def __str__(self) -> str:
        if self.kind == "fully sampled":
            return "fully sampled"
        pat = f" {self.pattern}" if self.pattern else ""
        return (f"{self.kind}{pat}, acceleration {self.acceleration:.2f}, "
                f"calibration {self.calib[0]}x{self.calib[1]}")


def describe_sampling(mask: np.ndarray | torch.Tensor, region: tuple[int, int] | None = None) -> SamplingInfo:
    """Classify a mask broadcastable to ``[H, W]`` (``[W]``, ``[1, 1, W]``, ``[H, W]`` or ``[1, H, W]``).

    Args:
        mask: the sampling mask (non-zero = sampled).
        region: ``(left, right)`` columns that the encoding can reach (fastMRI padding); default all.
    """
    m = torch.as_tensor(np.asarray(mask) if not isinstance(mask, torch.Tensor) else mask) != 0
    while m.ndim > 2:
        m = m[0]
    if m.ndim == 1:
        m = m[None, :]
    h, w = m.shape
    left, right = region if region is not None else (0, w)
    sub = m[:, left:right]
    is_1d = bool((sub == sub[:1]).all())
    frac = float(sub.float().mean())
    accel = float("inf") if frac == 0 else 1.0 / frac
    if frac >= 1.0:
        return SamplingInfo("fully sampled", 1.0, (h, w))
    from mrirecon.operators.coils import acs_size

    full = torch.zeros(h, w, dtype=torch.bool)
    full[:, left:right] = sub
    full[:, :left] = True   # outside the encodable region counts as "not missing" for the calibration box
    full[:, right:] = True
    ch, cw = acs_size(full.float(), (h, w))
    if is_1d:
        row = full[0]
        c0 = c1 = w // 2                      # the contiguous run of sampled columns around DC
        if bool(row[c0]):
            while c0 > 0 and bool(row[c0 - 1]) and c0 - 1 >= left:
                c0 -= 1
            while c1 < w and bool(row[c1]) and c1 < right:
                c1 += 1
        cols = torch.nonzero(sub[0]).flatten() + left
        outer = cols[(cols < c0) | (cols >= c1)]
        gaps = torch.cat([torch.diff(outer[outer < c0]), torch.diff(outer[outer >= c1])])
        # equispaced (fastMRI rounds a fractional spacing: gaps differ by at most one column)
        pattern = "equispaced" if len(gaps) > 2 and int(gaps.max() - gaps.min()) <= 1 else "random"
        return SamplingInfo("1D lines", accel, (h, c1 - c0), pattern)
    return SamplingInfo("2D", accel, (ch, cw))


@dataclass
class LoadedInput:
    """A raw input as slices.

    Attributes:
        path, format: the file and its format.
        samples: one :class:`KSpaceSample` per slice (``kspace [C, H, W]``, ``mask`` as found in the data).
        calib: per slice, k-space holding the calibration lines (ISMRMRD parallel-calibration scans merged with
            the imaging data) for map estimation, or ``None`` (use the samples' k-space).
        recon_size: ``(h, w)`` to crop reconstructions to, or ``None``.
        sampling: the sampling of the first slice.
        description: format-specific facts for ``mrirecon info``.
        voxel_mm: ``(dH, dW, slice)`` in mm when known (for NIfTI output).
    """

    path: str
    format: str
    samples: list[KSpaceSample]
    calib: list[torch.Tensor | None]
    recon_size: tuple[int, int] | None
    sampling: SamplingInfo
    description: dict[str, Any] = field(default_factory=dict)
    voxel_mm: tuple[float, float, float] | None = None

    @property
    def fully_sampled(self) -> bool:
        return self.sampling.kind == "fully sampled"


def _mask_from_kspace(k: np.ndarray) -> np.ndarray:
    """The sampling mask ``[H, W]`` of zero-filled k-space ``[..., C, H, W]`` (non-zero in any coil)."""
    return (np.abs(k).reshape(-1, *k.shape[-2:]).max(axis=0) > 0).astype(np.float32)


def _as_line_or_2d(mask2d: np.ndarray) -> torch.Tensor:
    """``[1, 1, W]`` when every row is the same (line mask), else ``[1, H, W]``."""
    m = torch.from_numpy(mask2d.astype(np.float32))
    if bool((m == m[:1]).all()):
        return m[:1].reshape(1, 1, -1).clone()
    return m.unsqueeze(0)


def _load_fastmri(p: Path) -> LoadedInput:
    from mrirecon.io.fastmri import inspect_file, read_kspace, read_target
    from mrirecon.io.h5util import open_h5, read_dataset

    with open_h5(p, "HDF5 file (fastMRI)") as f:
        info = inspect_file(f, str(p))
        k = read_kspace(f, slice(None), str(p))
        key = info.target_key()
        target = read_target(f, key, slice(None), str(p)) if key else None
        fmask = np.asarray(read_dataset(f, "mask", (), str(p)), np.float32) if info.mask is not None else None
    if info.challenge == "singlecoil":
        k = k[:, None]
    samples = []
    left, right = info.encoding.padding
    for s in range(k.shape[0]):
        if fmask is not None:
            m2 = np.broadcast_to(fmask[None, :], k.shape[-2:])
        else:
            m2 = _mask_from_kspace(k[s])
            m2[:, :left] = 0
            m2[:, right:] = 0
            if m2[:, left:right].mean() > 0.999:   # fully sampled within the encoding limits
                m2 = np.zeros_like(m2)
                m2[:, left:right] = 1
        mask = _as_line_or_2d(np.ascontiguousarray(m2))
        samples.append(KSpaceSample(
            kspace=torch.from_numpy(k[s]), mask=mask, target=None if target is None else torch.from_numpy(target[s]),
            meta=SampleMeta(file=p.name, slice=s, max_value=info.attrs.get("max"), recon_size=info.recon_size,
                            extra={"challenge": info.challenge, "padding": (left, right)})))
    fov = info.encoding.recon_fov_mm
    voxel = None
    if fov and info.recon_size[0] and info.recon_size[1]:
        voxel = (fov[0] / info.recon_size[0], fov[1] / info.recon_size[1], fov[2])
    sampling = describe_sampling(samples[0].mask.expand(1, *k.shape[-2:]), (left, right))
    desc = {"challenge": info.challenge, "slices": info.num_slices, "coils": info.coils, "matrix": info.matrix,
            "encoded size": info.encoding.encoded_size, "recon size": info.recon_size,
            "encoding limits (ky min, max, center)": info.encoding.ky_limits, "padding": (left, right),
            "targets": list(info.targets) or "none", "attributes": info.attrs,
            "datasets": list(info.datasets)}
    return LoadedInput(str(p), "fastmri", samples, [None] * len(samples), info.recon_size, sampling, desc, voxel)


def _load_ismrmrd(p: Path, prewhiten: bool, combine_averages: bool) -> LoadedInput:
    from mrirecon.io.ismrmrd import read_ismrmrd

    raw = read_ismrmrd(p, prewhiten=prewhiten, combine_averages=combine_averages)
    samples, calib = [], []
    for i, idx in enumerate(raw.index):
        k = torch.from_numpy(raw.kspace[i])
        mask = torch.from_numpy(raw.mask[i]).reshape(1, 1, -1)
        samples.append(KSpaceSample(kspace=k * mask + 0.0, mask=mask, meta=SampleMeta(
            file=p.name, slice=i, recon_size=raw.recon_size,
            extra={"index": idx.__dict__, "label": idx.label(), "prewhitened": raw.prewhitened})))
        if raw.calib is not None and raw.calib_mask[i].any():
            cm = torch.from_numpy(raw.calib_mask[i]).reshape(1, 1, -1)
            calib.append(k * mask + torch.from_numpy(raw.calib[i]) * cm * (1 - mask))
        else:
            calib.append(None)
    h, w = raw.kspace.shape[-2:]
    sampling = describe_sampling(raw.mask[0][None, :].repeat(h, 0))
    voxel = None
    if raw.fov_mm:
        voxel = (raw.fov_mm[0] / h, raw.fov_mm[1] / w, 1.0)
    desc = {"entries": len(raw.index), "coils": int(raw.kspace.shape[1]), "matrix": (h, w),
            "encoded size": raw.encoded_size, "recon size": raw.recon_size,
            "acquisitions": raw.counts, "noise scans": raw.counts.get("noise", 0),
            "prewhitened": raw.prewhitened, "partial Fourier (readout, phase)": raw.partial_fourier,
            "calibration lines": "separate" if raw.calib is not None else "none or in the imaging data",
            "index": [r.label() for r in raw.index]}
    return LoadedInput(str(p), "ismrmrd", samples, calib, raw.recon_size, sampling, desc, voxel)


def _load_cfl(p: Path) -> LoadedInput:
    """BART k-space ``[X, Y, Z, C, ...]``: 2D when one of X/Y/Z is 1, else 3D split along X (inverse FFT)."""
    from mrirecon.io.cfl import read_cfl

    k = read_cfl(p)
    dims = list(k.shape) + [1] * max(0, 4 - k.ndim)
    k = k.reshape(dims)
    if any(d != 1 for d in dims[4:]):
        raise ShapeError(f"{p}: BART dimensions {dims}: only [X, Y, Z, coils] k-space is supported (dimensions "
                         f"beyond the coil dimension must be 1)")
    k = k.reshape(dims[:4])
    if not np.isfinite(k).all():
        from mrirecon.io.fastmri import check_finite

        check_finite(k, str(p), "k-space")
    spatial = [i for i in range(3) if dims[i] > 1]
    if len(spatial) > 2:
        # 3D: the readout (X) is fully sampled; transform it and reconstruct each X position as a ky-kz slice
        img = np.fft.fftshift(np.fft.ifft(np.fft.ifftshift(k, axes=0), axis=0, norm="ortho"), axes=0)
        slices = [np.ascontiguousarray(img[x].transpose(2, 0, 1)) for x in range(dims[0])]   # [C, Y, Z]
        layout = "3D [X, Y, Z, C]: inverse FFT along X, one ky-kz slice per X position"
    else:
        plane = [i for i in range(3) if dims[i] > 1] or [0, 1]
        while len(plane) < 2:
            plane.append(next(i for i in range(3) if i not in plane))
        plane = sorted(plane)
        squeezed = np.moveaxis(k, plane + [3], [0, 1, 2]).reshape(dims[plane[0]], dims[plane[1]], dims[3])
        slices = [np.ascontiguousarray(squeezed.transpose(2, 0, 1))]
        layout = f"2D: BART dims {plane} as (H, W), coils in dim 3"
    samples = []
    for s, ks in enumerate(slices):
        ks = ks.astype(np.complex64)
        mask = _as_line_or_2d(_mask_from_kspace(ks))
        samples.append(KSpaceSample(kspace=torch.from_numpy(ks), mask=mask,
                                    meta=SampleMeta(file=p.name, slice=s, extra={"layout": layout})))
    h, w = samples[0].kspace.shape[-2:]
    sampling = describe_sampling(samples[0].mask.expand(1, h, w))
    desc = {"BART dims": dims, "layout": layout, "slices": len(samples), "coils": dims[3], "matrix": (h, w)}
    return LoadedInput(str(p), "cfl", samples, [None] * len(samples), None, sampling, desc, None)


def load_input(path: PathLike, *, prewhiten: bool = True, combine_averages: bool = False) -> LoadedInput:
    """Load a fastMRI, ISMRMRD or BART cfl file as slices (see :class:`LoadedInput`).

    Args:
        path: the file (``.h5``, ``.mrd``, ``.cfl``/``.hdr`` or the cfl base name).
        prewhiten, combine_averages: ISMRMRD options (see :func:`mrirecon.io.ismrmrd.read_ismrmrd`).

    Raises:
        DataError, ShapeError, DTypeError, NonFiniteError: unreadable or invalid input (named).
    """
    p = Path(path)
    fmt = detect_format(p)
    if fmt == "fastmri":
        return _load_fastmri(p)
    if fmt == "ismrmrd":
        return _load_ismrmrd(p, prewhiten, combine_averages)
    return _load_cfl(p)


def undersample(sample: KSpaceSample, spec: Any, seed: int | tuple[int, ...],
                region: tuple[int, int] | None = None) -> KSpaceSample:
    """Retrospectively undersample a fully sampled slice with a :class:`~mrirecon.operators.masks.MaskSpec`.

    Columns outside ``region`` (fastMRI padding) stay unsampled. Raises :class:`ConfigError` if the slice is
    not fully sampled (undersampling undersampled data would silently compound masks).
    """
    h, w = sample.kspace.shape[-2:]
    info = describe_sampling(sample.mask.expand(1, h, w), region)
    if info.kind != "fully sampled":
        raise ConfigError(f"{sample.meta.file}: retrospective undersampling needs fully sampled data, but slice "
                          f"{sample.meta.slice} is already undersampled ({info}); drop --accel/--mask")
    m = spec.make((h, w), seed).to(torch.float32)
    m = m.reshape(1, 1, w) if m.ndim == 1 else m.reshape(1, h, w)
    if region is not None and region != (0, w):
        m = m.clone()
        m[..., :region[0]] = 0
        m[..., region[1]:] = 0
    meta = sample.meta
    if isinstance(meta, SampleMeta):
        import dataclasses

        meta = dataclasses.replace(meta, acceleration=float(spec.acceleration),
                                   center_fraction=getattr(spec, "center_fraction", None))
    return sample.replace(kspace=sample.kspace * m + 0.0, mask=m, meta=meta)


def mask_from_file(path: PathLike, shape: tuple[int, int]) -> torch.Tensor:
    """A mask stored in ``.npy`` or BART ``.cfl``, broadcast to a k-space ``(H, W)``, as ``[1, 1, W]``/``[1, H, W]``.

    Raises:
        ShapeError: the mask does not fit ``(H, W)``.
    """
    p = Path(path)
    if p.suffix == ".npy":
        m = np.load(p)
    else:
        from mrirecon.io.cfl import read_cfl

        m = np.abs(read_cfl(p))
    m = np.squeeze(np.asarray(m).real).astype(np.float32)
    h, w = shape
    if m.ndim == 1 and m.shape[0] == w:
        return torch.from_numpy(m).reshape(1, 1, w)
    if m.shape == (h, w):
        return _as_line_or_2d(m)
    raise ShapeError(f"{p}: mask of shape {list(m.shape)} does not fit k-space [{h}, {w}] (expected [{w}] or "
                     f"[{h}, {w}])")

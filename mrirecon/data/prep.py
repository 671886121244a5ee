"""Data preparation: ISMRMRD raw → fastMRI-style files, and precomputed coil-map sidecars for a fastMRI folder.

Both write every file atomically (temporary file, then rename): an interrupted run leaves no
half-written output, and :func:`precompute_maps` is resumable (files whose sidecar already exists and
matches are skipped).
"""
from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mrirecon.errors import ConfigError, DataError, MriReconError

PathLike = str | os.PathLike[str]


# ---------------------------------------------------------------------------------------------
# ISMRMRD -> fastMRI
# ---------------------------------------------------------------------------------------------
def convert_ismrmrd(src: PathLike, dst: PathLike, *, prewhiten: bool = True, combine_averages: bool = False
                    ) -> list[Path]:
    """Convert an ISMRMRD raw file into fastMRI-style multicoil files that ``fastmri.data.SliceDataset`` loads.

    One file per combination of contrast, repetition, phase, set (and average, unless combined) holding all
    slices (named ``<stem>_<counter><value>...`` after the counters that vary) (3D partitions become slices): ``kspace`` complex64 ``[S, C, H, W]`` (prewhitened, readout
    oversampling removed), ``ismrmrd_header`` (encoded matrix rewritten to the stored k-space), and either
    ``reconstruction_rss`` (fully sampled data: RSS at the recon size, computed as fastMRI does) or ``mask``
    ``[W]`` (undersampled data; separate calibration lines are merged into the k-space and the mask).

    Args:
        src: the ISMRMRD file.  dst: the output ``.h5``; with several groups, ``<stem>_<group>.h5`` next to it.

    Returns:
        The written files.

    Raises:
        DataError (and the reader's errors): unreadable input, or slices of one group sampled differently.
    """
    from mrirecon.data.transforms import center_crop_or_pad
    from mrirecon.io.fastmri import write_fastmri
    from mrirecon.io.ismrmrd import header_for_kspace, read_ismrmrd
    from mrirecon.operators.fft import ifft2c

    raw = read_ismrmrd(src, prewhiten=prewhiten, combine_averages=combine_averages)
    dst = Path(dst)
    groups: dict[tuple[int, ...], list[int]] = {}
    for i, r in enumerate(raw.index):
        groups.setdefault((r.contrast, r.repetition, r.phase, r.set, r.average), []).append(i)
    header = header_for_kspace(raw)
    import ismrmrd.xsd

    hdr = ismrmrd.xsd.CreateFromDocument(raw.header_xml)
    protocol = getattr(getattr(hdr, "measurementInformation", None), "protocolName", None) or "ISMRMRD"
    patient = getattr(getattr(hdr, "subjectInformation", None), "patientID", None) or ""
    written = []
    for gkey, idx in sorted(groups.items()):
        idx = sorted(idx, key=lambda i: (raw.index[i].slice, raw.index[i].partition))
        k = raw.kspace[idx].copy()
        mask = raw.mask[idx].copy()
        if raw.calib is not None:
            cm = raw.calib_mask[idx]
            k = k + raw.calib[idx] * (cm * (1 - mask))[:, None, None, :]
            mask = np.maximum(mask, cm)
        if not (mask == mask[:1]).all():
            raise DataError(f"{src}: the slices of group {gkey} are sampled differently; the fastMRI format holds "
                            f"one mask per file")
        # fully sampled: every line the encoding limits allow was acquired (partial Fourier stays zero-filled)
        full = float(mask[0].sum()) >= round(raw.partial_fourier[1] * mask.shape[-1])
        label = raw.index[idx[0]]
        attrs: dict[str, Any] = {"acquisition": protocol, "patient_id": patient, "source": Path(src).name,
                                 "prewhitened": raw.prewhitened, "contrast": label.contrast,
                                 "repetition": label.repetition}
        rss = None
        if full:
            img = ifft2c(torch.from_numpy(k)).abs().pow(2).sum(dim=1).sqrt()
            rss = center_crop_or_pad(img, raw.recon_size).numpy().astype(np.float32)
            attrs.update(max=float(rss.max()), norm=float(np.linalg.norm(rss)))
        names = ("contrast", "repetition", "phase", "set", "average")
        parts = [f"{n}{v}" for j, (n, v) in enumerate(zip(names, gkey)) if len({g[j] for g in groups}) > 1]
        out = dst if len(groups) == 1 else dst.with_name(f"{dst.stem}_{'_'.join(parts)}{dst.suffix}")
        write_fastmri(out, k, header, reconstruction_rss=rss, mask=None if full else mask[0], attrs=attrs)
        written.append(out)
    return written


# ---------------------------------------------------------------------------------------------
# coil-map sidecars
# ---------------------------------------------------------------------------------------------
@dataclass
class MapsReport:
    """What :func:`precompute_maps` did."""

    done: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    seconds: float = 0.0


@contextlib.contextmanager
def _folder_lock(folder: Path) -> Iterator[None]:
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows
        yield
        return
    with open(folder / ".mrirecon-maps.lock", "a+") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise ConfigError(f"{folder}: another `mrirecon prep espirit` is writing into this folder") from None
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def maps_for_volume(kspace: torch.Tensor, method: str = "espirit", **kwargs: Any) -> torch.Tensor:
    """Coil maps for every slice of ``kspace`` ``[S, C, H, W]`` (ESPIRiT or low-resolution ratio maps)."""
    if method == "espirit":
        from mrirecon.operators.espirit import espirit_maps

        return torch.stack([espirit_maps(kspace[s], **kwargs) for s in range(kspace.shape[0])])
    if method == "rss":
        from mrirecon.operators.coils import acs_size, lowres_maps

        out = []
        for s in range(kspace.shape[0]):
            m = (kspace[s].abs().sum(0) > 0).float()
            out.append(lowres_maps(kspace[s], kwargs.get("calib") or acs_size(m, tuple(m.shape))))
        return torch.stack(out)
    raise ConfigError(f"unknown maps method {method!r}; expected 'espirit' or 'rss'")


def precompute_maps(root: PathLike, out_dir: PathLike, *, method: str = "espirit", overwrite: bool = False,
                    progress: bool = True, on_file: Callable[[str, str], None] | None = None,
                    **kwargs: Any) -> MapsReport:
    """Write a maps sidecar (dataset ``maps`` complex64 ``[S, (M,) C, H, W]``) for every file of a fastMRI folder.

    Resumable: a file whose sidecar exists and matches its k-space shape is skipped; each sidecar is
    written to a temporary file and renamed, and stale temporary files of a killed run are removed. A file
    that fails (e.g. no calibration region) is reported and the others are still processed.

    Args:
        root: folder of fastMRI ``.h5`` files.  out_dir: sidecar folder (same file names; not inside ``root``,
            whose every file fastMRI's loader would try to read).
        method: ``"espirit"`` or ``"rss"``.  overwrite: recompute existing sidecars.
        kwargs: passed to the map estimator (ESPIRiT: ``calib``, ``kernel``, ``thresh``, ``crop``, ``sets``).
    """
    from tqdm import tqdm

    from mrirecon.io.fastmri import check_maps_sidecar, inspect_file, read_kspace, write_maps_sidecar
    from mrirecon.io.h5util import open_h5

    root, out_dir = Path(root), Path(out_dir)
    if not root.is_dir():
        raise DataError(f"{root}: folder not found")
    if out_dir.resolve() == root.resolve():
        raise ConfigError(f"{out_dir}: the maps folder must differ from the data folder (fastMRI's SliceDataset "
                          f"reads every file of the data folder)")
    files = sorted(p for p in root.iterdir() if p.suffix == ".h5" and not p.name.startswith("."))
    if not files:
        raise DataError(f"{root}: no .h5 files")
    out_dir.mkdir(parents=True, exist_ok=True)
    report = MapsReport()
    t0 = time.perf_counter()
    with _folder_lock(out_dir):
        for stale in out_dir.glob(".*.tmp"):
            stale.unlink(missing_ok=True)
        bar = tqdm(files, desc=f"{method} maps", unit="file", disable=not progress)
        for f in bar:
            target = out_dir / f.name
            try:
                with open_h5(f, "HDF5 file (fastMRI)") as h:
                    info = inspect_file(h, str(f))
                    if info.challenge != "multicoil":
                        raise DataError(f"{f}: singlecoil data need no coil maps")
                    shape = (info.num_slices, info.coils, *info.matrix)
                    if target.exists() and not overwrite:
                        try:
                            with open_h5(target) as g:
                                check_maps_sidecar(g, shape, str(target))
                            report.skipped.append(f.name)
                            if on_file:
                                on_file(f.name, "skipped")
                            continue
                        except MriReconError:
                            pass  # a stale or damaged sidecar is recomputed
                    k = torch.from_numpy(read_kspace(h, slice(None), str(f)))
                bar.set_postfix_str(f"{f.name} ({shape[0]} slices)")
                maps = maps_for_volume(k, method, **kwargs)
                write_maps_sidecar(target, maps.numpy(), shape,
                                   {"method": method, "source": f.name,
                                    **{k_: v for k_, v in kwargs.items() if isinstance(v, (int, float, str))}})
                report.done.append(f.name)
                if on_file:
                    on_file(f.name, "done")
            except MriReconError as exc:
                report.failed[f.name] = str(exc)
                if on_file:
                    on_file(f.name, f"failed: {exc}")
    report.seconds = time.perf_counter() - t0
    return report

"""Evaluation and prediction over folders of fastMRI files, in the fastMRI leaderboard convention.

* Inputs: fully sampled files (validation sets; undersampled here with one fixed mask per volume, seeded by
  the file name exactly as fastMRI's validation masks, ``tuple(map(ord, name))``) or undersampled files that
  carry their own ``mask`` (test/challenge sets).
* Reconstructions are centre-cropped to the header's recon size (fastMRI: 320×320 for knee and brain) and
  written in the submission format: one ``.h5`` per volume, dataset ``reconstruction`` float32 ``[S, h, w]``
  (:func:`mrirecon.io.fastmri.write_submission`).
* Metrics per volume, as ``fastmri.evaluate``: the target (``reconstruction_rss``) and the reconstruction are
  centre-cropped to the target's width squared (``crop="square"``; ``"recon"`` keeps the recon size), then
  NMSE over the volume, PSNR and SSIM with the volume maximum as data range (:mod:`mrirecon.metrics`), and
  the aggregate is the mean (± standard deviation) over volumes.

A reconstructor is a network (``--checkpoint``: shipped name, weights file or checkpoint), a registered
method (``--method``, with ESPIRiT maps for the methods that need them) or a folder of reconstructions
(``--predictions``), so learned and classical methods are scored by the same code.
"""
from __future__ import annotations

import csv
import io
import json
import math
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import torch

from mrirecon.atomic import atomic_write_text
from mrirecon.data.fastmri import FastMRISliceDataset, _list_files
from mrirecon.data.sample import KSpaceSample
from mrirecon.data.transforms import center_crop_or_pad, collate_samples
from mrirecon.denoisers.base import parameter_count
from mrirecon.errors import ConfigError, DataError, ShapeError
from mrirecon.operators.masks import MaskSpec

Reconstructor = Callable[[KSpaceSample], torch.Tensor]
"""Batched sample ``[B, C, H, W]`` -> magnitude images ``[B, H, W]`` (float)."""


def default_center_fraction(acceleration: float) -> float:
    """fastMRI's pairing: 0.08 up to 4×, 0.04 above."""
    return 0.08 if acceleration <= 4 else 0.04


def mask_spec(kind: str, acceleration: float, center_fraction: float | None = None) -> MaskSpec:
    """The evaluation mask (``center_fraction`` defaults to fastMRI's pairing with the acceleration)."""
    cf = default_center_fraction(acceleration) if center_fraction is None else center_fraction
    return MaskSpec(kind, float(acceleration), center_fraction=cf)


# ----------------------------------------------------------------------------------------------
# reconstructors
# ----------------------------------------------------------------------------------------------
def network_reconstructor(name_or_path: str | Path, device: str = "auto") -> tuple[Reconstructor, str]:
    """A reconstructor from a shipped network name, weights file or training checkpoint, and its description."""
    from mrirecon.models.base import load_recon_model  # noqa: PLC0415

    dev = ("cuda" if torch.cuda.is_available() else "cpu") if device == "auto" else device
    model = load_recon_model(name_or_path, device=dev)

    def run(batch: KSpaceSample) -> torch.Tensor:
        if getattr(model, "uses_maps", False) and batch.maps is None:
            from mrirecon.operators.espirit import espirit_maps  # noqa: PLC0415

            batch = batch.replace(maps=espirit_maps(batch.kspace, kernel="auto"))
        with torch.no_grad():
            return model(batch.to(dev)).abs().float().cpu()

    return run, f"network {name_or_path} ({type(model).__name__}, {parameter_count(model)} " \
                f"parameters, {dev})"


def method_reconstructor(name: str, maps: str = "espirit", **options: Any) -> tuple[Reconstructor, str]:
    """A reconstructor from a registered method (maps per slice: ``espirit`` — ESPIRiT with ``kernel="auto"``,
    BART's 6×6 kernel shrunk for calibration regions narrower than 10 lines — or ``rss`` low-resolution maps, which
    ``espirit`` also falls back to where the fully sampled centre is a single line)."""
    from mrirecon.methods import get_method, reconstruct  # noqa: PLC0415

    spec = get_method(name)

    def slice_maps(k: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
        from mrirecon.operators.coils import acs_size, lowres_maps  # noqa: PLC0415
        from mrirecon.operators.espirit import (  # noqa: PLC0415
            MIN_KERNEL,
            calib_region,
            espirit_maps,
            sampling_pattern,
        )

        # A centre narrower than the smallest kernel (one line) cannot calibrate ESPIRiT: ACS-ratio maps then.
        if maps == "rss" or min(calib_region(sampling_pattern(k))) < MIN_KERNEL:
            return lowres_maps(k, acs_size(m, k.shape[-2:]))
        return espirit_maps(k, kernel="auto")

    def run(batch: KSpaceSample) -> torch.Tensor:
        out = []
        for b in range(batch.kspace.shape[0]):
            s = KSpaceSample(kspace=batch.kspace[b], mask=batch.mask[b],
                             maps=None if batch.maps is None else batch.maps[b], meta=batch.meta[b])
            if spec.needs_maps and s.maps is None:
                s = s.replace(maps=slice_maps(s.kspace, s.mask))
            res = reconstruct(s, name, **options)
            out.append(res.magnitude(multi_set=s.multi_set).float())
        return torch.stack(out)

    return run, f"method {name}" + (f" ({maps} maps)" if spec.needs_maps else "") + \
        (f" {options}" if options else "")


# ----------------------------------------------------------------------------------------------
# iteration over volumes
# ----------------------------------------------------------------------------------------------
@dataclass
class Volume:
    """One reconstructed volume: file name, reconstruction and target at the recon size, facts."""

    file: str
    recon: np.ndarray
    target: np.ndarray | None
    acquisition: str
    max_value: float | None
    seconds: float
    mask: str


def _files_have_masks(files: list[Path]) -> bool:
    flags = []
    for p in files:
        with h5py.File(p, "r") as f:
            flags.append("mask" in f)
    if any(flags) and not all(flags):
        raise DataError(f"{files[0].parent}: some files carry a 'mask' (already undersampled) and some do not; "
                        f"evaluate them separately")
    return bool(flags) and all(flags)


def reconstruct_volumes(recon: Reconstructor, data: str | Path, spec: MaskSpec | None, batch_size: int = 4,
                        limit: int = 0, target_key: str | None = None, maps_dir: str | Path | None = None,
                        progress: bool = True) -> Iterator[Volume]:
    """Reconstruct every volume of a folder (or file), slice batches at a time.

    Args:
        recon: the reconstructor.
        data: folder of fastMRI files or one file.
        spec: the retrospective mask (one per volume, seeded by the file name) for fully sampled files;
            ignored (the file's own mask is used) for files that carry a ``mask``.
        batch_size: slices per call of ``recon``.
        limit: only the first ``limit`` files (0: all).
        target_key: dataset of the target; ``None`` for ``reconstruction_rss``; ``"image"`` takes the magnitude
            of the demo dataset's noise-free complex image.
        maps_dir: map sidecars for methods/networks that use maps.

    Yields:
        :class:`Volume` per file (recon and target cropped to the recon size).

    Raises:
        DataError: missing/invalid files.  ConfigError: bad options.
    """
    from tqdm.auto import tqdm  # noqa: PLC0415

    files = _list_files(data)
    if limit > 0:
        files = files[:limit]
    own = _files_have_masks(files)
    use_spec = None if own else spec
    if use_spec is None and not own:
        raise ConfigError(f"{data}: the files are fully sampled; give an acceleration (--accel) to undersample them")
    mask_desc = "file's own mask" if own else f"{use_spec.kind} {use_spec.acceleration:g}x, centre fraction " \
                                             f"{use_spec.center_fraction} (fixed per volume, seeded by the file name)"
    for path in files:
        ds = FastMRISliceDataset(path, challenge="multicoil", mask=use_spec, fixed_masks=True, mask_per_volume=True,
                                 maps_dir=maps_dir, cache=False, handle_cache=1)
        n = len(ds)
        t0 = time.perf_counter()
        outs, targets = [], []
        first = ds[0]
        for start in tqdm(range(0, n, batch_size), desc=path.name, disable=not progress, leave=False):
            batch = collate_samples([first if i == 0 else ds[i] for i in range(start, min(n, start + batch_size))])
            img = recon(batch)
            if img.ndim != 3 or tuple(img.shape[-2:]) != tuple(batch.kspace.shape[-2:]):
                raise ShapeError(f"{path.name}: the reconstructor returned {list(img.shape)}, expected "
                                 f"[{batch.kspace.shape[0]}, {batch.kspace.shape[-2]}, {batch.kspace.shape[-1]}]")
            recon_size = first.meta.recon_size or tuple(img.shape[-2:])
            outs.append(center_crop_or_pad(img, recon_size).numpy().astype(np.float32))
            if batch.target is not None:
                targets.append(batch.target.numpy())
        seconds = time.perf_counter() - t0
        rec = np.concatenate(outs)
        target = np.concatenate(targets) if targets else None
        if target_key not in (None, "reconstruction_rss"):
            target = read_target_key(path, str(target_key), rec.shape[-2:])
        ds.close()
        yield Volume(file=path.name, recon=rec, target=target, acquisition=str(first.meta.extra.get("acquisition", "")),
                     max_value=first.meta.max_value, seconds=seconds, mask=mask_desc)


def read_target_key(path: Path, key: str, size: tuple[int, int]) -> np.ndarray:
    """``|file[key]|`` centre-cropped to ``size`` (e.g. the demo dataset's noise-free ``image``).

    Raises:
        DataError: the dataset is missing.
    """
    with h5py.File(path, "r") as f:
        if key not in f:
            raise DataError(f"{path}: field {key!r} is missing (datasets: {sorted(f.keys())})")
        arr = np.abs(np.asarray(f[key][()])).astype(np.float32)
    return center_crop_or_pad(torch.from_numpy(arr), size).numpy()


def prediction_volumes(predictions: str | Path, data: str | Path, limit: int = 0, target_key: str | None = None
                       ) -> Iterator[Volume]:
    """Volumes from a folder of submission files (``reconstruction``) matched by name to the data folder's targets.

    Raises:
        DataError: a data file without a reconstruction, or without a target.
    """
    from mrirecon.io.fastmri import inspect_fastmri, read_submission  # noqa: PLC0415

    files = _list_files(data)
    if limit > 0:
        files = files[:limit]
    for path in files:
        pred = Path(predictions) / path.name
        if not pred.is_file():
            raise DataError(f"{pred}: no reconstruction for {path.name}")
        rec = read_submission(pred)
        info = inspect_fastmri(path)
        key = target_key or info.target_key()
        if key is None:
            raise DataError(f"{path}: no target (reconstruction_rss) to evaluate against")
        if key == "image":
            target = read_target_key(path, key, rec.shape[-2:])
        else:
            with h5py.File(path, "r") as f:
                target = np.asarray(f[key][()], dtype=np.float32)
        mx = info.attrs.get("max")
        yield Volume(file=path.name, recon=rec, target=target, acquisition=str(info.attrs.get("acquisition", "")),
                     max_value=None if mx is None else float(mx), seconds=0.0, mask="(predictions)")


# ----------------------------------------------------------------------------------------------
# metrics
# ----------------------------------------------------------------------------------------------
METRICS = ("nmse", "psnr", "ssim")


def leaderboard_crop(target: np.ndarray, recon: np.ndarray, crop: str) -> tuple[np.ndarray, np.ndarray]:
    """``crop="square"``: both centre-cropped to ``w × w`` with ``w`` the target's width (``fastmri.evaluate``;
    ``min(h, w)`` for wide targets); ``"recon"``: unchanged (the recon size).

    Raises:
        ShapeError: reconstruction and target of different sizes.  ConfigError: unknown crop.
    """
    if crop not in ("square", "recon"):
        raise ConfigError(f"crop must be 'square' or 'recon', got {crop!r}")
    if target.shape != recon.shape:
        raise ShapeError(f"reconstruction {list(recon.shape)} and target {list(target.shape)} differ in shape")
    if crop == "recon":
        return target, recon
    s = min(target.shape[-2], target.shape[-1])
    t = center_crop_or_pad(torch.from_numpy(np.ascontiguousarray(target)), (s, s)).numpy()
    r = center_crop_or_pad(torch.from_numpy(np.ascontiguousarray(recon)), (s, s)).numpy()
    return t, r


@dataclass
class VolumeMetrics:
    """Metrics of one volume."""

    file: str
    slices: int
    acquisition: str
    nmse: float
    psnr: float
    ssim: float
    seconds: float


@dataclass
class EvalReport:
    """Per-volume metrics, their aggregate and the settings that produced them."""

    volumes: list[VolumeMetrics] = field(default_factory=list)
    settings: dict[str, Any] = field(default_factory=dict)

    def aggregate(self) -> dict[str, dict[str, float]]:
        """``{metric: {"mean", "std", "volumes"}}`` over volumes (std with ``n − 1``, as fastMRI's runstats)."""
        out = {}
        for m in METRICS:
            v = np.array([getattr(x, m) for x in self.volumes], dtype=np.float64)
            std = float(v.std(ddof=1)) if len(v) > 1 else 0.0
            out[m] = {"mean": float(v.mean()) if len(v) else math.nan, "std": std, "volumes": len(v)}
        return out

    def to_dict(self) -> dict[str, Any]:
        return {"settings": self.settings, "aggregate": self.aggregate(), "volumes": [asdict(v) for v in self.volumes]}

    def table(self) -> str:
        """A Markdown table: one row per volume and the mean ± std."""
        lines = ["| volume | slices | NMSE | PSNR (dB) | SSIM |", "|---|---|---|---|---|"]
        for v in self.volumes:
            lines.append(f"| {v.file} | {v.slices} | {v.nmse:.4f} | {v.psnr:.2f} | {v.ssim:.4f} |")
        a = self.aggregate()
        lines.append(f"| **mean ± std ({len(self.volumes)} volumes)** | {sum(v.slices for v in self.volumes)} | "
                     f"{a['nmse']['mean']:.4f} ± {a['nmse']['std']:.4f} | {a['psnr']['mean']:.2f} ± "
                     f"{a['psnr']['std']:.2f} | {a['ssim']['mean']:.4f} ± {a['ssim']['std']:.4f} |")
        return "\n".join(lines)

    def csv_text(self) -> str:
        buf = io.StringIO()
        w = csv.writer(buf)
        w.writerow(["file", "slices", "acquisition", "nmse", "psnr", "ssim", "seconds"])
        for v in self.volumes:
            w.writerow([v.file, v.slices, v.acquisition, f"{v.nmse:.8g}", f"{v.psnr:.8g}", f"{v.ssim:.8g}",
                        f"{v.seconds:.3f}"])
        return buf.getvalue()


def volume_metrics(vol: Volume, crop: str = "square") -> VolumeMetrics:
    """fastMRI's metrics of one volume (see the module docstring).

    Raises:
        DataError: no target.  ShapeError: sizes differ.
    """
    from mrirecon.metrics import nmse, psnr, ssim  # noqa: PLC0415

    if vol.target is None:
        raise DataError(f"{vol.file}: no target (reconstruction_rss) to evaluate against; test/challenge files "
                        f"have none (use `mrirecon predict` for them)")
    gt, pred = leaderboard_crop(vol.target, vol.recon, crop)
    return VolumeMetrics(file=vol.file, slices=int(gt.shape[0]), acquisition=vol.acquisition, nmse=nmse(gt, pred),
                         psnr=psnr(gt, pred), ssim=ssim(gt, pred), seconds=vol.seconds)


def write_report(report: EvalReport, out: Path) -> tuple[Path, Path]:
    """``out/metrics.json`` (settings, aggregate, volumes) and ``out/metrics.csv`` (per volume)."""
    js, cs = out / "metrics.json", out / "metrics.csv"
    atomic_write_text(js, json.dumps(report.to_dict(), indent=2) + "\n")
    atomic_write_text(cs, report.csv_text())
    return js, cs

"""Shared plumbing of the result benchmarks: the demo split with fixed masks, atomic JSON and figure outputs."""
from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

from mrirecon.atomic import atomic_path, atomic_write_text


def load_split(split: str, accel: float, center_fraction: float, n_slices: int) -> tuple[Any, Any, list[int]]:
    """The demo ``split`` undersampled by fastMRI's equispaced masks (fixed per file and slice), the same slices
    fully sampled, and ``n_slices`` evenly spaced indices (0: all)."""
    from mrirecon.data.demo import demo_root
    from mrirecon.data.fastmri import FastMRISliceDataset
    from mrirecon.operators.masks import MaskSpec

    root = Path(demo_root()) / split
    ds = FastMRISliceDataset(root, mask=MaskSpec("equispaced", accel, center_fraction), fixed_masks=True)
    full = FastMRISliceDataset(root)
    idx = list(range(len(ds)))
    if n_slices and n_slices < len(ds):
        idx = sorted({int(round(v)) for v in np.linspace(0, len(ds) - 1, n_slices)})
    return ds, full, idx


def with_maps_and_truth(split: str, ds: Any, full: Any, idx: list[int]) -> list[tuple[Any, np.ndarray]]:
    """The slices ``idx`` of ``ds`` with ESPIRiT maps from the fully sampled 24×24 centre of ``full``'s slice (a
    separate calibration scan, one set of maps for all methods), each with its noise-free ``|image|``."""
    from mrirecon.data.demo import demo_root
    from mrirecon.operators.espirit import espirit_maps

    root = Path(demo_root()) / split
    out = []
    for i in idx:
        s = ds[i].replace(maps=espirit_maps(full[i].kspace))
        out.append((s, truth_image(root, s.meta)))
    return out


def truth_image(root: Path, meta: Any) -> np.ndarray:
    """``|image|`` (the demo files' noise-free object) of one slice, float32 ``[H, W]``."""
    import h5py

    with h5py.File(root / meta.file, "r") as f:
        return np.abs(f["image"][meta.slice]).astype(np.float32)


def center_crop(x: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """The centre ``shape[-2:]`` of the last two axes of ``x`` (fastMRI's crop of a reconstruction to its target)."""
    h, w = x.shape[-2:]
    th, tw = shape[-2:]
    t, l_ = (h - th) // 2, (w - tw) // 2
    return x[..., t:t + th, l_:l_ + tw]


class VolumeScores:
    """Slices collected per volume and scored in the fastMRI convention: PSNR/SSIM over each volume's stacked
    slices (data range: that volume's target maximum), then the mean over volumes.

    ``add(file, pred, target)`` files one slice (magnitudes); ``mean("psnr")`` / ``mean("ssim")`` score them.
    The prediction is cropped to the target's matrix when it is larger (the ``reconstruction_rss`` crop).
    """

    def __init__(self) -> None:
        self._vols: dict[str, dict[str, list[np.ndarray]]] = defaultdict(lambda: defaultdict(list))

    def add(self, file: str, pred: np.ndarray, target: np.ndarray) -> None:
        self._vols[file]["pred"].append(center_crop(pred, target.shape))
        self._vols[file]["target"].append(target)

    def __len__(self) -> int:
        return len(self._vols)

    def per_volume(self, metric: str) -> list[float]:
        from mrirecon.metrics import psnr, ssim

        fn = {"psnr": psnr, "ssim": ssim}[metric]
        return [float(fn(np.stack(v["target"]), np.stack(v["pred"]))) for v in self._vols.values()]

    def mean(self, metric: str) -> float:
        return float(np.mean(self.per_volume(metric)))


def write_json(path: Path, doc: Any) -> None:
    """``doc`` as indented JSON, written atomically."""
    atomic_write_text(path, json.dumps(doc, indent=1, default=str) + "\n")
    print(f"wrote {path}")


def save_figure(fig: Any, path: Path, dpi: int) -> None:
    """A matplotlib figure as PNG, written atomically."""
    with atomic_path(path, suffix=".tmp.png", fsync=False) as tmp:
        fig.savefig(tmp, dpi=dpi, format="png")

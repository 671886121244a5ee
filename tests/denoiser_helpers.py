"""Helpers for the denoiser and training tests: tiny fastMRI-format image files."""
from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np


def write_image_h5(path: Path, n: int = 3, shape: tuple[int, int] = (23, 19), seed: int = 0) -> Path:
    """A file with an ``image`` dataset (complex64 [n, H, W]): smooth blobs with a smooth phase."""
    rng = np.random.default_rng(seed)
    h, w = shape
    yy, xx = np.mgrid[:h, :w] / max(h, w)
    imgs = []
    for _ in range(n):
        c = rng.uniform(0.2, 0.8, size=(3, 2))
        mag = sum(np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / 0.02) for cy, cx in c)
        phase = rng.normal() + 2 * rng.normal() * xx
        imgs.append((mag * np.exp(1j * phase)).astype(np.complex64))
    path.parent.mkdir(parents=True, exist_ok=True)
    with h5py.File(path, "w") as f:
        f["image"] = np.stack(imgs)
        f["reconstruction_rss"] = np.abs(np.stack(imgs)).astype(np.float32)
    return path


def tiny_dataset(root: Path) -> tuple[Path, Path]:
    """``root/train`` (two files) and ``root/val`` (one file)."""
    write_image_h5(root / "train" / "a.h5", seed=1)
    write_image_h5(root / "train" / "b.h5", seed=2, shape=(21, 25))
    write_image_h5(root / "val" / "c.h5", seed=3)
    return root / "train", root / "val"

"""Image datasets for training and validating denoisers: slices of fastMRI-format HDF5 files.

Reads one image dataset of each file: ``image`` (complex ``[S, H, W]``, the demo dataset's noise-free
complex ground truth), ``reconstruction_rss`` / ``reconstruction_esc`` (real ``[S, H, W]``, fastMRI), or any
other ``[S, H, W]`` dataset. Each slice is scaled to magnitude maximum 1 (the convention of the
denoisers: noise levels are fractions of that range) and returned as complex64 (real images get a zero
imaginary part; random global phases in the augmentation make them complex).

Randomness is a pure function of ``(seed, index)``: item ``i`` of :class:`NoisyPatches` draws its slice,
crop, rotation/flip, global phase, noise level and noise from a generator seeded with ``(seed, i)``, so a
run is reproducible, resumable at any step and splittable across processes.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import h5py
import numpy as np
import torch
from torch.utils.data import Dataset

from mrirecon.errors import DataError, ShapeError


def list_h5_files(path: str | Path) -> list[Path]:
    """The ``.h5`` files of a folder (sorted) or the file itself.

    Raises:
        DataError: the path does not exist or the folder holds no ``.h5`` file.
    """
    p = Path(path).expanduser()
    if p.is_file():
        return [p]
    if not p.is_dir():
        raise DataError(f"image data: {p} does not exist (expected a folder of .h5 files or one .h5 file)")
    files = sorted(p.glob("*.h5"))
    if not files:
        raise DataError(f"image data: the folder {p} holds no .h5 file")
    return files


def _key_shape(f: h5py.File, path: Path, key: str) -> tuple[int, ...]:
    if key not in f:
        raise DataError(f"{path}: no dataset {key!r}; it has {sorted(f.keys())}")
    ds = f[key]
    if ds.ndim != 3:
        raise DataError(f"{path}: dataset {key!r} must be [slices, H, W], got shape {list(ds.shape)}")
    return tuple(ds.shape)


def _to_unit_complex(arr: np.ndarray, where: str) -> torch.Tensor:
    """A slice as complex64, scaled to magnitude maximum 1."""
    if not np.isfinite(arr).all():
        raise DataError(f"{where}: holds NaN or Inf")
    x = torch.from_numpy(np.ascontiguousarray(arr)).to(torch.complex64)
    m = float(x.abs().max())
    return x / m if m > 0 else x


class ImageSlices(Dataset):
    """Slices of the image dataset ``key`` of HDF5 files, each scaled to magnitude maximum 1.

    Args:
        path: a folder of ``.h5`` files or one file.
        key: the dataset to read (``image``, ``reconstruction_rss``, ...), shape ``[S, H, W]``.
        cache: read everything once into memory (small data such as the demo); otherwise read per item.
        max_slices: use at most this many slices (evenly spaced over the whole set; 0 for all).
        min_max: skip slices whose maximum magnitude is below ``min_max`` times the file's maximum (empty slices);
            0 keeps every slice without reading the data up front (large datasets).

    Items: complex64 ``[H, W]`` tensors.

    Raises:
        DataError: missing files/dataset, wrong rank, non-finite values, no usable slice.
    """

    def __init__(self, path: str | Path, key: str = "image", cache: bool = True, max_slices: int = 0,
                 min_max: float = 0.05) -> None:
        self.files = list_h5_files(path)
        self.key = key
        index: list[tuple[int, int]] = []
        for fi, fp in enumerate(self.files):
            try:
                with h5py.File(fp, "r") as f:
                    n = _key_shape(f, fp, key)[0]
                    if min_max <= 0:
                        index += [(fi, s) for s in range(n)]
                        continue
                    mags = np.abs(f[key][()]).reshape(n, -1).max(axis=1)
            except OSError as exc:
                raise DataError(f"{fp}: cannot be read as HDF5 ({exc})") from None
            top = float(mags.max()) if mags.size else 0.0
            index += [(fi, s) for s, m in enumerate(mags) if top > 0 and m >= min_max * top]
        if max_slices and len(index) > max_slices:
            pick = np.linspace(0, len(index) - 1, max_slices).round().astype(int)
            index = [index[i] for i in pick]
        if not index:
            raise DataError(f"image data {path}: no usable slice in dataset {key!r} of {len(self.files)} file(s)")
        self.index = index
        self._cache: list[torch.Tensor] | None = None
        self._handles: dict[int, h5py.File] = {}
        if cache:
            self._cache = [self._read(i) for i in range(len(index))]
            self._close()

    def _read(self, i: int) -> torch.Tensor:
        fi, s = self.index[i]
        f = self._handles.get(fi)
        if f is None:
            f = self._handles[fi] = h5py.File(self.files[fi], "r")
        return _to_unit_complex(f[self.key][s], f"{self.files[fi]} [{self.key}] slice {s}")

    def _close(self) -> None:
        for f in self._handles.values():
            f.close()
        self._handles = {}

    def __getstate__(self) -> dict:  # h5py handles do not cross process boundaries
        state = self.__dict__.copy()
        state["_handles"] = {}
        return state

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, i: int) -> torch.Tensor:
        if self._cache is not None:
            return self._cache[i]
        return self._read(i)

    def stack(self, n: int | None = None) -> torch.Tensor:
        """The first ``n`` slices (all when None) as one tensor ``[n, H, W]``.

        Raises:
            ShapeError: the slices differ in size.
        """
        items = [self[i] for i in range(len(self) if n is None else min(n, len(self)))]
        shapes = {tuple(x.shape) for x in items}
        if len(shapes) > 1:
            raise ShapeError(f"ImageSlices({self.files[0].parent}): slices differ in size {sorted(shapes)}")
        return torch.stack(items)


def item_generator(seed: int, index: int) -> torch.Generator:
    """A torch generator seeded from ``(seed, index)`` (independent streams per item)."""
    state = np.random.SeedSequence([seed, index]).generate_state(2, dtype=np.uint32)
    return torch.Generator().manual_seed(int(state[0]) << 31 ^ int(state[1]))


def d4(x: torch.Tensor, k: int) -> torch.Tensor:
    """One of the 8 rotations/flips of the last two dims (``k ≥ 4``: flip first)."""
    if k >= 4:
        x = torch.flip(x, dims=(-1,))
    return torch.rot90(x, k % 4, dims=(-2, -1))


def add_noise(x: torch.Tensor, sigma: float, generator: torch.Generator) -> torch.Tensor:
    """``x + σ (n₁ + i n₂)`` with ``n₁, n₂`` standard normal (``σ`` per real/imaginary part)."""
    n = torch.randn((2, *x.shape), generator=generator, dtype=x.real.dtype)
    return x + sigma * torch.complex(n[0], n[1])


class NoisyPatches(Dataset):
    """Random noisy/clean patch pairs for denoiser training, item ``i`` a pure function of ``(seed, i)``.

    Item ``i``: a slice drawn uniformly, a uniform ``patch × patch`` crop, (``augment``) one of the 8
    rotations/flips and a global phase ``e^{iφ}``, ``φ ~ U[0, 2π)``, and noise ``σ ~ U[sigma_min, sigma_max]``.

    Args:
        images: the clean slices.
        patch: crop side (slices smaller than that are zero-padded).
        sigma_range: ``(sigma_min, sigma_max)``, fractions of the magnitude maximum.
        length: number of items (any index is valid: indices are global step counters).
        seed: the seed.
        augment: rotations/flips and global phase.

    Items: ``{"clean": complex64 [p, p], "noisy": complex64 [p, p], "sigma": float32 []}``.
    """

    def __init__(self, images: ImageSlices, patch: int, sigma_range: tuple[float, float], length: int,
                 seed: int = 0, augment: bool = True) -> None:
        if patch < 1 or not 0 <= sigma_range[0] <= sigma_range[1]:
            raise ShapeError(f"NoisyPatches: need patch >= 1 and 0 <= sigma_min <= sigma_max, got patch={patch}, "
                             f"sigma_range={sigma_range}")
        self.images, self.patch, self.sigma_range = images, patch, sigma_range
        self.length, self.seed, self.augment = length, seed, augment

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        g = item_generator(self.seed, int(i))
        x = self.images[int(torch.randint(len(self.images), (1,), generator=g))]
        p = self.patch
        h, w = x.shape
        if h < p or w < p:
            x = torch.nn.functional.pad(x, (0, max(p - w, 0), 0, max(p - h, 0)))
            h, w = x.shape
        top = int(torch.randint(h - p + 1, (1,), generator=g))
        left = int(torch.randint(w - p + 1, (1,), generator=g))
        x = x[top:top + p, left:left + p]
        if self.augment:
            x = d4(x, int(torch.randint(8, (1,), generator=g)))
            phi = float(torch.rand((), generator=g)) * 2 * math.pi
            x = x * complex(math.cos(phi), math.sin(phi))
        lo, hi = self.sigma_range
        sigma = lo + (hi - lo) * float(torch.rand((), generator=g))
        x = x.contiguous()
        return {"clean": x, "noisy": add_noise(x, sigma, g), "sigma": torch.tensor(sigma, dtype=torch.float32)}


class NoisyImages(Dataset):
    """Fixed noisy versions of whole slices for validation: item ``j`` is slice ``j // len(sigmas)`` at noise
    level ``sigmas[j % len(sigmas)]``, with noise drawn from ``(seed, j)`` (the same in every run).

    Items: ``{"clean": complex64 [H, W], "noisy": complex64 [H, W], "sigma": float32 []}``.
    """

    def __init__(self, images: ImageSlices, sigmas: Sequence[float], seed: int = 1234) -> None:
        self.images, self.sigmas, self.seed = images, tuple(float(s) for s in sigmas), seed

    def __len__(self) -> int:
        return len(self.images) * len(self.sigmas)

    def __getitem__(self, j: int) -> dict[str, torch.Tensor]:
        x = self.images[j // len(self.sigmas)]
        s = self.sigmas[j % len(self.sigmas)]
        g = item_generator(self.seed, j)
        return {"clean": x, "noisy": add_noise(x, s, g), "sigma": torch.tensor(s, dtype=torch.float32)}

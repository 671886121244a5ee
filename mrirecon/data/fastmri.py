"""Slice- and volume-level datasets over folders of fastMRI ``.h5`` files (multicoil and singlecoil).

``FastMRISliceDataset(root, mask=MaskSpec("random", 4, 0.08))`` yields one :class:`KSpaceSample` per slice:
undersampled k-space ``[C, H, W]`` complex64 (singlecoil: ``C = 1``), the mask, optional precomputed
sensitivity maps from sidecar files, and the target ``reconstruction_rss`` (multicoil) or
``reconstruction_esc`` (singlecoil) at the recon size.

Masks are drawn from :class:`mrirecon.operators.masks.MaskSpec`:

* ``fixed_masks=True`` (validation/test): the seed comes from the file name and the slice index
  (``tuple(map(ord, name)) + (slice,)``), or from the file name alone with ``mask_per_volume=True``,
  which reproduces fastMRI's validation masks (``use_seed=True``) exactly;
* otherwise (training): the seed is ``(seed, epoch, index)``, so a run is reproducible whatever the number
  of DataLoader workers. The epoch comes from :meth:`set_epoch`, or travels with the index when the
  :class:`EpochSampler` is used (robust to persistent workers; Lightning calls its ``set_epoch``).

File metadata (shapes, header sizes, attributes) is cached in a JSON file keyed by path, size and
modification time, so re-creating a dataset over 1,000 files does not reopen them; a changed file is
re-read. HDF5 handles are kept in a small per-process LRU cache (``handle_cache`` files, closed on
eviction, never shared across fork), so memory stays flat over an epoch.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import random as _random
from collections import OrderedDict
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import torch

from mrirecon.atomic import atomic_write_text
from mrirecon.data.sample import KSpaceSample, SampleMeta
from mrirecon.data.transforms import center_crop_or_pad, resize_kspace
from mrirecon.errors import ConfigError, DataError
from mrirecon.io.fastmri import check_maps_sidecar, inspect_file, read_kspace, read_target
from mrirecon.io.h5util import open_h5, read_dataset

PathLike = str | os.PathLike[str]


@dataclass(frozen=True)
class FileMeta:
    """What a dataset needs to know about one file (cached; see :class:`MetadataCache`)."""

    path: str
    challenge: str
    num_slices: int
    coils: int
    matrix: tuple[int, int]
    recon_size: tuple[int, int]
    encoded_size: tuple[int, int, int]
    padding: tuple[int, int]
    targets: tuple[str, ...]
    target_shape: tuple[int, int] | None
    has_mask: bool
    attrs: dict[str, Any]

    @staticmethod
    def from_file(path: Path) -> FileMeta:
        with open_h5(path, "HDF5 file (fastMRI)") as f:
            info = inspect_file(f, str(path))
        keep = {k: v for k, v in info.attrs.items() if isinstance(v, (int, float, str, bool))}
        return FileMeta(path=str(path), challenge=info.challenge, num_slices=info.num_slices, coils=info.coils,
                        matrix=info.matrix, recon_size=info.recon_size, encoded_size=info.encoding.encoded_size,
                        padding=info.encoding.padding, targets=info.targets, target_shape=info.target_shape,
                        has_mask=info.mask is not None, attrs=keep)

    @staticmethod
    def from_json(d: dict[str, Any]) -> FileMeta:
        tup = ("matrix", "recon_size", "encoded_size", "padding", "targets")
        d = {k: (tuple(v) if k in tup or (k == "target_shape" and v is not None) else v) for k, v in d.items()}
        return FileMeta(**d)


class MetadataCache:
    """Per-file metadata, persisted as JSON and keyed by absolute path, size and ``mtime_ns``.

    Args:
        path: the JSON file; ``None`` keeps the cache in memory only.
    """

    def __init__(self, path: PathLike | None) -> None:
        self.path = None if path is None else Path(path)
        self._entries: dict[str, dict[str, Any]] = {}
        self._dirty = False
        if self.path is not None and self.path.exists():
            try:
                data = json.loads(self.path.read_text())
                if data.get("version") == 1:
                    self._entries = data.get("files", {})
            except (OSError, ValueError):
                self._entries = {}  # a damaged cache is rebuilt

    def get(self, file: Path) -> FileMeta:
        """The metadata of ``file``: from the cache when its size and mtime match, else read (and cached)."""
        key = str(file.resolve())
        st = file.stat()
        hit = self._entries.get(key)
        if hit and hit.get("size") == st.st_size and hit.get("mtime_ns") == st.st_mtime_ns:
            return FileMeta.from_json(hit["meta"])
        meta = FileMeta.from_file(file)
        self._entries[key] = {"size": st.st_size, "mtime_ns": st.st_mtime_ns, "meta": asdict(meta)}
        self._dirty = True
        return meta

    def save(self) -> None:
        """Write the cache atomically (if anything changed); an unwritable location is silently skipped."""
        if self.path is None or not self._dirty:
            return
        try:
            atomic_write_text(self.path, json.dumps({"version": 1, "files": self._entries}))
            self._dirty = False
        except OSError:
            pass


def default_cache_path(files: Sequence[Path]) -> Path:
    """``<data dir>/cache/fastmri-<hash of the folder(s)>.json`` (outside the data folder, which may be read-only)."""
    from mrirecon.data.demo import default_data_dir

    key = "|".join(sorted({str(f.resolve().parent) for f in files}))
    return default_data_dir() / "cache" / f"fastmri-{hashlib.sha1(key.encode()).hexdigest()[:16]}.json"


class _Handles:
    """A per-process LRU cache of open read-only HDF5 files (dropped on pickling and after fork)."""

    def __init__(self, maxsize: int) -> None:
        self.maxsize = maxsize
        self._files: OrderedDict[str, h5py.File] = OrderedDict()
        self._pid = os.getpid()

    @contextlib.contextmanager
    def open(self, path: str) -> Iterator[h5py.File]:
        if self._pid != os.getpid():           # forked: the parent's handles must not be used
            self._files = OrderedDict()
            self._pid = os.getpid()
        if self.maxsize <= 0:
            f = open_h5(path, "HDF5 file (fastMRI)")
            try:
                yield f
            finally:
                f.close()
            return
        f = self._files.pop(path, None)
        if f is None or not f.id.valid:
            f = open_h5(path, "HDF5 file (fastMRI)")
        self._files[path] = f
        while len(self._files) > self.maxsize:
            _, old = self._files.popitem(last=False)
            old.close()
        yield f

    def close(self) -> None:
        if self._pid == os.getpid():
            for f in self._files.values():
                try:
                    f.close()
                except Exception:  # pragma: no cover - closing a dead handle
                    pass
        self._files = OrderedDict()

    def __len__(self) -> int:
        return len(self._files)

    def __getstate__(self) -> dict[str, Any]:
        return {"maxsize": self.maxsize}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["maxsize"])  # type: ignore[misc]


def mask_seed(name: str, slice_index: int | None) -> tuple[int, ...]:
    """The fixed-mask seed of a file (and slice): ``tuple(map(ord, name))`` (+ ``(slice,)``), as fastMRI does."""
    seed = tuple(map(ord, name))
    return seed if slice_index is None else seed + (int(slice_index),)


def _list_files(root: PathLike | Sequence[PathLike]) -> list[Path]:
    roots = [root] if isinstance(root, (str, os.PathLike)) else list(root)
    files: list[Path] = []
    for r in roots:
        p = Path(r)
        if p.is_dir():
            files.extend(sorted(q for q in p.iterdir() if q.suffix == ".h5" and not q.name.startswith(".")))
        elif p.exists():
            files.append(p)
        else:
            raise DataError(f"{p}: no such file or folder")
    if not files:
        raise DataError(f"{', '.join(str(r) for r in roots)}: no .h5 files found")
    return files


class _FastMRIBase(torch.utils.data.Dataset):
    """Shared machinery of the slice and volume datasets (see :class:`FastMRISliceDataset` for the arguments)."""

    def __init__(self, root: PathLike | Sequence[PathLike], challenge: str | None = None, mask: Any = None,
                 fixed_masks: bool = False, mask_per_volume: bool = False, seed: int = 0,
                 target_key: str | None = None, size: tuple[int, int] | None = None,
                 target_size: tuple[int, int] | None = None, maps_dir: PathLike | None = None,
                 cache: PathLike | bool = True, handle_cache: int = 8,
                 file_filter: Callable[[FileMeta], bool] | None = None) -> None:
        if challenge not in (None, "multicoil", "singlecoil"):
            raise ConfigError(f"fastMRI dataset: challenge must be 'multicoil' or 'singlecoil', got {challenge!r}")
        files = _list_files(root)
        if cache is True:
            cache_path: Path | None = default_cache_path(files)
        else:
            cache_path = None if cache is False else Path(cache)
        mc = MetadataCache(cache_path)
        metas = [mc.get(f) for f in files]
        mc.save()
        if challenge is None:
            kinds = {m.challenge for m in metas}
            if len(kinds) > 1:
                raise ConfigError("fastMRI dataset: the folder mixes multicoil and singlecoil files; pass "
                                  "challenge='multicoil' or 'singlecoil'")
            challenge = kinds.pop()
        metas = [m for m in metas if m.challenge == challenge and (file_filter is None or file_filter(m))]
        if not metas:
            raise DataError(f"fastMRI dataset: no {challenge} files in {root}")
        self.challenge = challenge
        self.files = metas
        self.mask = mask
        self.fixed_masks = fixed_masks
        self.mask_per_volume = mask_per_volume
        self.seed = int(seed)
        self.target_key = target_key
        self.size = None if size is None else (int(size[0]), int(size[1]))
        self.target_size = None if target_size is None else (int(target_size[0]), int(target_size[1]))
        self.maps_dir = None if maps_dir is None else Path(maps_dir)
        self.epoch = 0
        self._handles = _Handles(handle_cache)
        if self.maps_dir is not None and not self.maps_dir.is_dir():
            raise DataError(f"{self.maps_dir}: maps folder not found (compute it with `mrirecon prep espirit`)")
        if mask is not None:
            for m in metas:
                if m.has_mask:
                    raise ConfigError(f"{m.path}: already undersampled (it has a 'mask'); do not pass mask=")

    # -- epochs -----------------------------------------------------------------------------------
    def set_epoch(self, epoch: int) -> None:
        """Set the epoch that seeds training masks (call before each epoch, or use :class:`EpochSampler`)."""
        self.epoch = int(epoch)

    def open_file(self, path: str) -> contextlib.AbstractContextManager[h5py.File]:
        """One of the dataset's files, read-only, through its per-process handle cache (not closed on exit)."""
        return self._handles.open(path)

    def close(self) -> None:
        """Close the cached HDF5 handles of this process."""
        self._handles.close()

    def __del__(self) -> None:
        try:
            self._handles.close()
        except Exception:  # pragma: no cover
            pass

    # -- loading ----------------------------------------------------------------------------------
    def _target_key(self, meta: FileMeta) -> str | None:
        if self.target_key is not None:
            if self.target_key not in meta.targets:
                raise DataError(f"{meta.path}: field {self.target_key!r} is missing (targets present: "
                                f"{list(meta.targets) or 'none'})")
            return self.target_key
        want = "reconstruction_rss" if meta.challenge == "multicoil" else "reconstruction_esc"
        if want in meta.targets:
            return want
        return "reconstruction" if "reconstruction" in meta.targets else None

    def _mask_for(self, meta: FileMeta, sl: int, train_seed: tuple[int, ...], shape: tuple[int, int],
                  padding: tuple[int, int]) -> tuple[torch.Tensor, float | None, float | None]:
        """The mask of one slice, shaped to broadcast against ``[C, H, W]``, and its nominal acceleration.

        Fixed masks are seeded from the file name (and slice); training masks from ``train_seed``.
        Columns outside the encoding limits (fastMRI's ``padding``) are never sampled.
        """
        h, w = shape
        if self.mask is None:
            return torch.ones(1, 1, w), None, None
        name = Path(meta.path).name
        if self.fixed_masks:
            seed: Any = mask_seed(name, None if self.mask_per_volume else sl)
        else:
            seed = train_seed
        m = self.mask.make((h, w), seed).to(torch.float32)
        m = m.reshape(1, 1, w) if m.ndim == 1 else m.reshape(1, h, w)
        if padding != (0, w):
            m = m.clone()
            m[..., : padding[0]] = 0
            m[..., padding[1]:] = 0
        return m, float(self.mask.acceleration), getattr(self.mask, "center_fraction", None)

    def _load(self, meta: FileMeta, slices: int | slice, index: int, epoch: int) -> dict[str, Any]:
        """Read k-space, target, file mask and maps of one slice (int) or a range, and undersample."""
        src = meta.path
        with self._handles.open(src) as f:
            k = torch.from_numpy(read_kspace(f, slices, src))
            key = self._target_key(meta)
            target = None if key is None else torch.from_numpy(read_target(f, key, slices, src))
            file_mask = None
            if meta.has_mask:
                file_mask = torch.from_numpy(np.asarray(read_dataset(f, "mask", (), src), dtype=np.float32))
        if meta.challenge == "singlecoil":
            k = k.unsqueeze(-3)
        maps = None
        if self.maps_dir is not None:
            sidecar = self.maps_dir / Path(src).name
            if not sidecar.exists():
                raise DataError(f"{sidecar}: no maps sidecar for {Path(src).name} (compute the folder's maps with "
                                f"`mrirecon prep espirit {Path(src).parent} -o {self.maps_dir}`)")
            with self._handles.open(str(sidecar)) as g:
                shape = (meta.num_slices, meta.coils, *meta.matrix)
                check_maps_sidecar(g, shape, str(sidecar))
                maps = torch.from_numpy(np.asarray(read_dataset(g, "maps", slices, str(sidecar)), dtype=np.complex64))
        h, w = meta.matrix
        padding = meta.padding
        if self.size is not None and self.size != (h, w):
            if file_mask is not None and self.size[1] != w:
                raise ConfigError(f"{src}: undersampled file (it has a 'mask'): the phase-encoding size {w} cannot "
                                  f"be changed to {self.size[1]} in the image domain; choose size=(H, {w})")
            k = resize_kspace(k, self.size)
            if maps is not None:
                maps = center_crop_or_pad(maps, self.size)
            scale = self.size[1] / w
            padding = (max(0, round(padding[0] * scale)), min(self.size[1], round(padding[1] * scale)))
            if padding[0] == 0 and self.size[1] > w:
                padding = (0, self.size[1])
            h, w = self.size
        if target is not None and self.target_size is not None:
            target = center_crop_or_pad(target, self.target_size)
        return {"kspace": k, "target": target, "maps": maps, "file_mask": file_mask, "shape": (h, w),
                "padding": padding}

    def _meta(self, meta: FileMeta, sl: int, accel: float | None, cf: float | None,
              shape: tuple[int, int], padding: tuple[int, int]) -> SampleMeta:
        recon = meta.recon_size if self.target_size is None else self.target_size
        extra = {"challenge": meta.challenge, "padding": padding, "matrix": shape,
                 **{k: v for k, v in meta.attrs.items() if k in ("acquisition", "patient_id", "norm")}}
        mx = meta.attrs.get("max")
        return SampleMeta(file=Path(meta.path).name, slice=sl, max_value=None if mx is None else float(mx),
                          recon_size=recon, acceleration=accel, center_fraction=cf, extra=extra)


class FastMRISliceDataset(_FastMRIBase):
    """One :class:`KSpaceSample` per slice of a folder (or list) of fastMRI files.

    Args:
        root: a folder of ``.h5`` files, a file, or a list of either.
        challenge: ``"multicoil"`` or ``"singlecoil"``; ``None`` infers it (a mixed folder is an error).
        mask: a :class:`~mrirecon.operators.masks.MaskSpec`, or ``None`` for the fully sampled data (or the
            file's own ``mask`` in test sets).
        fixed_masks: seed masks from file name and slice (validation); else ``(seed, epoch, index)`` (training).
        mask_per_volume: with ``fixed_masks``, one mask per file seeded like fastMRI (``tuple(map(ord, name))``).
        seed: base seed of training masks (and of ``sample_rate`` subsampling).
        target_key: dataset holding the target; default ``reconstruction_rss``/``_esc`` by challenge.
        size: common k-space matrix ``(H, W)``: fully sampled k-space is cropped/padded in the image domain
            (same pixel size, different field of view) before masking, so that slices of different sizes batch.
        target_size: centre crop/pad of the target (default: the file's recon size).
        maps_dir: folder of sensitivity-map sidecars (same file names; dataset ``maps`` ``[S, (M,) C, H, W]``).
        cache: metadata cache file, ``True`` for the default location, ``False`` for none.
        handle_cache: number of HDF5 files kept open per process (0 opens the file for every item).
        sample_rate: keep this fraction of the slices (drawn with ``seed``; never the global RNG).
        volume_sample_rate: keep this fraction of the files instead.
        slice_filter: ``f(meta, slice) -> bool`` keeps a slice.

    Raises:
        DataError: missing folder, no files, a damaged or invalid file (named).  ConfigError: bad options.
    """

    def __init__(self, root: PathLike | Sequence[PathLike], challenge: str | None = None, mask: Any = None,
                 fixed_masks: bool = False, mask_per_volume: bool = False, seed: int = 0,
                 target_key: str | None = None, size: tuple[int, int] | None = None,
                 target_size: tuple[int, int] | None = None, maps_dir: PathLike | None = None,
                 cache: PathLike | bool = True, handle_cache: int = 8, sample_rate: float | None = None,
                 volume_sample_rate: float | None = None,
                 slice_filter: Callable[[FileMeta, int], bool] | None = None) -> None:
        super().__init__(root, challenge, mask, fixed_masks, mask_per_volume, seed, target_key, size, target_size,
                         maps_dir, cache, handle_cache)
        if sample_rate is not None and volume_sample_rate is not None:
            raise ConfigError("FastMRISliceDataset: give sample_rate or volume_sample_rate, not both")
        for name, rate in (("sample_rate", sample_rate), ("volume_sample_rate", volume_sample_rate)):
            if rate is not None and not 0 < rate <= 1:
                raise ConfigError(f"FastMRISliceDataset: {name} must be in (0, 1], got {rate}")
        rng = _random.Random(self.seed)
        metas = list(self.files)
        if volume_sample_rate is not None and volume_sample_rate < 1:
            keep = max(1, round(len(metas) * volume_sample_rate))
            metas = sorted(rng.sample(metas, keep), key=lambda m: m.path)
        self.records: list[tuple[int, int]] = []
        self.files = metas
        for fi, m in enumerate(metas):
            for s in range(m.num_slices):
                if slice_filter is None or slice_filter(m, s):
                    self.records.append((fi, s))
        if sample_rate is not None and sample_rate < 1:
            keep = max(1, round(len(self.records) * sample_rate))
            self.records = sorted(rng.sample(self.records, keep))
        if not self.records:
            raise DataError(f"FastMRISliceDataset: no slices selected from {root}")

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, key: int | tuple[int, int]) -> KSpaceSample:
        index, epoch = (key if isinstance(key, tuple) else (key, self.epoch))
        if not -len(self) <= index < len(self):
            raise IndexError(f"FastMRISliceDataset: index {index} out of range for {len(self)} slices")
        index = index % len(self)
        fi, sl = self.records[index]
        meta = self.files[fi]
        d = self._load(meta, sl, index, epoch)
        if d["file_mask"] is not None:
            mask = d["file_mask"].reshape(1, 1, -1)
            accel = float(mask.numel() / max(1.0, float(mask.sum())))
            cf = None
        else:
            mask, accel, cf = self._mask_for(meta, sl, (self.seed, epoch, index), d["shape"], d["padding"])
        kspace = d["kspace"] * mask + 0.0
        return KSpaceSample(kspace=kspace, mask=mask, maps=d["maps"], target=d["target"],
                            meta=self._meta(meta, sl, accel, cf, d["shape"], d["padding"]))


class FastMRIVolumeDataset(_FastMRIBase):
    """One :class:`KSpaceSample` per file: ``kspace [S, C, H, W]``, ``mask [S, 1, 1, W]``, ``target [S, h, w]``.

    Arguments as for :class:`FastMRISliceDataset` (masks are drawn per slice, or once per volume with
    ``mask_per_volume``). ``meta.slice`` is ``-1``.
    """

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, key: int | tuple[int, int]) -> KSpaceSample:
        index, epoch = (key if isinstance(key, tuple) else (key, self.epoch))
        if not -len(self) <= index < len(self):
            raise IndexError(f"FastMRIVolumeDataset: index {index} out of range for {len(self)} files")
        index = index % len(self)
        meta = self.files[index]
        d = self._load(meta, slice(None), index, epoch)
        s = meta.num_slices
        if d["file_mask"] is not None:
            mask = d["file_mask"].reshape(1, 1, 1, -1).expand(s, 1, 1, -1)
            accel, cf = float(mask.shape[-1] / max(1.0, float(d["file_mask"].sum()))), None
        else:
            masks = []
            accel = cf = None
            for sl in range(s):
                m, accel, cf = self._mask_for(meta, sl, (self.seed, epoch, index, sl), d["shape"], d["padding"])
                masks.append(m)
            mask = torch.stack(masks)
        kspace = d["kspace"] * mask + 0.0
        return KSpaceSample(kspace=kspace, mask=mask, maps=d["maps"], target=d["target"],
                            meta=self._meta(meta, -1, accel, cf, d["shape"], d["padding"]))


class EpochSampler(torch.utils.data.Sampler):
    """Yields ``(index, epoch)`` so that training masks are seeded by the epoch even in persistent workers.

    Args:
        length: dataset length.  shuffle: shuffle with ``(seed, epoch)``.  seed: the shuffling seed.
    """

    def __init__(self, length: int, shuffle: bool = True, seed: int = 0) -> None:
        self.length, self.shuffle, self.seed, self.epoch = int(length), shuffle, int(seed), 0

    def set_epoch(self, epoch: int) -> None:
        """Called by Lightning (and by hand in plain loops) before each epoch."""
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return self.length

    def __iter__(self) -> Iterator[tuple[int, int]]:
        if self.shuffle:
            g = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
            order = torch.randperm(self.length, generator=g).tolist()
        else:
            order = list(range(self.length))
        return iter([(i, self.epoch) for i in order])

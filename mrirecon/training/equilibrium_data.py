"""Data of the ``equilibrium`` task: fully sampled slices with coil maps and the complex target, and the forward models.

Items are fully sampled: k-space ``[C, h, w]``, coil maps ``[C, h, w]`` and the target
``x = Σ_c conj(S_c) F^H y_c`` (the SENSE combination of the fully sampled coil images, complex ``[h, w]``).
The forward model (mask kind, acceleration — or a general imaging operator) is drawn per batch by the
Lightning module from a generator seeded by the step (:func:`draw_forward_model`), so the dataset never
decides the undersampling and a resumed run repeats an uninterrupted one.

Coil maps (``data.maps``): ``espirit`` (default) — ESPIRiT from the fully sampled ``calib``×``calib``
centre (cached per slice in memory; about 0.3 s per 160×128 slice on one core); ``lowres`` —
:func:`~mrirecon.operators.coils.lowres_maps` from the same centre (cheap, per item); ``sidecar`` —
precomputed maps (``mrirecon prep espirit``) in ``maps_dir``/``val_maps_dir``. The centre plays the role of a
calibration scan: the maps do not depend on the drawn mask. Use the kind of maps the network will be run
with: ratio maps (``lowres``) carry the object's phase, so their SENSE-combined images are real and
non-negative and a network trained on them fails on ESPIRiT images, which keep a smooth phase.
``calib_widths`` (ESPIRiT only; e.g. ``[10, 16, 24]``) draws, per training item, the phase-encoding width of
that centre box from the list (seeded by the item), so the network also sees the poorer maps that a
reconstruction estimates from a few ACS lines (``mrirecon recon`` uses the mask's own fully sampled centre);
validation keeps ``calib``.
``phase_augment`` multiplies each training item's maps by a random global phase ``e^{iθ}`` (the target by
``e^{−iθ}``; the coil images are unchanged), so the prior does not learn one phase convention.

Training items are step-indexed: global item ``k`` is slice ``perm_e[k mod N]`` of pass ``e = k // N``
(a permutation seeded by ``(seed, e)``) with a random ``crop`` of the image domain seeded by
``(seed, k)`` (cropping coil images and maps together and transforming back gives a consistent
smaller problem; networks are convolutional, so they run on whole slices afterwards).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from torch.utils.data import Dataset

from mrirecon.errors import ConfigError
from mrirecon.operators.fft import fft2c, ifft2c
from mrirecon.operators.linop import Linop
from mrirecon.training.data import split_folders


@dataclass
class EquilibriumDataConfig:
    """``data:`` — fastMRI-format multicoil folders, coil maps and training crops.

    ``source: demo`` uses the embedded demo dataset; ``source: files`` uses ``root/train`` and ``root/val``
    (absolute ``train``/``val`` are taken as they are), e.g. ``root: /data/fastmri/knee``, ``train:
    multicoil_train``, ``val: multicoil_val``. ``maps_dir``/``val_maps_dir`` (``maps: sidecar``) are taken under
    ``root`` when relative, like ``train``/``val``. ``crop`` ``[h, w]`` cuts random training crops of the image
    domain (needed to batch files of different sizes; ``null`` uses whole slices; a side larger than the image
    keeps it whole). Crop along the readout (first, fully sampled) axis and keep the whole phase-encoding
    width: the aliasing of line masks is then exactly that of whole slices (a narrower field of view along
    the phase encoding folds differently). ``phase_augment``, ``calib_widths``: see the module docstring.
    ``max_train_slices`` caps the training slices (evenly spaced, 0: all); ``val_slices`` the validation slices
    (evenly spaced).
    """

    source: Literal["demo", "files"] = "demo"
    root: str = ""
    train: str = "train"
    val: str = "val"
    maps: Literal["espirit", "lowres", "sidecar"] = "espirit"
    calib: int = 24
    calib_widths: tuple[int, ...] = ()
    maps_dir: str = ""
    val_maps_dir: str = ""
    crop: tuple[int, int] | None = None
    max_train_slices: int = 0
    val_slices: int = 8
    phase_augment: bool = True

    def __post_init__(self) -> None:
        if self.calib < 2:
            raise ConfigError(f"data.calib must be >= 2, got {self.calib}")
        if any(int(c) < 6 for c in self.calib_widths) or (self.calib_widths and self.maps != "espirit"):
            raise ConfigError(f"data.calib_widths: widths >= 6 (ESPIRiT's 6x6 kernel) with maps: espirit, got "
                              f"{list(self.calib_widths)} with maps: {self.maps}")
        if self.crop is not None and min(self.crop) < 8:
            raise ConfigError(f"data.crop must be at least 8x8, got {list(self.crop)}")
        if self.maps == "sidecar" and not self.maps_dir:
            raise ConfigError("data.maps: 'sidecar' needs data.maps_dir (and data.val_maps_dir)")

    def paths(self) -> tuple[Path, Path]:
        """The train and val folders (the demo dataset is built on first use).

        Raises:
            ConfigError: ``source: files`` without ``root`` (and relative paths).
        """
        return split_folders(self.source, self.root, self.train, self.val)

    def maps_paths(self) -> tuple[str, str]:
        """The train and val sidecar folders (``""`` unless ``maps: sidecar``; relative ones under ``root``)."""
        if self.maps != "sidecar":
            return "", ""
        root = Path(self.root).expanduser() if self.root else Path(".")
        tr = root / Path(self.maps_dir).expanduser()
        va = root / Path(self.val_maps_dir or self.maps_dir).expanduser()
        return str(tr), str(va)


@dataclass
class ForwardModelConfig:
    """``forward:`` — the mixture of forward models drawn per training batch, and the validation ones.

    Per batch: with probability ``imaging`` a general imaging operator on the target image (one of
    ``imaging_ops``: ``blur`` — Gaussian, width uniform in [1, 2] px, circular; ``inpaint`` — a random half of
    the pixels) with complex white noise of ``imaging_noise`` × the image maximum; otherwise multicoil MRI with
    a mask kind drawn from ``masks``, an acceleration uniform in ``[accel_min, accel_max]`` and a fully sampled
    centre fraction ``center_lines / acceleration`` (fastMRI's pairs 4×/8 %, 8×/4 % for 0.32; 2D kinds use it
    as the calibration box fraction), one mask per item. Validation: ``val_mask`` at each of
    ``val_accelerations``, fixed per file and slice.
    """

    masks: tuple[str, ...] = ("equispaced", "random")
    accel_min: float = 4.0
    accel_max: float = 8.0
    center_lines: float = 0.32
    imaging: float = 0.0
    imaging_ops: tuple[str, ...] = ("blur", "inpaint")
    imaging_noise: float = 0.01
    val_mask: str = "equispaced"
    val_accelerations: tuple[float, ...] = (4.0, 8.0)

    def __post_init__(self) -> None:
        if not self.masks:
            raise ConfigError("forward.masks: give at least one mask kind")
        if not 1 <= self.accel_min <= self.accel_max:
            raise ConfigError(f"forward: need 1 <= accel_min <= accel_max, got {self.accel_min}, {self.accel_max}")
        if not 0 <= self.imaging <= 1:
            raise ConfigError(f"forward.imaging is a probability, got {self.imaging}")
        bad = [op for op in self.imaging_ops if op not in ("blur", "inpaint")]
        if bad or (self.imaging > 0 and not self.imaging_ops):
            raise ConfigError(f"forward.imaging_ops: expected a non-empty list of blur, inpaint; got {list(self.imaging_ops)}")
        for kind in (*self.masks, self.val_mask):  # validates kinds and centre fractions now
            for r in (self.accel_min, self.accel_max, *self.val_accelerations):
                try:
                    self.mask_spec(kind, r)
                except ConfigError as exc:
                    raise ConfigError(f"forward: {exc}") from None
        if not self.val_accelerations:
            raise ConfigError("forward.val_accelerations: give at least one")

    def mask_spec(self, kind: str, acceleration: float) -> Any:
        """The :class:`~mrirecon.operators.masks.MaskSpec` for a kind and acceleration."""
        from mrirecon.operators.masks import MaskSpec  # noqa: PLC0415

        return MaskSpec(kind, float(acceleration), center_fraction=min(self.center_lines / acceleration, 0.5))


def slice_maps(kspace: torch.Tensor, cfg: EquilibriumDataConfig, width: int | None = None) -> torch.Tensor:
    """Coil maps ``[C, H, W]`` of a fully sampled slice from its ``calib`` centre (``lowres`` or ``espirit``);
    ``width``: the box's phase-encoding (last-axis) width instead of ``calib``."""
    h, w = kspace.shape[-2:]
    c = (min(cfg.calib, h), min(cfg.calib if width is None else width, w))
    if cfg.maps == "espirit":
        from mrirecon.operators.espirit import espirit_maps  # noqa: PLC0415

        return espirit_maps(kspace, calib=c).to(kspace.dtype)
    from mrirecon.operators.coils import lowres_maps  # noqa: PLC0415

    return lowres_maps(kspace, c)


class SliceTargets(Dataset):
    """Fully sampled slices with maps and complex targets (see the module docstring).

    Args:
        root: folder of fastMRI multicoil files.
        cfg: the data section.
        maps_dir: sidecar folder (``cfg.maps == "sidecar"``).
        slices: how many slices to keep (evenly spaced; 0: all).
        seed: step-indexed permutations and crops (training); ``None``: plain indexing (validation).
        crop: random crop ``(h, w)`` (training).
    """

    def __init__(self, root: Path, cfg: EquilibriumDataConfig, maps_dir: str, slices: int, seed: int | None,
                 crop: tuple[int, int] | None) -> None:
        from mrirecon.data.fastmri import FastMRISliceDataset  # noqa: PLC0415

        self.cfg, self.seed, self.crop = cfg, seed, crop
        self.ds = FastMRISliceDataset(root, challenge="multicoil", mask=None,
                                      maps_dir=maps_dir if cfg.maps == "sidecar" else None)
        n = len(self.ds)
        self.index = (list(range(n)) if slices <= 0 or slices >= n
                      else sorted({int(round(v)) for v in np.linspace(0, n - 1, slices)}))
        self._maps: dict[tuple[int, int | None], torch.Tensor] = {}
        self._perm: tuple[int, np.ndarray] | None = None

    def __len__(self) -> int:
        return 2 ** 62 if self.seed is not None else len(self.index)

    def record(self, k: int) -> int:
        """The dataset index of global item ``k`` (step-indexed permutation) or of validation item ``k``."""
        if self.seed is None:
            return self.index[k]
        epoch, pos = divmod(int(k), len(self.index))
        if self._perm is None or self._perm[0] != epoch:
            self._perm = (epoch, np.random.default_rng([self.seed, epoch]).permutation(len(self.index)))
        return self.index[int(self._perm[1][pos])]

    def __getitem__(self, k: int) -> dict[str, Any]:
        j = self.record(k)
        s = self.ds[j]
        kspace = s.kspace
        if s.maps is not None:
            maps = s.maps.to(kspace.dtype)
        elif self.cfg.maps == "espirit":
            width = None
            if self.cfg.calib_widths and self.seed is not None:
                widths = self.cfg.calib_widths
                width = int(widths[int(np.random.default_rng([self.seed, int(k), 7]).integers(0, len(widths)))])
            if (j, width) not in self._maps:
                self._maps[j, width] = slice_maps(kspace, self.cfg, width)
            maps = self._maps[j, width]
        else:
            maps = slice_maps(kspace, self.cfg)
        if maps.ndim != kspace.ndim:
            raise ConfigError(f"{s.meta.file}: multi-set maps are not supported by the equilibrium task")
        coil = ifft2c(kspace)
        if self.crop is not None and self.seed is not None:
            h, w = coil.shape[-2:]
            ch, cw = min(self.crop[0], h), min(self.crop[1], w)
            rng = np.random.default_rng([self.seed, int(k), 3])
            t, l_ = int(rng.integers(0, h - ch + 1)), int(rng.integers(0, w - cw + 1))
            coil, maps = coil[..., t:t + ch, l_:l_ + cw], maps[..., t:t + ch, l_:l_ + cw]
            kspace = fft2c(coil)
        if self.cfg.phase_augment and self.seed is not None:
            theta = float(np.random.default_rng([self.seed, int(k), 5]).uniform(0, 2 * np.pi))
            maps = maps * torch.polar(torch.ones((), dtype=maps.real.dtype), torch.tensor(theta, dtype=maps.real.dtype))
        target = (maps.conj() * coil).sum(dim=-3)
        return {"kspace": kspace.contiguous(), "maps": maps.contiguous(), "target": target.contiguous(),
                "file": s.meta.file, "slice": int(s.meta.slice), "max_value": float(s.meta.max_value or 0.0)}


class ValidationSet(Dataset):
    """Every validation slice at every validation acceleration, with the fixed mask of its file and slice."""

    def __init__(self, slices: SliceTargets, fwd: ForwardModelConfig) -> None:
        self.slices, self.fwd = slices, fwd
        self._last: tuple[int, dict[str, Any]] | None = None  # the accelerations of a slice are consecutive items

    def __len__(self) -> int:
        return len(self.slices) * len(self.fwd.val_accelerations)

    def _slice(self, j: int) -> dict[str, Any]:
        if self._last is None or self._last[0] != j:
            self._last = (j, self.slices[j])
        return self._last[1]

    def __getitem__(self, i: int) -> dict[str, Any]:
        from mrirecon.data.fastmri import mask_seed  # noqa: PLC0415

        j, a = divmod(i, len(self.fwd.val_accelerations))
        item = dict(self._slice(j))
        accel = self.fwd.val_accelerations[a]
        h, w = item["kspace"].shape[-2:]
        mask = self.fwd.mask_spec(self.fwd.val_mask, accel).make((h, w), mask_seed(item["file"], item["slice"]))
        item["mask"] = (mask.reshape(1, 1, w) if mask.ndim == 1 else mask.reshape(1, h, w)).float()
        item["acceleration"] = float(accel)
        return item


def _imaging_operator(kind: str, shape: tuple[int, int], gen: torch.Generator) -> Linop:
    from mrirecon.operators.imaging import Blur, Inpaint, gaussian_kernel  # noqa: PLC0415

    if kind == "blur":
        width = 1.0 + float(torch.rand((), generator=gen))
        size = 2 * int(3 * width) + 1
        while size > min(shape):
            size -= 2
        return Blur(gaussian_kernel(width, size), shape, boundary="circular")
    keep = (torch.rand(shape, generator=gen) < 0.5).float()
    return Inpaint(keep, shape)


@dataclass
class ForwardDraw:
    """A drawn forward model for one batch: operator, data, and what was drawn (for logging)."""

    A: Linop
    y: torch.Tensor
    kind: str
    acceleration: float


def draw_forward_model(batch: dict[str, Any], fwd: ForwardModelConfig, gen: torch.Generator) -> ForwardDraw:
    """Draw the batch's forward model (see :class:`ForwardModelConfig`) and simulate or undersample its data.

    Args:
        batch: ``kspace`` ``[B, C, h, w]``, ``maps`` ``[B, C, h, w]``, ``target`` ``[B, h, w]`` (complex).
        fwd: the mixture.
        gen: a CPU generator (seeded by the step).
    """
    from mrirecon.operators.sense import Sense  # noqa: PLC0415

    k, maps, target = batch["kspace"], batch["maps"], batch["target"]
    b, _, h, w = k.shape
    if fwd.imaging > 0 and float(torch.rand((), generator=gen)) < fwd.imaging:
        kind = fwd.imaging_ops[int(torch.randint(len(fwd.imaging_ops), (), generator=gen))]
        A = _imaging_operator(kind, (h, w), gen)
        clean = A(target)
        peak = target.abs().flatten(1).amax(dim=1).reshape(-1, *([1] * (clean.ndim - 1)))
        noise = torch.randn(clean.shape, generator=gen, dtype=clean.dtype).to(clean.device)
        return ForwardDraw(A, clean + fwd.imaging_noise * peak * noise, kind, 1.0)
    kind = fwd.masks[int(torch.randint(len(fwd.masks), (), generator=gen))]
    accel = fwd.accel_min + (fwd.accel_max - fwd.accel_min) * float(torch.rand((), generator=gen))
    spec = fwd.mask_spec(kind, accel)
    masks = []
    for _ in range(b):
        m = spec.make((h, w), int(torch.randint(2 ** 31 - 1, (), generator=gen)))
        masks.append(m.reshape(1, 1, w) if m.ndim == 1 else m.reshape(1, h, w))
    mask = torch.stack(masks).to(k.device, k.real.dtype)
    return ForwardDraw(Sense(maps, mask), k * mask, kind, accel)

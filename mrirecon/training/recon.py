"""The ``recon`` training task: reconstruction networks (PD-net, E2E-VarNet) on fastMRI-format multicoil data.

Data: slices of a folder of fastMRI ``.h5`` files (:class:`mrirecon.data.fastmri.FastMRISliceDataset`; the
demo dataset is in this format), undersampled retrospectively with masks drawn per item. Training items
are step-indexed (:class:`StepSlices`): global item ``k`` is slice ``perm_e[k mod N]`` of pass ``e = k // N``
(a permutation seeded by ``(seed, e)``) with a mask seeded by ``(seed, k)``; the acceleration is drawn from
``data.accelerations`` with the same seed. So a resumed run repeats exactly what an uninterrupted one does,
and ``n`` processes with batch ``b`` see the same global batches as one process with batch ``n·b``.
Validation uses fixed masks (seeded by file name and slice, as fastMRI) and is sharded over the processes.

Loss (fastMRI convention): ``loss.ssim · (1 − SSIM(|x̂|, target)) + loss.l1 · ‖|x̂| − target‖₁ / max`` with
the target ``reconstruction_rss`` at the recon size (both centre-cropped to the smaller of the two sizes),
SSIM with a 7×7 window and the volume maximum (``attrs['max']``) as data range
(:class:`mrirecon.metrics.SSIMLoss`).

After the last step the run writes ``RUN/model.pt`` (weights that :func:`mrirecon.models.load_recon_model`
and ``mrirecon evaluate --checkpoint`` read) and ``RUN/model.json`` (recipe, final validation metrics).
"""
from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import lightning as L
import numpy as np
import torch
from torch.utils.data import ConcatDataset, DataLoader, Dataset, Sampler, Subset

from mrirecon.data.fastmri import FastMRISliceDataset, FileMeta
from mrirecon.data.sample import KSpaceSample
from mrirecon.data.transforms import center_crop_or_pad, collate_samples
from mrirecon.denoisers._config import to_plain
from mrirecon.denoisers.base import parameter_count
from mrirecon.denoisers.zoo import save_weights
from mrirecon.errors import ConfigError, DivergenceError
from mrirecon.metrics import SSIMLoss
from mrirecon.models.base import ReconModel
from mrirecon.operators.masks import MaskSpec
from mrirecon.training.data import StepSampler, split_folders
from mrirecon.training.module import RecipeModule
from mrirecon.training.recipes import ModelSection, OptimConfig, TaskSpec, TrainerConfig, register_task


# ----------------------------------------------------------------------------------------------
# recipe
# ----------------------------------------------------------------------------------------------
@dataclass
class ReconModelSection(ModelSection):
    """``model:`` — a registered reconstruction network (``pdnet``, ``varnet``) and its constructor arguments."""

    name: str = "pdnet"


@dataclass
class ReconDataConfig:
    """``data:`` — fastMRI-format multicoil folders and the retrospective undersampling.

    ``source: demo`` uses the embedded demo dataset (:func:`mrirecon.data.demo.demo_root`); ``source: files``
    uses ``root/train`` and ``root/val`` (relative paths are taken under ``root``; absolute ones as they are),
    e.g. ``root: /data/fastmri/knee`` with ``train: multicoil_train``, ``val: multicoil_val``.

    Masks: ``mask`` is a :class:`~mrirecon.operators.masks.MaskSpec` kind; each training item draws its
    acceleration from ``accelerations`` (with the matching entry of ``center_fractions``); validation files
    are assigned one of them by a seed from the file name. ``size`` crops/pads k-space to a common matrix in
    the image domain (needed to batch files of different sizes); ``sample_rate`` keeps a fraction of the
    training slices; ``val_slices`` caps the validation slices (evenly spaced, 0: all); ``maps_dir`` /
    ``val_maps_dir`` hold precomputed map sidecars (``mrirecon prep espirit``) for networks that use maps.

    ``target``: ``reconstruction_rss`` (fastMRI's; the only choice for scanner data) or ``image``, the magnitude of a
    complex ground truth stored in the files (the demo dataset's noise-free image), with its volume maximum as the
    data range: the network then learns to denoise as well, instead of reproducing the noise of the RSS target.
    """

    source: Literal["demo", "files"] = "demo"
    root: str = ""
    train: str = "train"
    val: str = "val"
    mask: str = "random"
    accelerations: tuple[float, ...] = (4.0,)
    center_fractions: tuple[float, ...] = (0.08,)
    size: tuple[int, int] | None = None
    sample_rate: float = 1.0
    val_slices: int = 0
    maps_dir: str = ""
    val_maps_dir: str = ""
    handle_cache: int = 8
    target: Literal["reconstruction_rss", "image"] = "reconstruction_rss"

    def __post_init__(self) -> None:
        if not self.accelerations:
            raise ConfigError("accelerations: give at least one acceleration")
        if len(self.center_fractions) != len(self.accelerations):
            raise ConfigError(f"center_fractions: one per acceleration ({len(self.accelerations)}), got "
                              f"{len(self.center_fractions)}")
        if not 0 < self.sample_rate <= 1:
            raise ConfigError(f"sample_rate must be in (0, 1], got {self.sample_rate}")
        self.mask_specs()  # validates the kind and values now, not at the first batch

    def mask_specs(self) -> list[MaskSpec]:
        """One :class:`MaskSpec` per acceleration."""
        try:
            return [MaskSpec(self.mask, float(a), center_fraction=float(cf) if cf > 0 else None)
                    for a, cf in zip(self.accelerations, self.center_fractions)]
        except ConfigError as exc:
            raise ConfigError(f"mask: {exc}") from None

    def paths(self) -> tuple[Path, Path]:
        """The train and val folders (the demo dataset is built on first use).

        Raises:
            ConfigError: ``source: files`` without paths.
        """
        return split_folders(self.source, self.root, self.train, self.val)


@dataclass
class ReconLossConfig:
    """``loss:`` — weights of ``1 − SSIM`` and of the L1 distance (relative to the volume maximum)."""

    ssim: float = 1.0
    l1: float = 0.0

    def __post_init__(self) -> None:
        if self.ssim < 0 or self.l1 < 0 or self.ssim + self.l1 == 0:
            raise ConfigError(f"loss: weights must be >= 0 and not both 0, got ssim={self.ssim}, l1={self.l1}")


@dataclass
class ReconRecipe:
    """A reconstruction training recipe (``task: recon``): every section with its defaults."""

    task: Literal["recon"] = "recon"
    description: str = ""
    model: ReconModelSection = field(default_factory=ReconModelSection)
    data: ReconDataConfig = field(default_factory=ReconDataConfig)
    loss: ReconLossConfig = field(default_factory=ReconLossConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)


# ----------------------------------------------------------------------------------------------
# data
# ----------------------------------------------------------------------------------------------
def _seed_choice(seed: Any, n: int) -> int:
    return int(np.random.default_rng(seed).integers(n)) if n > 1 else 0


class ImageTargets(Dataset):
    """A slice dataset whose targets are ``|file['image'][slice]|`` (centre-cropped to the target size) and whose
    data range is the volume maximum of ``|image|`` (computed once per file)."""

    def __init__(self, ds: FastMRISliceDataset, key: str = "image") -> None:
        self.ds, self.key = ds, key
        self._max: dict[str, float] = {}

    def __len__(self) -> int:
        return len(self.ds)

    def __getitem__(self, key: Any) -> KSpaceSample:
        import dataclasses  # noqa: PLC0415

        from mrirecon.errors import DataError  # noqa: PLC0415

        sample = self.ds[key]
        index = key[0] if isinstance(key, tuple) else key
        fi, sl = self.ds.records[index % len(self.ds)]
        path = self.ds.files[fi].path
        with self.ds.open_file(path) as f:  # the handle the dataset just used: no second open per item
            if self.key not in f:
                raise DataError(f"{path}: field {self.key!r} is missing (data.target={self.key} needs a complex "
                                f"ground truth in every file, as the demo dataset has)")
            img = torch.from_numpy(np.abs(f[self.key][sl]).astype(np.float32))
            if path not in self._max:  # once per file
                self._max[path] = float(np.abs(f[self.key][()]).max())
        size = sample.target.shape[-2:] if sample.target is not None else sample.meta.recon_size
        meta = dataclasses.replace(sample.meta, max_value=self._max[path])
        return sample.replace(target=center_crop_or_pad(img, size), meta=meta)


class _FileChoice:
    """``slice_filter`` keeping the files whose name seeds choice ``j`` of ``n`` (picklable, for workers)."""

    def __init__(self, j: int, n: int) -> None:
        self.j, self.n = j, n

    def __call__(self, meta: FileMeta, sl: int) -> bool:
        return _seed_choice(list(map(ord, Path(meta.path).name)), self.n) == self.j


class StepSlices(Dataset):
    """Step-indexed training slices: item ``k`` depends only on ``(seed, k)`` (see the module docstring).

    Args:
        datasets: one :class:`FastMRISliceDataset` per mask spec, over the same slices.
        seed: the run's seed.
    """

    def __init__(self, datasets: list[Any], seed: int) -> None:
        self.datasets, self.seed = datasets, int(seed)
        self.n = len(datasets[0])
        self._perm: tuple[int, np.ndarray] | None = None

    def __len__(self) -> int:
        return 2 ** 62

    def record(self, k: int) -> int:
        """The slice index of global item ``k``."""
        epoch, pos = divmod(int(k), self.n)
        if self._perm is None or self._perm[0] != epoch:
            self._perm = (epoch, np.random.default_rng([self.seed, epoch]).permutation(self.n))
        return int(self._perm[1][pos])

    def __getitem__(self, k: int) -> KSpaceSample:
        j = _seed_choice([self.seed, int(k), 7], len(self.datasets))
        return self.datasets[j][(self.record(k), int(k))]  # mask seed (seed, k, slice)


class ShardSampler(Sampler[int]):
    """Indices ``rank, rank + world, …`` of ``n`` items (evaluation sharded over DDP processes)."""

    def __init__(self, n: int) -> None:
        self.n = n

    @staticmethod
    def _rank_world() -> tuple[int, int]:
        return StepSampler._rank_world()

    def __iter__(self) -> Iterator[int]:
        rank, world = self._rank_world()
        return iter(range(rank, self.n, world))

    def __len__(self) -> int:
        rank, world = self._rank_world()
        return len(range(rank, self.n, world))


class ReconDataModule(L.LightningDataModule):
    """Step-indexed training slices and fixed-mask validation slices for the ``recon`` task."""

    def __init__(self, recipe: ReconRecipe) -> None:
        super().__init__()
        self.recipe = recipe
        self.train_set: StepSlices | None = None
        self.val_set: Dataset | None = None

    def _dataset(self, root: Path, spec: MaskSpec, fixed: bool, choice: _FileChoice | None = None) -> Dataset:
        d, t = self.recipe.data, self.recipe.trainer
        ds = FastMRISliceDataset(root, challenge="multicoil", mask=spec, fixed_masks=fixed, seed=t.seed,
                                 size=d.size, maps_dir=(d.val_maps_dir if fixed else d.maps_dir) or None,
                                 handle_cache=d.handle_cache,
                                 sample_rate=None if fixed or d.sample_rate >= 1 else d.sample_rate,
                                 slice_filter=choice)
        return ds if d.target == "reconstruction_rss" else ImageTargets(ds, d.target)

    def setup(self, stage: str | None = None) -> None:
        if self.train_set is not None:
            return
        from mrirecon.errors import DataError  # noqa: PLC0415

        d = self.recipe.data
        train, val = d.paths()
        specs = d.mask_specs()
        self.train_set = StepSlices([self._dataset(train, s, False) for s in specs], self.recipe.trainer.seed)
        if len(specs) == 1:
            val_sets = [self._dataset(val, specs[0], True)]
        else:  # each validation file gets one of the accelerations, chosen by a seed from its name
            val_sets = []
            for j, spec in enumerate(specs):
                try:
                    val_sets.append(self._dataset(val, spec, True, _FileChoice(j, len(specs))))
                except DataError:  # no validation file drew this acceleration
                    pass
        full: Dataset = val_sets[0] if len(val_sets) == 1 else ConcatDataset(val_sets)
        n = len(full)  # type: ignore[arg-type]
        if 0 < d.val_slices < n:
            full = Subset(full, np.linspace(0, n - 1, d.val_slices).round().astype(int).tolist())
        self.val_set = full

    def transfer_batch_to_device(self, batch: Any, device: torch.device, dataloader_idx: int) -> Any:
        """Move a :class:`KSpaceSample` batch (its tensors; the metadata stays)."""
        return batch.to(device) if isinstance(batch, KSpaceSample) else super().transfer_batch_to_device(
            batch, device, dataloader_idx)

    def train_dataloader(self) -> DataLoader:
        t = self.recipe.trainer
        assert self.train_set is not None
        sampler = StepSampler(t.val_every, t.batch_size, lambda: self.trainer.global_step if self.trainer else 0)
        return DataLoader(self.train_set, batch_size=t.batch_size, sampler=sampler, num_workers=t.num_workers,
                          collate_fn=collate_samples, drop_last=True)

    def val_dataloader(self) -> DataLoader:
        assert self.val_set is not None
        return DataLoader(self.val_set, batch_size=1, sampler=ShardSampler(len(self.val_set)),  # type: ignore
                          num_workers=0, collate_fn=collate_samples)


# ----------------------------------------------------------------------------------------------
# module
# ----------------------------------------------------------------------------------------------
def crop_pair(out: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Centre-crop ``out`` and ``target`` (``[..., h, w]``) to the smaller of their sizes (fastMRI's rule)."""
    h = min(out.shape[-2], target.shape[-2])
    w = min(out.shape[-1], target.shape[-1])
    return center_crop_or_pad(out, (h, w)), center_crop_or_pad(target, (h, w))


def data_ranges(batch: KSpaceSample, target: torch.Tensor) -> torch.Tensor:
    """The SSIM/PSNR data range per item: the volume maximum (``meta.max_value``), else the target's maximum."""
    metas = batch.meta if isinstance(batch.meta, list) else [batch.meta]
    own = target.detach().flatten(1).amax(dim=1)
    vals = [m.max_value if m.max_value is not None and m.max_value > 0 else float(own[i])
            for i, m in enumerate(metas)]
    return torch.tensor(vals, dtype=target.dtype, device=target.device)


class ReconModule(RecipeModule):
    """Lightning module of the ``recon`` task (see the module docstring for the loss)."""

    def __init__(self, recipe: ReconRecipe) -> None:
        super().__init__(recipe)
        if not isinstance(self.model, ReconModel):
            raise ConfigError(f"model.name: {recipe.model.name!r} is not a reconstruction network (registered "
                              f"reconstruction networks: pdnet, varnet)")
        self.ssim_loss = SSIMLoss()
        self._val: torch.Tensor | None = None

    def _outputs(self, batch: KSpaceSample) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        if batch.target is None:
            raise ConfigError("recon training: the files have no target (reconstruction_rss); use fully sampled "
                              "training/validation folders")
        mag = self.model(batch).abs().float()
        out, target = crop_pair(mag, batch.target.float())
        return out, target, data_ranges(batch, target)

    def _loss(self, out: torch.Tensor, target: torch.Tensor, rng: torch.Tensor) -> torch.Tensor:
        w = self.recipe.loss
        loss = out.new_zeros(())
        if w.ssim > 0:
            loss = loss + w.ssim * self.ssim_loss(out.unsqueeze(1), target.unsqueeze(1), data_range=rng)
        if w.l1 > 0:
            loss = loss + w.l1 * ((out - target).abs().flatten(1).mean(dim=1) / rng).mean()
        return loss

    def training_step(self, batch: KSpaceSample, batch_idx: int) -> torch.Tensor:
        out, target, rng = self._outputs(batch)
        loss = self._loss(out, target, rng)
        if not torch.isfinite(loss):
            raise DivergenceError(f"recon training: the loss is {float(loss)} at step {self.global_step}; lower "
                                  f"optim.lr, set optim.grad_clip, or check the data")
        self.log("train/loss", loss, prog_bar=True, sync_dist=True, batch_size=out.shape[0])
        return loss

    def on_validation_epoch_start(self) -> None:
        self._val = torch.zeros(5, dtype=torch.float64, device=self.device)

    def validation_step(self, batch: KSpaceSample, batch_idx: int) -> None:
        out, target, rng = self._outputs(batch)
        from mrirecon.metrics import batch_psnr, batch_ssim  # noqa: PLC0415

        ssim = batch_ssim(out, target, rng)
        psnr = batch_psnr(out, target, rng)
        nmse = (out - target).pow(2).flatten(1).sum(1) / target.pow(2).flatten(1).sum(1).clamp_min(1e-30)
        loss = self._loss(out, target, rng)
        assert self._val is not None
        self._val += torch.stack([loss.double() * out.shape[0], ssim.double().sum(), psnr.double().sum(),
                                  nmse.double().sum(), torch.tensor(float(out.shape[0]), dtype=torch.float64,
                                                                    device=self.device)])

    def on_validation_epoch_end(self) -> None:
        assert self._val is not None
        tot = self.trainer.strategy.reduce(self._val.clone(), reduce_op="sum")
        n = float(tot[4])
        if n == 0:
            return
        vals = {"val/loss": tot[0] / n, "val/ssim": tot[1] / n, "val/psnr": tot[2] / n, "val/nmse": tot[3] / n}
        for k, v in vals.items():
            self.log(k, v.float(), prog_bar=k in ("val/ssim", "val/psnr"), rank_zero_only=True)
        self.last_val = {k.split("/")[1]: float(v) for k, v in vals.items()} | {"slices": int(n)}


def export(recipe: ReconRecipe, module: ReconModule, dm: ReconDataModule, run_dir: Path) -> dict[str, Any]:
    """Write ``run_dir/model.pt`` and ``model.json`` (recipe, steps, last validation metrics)."""
    model = module.model.cpu().eval()
    val = getattr(module, "last_val", {})
    info = {"description": recipe.description, "steps": int(module.global_step),
            "parameters": parameter_count(model),
            "val_slice_mean": val, "recipe": to_plain(recipe)}
    save_weights(model, run_dir / "model.pt", info)
    if val:
        print(f"validation ({val['slices']} slices, slice means): SSIM {val['ssim']:.4f}, PSNR {val['psnr']:.2f} dB, "
              f"NMSE {val['nmse']:.4f}")
    print(f"wrote {run_dir / 'model.pt'} and {run_dir / 'model.json'}")
    return {"val": val, "model": run_dir / "model.pt"}


TASK = register_task(TaskSpec(name="recon", recipe=ReconRecipe, module=ReconModule, datamodule=ReconDataModule,
                              export=export))

__all__ = ["ReconDataConfig", "ReconDataModule", "ReconLossConfig", "ReconModule", "ReconRecipe", "StepSlices",
           "crop_pair", "data_ranges"]

"""The ``denoiser`` training task: recipe, data, Lightning module, callbacks and export.

Training pairs are random patches of clean complex slices with complex Gaussian noise,
``σ ~ U[noise.sigma_min, noise.sigma_max]`` (fractions of each slice's magnitude maximum), augmented by
the 8 rotations/flips and a random global phase. Loss: L1 or L2 between ``D(y)`` and the clean patch
(on the real channels), plus, with ``lipschitz.penalty = λ > 0``, the firm-non-expansiveness penalty
``λ·max(‖J_{2D−I}(x̃)‖², 1 − ε)`` (:func:`mrirecon.denoisers.jacobian.fne_penalty`). Validation: PSNR of
whole slices at the fixed noise levels ``noise.val_sigmas``, and the Lipschitz certificate.

After the last step the run writes ``RUN/model.pt`` (a weights file that ``load_denoiser`` reads) and
``RUN/model.json`` (recipe, validation PSNR, certificate).
"""
from __future__ import annotations

import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import lightning as L
import torch
from torch.utils.data import DataLoader

from mrirecon.data.images import ImageSlices, NoisyImages, NoisyPatches
from mrirecon.denoisers._config import to_plain
from mrirecon.denoisers.base import to_channels
from mrirecon.denoisers.certificate import lipschitz_certificate
from mrirecon.denoisers.jacobian import fne_penalty
from mrirecon.denoisers.spectral import converge_spectral_norms, sn_layers, spectral_certificate
from mrirecon.denoisers.zoo import save_weights
from mrirecon.errors import ConfigError
from mrirecon.training.callbacks import LipschitzCallback
from mrirecon.training.data import StepSampler
from mrirecon.training.module import RecipeModule
from mrirecon.training.recipes import ModelSection, OptimConfig, TaskSpec, TrainerConfig, register_task


@dataclass
class ImageDataConfig:
    """``data:`` — where the clean images come from.

    ``source: demo`` uses the ``train``/``val`` splits of the embedded demo dataset
    (:func:`mrirecon.data.demo.demo_root`); ``source: files`` uses the folders (or ``.h5`` files) ``train`` and
    ``val`` — e.g. fastMRI ``multicoil_train``/``multicoil_val`` with ``key: reconstruction_rss``. ``key`` is the
    ``[S, H, W]`` dataset read from each file; ``patch`` the training crop; ``val_slices`` how many validation
    slices (evenly spaced) are used; ``max_train_slices`` caps the training slices (0: all); ``min_max`` skips
    near-empty slices; ``cache`` holds the slices in memory.
    """

    source: Literal["demo", "files"] = "demo"
    train: str = ""
    val: str = ""
    key: str = "image"
    patch: int = 48
    val_slices: int = 8
    max_train_slices: int = 0
    min_max: float = 0.05
    cache: bool = True
    augment: bool = True


@dataclass
class NoiseConfig:
    """``noise:`` — training noise range and validation noise levels (std per real/imaginary part, as
    fractions of the slice's magnitude maximum)."""

    sigma_min: float = 0.0
    sigma_max: float = 0.1
    val_sigmas: tuple[float, ...] = (5 / 255, 15 / 255, 25 / 255)
    val_seed: int = 1234

    def __post_init__(self) -> None:
        if not 0 <= self.sigma_min <= self.sigma_max:
            raise ConfigError(f"need 0 <= sigma_min <= sigma_max, got {self.sigma_min}, {self.sigma_max}")


@dataclass
class LipschitzConfig:
    """``lipschitz:`` — the Jacobian penalty (``penalty`` = λ > 0 turns it on) and the certificate.

    Penalty: ``λ·max(‖J_Q(x̃)‖², 1 − eps)`` with ``Q = 2D − I`` on ``penalty_batch`` points per step, power
    iteration with ``power_iters`` steps. Certificate: every ``every`` validations on ``points`` crops of side
    ``crop`` with ``iters`` steps (0: never during training); at the end on ``final_points`` crops of side
    ``final_crop`` with ``final_iters`` steps.
    """

    penalty: float = 0.0
    eps: float = 0.05
    power_iters: int = 10
    penalty_batch: int = 4
    every: int = 1
    points: int = 4
    iters: int = 20
    crop: int = 48
    final_points: int = 16
    final_iters: int = 100
    final_crop: int = 64


@dataclass
class DenoiserRecipe:
    """A denoiser training recipe: every section with its defaults; YAML files override them."""

    task: Literal["denoiser"] = "denoiser"
    description: str = ""
    model: ModelSection = field(default_factory=ModelSection)
    data: ImageDataConfig = field(default_factory=ImageDataConfig)
    noise: NoiseConfig = field(default_factory=NoiseConfig)
    loss: Literal["l1", "l2"] = "l1"
    lipschitz: LipschitzConfig = field(default_factory=LipschitzConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)


def data_paths(data: ImageDataConfig) -> tuple[str, str]:
    """The train and val paths of the data section.

    Raises:
        ConfigError: ``source: files`` without paths, or the demo dataset module is unavailable.
    """
    if data.source == "files":
        if not data.train or not data.val:
            raise ConfigError("data: source 'files' needs data.train and data.val (folders or .h5 files)")
        return data.train, data.val
    try:
        from mrirecon.data.demo import demo_root  # noqa: PLC0415 (built lazily, on first use)
    except ImportError:
        raise ConfigError("data: source 'demo' needs mrirecon.data.demo, which this installation lacks; "
                          "set data.source=files data.train=... data.val=...") from None
    root = Path(demo_root())
    return str(root / "train"), str(root / "val")


class DenoiserDataModule(L.LightningDataModule):
    """Training patches (step-indexed) and whole validation slices for the ``denoiser`` task."""

    def __init__(self, recipe: DenoiserRecipe) -> None:
        super().__init__()
        self.recipe = recipe
        self.train_images: ImageSlices | None = None
        self.val_images: ImageSlices | None = None

    def setup(self, stage: str | None = None) -> None:
        if self.val_images is not None:
            return
        d = self.recipe.data
        train, val = data_paths(d)
        self.train_images = ImageSlices(train, d.key, cache=d.cache, max_slices=d.max_train_slices, min_max=d.min_max)
        self.val_images = ImageSlices(val, d.key, cache=d.cache, max_slices=d.val_slices, min_max=d.min_max)

    def train_dataloader(self) -> DataLoader:
        t, d, n = self.recipe.trainer, self.recipe.data, self.recipe.noise
        assert self.train_images is not None
        ds = NoisyPatches(self.train_images, d.patch, (n.sigma_min, n.sigma_max),
                          length=t.max_steps * t.batch_size * max(t.devices, 1), seed=t.seed, augment=d.augment)
        sampler = StepSampler(t.val_every, t.batch_size, lambda: self.trainer.global_step if self.trainer else 0)
        return DataLoader(ds, batch_size=t.batch_size, sampler=sampler, num_workers=t.num_workers, drop_last=True)

    def val_dataloader(self) -> DataLoader:
        assert self.val_images is not None
        ds = NoisyImages(self.val_images, self.recipe.noise.val_sigmas, seed=self.recipe.noise.val_seed)
        return DataLoader(ds, batch_size=1, shuffle=False, num_workers=0)


def psnr_complex(clean: torch.Tensor, est: torch.Tensor) -> torch.Tensor:
    """Per-image PSNR of complex images ``[B, H, W]``: ``10 log10(max|x|² / mean|x̂ − x|²)`` -> ``[B]``."""
    peak = clean.abs().flatten(1).amax(dim=1).square()
    mse = (est - clean).abs().square().flatten(1).mean(dim=1)
    return 10 * torch.log10(peak / mse.clamp_min(1e-30))


def sigma_tag(sigma: float) -> str:
    """``5/255`` -> ``"5"`` (the key suffix of per-noise-level metrics)."""
    v = sigma * 255
    return f"{v:.0f}" if abs(v - round(v)) < 1e-6 else f"{v:.2f}"


class DenoiserModule(RecipeModule):
    """Lightning module of the ``denoiser`` task."""

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        clean, noisy, sigma = to_channels(batch["clean"]), to_channels(batch["noisy"]), batch["sigma"]
        out = self.model.forward_channels(noisy, sigma)
        diff = out - clean
        loss = diff.abs().mean() if self.recipe.loss == "l1" else diff.square().mean()
        self.log("train/loss", loss, prog_bar=True)
        lip = self.recipe.lipschitz
        if lip.penalty > 0:
            k = min(lip.penalty_batch, clean.shape[0])
            s = sigma[:k]
            pen = fne_penalty(lambda z: self.model.forward_channels(z, s), clean[:k], noisy[:k], lam=lip.penalty,
                              eps=lip.eps, iters=lip.power_iters, generator=self.step_generator(1))
            self.log("train/penalty", pen.penalty)
            self.log("train/jac_2D-I", pen.norms.max(), prog_bar=True)
            loss = loss + pen.penalty
        if not torch.isfinite(loss):
            from mrirecon.errors import DivergenceError  # noqa: PLC0415

            raise DivergenceError(f"denoiser training: the loss is {float(loss)} at step {self.global_step}; "
                                  f"lower optim.lr or check the data")
        return loss

    def validation_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        est = self.model(batch["noisy"], batch["sigma"])
        p = psnr_complex(batch["clean"], est.detach())
        for s, v in zip(batch["sigma"].tolist(), p):
            self.log(f"val/psnr_{sigma_tag(s)}", v, batch_size=1)
        self.log("val/psnr", p.mean(), batch_size=p.shape[0], prog_bar=True)


def evaluate_psnr(model: torch.nn.Module, images: ImageSlices, sigmas: tuple[float, ...], seed: int
                  ) -> dict[str, float]:
    """Mean complex PSNR (dB) of ``model`` on the slices at each noise level (noise fixed by ``seed``)."""
    ds = NoisyImages(images, sigmas, seed=seed)
    sums: dict[str, list[float]] = defaultdict(list)
    model.eval()
    for j in range(len(ds)):
        item = ds[j]
        with torch.no_grad():
            est = model(item["noisy"][None], item["sigma"][None])
        sums[sigma_tag(float(item["sigma"]))].append(float(psnr_complex(item["clean"][None], est)[0]))
    return {k: sum(v) / len(v) for k, v in sums.items()}


def build_callbacks(recipe: DenoiserRecipe, dm: DenoiserDataModule) -> list[L.Callback]:
    lip = recipe.lipschitz
    if lip.every <= 0:
        return []
    dm.setup()
    assert dm.val_images is not None
    return [LipschitzCallback([dm.val_images[i] for i in range(len(dm.val_images))], every=lip.every,
                              points=lip.points, iters=lip.iters, crop=lip.crop, sigmas=recipe.noise.val_sigmas,
                              seed=recipe.trainer.seed)]


def export(recipe: DenoiserRecipe, module: DenoiserModule, dm: DenoiserDataModule, run_dir: Path) -> dict[str, Any]:
    """Write ``run_dir/model.pt`` and ``model.json``: final PSNR per validation noise level and the certificate."""
    dm.setup()
    assert dm.val_images is not None
    model = module.model.cpu()
    if any(True for _ in sn_layers(model)):
        converge_spectral_norms(model)
    model.eval()
    t0 = time.perf_counter()
    psnr = evaluate_psnr(model, dm.val_images, recipe.noise.val_sigmas, recipe.noise.val_seed)
    lip = recipe.lipschitz
    cert = lipschitz_certificate(model, [dm.val_images[i] for i in range(len(dm.val_images))],
                                 sigmas=recipe.noise.val_sigmas, n_points=lip.final_points, iters=lip.final_iters,
                                 seed=recipe.trainer.seed + 7, crop=lip.final_crop, certify=True)
    info: dict[str, Any] = {
        "description": recipe.description,
        "steps": int(module.global_step),
        "val_psnr_db": psnr,
        "val_slices": len(dm.val_images),
        "certificate": cert.to_dict(),
        "recipe": to_plain(recipe),
    }
    if any(True for _ in sn_layers(model)):
        info["spectral"] = spectral_certificate(model)
    info["eval_seconds"] = round(time.perf_counter() - t0, 1)
    save_weights(model, run_dir / "model.pt", info)
    cert_text = cert.table()
    psnr_text = ", ".join(f"σ={k}/255: {v:.2f} dB" for k, v in psnr.items())
    print(f"validation PSNR ({len(dm.val_images)} slices): {psnr_text}\n{cert_text}")
    if "spectral" in info and info["spectral"]["certified_product"] is not None:
        print(f"product of the layers' certified frequency-domain norms (bound on Lip(N)): "
              f"{info['spectral']['certified_product']:.4f}")
    print(f"wrote {run_dir / 'model.pt'} and {run_dir / 'model.json'}")
    return {"val_psnr_db": psnr, "certificate": cert, "model": run_dir / "model.pt"}


TASK = register_task(TaskSpec(name="denoiser", recipe=DenoiserRecipe, module=DenoiserModule,
                              datamodule=DenoiserDataModule, callbacks=build_callbacks, export=export))

__all__ = ["DenoiserDataModule", "DenoiserModule", "DenoiserRecipe", "ImageDataConfig", "LipschitzConfig",
           "NoiseConfig", "OptimConfig", "TrainerConfig", "evaluate_psnr", "psnr_complex"]

"""Lightning callbacks: the Lipschitz certificate during training."""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import lightning as L
import torch

from mrirecon.denoisers.certificate import lipschitz_certificate


class LipschitzCallback(L.Callback):
    """Run :func:`~mrirecon.denoisers.certificate.lipschitz_certificate` on the model every ``every`` validations.

    Logs ``lip/D``, ``lip/I-D``, ``lip/2D-I`` (maxima over points) and their means (``.../mean``).

    Args:
        images: clean validation slices (complex ``[H, W]`` each).
        every: validations between certificates (0: never during training).
        points, iters, crop, sigmas, seed: passed to the certificate.
    """

    def __init__(self, images: Sequence[torch.Tensor], every: int = 1, points: int = 4, iters: int = 20,
                 crop: int | None = 48, sigmas: Sequence[float] = (5 / 255, 15 / 255, 25 / 255), seed: int = 0) -> None:
        self.images, self.every, self.points, self.iters = list(images), every, points, iters
        self.crop, self.sigmas, self.seed = crop, tuple(sigmas), seed
        self.last: Any = None

    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking or self.every <= 0 or (trainer.current_epoch + 1) % self.every:
            return
        cert = lipschitz_certificate(pl_module.model, self.images, sigmas=self.sigmas, n_points=self.points,
                                     iters=self.iters, seed=self.seed, crop=self.crop)
        self.last = cert
        for name, st in cert.stats.items():
            pl_module.log(f"lip/{name}", st.max, prog_bar=name == "I-D")
            pl_module.log(f"lip/{name}/mean", st.mean)

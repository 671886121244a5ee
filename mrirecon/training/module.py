"""The Lightning module base of every task: the network from the recipe, optimiser, schedule, checkpoint metadata.

Subclasses (one per task) implement ``training_step`` and ``validation_step``. Everything random in a
step draws from :meth:`RecipeModule.step_generator`, seeded by ``(trainer.seed, global step, salt)``,
so a resumed run repeats exactly what an uninterrupted one does.
"""
from __future__ import annotations

import math
from typing import Any

import lightning as L
import numpy as np
import torch

from mrirecon import __version__
from mrirecon.denoisers._config import to_plain
from mrirecon.denoisers.registry import build_model, model_config_dict
from mrirecon.training.checkpoint import CHECKPOINT_FORMAT, CHECKPOINT_VERSION, check_checkpoint
from mrirecon.training.recipes import OptimConfig


def lr_lambda(optim: OptimConfig, max_steps: int) -> Any:
    """The learning-rate factor per optimiser step (warm-up, then cosine / step / constant)."""

    def factor(step: int) -> float:
        if optim.warmup_steps and step < optim.warmup_steps:
            return (step + 1) / optim.warmup_steps
        if optim.schedule == "constant":
            return 1.0
        if optim.schedule == "step":
            return optim.gamma ** sum(step >= m * max_steps for m in optim.milestones)
        t = min(max(step - optim.warmup_steps, 0) / max(max_steps - optim.warmup_steps, 1), 1.0)
        return optim.min_factor + (1 - optim.min_factor) * 0.5 * (1 + math.cos(math.pi * t))

    return factor


class RecipeModule(L.LightningModule):
    """Base Lightning module: builds ``self.model`` from ``recipe.model`` (init seeded by ``trainer.seed``).

    Args:
        recipe: a task recipe (with ``model``, ``optim`` and ``trainer`` sections).

    A task sets ``skip_nonfinite_grads = True`` to skip (zero) any update whose gradient is not finite although
    its loss was, logged as ``train/skipped_nonfinite``, instead of letting one batch poison the weights.
    """

    skip_nonfinite_grads: bool = False

    def __init__(self, recipe: Any) -> None:
        super().__init__()
        self.recipe = recipe
        self.model = build_model(recipe.model.name, recipe.model.options, seed=recipe.trainer.seed)

    def on_after_backward(self) -> None:
        if not self.skip_nonfinite_grads:
            return
        grads = [q.grad for q in self.parameters() if q.grad is not None]
        finite = bool(torch.stack([torch.isfinite(g).all() for g in grads]).all()) if grads else True  # one sync
        if not finite:
            for g in grads:
                g.zero_()
        self.log("train/skipped_nonfinite", 0.0 if finite else 1.0, reduce_fx="sum", batch_size=1)

    def configure_optimizers(self) -> Any:
        o: OptimConfig = self.recipe.optim
        cls = torch.optim.AdamW if o.name == "adamw" else torch.optim.Adam
        opt = cls(self.model.parameters(), lr=o.lr, betas=o.betas, weight_decay=o.weight_decay)
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_lambda(o, self.recipe.trainer.max_steps))
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step", "frequency": 1}}

    def step_generator(self, salt: int = 0) -> torch.Generator:
        """A CPU generator seeded by ``(trainer.seed, global_step, salt)``."""
        state = np.random.SeedSequence([self.recipe.trainer.seed, int(self.global_step), salt]).generate_state(2)
        return torch.Generator().manual_seed(int(state[0]) << 31 ^ int(state[1]))

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        name, config = model_config_dict(self.model)
        rng: dict[str, Any] = {"seed": self.recipe.trainer.seed, "torch": torch.get_rng_state()}
        if torch.cuda.is_available():
            rng["cuda"] = torch.cuda.get_rng_state_all()
        checkpoint["mrirecon"] = {"format": CHECKPOINT_FORMAT, "format_version": CHECKPOINT_VERSION,
                                  "mrirecon_version": __version__, "model": {"name": name, "config": config},
                                  "recipe": to_plain(self.recipe), "rng": rng}

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        meta = check_checkpoint(checkpoint, "(resumed)")
        rng = meta["rng"]
        torch.set_rng_state(rng["torch"])
        if "cuda" in rng and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(rng["cuda"])

"""Step-indexed sampling: dataset items are pure functions of a global index, so runs resume and shard exactly."""
from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import torch
from torch.utils.data import Sampler

from mrirecon.errors import ConfigError


class StepSampler(Sampler[int]):
    """Yields the global sample indices of the next ``steps`` optimiser steps, from the current global step.

    Step ``s`` uses indices ``(s · world + rank) · batch + j`` for ``j < batch``. With datasets whose item ``k``
    depends only on ``(seed, k)`` (e.g. :class:`mrirecon.data.images.NoisyPatches`), step ``s`` sees the same
    samples whether the run went straight through or was resumed from a checkpoint, whatever the loop's epoch
    bookkeeping; under DDP each rank takes its own slice of every step.

    Args:
        steps: optimiser steps per epoch (``trainer.val_every``).
        batch: batch size per rank.
        global_step: returns the number of optimiser steps done (read when an epoch's iterator is created).
    """

    def __init__(self, steps: int, batch: int, global_step: Callable[[], int]) -> None:
        self.steps, self.batch, self.global_step = steps, batch, global_step

    @staticmethod
    def _rank_world() -> tuple[int, int]:
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            return torch.distributed.get_rank(), torch.distributed.get_world_size()
        return 0, 1

    def __iter__(self) -> Iterator[int]:
        rank, world = self._rank_world()
        start = int(self.global_step())
        for s in range(start, start + self.steps):
            base = (s * world + rank) * self.batch
            yield from range(base, base + self.batch)

    def __len__(self) -> int:
        return self.steps * self.batch


def split_folders(source: str, root: str, train: str, val: str) -> tuple[Path, Path]:
    """The train and val folders of a recipe's ``data:`` section (the demo dataset is built on first use).

    Args:
        source: ``"demo"`` (the embedded demo dataset; ``root`` overrides its location) or ``"files"``.
        root: the dataset root; the split folders are relative to it unless absolute.
        train, val: the split folders.

    Raises:
        ConfigError: ``source: files`` without ``root`` and with relative split folders.
    """
    if source == "demo":
        from mrirecon.data.demo import demo_root  # noqa: PLC0415

        base = Path(root) if root else Path(demo_root())
    else:
        if not root and not (Path(train).is_absolute() and Path(val).is_absolute()):
            raise ConfigError("data: source 'files' needs data.root (or absolute data.train and data.val)")
        base = Path(root).expanduser()
    return base / Path(train).expanduser(), base / Path(val).expanduser()

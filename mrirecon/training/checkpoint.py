"""Checkpoints: written atomically, read with ``weights_only=True``, self-describing.

A training checkpoint (``RUN/checkpoints/last.ckpt``) is Lightning's dictionary — network weights
(``state_dict``), optimiser and scheduler states, global step, epoch and loop progress — plus an
``"mrirecon"`` entry: format version, mrirecon version, the model's registered name and config, the
resolved recipe and the RNG states. It is written to a temporary file in the same folder, flushed,
fsynced and moved into place with ``os.replace`` (a crash never leaves a half-written checkpoint under
the final name), and read back with ``torch.load(..., weights_only=True)``: no pickled code runs.

:func:`load_model` rebuilds the network from the config stored in a checkpoint or weights file, with no
training script.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from lightning.fabric.plugins.io.checkpoint_io import CheckpointIO

from mrirecon import __version__
from mrirecon.atomic import atomic_path
from mrirecon.denoisers.zoo import model_from_file, read_model_file
from mrirecon.errors import DataError

CHECKPOINT_FORMAT = "mrirecon-checkpoint"
CHECKPOINT_VERSION = 1


def atomic_torch_save(obj: Any, path: str | Path) -> Path:
    """``torch.save`` to a temporary file beside ``path``, fsync, then ``os.replace`` onto ``path``."""
    p = Path(path)
    with atomic_path(p) as tmp:
        torch.save(obj, tmp)
    return p


def safe_load(path: str | Path, map_location: Any = "cpu") -> dict[str, Any]:
    """``torch.load(path, weights_only=True)`` with a clear error for missing, truncated or corrupted files.

    Raises:
        DataError: the file is missing or cannot be read (names the file and the reason).
    """
    p = Path(path)
    if not p.is_file():
        raise DataError(f"checkpoint {p} does not exist")
    try:
        ckpt = torch.load(p, map_location=map_location, weights_only=True)
    except Exception as exc:  # noqa: BLE001 - RuntimeError/EOFError/UnpicklingError/zip errors
        raise DataError(f"checkpoint {p} cannot be read ({type(exc).__name__}: {str(exc).splitlines()[0][:200]}); "
                        f"the file is truncated or corrupted (or was not written by mrirecon)") from None
    if not isinstance(ckpt, dict):
        raise DataError(f"checkpoint {p}: expected a dictionary, got {type(ckpt).__name__}")
    return ckpt


def check_checkpoint(ckpt: dict[str, Any], path: str | Path) -> dict[str, Any]:
    """The ``mrirecon`` entry of a training checkpoint, validated.

    Raises:
        DataError: not an mrirecon checkpoint, a newer format, or missing fields.
    """
    meta = ckpt.get("mrirecon")
    if not isinstance(meta, dict) or meta.get("format") != CHECKPOINT_FORMAT:
        raise DataError(f"checkpoint {path}: not an mrirecon training checkpoint (no 'mrirecon' entry of format "
                        f"{CHECKPOINT_FORMAT!r})")
    if int(meta.get("format_version", 0)) > CHECKPOINT_VERSION:
        raise DataError(f"checkpoint {path}: format version {meta.get('format_version')} is newer than this "
                        f"mrirecon ({__version__}) reads ({CHECKPOINT_VERSION})")
    for key in ("model", "recipe", "rng"):
        if key not in meta:
            raise DataError(f"checkpoint {path}: the 'mrirecon' entry misses {key!r}")
    for key in ("state_dict", "optimizer_states", "global_step"):
        if key not in ckpt:
            raise DataError(f"checkpoint {path}: misses {key!r} (a partial checkpoint?)")
    return meta


class AtomicCheckpointIO(CheckpointIO):
    """Lightning checkpoint I/O: atomic writes, ``weights_only=True`` reads, clear errors."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path: Any, storage_options: Any | None = None) -> None:
        atomic_torch_save(checkpoint, path)

    def load_checkpoint(self, path: Any, map_location: Any | None = None, weights_only: bool | None = None
                        ) -> dict[str, Any]:
        ckpt = safe_load(path, map_location if map_location is not None else "cpu")
        check_checkpoint(ckpt, path)
        return ckpt

    def remove_checkpoint(self, path: Any) -> None:
        p = Path(path)
        if p.exists():
            p.unlink()


def load_model(path: str | Path) -> torch.nn.Module:
    """Rebuild a network from a training checkpoint or weights file, using the config stored in it.

    Imports the modules that register networks first (denoisers, models), so any registered network loads.

    Raises:
        DataError: unreadable file or weights that do not fit.  KeyError: a model name that is not registered.
    """
    from mrirecon.training.recipes import import_registering_modules

    import_registering_modules()
    return model_from_file(path)


__all__ = ["AtomicCheckpointIO", "atomic_torch_save", "check_checkpoint", "load_model", "read_model_file",
           "safe_load"]

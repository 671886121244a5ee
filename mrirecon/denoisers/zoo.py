"""Shipped denoisers and model files: ``load_denoiser("dncnn-sn")`` or ``load_denoiser("path/model.pt")``.

Two file kinds describe themselves and are read with ``torch.load(..., weights_only=True)``:

* weights files (``.pt``, what ships in ``mrirecon/weights/``): ``{"format": "mrirecon-weights",
  "format_version", "mrirecon_version", "model": {"name", "config"}, "state_dict"}``;
* training checkpoints (``.ckpt``, :mod:`mrirecon.training.checkpoint`): Lightning's dictionary plus an
  ``"mrirecon"`` entry with the same ``model`` description; the network's weights are the
  ``state_dict`` entries under ``model.``.

A shipped denoiser ``NAME`` is ``mrirecon/weights/NAME.pt`` with ``NAME.json`` beside it (its config, the
recipe that trained it, validation PSNR and its Lipschitz certificate). Nothing is downloaded.
"""
from __future__ import annotations

import json
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import torch

from mrirecon import __version__
from mrirecon.atomic import atomic_path
from mrirecon.denoisers.base import Denoiser
from mrirecon.denoisers.equivariant import EquivariantDenoiser
from mrirecon.denoisers.registry import build_model, model_config_dict
from mrirecon.errors import DataError

WEIGHTS_FORMAT = "mrirecon-weights"
FORMAT_VERSION = 1


def weights_dir() -> Path:
    """The folder of the shipped weights (package data ``mrirecon/weights``)."""
    return Path(str(resources.files("mrirecon"))) / "weights"


def shipped_denoisers() -> dict[str, dict[str, Any]]:
    """``{name: description}`` of the shipped denoisers (the JSON beside each weights file)."""
    out = {}
    folder = weights_dir()
    for pt in sorted(folder.glob("*.pt")) if folder.is_dir() else []:
        js = pt.with_suffix(".json")
        out[pt.stem] = json.loads(js.read_text()) if js.exists() else {}
    return out


def read_model_file(path: str | Path) -> dict[str, Any]:
    """Read a weights file or training checkpoint: ``{"name", "config", "state_dict", "raw"}``.

    Raises:
        DataError: missing, truncated or corrupted file, or not an mrirecon weights/checkpoint file (the message
            names the file and what is wrong).
    """
    p = Path(path).expanduser()
    if not p.is_file():
        raise DataError(f"model file {p} does not exist")
    try:
        raw = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - torch raises RuntimeError/EOFError/UnpicklingError/zip errors
        raise DataError(f"model file {p} cannot be read ({type(exc).__name__}: {str(exc).splitlines()[0][:200]}); "
                        f"it is truncated or corrupted, or not a file written by mrirecon") from None
    if not isinstance(raw, dict):
        raise DataError(f"model file {p}: expected a dictionary, got {type(raw).__name__}")
    if raw.get("format") == WEIGHTS_FORMAT:
        meta, state = raw, raw.get("state_dict")
    elif isinstance(raw.get("mrirecon"), dict):
        meta = raw["mrirecon"]
        state = {k[len("model."):]: v for k, v in raw.get("state_dict", {}).items() if k.startswith("model.")}
    else:
        raise DataError(f"model file {p}: neither an mrirecon weights file (format {WEIGHTS_FORMAT!r}) nor an "
                        f"mrirecon training checkpoint (no 'mrirecon' entry); keys: {sorted(raw)[:10]}")
    model = meta.get("model")
    if not isinstance(model, dict) or "name" not in model or not isinstance(model.get("config"), dict):
        raise DataError(f"model file {p}: the 'model' entry must hold 'name' and 'config', got {model!r}")
    if not isinstance(state, dict) or not state:
        raise DataError(f"model file {p}: no network weights (state_dict) found")
    return {"name": model["name"], "config": model["config"], "state_dict": state, "raw": raw}


def model_from_file(path: str | Path) -> torch.nn.Module:
    """Rebuild a registered network from a weights file or checkpoint (eval mode, on the CPU).

    Raises:
        DataError: unreadable file, or weights that do not fit the stored config.  KeyError: unregistered name.
    """
    info = read_model_file(path)
    model = build_model(info["name"], info["config"], seed=None)
    try:
        model.load_state_dict(info["state_dict"])
    except RuntimeError as exc:
        raise DataError(f"model file {path}: the weights do not fit model {info['name']!r} with the stored "
                        f"config ({str(exc).splitlines()[0][:300]})") from None
    return model.eval()


def _atomic_write_bytes(path: Path, write: Any) -> None:
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        write(fh)


def save_weights(model: torch.nn.Module, path: str | Path, info: dict[str, Any] | None = None) -> Path:
    """Write a registered model as a weights file (atomically), and ``info`` as the JSON beside it.

    Args:
        model: a network built by a registered constructor.
        path: the ``.pt`` file.
        info: JSON-ready description (config, certificate, metrics) written to ``path.with_suffix(".json")``
            with the model's name and config added.

    Returns:
        ``path``.
    """
    p = Path(path)
    name, config = model_config_dict(model)
    payload = {"format": WEIGHTS_FORMAT, "format_version": FORMAT_VERSION, "mrirecon_version": __version__,
               "model": {"name": name, "config": config},
               "state_dict": {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}}
    _atomic_write_bytes(p, lambda fh: torch.save(payload, fh))
    if info is not None:
        doc = {"model": {"name": name, "config": config}, **info}
        text = json.dumps(doc, indent=2, sort_keys=False) + "\n"
        _atomic_write_bytes(p.with_suffix(".json"), lambda fh: fh.write(text.encode()))
    return p


def weights_path(name_or_path: str | Path, what: str = "model") -> Path:
    """An existing file, or the shipped ``mrirecon/weights/NAME.pt``.

    Raises:
        KeyError: neither (the message lists the shipped names).
    """
    p = Path(name_or_path).expanduser()
    if p.is_file():
        return p
    shipped = weights_dir() / f"{name_or_path}.pt"
    if not shipped.is_file():
        names = ", ".join(shipped_denoisers()) or "none"
        raise KeyError(f"no {what} {str(name_or_path)!r}: not a file and not a shipped {what} (shipped: {names})")
    return shipped


def load_denoiser(name_or_path: str | Path, equivariant: Literal["average", "random"] | None = None,
                  device: str | torch.device | None = None, seed: int = 0) -> Denoiser:
    """A shipped denoiser by name (``"dncnn-jac"``, ...; ``mrirecon denoisers`` lists them) or one from a file.

    Args:
        name_or_path: a shipped name, or a weights file / training checkpoint path.
        equivariant: wrap in :class:`EquivariantDenoiser` (``"average"`` over the 8 rotations/flips, or ``"random"``).
        device: where to put it.
        seed: seed of ``equivariant="random"``.

    Returns:
        the denoiser in eval mode.

    Raises:
        KeyError: neither a shipped name nor an existing file (the message lists the shipped names).
        DataError: unreadable file.
    """
    p = weights_path(name_or_path, "denoiser")
    model = model_from_file(p)
    if not isinstance(model, Denoiser):
        raise DataError(f"{p}: model {type(model).__name__} is not a denoiser")
    if equivariant is not None:
        model = EquivariantDenoiser(model, mode=equivariant, seed=seed).eval()
    if device is not None:
        model = model.to(device)
    return model

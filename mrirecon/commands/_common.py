"""Helpers shared by the ``recon``, ``demo`` and ``prep`` sub-commands: method options, coil maps, outputs."""
from __future__ import annotations

import argparse
import dataclasses
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mrirecon.atomic import atomic_path
from mrirecon.errors import ConfigError, DataError, ShapeError

GENERIC_OPTIONS = ("lam", "iters", "tol", "weights", "seed")
OUTPUT_SUFFIXES = (".h5", ".npy", ".cfl", ".png", ".nii.gz", ".nii")
MAPS_MODES = ("espirit", "espirit-bart", "rss", "file")


def add_generic_options(p: argparse.ArgumentParser) -> None:
    """``--lam --iters --tol --weights --seed``: passed to the method only when its options have the field."""
    g = p.add_argument_group("method options (passed only to methods that have them)")
    g.add_argument("--lam", type=float, help="regularisation weight")
    g.add_argument("--iters", type=int, help="maximum number of iterations")
    g.add_argument("--tol", type=float, help="stopping tolerance")
    g.add_argument("--weights", help="denoiser/model name or checkpoint path")
    g.add_argument("--seed", type=int, help="seed of the method's randomness")
    g.add_argument("-O", "--option", action="append", default=[], metavar="KEY=VALUE",
                   help="any other option of the method, e.g. -O alpha=5 -O equivariant=random (repeatable; "
                        "values parsed as YAML; unknown keys are errors)")


def method_options(spec: Any, args: argparse.Namespace) -> dict[str, Any]:
    """The generic options the user gave, checked against the method's options dataclass.

    Raises:
        ConfigError: an option the method does not take (the message lists the ones it takes).
    """
    fields = {f.name for f in dataclasses.fields(spec.options)}
    given = {k: getattr(args, k) for k in GENERIC_OPTIONS if getattr(args, k, None) is not None}
    bad = sorted(set(given) - fields)
    if bad:
        takes = sorted(fields & set(GENERIC_OPTIONS)) or "none of them"
        raise ConfigError(f"method {spec.name!r} has no option {', '.join('--' + b for b in bad)} "
                          f"(of the generic options it takes: {takes})")
    for item in getattr(args, "option", None) or []:
        key, sep, text = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ConfigError(f"-O/--option {item!r}: expected KEY=VALUE")
        if key not in fields:
            raise ConfigError(f"method {spec.name!r} has no option {key!r}; it takes {', '.join(sorted(fields))}")
        if key in given:
            raise ConfigError(f"option {key!r} given twice (--{key} and -O {key}=...)")
        import yaml

        try:
            given[key] = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise ConfigError(f"-O {item!r}: cannot parse the value ({exc})") from None
    return given


def check_output_path(path: Path) -> str:
    """The output kind from the file name (``.h5``, ``.npy``, ``.cfl``, ``.png``, ``.nii.gz``).

    Raises:
        ConfigError: an unknown extension (checked before any work is done).
    """
    name = path.name.lower()
    for suf in OUTPUT_SUFFIXES:
        if name.endswith(suf):
            return suf
    raise ConfigError(f"{path}: unknown output extension {''.join(path.suffixes) or '(none)'}; use one of "
                      f"{', '.join(OUTPUT_SUFFIXES)} (.h5 = fastMRI submission 'reconstruction' float32 [slices, H, W])")


# ---------------------------------------------------------------------------------------------
# coil maps
# ---------------------------------------------------------------------------------------------
def estimate_maps(kspace: torch.Tensor, mask: torch.Tensor, mode: str, *, calib_kspace: torch.Tensor | None = None,
                  maps: np.ndarray | None = None, sets: int = 1, who: str = "") -> torch.Tensor:
    """Coil maps for one slice ``[C, H, W]``.

    Args:
        kspace: undersampled k-space ``[C, H, W]``.
        mask: its mask (broadcastable).
        mode: ``"espirit"`` (:func:`mrirecon.operators.espirit.espirit_maps` with ``kernel="auto"``: BART's 6×6
            kernel from a 10-line calibration region up, smaller for narrower ones), ``"espirit-bart"`` (the same
            with BART's per-pixel eigen-solver, ``eig="bart"``), ``"rss"``
            (:func:`mrirecon.operators.coils.lowres_maps` on the fully sampled centre) or ``"file"`` (``maps``).
        calib_kspace: k-space with separate calibration lines merged in (ISMRMRD), used instead of ``kspace``.
        maps: the slice's maps for ``"file"``.
        sets: ESPIRiT map sets.

    Raises:
        ConfigError: unknown mode, or ESPIRiT unavailable.  ShapeError: file maps that do not fit.  DataError: a
            k-space centre ESPIRiT cannot calibrate (named with ``who``).
    """
    k = calib_kspace if calib_kspace is not None else kspace
    if mode == "file":
        if maps is None:
            raise ConfigError(f"{who}--maps file needs --maps-file")
        m = torch.from_numpy(np.asarray(maps, dtype=np.complex64))
        if tuple(m.shape[-3:]) != tuple(kspace.shape[-3:]):
            raise ShapeError(f"{who}maps of shape {list(m.shape)} do not fit k-space {list(kspace.shape)} "
                             f"(expected [(M,) C, H, W])")
        return m
    if mode in ("espirit", "espirit-bart"):
        try:
            from mrirecon.operators.espirit import espirit_maps
        except ImportError:
            raise ConfigError(f"--maps {mode} needs mrirecon.operators.espirit, which this installation lacks; "
                              "use --maps rss") from None
        try:
            return espirit_maps(k, kernel="auto", sets=sets, eig="bart" if mode == "espirit-bart" else "exact")
        except DataError as exc:
            raise DataError(f"{who}{exc.args[0]}; --maps rss or --maps file are the alternatives") from None
    if mode == "rss":
        from mrirecon.operators.coils import acs_size, lowres_maps

        h, w = k.shape[-2:]
        m = (k.abs().sum(dim=-3) > 0).float() if calib_kspace is not None else mask
        ch, cw = acs_size(m, (h, w))
        if ch < 2 or cw < 2:
            raise ConfigError(f"{who}--maps rss needs a fully sampled k-space centre; found a {ch}x{cw} region")
        return lowres_maps(k, (ch, cw))
    raise ConfigError(f"unknown --maps {mode!r}; expected one of {MAPS_MODES}")


def load_maps_file(path: Path, n_slices: int) -> list[np.ndarray]:
    """Maps per slice from a ``.npy`` (``[S, (M,) C, H, W]`` or one slice), a BART ``.cfl`` (``[X, Y, Z, C, M]``)
    or an ``.h5`` sidecar (dataset ``maps``)."""
    if path.suffix == ".npy":
        m = np.load(path)
    elif path.suffix in (".cfl", ".hdr") or not path.suffix:
        from mrirecon.io.cfl import read_cfl

        b = read_cfl(path)
        dims = list(b.shape) + [1] * max(0, 5 - b.ndim)
        b = b.reshape(dims[:5])
        plane = sorted([i for i in range(3) if dims[i] > 1][:2]) or [0, 1]
        b = np.moveaxis(b, plane, [0, 1]).reshape(dims[plane[0]], dims[plane[1]], dims[3], dims[4])
        m = b.transpose(3, 2, 0, 1)              # [M, C, H, W]
        m = m[0] if m.shape[0] == 1 else m
    else:
        from mrirecon.io.h5util import open_h5, read_dataset

        with open_h5(path, "maps file") as f:
            if "maps" not in f:
                raise ConfigError(f"{path}: field 'maps' is missing (expected complex [S, (M,) C, H, W])")
            m = np.asarray(read_dataset(f, "maps", (), str(path)))
    m = np.asarray(m)
    if m.ndim in (3,) or (m.ndim == 4 and n_slices == 1 and m.shape[0] != 1):
        return [m] * n_slices
    if m.shape[0] != n_slices:
        raise ShapeError(f"{path}: maps of shape {list(m.shape)} hold {m.shape[0]} slices, the input {n_slices}")
    return [m[s] for s in range(n_slices)]


# ---------------------------------------------------------------------------------------------
# outputs
# ---------------------------------------------------------------------------------------------
def _atomic(path: Path, write: Any, suffix: str) -> None:
    with atomic_path(path, suffix=suffix) as tmp:
        write(str(tmp))


def magnitude(images: np.ndarray, multi_set: bool) -> np.ndarray:
    """``|x|`` ``[S, H, W]``, root-sum-of-squares over map sets when ``multi_set``."""
    a = np.abs(images)
    return np.sqrt((a ** 2).sum(axis=1)) if multi_set else a


def write_output(path: Path, images: np.ndarray, multi_set: bool = False,
                 voxel_mm: Sequence[float] | None = None, titles: Sequence[str] | None = None) -> None:
    """Write reconstructions ``[S, (M,) H, W]`` complex by extension (see :data:`OUTPUT_SUFFIXES`), atomically.

    ``.h5``: fastMRI submission (``reconstruction`` float32 magnitude ``[S, H, W]``); ``.npy``: the complex
    images; ``.cfl``: complex, BART dims ``[H, W, S]`` (``[H, W, S, 1, M]`` with map sets); ``.png``: a figure
    of the magnitude slices; ``.nii.gz``: magnitude ``[H, W, S]`` float32 with the voxel size when known.
    """
    kind = check_output_path(path)
    mag = magnitude(images, multi_set).astype(np.float32)
    if kind == ".h5":
        from mrirecon.io.fastmri import write_submission

        write_submission(path, mag)
    elif kind == ".npy":
        _atomic(path, lambda t: np.save(t, images.astype(np.complex64)), ".npy")
    elif kind == ".cfl":
        from mrirecon.io.cfl import write_cfl

        if multi_set:                                           # [S, M, H, W] -> [H, W, S, 1, M]
            t = images.transpose(2, 3, 0, 1)
            arr = t.reshape(t.shape[0], t.shape[1], t.shape[2], 1, t.shape[3])
        else:                                                   # [S, H, W] -> [H, W, S]
            arr = images.transpose(1, 2, 0)
        write_cfl(path, arr)
    elif kind == ".png":
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        n = mag.shape[0]
        cols = min(n, 6)
        rows = (n + cols - 1) // cols
        fig, axes = plt.subplots(rows, cols, figsize=(2.6 * cols, 2.6 * rows * mag.shape[1] / mag.shape[2] + 0.3),
                                 squeeze=False)
        vmax = float(np.percentile(mag, 99.5)) or 1.0
        for i, ax in enumerate(axes.ravel()):
            ax.axis("off")
            if i < n:
                ax.imshow(mag[i], cmap="gray", vmin=0, vmax=vmax)
                ax.set_title(titles[i] if titles else f"slice {i}", fontsize=8)
        fig.tight_layout()
        _atomic(path, lambda t: fig.savefig(t, dpi=100, format="png"), ".png")
        plt.close(fig)
    else:
        import nibabel as nib

        vox = tuple(voxel_mm) if voxel_mm else (1.0, 1.0, 1.0)
        affine = np.diag([vox[0], vox[1], vox[2], 1.0])
        img = nib.Nifti1Image(np.ascontiguousarray(np.moveaxis(mag, 0, -1)), affine)
        img.header.set_xyzt_units("mm")
        _atomic(path, lambda t: nib.save(img, t), ".nii.gz" if kind == ".nii.gz" else ".nii")

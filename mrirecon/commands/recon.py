"""``mrirecon recon INPUT -o OUTPUT --method M``: reconstruct every slice of a raw data file.

INPUT: fastMRI ``.h5``, ISMRMRD ``.h5``/``.mrd`` or BART ``.cfl``. OUTPUT by extension: ``.h5`` (fastMRI
submission: ``reconstruction`` float32 ``[slices, H, W]``, cropped to the recon size), ``.npy`` (complex),
``.cfl``, ``.png`` (a figure), ``.nii.gz``. Fully sampled input can be undersampled retrospectively
(``--accel``, ``--center-fraction``, ``--mask KIND|FILE``).
"""
from __future__ import annotations

import argparse
import dataclasses
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mrirecon.commands._common import (
    MAPS_MODES,
    add_generic_options,
    check_output_path,
    estimate_maps,
    load_maps_file,
    method_options,
    write_output,
)
from mrirecon.errors import ConfigError

HELP = "reconstruct a fastMRI/ISMRMRD/BART file with a registered method and write .h5/.npy/.cfl/.png/.nii.gz"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("input", type=Path, nargs="?", help="fastMRI .h5, ISMRMRD .h5/.mrd or BART .cfl k-space")
    p.add_argument("-o", "--output", type=Path,
                   help="output file: .h5 (fastMRI submission), .npy (complex), .cfl, .png (figure), .nii.gz")
    p.add_argument("--method", default="zf", help="reconstruction method (see --list-methods; default zf)")
    p.add_argument("--list-methods", action="store_true", help="list the registered methods and exit")
    p.add_argument("--maps", choices=MAPS_MODES, default="espirit",
                   help="coil maps for methods that need them: espirit (default), espirit-bart (BART's "
                        "per-pixel eigen-solver: the maps of bart ecalib), rss (low-resolution ratio maps), "
                        "file (--maps-file)")
    p.add_argument("--maps-file", type=Path, help="maps for --maps file: .npy [S, (M,) C, H, W], .cfl or .h5 sidecar")
    p.add_argument("--slices", help="slice range to reconstruct, e.g. 3 or 2:6 (default: all)")
    g = p.add_argument_group("retrospective undersampling (fully sampled input only)")
    g.add_argument("--accel", type=float, help="acceleration factor")
    g.add_argument("--center-fraction", type=float, help="fraction of fully sampled central lines (1D masks)")
    g.add_argument("--mask", default=None,
                   help="mask kind (random, equispaced, poisson, gaussian; default random) or a .npy/.cfl mask file")
    g.add_argument("--calib", type=int, help="calibration box size for 2D masks (poisson, gaussian)")
    g.add_argument("--mask-seed", type=int, default=0, help="seed of the retrospective mask (default 0; + slice)")
    r = p.add_argument_group("raw data")
    r.add_argument("--no-prewhiten", action="store_true", help="ISMRMRD: do not prewhiten with the noise scans")
    r.add_argument("--combine-averages", action="store_true", help="ISMRMRD: average repeated acquisitions")
    r.add_argument("--no-crop", action="store_true", help="keep the full matrix (do not crop to the recon size)")
    h = p.add_argument_group("convergence history (iterative methods)")
    h.add_argument("--plot", action="store_true",
                   help="also draw the convergence plot OUTPUT.history.png (residual, objective, step sizes)")
    h.add_argument("--no-history", action="store_true",
                   help="do not write OUTPUT.history.json (written by default for iterative methods)")
    add_generic_options(p)


def _slice_range(spec: str | None, n: int) -> list[int]:
    if spec is None:
        return list(range(n))
    try:
        if ":" in spec:
            a, b = spec.split(":", 1)
            idx = list(range(n))[slice(int(a) if a else None, int(b) if b else None)]
        else:
            i = int(spec)
            idx = [list(range(n))[i]]
    except (ValueError, IndexError):
        raise ConfigError(f"--slices {spec!r}: expected an index or a range a:b within 0..{n - 1}") from None
    if not idx:
        raise ConfigError(f"--slices {spec!r} selects no slice of {n}")
    return idx


def retrospective(loaded: Any, args: argparse.Namespace) -> None:
    """Undersample the loaded slices in place when ``--accel``/``--mask`` ask for it."""
    from mrirecon.data.inputs import mask_from_file, undersample

    if args.accel is None and args.mask is None:
        if args.center_fraction is not None or args.calib is not None:
            raise ConfigError("--center-fraction/--calib need --accel (and optionally --mask KIND)")
        return
    if args.mask is not None and Path(args.mask).suffix in (".npy", ".cfl", ".hdr"):
        if args.accel is not None:
            raise ConfigError("give either --mask FILE or --accel, not both")
        for i, s in enumerate(loaded.samples):
            h, w = s.kspace.shape[-2:]
            if not loaded.fully_sampled:
                raise ConfigError(f"{loaded.path}: --mask FILE needs fully sampled data; the input is "
                                  f"{loaded.sampling}")
            m = mask_from_file(args.mask, (h, w))
            loaded.samples[i] = s.replace(kspace=s.kspace * m + 0.0, mask=m)
        return
    from mrirecon.operators.masks import MaskSpec

    if args.accel is None:
        raise ConfigError("--mask KIND needs --accel")
    kind = args.mask or "random"
    cf = args.center_fraction
    if cf is None and (kind in ("random", "equispaced") or args.calib is None):
        cf = 0.08 if args.accel <= 4 else 0.04   # fastMRI's pairs (4x: 8 %, 8x: 4 %); 2D kinds: calibration box
    spec = MaskSpec(kind, args.accel, center_fraction=cf, calib=args.calib)
    for i, s in enumerate(loaded.samples):
        loaded.samples[i] = undersample(s, spec, (args.mask_seed, i), s.meta.extra.get("padding"))


def reconstruct_slices(loaded: Any, method: str, options: dict[str, Any], maps_mode: str,
                       maps_file: Path | None, indices: list[int], progress: bool = True,
                       results: list[Any] | None = None) -> tuple[np.ndarray, bool, list[dict[str, Any]]]:
    """Reconstruct the chosen slices; returns images ``[S, (M,) H, W]`` complex, multi_set, per-slice info.

    ``results``, when given, receives each slice's :class:`~mrirecon.methods.ReconResult` without its image
    (history and info, for :func:`mrirecon.methods.history.save_history`).
    """
    from tqdm import tqdm

    from mrirecon.methods import get_method, reconstruct

    spec = get_method(method)
    file_maps = load_maps_file(maps_file, len(loaded.samples)) if (spec.needs_maps and maps_mode == "file"
                                                                   and maps_file is not None) else None
    images, infos = [], []
    multi = False
    it = tqdm(indices, desc=f"{method}", unit="slice", disable=not progress or len(indices) < 2)
    for i in it:
        s = loaded.samples[i]
        if spec.needs_maps:
            maps = estimate_maps(s.kspace, s.mask, maps_mode, calib_kspace=loaded.calib[i],
                                 maps=None if file_maps is None else file_maps[i], who=f"{loaded.path}: ")
            s = s.replace(maps=maps.to(s.kspace.dtype))
        res = reconstruct(s, method, **options)
        multi = s.multi_set
        images.append(res.image.detach().cpu().numpy())
        infos.append(res.info)
        if results is not None:
            results.append(dataclasses.replace(res, image=torch.empty(0)))
    return np.stack(images), multi, infos


def run(args: argparse.Namespace) -> int:
    from mrirecon.data.inputs import load_input
    from mrirecon.data.transforms import center_crop_or_pad
    from mrirecon.methods import get_method, method_names

    if args.list_methods:
        for name in method_names():
            spec = get_method(name)
            print(f"{name:<14} {'(needs maps) ' if spec.needs_maps else ''}{spec.description}")
        return 0
    if args.input is None or args.output is None:
        raise ConfigError("recon needs INPUT and -o OUTPUT (or --list-methods)")
    check_output_path(args.output)
    spec = get_method(args.method)
    options = method_options(spec, args)
    if args.maps == "file" and args.maps_file is None and spec.needs_maps:
        raise ConfigError("--maps file needs --maps-file PATH")
    t0 = time.perf_counter()
    loaded = load_input(args.input, prewhiten=not args.no_prewhiten, combine_averages=args.combine_averages)
    retrospective(loaded, args)
    from mrirecon.data.inputs import describe_sampling

    s0 = loaded.samples[0]
    sampling = describe_sampling(s0.mask.expand(1, *s0.kspace.shape[-2:]), s0.meta.extra.get("padding"))
    indices = _slice_range(args.slices, len(loaded.samples))
    results: list[Any] = []
    images, multi, infos = reconstruct_slices(loaded, args.method, options, args.maps, args.maps_file, indices,
                                              results=results)
    if loaded.recon_size and not args.no_crop:
        images = center_crop_or_pad(torch.from_numpy(images), loaded.recon_size).numpy()
    titles = [f"{loaded.samples[i].meta.extra.get('label', f'slice {i}')}" for i in indices]
    write_output(args.output, images, multi, loaded.voxel_mm, titles)
    dt = time.perf_counter() - t0
    written = _write_history(args, results, indices)
    targets = [loaded.samples[i].target for i in indices]
    if all(t is not None for t in targets) and not args.no_crop:
        from mrirecon.commands._common import magnitude
        from mrirecon.metrics import nmse, psnr, ssim

        gt = np.stack([t.numpy() for t in targets]).astype(np.float64)
        pred = magnitude(images, multi).astype(np.float64)
        if gt.shape == pred.shape:
            print(f"against the file's target ({len(indices)} slices): NMSE {nmse(gt, pred):.4f}, "
                  f"PSNR {psnr(gt, pred):.2f} dB, SSIM {ssim(gt, pred):.4f}")
    print(f"{args.method}: {len(indices)} slice(s) of {args.input.name} ({loaded.format}, {sampling}"
          f"{', retrospective' if args.accel or args.mask else ''}) "
          f"-> {args.output} in {dt:.1f} s")
    for line in written:
        print(line)
    return 0


def _write_history(args: argparse.Namespace, results: list[Any], indices: list[int]) -> list[str]:
    """``OUTPUT.history.json`` (unless ``--no-history``) and, with ``--plot``, ``OUTPUT.history.png``."""
    from mrirecon.methods.history import plot_history, save_history

    if not any(getattr(r, "history", None) is not None for r in results):
        return [f"{args.method} is not iterative: no convergence history" + (" to plot" if args.plot else "")] \
            if args.plot else []
    lines = []
    if not args.no_history:
        lines.append(f"history: {save_history(results, args.output, args.method, indices)}")
    if args.plot:
        from mrirecon.methods.history import history_document

        lines.append(f"convergence plot: {plot_history(history_document(results, args.method, indices), args.output)}")
    for r, i in zip(results, indices):
        info = getattr(r, "info", {}) or {}
        if info.get("stop_reason") == "diverged":
            lines.append(f"warning: slice {i} diverged at iteration {info.get('iterations')} (see the history)")
    return lines

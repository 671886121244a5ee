"""``mrirecon demo``: reconstruct a validation slice of the demo dataset with every registered method.

Builds the embedded demo dataset on first use (:func:`mrirecon.data.demo.demo_root`), undersamples the
middle slice of a validation volume retrospectively (default: random 1D lines, 4×, 8 % centre), estimates
ESPIRiT maps once for the methods that need them, runs each registered method with its default options
and writes a comparison figure (images, error maps, PSNR/SSIM against the noise-free ground truth) and
a metrics table (Markdown).
"""
from __future__ import annotations

import argparse
import time
import traceback
from pathlib import Path
from typing import Any

import numpy as np
import torch

HELP = "reconstruct a demo validation slice with every available method; write a figure and a metrics table"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("-o", "--out", type=Path, default=Path("demo_out"), help="output folder (default: demo_out)")
    p.add_argument("--data", type=Path, help="a dataset root with val/ (default: the embedded demo dataset)")
    p.add_argument("--file", help="validation file name (default: the first axial one)")
    p.add_argument("--slice", type=int, help="slice index (default: the middle slice)")
    p.add_argument("--accel", type=float, default=4.0, help="acceleration (default 4)")
    p.add_argument("--center-fraction", type=float, default=0.08, help="fully sampled centre fraction (default 0.08)")
    p.add_argument("--mask", default="random", help="mask kind: random (default), equispaced, poisson, gaussian")
    p.add_argument("--methods", help="comma-separated methods (default: every registered method)")
    p.add_argument("--maps", choices=("espirit", "rss"), default="espirit", help="coil maps (default espirit)")
    p.add_argument("--seed", type=int, default=0, help="mask seed (default 0)")


def _pick(root: Path, name: str | None) -> Path:
    from mrirecon.errors import DataError

    files = sorted((root / "val").glob("*.h5"))
    if not files:
        raise DataError(f"{root / 'val'}: no validation .h5 files")
    if name:
        for f in files:
            if f.name == name or f.stem == name:
                return f
        raise DataError(f"{root / 'val'}: no file {name!r}; have {[f.name for f in files]}")
    return next((f for f in files if "axial" in f.name), files[0])


def run_demo(args: argparse.Namespace) -> dict[str, Any]:
    """Run the demo; returns ``{"rows": [...], "figure": path, "table": path}`` (also used by the tests)."""
    import h5py

    from mrirecon.commands._common import estimate_maps
    from mrirecon.data.demo import demo_root
    from mrirecon.data.inputs import undersample
    from mrirecon.data.sample import KSpaceSample, SampleMeta
    from mrirecon.errors import MriReconError
    from mrirecon.methods import get_method, method_names, reconstruct
    from mrirecon.metrics import psnr, ssim
    from mrirecon.operators.masks import MaskSpec

    root = args.data or demo_root(build=True)
    path = _pick(root, args.file)
    with h5py.File(path, "r") as f:
        n = f["kspace"].shape[0]
        sl = n // 2 if args.slice is None else args.slice
        if not 0 <= sl < n:
            raise MriReconError(f"{path}: --slice {sl} outside 0..{n - 1}")
        k = torch.from_numpy(f["kspace"][sl])
        gt = np.abs(f["image"][sl]) if "image" in f else f["reconstruction_rss"][sl]
        ref_name = "noise-free ground truth |image|" if "image" in f else "reconstruction_rss"
    cf = args.center_fraction   # 1D kinds: central lines; 2D kinds: a centred calibration box of this fraction
    spec = MaskSpec(args.mask, args.accel, center_fraction=cf)
    sample = undersample(KSpaceSample(kspace=k, mask=torch.ones(1, 1, k.shape[-1]),
                                      meta=SampleMeta(file=path.name, slice=sl)), spec, (args.seed, sl))
    names = [m.strip() for m in args.methods.split(",")] if args.methods else method_names()
    specs = [get_method(m) for m in names]
    maps = None
    t_maps = 0.0
    if any(s.needs_maps for s in specs):
        t0 = time.perf_counter()
        maps = estimate_maps(sample.kspace, sample.mask, args.maps)
        t_maps = time.perf_counter() - t0
    rows: list[dict[str, Any]] = []
    images: dict[str, np.ndarray] = {}
    for s in specs:
        t0 = time.perf_counter()
        try:
            res = reconstruct(sample.replace(maps=maps) if s.needs_maps else sample, s.name)
            img = res.magnitude(multi_set=maps is not None and s.needs_maps and maps.ndim == 4).numpy()
            img = np.abs(img).astype(np.float64)
            dt = time.perf_counter() - t0
            images[s.name] = img
            rows.append({"method": s.name, "psnr": psnr(gt, img), "ssim": ssim(gt[None], img[None]),
                         "time_s": dt, "maps": args.maps if s.needs_maps else "-", "error": ""})
        except Exception as exc:  # one failing method must not hide the others; reported in the table
            rows.append({"method": s.name, "psnr": float("nan"), "ssim": float("nan"),
                         "time_s": time.perf_counter() - t0, "maps": args.maps if s.needs_maps else "-",
                         "error": f"{type(exc).__name__}: {exc}".splitlines()[0][:200]})
            if getattr(args, "debug", False):
                traceback.print_exc()
    out = args.out
    out.mkdir(parents=True, exist_ok=True)
    fig_path, table_path = out / "demo.png", out / "metrics.md"
    _figure(fig_path, gt, images, rows, f"{path.name} slice {sl}, {args.mask} {args.accel:g}×")
    maps_note = (f"maps: {args.maps} ({t_maps:.2f} s, shared by the methods that need maps)" if maps is not None
                 else "no method needs coil maps")
    lines = [f"Demo: `{path.name}` slice {sl}, mask {args.mask} {args.accel:g}× "
             f"(centre fraction {cf}), seed {args.seed}; reference: {ref_name}; {maps_note}.", "",
             "| method | PSNR (dB) | SSIM | time (s) | maps | error |", "|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['method']} | {r['psnr']:.2f} | {r['ssim']:.4f} | {r['time_s']:.2f} | {r['maps']} | "
                     f"{r['error']} |")
    table = "\n".join(lines) + "\n"
    from mrirecon.commands._common import _atomic

    _atomic(table_path, lambda t: Path(t).write_text(table), ".md")
    return {"rows": rows, "figure": fig_path, "table": table_path, "text": table}


def _figure(path: Path, gt: np.ndarray, images: dict[str, np.ndarray], rows: list[dict[str, Any]], title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from mrirecon.commands._common import _atomic

    n = len(images) + 1
    fig, axes = plt.subplots(2, n, figsize=(2.6 * n, 2.6 * 2 * gt.shape[0] / gt.shape[1] + 0.6), squeeze=False)
    vmax = float(gt.max())
    axes[0, 0].imshow(gt, cmap="gray", vmin=0, vmax=vmax)
    axes[0, 0].set_title("ground truth", fontsize=8)
    axes[1, 0].text(0.5, 0.5, "error maps\n(×5, same scale)", ha="center", va="center", fontsize=8)
    metrics = {r["method"]: r for r in rows}
    for j, (name, img) in enumerate(images.items(), start=1):
        r = metrics[name]
        axes[0, j].imshow(img, cmap="gray", vmin=0, vmax=vmax)
        axes[0, j].set_title(f"{name}\nPSNR {r['psnr']:.2f} dB, SSIM {r['ssim']:.3f}", fontsize=8)
        axes[1, j].imshow(np.abs(img - gt), cmap="inferno", vmin=0, vmax=vmax / 5)
    for ax in axes.ravel():
        ax.axis("off")
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    _atomic(path, lambda t: fig.savefig(t, dpi=100, format="png"), ".png")
    plt.close(fig)


def run(args: argparse.Namespace) -> int:
    t0 = time.perf_counter()
    result = run_demo(args)
    print(result["text"], end="")
    failed = [r["method"] for r in result["rows"] if r["error"]]
    print(f"wrote {result['figure']} and {result['table']} in {time.perf_counter() - t0:.1f} s")
    if failed:
        print(f"mrirecon demo: {len(failed)} method(s) failed: {', '.join(failed)} (see the table)")
        return 1
    return 0

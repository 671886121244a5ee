"""Measured convergence of the PnP methods on one demo slice: fixed-point residual and PSNR per iteration.

Runs each PnP variant (its method's defaults: scaling, noise-balanced ``alpha``/``lam``, start) for a fixed
number of iterations without a tolerance and records, after every iteration, the fixed-point residual
``‖x_{k+1} − x_k‖ / ‖x_0‖`` and the PSNR of ``|x_k|`` against the noise-free ground truth ``|image|``. A
convergent method shows a falling residual and a PSNR that settles; a non-convergent one a residual that
stalls and a PSNR that drifts (often down: the early iterates of an unstable PnP look best).

    python benchmarks/pnp_convergence.py --iters 300 --out pnp_convergence.png [--weights NAME=PATH ...]
"""
from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this checkout, not an installed copy

from benchmarks._common import save_figure  # noqa: E402

VARIANTS = [("PnP-ADMM, plain DnCNN", "admm", "dncnn", "none"),
            ("PnP-ADMM, real-SN DnCNN", "admm", "dncnn-sn", "none"),
            ("PnP-ADMM, Jacobian-penalised DnCNN", "admm", "dncnn-jac", "none"),
            ("PnP-FBS, real-SN DnCNN", "fbs", "dncnn-sn", "none"),
            ("equivariant PnP-ADMM, real-SN", "admm", "dncnn-sn", "random"),
            ("GS-PnP, GS-DRUNet", "gs", "gs-drunet", "none")]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--split", default="test")
    p.add_argument("--index", type=int, default=17, help="slice index in the split (default 17)")
    p.add_argument("--accel", type=float, default=4)
    p.add_argument("--center-fraction", type=float, default=0.08)
    p.add_argument("--iters", type=int, default=300)
    p.add_argument("--weights", nargs="*", default=[], metavar="NAME=PATH")
    p.add_argument("--out", type=Path, default=Path("pnp_convergence.png"))
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from mrirecon.data.demo import demo_root
    from mrirecon.data.fastmri import FastMRISliceDataset
    from mrirecon.errors import DivergenceError, MissingWeightsError
    from mrirecon.methods.pnp import load_prior, prepare
    from mrirecon.metrics import psnr
    from mrirecon.operators.espirit import espirit_maps
    from mrirecon.operators.masks import MaskSpec
    from mrirecon.solvers import GradientStepPnP, PnPADMM, PnPFBS, run

    root = Path(demo_root()) / args.split
    ds = FastMRISliceDataset(root, mask=MaskSpec("equispaced", args.accel, args.center_fraction), fixed_masks=True)
    sample = ds[args.index]
    sample = sample.replace(maps=espirit_maps(FastMRISliceDataset(root)[args.index].kspace))
    with h5py.File(root / sample.meta.file, "r") as f:
        truth = np.abs(f["image"][sample.meta.slice])
    weights = dict(w.split("=", 1) for w in args.weights)
    prob = prepare(sample, 10, True)
    scale = float(prob.scale)
    sigma = 0.05
    noise = prob.noise_or(sigma)
    print(f"{sample.meta.file}[{sample.meta.slice}], {args.accel:g}x: image scale {scale:.3e}, estimated noise "
          f"{noise:.4f} (normalised); alpha (ADMM) {(sigma / noise) ** 2:.2f}, lam (GS) {(noise / sigma) ** 2:.3f}")
    curves = {}
    lines = ["| variant | " + " | ".join(f"PSNR* @{k}" for k in (10, 50, 100, args.iters)) +
             " | residual @100 | residual @end |", "|---|" + "---|" * 6]
    for label, kind, name, eq in VARIANTS:
        try:
            den = load_prior(weights.get(name, name), eq, 0, prob.x0)
        except MissingWeightsError as exc:
            print(f"{label}: {exc}; skipped")
            continue
        if kind == "admm":
            solver = PnPADMM(prob.data, None, den, sigma=sigma, alpha=(sigma / noise) ** 2, max_iter=args.iters, tol=0)
        elif kind == "fbs":
            solver = PnPFBS(prob.data, None, den, sigma=noise, max_iter=args.iters, tol=0)
        else:
            solver = GradientStepPnP(prob.data, None, den, sigma=sigma, lam=(noise / sigma) ** 2, max_iter=args.iters,
                                     tol=0)
        ps: list[float] = []

        def record(state: Any, hist: Any, ps: list[float] = ps) -> None:
            ps.append(psnr(truth, state.x.abs().numpy() * scale))

        try:
            _, hist = run(solver, prob.x0, callback=record, raise_on_divergence=False)
        except DivergenceError:
            continue
        curves[label] = (hist.residual, ps)
        at = [ps[k - 1] if k <= len(ps) else math.nan for k in (10, 50, 100, args.iters)]
        r100 = hist.residual[99] if len(hist.residual) >= 100 else math.nan
        lines.append(f"| {label} | " + " | ".join(f"{v:.2f}" for v in at) +
                     f" | {r100:.1e} | {hist.residual[-1]:.1e} ({hist.stop_reason}) |")
        print(lines[-1], flush=True)
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.6))
    for label, (res, ps) in curves.items():
        axes[0].semilogy(range(1, len(res) + 1), res, lw=1, label=label)
        axes[1].plot(range(1, len(ps) + 1), ps, lw=1, label=label)
    axes[0].axhline(1e-4, ls="--", c="k", lw=0.8)
    axes[0].set(xlabel="iteration", ylabel="‖x_{k+1} − x_k‖ / ‖x_0‖", title="fixed-point residual")
    axes[1].set(xlabel="iteration", ylabel="PSNR vs noise-free truth (dB)",
                title=f"{sample.meta.file} slice {sample.meta.slice}, {args.accel:g}x equispaced")
    axes[1].legend(fontsize=7)
    fig.tight_layout()
    save_figure(fig, args.out, dpi=110)
    print("\n".join(lines))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

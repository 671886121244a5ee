"""DEQ / RERG / unrolled-ADMM results on the demo dataset, beside PnP-ADMM and the classical baselines.

Every slice of a split (or an evenly spaced subset, ``--slices N``) is undersampled retrospectively with
fastMRI's equispaced masks (fixed per file and slice; centre fraction 0.08 at 4×, 0.04 at 8×); coil maps
are estimated once per slice from the fully sampled 24×24 k-space centre (``--maps espirit``, default, or
``lowres``) and shared by all methods, or (``--maps acs``) by ESPIRiT from the undersampled slice's own ACS lines,
as ``mrirecon recon`` does (``--acs-kernel`` overrides its ``kernel="auto"``), or (``--maps acs-lowres``) as
low-resolution ratio maps from those lines, as ``mrirecon recon --maps rss`` does. Metrics follow fastMRI: per volume (the slices of one file), ``|x|``
against ``reconstruction_rss`` with the volume maximum as data range, then averaged over volumes; ``PSNR*`` is
the same against the noise-free ``|image|`` of the demo files (``reconstruction_rss`` is the RSS of the noisy
scan, so PSNR against it has a ceiling; see the README's PnP results).
Time per slice is the wall time of ``reconstruct`` (median over slices; single-threaded by default, taken
under whatever load the machine has). Rows whose method is not registered (e.g. PnP before it lands) or
whose weights are missing are reported as skipped.

The second table (``--anderson``) runs the DEQs' fixed-point iterations to a relative residual of
``--tol`` (default 1e-4) with Anderson acceleration and with plain iteration and reports the iteration counts.

    python benchmarks/equilibrium_results.py --split test --slices 12 --json results.json
"""
from __future__ import annotations

import argparse
import dataclasses
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this checkout, not an installed copy

from benchmarks._common import VolumeScores, load_split, truth_image, write_json  # noqa: E402

ROWS: dict[str, tuple[str, str, dict[str, Any]]] = {
    "zf": ("zero-filled", "zf", {}),
    "sense": ("SENSE (CG)", "sense", {}),
    "cs-wavelet": ("CS L1-wavelet", "cs-wavelet", {}),
    "pnp-admm": ("PnP-ADMM (real-SN DnCNN, default σ, stopped at 100 iterations)", "pnp-admm",
                 {"weights": "dncnn-sn", "iters": 100, "divergence": "stop"}),
    "pnp-admm-default": ("PnP-ADMM (default: firmly non-expansive dncnn-jac, ≤ 300 iterations)", "pnp-admm", {}),
    "deq": ("DEQ-GD (deq-demo; default: its training budget, ≤ 15 iterations, tol 1e-3)", "deq",
            {"weights": "deq-demo"}),
    "deq-fixed-point": ("DEQ-GD towards its fixed point (≤ 100 iterations, tol 1e-4)", "deq",
                        {"weights": "deq-demo", "iters": 100, "tol": 1e-4}),
    "rerg": ("RERG (rerg-demo; default: its training budget)", "deq", {"weights": "rerg-demo"}),
    "rerg-fixed-point": ("RERG towards its fixed point (≤ 100 iterations, tol 1e-4)", "deq",
                         {"weights": "rerg-demo", "iters": 100, "tol": 1e-4}),
    "deq-admm": ("DEQ-ADMM from dncnn-jac (deq-admm-demo; default: its training budget, ≤ 40 iterations, tol 1e-3)",
                 "deq", {"weights": "deq-admm-demo"}),
    "deq-admm-fixed-point": ("DEQ-ADMM to its fixed point (≤ 100 iterations, tol 1e-4)", "deq",
                             {"weights": "deq-admm-demo", "iters": 100, "tol": 1e-4}),
    "deq-sn": ("DEQ-FBS with a certified contraction (deq-sn-demo; Lip(T) ≤ 0.9995)", "deq", {"weights": "deq-sn-demo"}),
    "deq-sn-fixed-point": ("DEQ-FBS certified, to its fixed point (≤ 100 iterations, tol 1e-4)", "deq",
                           {"weights": "deq-sn-demo", "iters": 100, "tol": 1e-4}),
    "unrolled-admm": ("unrolled ADMM, T = 8 (unrolled-admm-demo)", "unrolled-admm", {"weights": "unrolled-admm-demo"}),
}



def slice_maps(kspace: torch.Tensor, kind: str) -> torch.Tensor:
    if kind == "espirit":
        from mrirecon.operators.espirit import espirit_maps

        return espirit_maps(kspace, calib=24)
    from mrirecon.operators.coils import lowres_maps

    return lowres_maps(kspace, 24)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--split", default="test", choices=["train", "val", "test"])
    p.add_argument("--accels", type=float, nargs="+", default=[4, 8])
    p.add_argument("--slices", type=int, default=12, help="evenly spaced subset of the split (0: all slices)")
    p.add_argument("--rows", nargs="+", default=list(ROWS), help=f"rows (default: {' '.join(ROWS)})")
    p.add_argument("--maps", choices=["espirit", "lowres", "acs", "acs-lowres"], default="espirit",
                   help="espirit/lowres: from the fully sampled 24x24 centre (a calibration scan); acs: ESPIRiT from "
                        "the undersampled data's own ACS lines, as `mrirecon recon` estimates them; acs-lowres: "
                        "low-resolution coil images over their RSS from the same ACS lines (`recon --maps rss`)")
    p.add_argument("--acs-kernel", default="auto", help="ESPIRiT kernel of --maps acs: 'auto' (default) or a size")
    p.add_argument("--weights", nargs="*", default=[], metavar="NAME=PATH",
                   help="use the weights file PATH wherever a row names the shipped NAME")
    p.add_argument("--anderson", nargs="*", default=["deq", "rerg"], help="rows for the Anderson/plain table")
    p.add_argument("--tol", type=float, default=1e-4, help="tolerance of the Anderson/plain comparison")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--json", type=Path, default=None)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)

    from mrirecon.data.demo import demo_root
    from mrirecon.errors import MriReconError
    from mrirecon.methods import get_method, method_names, reconstruct

    available = set(method_names())
    subst = dict(w.split("=", 1) for w in args.weights)
    results: dict[str, Any] = {"split": args.split, "maps": args.maps, "command": " ".join(sys.argv), "rows": {},
                               "anderson": {}}
    table = ["| method | accel | PSNR (dB) | SSIM | PSNR* (dB) | iterations | converged | s/slice (median) |",
             "|---|---|---|---|---|---|---|---|"]
    atable = ["| network | accel | Anderson iterations (mean / max) | plain iterations (mean / max) | "
              "converged (Anderson / plain) |", "|---|---|---|---|---|"]
    maps_cache: dict[int, torch.Tensor] = {}
    truths: dict[tuple[str, int], np.ndarray] = {}  # the noise-free images, read once for all accelerations
    root = Path(demo_root()) / args.split
    for accel in args.accels:
        cf = 0.08 if accel <= 4 else 0.04
        ds, full, idx = load_split(args.split, accel, cf, args.slices)
        print(f"# {args.split}: {len(idx)} slices, {accel:g}x equispaced, centre {cf}, {args.maps} maps", flush=True)
        if args.maps == "acs":  # depends on the mask: per acceleration; the maps of `mrirecon recon`
            from mrirecon.operators.espirit import espirit_maps

            kernel = args.acs_kernel if args.acs_kernel == "auto" else int(args.acs_kernel)
            samples = [ds[i].replace(maps=espirit_maps(ds[i].kspace, kernel=kernel)) for i in idx]
        elif args.maps == "acs-lowres":  # `mrirecon recon --maps rss`: the fully sampled centre of the slice
            from mrirecon.operators.coils import acs_size, lowres_maps

            samples = []
            for i in idx:
                k = ds[i].kspace
                samples.append(ds[i].replace(maps=lowres_maps(k, acs_size(k.abs().sum(-3) > 0, k.shape[-2:]))))
        else:
            for i in idx:
                if i not in maps_cache:
                    maps_cache[i] = slice_maps(full[i].kspace, args.maps)
            samples = [ds[i].replace(maps=maps_cache[i]) for i in idx]
        for s in samples:
            if (s.meta.file, s.meta.slice) not in truths:
                truths[s.meta.file, s.meta.slice] = truth_image(root, s.meta)
        for key in args.rows:
            label, method, opts = ROWS[key]
            if method not in available:
                print(f"{label}: method {method!r} is not registered here; skipped", flush=True)
                results["rows"][f"{key}@{accel:g}x"] = {"label": label, "skipped": "method not registered"}
                continue
            fields = {f.name for f in dataclasses.fields(get_method(method).options)}
            opts = {k: v for k, v in opts.items() if k in fields}
            # tol 0 (CS-wavelet's default): a fixed iteration count, no tolerance to converge to
            fixed_iters = opts.get("tol", getattr(get_method(method).options(), "tol", None)) == 0
            if "weights" in opts:
                opts["weights"] = subst.get(opts["weights"], opts["weights"])
            scores, vs_truth = VolumeScores(), VolumeScores()
            times, its, conv = [], [], []
            try:
                for s in samples:
                    t0 = time.perf_counter()
                    res = reconstruct(s, method, **opts)
                    times.append(time.perf_counter() - t0)
                    its.append(res.info.get("iterations", 0) or 0)
                    conv.append(res.info.get("converged"))
                    mag = res.magnitude(s.multi_set).numpy().astype(np.float32)
                    scores.add(s.meta.file, mag, s.target.numpy())
                    vs_truth.add(s.meta.file, mag, truths[s.meta.file, s.meta.slice])
            except (MriReconError, KeyError) as exc:
                print(f"{label}: {exc}; skipped", flush=True)
                results["rows"][f"{key}@{accel:g}x"] = {"label": label, "skipped": str(exc)}
                continue
            row = {"label": label, "method": method, "options": opts, "psnr": scores.mean("psnr"),
                   "ssim": scores.mean("ssim"), "psnr_truth": vs_truth.mean("psnr"), "iterations": float(np.mean(its)),
                   "converged": None if None in conv or fixed_iters else f"{sum(map(bool, conv))}/{len(conv)}",
                   "time_s": float(statistics.median(times)), "volumes": len(scores), "slices": len(samples)}
            results["rows"][f"{key}@{accel:g}x"] = row
            table.append(f"| {label} | {accel:g}x | {row['psnr']:.2f} | {row['ssim']:.4f} | {row['psnr_truth']:.2f} | "
                         f"{row['iterations']:.1f} | {row['converged'] or '–'} | {row['time_s']:.2f} |")
            print(table[-1], flush=True)
        for key in args.anderson:
            label, method, opts = ROWS[key]
            if method != "deq" or method not in available:
                continue
            w = subst.get(opts["weights"], opts["weights"])
            counts: dict[bool, list[int]] = {True: [], False: []}
            conv: dict[bool, int] = {True: 0, False: 0}
            try:
                for s in samples:
                    for anderson in (True, False):
                        r = reconstruct(s, "deq", weights=w, tol=args.tol, iters=2000, anderson=anderson)
                        counts[anderson].append(r.info["iterations"])
                        conv[anderson] += int(r.info["converged"])
            except (MriReconError, KeyError) as exc:
                print(f"{label}: {exc}; skipped", flush=True)
                continue
            entry = {"label": label, "tol": args.tol, "anderson": counts[True], "plain": counts[False],
                     "converged": {"anderson": conv[True], "plain": conv[False]}}
            results["anderson"][f"{key}@{accel:g}x"] = entry
            atable.append(f"| {label} | {accel:g}x | {np.mean(counts[True]):.1f} / {max(counts[True])} | "
                          f"{np.mean(counts[False]):.1f} / {max(counts[False])} | {conv[True]}/{len(samples)} / "
                          f"{conv[False]}/{len(samples)} |")
            print(atable[-1], flush=True)
    results["table"], results["anderson_table"] = table, atable
    print("\n".join(table) + "\n\n" + "\n".join(atable))
    if args.json is not None:
        write_json(args.json, results)
    return 0


if __name__ == "__main__":
    sys.exit(main())

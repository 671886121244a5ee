"""Plug-and-play results on the demo dataset: PSNR/SSIM, iterations, time and convergence per method.

Every slice of a split (or an evenly spaced subset, ``--slices N``) is undersampled retrospectively with
fastMRI's equispaced masks (fixed per file and slice), coil maps are estimated by ESPIRiT from the fully
sampled 24×24 k-space centre (one set of maps for all methods: a separate calibration scan), and each
method reconstructs it with its defaults (plus ``--set`` overrides). Metrics follow fastMRI: per volume
(the slices of one file), ``|x|`` against ``reconstruction_rss`` with the volume maximum as data range,
then averaged over volumes; ``PSNR*`` is the same against the noise-free ground truth ``|image|`` of the demo
files. Iterative runs report iterations, the final fixed-point residual and whether they met their
tolerance; a run whose iterates blow up is reported as diverged (``divergence=stop``), not as NaN.

    python benchmarks/pnp_results.py --split test --accels 4 8 --slices 12 --json results.json

Rows (``--rows`` picks a subset by key): zf, sense, cs-wavelet, pnp-admm (plain DnCNN), pnp-admm-sn (real
spectral normalisation), pnp-admm-jac (Jacobian-penalised, firmly non-expansive; the default denoiser),
pnp-admm-jac-deq (the same network trained end to end inside DEQ-ADMM with the Jacobian penalty kept,
``dncnn-jac-deq``), pnp-fbs-sn, pnp-fbs-jac, gs-pnp, pnp-admm-eq and pnp-admm-eq-jac (random rotations/flips).
A row whose weights are not installed is reported and skipped. ``--weights NAME=PATH`` substitutes a weights
file for a shipped name (e.g. while the shipped weights are not available).
"""
from __future__ import annotations

import argparse
import dataclasses
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this checkout, not an installed copy

from benchmarks._common import VolumeScores, load_split, with_maps_and_truth, write_json  # noqa: E402

ROWS: dict[str, tuple[str, str, dict[str, Any]]] = {
    "zf": ("zero-filled", "zf", {}),
    "sense": ("SENSE (CG, λ=0.01)", "sense", {}),
    "cs-wavelet": ("CS L1-wavelet (FISTA)", "cs-wavelet", {}),
    "pnp-admm": ("PnP-ADMM, plain DnCNN", "pnp-admm", {"weights": "dncnn"}),
    "pnp-admm-sn": ("PnP-ADMM, real-SN DnCNN", "pnp-admm", {"weights": "dncnn-sn"}),
    "pnp-admm-jac": ("PnP-ADMM, firmly non-expansive (Jacobian-penalised) DnCNN", "pnp-admm", {"weights": "dncnn-jac"}),
    "pnp-admm-jac-deq": ("PnP-ADMM, Jacobian-penalised DnCNN trained inside DEQ-ADMM", "pnp-admm",
                         {"weights": "dncnn-jac-deq"}),
    "pnp-fbs-sn": ("PnP-FBS, real-SN DnCNN", "pnp-fbs", {"weights": "dncnn-sn"}),
    "pnp-fbs-jac": ("PnP-FBS, Jacobian-penalised DnCNN (default)", "pnp-fbs", {"weights": "dncnn-jac"}),
    "gs-pnp": ("GS-PnP, GS-DRUNet", "gs-pnp", {"weights": "gs-drunet"}),
    "pnp-admm-eq": ("equivariant PnP-ADMM, real-SN DnCNN", "pnp-admm-equivariant", {"weights": "dncnn-sn"}),
    "pnp-admm-eq-jac": ("equivariant PnP-ADMM, Jacobian-penalised DnCNN (default)", "pnp-admm-equivariant",
                        {"weights": "dncnn-jac"}),
}
PNP_METHODS = {"pnp-admm", "pnp-fbs", "gs-pnp", "pnp-admm-equivariant"}


def row_options(key: str, weights_map: dict[str, str], extra: dict[str, Any] | None = None,
                common: dict[str, Any] | None = None) -> tuple[str, str, dict[str, Any]]:
    """Row ``key``'s label, method and options: its own merged with ``common`` (``--set '*.k=v'``) and ``extra``
    (``--set ROW.k=v``), kept to those the method takes, with a shipped weights name replaced by its file in
    ``weights_map`` (``--weights NAME=PATH``) and ``divergence="stop"`` where the method has it (a run that blows
    up is reported as diverged, not raised).

    Raises:
        SystemExit: an ``extra`` key that the row's method does not take (a typo would otherwise be ignored).
    """
    from mrirecon.methods import get_method

    label, method, opts = ROWS[key]
    fields = {f.name for f in dataclasses.fields(get_method(method).options)}
    unknown = sorted(set(extra or {}) - fields)
    if unknown:
        raise SystemExit(f"--set {key}.{unknown[0]}: method {method!r} has no option {unknown[0]!r}; "
                         f"its options: {', '.join(sorted(fields))}")
    opts = {**opts, **(common or {}), **(extra or {})}
    opts = {k: v for k, v in opts.items() if k in fields}
    if "weights" in opts:
        opts["weights"] = weights_map.get(opts["weights"], opts["weights"])
    if "divergence" in fields:
        opts["divergence"] = "stop"
    return label, method, opts


def parse_value(text: str) -> Any:
    import yaml

    return yaml.safe_load(text)



def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--split", default="test", choices=["train", "val", "test"])
    p.add_argument("--accels", type=float, nargs="+", default=[4, 8])
    p.add_argument("--center-fractions", type=float, nargs="+", default=None,
                   help="per acceleration (default 0.08 for 4x, 0.04 for 8x)")
    p.add_argument("--slices", type=int, default=0, help="evenly spaced subset of the split (0: all slices)")
    p.add_argument("--rows", nargs="+", default=list(ROWS), help=f"rows to run (default all: {' '.join(ROWS)})")
    p.add_argument("--set", nargs="*", default=[], metavar="ROW.key=value",
                   help="option overrides, e.g. pnp-admm-sn.alpha=2 (ROW '*' for every PnP row, kept where the "
                        "method takes it; a ROW key its method does not take is an error)")
    p.add_argument("--weights", nargs="*", default=[], metavar="NAME=PATH",
                   help="use the weights file PATH wherever the rows name the shipped denoiser NAME")
    p.add_argument("--threads", type=int, default=1, help="torch threads (default 1: on a loaded machine more threads spin)")
    p.add_argument("--json", type=Path, default=None, help="write all per-slice numbers and the table here")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)

    from mrirecon.errors import MissingWeightsError
    from mrirecon.methods import method_names, reconstruct
    from mrirecon.methods.pnp import load_prior

    available = set(method_names())
    weights_map = dict(w.split("=", 1) for w in args.weights)
    overrides: dict[str, dict[str, Any]] = defaultdict(dict)
    for item in args.set:
        key, value = item.split("=", 1)
        row, opt = key.split(".", 1)
        overrides[row][opt] = parse_value(value)
    cfs = args.center_fractions or [0.08 if a <= 4 else 0.04 for a in args.accels]
    results: dict[str, Any] = {"split": args.split, "rows": {}, "command": " ".join(sys.argv)}
    table = ["| method | accel | PSNR (dB) | SSIM | PSNR* (dB) | iterations | s/slice | converged | max final residual |",
             "|---|---|---|---|---|---|---|---|---|"]
    for accel, cf in zip(args.accels, cfs):
        ds, full, idx = load_split(args.split, accel, cf, args.slices)
        print(f"# {args.split}: {len(idx)} slices, {accel:g}x equispaced, centre fraction {cf}", flush=True)
        samples = with_maps_and_truth(args.split, ds, full, idx)
        for key in args.rows:
            label, method, _ = ROWS[key]
            if method not in available:
                print(f"{label}: method {method!r} is not registered in this installation; skipped", flush=True)
                continue
            common = overrides.get("*", {}) if method in PNP_METHODS else {}
            label, method, opts = row_options(key, weights_map, overrides.get(key, {}), common)
            vs_rss, vs_truth = VolumeScores(), VolumeScores()
            rows = []
            try:
                if "weights" in opts:
                    load_prior(opts["weights"], "none", 0, torch.zeros(1, dtype=torch.complex64))
            except MissingWeightsError as exc:
                print(f"{label}: {exc}; skipped", flush=True)
                continue
            for s, truth in samples:
                res = reconstruct(s, method, **opts)
                mag = res.magnitude(s.multi_set).detach().numpy().astype(np.float32)
                vs_rss.add(s.meta.file, mag, s.target.numpy())
                vs_truth.add(s.meta.file, mag, truth)
                info = res.info
                rows.append({"file": s.meta.file, "slice": s.meta.slice, "time_s": info.get("time_s"),
                             "iterations": info.get("iterations"), "converged": info.get("converged"),
                             "stop_reason": info.get("stop_reason"), "final_residual": info.get("final_residual")})
                print(f"  {key} {s.meta.file}[{s.meta.slice}] it={info.get('iterations')} "
                      f"res={info.get('final_residual', float('nan')) or float('nan'):.2e} "
                      f"{info.get('stop_reason', '')} {info.get('time_s', 0):.1f}s", flush=True)
            its = [r["iterations"] for r in rows if r["iterations"] is not None]
            conv = [bool(r["converged"]) for r in rows if r["converged"] is not None]
            fres = [r["final_residual"] for r in rows if r["final_residual"] is not None]
            diverged = sum(r["stop_reason"] == "diverged" for r in rows)
            summary = {"label": label, "method": method, "options": opts, "accel": accel, "center_fraction": cf,
                       "psnr": vs_rss.mean("psnr"), "ssim": vs_rss.mean("ssim"),
                       "psnr_truth": vs_truth.mean("psnr"),
                       "iterations": float(np.mean(its)) if its else 0.0,
                       "time_s": float(np.mean([r["time_s"] for r in rows])),
                       "converged": f"{sum(conv)}/{len(conv)}" if conv else "-",
                       "diverged": diverged, "max_final_residual": max(fres) if fres else None, "slices": rows}
            results["rows"][f"{key}@{accel:g}x"] = summary
            conv_text = summary["converged"] + (f" ({diverged} diverged)" if diverged else "")
            res_text = "-" if summary["max_final_residual"] is None else f"{summary['max_final_residual']:.1e}"
            table.append(f"| {label} | {accel:g}x | {summary['psnr']:.2f} | {summary['ssim']:.4f} | "
                         f"{summary['psnr_truth']:.2f} | {summary['iterations']:.0f} | {summary['time_s']:.2f} | "
                         f"{conv_text} | {res_text} |")
            print(table[-1], flush=True)
    results["table"] = table
    print("\n".join(table))
    if args.json is not None:
        write_json(args.json, results)
    return 0


if __name__ == "__main__":
    sys.exit(main())

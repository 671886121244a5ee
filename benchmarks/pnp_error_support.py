"""Where the squared error against ``reconstruction_rss`` lies: inside or outside the coil maps' support.

The RSS target of a noisy scan is not zero where no coil sees (its noise floor), while the noise-free truth of
the demo files is. A method's gain over another against the RSS therefore mixes two things: a better image
inside the support, and whatever it puts outside it. This benchmark separates them on the demo split with the
masks and maps of ``benchmarks/pnp_results.py``: for each row the squared errors pooled over the slices, against
the RSS and against ``|image|``, inside and outside the support (``Σ_coils |S|² > 0`` of the ESPIRiT maps), and
the gain in dB over the first row from all pixels and from the support alone.

    python benchmarks/pnp_error_support.py --split val --slices 8 --rows cs-wavelet pnp-admm-jac-deq
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this checkout, not an installed copy

from benchmarks._common import center_crop, load_split, with_maps_and_truth, write_json  # noqa: E402
from benchmarks.pnp_results import ROWS, row_options  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--split", default="val", choices=["train", "val", "test"])
    p.add_argument("--accel", type=float, default=4.0)
    p.add_argument("--center-fraction", type=float, default=None, help="default 0.08 at 4x or less, else 0.04")
    p.add_argument("--slices", type=int, default=8, help="evenly spaced subset of the split (0: all slices)")
    p.add_argument("--rows", nargs="+", default=["cs-wavelet", "pnp-admm-jac", "pnp-admm-jac-deq"],
                   choices=list(ROWS), help="rows of benchmarks/pnp_results.py; the first is the reference")
    p.add_argument("--weights", nargs="*", default=[], metavar="NAME=PATH",
                   help="use the weights file PATH wherever the rows name the shipped denoiser NAME")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--json", type=Path, default=None)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)

    from mrirecon.methods import reconstruct

    weights_map = dict(w.split("=", 1) for w in args.weights)
    cf = args.center_fraction or (0.08 if args.accel <= 4 else 0.04)
    ds, full, idx = load_split(args.split, args.accel, cf, args.slices)
    # squared errors pooled over the slices: [vs RSS inside, vs RSS outside, vs truth inside, vs truth outside]
    sse = {key: np.zeros(4) for key in args.rows}
    support_share = []
    for s, truth in with_maps_and_truth(args.split, ds, full, idx):
        target = s.target.numpy()
        m = np.abs(s.maps.numpy()) ** 2
        inside = center_crop(m.reshape(-1, *m.shape[-2:]).sum(0) > 0, target.shape)
        support_share.append(float(inside.mean()))
        truth = center_crop(truth, target.shape)
        for key in args.rows:
            _, method, opts = row_options(key, weights_map)
            res = reconstruct(s, method, **opts)
            if res.info.get("stop_reason") == "diverged":
                print(f"  {key} diverged on {s.meta.file}[{s.meta.slice}]: its last finite iterate is scored",
                      flush=True)
            mag = center_crop(res.magnitude(s.multi_set).detach().numpy(), target.shape)
            e, et = (mag - target) ** 2, (mag - truth) ** 2
            sse[key] += [e[inside].sum(), e[~inside].sum(), et[inside].sum(), et[~inside].sum()]
        print(f"  {s.meta.file}[{s.meta.slice}] support {inside.mean():.1%}", flush=True)

    ref = sse[args.rows[0]]
    table = [f"| method | share of the error vs RSS outside the support | vs truth outside | gain over "
             f"{args.rows[0]} vs RSS: all pixels / support only (dB) | vs truth: all / support (dB) |",
             "|---|---|---|---|---|"]
    doc = {"split": args.split, "accel": args.accel, "center_fraction": cf, "slices": len(idx),
           "support_fraction": float(np.mean(support_share)), "command": " ".join(sys.argv), "rows": {}}
    for key in args.rows:
        v = sse[key]
        gain = [10 * np.log10((ref[0] + ref[1]) / (v[0] + v[1])), 10 * np.log10(ref[0] / v[0]),
                10 * np.log10((ref[2] + ref[3]) / (v[2] + v[3])), 10 * np.log10(ref[2] / v[2])]
        doc["rows"][key] = {"sse_rss_inside": v[0], "sse_rss_outside": v[1], "sse_truth_inside": v[2],
                            "sse_truth_outside": v[3], "gain_db": gain}
        table.append(f"| {key} | {v[1] / (v[0] + v[1]):.1%} | {v[3] / (v[2] + v[3]):.1%} | "
                     f"{gain[0]:+.2f} / {gain[1]:+.2f} | {gain[2]:+.2f} / {gain[3]:+.2f} |")
    doc["table"] = table
    print(f"# {args.split}: {len(idx)} slices, {args.accel:g}x, support {np.mean(support_share):.1%} of the pixels")
    print("\n".join(table))
    if args.json is not None:
        write_json(args.json, doc)
    return 0


if __name__ == "__main__":
    sys.exit(main())

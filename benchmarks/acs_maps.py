"""How well coil maps from a narrow ACS region span the fully sampled coil images (demo data, equispaced masks).

For each slice and each way of making the maps — ESPIRiT from the fully sampled 24×24 centre (a calibration
scan), ESPIRiT from the undersampled slice's own ACS lines with ``kernel="auto"`` and with a given kernel, and
ACS-ratio maps from the same lines (``mrirecon recon --maps rss``) — it reports, over the object (pixels whose
fully sampled RSS exceeds 10 % of its maximum):

* ``projection error``: ``‖x − S Sᴴ x‖ / ‖x‖`` for the fully sampled coil images ``x`` (SENSE models every coil
  image as ``S m``; what is left is signal no SENSE reconstruction with these maps can represent);
* ``zeroed``: the fraction of object pixels where ESPIRiT's eigenvalue crop left ``‖S‖ < 0.5``;
* the number of centre lines the mask kept and the kernel ``auto`` chose.

    python benchmarks/acs_maps.py --accel 8 --slices 6
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path


sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this checkout, not an installed copy

from benchmarks._common import load_split  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--split", default="test", choices=["train", "val", "test"])
    p.add_argument("--accel", type=float, default=8)
    p.add_argument("--center-fraction", type=float, default=None, help="default 0.08 at ≤ 4×, 0.04 above")
    p.add_argument("--slices", type=int, default=6, help="evenly spaced subset of the split (0: all slices)")
    p.add_argument("--kernels", type=int, nargs="*", default=[2], help="fixed ESPIRiT kernels to add")
    args = p.parse_args(argv)

    from mrirecon.operators.coils import acs_size, lowres_maps
    from mrirecon.operators.espirit import auto_kernel, calib_region, espirit_maps, sampling_pattern
    from mrirecon.operators.fft import ifft2c

    cf = args.center_fraction if args.center_fraction is not None else (0.08 if args.accel <= 4 else 0.04)
    ds, full, idx = load_split(args.split, args.accel, cf, args.slices)
    variants = ["calibration scan (24x24)", "ACS, kernel auto"] + [f"ACS, kernel {k}" for k in args.kernels]
    variants.append("ACS-ratio (recon --maps rss)")
    err: dict[str, list[float]] = {v: [] for v in variants}
    zeroed: dict[str, list[float]] = {v: [] for v in variants}
    lines, kernels = [], []
    for i in idx:
        y, y_full = ds[i].kspace, full[i].kspace
        x = ifft2c(y_full)
        rss = x.abs().pow(2).sum(-3).sqrt()
        obj = rss > 0.1 * rss.max()
        ch, cw = acs_size(y.abs().sum(-3) > 0, y.shape[-2:])
        region = calib_region(sampling_pattern(y))  # the region ESPIRiT calibrates on
        lines.append(min(region))
        kernels.append(auto_kernel(region))
        maps = {variants[0]: espirit_maps(y_full, calib=24), variants[1]: espirit_maps(y, kernel="auto")}
        for k, v in zip(args.kernels, variants[2:-1]):
            maps[v] = espirit_maps(y, kernel=k)
        maps[variants[-1]] = lowres_maps(y, (ch, cw))
        for v, s in maps.items():
            r = (x - s * (s.conj() * x).sum(-3, keepdim=True)) * obj
            err[v].append(float(r.norm() / (x * obj).norm()))
            zeroed[v].append(float(((s.abs().pow(2).sum(-3).sqrt() < 0.5) & obj).sum() / obj.sum()))

    print(f"# {args.split}: {len(idx)} slices, {args.accel:g}x equispaced, centre fraction {cf}: "
          f"{min(lines)}-{max(lines)} centre lines, kernel auto = {sorted(set(kernels))}")
    print("| maps | projection error over the object (mean / max) | object pixels zeroed (mean / max) |")
    print("|---|---|---|")
    for v in variants:
        e, z = err[v], zeroed[v]
        print(f"| {v} | {sum(e) / len(e):.3f} / {max(e):.3f} | {sum(z) / len(z):.3f} / {max(z):.3f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

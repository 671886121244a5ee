"""CS-wavelet against BART's own algorithm over cycle-spinning seeds (the numbers in the README).

On the BART phantom case of ``benchmarks.problems.bart_phantom_case`` (128², 8 coils, noise, 3× lines):
``bart pics -S -R W:7:0:λ -i N`` once (its shift generator has a fixed state), then ``cs-wavelet`` with
``transform="bart"`` (BART's frame and generator: seed s = ``rand_r`` state s + 1, so seed 0 is BART's
own run) and with the default orthonormal transform, for seeds 0..S-1. Prints PSNR against the
fully sampled image per seed, the means, and the NRMSE of ``transform="bart"``, seed 0, against BART.

Usage::

    python benchmarks/cs_wavelet_seeds.py            # λ = 0.005, 100 iterations, 8 seeds
"""
from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--lam", type=float, default=0.005)
    ap.add_argument("--iters", type=int, default=100)
    ap.add_argument("--seeds", type=int, default=8)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    sys.path.insert(0, str(ROOT))
    import numpy as np
    import torch

    from benchmarks.problems import bart_phantom_case
    from mrirecon.data.sample import KSpaceSample
    from mrirecon.io.cfl import read_cfl
    from mrirecon.methods import reconstruct
    from mrirecon.metrics import psnr

    bart = shutil.which("bart")
    if bart is None:
        print("BART is not installed (apt-get install bart)", file=sys.stderr)
        return 1
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        case = bart_phantom_case(bart, Path(tmp))
        subprocess.run([bart, "pics", "-S", "-R", f"W:7:0:{args.lam}", "-i", str(args.iters), str(case["dir"] / "ksp"),
                        str(case["dir"] / "maps"), str(case["dir"] / "wav")], check=True, capture_output=True)
        theirs = np.abs(read_cfl(case["dir"] / "wav").reshape(128, 128))
    gt = case["gt"].numpy()[None]
    sample = KSpaceSample(kspace=case["ksp"], mask=case["mask"], maps=case["maps"])
    rows = {}
    for transform in ("bart", "orthonormal"):
        rows[transform] = [reconstruct(sample, "cs-wavelet", lam=args.lam, iters=args.iters, seed=s,
                                       transform=transform).image.abs().numpy() for s in range(args.seeds)]
    nrmse = np.linalg.norm(rows["bart"][0] - theirs) / np.linalg.norm(theirs)
    print(f"# bart pics -S -R W:7:0:{args.lam} -i {args.iters}: PSNR {psnr(gt, theirs[None]):.2f} dB; "
          f"transform='bart' seed 0 vs BART: NRMSE {nrmse:.1e}")
    print("| seed | " + " | ".join(str(s) for s in range(args.seeds)) + " | mean |")
    print("|---|" + "---|" * (args.seeds + 1))
    for transform, images in rows.items():
        ps = [psnr(gt, x[None]) for x in images]
        label = "BART's algorithm (transform=bart)" if transform == "bart" else "ours (orthonormal, default)"
        print(f"| {label} | " + " | ".join(f"{p:.2f}" for p in ps) + f" | {np.mean(ps):.2f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

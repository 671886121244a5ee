#!/usr/bin/env python
"""Loading speed and memory: mrirecon's FastMRISliceDataset vs fastmri.data.SliceDataset on the same folder.

Each configuration runs in its own process (so that peak memory is its own): two epochs over the folder,
timed per epoch; memory is the resident set size sampled every 16 items, and the process peak.

Configurations (``num_workers = 0``, one process reading):

* ``raw``: fully sampled slices as read (fastMRI: ``transform=None`` → numpy arrays; ours: ``mask=None`` →
  a ``KSpaceSample`` of torch tensors);
* ``masked``: 4× random line masks seeded per slice (fastMRI: ``VarNetDataTransform(RandomMaskFunc)``;
  ours: ``MaskSpec("random", 4, 0.08)`` with fixed validation-style seeds).

Usage::

    python benchmarks/loading.py                 # the demo dataset's train split (built if needed)
    python benchmarks/loading.py --root DIR --repeats 5
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def _rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def _worker(loader: str, mode: str, root: Path, epochs: int) -> dict:
    import torch

    torch.set_num_threads(1)
    if loader == "fastmri":
        from fastmri.data import SliceDataset
        from fastmri.data.subsample import RandomMaskFunc
        from fastmri.data.transforms import VarNetDataTransform

        tf = VarNetDataTransform(RandomMaskFunc([0.08], [4]), use_seed=True) if mode == "masked" else None
        ds = SliceDataset(root, challenge="multicoil", transform=tf)
    else:
        from mrirecon.data.fastmri import FastMRISliceDataset
        from mrirecon.operators.masks import MaskSpec

        spec = MaskSpec("random", 4, 0.08) if mode == "masked" else None
        ds = FastMRISliceDataset(root, mask=spec, fixed_masks=True, cache=False)
    rss = [_rss_mb()]
    times = []
    n = len(ds)
    for _ in range(epochs):
        t0 = time.perf_counter()
        for i in range(n):
            item = ds[i]
            del item
            if i % 16 == 0:
                rss.append(_rss_mb())
        times.append(time.perf_counter() - t0)
        rss.append(_rss_mb())
    return {"slices": n, "epoch_s": times, "rss_mb": rss,
            "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--root", type=Path, help="folder of fastMRI files (default: the demo dataset's train split)")
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=3, help="processes per configuration (medians are reported)")
    ap.add_argument("--_worker", nargs=2, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args._worker:
        print(json.dumps(_worker(args._worker[0], args._worker[1], args.root, args.epochs)))
        return
    if args.root is None:
        from mrirecon.data.demo import demo_root

        args.root = demo_root() / "train"
    rows = []
    results: dict[tuple[str, str], list[dict]] = {}
    for mode in ("raw", "masked"):
        for rep in range(args.repeats):
            for loader in ("fastmri", "mrirecon"):   # interleaved, so that load changes hit both
                cmd = [sys.executable, __file__, "--root", str(args.root), "--epochs", str(args.epochs),
                       "--_worker", loader, mode]
                out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
                results.setdefault((mode, loader), []).append(json.loads(out.strip().splitlines()[-1]))
    print(f"folder: {args.root} ({results[('raw', 'mrirecon')][0]['slices']} slices), {args.epochs} epochs, "
          f"{args.repeats} processes per configuration, medians")
    print("| mode | loader | slices/s | RSS after set-up (MB) | RSS growth over epoch 2 (MB) | peak RSS (MB) |")
    print("|---|---|---|---|---|---|")
    speed = {}
    for (mode, loader), rs in results.items():
        per_epoch = [r["slices"] / t for r in rs for t in r["epoch_s"]]
        sps = statistics.median(per_epoch)
        speed[(mode, loader)] = sps
        growth = statistics.median(r["rss_mb"][-1] - r["rss_mb"][len(r["rss_mb"]) // 2] for r in rs)
        peak = statistics.median(r["peak_mb"] for r in rs)
        start = statistics.median(r["rss_mb"][0] for r in rs)
        rows.append((mode, loader, sps, growth, peak))
        print(f"| {mode} | {loader} | {sps:.0f} | {start:.0f} | {growth:+.1f} | {peak:.0f} |")
    for mode in ("raw", "masked"):
        print(f"{mode}: mrirecon / fastmri speed = {speed[(mode, 'mrirecon')] / speed[(mode, 'fastmri')]:.2f}")


if __name__ == "__main__":
    main()

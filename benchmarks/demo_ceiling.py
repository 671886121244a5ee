"""What a perfect reconstruction scores on the demo dataset: the noise-free image against ``reconstruction_rss``.

The demo files carry two targets: ``reconstruction_rss`` (the root-sum-of-squares of the *noisy* fully sampled
k-space, as fastMRI stores it) and ``image`` (the noise-free complex object). A reconstruction that recovered the
object exactly would still differ from ``reconstruction_rss`` by the noise of the fully sampled scan, so its
score against ``reconstruction_rss`` is the ceiling of every method that estimates the object rather than the
noise. This script writes ``|image|`` of each file in the submission format and scores it with
``mrirecon evaluate --predictions`` (the fastMRI leaderboard convention: per-volume PSNR with the target volume's
maximum, SSIM, NMSE, square centre crop), so the ceiling is measured by the same code as every result table.

Usage::

    python benchmarks/demo_ceiling.py                 # test split, whole volumes
    python benchmarks/demo_ceiling.py --slices 6      # also the 6 evenly spaced slices of pnp_results.py
    python benchmarks/demo_ceiling.py --split val --json ceiling.json
"""
from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main(argv: list[str] | None = None) -> int:
    import h5py
    import numpy as np

    from benchmarks._common import write_json
    from mrirecon.data.demo import demo_root
    from mrirecon.training.evaluation import EvalReport, prediction_volumes, volume_metrics

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--split", default="test", choices=["train", "val", "test"])
    ap.add_argument("--slices", type=int, default=0,
                    help="also score the N evenly spaced slices that pnp_results.py / equilibrium_results.py use")
    ap.add_argument("--json", type=Path, default=None, help="also write the report as JSON")
    args = ap.parse_args(argv)

    data = Path(demo_root()) / args.split
    with tempfile.TemporaryDirectory() as tmp:
        for f in sorted(data.glob("*.h5")):
            with h5py.File(f, "r") as h:
                image = np.abs(h["image"][()]).astype(np.float32)  # [S, H, W] noise-free object magnitude
            with h5py.File(Path(tmp) / f.name, "w") as out:
                out.create_dataset("reconstruction", data=image)
        report = EvalReport([volume_metrics(v) for v in prediction_volumes(tmp, data)])
    print(f"# demo {args.split} split: |image| (noise-free object) scored against reconstruction_rss")
    print(report.table())
    doc = {"split": args.split, "command": " ".join(sys.argv), **report.to_dict()}
    if args.slices:
        doc["subset"] = subset_ceiling(args.split, args.slices)
    if args.json is not None:
        write_json(args.json, doc)
    return 0


def subset_ceiling(split: str, n_slices: int) -> dict[str, float]:
    """The ceiling on the slice subset of the PnP/DEQ result tables, in their convention (per volume over the
    chosen slices, ``reconstruction_rss`` with the volume maximum as data range, then the mean over volumes)."""
    from benchmarks._common import VolumeScores, load_split, truth_image
    from mrirecon.data.demo import demo_root

    _, full, idx = load_split(split, 4, 0.08, n_slices)  # the subset does not depend on the mask
    root = Path(demo_root()) / split
    scores = VolumeScores()
    for i in idx:
        s = full[i]
        scores.add(s.meta.file, truth_image(root, s.meta), s.target.numpy())
    out = {"slices": len(idx), "volumes": len(scores), "psnr": scores.mean("psnr"), "ssim": scores.mean("ssim")}
    print(f"# {len(idx)} evenly spaced slices ({len(scores)} volumes), the convention of pnp_results.py: "
          f"PSNR {out['psnr']:.2f} dB, SSIM {out['ssim']:.4f}")
    return out


if __name__ == "__main__":
    raise SystemExit(main())

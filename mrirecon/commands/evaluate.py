"""``mrirecon evaluate``: NMSE/PSNR/SSIM per volume and their mean, in the fastMRI leaderboard convention."""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from mrirecon.operators.masks import MaskSpec
    from mrirecon.training.evaluation import Reconstructor

HELP = ("score a network (--checkpoint), a method (--method) or reconstructions (--predictions) on a folder of "
        "fastMRI files: per-volume and mean NMSE/PSNR/SSIM as fastmri.evaluate")


def add_source_arguments(p: argparse.ArgumentParser, predictions: bool) -> None:
    """The reconstructor and undersampling options shared by ``evaluate`` and ``predict``."""
    g = p.add_mutually_exclusive_group(required=True)
    g.add_argument("--checkpoint", help="network: a shipped name (pdnet-demo), RUN/model.pt or a training checkpoint")
    g.add_argument("--method", help="a registered method (e.g. cs-wavelet, zf); maps by --maps for those that need them")
    if predictions:
        g.add_argument("--predictions", type=Path, help="a folder of reconstructions (submission format) to score")
    p.add_argument("--data", type=Path, required=True, help="folder of fastMRI .h5 files (or one file)")
    p.add_argument("--accel", type=float, default=None,
                   help="retrospective acceleration for fully sampled files (required for them; files that carry a "
                        "'mask' use it)")
    p.add_argument("--center-fraction", type=float, default=None,
                   help="fully sampled centre fraction (default: 0.08 up to 4x, 0.04 above, as fastMRI)")
    p.add_argument("--mask", default="random", help="mask kind: random (fastMRI knee), equispaced (brain), poisson, "
                                                   "gaussian (default random)")
    p.add_argument("--maps", choices=("espirit", "rss"), default="espirit",
                   help="coil maps for methods that need them (default espirit, with BART's 6x6 kernel shrunk for "
                        "centres narrower than 10 lines; ACS-ratio maps where the fully sampled centre is one line)")
    p.add_argument("--maps-dir", type=Path, help="precomputed map sidecars (mrirecon prep espirit) instead")
    p.add_argument("--batch-size", type=int, default=4, help="slices per network call (default 4)")
    p.add_argument("--device", default="auto", help="cpu, cuda or auto (default)")
    p.add_argument("--limit", type=int, default=0, help="only the first N files (default: all)")
    p.add_argument("--lam", type=float, help="--method: regularisation weight")
    p.add_argument("--iters", type=int, help="--method: iterations")


def reconstructor(args: argparse.Namespace) -> tuple[Reconstructor, str]:
    """The reconstructor and its description from the parsed options."""
    from mrirecon.errors import ConfigError
    from mrirecon.training.evaluation import method_reconstructor, network_reconstructor

    if args.checkpoint:
        if args.lam is not None or args.iters is not None:
            raise ConfigError("--lam/--iters apply to --method, not to --checkpoint")
        return network_reconstructor(args.checkpoint, args.device)
    opts = {k: v for k, v in (("lam", args.lam), ("iters", args.iters)) if v is not None}
    return method_reconstructor(args.method, args.maps, **opts)


def mask_from_args(args: argparse.Namespace) -> MaskSpec | None:
    """The retrospective mask from ``--mask --accel --center-fraction`` (``None`` without ``--accel``)."""
    from mrirecon.training.evaluation import mask_spec

    return None if args.accel is None else mask_spec(args.mask, args.accel, args.center_fraction)


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_source_arguments(p, predictions=True)
    p.add_argument("-o", "--out", type=Path, help="write metrics.json/metrics.csv here (and, for --checkpoint/--method, "
                                                  "the reconstructions in the submission format)")
    p.add_argument("--crop", choices=("square", "recon"), default="square",
                   help="square: the target's width squared, as fastmri.evaluate (default); recon: the recon size")
    p.add_argument("--target", default="reconstruction_rss",
                   help="target dataset (default reconstruction_rss; 'image' = |noise-free image| of the demo data)")


def run(args: argparse.Namespace) -> int:
    from mrirecon.io.fastmri import write_submission
    from mrirecon.training.evaluation import (EvalReport, prediction_volumes, reconstruct_volumes, volume_metrics,
                                              write_report)

    if args.predictions is not None:
        vols = prediction_volumes(args.predictions, args.data, args.limit, args.target)
        desc, mask = f"predictions {args.predictions}", "(as in the predictions)"
    else:
        recon, desc = reconstructor(args)
        spec = mask_from_args(args)
        vols = reconstruct_volumes(recon, args.data, spec, args.batch_size, args.limit, args.target, args.maps_dir)
        mask = None
    report = EvalReport(settings={"reconstructor": desc, "data": str(args.data), "crop": args.crop,
                                  "target": args.target})
    for vol in vols:
        if args.out is not None and args.predictions is None:
            write_submission(args.out / vol.file, vol.recon)
        m = volume_metrics(vol, args.crop)
        report.volumes.append(m)
        mask = mask or vol.mask
        print(f"{vol.file}: NMSE {m.nmse:.4f}  PSNR {m.psnr:.2f} dB  SSIM {m.ssim:.4f}  ({m.slices} slices, "
              f"{vol.seconds:.1f} s)", flush=True)
    report.settings["mask"] = mask
    print(f"\n{desc}; mask: {mask}; target {args.target}, crop {args.crop}\n")
    print(report.table())
    if args.out is not None:
        js, cs = write_report(report, args.out)
        print(f"wrote {js} and {cs}" + (f" and {len(report.volumes)} reconstructions in {args.out}"
                                          if args.predictions is None else ""))
    return 0

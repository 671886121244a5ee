"""``mrirecon lipschitz --weights W --data D``: the Lipschitz certificate of a denoiser."""
from __future__ import annotations

import argparse
import json
from pathlib import Path

HELP = "estimate Lip(D), Lip(I-D), Lip(2D-I) of a denoiser by power iteration on Jacobians at validation points"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--weights", required=True,
                   help="a shipped denoiser name (mrirecon denoisers lists them) or a weights/checkpoint file")
    p.add_argument("--data", required=True,
                   help="a folder of fastMRI-format .h5 files or one file, or 'demo' (the demo validation split)")
    p.add_argument("--key", default="image", help="the [S, H, W] image dataset to read (default: image)")
    p.add_argument("--slices", type=int, default=8, help="validation slices used, evenly spaced (default: 8)")
    p.add_argument("--points", type=int, default=16, help="number of points (default: 16)")
    p.add_argument("--iters", type=int, default=100, help="maximum power-iteration steps (default: 100)")
    p.add_argument("--crop", type=int, default=64, help="side of the random crops, 0 for whole slices (default: 64)")
    p.add_argument("--sigmas", type=float, nargs="+", default=[5, 15, 25],
                   help="noise levels of the points in units of 1/255 of the image range (default: 5 15 25)")
    p.add_argument("--seed", type=int, default=0, help="seed of crops, noise and start vectors (default: 0)")
    p.add_argument("--equivariant", choices=["average", "random"], default=None,
                   help="wrap the denoiser in the rotation/flip-equivariant average")
    p.add_argument("--json", type=Path, default=None, help="also write the certificate to this JSON file")
    p.add_argument("--rescale-reflection", type=Path, default=None, metavar="OUT.pt",
                   help="also write D' = (I + (2D-I)/L)/2 to this weights file, L the largest estimated "
                        "Lip(2D-I) (at least 1): firmly non-expansive by the estimate; certify it again with "
                        "another --seed")


def resolve_data(data: str) -> Path:
    """``demo`` -> the demo validation split; otherwise the path itself."""
    if data == "demo":
        from mrirecon.errors import ConfigError

        try:
            from mrirecon.data.demo import demo_root
        except ImportError:
            raise ConfigError("--data demo needs mrirecon.data.demo, which this installation lacks") from None
        return Path(demo_root()) / "val"
    return Path(data)


def run(args: argparse.Namespace) -> int:
    from mrirecon.atomic import atomic_write_text
    from mrirecon.data.images import ImageSlices
    from mrirecon.denoisers import ReflectionScaled, lipschitz_certificate, load_denoiser, save_weights
    from mrirecon.errors import ConfigError

    if args.rescale_reflection is not None and args.equivariant is not None:
        raise ConfigError("--rescale-reflection wraps the network itself; it cannot be combined with --equivariant")
    den = load_denoiser(args.weights, equivariant=args.equivariant)
    images = ImageSlices(resolve_data(args.data), args.key, max_slices=args.slices)
    cert = lipschitz_certificate(den, [images[i] for i in range(len(images))],
                                 sigmas=[s / 255 for s in args.sigmas], n_points=args.points, iters=args.iters,
                                 seed=args.seed, crop=args.crop or None, certify=True)
    print(f"{args.weights} on {len(images)} slices of {args.data} [{args.key}]")
    print(cert.table())
    if args.json is not None:
        atomic_write_text(args.json, json.dumps(cert.to_dict(), indent=2) + "\n")
        print(f"wrote {args.json}")
    if args.rescale_reflection is not None:
        bound = max(1.0, cert.stats["2D-I"].max)
        info = {"description": f"ReflectionScaled: (I + (2D - I)/L)/2 with D = {args.weights} and L = {bound:.6g}, "
                               f"the largest estimated Lip(2D-I) of D (source_certificate)",
                "source": str(args.weights), "source_certificate": cert.to_dict()}  # L: model.config.bound
        out = save_weights(ReflectionScaled.wrap(den, bound), args.rescale_reflection, info)
        print(f"wrote {out} (L = {bound:.4f}) and {out.with_suffix('.json')}")
    return 0

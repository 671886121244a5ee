"""PnP on real scanner data: the shared 8-coil BART brain slice, beside BART's own ``pics`` result.

``../shared/data/bart_brain/ksp.cfl`` is a real 8-coil 2D slice (180 × 230, variable-density Poisson
undersampling) and ``img.cfl`` BART's ``pics`` reconstruction of it (two ESPIRiT map sets, BART v0.3, no
regularisation). This script estimates ESPIRiT maps from the data's own calibration region, reconstructs
with zero-filled, SENSE (when registered), CS-wavelet (when registered), PnP-ADMM, PnP-FBS and GS-PnP at
their defaults (the denoiser each uses by default is named in its label), plus PnP-ADMM with the real-SN
denoiser stopped at 100 iterations (the former default) and with ``dncnn-jac-deq`` (trained inside
DEQ-ADMM), and writes a figure of the magnitudes (each scaled to its own 99.5th percentile) with BART's image,
plus each run's iterations, residual, time and its normalised RMS difference to BART's image. There is no
ground truth for these data: the figure is for visual comparison, and the numbers compare to BART, not to the
truth.

    python benchmarks/pnp_bart_brain.py --out bart_brain_pnp.png [--weights dncnn-sn=PATH ...]
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this checkout, not an installed copy

from benchmarks._common import save_figure  # noqa: E402

ROWS = [("zero-filled", "zf", {}), ("SENSE", "sense", {}), ("CS-wavelet", "cs-wavelet", {}),
        ("PnP-ADMM", "pnp-admm", {}), ("PnP-FBS", "pnp-fbs", {}), ("GS-PnP", "gs-pnp", {}),
        ("PnP-ADMM, real-SN, 100 it.", "pnp-admm", {"weights": "dncnn-sn", "iters": 100}),
        ("PnP-ADMM, DEQ-trained", "pnp-admm", {"weights": "dncnn-jac-deq"})]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "data" / "bart_brain")
    p.add_argument("--out", type=Path, default=Path("bart_brain_pnp.png"))
    p.add_argument("--weights", nargs="*", default=[], metavar="NAME=PATH")
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from mrirecon.data.sample import KSpaceSample, SampleMeta
    from mrirecon.io.cfl import read_cfl
    from mrirecon.methods import get_method, method_names, reconstruct
    from mrirecon.operators.espirit import espirit_maps

    if not (args.data / "ksp.cfl").exists():
        print(f"{args.data}: no ksp.cfl; nothing to do")
        return 1
    ksp = np.asarray(read_cfl(args.data / "ksp"))           # [1, 180, 230, 8]
    bart = np.asarray(read_cfl(args.data / "img"))          # [1, 180, 230, 1, 2]
    k = torch.from_numpy(np.ascontiguousarray(ksp[0].transpose(2, 0, 1))).to(torch.complex64)  # [C, H, W]
    mask = (k.abs().sum(0) > 0).float()                     # [H, W] sampling pattern
    bart_mag = np.sqrt((np.abs(bart[0, :, :, 0, :]) ** 2).sum(-1))
    maps = espirit_maps(k)
    sample = KSpaceSample(kspace=k, mask=mask, maps=maps, meta=SampleMeta(file=str(args.data / "ksp.cfl")))
    weights = dict(w.split("=", 1) for w in args.weights)
    names = set(method_names())
    print(f"bart_brain: k-space {list(k.shape)}, {float(mask.mean()) * 100:.1f}% sampled; maps {list(maps.shape)}")
    panels = [("BART pics (stored)", bart_mag)]
    lines = ["| method | iterations | final residual | converged | time (s) | NRMSD to BART |", "|---|---|---|---|---|---|"]
    for label, method, opts in ROWS:
        if method not in names:
            print(f"{label}: method {method!r} not registered here; skipped")
            continue
        opts = dict(opts)
        default_weights = getattr(get_method(method).options(), "weights", None)
        if default_weights is not None:
            if "weights" not in opts:
                label = f"{label} ({default_weights}, default)"
            name = opts.get("weights", default_weights)
            opts["weights"] = weights.get(name, name)
            opts["divergence"] = "stop"
        try:
            res = reconstruct(sample, method, **opts)
        except KeyError as exc:
            print(f"{label}: {exc}; skipped")
            continue
        mag = res.magnitude().numpy()
        # the scale of BART's image differs (its own data scaling): compare after a least-squares gain
        gain = float((mag * bart_mag).sum() / max((mag * mag).sum(), 1e-30))
        nrmsd = float(np.linalg.norm(gain * mag - bart_mag) / np.linalg.norm(bart_mag))
        info = res.info
        fr = info.get("final_residual")
        lines.append(f"| {label} | {info.get('iterations', 0)} | {'-' if fr is None else f'{fr:.1e}'} | "
                     f"{info.get('converged', '-')} | {info.get('time_s', 0):.1f} | {nrmsd:.3f} |")
        print(lines[-1], flush=True)
        panels.append((label, mag))
    n = len(panels)
    fig, axes = plt.subplots(1, n, figsize=(2.6 * n, 2.4))
    for ax, (label, im) in zip(np.atleast_1d(axes), panels):
        ax.imshow(im, cmap="gray", vmin=0, vmax=np.percentile(im, 99.5))
        ax.set_title(label, fontsize=8)
        ax.axis("off")
    fig.tight_layout()
    save_figure(fig, args.out, dpi=120)
    print("\n".join(lines))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""``mrirecon demo``: reconstruct a simulated multicoil slice and write a comparison figure.

Provisional: simulated Shepp-Logan data until the embedded demo dataset exists.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch

HELP = "reconstruct a demo slice with every available method and write a figure and a metrics table"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("-o", "--out", type=Path, default=Path("demo_out"), help="output folder (default: demo_out)")
    p.add_argument("--accel", type=int, default=4, help="acceleration of the equispaced line mask (default: 4)")
    p.add_argument("--seed", type=int, default=0, help="seed of the simulated noise (default: 0)")


def run(args: argparse.Namespace) -> int:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import sigpy
    import sigpy.mri

    from mrirecon.operators import Sense

    n, coils = 160, 8
    img = torch.from_numpy(sigpy.shepp_logan((n, n)).astype(np.complex64))
    maps = torch.from_numpy(sigpy.mri.birdcage_maps((coils, n, n)).astype(np.complex64))
    maps = maps / (maps.abs().pow(2).sum(0, keepdim=True).sqrt() + 1e-12)
    mask = torch.zeros(1, 1, n)
    mask[..., :: args.accel] = 1
    mask[..., n // 2 - 6: n // 2 + 6] = 1
    E = Sense(maps, mask)
    gen = torch.Generator().manual_seed(args.seed)
    y = E(img) + 0.01 * mask * torch.randn(coils, n, n, dtype=torch.complex64, generator=gen)
    zf = E.H(y)
    recons = {"zero-filled (coil-combined)": zf}
    ref = img.abs().numpy()

    def psnr(x: np.ndarray) -> float:
        return float(20 * np.log10(ref.max()) - 10 * np.log10(np.mean((x - ref) ** 2)))

    args.out.mkdir(parents=True, exist_ok=True)
    fig, axes = plt.subplots(1, len(recons) + 1, figsize=(4 * (len(recons) + 1), 4))
    axes[0].imshow(ref, cmap="gray")
    axes[0].set_title("ground truth")
    lines = ["| method | PSNR (dB) |", "|---|---|"]
    for ax, (name, x) in zip(axes[1:], recons.items()):
        mag = x.abs().numpy()
        p = psnr(mag)
        ax.imshow(mag, cmap="gray")
        ax.set_title(f"{name}\nPSNR {p:.2f} dB")
        lines.append(f"| {name} | {p:.2f} |")
    for ax in axes:
        ax.axis("off")
    fig.tight_layout()
    fig.savefig(args.out / "demo.png", dpi=100)
    (args.out / "metrics.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    print(f"wrote {args.out / 'demo.png'} and {args.out / 'metrics.md'}")
    return 0

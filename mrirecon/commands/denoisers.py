"""``mrirecon denoisers``: list the shipped denoisers, or measure them (``--evaluate``): PSNR and certificate."""
from __future__ import annotations

import argparse
import time

HELP = "list the shipped denoisers with their stored metrics; --evaluate --data D measures PSNR and certificates"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("names", nargs="*", help="denoisers to show/measure (shipped names or files; default: all shipped)")
    p.add_argument("--evaluate", action="store_true", help="measure PSNR and the Lipschitz certificate on --data")
    p.add_argument("--data", default="demo", help="folder/.h5 file, or 'demo' (the demo validation split; default)")
    p.add_argument("--key", default="image", help="image dataset in the files (default: image)")
    p.add_argument("--slices", type=int, default=0, help="validation slices (evenly spaced; default 0: all)")
    p.add_argument("--sigmas", type=float, nargs="+", default=[5, 15, 25], help="noise levels ×1/255 (default 5 15 25)")
    p.add_argument("--points", type=int, default=16, help="certificate points (default 16)")
    p.add_argument("--iters", type=int, default=100, help="certificate power-iteration steps (default 100)")
    p.add_argument("--crop", type=int, default=64, help="certificate crop side (default 64)")
    p.add_argument("--seed", type=int, default=0, help="seed of the noise and certificate points (default 0)")


def _denoiser_names(shipped: dict) -> list[str]:
    """The shipped denoisers: weights with a Lipschitz certificate (not the reconstruction networks beside them)."""
    return [n for n, info in shipped.items() if "certificate" in info]


def _stored(names: list[str]) -> int:
    from mrirecon.denoisers import shipped_denoisers

    shipped = shipped_denoisers()
    rows = ["| denoiser | model | params | val PSNR (dB) σ=5/15/25 | Lip(I−D) | Lip(2D−I) |", "|---|---|---|---|---|---|"]
    for name in names or _denoiser_names(shipped):
        info = shipped.get(name)
        if info is None:
            raise KeyError(f"no shipped denoiser {name!r}; shipped: {', '.join(shipped) or 'none'}")
        m = info.get("model", {})
        psnr = info.get("val_psnr_db", {})
        st = info.get("certificate", {}).get("stats", {})
        rows.append(f"| {name} | {m.get('name')} | {info.get('parameters', '?')} | "
                    f"{' / '.join(f'{psnr[k]:.2f}' for k in ('5', '15', '25') if k in psnr)} | "
                    f"{st.get('I-D', {}).get('max', float('nan')):.3f} | {st.get('2D-I', {}).get('max', float('nan')):.3f} |")
    print("\n".join(rows))
    return 0


def run(args: argparse.Namespace) -> int:
    if not args.evaluate:
        return _stored(args.names)
    import torch

    from mrirecon.commands.lipschitz import resolve_data
    from mrirecon.data.images import ImageSlices, NoisyImages
    from mrirecon.denoisers import lipschitz_certificate, load_denoiser, parameter_count, shipped_denoisers
    from mrirecon.training.denoiser import psnr_complex, sigma_tag

    names = args.names or _denoiser_names(shipped_denoisers())
    images = ImageSlices(resolve_data(args.data), args.key, max_slices=args.slices)
    sigmas = [s / 255 for s in args.sigmas]
    ds = NoisyImages(images, sigmas, seed=args.seed)
    tags = [sigma_tag(s) for s in sigmas]
    head = " | ".join(f"PSNR σ={t}/255" for t in tags)
    rows = [f"| denoiser | params | {head} | Lip(D) | Lip(I−D) | Lip(2D−I) | certified bound Lip(I−D) | s/slice |",
            "|" + "---|" * (7 + len(tags))]
    noisy_psnr: dict[str, list[float]] = {t: [] for t in tags}
    for j in range(len(ds)):
        it = ds[j]
        noisy_psnr[sigma_tag(float(it["sigma"]))].append(float(psnr_complex(it["clean"][None], it["noisy"][None])[0]))
    rows.append("| (noisy input) | — | " + " | ".join(f"{sum(v) / len(v):.2f}" for v in noisy_psnr.values())
                + " | — | — | — | — | — |")
    for name in names:
        den = load_denoiser(name)
        params = parameter_count(den)
        psnr: dict[str, list[float]] = {t: [] for t in tags}
        t0 = time.perf_counter()
        for j in range(len(ds)):
            it = ds[j]
            with torch.no_grad():
                est = den(it["noisy"][None], it["sigma"][None])
            psnr[sigma_tag(float(it["sigma"]))].append(float(psnr_complex(it["clean"][None], est)[0]))
        per_slice = (time.perf_counter() - t0) / len(ds)
        cert = lipschitz_certificate(den, [images[i] for i in range(len(images))], sigmas=sigmas,
                                     n_points=args.points, iters=args.iters, seed=args.seed, crop=args.crop or None,
                                     certify=True)
        st = cert.stats
        bound = "—" if cert.certified_bound is None else f"{cert.certified_bound:.4f}"
        rows.append(f"| {name} | {params} | " + " | ".join(f"{sum(v) / len(v):.2f}" for v in psnr.values())
                    + f" | {st['D'].max:.3f} | {st['I-D'].max:.3f} | {st['2D-I'].max:.3f} | {bound} | {per_slice:.3f} |")
        print(rows[-1], flush=True)
    print(f"\n{len(images)} slices of {args.data} [{args.key}]; complex PSNR, peak = max |x| per slice; certificate: "
          f"max over {args.points} points ({args.crop}x{args.crop} crops), {args.iters} power iterations\n")
    print("\n".join(rows))
    return 0

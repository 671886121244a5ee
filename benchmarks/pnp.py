"""PnP-ADMM iteration time against the sum of its parts (one denoiser call + the data-consistency solve).

An iteration of PnP-ADMM is a data step (warm-started CG on ``(A^H A + I/α) x = A^H y + v/α`` with the fast
SENSE normal), a denoiser call and a few vector updates (dual, residual norm). Two measurements on a
multicoil problem, after 3 warm-up iterations:

1. round-robin, ``--iters`` times: one ``PnPADMM.step``, then its two parts alone on the *same inputs* (so the
   CG does the same number of iterations); reported: median step / (median denoiser + median data step),
   and the median of the per-iteration ratios (goal: ≤ 1.2);
2. ``--iters`` iterations through :func:`mrirecon.solvers.run` (history, divergence check) with the two parts
   timed where they happen: loop time / time inside the parts.

    python benchmarks/pnp.py                         # demo-size slice (160×128, 8 coils), shipped dncnn-sn
    python benchmarks/pnp.py --size 320 320 --coils 15   # the baselines' reference size
    python benchmarks/pnp.py --weights dncnn         # another shipped denoiser (or a weights file)

Timings on a shared machine are noisy: medians, and parts timed next to the step they are compared with.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this checkout, not an installed copy


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--size", type=int, nargs=2, default=[160, 128], help="image H W (default 160 128)")
    p.add_argument("--coils", type=int, default=8)
    p.add_argument("--accel", type=int, default=4)
    p.add_argument("--weights", default="dncnn-sn",
                   help="a shipped denoiser or weights file (default dncnn-sn; when it is not installed, a DnCNN "
                        "10x32 with real spectral normalisation and random weights: the same cost)")
    p.add_argument("--iters", type=int, default=20, help="timed iterations (after 3 warm-up iterations)")
    p.add_argument("--threads", type=int, default=1, help="torch threads (default 1: on a loaded machine more threads spin)")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)

    from mrirecon.denoisers import DnCNN, load_denoiser
    from mrirecon.operators import Sense
    from mrirecon.solvers import PnPADMM, run

    h, w = args.size
    g = torch.Generator().manual_seed(0)
    yy, xx = torch.meshgrid(torch.linspace(-1, 1, h), torch.linspace(-1, 1, w), indexing="ij")
    img = ((yy / 0.9) ** 2 + (xx / 0.8) ** 2 < 1).float() * (0.6 + 0.4 * torch.cos(6 * xx) * torch.sin(4 * yy))
    img = img.to(torch.complex64)
    maps = torch.randn(args.coils, 8, 8, dtype=torch.complex64, generator=g)
    maps = torch.nn.functional.interpolate(torch.view_as_real(maps).permute(0, 3, 1, 2), size=(h, w),
                                           mode="bilinear", align_corners=False).permute(0, 2, 3, 1).contiguous()
    maps = torch.view_as_complex(maps)
    maps = maps / maps.abs().pow(2).sum(0).sqrt()
    mask = torch.zeros(1, 1, w)
    mask[..., ::args.accel] = 1
    c = max(2, int(0.08 * w))
    mask[..., w // 2 - c // 2: w // 2 + c // 2] = 1
    A = Sense(maps, mask)
    y = A(img) + 0.01 * torch.randn(args.coils, h, w, dtype=torch.complex64, generator=g) * mask
    try:
        den = load_denoiser(args.weights).eval()
        name = args.weights
    except KeyError:
        with torch.random.fork_rng():
            torch.manual_seed(0)
            den = DnCNN(depth=10, width=32, lipschitz=0.95).eval()
        name = f"DnCNN 10x32 real-SN, random weights ({args.weights} is not installed)"
    for prm in den.parameters():
        prm.requires_grad_(False)

    solver = PnPADMM(A, y, den, sigma=0.02, alpha=1.0, max_iter=args.iters, tol=0.0)
    prox = solver.data.prox
    state = solver.init(A.H(y))
    for _ in range(3):  # warm-up (FFT plans, allocator)
        state = solver.step(state)

    # (1) round-robin: one PnP-ADMM step, then its two parts on the same inputs (same CG work)
    t_step, t_dc, t_den, cg_its = [], [], [], []
    with torch.no_grad():
        for _ in range(args.iters):
            t0 = time.perf_counter()
            new = solver.step(state)
            t_step.append(time.perf_counter() - t0)
            cg_its.append(solver.data.last_iters)
            t0 = time.perf_counter()
            x = prox(state.z - state.u, solver.alpha, x0=state.x)
            t_dc.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            den(x + state.u, solver.sigma)
            t_den.append(time.perf_counter() - t0)
            state = new
    med = statistics.median
    ratios = [a / (b + c) for a, b, c in zip(t_step, t_dc, t_den)]

    # (2) the run loop: whole iterations through run() (history, residual, divergence check) vs the parts
    #     timed where they happen inside those iterations
    in_den: list[float] = []
    in_dc: list[float] = []

    def timed_denoiser(x: torch.Tensor, sigma: float | None = None) -> torch.Tensor:
        t0 = time.perf_counter()
        out = den(x, sigma)
        in_den.append(time.perf_counter() - t0)
        return out

    def timed_prox(v: torch.Tensor, alpha: float, x0: torch.Tensor | None = None) -> torch.Tensor:
        t0 = time.perf_counter()
        out = prox(v, alpha, x0)
        in_dc.append(time.perf_counter() - t0)
        return out

    solver.denoiser = timed_denoiser
    solver.data.prox = timed_prox  # type: ignore[method-assign]
    _, hist = run(solver, state=state, max_iter=args.iters)
    loop = hist.time[-1]

    print(f"PnP-ADMM iteration, {h}x{w}, {args.coils} coils, {args.accel}x, denoiser {name}, "
          f"{torch.get_num_threads()} thread(s), {args.iters} iterations after 3 warm-up")
    print(f"  median PnP-ADMM step:            {med(t_step) * 1e3:8.1f} ms")
    print(f"  median denoiser call (same input):{med(t_den) * 1e3:7.1f} ms")
    print(f"  median data step (same input):   {med(t_dc) * 1e3:8.1f} ms (CG iterations: median {med(cg_its):.0f})")
    print(f"  step / (denoiser + data step):   {med(t_step) / (med(t_den) + med(t_dc)):8.3f} (ratio of medians); "
          f"{med(ratios):.3f} (median of per-iteration ratios)   goal <= 1.2")
    print(f"  run() loop / (parts timed inside it): {loop / (sum(in_den) + sum(in_dc)):.3f} "
          f"({loop:.2f} s over {len(hist.time)} iterations, history and divergence check included)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""PnP-ADMM iteration time against the sum of its parts (one denoiser call + the data-consistency solve).

The run loop adds bookkeeping to every iteration (the residual norm, the dual update, history, the
divergence check). This benchmark runs PnP-ADMM through :func:`mrirecon.solvers.run` on a multicoil
problem, times each iteration's two parts where they happen (the denoiser call and the CG data step,
wrapped with timers), and reports, over ``--iters`` iterations after a warm-up::

    overhead ratio = (time of run's iterations) / (time in the denoiser + time in the data step)

(goal: ≤ 1.2), plus the standalone cost of each part measured outside the loop (median of ``--repeat``
calls: the denoiser on the image, the data step warm-started from a neighbouring point).

    python benchmarks/pnp.py                         # demo-size slice (160×128, 8 coils), shipped dncnn-sn
    python benchmarks/pnp.py --size 320 --coils 15   # the baselines' reference size
    python benchmarks/pnp.py --weights dncnn         # another shipped denoiser (or a weights file)

Timings on a shared machine are noisy: medians are reported, and the ratio compares times taken in the
same iterations.
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
    p.add_argument("--repeat", type=int, default=10, help="standalone calls per part")
    p.add_argument("--threads", type=int, default=1, help="torch threads (default 1: on a loaded machine more threads spin)")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)

    from mrirecon.denoisers import DnCNN, load_denoiser
    from mrirecon.operators import Sense, fft2c
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

    t_den: list[float] = []
    t_dc: list[float] = []

    def timed_denoiser(x: torch.Tensor, sigma: float | None = None) -> torch.Tensor:
        t0 = time.perf_counter()
        out = den(x, sigma)
        t_den.append(time.perf_counter() - t0)
        return out

    solver = PnPADMM(A, y, timed_denoiser, sigma=0.02, alpha=1.0, max_iter=3 + args.iters, tol=0.0)
    prox = solver.data.prox

    def timed_prox(v: torch.Tensor, alpha: float, x0: torch.Tensor | None = None) -> torch.Tensor:
        t0 = time.perf_counter()
        out = prox(v, alpha, x0)
        t_dc.append(time.perf_counter() - t0)
        return out

    solver.data.prox = timed_prox  # type: ignore[method-assign]
    state = solver.init(A.H(y))
    _, warm = run(solver, state=state, max_iter=3)
    state_after = None

    def keep(s, hist):  # noqa: ANN001
        nonlocal state_after
        state_after = s

    t_den.clear()
    t_dc.clear()
    t0 = time.perf_counter()
    _, hist = run(solver, state=state, max_iter=args.iters, callback=keep)
    total = time.perf_counter() - t0
    loop = hist.time[-1]
    parts = sum(t_den) + sum(t_dc)
    inner = [solver.data.last_iters]

    # standalone medians
    x = state_after.x if state_after is not None else A.H(y)
    sa, sb = [], []
    with torch.no_grad():
        for _ in range(args.repeat):
            t0 = time.perf_counter()
            den(x, 0.02)
            sa.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            prox(x + 1e-3 * x.abs().max(), 1.0, x)
            sb.append(time.perf_counter() - t0)
    med_den, med_dc = statistics.median(sa), statistics.median(sb)
    print(f"PnP-ADMM, {h}x{w}, {args.coils} coils, {args.accel}x, denoiser {name}, {torch.get_num_threads()} threads")
    print(f"  iterations timed:            {hist.iterations}")
    print(f"  median iteration (run loop): {hist.time_per_iteration() * 1e3:8.1f} ms")
    print(f"  median denoiser call in loop:{statistics.median(t_den) * 1e3:8.1f} ms")
    print(f"  median data step in loop:    {statistics.median(t_dc) * 1e3:8.1f} ms (CG iterations of the last: "
          f"{inner[0]})")
    print(f"  standalone denoiser (median):{med_den * 1e3:8.1f} ms")
    print(f"  standalone data step (median, warm start):{med_dc * 1e3:8.1f} ms")
    print(f"  loop time / (denoiser + data step) time: {loop / parts:.3f}  (goal <= 1.2; "
          f"wall {total:.2f} s incl. history)")
    print(f"  median iteration / (standalone denoiser + data step): "
          f"{hist.time_per_iteration() / (med_den + med_dc):.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

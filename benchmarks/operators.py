"""Benchmark: the SENSE normal operator against the bare FFTs it contains and against sigpy.

One 15-coil 320×320 complex64 slice; ``Sense(maps, mask).N`` with a 4× equispaced line mask and a 4×
Poisson-disc mask, against ``torch.fft.fft2`` + ``ifft2`` of ``[15, 320, 320]`` (the 2×15 FFTs of one
normal-operator application) and sigpy's ``sigpy.mri.linop.Sense`` normal operator ``S.H * S``.
Operations are timed round-robin (so that load from other processes spreads over all of them);
medians and minima in milliseconds.

glibc returns freed large buffers to the OS (they are ``mmap``-ed above ``M_MMAP_THRESHOLD``), so
every 12 MB temporary costs ~3000 page faults. The benchmark therefore runs twice, in two child
processes: with glibc's default malloc settings, and with ``MALLOC_MMAP_THRESHOLD_`` /
``MALLOC_TRIM_THRESHOLD_`` set so that freed buffers are reused; the output says which is which and
counts minor page faults per call.

Usage::

    python benchmarks/operators.py                 # both malloc settings, 2 threads
    python benchmarks/operators.py --malloc tuned --reps 50
    python benchmarks/operators.py --masks         # Poisson-disc masks: ours vs ``bart poisson``
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TUNED_ENV = {"MALLOC_MMAP_THRESHOLD_": str(1 << 30), "MALLOC_TRIM_THRESHOLD_": str(1 << 31)}
MALLOC_VARS = ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "MALLOC_TOP_PAD_", "MALLOC_ARENA_MAX")


def _time_round_robin(ops: dict[str, Callable[[], object]], reps: int) -> dict[str, dict[str, float]]:
    for f in ops.values():  # warm-up (plans, caches)
        f()
        f()
    times: dict[str, list[float]] = {k: [] for k in ops}
    faults: dict[str, int] = {k: 0 for k in ops}
    for _ in range(reps):
        for name, f in ops.items():
            f0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
            t0 = time.perf_counter()
            f()
            times[name].append(time.perf_counter() - t0)
            faults[name] += resource.getrusage(resource.RUSAGE_SELF).ru_minflt - f0
    out = {}
    for name, ts in times.items():
        ts = sorted(ts)
        out[name] = {"median_ms": 1e3 * ts[len(ts) // 2], "min_ms": 1e3 * ts[0], "faults": faults[name] / reps}
    return out


def run_child(reps: int, threads: int, coils: int, size: int) -> dict:
    """Time every operation in this process (with whatever malloc settings it was started with)."""
    sys.path.insert(0, str(ROOT))
    import numpy as np
    import sigpy
    import sigpy.mri
    import torch

    from mrirecon.operators import MaskSpec, Sense, rss

    torch.set_num_threads(threads)
    g = torch.Generator().manual_seed(0)
    c, h, w = coils, size, size
    maps = torch.randn(c, h, w, dtype=torch.complex64, generator=g)
    maps = maps / rss(maps).unsqueeze(0)
    x = torch.randn(h, w, dtype=torch.complex64, generator=g)
    xc = torch.randn(c, h, w, dtype=torch.complex64, generator=g)
    line = MaskSpec("equispaced", 4, center_fraction=0.08).make((h, w), seed=0)       # [W]
    poisson = MaskSpec("poisson", 4, calib=24).make((h, w), seed=0)                   # [H, W]
    masks = {"1D equispaced 4x": line.reshape(1, 1, w), "2D Poisson 4x": poisson}

    ops: dict[str, Callable[[], object]] = {
        "bare FFT: fft2 + ifft2 of [C, H, W]": lambda: torch.fft.ifft2(torch.fft.fft2(xc, norm="ortho"), norm="ortho"),
        "bare 1D FFT: fft + ifft along W": lambda: torch.fft.ifft(torch.fft.fft(xc, dim=-1, norm="ortho"),
                                                                  dim=-1, norm="ortho"),
    }
    checks = {}
    mps_np, x_np = maps.numpy(), x.numpy()
    for label, m in masks.items():
        E = Sense(maps, m)
        N = E.N
        weights = np.broadcast_to(m.numpy(), (c, h, w)).astype(np.float32)
        S = sigpy.mri.linop.Sense(mps_np, weights=weights)
        SN = S.H * S
        ops[f"mrirecon Sense.N, {label}"] = (lambda N=N: N(x))
        ops[f"mrirecon E.H(E(x)), {label}"] = (lambda E=E: E.H(E(x)))
        ops[f"sigpy S.H*S, {label}"] = (lambda SN=SN: SN(x_np))
        ours, theirs = N(x).numpy(), SN(x_np)
        checks[label] = float(np.linalg.norm(ours - theirs) / np.linalg.norm(theirs))
    res = _time_round_robin(ops, reps)
    return {
        "results": res, "agreement_rel_err": checks, "threads": threads, "reps": reps,
        "malloc_env": {k: os.environ[k] for k in MALLOC_VARS if k in os.environ},
        "torch": torch.__version__, "sigpy": sigpy.__version__, "numpy": np.__version__,
        "mask_fractions": {k: float(v.expand(h, w).mean()) for k, v in
                           {"1D equispaced 4x": line.reshape(1, w), "2D Poisson 4x": poisson}.items()},
    }


def _child_env(setting: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in MALLOC_VARS}
    if setting == "tuned":
        env.update(TUNED_ENV)
    env["OMP_NUM_THREADS"] = env.get("OMP_NUM_THREADS", "")
    env.pop("OMP_NUM_THREADS")
    return env


def _table(runs: dict[str, dict]) -> str:
    settings = list(runs)
    names = list(next(iter(runs.values()))["results"])
    lines = []
    head = "| operation | " + " | ".join(f"{s}: median ms (min) | × bare FFT | sigpy / ours | faults"
                                       for s in settings) + " |"
    lines += [head, "|" + "---|" * (1 + 4 * len(settings))]
    for name in names:
        cells = [name]
        for s in settings:
            r = runs[s]["results"]
            fft = r["bare FFT: fft2 + ifft2 of [C, H, W]"]["median_ms"]
            me = r[name]
            cells.append(f"{me['median_ms']:.1f} ({me['min_ms']:.1f})")
            cells.append(f"{me['median_ms'] / fft:.2f}")
            if name.startswith("mrirecon Sense.N"):
                sig = r[name.replace("mrirecon Sense.N", "sigpy S.H*S")]["median_ms"]
                cells.append(f"{sig / me['median_ms']:.1f}")
            else:
                cells.append("")
            cells.append(f"{me['faults']:.0f}")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


POISSON_CASES = [  # (Y, Z, -y, -z, -C, -v, -e)
    (320, 320, 2.0, 2.0, 24, True, False),
    (320, 320, 2.0, 2.0, 24, False, False),
    (256, 256, 1.0, 1.0, 0, True, False),
    (180, 230, 1.5, 1.5, 20, True, True),
]


def run_masks(seeds: int = 3) -> int:
    """Sampled fraction and generation time of ``poisson_mask_bart`` against ``bart poisson``."""
    import shutil
    import tempfile

    import numpy as np

    sys.path.insert(0, str(ROOT))
    from mrirecon.io.cfl import read_cfl
    from mrirecon.operators import poisson_mask, poisson_mask_bart

    exe = shutil.which("bart")
    if exe is None:
        print("bart is not installed")
        return 1
    print(f"# Poisson-disc masks, {seeds} seeds each; times are medians per mask (single thread)")
    print("| bart poisson arguments | BART fraction | ours | ratio | BART s | ours s |")
    print("|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        for ny, nz, ay, az, c, vd, ell in POISSON_CASES:
            args = ["-Y", ny, "-Z", nz, "-y", ay, "-z", az, "-C", c] + (["-v"] if vd else []) + (["-e"] if ell else [])
            fb, fo, tb, to = [], [], [], []
            for seed in range(1, seeds + 1):
                t0 = time.perf_counter()
                subprocess.run([exe, "poisson", *map(str, args), "-s", str(seed), f"{tmp}/p"], check=True,
                               capture_output=True)
                tb.append(time.perf_counter() - t0)
                fb.append(float(np.abs(read_cfl(f"{tmp}/p")).mean()))
                t0 = time.perf_counter()
                fo.append(float(poisson_mask_bart((ny, nz), ay, az, c, vd, ell, seed=seed).mean()))
                to.append(time.perf_counter() - t0)
            print(f"| {' '.join(map(str, args))} | {np.mean(fb):.4f} | {np.mean(fo):.4f} | "
                  f"{np.mean(fo) / np.mean(fb):.3f} | {np.median(tb):.2f} | {np.median(to):.2f} |")
    print("# MaskSpec('poisson', R, calib=24) on 320x320: achieved acceleration and time")
    for r in (4, 8, 12):
        t0 = time.perf_counter()
        m = poisson_mask((320, 320), r, 24, seed=0)
        print(f"#   R={r}: achieved {1 / float(m.mean()):.3f} in {time.perf_counter() - t0:.2f} s")
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--malloc", choices=("both", "default", "tuned"), default="both",
                    help="glibc malloc settings: default, tuned (MALLOC_MMAP/TRIM_THRESHOLD_), or both")
    ap.add_argument("--reps", type=int, default=30)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--coils", type=int, default=15)
    ap.add_argument("--size", type=int, default=320)
    ap.add_argument("--masks", action="store_true", help="compare Poisson-disc masks with bart poisson instead")
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.masks:
        return run_masks()
    if args.child:
        print(json.dumps(run_child(args.reps, args.threads, args.coils, args.size)))
        return 0
    settings = ("default", "tuned") if args.malloc == "both" else (args.malloc,)
    runs = {}
    for s in settings:
        cmd = [sys.executable, __file__, "--child", "--reps", str(args.reps), "--threads", str(args.threads),
               "--coils", str(args.coils), "--size", str(args.size)]
        out = subprocess.run(cmd, env=_child_env(s), capture_output=True, text=True, check=True)
        runs[s] = json.loads(out.stdout.strip().splitlines()[-1])
    first = next(iter(runs.values()))
    print(f"# SENSE normal operator, {args.coils} coils x {args.size}x{args.size} complex64, "
          f"{args.threads} torch threads (sigpy: numpy FFT), {args.reps} round-robin repetitions")
    print(f"# torch {first['torch']}, sigpy {first['sigpy']}, numpy {first['numpy']}, {platform.processor() or platform.machine()}, "
          f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}")
    for s, r in runs.items():
        env = r["malloc_env"] or "glibc defaults (no MALLOC_* variables)"
        print(f"# malloc '{s}': {env}")
    print(f"# masks: sampled fractions {first['mask_fractions']}")
    print(f"# ours vs sigpy normal operator, relative difference: {first['agreement_rel_err']}")
    print(_table(runs))
    print("# faults: minor page faults per call (glibc returning freed buffers to the OS costs one per 4 KiB page)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

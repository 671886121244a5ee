"""Benchmark: classical baselines side by side with BART and sigpy (CS-wavelet iterations and ESPIRiT).

Problems:

* ``reference``: the simulated 15-coil 320×320 complex64 slice of :mod:`benchmarks.problems`
  (4× equispaced lines, 26 centre lines);
* ``bart_brain``: the real 8-coil 180×230 brain k-space in ``../shared/data/bart_brain`` (2D
  variable-density Poisson sampling), when present.

For each problem, with BART's ESPIRiT maps (``bart ecalib -m1``) shared by everybody:

* CS-wavelet time per iteration: ``bart pics -R W:7:0:λ`` (difference of the wall times of
  ``-i N2`` and ``-i N1`` runs, divided by ``N2 - N1``), sigpy's ``L1WaveletRecon`` (``alg.update()``
  timed one by one), ours (``FISTA.step`` timed one by one), and the bare FFT cost of one ``A^H A``
  (``fft2`` + ``ifft2`` of ``[C, H, W]``: 2×C FFTs), ours and the bare FFTs timed alternately;
* quality at equal iterations (``--quality-iters``, default 100): PSNR against the ground truth
  (reference problem) of ours (mean over 3 cycle-spinning seeds) and BART (``pics -S``), and the
  normalised RMSE between the magnitudes;
* ESPIRiT: ours (``espirit_maps``), ``bart ecalib -m1``, sigpy ``EspiritCalib`` (one run; it is slow).

Everything runs with ``--threads`` threads (torch, and ``OMP_NUM_THREADS`` for BART), twice in child
processes: with glibc's default malloc, and with ``MALLOC_MMAP_THRESHOLD_``/``MALLOC_TRIM_THRESHOLD_``
set so that freed 12 MB buffers are kept (BART is started with the same environment). Medians (and
minima) over ``--reps`` repetitions. Timing numbers from a shared machine are noisy: the load average is
printed with them.

Usage::

    python benchmarks/baselines.py                       # both malloc settings, 2 threads
    python benchmarks/baselines.py --threads 1 --malloc tuned --reps 5
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TUNED_ENV = {"MALLOC_MMAP_THRESHOLD_": str(1 << 30), "MALLOC_TRIM_THRESHOLD_": str(1 << 31)}
MALLOC_VARS = ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "MALLOC_TOP_PAD_", "MALLOC_ARENA_MAX")
BRAIN = ROOT.parent / "shared" / "data" / "bart_brain"


def _median(ts: list[float]) -> float:
    s = sorted(ts)
    return s[len(s) // 2]


def _bart(bart: str, threads: int, *args: object) -> float:
    """Run BART, return its wall time in seconds."""
    env = dict(os.environ, OMP_NUM_THREADS=str(threads))
    t0 = time.perf_counter()
    res = subprocess.run([bart, *map(str, args)], env=env, capture_output=True, text=True, check=False)
    dt = time.perf_counter() - t0
    if res.returncode != 0:
        raise RuntimeError(f"bart {' '.join(map(str, args))} failed: {res.stderr[-500:]}")
    return dt


def _problems(tmp: Path) -> dict:
    """k-space [C, H, W], mask, ground truth (or None) per problem; cfl copies in BART layout."""
    import numpy as np
    import torch

    from benchmarks.problems import reference_problem
    from mrirecon.io.cfl import read_cfl, write_cfl

    out = {}
    p = reference_problem()
    write_cfl(tmp / "reference_ksp", np.moveaxis(p.kspace.numpy(), 0, -1)[:, :, None, :])
    out["reference"] = {"kspace": p.kspace, "mask": p.mask, "gt": p.image.abs(), "dir": tmp / "reference"}
    if (BRAIN / "ksp.cfl").exists():
        k = read_cfl(BRAIN / "ksp")
        h, w, c = k.shape[-3:] if k.ndim == 4 else k.shape
        k = k.reshape(h, w, 1, c)
        write_cfl(tmp / "bart_brain_ksp", k)
        ksp = torch.from_numpy(np.ascontiguousarray(np.moveaxis(k[:, :, 0, :], -1, 0)))
        out["bart_brain"] = {"kspace": ksp, "mask": (ksp != 0).any(dim=0).float(), "gt": None,
                             "dir": tmp / "bart_brain"}
    return out


def run_child(reps: int, threads: int, lam: float, n1: int, n2: int, quality_iters: int, sigpy_on: bool) -> dict:
    """All measurements in this process (with whatever malloc settings it was started with)."""
    sys.path.insert(0, str(ROOT))
    import numpy as np
    import torch

    from mrirecon.data.sample import KSpaceSample
    from mrirecon.io.cfl import read_cfl
    from mrirecon.methods import reconstruct
    from mrirecon.methods.scaling import bart_scaling
    from mrirecon.metrics import psnr
    from mrirecon.operators import Sense
    from mrirecon.operators.espirit import espirit_maps, map_projection
    from mrirecon.solvers import FISTA, L1Wavelet, L2Data

    torch.set_num_threads(threads)
    bart = shutil.which("bart")
    results: dict = {"threads": threads, "load": os.getloadavg()[0], "problems": {}}
    with tempfile.TemporaryDirectory() as tmpdir:
        tmp = Path(tmpdir)
        for name, prob in _problems(tmp).items():
            ksp, mask = prob["kspace"], prob["mask"]
            C, H, W = ksp.shape
            kfile = tmp / f"{name}_ksp"
            r: dict = {"shape": [C, H, W]}
            # ---- ESPIRiT ------------------------------------------------------------------
            espirit_maps(ksp)  # warm-up
            ts = []
            for _ in range(reps):
                t0 = time.perf_counter()
                ours_maps = espirit_maps(ksp)
                ts.append(time.perf_counter() - t0)
            r["espirit_ours"] = (_median(ts), min(ts))
            if bart:
                ts = [_bart(bart, threads, "ecalib", "-m1", kfile, tmp / f"{name}_maps") for _ in range(reps)]
                r["espirit_bart"] = (_median(ts), min(ts))
                maps = torch.from_numpy(np.ascontiguousarray(np.moveaxis(
                    read_cfl(tmp / f"{name}_maps").reshape(H, W, C), -1, 0)))
                support = (maps.abs().sum(0) > 0) & (ours_maps.abs().sum(0) > 0)
                r["espirit_proj_median"] = float(map_projection(ours_maps, maps)[support].median())
            else:
                maps = ours_maps
            if sigpy_on:
                from mrirecon.operators.espirit import espirit_maps_sigpy

                t0 = time.perf_counter()
                espirit_maps_sigpy(ksp)
                r["espirit_sigpy"] = (time.perf_counter() - t0,) * 2
            # ---- bare FFT cost of A^H A and ours (FISTA steps), timed alternately -------------------
            # Interleaved so that a slow phase of a shared machine hits both sides of the ratio.
            xc = torch.randn(C, H, W, dtype=torch.complex64, generator=torch.Generator().manual_seed(0))
            s = float(bart_scaling(ksp))
            A = Sense(maps, mask)
            solver = FISTA(L2Data(A, ksp / s), L1Wavelet(lam, (H, W)), step=0.95)
            state = solver.init()
            for _ in range(3):
                torch.fft.ifft2(torch.fft.fft2(xc))
                state = solver.step(state)
            t_fft, t_ours = [], []
            for _ in range(max(n2 - n1, 10 * reps, 30)):
                t0 = time.perf_counter()
                torch.fft.ifft2(torch.fft.fft2(xc))
                t_fft.append(time.perf_counter() - t0)
                t0 = time.perf_counter()
                state = solver.step(state)
                t_ours.append(time.perf_counter() - t0)
            r["bare_fft"] = (_median(t_fft), min(t_fft))
            r["iter_ours"] = (_median(t_ours), min(t_ours))
            # ---- BART: difference of two runs -------------------------------------------------
            if bart:
                d = []
                for _ in range(reps):
                    t_a = _bart(bart, threads, "pics", "-R", f"W:7:0:{lam}", "-i", n1, kfile, tmp / f"{name}_maps",
                                tmp / "img")
                    t_b = _bart(bart, threads, "pics", "-R", f"W:7:0:{lam}", "-i", n2, kfile, tmp / f"{name}_maps",
                                tmp / "img")
                    d.append((t_b - t_a) / (n2 - n1))
                r["iter_bart"] = (_median(d), min(d))
            # ---- sigpy ------------------------------------------------------------------------
            if sigpy_on:
                import sigpy.mri.app

                app = sigpy.mri.app.L1WaveletRecon((ksp / s).numpy(), maps.numpy(), lam, max_iter=n2,
                                                   show_pbar=False)
                for _ in range(2):
                    app.alg.update()
                ts = []
                for _ in range(max(5, reps)):
                    t0 = time.perf_counter()
                    app.alg.update()
                    ts.append(time.perf_counter() - t0)
                r["iter_sigpy"] = (_median(ts), min(ts))
            # ---- quality at equal iterations ---------------------------------------------------
            if bart:
                _bart(bart, threads, "pics", "-S", "-R", f"W:7:0:{lam}", "-i", quality_iters, kfile,
                      tmp / f"{name}_maps", tmp / "q")
                xb = torch.from_numpy(read_cfl(tmp / "q").reshape(H, W).copy()).abs()
                sample = KSpaceSample(kspace=ksp, mask=mask, maps=maps)
                ours = [reconstruct(sample, "cs-wavelet", lam=lam, iters=quality_iters, seed=sd).image.abs()
                        for sd in range(3)]
                r["nrmse_vs_bart"] = float(np.mean([float(torch.linalg.norm(o - xb) / torch.linalg.norm(xb))
                                                    for o in ours]))
                if prob["gt"] is not None:
                    gt = prob["gt"].numpy()[None]
                    r["psnr_bart"] = psnr(gt, xb.numpy()[None])
                    r["psnr_ours"] = float(np.mean([psnr(gt, o.numpy()[None]) for o in ours]))
                    zf = reconstruct(sample, "zf").image.abs().numpy()[None]
                    r["psnr_zf"] = psnr(gt, zf)
            results["problems"][name] = r
    return results


def _fmt(v: tuple[float, float] | None, scale: float = 1e3) -> str:
    return "" if v is None else f"{v[0] * scale:.1f} ({v[1] * scale:.1f})"


def _report(label: str, env: dict, res: dict, args: argparse.Namespace) -> None:
    import torch

    print(f"\n# malloc {label!r}: {env or 'glibc defaults (no MALLOC_* variables)'}; {res['threads']} threads; "
          f"load average at start {res['load']:.2f}")
    print(f"# torch {torch.__version__}, {platform.machine()}, {os.cpu_count()} CPUs; CS-wavelet λ = {args.lam}; "
          f"BART per-iteration = (t(-i {args.n2}) - t(-i {args.n1})) / {args.n2 - args.n1}")
    print("| problem | bare A^H A FFTs ms | ours ms/iter | BART ms/iter | sigpy ms/iter | ours/BART | ours/FFT "
          "| ESPIRiT ours s | BART ecalib s | sigpy s | ours/BART |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for name, r in res["problems"].items():
        it_o, it_b, fft = r["iter_ours"], r.get("iter_bart"), r["bare_fft"]
        e_o, e_b = r["espirit_ours"], r.get("espirit_bart")
        print(f"| {name} {r['shape']} | {_fmt(fft)} | {_fmt(it_o)} | {_fmt(it_b)} | {_fmt(r.get('iter_sigpy'))} | "
              f"{'' if it_b is None else f'{it_o[0] / it_b[0]:.2f}'} | {it_o[0] / fft[0]:.2f} | "
              f"{_fmt(e_o, 1)} | {_fmt(e_b, 1)} | {_fmt(r.get('espirit_sigpy'), 1)} | "
              f"{'' if e_b is None else f'{e_o[0] / e_b[0]:.2f}'} |")
    print(f"\n# quality after {args.quality_iters} iterations (ours: mean of 3 cycle-spinning seeds; BART pics -S)")
    print("| problem | PSNR zero-filled | PSNR BART | PSNR ours | NRMSE(|ours|, |BART|) | ESPIRiT median |<s_ours, s_bart>| |")
    print("|---|---|---|---|---|---|")
    for name, r in res["problems"].items():
        def f(k: str, r: dict = r) -> str:
            return f"{r[k]:.2f}" if k in r else "n/a (no ground truth)"

        print(f"| {name} | {f('psnr_zf')} | {f('psnr_bart')} | {f('psnr_ours')} | {r.get('nrmse_vs_bart', float('nan')):.4f} "
              f"| {r.get('espirit_proj_median', float('nan')):.5f} |")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--reps", type=int, default=3, help="repetitions for medians (default 3)")
    ap.add_argument("--threads", type=int, default=2, help="torch threads and OMP_NUM_THREADS for BART (default 2)")
    ap.add_argument("--lam", type=float, default=0.01, help="CS-wavelet λ (BART convention, default 0.01)")
    ap.add_argument("--n1", type=int, default=5, help="BART short run iterations (default 5)")
    ap.add_argument("--n2", type=int, default=25, help="BART long run iterations (default 25)")
    ap.add_argument("--quality-iters", type=int, default=100, help="iterations for the quality comparison")
    ap.add_argument("--malloc", choices=["both", "default", "tuned"], default="both")
    ap.add_argument("--no-sigpy", action="store_true", help="skip sigpy (slow)")
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        res = run_child(args.reps, args.threads, args.lam, args.n1, args.n2, args.quality_iters, not args.no_sigpy)
        print(json.dumps(res))
        return 0
    settings = {"default": {}, "tuned": TUNED_ENV}
    labels = ["default", "tuned"] if args.malloc == "both" else [args.malloc]
    for label in labels:
        env = {k: v for k, v in os.environ.items() if k not in MALLOC_VARS}
        env.update(settings[label])
        env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
        cmd = [sys.executable, str(Path(__file__).resolve()), "--child", "--reps", str(args.reps), "--threads",
               str(args.threads), "--lam", str(args.lam), "--n1", str(args.n1), "--n2", str(args.n2),
               "--quality-iters", str(args.quality_iters)] + (["--no-sigpy"] if args.no_sigpy else [])
        out = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
        if out.returncode != 0:
            print(out.stderr[-3000:], file=sys.stderr)
            return out.returncode
        _report(label, settings[label], json.loads(out.stdout.strip().splitlines()[-1]), args)
    return 0


if __name__ == "__main__":
    sys.exit(main())

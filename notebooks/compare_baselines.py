# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Classical baselines: zero-filled, SENSE, CS-wavelet, CS-TV
#
# Every learned method in mrirecon is judged against these baselines. This notebook compares them on
#
# 1. a simulated multicoil phantom (ground truth known): images, error maps, PSNR/SSIM;
# 2. a λ sweep (PSNR against λ, in BART's λ convention) and the convergence of the solvers;
# 3. the real 8-coil brain k-space in `../shared/data/bart_brain` (skipped when absent);
# 4. the validation split of the embedded demo dataset (`mrirecon.data.demo`);
# 5. plug-and-play with the shipped denoisers, 6. the PD-net, 7. the DEQ and unrolled-ADMM networks (sections
#    whose weights are not installed are skipped).
#
# All regularised methods use BART's data scaling and λ convention (`bart pics`), with ESPIRiT maps
# (`espirit_maps`, BART `ecalib` semantics). Set `MRIRECON_NOTEBOOK_FAST=1` for a quick run on small sizes
# (the test suite does).

# %%
import os
import shutil
import sys
import time
from pathlib import Path

REPO = Path.cwd().resolve().parent if Path.cwd().name == "notebooks" else Path.cwd().resolve()
sys.path.insert(0, str(REPO))  # this checkout's mrirecon and benchmarks, not an installed copy

import matplotlib.pyplot as plt
import numpy as np
import torch

from benchmarks.problems import reference_problem
from mrirecon.data.sample import KSpaceSample
from mrirecon.methods import reconstruct
from mrirecon.metrics import psnr, ssim
from mrirecon.operators.espirit import espirit_maps

FAST = os.environ.get("MRIRECON_NOTEBOOK_FAST", "0") == "1"
torch.set_num_threads(int(os.environ.get("MRIRECON_THREADS", "1" if FAST else "2")))
N, COILS = (96, 6) if FAST else (256, 12)
ITERS = {"sense": 30, "cs-wavelet": 40 if FAST else 100, "cs-tv": 20 if FAST else 50}
METHODS = ["zf", "sense", "cs-wavelet", "cs-tv"]
SHARED = REPO.parent / "shared" / "data"
print(f"fast={FAST}, phantom {N}x{N} with {COILS} coils, torch threads {torch.get_num_threads()}")


def run_all(sample: KSpaceSample, **overrides: dict) -> dict:
    """Reconstruct ``sample`` with every method; returns {method: (magnitude image, ReconResult)}."""
    out = {}
    for m in METHODS:
        opts = {} if m == "zf" else {"iters": ITERS[m], **overrides.get(m, {})}
        t0 = time.perf_counter()
        res = reconstruct(sample, m, **opts)
        out[m] = (res.magnitude(sample.multi_set).numpy(), res, time.perf_counter() - t0)
    return out


def metric_table(gt: np.ndarray, recons: dict) -> str:
    rows = ["| method | PSNR (dB) | SSIM | time (s) |", "|---|---|---|---|"]
    for m, (img, _, dt) in recons.items():
        rows.append(f"| {m} | {psnr(gt[None], img[None]):.2f} | {ssim(gt[None], img[None]):.4f} | {dt:.2f} |")
    return "\n".join(rows)


def figure_grid(gt: np.ndarray | None, recons: dict, title: str) -> None:
    cols = len(recons) + (gt is not None)
    rows = 2 if gt is not None else 1
    fig, axes = plt.subplots(rows, cols, figsize=(3 * cols, 3 * rows), squeeze=False)
    vmax = float(np.percentile(gt if gt is not None else recons.get("zf", next(iter(recons.values())))[0], 99.5))
    c = 0
    if gt is not None:
        axes[0, 0].imshow(gt, cmap="gray", vmin=0, vmax=vmax)
        axes[0, 0].set_title("ground truth")
        axes[1, 0].axis("off")
        c = 1
    for i, (m, (img, _, _)) in enumerate(recons.items()):
        ax = axes[0, c + i]
        ax.imshow(img, cmap="gray", vmin=0, vmax=vmax)
        label = m if gt is None else f"{m}\n{psnr(gt[None], img[None]):.2f} dB, SSIM {ssim(gt[None], img[None]):.3f}"
        ax.set_title(label, fontsize=9)
        if gt is not None:
            axes[1, c + i].imshow(np.abs(img - gt), cmap="inferno", vmin=0, vmax=0.2 * vmax)
            axes[1, c + i].set_title("|error| (×5)", fontsize=9)
    for ax in axes.ravel():
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle(title)
    fig.tight_layout()
    plt.show()


# %% [markdown]
# ## 1. Simulated phantom
#
# Shepp-Logan with a smooth phase, birdcage coils, complex Gaussian noise, 4× equispaced lines with a
# fully sampled centre (`benchmarks/problems.py`). The maps are estimated from the undersampled data with
# ESPIRiT; the ground truth is the magnitude of the true image.

# %%
prob = reference_problem(n=N, coils=COILS, center_lines=max(16, N // 12))
maps = espirit_maps(prob.kspace)
phantom = KSpaceSample(kspace=prob.kspace, mask=prob.mask, maps=maps)
gt = prob.image.abs().numpy()
recons = run_all(phantom)
print(metric_table(gt, recons))
figure_grid(gt, recons, "simulated phantom, 4× equispaced")

# %% [markdown]
# ## 2. λ sweep and convergence
#
# PSNR against λ (BART's convention: the data are scaled by BART's `estimate_scaling` before the solve, so
# the same λ means the same thing on every data set). The dashed lines mark the defaults.

# %%
lams = np.logspace(-3.5, -1, 4 if FAST else 8)
sweep = {"cs-wavelet": [], "cs-tv": []}
for m, vals in sweep.items():
    for lam in lams:
        img = reconstruct(phantom, m, lam=float(lam), iters=ITERS[m]).image.abs().numpy()
        vals.append(psnr(gt[None], img[None]))
fig, ax = plt.subplots(figsize=(5, 3.5))
for m, vals in sweep.items():
    ax.semilogx(lams, vals, "o-", label=m)
from mrirecon.methods.classical import TVOptions, WaveletOptions

ax.axvline(WaveletOptions().lam, color="C0", ls="--")
ax.axvline(TVOptions().lam, color="C1", ls=":")
ax.set_xlabel("λ (BART convention)")
ax.set_ylabel("PSNR (dB)")
ax.legend()
ax.grid(True, which="both", alpha=0.3)
plt.show()

# %% [markdown]
# Convergence: the solvers record their residual (relative change of the iterate for FISTA/ADMM,
# relative residual norm for CG) and, on request, the objective, in a `History`.

# %%
from mrirecon.methods.scaling import bart_scaling
from mrirecon.operators import Sense
from mrirecon.solvers import ADMM, FISTA, ConjugateGradient, L1Wavelet, L2Data, TotalVariation, run

A = Sense(maps, prob.mask)
y = prob.kspace / bart_scaling(prob.kspace)
n_conv = 30 if FAST else 100
_, h_fista = run(FISTA(L2Data(A, y), L1Wavelet(0.01, (N, N)), step=0.95, max_iter=n_conv), record_objective=True)
_, h_admm = run(ADMM(L2Data(A, y), [TotalVariation(0.01, (N, N))], rho=0.5, alpha=1.6, max_iter=n_conv),
                record_objective=True)
_, h_cg = run(ConjugateGradient(A.N, A.H(y), lam=0.01, max_iter=n_conv), record_objective=True)
fig, axes = plt.subplots(1, 2, figsize=(10, 3.5))
for h, label in ((h_fista, "FISTA, L1-wavelet"), (h_admm, "ADMM, TV"), (h_cg, "CG, Tikhonov")):
    obj = np.array(h.objective)
    axes[0].semilogy(obj - obj.min() + 1e-12 * abs(obj.min()) + 1e-12, label=label)
    axes[1].semilogy(h.residual, label=label)
axes[0].set_title("objective − its minimum over the run")
axes[1].set_title("residual (solver's stopping measure)")
for ax in axes:
    ax.set_xlabel("iteration")
    ax.legend()
    ax.grid(True, alpha=0.3)
plt.show()
print(f"FISTA {h_fista.time_per_iteration() * 1e3:.1f} ms/iter, ADMM {h_admm.time_per_iteration() * 1e3:.1f} ms/iter, "
      f"CG {h_cg.time_per_iteration() * 1e3:.1f} ms/iter")

# %% [markdown]
# ## 3. Real brain data (`../shared/data/bart_brain`)
#
# 8-coil k-space of a ky-kz slice with variable-density Poisson sampling (no ground truth). For reference,
# BART's own `pics` reconstruction shipped with the data (two map sets, unknown maps and options) is shown
# next to ours.

# %%
brain = SHARED / "bart_brain"
if (brain / "ksp.cfl").exists():
    from mrirecon.io.cfl import read_cfl

    k = read_cfl(brain / "ksp")
    h, w, c = k.shape[-3:]
    ksp = torch.from_numpy(np.ascontiguousarray(np.moveaxis(k.reshape(h, w, c), -1, 0)))
    bmaps = espirit_maps(ksp)
    bsample = KSpaceSample(kspace=ksp, mask=(ksp != 0).any(dim=0).float(), maps=bmaps)
    brecons = run_all(bsample)
    ref = np.sqrt((np.abs(read_cfl(brain / "img").reshape(h, w, -1)) ** 2).sum(-1))
    brecons_ref = {"BART pics (shipped)": (ref / ref.max() * np.percentile(brecons["sense"][0], 99.9), None, 0.0)}
    figure_grid(None, {**brecons, **brecons_ref}, "bart_brain (real data, Poisson sampling)")
    print({m: f"{dt:.2f} s" for m, (_, _, dt) in brecons.items()})
else:
    print(f"{brain} is not present: skipping the real-data comparison")

# %% [markdown]
# ### 3b. The same data through BART itself
#
# When BART is installed: `bart ecalib -m1` + `bart pics -S -R W:7:0:0.005 -i 100` on this k-space, against our
# default CS-wavelet (orthonormal wavelets, exact prox) and against `transform="bart"` with BART's per-pixel
# ESPIRiT solver (`eig="bart"`), which reproduce BART's frame, shift generator and maps: the last must agree with
# BART to float rounding, the default to a few percent (a different, equally good, wavelet transform).

# %%
bart_exe = shutil.which("bart")
if bart_exe and (brain / "ksp.cfl").exists():
    import subprocess
    import tempfile

    from mrirecon.io.cfl import write_cfl

    with tempfile.TemporaryDirectory() as td:
        td = Path(td)
        write_cfl(td / "ksp", k.reshape(h, w, 1, c))
        for args in (["ecalib", "-m1", td / "ksp", td / "maps"],
                     ["pics", "-S", "-R", "W:7:0:0.005", "-i", "100", td / "ksp", td / "maps", td / "wav"]):
            subprocess.run([bart_exe, *map(str, args)], check=True, capture_output=True)
        theirs = np.abs(read_cfl(td / "wav").reshape(h, w))
    variants = {
        "ours (default)": bsample,
        "ours, BART's frame + maps": bsample.replace(maps=espirit_maps(ksp, eig="bart")),
    }
    bart_rows = {"BART pics": (theirs, None, 0.0)}
    for label, smp in variants.items():
        t0 = time.perf_counter()
        x = reconstruct(smp, "cs-wavelet", lam=0.005, iters=100,
                        transform="bart" if "BART" in label else "orthonormal").image.abs().numpy()
        bart_rows[label] = (x, None, time.perf_counter() - t0)
        print(f"{label}: NRMSE to BART pics {np.linalg.norm(x - theirs) / np.linalg.norm(theirs):.1e}")
    figure_grid(None, bart_rows, "bart_brain: BART pics vs ours")
else:
    print("BART or the bart_brain data is not available: skipping")

# %% [markdown]
# ## 4. Demo dataset, validation split
#
# fastMRI-format multicoil slices simulated from the MNI152 template (noisy k-space, `reconstruction_rss`
# target). Retrospective 4× equispaced masks (8 % centre lines), fixed per file and slice; maps by ESPIRiT.
# Metrics with fastMRI's semantics against `reconstruction_rss`.

# %%
from mrirecon.data.demo import demo_files, demo_root
from mrirecon.data.fastmri import FastMRISliceDataset
from mrirecon.operators.masks import MaskSpec

try:
    root = demo_root(build=not FAST)
except Exception as err:  # noqa: BLE001 - the fast mode does not build the dataset
    root = None
    print(f"demo dataset not available ({err}); skipping")
if root is not None:
    ds = FastMRISliceDataset(demo_files(root, "val"), mask=MaskSpec("equispaced", 4, center_fraction=0.08),
                             fixed_masks=True, cache=False)
    picks = np.linspace(0, len(ds) - 1, 2 if FAST else 8).round().astype(int)
    scores = {m: {"psnr": [], "ssim": []} for m in METHODS}
    for i in picks:
        s = ds[int(i)]
        s = s.replace(maps=espirit_maps(s.kspace))
        target = s.target.numpy()
        out = run_all(s)
        th, tw = target.shape
        for m, (img, _, _) in out.items():
            H, W = img.shape
            crop = img[(H - th) // 2:(H - th) // 2 + th, (W - tw) // 2:(W - tw) // 2 + tw]
            scores[m]["psnr"].append(psnr(target[None], crop[None]))
            scores[m]["ssim"].append(ssim(target[None], crop[None]))
    print(f"demo val: {len(picks)} slices")
    print("| method | PSNR (dB) | SSIM |\n|---|---|---|")
    for m, v in scores.items():
        print(f"| {m} | {np.mean(v['psnr']):.2f} ± {np.std(v['psnr']):.2f} | {np.mean(v['ssim']):.4f} |")
    figure_grid(target, {m: (out[m][0][(out[m][0].shape[0] - th) // 2:][:th, (out[m][0].shape[1] - tw) // 2:][:, :tw],
                             None, out[m][2]) for m in out}, "demo val (last slice)")

# %% [markdown]
# ## 5. Plug-and-play: PnP-ADMM, PnP-FBS, gradient-step PnP, equivariant PnP
#
# The shipped denoisers inside the solvers (`mrirecon/solvers/pnp.py`), each method with its defaults (strength
# set from the noise level estimated in the data, see the README): PnP-ADMM as `mrirecon recon --method
# pnp-admm` runs it by default (the firmly non-expansive, Jacobian-penalised `dncnn-jac`, to convergence), with
# the plain DnCNN and with the real-spectral-normalised one (`Lip(I − D) ≤ 0.95`), PnP-FBS and equivariant PnP-ADMM with the real-SN DnCNN,
# and gradient-step PnP with its gradient-step DRUNet. On the phantom of section 1 (an anatomy the denoisers
# never saw) and on the demo validation slices of section 4; then the fixed-point residual of every run.
# Rows whose weights are not installed are skipped.

# %%
from mrirecon.denoisers.zoo import shipped_denoisers  # noqa: E402

# The plain and real-SN runs do not converge and lose PSNR past ~100 iterations (README, Plug-and-play): they
# are shown at 100 iterations, the early-stopped iterate (PnP-ADMM/FBS cap their default runs at 300).
PNP = {"pnp-admm (default: dncnn-jac)": ("pnp-admm", {"weights": "dncnn-jac"}),
       "pnp-admm (dncnn)": ("pnp-admm", {"weights": "dncnn", "iters": 100}),
       "pnp-admm (dncnn-sn)": ("pnp-admm", {"weights": "dncnn-sn", "iters": 100}),
       "pnp-fbs (dncnn-sn)": ("pnp-fbs", {"weights": "dncnn-sn", "iters": 100}),
       "pnp-admm-equivariant (dncnn-sn)": ("pnp-admm-equivariant", {"weights": "dncnn-sn"}),
       "gs-pnp (gs-drunet)": ("gs-pnp", {"weights": "gs-drunet"})}
PNP = {k: v for k, v in PNP.items() if v[1]["weights"] in shipped_denoisers()}
print("plug-and-play rows with shipped weights:", list(PNP) or "none")


def run_pnp(sample: KSpaceSample) -> dict:
    out = {}
    for label, (m, opts) in PNP.items():
        t0 = time.perf_counter()
        res = reconstruct(sample, m, **{**opts, **({"iters": 15} if FAST else {})})
        out[label] = (res.magnitude(sample.multi_set).numpy(), res, time.perf_counter() - t0)
    return out


if PNP:
    precons = run_pnp(phantom)
    print(metric_table(gt, {**{m: recons[m] for m in ("zf", "cs-wavelet")}, **precons}))
    figure_grid(gt, {"cs-wavelet": recons["cs-wavelet"], **precons}, "phantom: plug-and-play")
    fig, ax = plt.subplots(figsize=(5.5, 3.5))
    for label, (_, res, _) in precons.items():
        ax.semilogy(res.history.residual, label=f"{label}: {res.info.get('stop_reason', '')}")
    ax.set_xlabel("iteration")
    ax.set_ylabel("‖x_{k+1} − x_k‖ / ‖x_0‖")
    ax.set_title("fixed-point residual on the phantom")
    ax.legend(fontsize=7)
    ax.grid(True, which="both", alpha=0.3)
    plt.show()

# %%
if PNP and root is not None:
    pscores = {m: {"psnr": [], "ssim": []} for m in PNP}
    for i in picks[: 1 if FAST else len(picks)]:
        s = ds[int(i)]
        s = s.replace(maps=espirit_maps(s.kspace))
        target = s.target.numpy()
        th, tw = target.shape
        for m, (img, _, _) in run_pnp(s).items():
            H, W = img.shape
            crop = img[(H - th) // 2:(H - th) // 2 + th, (W - tw) // 2:(W - tw) // 2 + tw]
            pscores[m]["psnr"].append(psnr(target[None], crop[None]))
            pscores[m]["ssim"].append(ssim(target[None], crop[None]))
    print("demo val (plug-and-play; compare with the table of section 4)")
    print("| method | PSNR (dB) | SSIM |\n|---|---|---|")
    for m, v in pscores.items():
        print(f"| {m} | {np.mean(v['psnr']):.2f} ± {np.std(v['psnr']):.2f} | {np.mean(v['ssim']):.4f} |")

# %% [markdown]
# ## 6. Learned: the PD-net against the baselines (demo test split)
#
# The shipped learned primal-dual networks (`recipes/pdnet_demo.yaml`: trained on the demo *train* split with
# random line masks at 4× and 8×, on a CPU; `pdnet-demo` against the noise-free image, `pdnet-demo-rss` against
# `reconstruction_rss`, the fastMRI convention) against zero-filled and CS-wavelet on the *test* split,
# with random masks fixed per volume (seeded by the file name, fastMRI's validation convention). The scores are
# those of `mrirecon evaluate` (same code): per-volume NMSE/PSNR/SSIM against `reconstruction_rss` with the volume
# maximum as data range, averaged over volumes. CS-wavelet gets ESPIRiT maps; the PD-net learns its maps from
# the ACS lines.

# %%
from mrirecon.models.base import shipped_path  # noqa: E402
from mrirecon.training.evaluation import (EvalReport, mask_spec, method_reconstructor,  # noqa: E402
                                          network_reconstructor, reconstruct_volumes, volume_metrics)

try:
    shipped_path("pdnet-demo")
    have_pdnet = True
except KeyError as err:
    have_pdnet = False
    print(f"no shipped PD-net ({err}); skipping")
if root is not None and have_pdnet:
    recons5 = {"zf": method_reconstructor("zf"),
               "cs-wavelet": method_reconstructor("cs-wavelet", iters=ITERS["cs-wavelet"]),
               "pdnet": network_reconstructor("pdnet-demo", "cpu"),
               "pdnet (rss)": network_reconstructor("pdnet-demo-rss", "cpu")}
    last = {}
    print("| acceleration | method | NMSE | PSNR (dB) | SSIM | volumes |\n|---|---|---|---|---|---|")
    for accel in ([4] if FAST else [4, 8]):
        for name, (rec, _) in recons5.items():
            vols = list(reconstruct_volumes(rec, root / "test", mask_spec("random", accel), limit=1 if FAST else 0,
                                            progress=False))
            agg = EvalReport([volume_metrics(v) for v in vols]).aggregate()
            print(f"| {accel}× | {name} | {agg['nmse']['mean']:.4f} | {agg['psnr']['mean']:.2f} ± "
                  f"{agg['psnr']['std']:.2f} | {agg['ssim']['mean']:.4f} | {agg['psnr']['volumes']} |")
            last[name] = vols[0]
    sl = last["zf"].recon.shape[0] // 2
    tgt = last["zf"].target[sl]
    figure_grid(tgt, {m: (v.recon[sl], None, v.seconds) for m, v in last.items()},
                f"demo test {last['zf'].file} slice {sl}, random {accel}×")

# %% [markdown]
# ## 7. Learned equilibrium and unrolled methods (`deq`, `red`, `unrolled-admm`)
#
# The shipped demo networks (trained on the demo dataset's train split by `recipes/deq_demo.yaml`,
# `rerg_demo.yaml`, `deq_admm_demo.yaml`, `unrolled_admm_demo.yaml`): DEQ-GD and RERG (deep equilibrium gradient
# descent with a learned regularising gradient, Anderson acceleration; by default they run with the forward
# budget they were trained with, ≤ 15 iterations), DEQ-ADMM (PnP-ADMM's iteration with `dncnn-jac` as the
# starting network, trained through its fixed point) and an unrolled ADMM with T = 8 tied iterations. They run on the phantom of section 1 (an anatomy they never saw) and, when the demo
# dataset is available, on the validation slices of section 4. The last plot shows the fixed-point residual
# of RERG with Anderson acceleration and with plain iteration. Rows whose weights are not shipped are skipped.

# %%

LEARNED = {"deq (deq-demo)": ("deq", {"weights": "deq-demo"}), "deq (rerg-demo)": ("deq", {"weights": "rerg-demo"}),
           "deq (deq-admm-demo)": ("deq", {"weights": "deq-admm-demo"}),
           "unrolled-admm": ("unrolled-admm", {"weights": "unrolled-admm-demo"})}
shipped = shipped_denoisers()
LEARNED = {k: v for k, v in LEARNED.items() if v[1]["weights"] in shipped}
print("learned methods with shipped weights:", list(LEARNED) or "none")


def run_learned(sample: KSpaceSample) -> dict:
    out = {}
    for label, (m, opts) in LEARNED.items():
        t0 = time.perf_counter()
        res = reconstruct(sample, m, **opts, **({"iters": 30} if FAST and m == "deq" else {}))
        out[label] = (res.magnitude(sample.multi_set).numpy(), res, time.perf_counter() - t0)
    return out


if LEARNED:
    lrecons = run_learned(phantom)
    print(metric_table(gt, {**{m: recons[m] for m in ("zf", "cs-wavelet")}, **lrecons}))
    for label, (_, res, _) in lrecons.items():
        print(f"{label}: {res.info.get('iterations')} iterations, converged {res.info.get('converged')}")
    figure_grid(gt, {"cs-wavelet": recons["cs-wavelet"], **lrecons}, "phantom: learned methods")

# %%
if "deq (rerg-demo)" in LEARNED:
    fig, ax = plt.subplots(figsize=(5, 3.5))
    for anderson in (True, False):
        r = reconstruct(phantom, "deq", weights="rerg-demo", anderson=anderson, tol=1e-4, iters=60 if FAST else 300)
        ax.semilogy(r.history.residual, label=f"{'Anderson' if anderson else 'plain'}: {r.info['iterations']} it.")
    ax.axhline(1e-4, color="k", ls=":")
    ax.set_xlabel("iteration")
    ax.set_ylabel("‖T(x) − x‖ / ‖T(x)‖")
    ax.set_title("RERG fixed point on the phantom")
    ax.legend()
    ax.grid(True, which="both", alpha=0.3)
    plt.show()

# %%
if LEARNED and root is not None:
    lscores = {m: {"psnr": [], "ssim": []} for m in LEARNED}
    for i in picks:
        s = ds[int(i)]
        s = s.replace(maps=espirit_maps(s.kspace))
        target = s.target.numpy()
        th, tw = target.shape
        for m, (img, _, _) in run_learned(s).items():
            H, W = img.shape
            crop = img[(H - th) // 2:(H - th) // 2 + th, (W - tw) // 2:(W - tw) // 2 + tw]
            lscores[m]["psnr"].append(psnr(target[None], crop[None]))
            lscores[m]["ssim"].append(ssim(target[None], crop[None]))
    print(f"demo val: {len(picks)} slices (learned methods; compare with the table of section 4)")
    print("| method | PSNR (dB) | SSIM |\n|---|---|---|")
    for m, v in lscores.items():
        print(f"| {m} | {np.mean(v['psnr']):.2f} ± {np.std(v['psnr']):.2f} | {np.mean(v['ssim']):.4f} |")

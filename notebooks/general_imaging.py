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
# # Plug-and-play reconstruction beyond MRI: deblurring, inpainting, super-resolution
#
# The PnP solvers of `mrirecon.solvers` take any `Linop` forward model. Here the same PnP-ADMM,
# PnP-FBS and gradient-step PnP that reconstruct multicoil MRI solve three classical imaging problems
# with the general operators of `mrirecon.operators.imaging`:
#
# | problem | operator `A` | data step of PnP-ADMM |
# |---|---|---|
# | deblurring | `Blur(gaussian_kernel(1.6), boundary="circular")` | exact (circulant normal, FFT) |
# | inpainting | `Inpaint(mask)` (half the pixels missing) | exact (diagonal normal) |
# | super-resolution ×2 | `Downsample(factor=2, filter="bicubic")` | conjugate gradients |
#
# Each image is the scikit-image `camera` picture (scaled to maximum 1, the denoisers' units), with
# complex Gaussian noise of standard deviation 0.01 per real/imaginary part added to the data. Every run
# records its fixed-point residual `‖x_{k+1} − x_k‖ / ‖x_0‖`; the last figure shows them.
#
# The denoisers are the shipped `dncnn-sn` (real spectral normalisation) and `gs-drunet` (gradient step);
# the environment variables `MRIRECON_NB_WEIGHTS` / `MRIRECON_NB_GS_WEIGHTS` substitute weights files and
# `MRIRECON_NB_SIZE` / `MRIRECON_NB_ITERS` the image size and iteration limit (the test suite runs this
# notebook with tiny untrained networks to check that it executes; the numbers below come from the
# shipped weights).

# %%
import os

import matplotlib.pyplot as plt
import numpy as np
import torch
from skimage import data, transform

from mrirecon.denoisers import load_denoiser
from mrirecon.metrics import psnr
from mrirecon.operators import Blur, Downsample, Inpaint, gaussian_kernel
from mrirecon.solvers import ConjugateGradient, GradientStepPnP, PnPADMM, PnPFBS, data_prox, run

torch.set_num_threads(int(os.environ.get("MRIRECON_NB_THREADS", "1")))
N = int(os.environ.get("MRIRECON_NB_SIZE", "128"))
ITERS = int(os.environ.get("MRIRECON_NB_ITERS", "100"))
WEIGHTS = os.environ.get("MRIRECON_NB_WEIGHTS", "dncnn-sn")
GS_WEIGHTS = os.environ.get("MRIRECON_NB_GS_WEIGHTS", "gs-drunet")
NOISE = 0.01

img = transform.resize(data.camera().astype(np.float64), (N, N), anti_aliasing=True)
img = img / img.max()
x_true = torch.from_numpy(img).to(torch.complex64)
denoiser = load_denoiser(WEIGHTS)
gs_denoiser = load_denoiser(GS_WEIGHTS)
gen = torch.Generator().manual_seed(0)


def add_noise(y: torch.Tensor) -> torch.Tensor:
    n = torch.randn(2, *y.shape, generator=gen)
    return y + NOISE * torch.complex(n[0], n[1]).to(y.dtype)


pixels = (torch.rand(N, N, generator=gen) < 0.5).float()
problems = {
    "deblurring": Blur(gaussian_kernel(1.6).float(), (N, N), boundary="circular"),
    "inpainting": Inpaint(pixels, (N, N)),
    "super-resolution x2": Downsample((N, N), 2, filter="bicubic"),
}
measurements = {name: add_noise(A(x_true)) for name, A in problems.items()}
print(f"{N}x{N} image, noise {NOISE}, denoisers {WEIGHTS} and {GS_WEIGHTS}, at most {ITERS} iterations")

# %% [markdown]
# ## The reconstructions
#
# The baseline is Tikhonov-regularised least squares `min ½‖Ax − y‖² + (λ/2)‖x‖²` (λ = 0.01, CG). PnP-ADMM
# uses `alpha = 2` (the weight of the data term in its data step), PnP-FBS the step `1/‖A‖²`, gradient-step
# PnP `lam = 1` with Hurault et al.'s initial step `τ = 1` and backtracking. All start from the baseline.

# %%
results: dict[str, dict[str, tuple[torch.Tensor, object]]] = {}
for name, A in problems.items():
    y = measurements[name]
    aty = A.H(y)
    x_ls, _ = run(ConjugateGradient(A.N, aty, lam=0.01, max_iter=100, tol=1e-6))
    data = data_prox(A, y)
    runs = {"Tikhonov": (x_ls, None)}
    runs["PnP-ADMM"] = run(PnPADMM(data, None, denoiser, sigma=2 * NOISE, alpha=2.0, max_iter=ITERS, tol=1e-4),
                           x_ls, raise_on_divergence=False)
    runs["PnP-FBS"] = run(PnPFBS(data, None, denoiser, sigma=2 * NOISE, max_iter=ITERS, tol=1e-4), x_ls,
                          raise_on_divergence=False)
    runs["GS-PnP"] = run(GradientStepPnP(data, None, gs_denoiser, sigma=2 * NOISE, lam=1.0, max_iter=ITERS,
                                         tol=1e-4), x_ls, record_objective=True, raise_on_divergence=False)
    results[name] = runs
    line = ", ".join(f"{k} {psnr(np.abs(img), np.abs(v[0].numpy()), maxval=1.0):.2f} dB" for k, v in runs.items())
    print(f"{name:<20} (data step: {data.kind}): {line}")

# %%
fig, axes = plt.subplots(len(problems), 6, figsize=(13, 2.3 * len(problems)))
for row, (name, runs) in zip(axes, results.items()):
    panels = [("truth", x_true), ("data  A^H y", problems[name].H(measurements[name]))]
    panels += [(k, v[0]) for k, v in runs.items()]
    for ax, (label, im) in zip(row, panels):
        ax.imshow(im.abs().numpy(), cmap="gray", vmin=0, vmax=1)
        extra = "" if label in ("truth", "data  A^H y") else f"\n{psnr(img, im.abs().numpy(), maxval=1.0):.2f} dB"
        ax.set_title(f"{name}: {label}{extra}" if label == "truth" else f"{label}{extra}", fontsize=8)
        ax.axis("off")
fig.tight_layout()

# %% [markdown]
# ## Convergence
#
# The fixed-point residual of every PnP run (log scale) and, for gradient-step PnP, the objective
# `F = ½‖Ax − y‖² + λ g_σ(x)`, which the backtracking keeps non-increasing.

# %%
fig, axes = plt.subplots(1, 2, figsize=(10, 3.2))
for name, runs in results.items():
    for k, (x, hist) in runs.items():
        if hist is None:
            continue
        axes[0].semilogy(hist.residual, label=f"{name}: {k} ({hist.stop_reason})", lw=1)
        if hist.objective:
            F = np.array(hist.objective)
            axes[1].plot(F - F.min() + 1e-12 * abs(F.min()), label=name, lw=1)
            assert np.all(np.diff(F) <= 1e-6 * np.abs(F[:-1])), "GS-PnP objective increased"
axes[0].axhline(1e-4, ls="--", c="k", lw=0.8)
axes[0].set(xlabel="iteration", ylabel="‖x_{k+1} − x_k‖ / ‖x_0‖", title="fixed-point residual")
axes[0].legend(fontsize=6)
axes[1].set(xlabel="iteration", ylabel="F − min F", title="GS-PnP objective", yscale="log")
axes[1].legend(fontsize=7)
fig.tight_layout()
for name, runs in results.items():
    for k, (x, hist) in runs.items():
        if hist is not None:
            print(f"{name:<20} {k:<9} iterations {hist.iterations:4d}  residual {hist.residual[-1]:.1e}  "
                  f"{hist.stop_reason}")

"""Classical reconstructions: zero-filled, SENSE (CG), CS with L1-wavelet (FISTA) and total variation (ADMM).

The regularised methods solve, per slice, BART's ``pics`` problems with BART's λ convention:

* the k-space is divided by BART's data scale ``s`` (:func:`mrirecon.methods.scaling.bart_scaling`,
  ``estimate_scaling`` in ``bart pics``) before the solve, and the image is multiplied by ``s``
  afterwards (BART's ``-S``): the returned image is in the units of the data, and the same ``lam`` as
  in ``bart pics`` gives the same image as ``bart pics -S``;
* ``sense``:      ``min_x ½‖Ax - y/s‖² + (λ/2)‖x‖²``  (``bart pics -l2 -r λ``; CG on the normal equations);
* ``cs-wavelet``: ``min_x ½‖Ax - y/s‖² + λ‖W x‖₁``    (``bart pics -R W:3:0:λ`` (2D; ``W:7:0:λ`` in
  BART's 3D notation) or ``-l1 -r λ``); FISTA with BART's step ``0.95/‖A‖²`` (0.95 for ESPIRiT maps),
  threshold ``λ·step``, Daubechies-2 wavelets with random cycle spinning every iteration, all bands
  (including the coarsest) thresholded;
* ``cs-tv``:      ``min_x ½‖Ax - y/s‖² + λ Σ_r ‖∇x(r)‖₂`` (isotropic TV, ``bart pics -R T:3:0:λ``);
  ADMM with BART's parameters (ρ = 0.5, 10 CG iterations, over-relaxation 1.6).

Here ``A = Sample(mask) ∘ FFT ∘ Maps`` (:class:`~mrirecon.operators.sense.Sense`, with several map
sets when the sample has them). Defaults are BART's (``iters``) or typical BART values of λ in these
normalised units; they are not tuned on any data set.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import torch

from mrirecon.data.sample import KSpaceSample
from mrirecon.errors import ConfigError
from mrirecon.methods import ReconResult, check_iters_tol, register_method
from mrirecon.methods.history import run_info
from mrirecon.methods.scaling import bart_scaling
from mrirecon.operators import Sense, ifft2c
from mrirecon.solvers import ADMM, FISTA, ConjugateGradient, L1Wavelet, L2Data, TotalVariation, operator_norm_bound, run


@dataclass
class ZeroFilledOptions:
    """Zero-filled reconstruction has no parameters."""


@register_method("zf", ZeroFilledOptions, needs_maps=False,
                 description="zero-filled inverse FFT; coil-combined with the maps when given, else root-sum-of-squares")
def zero_filled(sample: KSpaceSample, options: ZeroFilledOptions) -> ReconResult:
    """``E^H y`` with maps, else ``sqrt(Σ_c |F^H y_c|²)`` (returned as a complex tensor with zero phase)."""
    t0 = time.perf_counter()
    if sample.maps is not None:
        image = Sense(sample.maps, sample.mask, multi_set=sample.multi_set).adjoint(sample.kspace)
    else:
        image = ifft2c(sample.kspace).abs().pow(2).sum(dim=-3).sqrt().to(sample.kspace.dtype)
    return ReconResult(image=image, info={"time_s": time.perf_counter() - t0, "iterations": 0})


# ---------------------------------------------------------------------------------------------
# shared plumbing
# ---------------------------------------------------------------------------------------------
def _check_common(name: str, lam: float, iters: int, tol: float) -> None:
    if not lam >= 0:
        raise ConfigError(f"method {name!r}: lam must be >= 0, got {lam}")
    check_iters_tol(name, iters, tol)


def _scaled_problem(sample: KSpaceSample, scale: bool) -> tuple[Sense, torch.Tensor, torch.Tensor]:
    """The SENSE operator, the scaled k-space ``y / s`` and the scales ``s`` (``[...]``)."""
    assert sample.maps is not None
    A = Sense(sample.maps, sample.mask, multi_set=sample.multi_set)
    y = sample.kspace
    if scale:
        s = bart_scaling(y, sample.mask)
    else:
        s = torch.ones(y.shape[:-3], dtype=y.real.dtype, device=y.device)
    return A, y / s.reshape(*s.shape, 1, 1, 1), s


def _unscale(x: torch.Tensor, s: torch.Tensor, multi_set: bool) -> torch.Tensor:
    extra = 3 if multi_set else 2
    return x * s.reshape(*s.shape, *([1] * extra)).to(x.dtype)


def _info(hist: Any, t0: float, s: torch.Tensor, **extra: Any) -> dict[str, Any]:
    return {**run_info(hist, t0), "scale": s.tolist() if s.ndim else float(s), **extra}


# ---------------------------------------------------------------------------------------------
# SENSE
# ---------------------------------------------------------------------------------------------
@dataclass
class SenseOptions:
    """Options of ``sense``.

    Attributes:
        lam: Tikhonov weight λ (BART's ``-l2 -r λ``, in BART's scaled units).
        iters: maximum CG iterations (BART's ``pics`` default: 30).
        tol: stop when ``‖residual‖ / ‖A^H y‖`` falls below it (0: run all iterations).
        scale: apply BART's data scaling (turn off to solve in the units of the data).
    """

    lam: float = 0.01
    iters: int = 30
    tol: float = 1e-6
    scale: bool = True


@register_method("sense", SenseOptions, needs_maps=True,
                 description="SENSE: CG on (A^H A + λI) x = A^H y (bart pics -l2 -r λ)")
def sense(sample: KSpaceSample, options: SenseOptions) -> ReconResult:
    """SENSE with Tikhonov regularisation: ``min_x ½‖Ax - y/s‖² + (λ/2)‖x‖²`` by CG, image ``s·x``."""
    _check_common("sense", options.lam, options.iters, options.tol)
    t0 = time.perf_counter()
    A, y, s = _scaled_problem(sample, options.scale)
    solver = ConjugateGradient(A.N, A.adjoint(y), lam=options.lam, max_iter=options.iters, tol=options.tol)
    x, hist = run(solver)
    return ReconResult(image=_unscale(x, s, sample.multi_set), history=hist, info=_info(hist, t0, s))


# ---------------------------------------------------------------------------------------------
# CS: L1-wavelet
# ---------------------------------------------------------------------------------------------
@dataclass
class WaveletOptions:
    """Options of ``cs-wavelet``.

    Attributes:
        lam: λ of ``λ‖Wx‖₁`` (BART's ``-R W:3:0:λ`` / ``-l1 -r λ``, in BART's scaled units).
        iters: FISTA iterations (BART's ``pics`` default is 30; 100 gets closer to convergence).
        tol: stop when the relative change of ``x`` falls below it (0: run all iterations; with cycle
            spinning the change does not go to zero, so this is a loose criterion).
        seed: seed of the random wavelet shifts.
        wavelet: Daubechies wavelet (``db2`` = BART's ``dau2``).
        levels: decomposition levels (``None``: BART's rule).
        cycle_spin: random shift per iteration (BART's default; ``bart pics -n`` turns it off).
        step: FISTA step (``None``: ``0.95 / ‖A‖²``, i.e. BART's 0.95 for normalised maps).
        bart_output: return BART's output, the last gradient-step point ``z - step·∇f(z)`` (BART's loop
            ends with the data-consistency step), instead of the last prox output.
        scale: apply BART's data scaling.
        transform: ``"orthonormal"`` (periodic orthonormal wavelets, exact prox) or ``"bart"``
            (BART's symmetric-extension frame and its shift generator: reproduces ``bart pics``).
    """

    lam: float = 0.01
    iters: int = 100
    tol: float = 0.0
    seed: int = 0
    wavelet: str = "db2"
    levels: int | None = None
    cycle_spin: bool = True
    step: float | None = None
    bart_output: bool = True
    scale: bool = True
    transform: str = "orthonormal"


@register_method("cs-wavelet", WaveletOptions, needs_maps=True,
                 description="compressed sensing with L1-wavelet (FISTA; bart pics -R W:3:0:λ)")
def cs_wavelet(sample: KSpaceSample, options: WaveletOptions) -> ReconResult:
    """``min_x ½‖Ax - y/s‖² + λ‖Wx‖₁`` by FISTA (cycle-spun Daubechies wavelets), image ``s·x``."""
    _check_common("cs-wavelet", options.lam, options.iters, options.tol)
    t0 = time.perf_counter()
    A, y, s = _scaled_problem(sample, options.scale)
    shape = A.ishape
    reg = L1Wavelet(options.lam, shape, options.wavelet, options.levels, options.cycle_spin, options.seed,
                    transform=options.transform)
    if options.transform == "bart" and options.cycle_spin:
        reg.draw_shift()  # BART's loop starts with a prox of the zero image, which spends one draw
    data = L2Data(A, y)
    step = options.step if options.step is not None else 0.95 / operator_norm_bound(A)
    solver = FISTA(data, reg, step=step, return_gradient_step=options.bart_output, max_iter=options.iters,
                   tol=options.tol)
    x, hist = run(solver)
    return ReconResult(image=_unscale(x, s, sample.multi_set), history=hist,
                       info=_info(hist, t0, s, step=step, levels=reg.W.levels))


# ---------------------------------------------------------------------------------------------
# CS: total variation
# ---------------------------------------------------------------------------------------------
@dataclass
class TVOptions:
    """Options of ``cs-tv``.

    Attributes:
        lam: λ of ``λ TV(x)`` (BART's ``-R T:3:0:λ``, in BART's scaled units).
        iters: ADMM iterations (BART's ADMM default: 50).
        tol: stop when the relative change of ``x`` falls below it (0: run all iterations).
        isotropic: isotropic TV (BART's) or anisotropic.
        rho: ADMM penalty (BART: 0.5).
        cg_iters: CG iterations per ADMM step (BART: 10).
        alpha: ADMM over-relaxation (BART: 1.6).
        scale: apply BART's data scaling.
    """

    lam: float = 0.01
    iters: int = 50
    tol: float = 0.0
    isotropic: bool = True
    rho: float = 0.5
    cg_iters: int = 10
    alpha: float = 1.6
    scale: bool = True


@register_method("cs-tv", TVOptions, needs_maps=True,
                 description="compressed sensing with total variation (ADMM; bart pics -R T:3:0:λ)")
def cs_tv(sample: KSpaceSample, options: TVOptions) -> ReconResult:
    """``min_x ½‖Ax - y/s‖² + λ TV(x)`` by ADMM (inner CG), image ``s·x``."""
    _check_common("cs-tv", options.lam, options.iters, options.tol)
    t0 = time.perf_counter()
    A, y, s = _scaled_problem(sample, options.scale)
    reg = TotalVariation(options.lam, A.ishape, isotropic=options.isotropic)
    solver = ADMM(L2Data(A, y), [reg], rho=options.rho, cg_iters=options.cg_iters, alpha=options.alpha,
                  max_iter=options.iters, tol=options.tol)
    x, hist = run(solver)
    return ReconResult(image=_unscale(x, s, sample.multi_set), history=hist, info=_info(hist, t0, s))

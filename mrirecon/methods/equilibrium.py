"""Equilibrium and unrolled reconstruction methods: ``deq``, ``red``, ``unrolled-admm``.

Each reconstructs one slice (or batch) with SENSE ``A = Sense(maps, mask)`` in the normalised units of
:mod:`mrirecon.models.model_based` (data divided by a robust scale of a least-squares image, result multiplied
back), so the defaults mean the same on any data set:

* ``deq`` — a trained deep equilibrium network (:class:`~mrirecon.models.equilibrium.DEQRecon`; shipped:
  ``deq-admm-demo`` (default) — DEQ-ADMM started from ``dncnn-jac`` with ``pnp-admm``'s noise-adaptive ``α``
  (the README's DEQ results), ``deq-demo`` — DEQ-GD, ``rerg-demo`` — RERG, ``deq-sn-demo`` — DEQ-FBS with a
  certified contraction, whose bound for the slice's operator is reported as ``info["contraction_bound"]``): its
  fixed point, found by
  Anderson acceleration to ``tol``
  within ``iters`` iterations (the network's own learned step sizes; by default the budget and tolerance it
  was trained with);
* ``red`` — gradient descent with a regularising gradient to its fixed point (RED, Romano et al. 2017;
  PnP-ReG, Fermanian et al.): ``x ← x − η(∇f(x) + λ(x − D(x)))`` with ``D`` either a denoiser (a shipped
  denoiser name or weights file: ``x − D(x)`` is its residual) or the network of a DEQ with
  ``iteration: gd`` (its learned regularising gradient; ``η`` and ``λ`` default to its learned values);
* ``unrolled-admm`` — a trained unrolled ADMM (:class:`~mrirecon.models.unrolled_admm.UnrolledADMM`; shipped:
  ``unrolled-admm-demo``) run for its trained number of iterations (or ``iters``).

``ReconResult.history`` is the run's :class:`~mrirecon.solvers.base.History`; ``info`` has the iterations,
final residual, whether the tolerance was met, whether the divergence guard fired and the time. A run whose
iterates exceed the guard's bound stops and returns its best in-bound iterate (``divergence="stop"``, with a
warning) or raises :class:`~mrirecon.errors.DivergenceError` (``divergence="raise"``).
"""
from __future__ import annotations

import time
import warnings
from dataclasses import dataclass
from typing import Any, Literal

import torch

from mrirecon.data.sample import KSpaceSample
from mrirecon.errors import ConfigError, DivergenceError
from mrirecon.methods import ReconResult, check_iters_tol, register_method

OnDivergence = Literal["raise", "stop"]


@dataclass
class DEQOptions:
    """Options of ``deq``.

    Attributes:
        weights: a shipped DEQ (``deq-admm-demo``, ``deq-demo``, ``rerg-demo``, ``deq-sn-demo``) or a
            weights/checkpoint file of a ``deq`` network.
        iters: maximum forward iterations (``None``: the network's trained ``max_iter``).
        tol: stop when the relative fixed-point residual ``‖T(x) − x‖ / ‖T(x)‖`` is at most ``tol``
            (``None``: the network's trained ``tol``). A network that was trained with a forward budget it
            never used up to its tolerance (the DEQ-GD and RERG demos: 15 iterations, tol 1e-3) is a
            fixed-budget network in practice; iterating it further towards its fixed point is possible
            (``iters=100, tol=1e-4``) but was measured to lower the PSNR, so the default is its training budget
            (``deq-admm-demo``: 40 iterations, tol 1e-3, which it reaches on the demo test slices).
        anderson: Anderson acceleration (else plain iteration).
        memory: Anderson's memory.
        divergence: ``"stop"`` (warn, return the best in-bound iterate) or ``"raise"``.
        seed: accepted for a uniform interface; the method is deterministic.
    """

    weights: str = "deq-admm-demo"
    iters: int | None = None
    tol: float | None = None
    anderson: bool = True
    memory: int = 5
    divergence: OnDivergence = "stop"
    seed: int = 0


@dataclass
class REDOptions:
    """Options of ``red``.

    Attributes:
        weights: a DEQ with ``iteration: gd`` (``rerg-demo``, ``deq-demo``; its learned regularising gradient) or a
            denoiser (shipped name or file; its residual ``x − D(x)``).
        lam: ``λ`` (``None``: the DEQ's learned value; 1 for a denoiser).
        step: ``η`` (``None``: the DEQ's learned value; ``1/(1 + λ)`` for a denoiser, a stable step when
            ``‖A‖ ≤ 1`` and ``x − D(x)`` is 1-Lipschitz).
        iters, tol, anderson, memory, divergence, seed: as :class:`DEQOptions`.
        init_iters: CG iterations of the least-squares start and scale.
    """

    weights: str = "rerg-demo"
    lam: float | None = None
    step: float | None = None
    iters: int = 100
    tol: float = 1e-4
    anderson: bool = True
    memory: int = 5
    divergence: OnDivergence = "stop"
    seed: int = 0
    init_iters: int = 10


@dataclass
class UnrolledADMMOptions:
    """Options of ``unrolled-admm``.

    Attributes:
        weights: a shipped unrolled ADMM (``unrolled-admm-demo``) or a weights/checkpoint file.
        iters: unrolled iterations (``None``: as trained; the weights are tied, so more or fewer can run).
        tol: stop early when ``‖z_t − z_{t−1}‖ / ‖z_t‖ ≤ tol`` (0: run all iterations).
        seed: accepted for a uniform interface; the method is deterministic.
    """

    weights: str = "unrolled-admm-demo"
    iters: int | None = None
    tol: float = 0.0
    seed: int = 0


def _check(options: Any, who: str) -> None:
    check_iters_tol(who, getattr(options, "iters", None), 0.0 if options.tol is None else options.tol, min_iters=1)
    if getattr(options, "divergence", "stop") not in ("stop", "raise"):
        raise ConfigError(f"method {who!r}: divergence must be 'stop' or 'raise', got {options.divergence!r}")


def _timed_inference(model: Any, sample: KSpaceSample) -> tuple[torch.Tensor, float]:
    """``model(sample)`` without gradients, and its wall time in seconds."""
    t0 = time.perf_counter()
    with torch.no_grad():
        image = model(sample)
    return image, time.perf_counter() - t0


def _report_info(report: Any, seconds: float, who: str, divergence: str) -> dict[str, Any]:
    fwd = report
    diverged = bool(fwd.diverged.any())
    info = {"iterations": int(fwd.iterations.max()), "residual": float(fwd.residual.max()),
            "converged": bool(fwd.converged.all()), "diverged": diverged, "restarts": int(fwd.restarts),
            "stop_reason": fwd.history.stop_reason, "time_s": seconds}
    if diverged:
        msg = (f"{who}: the iterates exceeded the divergence guard's bound after {info['iterations']} iterations; "
               f"the best in-bound iterate is returned")
        if divergence == "raise":
            raise DivergenceError(msg)
        warnings.warn(msg, RuntimeWarning, stacklevel=3)
    return info


@register_method("deq", DEQOptions, needs_maps=True,
                 description="deep equilibrium network (DEQ-GD, RERG, DEQ-ADMM), fixed point by Anderson")
def deq(sample: KSpaceSample, options: DEQOptions) -> ReconResult:
    """The fixed point of a trained DEQ for the sample (see the module docstring)."""
    from mrirecon.models.equilibrium import DEQRecon  # noqa: PLC0415
    from mrirecon.models.model_based import load_model_based  # noqa: PLC0415

    _check(options, "deq")
    model = load_model_based(options.weights, DEQRecon, "deq: weights")
    assert isinstance(model, DEQRecon)
    changes: dict[str, Any] = {"anderson": bool(options.anderson), "memory": int(options.memory)}
    if options.iters is not None:
        changes["max_iter"] = int(options.iters)
    if options.tol is not None:
        changes["tol"] = float(options.tol)
    model.configure(**changes)
    image, seconds = _timed_inference(model, sample)
    assert model.last_report is not None
    rep = model.last_report.forward
    info = _report_info(rep, seconds, "deq", options.divergence)
    if sample.maps is not None:
        from mrirecon.operators.sense import Sense  # noqa: PLC0415
        from mrirecon.solvers.terms import operator_norm_bound  # noqa: PLC0415

        # ‖A‖² ≤ max|m|² · max_r Σ_c |S_c(r)|² (exact bound, no iteration)
        bound = model.contraction_bound(operator_norm_bound(Sense(sample.maps, sample.mask)))
        if bound is not None:
            info["contraction_bound"] = bound  # certified Lip(T) (< 1: unique fixed point, reached from any start)
    return ReconResult(image=image, history=rep.history, info=info)


@register_method("red", REDOptions, needs_maps=True,
                 description="RED / PnP-ReG gradient descent with a denoiser residual or a learned regularising gradient")
def red(sample: KSpaceSample, options: REDOptions) -> ReconResult:
    """Gradient descent ``x ← x − η(∇f(x) + λ(x − D(x)))`` to its fixed point (Anderson-accelerated)."""
    from mrirecon.denoisers.base import Denoiser  # noqa: PLC0415
    from mrirecon.models.equilibrium import DEQRecon  # noqa: PLC0415
    from mrirecon.models.model_based import load_model_based, prepare_problem, sense_operator  # noqa: PLC0415
    from mrirecon.solvers.anderson import FixedPointConfig  # noqa: PLC0415
    from mrirecon.solvers.deq import GradientStepMap, solve_fixed_point  # noqa: PLC0415

    _check(options, "red")
    net = load_model_based(options.weights, (DEQRecon, Denoiser), "red: weights")
    if isinstance(net, DEQRecon):
        if net.iteration != "gd":
            raise ConfigError(f"red: weights {options.weights!r} is a DEQ with iteration {net.iteration!r}; red needs "
                              f"one with iteration 'gd' (a regularising gradient) or a denoiser")
        lam = float(net.value("lam")) if options.lam is None else float(options.lam)
        step = float(net.value("step")) if options.step is None else float(options.step)
        den = net.net
    else:
        lam = 1.0 if options.lam is None else float(options.lam)
        step = 1.0 / (1.0 + lam) if options.step is None else float(options.step)
        den = net
    if not (lam >= 0 and step > 0):
        raise ConfigError(f"red: need lam >= 0 and step > 0, got lam={lam}, step={step}")
    y, A, unbatched = sense_operator(sample, "red")
    t0 = time.perf_counter()
    with torch.no_grad():
        p = prepare_problem(y, A, options.init_iters, who="red")
        T = GradientStepMap(p.data, lambda x: x - den(x), step, lam)
        cfg = FixedPointConfig(max_iter=int(options.iters), tol=float(options.tol), anderson=bool(options.anderson),
                               memory=int(options.memory), bound=100.0)
        x, rep = solve_fixed_point(T, p.x0, cfg)
        x = x * p.scale.reshape(-1, 1, 1).to(x.dtype)
    seconds = time.perf_counter() - t0
    info = _report_info(rep, seconds, "red", options.divergence) | {"lam": lam, "step": step}
    return ReconResult(image=x[0] if unbatched else x, history=rep.history, info=info)


@register_method("unrolled-admm", UnrolledADMMOptions, needs_maps=True,
                 description="unrolled ADMM with a tied learned denoiser and learned penalties (Milacski et al.)")
def unrolled_admm(sample: KSpaceSample, options: UnrolledADMMOptions) -> ReconResult:
    """The trained unrolled ADMM on the sample (see the module docstring)."""
    from mrirecon.models.model_based import load_model_based  # noqa: PLC0415
    from mrirecon.models.unrolled_admm import UnrolledADMM  # noqa: PLC0415

    _check(options, "unrolled-admm")
    model = load_model_based(options.weights, UnrolledADMM, "unrolled-admm: weights")
    assert isinstance(model, UnrolledADMM)
    model.configure(iterations=options.iters or model.iterations, tol=float(options.tol))
    image, seconds = _timed_inference(model, sample)
    hist = model.last_history
    assert hist is not None
    info = {"iterations": hist.iterations, "residual": hist.residual[-1] if hist.residual else float("nan"),
            "converged": hist.converged, "stop_reason": hist.stop_reason, "time_s": seconds}
    return ReconResult(image=image, history=hist, info=info)

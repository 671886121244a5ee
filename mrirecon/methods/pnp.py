"""Plug-and-play reconstruction methods: ``pnp-admm``, ``pnp-admm-equivariant``, ``pnp-fbs``, ``gs-pnp``.

Each solves, per slice, ``min_x ½‖Ax − y‖² + (learned prior)`` with ``A = Sense(maps, mask)`` and a shipped
(or given) denoiser, through :mod:`mrirecon.solvers.pnp`. What every method does around the solver:

1. **Scale.** The shipped denoisers were trained on images whose magnitude maximum is 1. The k-space is
   divided by a robust estimate ``s`` of the image maximum and the result multiplied by ``s`` again:
   ``s`` is the maximum of the 3×3 median-filtered magnitude of a quick least-squares SENSE image
   (``init_iters`` CG iterations from zero, an early-stopped and therefore regularised solve); the median
   ignores isolated noise spikes, the maximum keeps the convention of the training data. It depends on
   nothing but the data, so ``alpha``/``sigma``/``lam`` mean the same on every data set.
2. **Start.** The iteration starts from that SENSE image (``x0``).
3. **Run.** :func:`mrirecon.solvers.base.run` with tolerance ``tol`` on the fixed-point residual
   ``‖x_{k+1} − x_k‖ / ‖x_0‖`` and at most ``iters`` iterations; the divergence guard stops a run whose
   residual blows up (``divergence="raise"``: a :class:`~mrirecon.errors.DivergenceError` that says so;
   ``"stop"``: the last finite iterate, with ``info["stop_reason"] == "diverged"`` and a warning).
4. **Report.** ``ReconResult.history`` is the run's :class:`~mrirecon.solvers.base.History` (residual, objective
   for ``gs-pnp``, step sizes, times); ``info["certificate"]`` is the denoiser's Lipschitz certificate
   (from the JSON shipped beside its weights, else measured now on crops of the slice — a quick,
   lower-bound estimate that says so in ``source``) and ``info["guarantee"]`` what it implies.

**Defaults: one strength, the balance from the data's noise.** ``sigma`` (in the units of the normalised
image: 0.1 = 10 % of its maximum for ``pnp-admm``, chosen by a sweep on the demo validation split; 0.05 for
``gs-pnp``) is the noise level the denoiser is applied at. The weight between data and prior then follows from the
MAP reading of PnP (a denoiser at level ``σ`` acts as the prox of ``σ²·(−log p)``; the data term
``½‖Ax − y‖²`` with noise ``σ_n`` pairs with ``σ_n²·(−log p)``), with ``σ_n`` *estimated from the
data* — the median magnitude of the outermost 10 % of the sampled k-space (noise-dominated in MRI),
divided by ``sqrt(2 ln 2)`` (the median of a Rayleigh variable) and by the image scale:

* PnP-ADMM: ``alpha = (σ / σ_n)²``;
* gradient-step PnP: ``lam = (σ_n / σ)²``;
* PnP-FBS: the step is ``alpha = 1/‖A‖²`` (convergence needs ``α < 2/‖A‖²``); a noise-map denoiser gets
  ``σ = sqrt(α)·σ_n``, the level that balances this step (``sigma`` is then not used).

So the same defaults regularise more on noisy data and less on clean data, and no value was fitted to a
data set; each can be overridden. ``info`` records ``noise``, ``alpha``/``lam`` and ``sigma`` as used.
Where the noise cannot be estimated (no sampled k-space near the edge, or all zero there), ``σ_n = σ``.
"""
from __future__ import annotations

import json
import math
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch

from mrirecon.data.sample import KSpaceSample
from mrirecon.errors import ConfigError, DivergenceError, MissingWeightsError
from mrirecon.methods import ReconResult, check_iters_tol, register_method
from mrirecon.methods.history import run_info
from mrirecon.operators import Sense
from mrirecon.operators.linop import Linop
from mrirecon.solvers import ConjugateGradient, run
from mrirecon.solvers.base import Solver
from mrirecon.solvers.dataprox import DataProx, data_prox
from mrirecon.solvers.pnp import GradientStepPnP, PnPADMM, PnPFBS
from mrirecon.solvers.scaling import estimate_noise, robust_max
from mrirecon.solvers.terms import operator_norm_bound

Equivariance = Literal["none", "random", "average"]
OnDivergence = Literal["raise", "stop"]


# ---------------------------------------------------------------------------------------------
# options
# ---------------------------------------------------------------------------------------------
@dataclass
class PnPADMMOptions:
    """Options of ``pnp-admm``.

    Attributes:
        weights: denoiser: a shipped name (``mrirecon denoisers`` lists them) or a weights/checkpoint file. The
            default ``dncnn-jac`` is firmly non-expansive (measured ``Lip(2D − I)`` ≤ 1.004), the condition under
            which PnP-ADMM (any α) and PnP-FBS (α < 2/L) converge for a convex data term, undersampled or not;
            on the demo test split at 4× it converged on every slice, where the real-SN ``dncnn-sn``
            (``Lip(I − D)`` < 1, which needs a strongly convex data term) did not (README, Plug-and-play).
        alpha: weight ``α`` of the data term in the data step ``argmin ½‖Ax − y‖² + (1/2α)‖x − v‖²``
            (``None``: ``(σ/σ_n)²`` with the estimated noise ``σ_n``, see the module docstring).
        sigma: the denoiser's noise level, a fraction of the image maximum (noise-map networks take it as
            input; for blind networks it only sets the default ``alpha``). 0.1, chosen on the demo *validation*
            split (8 slices, σ from 0.02 to 0.5): with ``dncnn-jac`` the PSNR against the noise-free image peaks
            at 0.1 at 4× (27.35 dB; 26.75 at the former 0.05) and the broad optimum is 0.07–0.15 at 4× and 8×,
            with a cliff above 0.2 (README, Plug-and-play). ``gs-pnp`` uses 0.07 (its own sweep).
        iters: maximum iterations, a cap: the run stops at ``tol``. 300 lets the default firmly non-expansive
            denoiser converge at 8× as well (demo test split: 118 iterations on average for PnP-ADMM, 136 for
            PnP-FBS, against 53–58 at 4×); a run that stops at the cap reports ``converged: false``.
        tol: stop when the fixed-point residual ``‖x_{k+1} − x_k‖ / ‖x_0‖`` is below it.
        seed: seed of the random rotations/flips (``equivariant="random"``) and of a computed certificate.
        equivariant: ``"none"``, ``"random"`` (one of the 8 rotations/flips per call, Terris et al.) or
            ``"average"`` (the average over all 8: 8× the cost, exactly equivariant).
        cg_iters, cg_tol: the CG data step (multicoil SENSE has no closed form).
        init_iters: CG iterations of the least-squares start/scale estimate.
        normalize: divide the data by the robust image scale (the denoiser's units) and multiply back.
        divergence: ``"raise"`` or ``"stop"`` when the divergence guard fires.
        certificate: attach the denoiser's Lipschitz certificate (computing a quick one when none is shipped).
    """

    weights: str = "dncnn-jac"
    alpha: float | None = None
    sigma: float = 0.1
    iters: int = 300
    tol: float = 1e-4
    seed: int = 0
    equivariant: Equivariance = "none"
    cg_iters: int = 30
    cg_tol: float = 1e-6
    init_iters: int = 10
    normalize: bool = True
    divergence: OnDivergence = "raise"
    certificate: bool = True


@dataclass
class PnPADMMEquivariantOptions(PnPADMMOptions):
    """Options of ``pnp-admm-equivariant``: ``pnp-admm`` with a random rotation/flip of the denoiser per call.

    ``iters`` stays 100: a different transform at every call keeps the fixed-point residual near 1e-2 (README), so
    the tolerance is not the stopping rule here and a larger cap would only cost time.
    """

    equivariant: Equivariance = "random"
    iters: int = 100


@dataclass
class PnPFBSOptions:
    """Options of ``pnp-fbs``.

    Attributes:
        alpha: gradient step (``None``: ``1/‖A‖²``, i.e. 1 for normalised maps).
        sigma: the noise-map denoiser's level (``None``: ``sqrt(α)·σ_n`` with the estimated noise ``σ_n``).
        (the others as :class:`PnPADMMOptions`; there is no data step, so no CG options.)
    """

    weights: str = "dncnn-jac"
    alpha: float | None = None
    sigma: float | None = None
    iters: int = 300
    tol: float = 1e-4
    seed: int = 0
    equivariant: Equivariance = "none"
    init_iters: int = 10
    normalize: bool = True
    divergence: OnDivergence = "raise"
    certificate: bool = True


@dataclass
class GSPnPOptions:
    """Options of ``gs-pnp``.

    Attributes:
        weights: a gradient-step denoiser (``D = I − ∇g``).
        lam: weight ``λ`` of ``g_σ`` in ``F = ½‖Ax − y‖² + λ g_σ`` (``None``: ``(σ_n/σ)²`` with the estimated
            noise ``σ_n``).
        sigma: the denoiser's noise level (fraction of the image maximum). 0.07, chosen on the demo *validation*
            split (8 slices, σ from 0.02 to 0.1 — ``gs-drunet`` was trained up to 0.11): the PSNR against the
            noise-free image peaks at 0.07 at 4× (25.77 dB; 25.62 at the former 0.05), PSNR against the RSS and at
            8× still rise to 0.1 (README, Plug-and-play).
        step: initial step ``τ`` in the denoiser's units (1: a full denoiser step), reduced by backtracking.
        iters, tol, seed, cg_iters, cg_tol, init_iters, normalize, divergence, certificate: as
            :class:`PnPADMMOptions` (the data step needs a tighter CG tolerance: the line search compares
            objective values).
    """

    weights: str = "gs-drunet"
    lam: float | None = None
    sigma: float = 0.07
    step: float = 1.0
    iters: int = 100
    tol: float = 1e-4
    seed: int = 0
    cg_iters: int = 50
    cg_tol: float = 1e-7
    init_iters: int = 10
    normalize: bool = True
    divergence: OnDivergence = "raise"
    certificate: bool = True


# ---------------------------------------------------------------------------------------------
# shared plumbing
# ---------------------------------------------------------------------------------------------
def _batch_view(s: torch.Tensor, ndim: int) -> torch.Tensor:
    return s.reshape(*s.shape, *([1] * ndim))


@dataclass
class Problem:
    """A slice (or batch) ready for a PnP solver, in the denoiser's units."""

    A: Linop
    data: DataProx
    x0: torch.Tensor
    scale: torch.Tensor
    image_ndim: int
    noise: float = math.nan

    def noise_or(self, fallback: float) -> float:
        """The estimated noise level ``σ_n`` (normalised units; median over a batch), or ``fallback``."""
        return self.noise if math.isfinite(self.noise) and self.noise > 0 else fallback


def prepare(sample: KSpaceSample, init_iters: int, normalize: bool, cg_iters: int = 30, cg_tol: float = 1e-6,
            who: str = "pnp") -> Problem:
    """SENSE operator, normalised data, least-squares start and scale of a sample (see the module docstring).

    Raises:
        ConfigError: no coil maps, or ``init_iters < 1``.
    """
    if sample.maps is None:
        raise ConfigError(f"method {who!r} needs coil sensitivity maps (file {getattr(sample.meta, 'file', '?')})")
    if init_iters < 1:
        raise ConfigError(f"method {who!r}: init_iters must be >= 1, got {init_iters}")
    A = Sense(sample.maps, sample.mask, multi_set=sample.multi_set)
    y = sample.kspace
    nd = len(A.ishape)
    x_ls, _ = run(ConjugateGradient(A.N, A.adjoint(y), max_iter=init_iters))
    if normalize:
        s = robust_max(x_ls, nd)
    else:
        s = torch.ones(x_ls.shape[:x_ls.ndim - nd], dtype=x_ls.real.dtype, device=x_ls.device)
    y_n = y / _batch_view(s, 3).to(y.dtype)
    x0 = x_ls / _batch_view(s, nd).to(x_ls.dtype)
    noise = (estimate_noise(y, sample.mask) / s).reshape(-1)
    noise = noise[torch.isfinite(noise)]
    return Problem(A=A, data=data_prox(A, y_n, cg_iters=cg_iters, cg_tol=cg_tol), x0=x0, scale=s, image_ndim=nd,
                   noise=float(noise.median()) if noise.numel() else math.nan)


def load_prior(weights: str, equivariant: Equivariance, seed: int, like: torch.Tensor) -> torch.nn.Module:
    """The denoiser ``weights`` (shipped name or file) in eval mode, in the precision of ``like``.

    Raises:
        MissingWeightsError: unknown weights (lists the shipped names).  ConfigError: bad ``equivariant`` value.
    """
    from mrirecon.denoisers import load_denoiser

    if equivariant not in ("none", "random", "average"):
        raise ConfigError(f"equivariant must be 'none', 'random' or 'average', got {equivariant!r}")
    try:
        den = load_denoiser(weights, equivariant=None if equivariant == "none" else equivariant, seed=seed)
    except KeyError as exc:
        raise MissingWeightsError(f"weights: {exc.args[0]}") from None
    den = den.double() if like.dtype == torch.complex128 else den.float()
    for p in den.parameters():
        p.requires_grad_(False)
    return den.eval()


def certificate_summary(weights: str, den: torch.nn.Module, images: torch.Tensor | None, seed: int
                        ) -> dict[str, Any]:
    """The Lipschitz certificate of the denoiser: shipped (the JSON beside the weights) or measured now.

    A measured one uses 4 crops (48×48) of the (normalised) start images and 20 power iterations: a quick
    empirical lower bound of the Lipschitz constants, marked ``source="computed (quick)"``. For a real-SN
    network, ``bound_I_minus_D`` is the rigorous architectural bound (the JSON's ``certified_bound``, else
    computed now by :meth:`~mrirecon.denoisers.base.Denoiser.certified_bound`) and ``bound_I_minus_D_nominal``
    the product of the layers' normalisation targets.
    """
    from mrirecon.denoisers import shipped_denoisers

    info: dict[str, Any] | None = None
    shipped = shipped_denoisers().get(weights)
    if shipped and "certificate" in shipped:
        info, source = shipped["certificate"], f"shipped ({weights}.json)"
    else:
        side = Path(weights).expanduser().with_suffix(".json")
        if side.is_file():
            try:
                doc = json.loads(side.read_text())
            except (OSError, ValueError):
                doc = {}
            if isinstance(doc, dict) and "certificate" in doc:
                info, source = doc["certificate"], f"file ({side})"
    if info is None:
        if images is None:
            return {"source": "none"}
        from mrirecon.denoisers import lipschitz_certificate

        imgs = [im for im in images.reshape(-1, *images.shape[-2:])]
        cert = lipschitz_certificate(den, imgs, n_points=4, iters=20, seed=seed, crop=48)
        info, source = cert.to_dict(), "computed (quick: 4 points, 20 power iterations; a lower bound)"
    stats = info.get("stats", {})

    def mx(k: str) -> float:
        return float(stats.get(k, {}).get("max", math.nan))

    wrapped = getattr(den, "denoiser", None)
    nominal = info.get("bound")
    if nominal is None and hasattr(den, "lipschitz_bound"):
        nominal = den.lipschitz_bound()
    bound = info.get("certified_bound")
    if bound is None and hasattr(den, "certified_bound"):
        bound = den.certified_bound()  # rigorous; cached per weight set
    out = {"source": source, "lip_D": mx("D"), "lip_I_minus_D": mx("I-D"), "lip_2D_minus_I": mx("2D-I"),
           "bound_I_minus_D": bound, "bound_I_minus_D_nominal": nominal, "equivariant_wrapper": wrapped is not None}
    return out


def guarantee(kind: str, cert: dict[str, Any]) -> str:
    """What the certificate implies for this solver on undersampled MRI (see :mod:`mrirecon.solvers.pnp`)."""
    bound = cert.get("bound_I_minus_D")
    eps = bound if bound is not None else cert.get("lip_I_minus_D", math.nan)
    fne = cert.get("lip_2D_minus_I", math.nan)
    parts = []
    if isinstance(fne, float) and fne <= 1.0:
        parts.append(f"Lip(2D-I) ~ {fne:.3f} <= 1 (estimated): D firmly non-expansive on the sampled points; "
                     f"{kind} converges for convex f (Pesquet/Terris), no rate")
    if isinstance(eps, float) and eps < 1.0:
        how = "certified" if bound is not None else "estimated"
        parts.append(f"Lip(I-D) <= {eps:.4f} < 1 ({how}): Ryu's contraction holds where A^H A is positive "
                     f"definite (mu > 0), not on its null space")
    if kind == "gs-pnp":
        parts.append("gradient-step PnP: the objective F = f + lam g is non-increasing (backtracking)")
    if not parts:
        parts.append("no theorem applies to this denoiser; convergence is only measured (fixed-point residual)")
    return "; ".join(parts)


def _finish(solver: Solver, x0: torch.Tensor, opts: Any, prob: Problem, t0: float, who: str,
            record_objective: bool, extra: dict[str, Any]) -> ReconResult:
    try:
        x, hist = run(solver, x0, record_objective=record_objective, raise_on_divergence=opts.divergence == "raise")
    except DivergenceError as exc:
        raise DivergenceError(f"method {who!r}: {exc} (weights {opts.weights!r}; a certified denoiser or a "
                              f"smaller step helps)") from None
    if hist.stop_reason == "diverged":
        warnings.warn(f"method {who!r}: the iterates diverged at iteration {hist.iterations}; returning the last "
                      f"finite iterate", RuntimeWarning, stacklevel=3)
    image = x * _batch_view(prob.scale, prob.image_ndim).to(x.dtype)
    info = {**run_info(hist, t0), "final_residual": hist.residual[-1] if hist.residual else math.nan,
            "scale": prob.scale.tolist(),
            "data_step": prob.data.kind, "tol": opts.tol, "weights": opts.weights, **extra}
    return ReconResult(image=image, history=hist, info=info)


def _check(who: str, iters: int, tol: float, sigma: float | None = None) -> None:
    if sigma is not None and not (sigma > 0 and math.isfinite(sigma)):
        raise ConfigError(f"method {who!r}: sigma must be a positive number, got {sigma}")
    check_iters_tol(who, iters, tol)


def _certificate(opts: Any, den: torch.nn.Module, prob: Problem, kind: str) -> dict[str, Any]:
    if not opts.certificate:
        return {}
    cert = certificate_summary(opts.weights, den, prob.x0.reshape(-1, *prob.x0.shape[-2:]), opts.seed)
    return {"certificate": cert, "guarantee": guarantee(kind, cert)}


# ---------------------------------------------------------------------------------------------
# methods
# ---------------------------------------------------------------------------------------------
def _pnp_admm(sample: KSpaceSample, opts: PnPADMMOptions, who: str) -> ReconResult:
    _check(who, opts.iters, opts.tol, opts.sigma)
    t0 = time.perf_counter()
    prob = prepare(sample, opts.init_iters, opts.normalize, opts.cg_iters, opts.cg_tol, who)
    den = load_prior(opts.weights, opts.equivariant, opts.seed, prob.x0)
    extra = _certificate(opts, den, prob, "pnp-admm")
    alpha = opts.alpha if opts.alpha is not None else (opts.sigma / prob.noise_or(opts.sigma)) ** 2
    solver = PnPADMM(prob.data, None, den, sigma=opts.sigma, alpha=alpha, max_iter=opts.iters, tol=opts.tol)
    return _finish(solver, prob.x0, opts, prob, t0, who, False,
                   {"alpha": alpha, "sigma": opts.sigma, "noise": prob.noise, "equivariant": opts.equivariant,
                    **extra})


@register_method("pnp-admm", PnPADMMOptions, needs_maps=True,
                 description="plug-and-play ADMM with a learned denoiser (Ryu et al. 2019); CG data step")
def pnp_admm(sample: KSpaceSample, options: PnPADMMOptions) -> ReconResult:
    """PnP-ADMM: ``x = prox_{αf}(z − u)``, ``z = D(x + u)``, ``u += x − z`` in the denoiser's units."""
    return _pnp_admm(sample, options, "pnp-admm")


@register_method("pnp-admm-equivariant", PnPADMMEquivariantOptions, needs_maps=True,
                 description="PnP-ADMM with a random rotation/flip of the denoiser per iteration (Terris et al.)")
def pnp_admm_equivariant(sample: KSpaceSample, options: PnPADMMEquivariantOptions) -> ReconResult:
    """Equivariant PnP-ADMM: ``D`` replaced by ``T⁻¹ D(T ·)`` with ``T`` drawn per call from the 8 rotations/flips."""
    return _pnp_admm(sample, options, "pnp-admm-equivariant")


@register_method("pnp-fbs", PnPFBSOptions, needs_maps=True,
                 description="plug-and-play forward-backward splitting (PnP-ISTA) with a learned denoiser")
def pnp_fbs(sample: KSpaceSample, options: PnPFBSOptions) -> ReconResult:
    """PnP-FBS: ``x = D(x − α A^H(Ax − y))`` in the denoiser's units."""
    who = "pnp-fbs"
    _check(who, options.iters, options.tol, options.sigma)
    t0 = time.perf_counter()
    prob = prepare(sample, options.init_iters, options.normalize, who=who)
    den = load_prior(options.weights, options.equivariant, options.seed, prob.x0)
    extra = _certificate(options, den, prob, who)
    # PnPFBS's own default step, computed here because the default σ depends on it
    alpha = options.alpha if options.alpha is not None else 1.0 / operator_norm_bound(prob.data.A)
    # default σ: the level that balances the step (MAP reading), for noise-map denoisers
    sigma = options.sigma if options.sigma is not None else math.sqrt(max(alpha, 0.0)) * prob.noise_or(0.05)
    solver = PnPFBS(prob.data, None, den, sigma=sigma, alpha=alpha, max_iter=options.iters, tol=options.tol)
    return _finish(solver, prob.x0, options, prob, t0, who, False,
                   {"alpha": solver.alpha, "sigma": solver.sigma, "noise": prob.noise,
                    "equivariant": options.equivariant, **extra})


@register_method("gs-pnp", GSPnPOptions, needs_maps=True,
                 description="gradient-step PnP (Hurault et al. 2022): monotone descent on f + λ g_σ")
def gs_pnp(sample: KSpaceSample, options: GSPnPOptions) -> ReconResult:
    """Gradient-step PnP: ``x = prox_{(τ/λ)f}(x − τ∇g_σ(x))`` with backtracking on ``τ``; records ``F``."""
    who = "gs-pnp"
    _check(who, options.iters, options.tol, options.sigma)
    t0 = time.perf_counter()
    prob = prepare(sample, options.init_iters, options.normalize, options.cg_iters, options.cg_tol, who)
    den = load_prior(options.weights, "none", options.seed, prob.x0)
    if not (hasattr(den, "g") and hasattr(den, "grad_g")):
        raise ConfigError(f"method {who!r}: weights {options.weights!r} is a {type(den).__name__}, not a "
                          f"gradient-step denoiser (D = I - grad g); use e.g. gs-drunet")
    extra = _certificate(options, den, prob, who)
    lam = options.lam if options.lam is not None else (prob.noise_or(options.sigma) / options.sigma) ** 2
    solver = GradientStepPnP(prob.data, None, den, sigma=options.sigma, lam=lam, step=options.step,
                             max_iter=options.iters, tol=options.tol)
    return _finish(solver, prob.x0, options, prob, t0, who, True,
                   {"lam": lam, "sigma": options.sigma, "noise": prob.noise, **extra})


__all__ = ["GSPnPOptions", "PnPADMMEquivariantOptions", "PnPADMMOptions", "PnPFBSOptions", "certificate_summary",
           "estimate_noise", "guarantee", "prepare"]

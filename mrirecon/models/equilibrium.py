"""Deep equilibrium reconstruction: the output is a fixed point ``x* = T_θ(x*; y, A)`` of a learned iteration.

:class:`DEQRecon` (registered ``deq``) wraps one of three iterations of :mod:`mrirecon.solvers.deq` around a
registered denoiser network ``N_θ`` (complex images in and out):

* ``iteration="gd"`` — gradient descent with a learned **regularising gradient** (Fermanian et al.'s PnP-ReG;
  Willingham et al. 2024): ``T(x) = x − η(∇f(x) + λ·σ²G_θ(x))`` with ``σ²G_θ(x) = x − N_θ(x)``. A fixed point
  solves ``∇f(x*) + λσ²G_θ(x*) = 0``. With ``N_θ`` a pretrained denoiser this is RED (Romano et al. 2017);
  trained as a DEQ it is Willingham et al.'s DEQ-GD;
* ``iteration="fbs"`` — PnP forward-backward: ``T(x) = N_θ(x − η∇f(x))`` (Gilton et al. 2021's DEQ-PnP-FBS);
* ``iteration="admm"`` — PnP-ADMM on ``(z, u)`` with ``N_θ`` as the denoiser and weight ``α``. With ``sigma``
  set, ``α`` adapts to each slice's noise as ``pnp-admm``'s default does: ``α = a·(σ/σ_n)²`` with ``σ_n`` the
  noise level estimated from the k-space edge (:func:`~mrirecon.solvers.scaling.estimate_noise`, in the
  normalised units) and ``a`` learned (initial value ``alpha``); where ``σ_n`` cannot be estimated (a general
  imaging operator) ``α = a``. Started from a trained denoiser with ``alpha: 1`` and the ``sigma`` of
  ``pnp-admm``, step 0 of training *is* ``pnp-admm``'s iteration.

``η``, ``λ``, ``α`` are learned (positive, through a softplus) with ``learn_parameters``. The fixed point is
found by :class:`~mrirecon.solvers.deq.FixedPointLayer` (Anderson with a safeguarded plain-iteration
fall-back, divergence guard, step tolerance) and differentiated implicitly or Jacobian-free. The report of the
last call (forward and, after ``backward()``, adjoint iterations, residuals, non-converged and diverged counts)
is :attr:`DEQRecon.last_report`. Units and entry points: :mod:`mrirecon.models.model_based`.
"""
from __future__ import annotations

import math
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import nn

from mrirecon.denoisers.registry import register
from mrirecon.denoisers.spectral import CERTIFY_GRID
from mrirecon.errors import ConfigError
from mrirecon.models.model_based import ModelBased, Problem, build_network, softplus_inverse
from mrirecon.operators.linop import Linop
from mrirecon.solvers.anderson import FixedPointConfig
from mrirecon.solvers.deq import (
    ADMMMap,
    DataTerm,
    DEQReport,
    FixedPointLayer,
    ForwardBackwardMap,
    GradientStepMap,
    IterationMap,
)

Iteration = Literal["gd", "fbs", "admm"]


class PositiveScalar(nn.Module):
    """A positive scalar ``softplus(p)`` — or ``upper·sigmoid(p)`` in ``(0, upper)`` — learned or fixed."""

    def __init__(self, value: float, learn: bool, upper: float | None = None) -> None:
        super().__init__()
        if upper is not None and not 0 < value < upper:
            raise ConfigError(f"a value in (0, {upper}) is needed, got {value}")
        self.upper = None if upper is None else float(upper)
        v = float(value)
        raw = torch.tensor(softplus_inverse(v) if upper is None else math.log(v / (upper - v)))
        if learn:
            self.raw = nn.Parameter(raw)
        else:
            self.register_buffer("raw", raw)

    def forward(self) -> torch.Tensor:
        return F.softplus(self.raw) if self.upper is None else self.upper * torch.sigmoid(self.raw)


@register("deq")
class DEQRecon(ModelBased):
    """Deep equilibrium network for ``½‖Ax − y‖²`` plus a learned prior (see the module docstring).

    Args:
        iteration: ``"gd"`` (regularising gradient), ``"fbs"`` or ``"admm"``.
        network: a registered denoiser network (``dncnn``, ``unet``, ``drunet``) used as ``N_θ``.
        network_options: its constructor arguments.
        step: initial ``η`` (gd, fbs).
        step_max: keep the learned ``η`` in ``(0, step_max)`` (a scaled sigmoid instead of a softplus); see
            :meth:`contraction_bound`.
        lam: initial ``λ`` (gd).
        alpha: initial ``α`` (admm) — or, with ``sigma``, the initial factor ``a`` of ``α = a·(σ/σ_n)²``.
        sigma: ``σ`` of the noise-adaptive ``α`` (admm only; ``None``: ``α`` does not depend on the data).
        support: restrict the iterates to the coil maps' support (SENSE; :class:`~mrirecon.solvers.deq.DataTerm`).
            ``False`` leaves the pixels no coil sees to the prior, as ``pnp-admm`` does: the fastMRI metrics
            compare with ``reconstruction_rss``, whose background there is noise, and zeros cost 0.2–0.4 dB
            against it on the demo test split (while gaining 0.1–0.2 dB against the demo's noise-free image,
            whose background is exactly zero; the README's DEQ section).
        learn_parameters: learn ``η``, ``λ``, ``α`` (else fixed).
        max_iter, tol, criterion, anderson, memory, bound: the forward solve (:class:`FixedPointConfig`;
            ``bound`` in normalised units, images of magnitude maximum ≈ 1).
        backward: ``"implicit"`` or ``"jfb"``.
        backward_max_iter, backward_tol: the adjoint solve (implicit).
        cg_iters: CG steps of the ADMM data prox.
        init_iters: CG steps of the start/scale estimate.

    Raises:
        ConfigError: unknown iteration or network, or invalid solver settings.
    """

    def __init__(self, iteration: Iteration = "gd", network: str = "dncnn", network_options: dict[str, Any] | None = None,
                 step: float = 0.5, lam: float = 1.0, alpha: float = 1.0, learn_parameters: bool = True,
                 max_iter: int = 50, tol: float = 1e-3, criterion: Literal["relative", "mse"] = "relative",
                 anderson: bool = True, memory: int = 5, bound: float = 100.0,
                 backward: Literal["implicit", "jfb"] = "implicit", backward_max_iter: int = 30,
                 backward_tol: float = 1e-3, cg_iters: int = 10, init_iters: int = 10,
                 step_max: float | None = None, sigma: float | None = None, support: bool = True) -> None:
        super().__init__()
        if iteration not in ("gd", "fbs", "admm"):
            raise ConfigError(f"DEQRecon: iteration must be 'gd', 'fbs' or 'admm', got {iteration!r}")
        if sigma is not None and (iteration != "admm" or not sigma > 0):
            raise ConfigError(f"DEQRecon: sigma (the noise-adaptive alpha) needs iteration 'admm' and sigma > 0, "
                              f"got iteration {iteration!r}, sigma {sigma!r}")
        self.sigma = None if sigma is None else float(sigma)
        self.support = bool(support)
        self.iteration = iteration
        self.net = build_network(network, network_options, "DEQRecon")
        self.params = nn.ModuleDict()
        if iteration in ("gd", "fbs"):
            self.params["step"] = PositiveScalar(step, learn_parameters, upper=step_max)
        if iteration == "gd":
            self.params["lam"] = PositiveScalar(lam, learn_parameters)
        if iteration == "admm":
            self.params["alpha"] = PositiveScalar(alpha, learn_parameters)
        self.cg_iters, self.init_iters = int(cg_iters), int(init_iters)
        self.layer = FixedPointLayer(
            FixedPointConfig(max_iter=max_iter, tol=tol, criterion=criterion, anderson=anderson, memory=memory,
                             bound=bound),
            FixedPointConfig(max_iter=backward_max_iter, tol=backward_tol, criterion="relative", anderson=anderson,
                             memory=memory, bound=1e30),
            method=backward)
        self.last_report: DEQReport | None = None

    # -- pieces ---------------------------------------------------------------------------------
    def contraction_bound(self, op_norm_sq: float = 1.0, grid: int = CERTIFY_GRID) -> float | None:
        """A certified bound on ``Lip(T)`` for a data term with ``‖A‖² ≤ op_norm_sq``, or None when there is none.

        For ``iteration="fbs"`` with a non-residual network under real spectral normalisation (``dncnn`` with
        ``residual: false`` and ``lipschitz: ε``): ``T = D ∘ (I − η A^H A)`` and ``‖I − η A^H A‖ =
        max(1, |1 − η‖A‖²|)`` (undersampling makes ``A^H A`` singular), so ``Lip(T) ≤ Lip(D)·max(1, η‖A‖² − 1)``.
        ``Lip(D)`` is certified by the product of rigorous upper bounds of the layers' norms
        (:func:`~mrirecon.denoisers.spectral.certified_lipschitz`: frequency-domain supremum on a ``grid²`` grid
        plus the bound on its sampling error; valid at every image size, independent of the power iteration
        that normalised the layers, hence slightly above the nominal ``ε``; computed once per set of weights,
        a few seconds per layer at ``grid=256``). Below 1, ``T`` is a contraction: its fixed point exists, is unique, and plain
        iteration reaches it at that linear rate from any start (Banach). ``step_max = 2`` keeps the learned
        ``η`` below ``2/‖A‖²`` for ``‖A‖ ≤ 1`` (ESPIRiT maps).
        """
        from mrirecon.denoisers.spectral import certified_lipschitz  # noqa: PLC0415

        # the network declares a bound on D itself (every layer real-SN'd, 1-Lipschitz activations, D = N)
        bounds = getattr(self.net, "lipschitz_bounds", lambda: None)()
        if self.iteration != "fbs" or bounds is None or getattr(self.net, "residual", True):
            return None
        lip_d = certified_lipschitz(self.net, grid)
        if lip_d is None:  # a layer the frequency certificate does not cover
            return None
        eta = float(self.value("step").detach())
        return float(lip_d) * max(1.0, eta * float(op_norm_sq) - 1.0)

    def value(self, name: str) -> torch.Tensor:
        """The current value of a learned scalar (``step``, ``lam``, ``alpha``)."""
        return self.params[name]()

    def reg(self, x: torch.Tensor) -> torch.Tensor:
        """``σ²G_θ(x) = x − N_θ(x)`` (the regularising gradient, in image units)."""
        return x - self.net(x)

    def prepare(self, y: torch.Tensor, A: Linop, **options: Any) -> Problem:
        """:meth:`ModelBased.prepare`, with the noise level when ``α`` adapts to it and the support setting."""
        return super().prepare(y, A, **{"noise": self.sigma is not None, "restrict_support": self.support, **options})

    def admm_alpha(self, noise: torch.Tensor | None, ndim: int) -> torch.Tensor:
        """``α`` of the ADMM data step, per batch element ``[B, 1, ...]`` with ``sigma`` (else the scalar).

        Args:
            noise: the normalised noise levels ``[B]`` (NaN where unknown), or None.
            ndim: dimensions of an image (the trailing singleton dims of the result).
        """
        a = self.value("alpha")
        if self.sigma is None or noise is None:
            return a
        known = torch.isfinite(noise) & (noise > 0)  # no gradient flows into ``noise``: one ``where`` suffices
        ratio = torch.where(known, self.sigma / noise, 1.0).to(a.dtype)
        return (a * ratio.square()).reshape(-1, *([1] * ndim))

    def iteration_map(self, data: DataTerm, noise: torch.Tensor | None = None) -> IterationMap:
        """The iteration ``T_θ(·; y, A)`` for a (normalised) data term (``noise``: :meth:`admm_alpha`)."""
        if self.iteration == "gd":
            return GradientStepMap(data, self.reg, self.value("step"), self.value("lam"))
        if self.iteration == "fbs":
            return ForwardBackwardMap(data, self.net, self.value("step"))
        return ADMMMap(data, self.net, self.admm_alpha(noise, data.ndim))

    def configure(self, **changes: Any) -> None:
        """Change forward-solve settings for later calls (``max_iter``, ``tol``, ``anderson``, ``memory``, ...).

        Raises:
            ConfigError: an unknown or invalid setting.
        """
        import dataclasses  # noqa: PLC0415

        fields = {f.name for f in dataclasses.fields(FixedPointConfig)}
        bad = sorted(set(changes) - fields)
        if bad:
            raise ConfigError(f"DEQRecon.configure: unknown setting(s) {bad}; known: {sorted(fields)}")
        self.layer.forward = dataclasses.replace(self.layer.forward, **changes)

    # -- solve ----------------------------------------------------------------------------------
    def solve(self, problem: Problem, progress: bool = False) -> torch.Tensor:
        """``x*`` of the normalised problem (report in :attr:`last_report`)."""
        T = self.iteration_map(problem.data, problem.noise)
        s, report = self.layer(T, T.init(problem.x0), progress=progress)
        self.last_report = report
        return T.output(s)

    def one_step_residual(self, x: torch.Tensor, data: DataTerm) -> torch.Tensor:
        """``T_θ(x) − x`` at a (normalised) image ``x`` ``[B, *ishape]`` (differentiable).

        Raises:
            ConfigError: the iteration's state is not an image (``admm``).
        """
        T = self.iteration_map(data)
        if not T.image_state:
            raise ConfigError(f"DEQRecon: T(x) − x at an image is not defined for iteration {self.iteration!r} "
                              f"(its state is (z, u)); use iteration gd or fbs")
        return T(x) - x

"""Plug-and-play solvers: PnP-ADMM, PnP-FBS (Ryu et al. 2019) and gradient-step PnP (Hurault et al. 2022).

A learned denoiser ``D_σ`` takes the place of a proximal operator inside an optimisation algorithm for
``min_x f(x) + (prior)`` with ``f(x) = ½‖Ax − y‖²`` (any :class:`~mrirecon.operators.linop.Linop` ``A``):

* **PnP-FBS** (forward-backward): ``x_{k+1} = D_σ(x_k − α ∇f(x_k))``;
* **PnP-ADMM**: ``x_{k+1} = prox_{αf}(z_k − u_k)``, ``z_{k+1} = D_σ(x_{k+1} + u_k)``,
  ``u_{k+1} = u_k + x_{k+1} − z_{k+1}`` (the data step is exact where the operator allows, else
  warm-started CG: :mod:`mrirecon.solvers.dataprox`);
* **gradient-step PnP**: ``D_σ = I − ∇g_σ`` for an explicit potential ``g_σ``; proximal gradient on
  ``F(x) = f(x) + λ g_σ(x)``: ``x_{k+1} = prox_{(τ/λ) f}(x_k − τ ∇g_σ(x_k))`` with backtracking on ``τ``,
  so ``F`` never increases.

This module sits below :mod:`mrirecon.denoisers` in the layer order, so a denoiser is anything callable as
``D(x, sigma)`` on complex images ``[..., H, W]`` (every :class:`~mrirecon.denoisers.base.Denoiser` is), and
a gradient-step prior anything with ``g(x, sigma)`` and ``grad_g(x, sigma)``
(:class:`~mrirecon.denoisers.gradient_step.GradientStepDenoiser`). ``scale`` maps the iterate to the
units the denoiser was trained on: ``D`` is applied as ``scale · D(x / scale, σ)``.

**Convergence — what is guaranteed, for which denoiser.** Let ``ε = Lip(I − D_σ)``, ``μ`` and ``L`` the
smallest and largest eigenvalues of ``A^H A`` (``f`` is ``μ``-strongly convex, ``∇f`` ``L``-Lipschitz).

* *Ryu et al. 2019, Thm 1 (PnP-FBS):* ``T = D_σ ∘ (I − α∇f)`` is ``(1 + ε)·max(|1 − αμ|, |1 − αL|)``-Lipschitz;
  a contraction (a unique fixed point, linear convergence from any start) when that is ``< 1``, which
  needs ``μ > 0`` and ``ε < 2μ/(L − μ)``.
* *Ryu et al. 2019, Thm 2 (PnP-ADMM):* with ``μ > 0`` and ``ε < 1`` the ADMM (Douglas–Rachford) operator is a
  contraction for ``α > ε / ((1 + ε − 2ε²) μ)``. A cruder bound that is easy to check, used by
  :func:`contraction_bound`: the DRS operator is ``P − R_f∘N`` (``P = prox_{αf}``, ``R_f = 2P − I``,
  ``N = I − D``), so its Lipschitz constant is at most ``1/(1 + αμ) + ε·ρ_f`` with
  ``ρ_f = max(|1 − αμ|/(1 + αμ), |1 − αL|/(1 + αL))``.
* *Terris et al. 2020 / Pesquet et al. 2021:* if ``D_σ`` is firmly non-expansive, ``Lip(2D_σ − I) ≤ 1``, it
  is the resolvent of a maximally monotone operator; PnP-FBS with ``α < 2/L`` and PnP-ADMM with any
  ``α > 0`` then converge for **convex** ``f`` — no strong convexity — to a solution of the monotone
  inclusion ``0 ∈ ∇f(x) + (D_σ^{-1} − I)(x)``, with a fixed-point residual that is ``o(1/√k)`` (no linear rate).
* *Hurault et al. 2022 (gradient-step PnP):* if ``∇g_σ`` is ``L_g``-Lipschitz and ``τ < 1/L_g``, the
  iterates decrease ``F = f + λ g_σ`` monotonically and every limit point is a stationary point of
  ``F``; the backtracking here enforces the decrease whatever ``L_g`` is.

**What this means for undersampled MRI.** ``f = ½‖Ax − y‖²`` with undersampled k-space is convex but
*not strongly convex*: ``A^H A`` has a null space (``μ = 0``) as soon as the coils cannot unfold the
aliasing everywhere, and always outside the coil support. Ryu's theorems then give nothing: ``Lip(I − D) < 1``
(real spectral normalisation) does **not** by itself guarantee convergence of PnP-ADMM/FBS for MRI. What
remains is (a) the firmly-non-expansive route, which needs ``Lip(2D − I) ≤ 1`` (the Jacobian penalty aims
at it; a certificate is an empirical estimate over sampled points, not a proof), (b) the gradient-step
route (a monotone objective, stationary limit points), and (c) measurement: every run records its
fixed-point residual ``‖x_{k+1} − x_k‖ / ‖x_0‖`` and stops on a tolerance, and the divergence guard of
:func:`~mrirecon.solvers.base.run` stops a run whose residual blows up. With multicoil data whose coils
make ``A^H A`` positive definite on the support (``μ > 0``, e.g. moderate acceleration), Ryu's theorems
do apply on that subspace for small enough ``ε``.
"""
from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import torch

from mrirecon.errors import ConfigError
from mrirecon.operators.linop import Linop, finite_checks
from mrirecon.solvers.base import Solver, State, batch_norm, with_state
from mrirecon.solvers.dataprox import DataProx, check_image, data_prox


@runtime_checkable
class DenoiserFn(Protocol):
    """A denoiser on complex images: ``D(x, sigma) -> x̂``, ``x`` complex ``[..., H, W]``."""

    def __call__(self, x: torch.Tensor, sigma: float | torch.Tensor | None = None) -> torch.Tensor: ...


@runtime_checkable
class GradientStepPrior(Protocol):
    """A gradient-step denoiser ``D = I − ∇g``: the potential ``g(x, sigma)`` ``[...]`` and its gradient."""

    def g(self, x: torch.Tensor, sigma: float | torch.Tensor | None = None) -> torch.Tensor: ...

    def grad_g(self, x: torch.Tensor, sigma: float | torch.Tensor | None = None,
               create_graph: bool | None = None) -> torch.Tensor: ...


def contraction_bound(method: str, alpha: float, mu: float, L: float, eps: float) -> float:
    """A proven upper bound on the Lipschitz constant of the PnP fixed-point operator (``< 1``: contraction).

    Args:
        method: ``"fbs"`` (Ryu et al. 2019, Thm 1: ``(1 + ε)·max(|1 − αμ|, |1 − αL|)``) or ``"admm"`` (the
            Douglas–Rachford operator ``P − R_f∘(I − D)``: ``1/(1 + αμ) + ε·ρ_f``, see the module docstring; the
            ADMM iterate ``x_k`` is ``P`` of the DRS variable up to an ε-perturbation, so it converges at the same rate).
        alpha: step (FBS) or prox weight (ADMM).
        mu, L: smallest and largest eigenvalues of ``A^H A``.
        eps: a bound on ``Lip(I − D)``.

    Raises:
        ConfigError: unknown method or negative arguments.
    """
    if min(alpha, mu, L, eps) < 0 or mu > L:
        raise ConfigError(f"contraction_bound: need alpha, eps >= 0 and 0 <= mu <= L, got {alpha}, {mu}, {L}, {eps}")
    if method == "fbs":
        return (1 + eps) * max(abs(1 - alpha * mu), abs(1 - alpha * L))
    if method == "admm":
        rho = max(abs(1 - alpha * mu) / (1 + alpha * mu), abs(1 - alpha * L) / (1 + alpha * L))
        return 1 / (1 + alpha * mu) + eps * rho
    raise ConfigError(f"contraction_bound: method must be 'fbs' or 'admm', got {method!r}")


class _PnPBase:
    """Shared set-up of the PnP solvers: data term, denoiser call with scaling, residual normaliser."""

    def _setup(self, A: Linop | DataProx, y: torch.Tensor | None, denoiser: Callable[..., torch.Tensor] | None,
               sigma: float | None, scale: float, cg_iters: int, cg_tol: float) -> DataProx:
        if isinstance(A, DataProx):
            data = A
        else:
            if y is None:
                raise ConfigError(f"{type(self).__name__}: give the data y with the operator {A.name}")
            data = data_prox(A, y, cg_iters=cg_iters, cg_tol=cg_tol)
        if denoiser is not None and not callable(denoiser):
            raise ConfigError(f"{type(self).__name__}: the denoiser must be callable as D(x, sigma), "
                              f"got {type(denoiser).__name__}")
        if sigma is not None and not (sigma >= 0 and math.isfinite(sigma)):
            raise ConfigError(f"{type(self).__name__}: sigma must be >= 0, got {sigma}")
        if not (scale > 0 and math.isfinite(scale)):
            raise ConfigError(f"{type(self).__name__}: scale must be positive, got {scale}")
        self.data, self.denoiser, self.sigma, self.scale = data, denoiser, sigma, float(scale)
        return data

    def denoise(self, x: torch.Tensor) -> torch.Tensor:
        """``scale · D(x / scale, σ)`` without autograd."""
        assert self.denoiser is not None
        with torch.no_grad():
            if self.scale == 1.0:
                return self.denoiser(x, self.sigma)
            return self.scale * self.denoiser(x / self.scale, self.sigma)

    def _initial(self, x0: torch.Tensor | None) -> torch.Tensor:
        if x0 is None:
            return self.data.aty.clone()
        check_image(x0, self.data.A, type(self).__name__, "x0")
        return x0.clone()

    def _reference(self, x: torch.Tensor, ndim: int) -> torch.Tensor:
        """``‖x_0‖`` per batch element (``‖A^H y‖`` where ``x_0 = 0``; 1 where both are zero)."""
        ref = batch_norm(x, ndim)
        alt = batch_norm(self.data.aty, ndim)
        alt = torch.broadcast_to(alt, ref.shape) if alt.ndim <= ref.ndim else alt
        ref = torch.where(ref > 0, ref, alt)
        return torch.where(ref > 0, ref, torch.ones_like(ref))


# ---------------------------------------------------------------------------------------------
# PnP-ADMM
# ---------------------------------------------------------------------------------------------
@dataclass
class PnPADMMState(State):
    """PnP-ADMM state: data-consistent ``x``, denoised ``z``, scaled dual ``u`` and the residual normaliser.

    Attributes:
        ref: ``‖x_0‖`` per batch element (the residual is ``‖x_{k+1} − x_k‖ / ref``).
        inner_iters: CG iterations of the last data step (0 for closed forms).
    """

    z: torch.Tensor | None = None
    u: torch.Tensor | None = None
    ref: torch.Tensor | None = None
    inner_iters: int = 0


class PnPADMM(_PnPBase, Solver[PnPADMMState]):
    """PnP-ADMM (Venkatakrishnan et al. 2013; Ryu et al. 2019) for ``½‖Ax − y‖²`` with a denoiser prior.

    One step::

        x = argmin_x ½‖Ax − y‖² + (1/2α)‖x − (z − u)‖²      (exact or warm-started CG)
        z = scale · D((x + u) / scale, σ)
        u = u + x − z

    The residual recorded by :func:`~mrirecon.solvers.base.run` is the fixed-point residual
    ``‖x_{k+1} − x_k‖ / ‖x_0‖`` (per batch element). The result is ``x`` (data-consistent; ``x = z`` at a fixed
    point). See the module docstring for the convergence guarantees.

    Args:
        A: forward operator (or a prepared :class:`~mrirecon.solvers.dataprox.DataProx`, then ``y`` is ignored).
        y: data ``[..., *A.oshape]``.
        denoiser: ``D(x, sigma)`` on complex images ``[..., H, W]``.
        sigma: the denoiser's noise level (in the denoiser's units; ``None`` for blind denoisers).
        alpha: weight ``α > 0`` of the data term in the prox (large: trust the data).
        scale: the denoiser sees ``x / scale``.
        cg_iters, cg_tol: the CG data step (when no closed form exists).
        max_iter, tol: limits used by :func:`~mrirecon.solvers.base.run`.

    Raises:
        ConfigError: non-positive ``alpha``/``scale``, negative ``sigma``, non-callable denoiser.
    """

    def __init__(self, A: Linop | DataProx, y: torch.Tensor | None, denoiser: Callable[..., torch.Tensor],
                 sigma: float | None = None, alpha: float = 1.0, scale: float = 1.0, cg_iters: int = 30,
                 cg_tol: float = 1e-6, max_iter: int = 100, tol: float = 1e-5) -> None:
        data = self._setup(A, y, denoiser, sigma, scale, cg_iters, cg_tol)
        Solver.__init__(self, max_iter, tol, data.ndim)
        if not (alpha > 0 and math.isfinite(alpha)):
            raise ConfigError(f"PnPADMM: alpha must be positive, got {alpha}")
        self.alpha = float(alpha)

    @property
    def name(self) -> str:
        return "PnP-ADMM"

    def init(self, x0: torch.Tensor | None = None) -> PnPADMMState:
        x = self._initial(x0)
        return PnPADMMState(x=x, z=x, u=torch.zeros_like(x), ref=self._reference(x, self.ndim))

    def step(self, s: PnPADMMState) -> PnPADMMState:
        assert s.z is not None and s.u is not None and s.ref is not None
        with finite_checks(False):
            x = self.data.prox(s.z - s.u, self.alpha, x0=s.x)
            w = x + s.u
            z = self.denoise(w)
            u = w - z
        res = self.norm(x - s.x) / s.ref
        return with_state(s, x=x, z=z, u=u, iteration=s.iteration + 1, residual=res, step_size=self.alpha,
                          inner_iters=self.data.last_iters)


# ---------------------------------------------------------------------------------------------
# PnP-FBS
# ---------------------------------------------------------------------------------------------
@dataclass
class PnPFBSState(State):
    """PnP-FBS state: the iterate and the residual normaliser ``ref = ‖x_0‖``."""

    ref: torch.Tensor | None = None


class PnPFBS(_PnPBase, Solver[PnPFBSState]):
    """PnP forward-backward splitting (PnP-ISTA/PGD): ``x_{k+1} = scale·D((x_k − α∇f(x_k)) / scale, σ)``.

    ``∇f(x) = A^H A x − A^H y`` uses the operator's fast normal. The residual is ``‖x_{k+1} − x_k‖ / ‖x_0‖``.
    Convergence needs ``α < 2/‖A‖²`` at least (see the module docstring); the default is ``1/‖A‖²`` when
    ``alpha`` is ``None``, with ``‖A‖²`` from :func:`~mrirecon.solvers.terms.operator_norm_bound`.

    Args:
        A, y, denoiser, sigma, scale, cg_iters, cg_tol, max_iter, tol: as :class:`PnPADMM`.
        alpha: gradient step ``α`` (``None``: ``1/‖A‖²``).

    Raises:
        ConfigError: as :class:`PnPADMM`.
    """

    def __init__(self, A: Linop | DataProx, y: torch.Tensor | None, denoiser: Callable[..., torch.Tensor],
                 sigma: float | None = None, alpha: float | None = None, scale: float = 1.0, cg_iters: int = 30,
                 cg_tol: float = 1e-6, max_iter: int = 100, tol: float = 1e-5) -> None:
        data = self._setup(A, y, denoiser, sigma, scale, cg_iters, cg_tol)
        Solver.__init__(self, max_iter, tol, data.ndim)
        if alpha is None:
            from mrirecon.solvers.terms import operator_norm_bound

            alpha = 1.0 / operator_norm_bound(data.A)
        if not (alpha > 0 and math.isfinite(alpha)):
            raise ConfigError(f"PnPFBS: alpha must be positive, got {alpha}")
        self.alpha = float(alpha)

    @property
    def name(self) -> str:
        return "PnP-FBS"

    def init(self, x0: torch.Tensor | None = None) -> PnPFBSState:
        x = self._initial(x0)
        return PnPFBSState(x=x, ref=self._reference(x, self.ndim))

    def step(self, s: PnPFBSState) -> PnPFBSState:
        assert s.ref is not None
        with finite_checks(False):
            x = self.denoise(s.x - self.alpha * self.data.grad(s.x))
        res = self.norm(x - s.x) / s.ref
        return with_state(s, x=x, iteration=s.iteration + 1, residual=res, step_size=self.alpha)


# ---------------------------------------------------------------------------------------------
# gradient-step PnP
# ---------------------------------------------------------------------------------------------
@dataclass
class GSPnPState(State):
    """Gradient-step PnP state.

    Attributes:
        f, g: ``½‖Ax − y‖²`` and ``g_σ(x)`` at ``x`` (summed over the batch, in the solver's units).
        grad_g: ``∇g_σ(x)``.
        tau: the step that the next iteration tries first.
        ref: ``‖x_0‖`` per batch element.
        backtracks: step reductions of the last iteration.
        stalled: the line search found no decrease down to ``min_step`` (``x`` is stationary up to precision).
    """

    f: float = math.nan
    g: float = math.nan
    grad_g: torch.Tensor | None = None
    tau: float = 1.0
    ref: torch.Tensor | None = None
    backtracks: int = 0
    stalled: bool = False


class GradientStepPnP(_PnPBase, Solver[GSPnPState]):
    """Gradient-step PnP (Hurault et al. 2022): proximal gradient on ``F(x) = ½‖Ax − y‖² + λ g_σ(x)``.

    With ``g_σ`` the potential of a gradient-step denoiser ``D_σ = I − ∇g_σ`` (evaluated on ``x / scale``;
    ``g`` is then ``scale² g_σ(x / scale)`` so that ``∇g = scale ∇g_σ(x / scale)``, i.e. ``D`` acts in the
    denoiser's units). One step, with ``τ`` in the units of the denoiser step (``τ = 1``: ``x − τ∇g = D(x)``)::

        x⁺ = prox_{(τ/λ) f}(x − τ ∇g(x))            (exact or CG data step)
        accept if F(x) − F(x⁺) ≥ (γ/τ)·λ‖x − x⁺‖²   else τ ← η τ and retry

    (Hurault et al.'s Armijo rule for ``F/λ``). ``F`` is therefore non-increasing along the iterates; the
    accepted step starts the next iteration. The residual is ``‖x_{k+1} − x_k‖ / ‖x_0‖``, the objective
    :meth:`objective` is ``F`` (summed over the batch: one step size serves the whole batch).

    Args:
        A, y: forward operator and data (as :class:`PnPADMM`).
        prior: a gradient-step denoiser (``g(x, sigma)``, ``grad_g(x, sigma)``).
        sigma: its noise level.
        lam: weight ``λ > 0`` of ``g``.
        step: initial ``τ`` (Hurault et al.: 1, i.e. ``x⁺ = prox(D(x))`` when no backtracking happens).
        gamma: sufficient-decrease constant ``γ ∈ (0, 1/2)``.
        eta: step reduction factor ``η ∈ (0, 1)``.
        min_step: give up backtracking below this ``τ`` (the state is marked ``stalled``).
        scale, cg_iters, cg_tol, max_iter, tol: as :class:`PnPADMM`.

    Raises:
        ConfigError: a prior without ``g``/``grad_g``, or parameters out of range.
    """

    def __init__(self, A: Linop | DataProx, y: torch.Tensor | None, prior: GradientStepPrior,
                 sigma: float | None = None, lam: float = 1.0, step: float = 1.0, gamma: float = 0.1,
                 eta: float = 0.5, min_step: float = 1e-6, scale: float = 1.0, cg_iters: int = 50,
                 cg_tol: float = 1e-8, max_iter: int = 100, tol: float = 1e-5) -> None:
        data = self._setup(A, y, None, sigma, scale, cg_iters, cg_tol)
        Solver.__init__(self, max_iter, tol, data.ndim)
        if not isinstance(prior, GradientStepPrior):
            raise ConfigError(f"GradientStepPnP: the prior must have g(x, sigma) and grad_g(x, sigma) "
                              f"(a gradient-step denoiser), got {type(prior).__name__}")
        for name, v, ok in (("lam", lam, lam > 0), ("step", step, step > 0), ("gamma", gamma, 0 < gamma < 0.5),
                            ("eta", eta, 0 < eta < 1), ("min_step", min_step, 0 < min_step <= step)):
            if not (ok and math.isfinite(v)):
                raise ConfigError(f"GradientStepPnP: {name} = {v} is out of range")
        self.prior = prior
        self.lam, self.step0, self.gamma, self.eta, self.min_step = float(lam), float(step), gamma, eta, min_step

    @property
    def name(self) -> str:
        return "GS-PnP"

    def potential(self, x: torch.Tensor, with_grad: bool) -> tuple[float, torch.Tensor | None]:
        """``g(x) = scale² g_σ(x / scale)`` summed over the batch, and (optionally) ``∇g(x)``."""
        s = self.scale
        if not with_grad:
            with torch.no_grad():
                return float(self.prior.g(x / s, self.sigma).sum()) * s * s, None
        with torch.enable_grad():
            xr = (x / s).detach().requires_grad_(True)
            val = self.prior.g(xr, self.sigma).sum()
            (grad,) = torch.autograd.grad(val, xr)
        return float(val.detach()) * s * s, grad.detach() * s

    def init(self, x0: torch.Tensor | None = None) -> GSPnPState:
        x = self._initial(x0)
        g, grad = self.potential(x, True)
        return GSPnPState(x=x, f=float(self.data(x).sum()), g=g, grad_g=grad, tau=self.step0,
                          ref=self._reference(x, self.ndim))

    def step(self, s: GSPnPState) -> GSPnPState:
        assert s.grad_g is not None and s.ref is not None
        F0 = s.f + self.lam * s.g
        tau, backtracks = s.tau, 0
        while True:
            with finite_checks(False):
                xn = self.data.prox(s.x - tau * s.grad_g, tau / self.lam, x0=s.x)
            fn = float(self.data(xn).sum())
            gn, grad = self.potential(xn, True)
            Fn = fn + self.lam * gn
            step_norm = self.norm(s.x - xn)
            d2 = float(step_norm.pow(2).sum())
            if math.isfinite(Fn) and F0 - Fn >= (self.gamma / tau) * self.lam * d2:
                break
            if not math.isfinite(Fn) and not math.isfinite(F0):
                break  # nothing to compare with: let the divergence guard see it
            tau *= self.eta
            backtracks += 1
            if tau < self.min_step:
                return with_state(s, iteration=s.iteration + 1, residual=torch.zeros_like(s.ref), step_size=tau,
                                  backtracks=backtracks, stalled=True)
        res = step_norm / s.ref
        return with_state(s, x=xn, f=fn, g=gn, grad_g=grad, tau=tau, iteration=s.iteration + 1, residual=res,
                          step_size=tau, backtracks=backtracks)

    def objective(self, s: GSPnPState) -> torch.Tensor:
        """``F(x) = ½‖Ax − y‖² + λ g(x)`` (summed over the batch; the values kept in the state)."""
        return torch.tensor(s.f + self.lam * s.g, dtype=torch.float64)

"""Deep-equilibrium (fixed-point) layers and the iterations they wrap, for ``½‖Ax − y‖²`` plus a learned prior.

A *fixed-point layer* returns ``x* = T_θ(x*; y, A)`` for an iteration ``T_θ`` and makes it differentiable
with respect to everything ``T_θ`` depends on (network weights, learned step sizes, the data):

* **forward** — :func:`solve_fixed_point`: Anderson acceleration with plain iteration as the safeguarded
  fall-back, Willingham et al.'s stopping rules (iteration limit, divergence guard on any entry above a
  bound, step tolerance); see :mod:`mrirecon.solvers.anderson`. It runs without autograd through the
  :func:`~mrirecon.solvers.base.run` loop and returns a :class:`FixedPointReport` (per batch element:
  iterations, residual, converged, diverged) with the run's :class:`~mrirecon.solvers.base.History`;
* **backward** — :class:`FixedPointLayer`:

  - ``"implicit"``: implicit differentiation (Bai et al. 2019). At ``x* = T(x*)`` the gradient of a loss
    ``ℓ(x*)`` is ``(∂T/∂θ)ᵀ u`` with ``u`` the fixed point of the adjoint iteration ``u = J_Tᵀ u + g``,
    ``g = ∇ℓ(x*)`` and ``J_T = ∂T/∂x`` at ``x*``. ``u`` is found with the same safeguarded Anderson solver,
    from ``u_0 = g``, using vector-Jacobian products of a retained graph of ``T(x*)`` (a backward hook on
    the layer's output); an element whose adjoint iteration diverges falls back to ``u = g``
    (Jacobian-free) and is counted in the backward report;
  - ``"jfb"``: Jacobian-free backpropagation (Fung et al. 2022): ``u = g``, i.e. the gradient of one
    application of ``T`` at the (detached) fixed point. It is a descent direction when ``T`` is
    contractive enough.

  In both cases the layer's output is ``T(x*)`` evaluated once more with autograd on.

The iterations (images ``x`` complex ``[B, *A.ishape]``; ``f(x) = ½‖Ax − y‖²``, ``∇f = A^H(Ax − y)``):

Each iteration's output is restricted to the coil maps' support for SENSE operators (:class:`DataTerm`).

* :class:`GradientStepMap` — gradient descent with a learned regularising gradient (PnP-ReG, Fermanian
  et al. 2023; Willingham et al. 2024): ``T(x) = x − η(∇f(x) + λ·R(x))`` with ``R(x) = σ²G_θ(x)``;
* :class:`ForwardBackwardMap` — PnP-FBS: ``T(x) = D(x − η∇f(x))``;
* :class:`ADMMMap` — PnP-ADMM on the stacked state ``s = (z, u)``: ``x = prox_{αf}(z − u)``,
  ``z⁺ = D(x + u)``, ``u⁺ = u + x − z⁺``; the output is ``prox_{αf}(z* − u*)``.

``prox_{αf}(v) = (A^H A + I/α)^{-1}(A^H y + v/α)`` is computed by ``cg_iters`` conjugate-gradient steps from
``v`` (a fixed number, so ``T`` is a fixed differentiable function). This module sits below
:mod:`mrirecon.denoisers`: priors are callables on complex images.
"""
from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import torch

from mrirecon.errors import ConfigError
from mrirecon.operators.linop import Linop
from mrirecon.operators.sense import Sense
from mrirecon.solvers.anderson import FixedPointConfig, FixedPointMap, FixedPointSolver
from mrirecon.solvers.base import History, run
from mrirecon.solvers.cg import ConjugateGradient
from mrirecon.solvers.dataprox import DataProx

Backward = Literal["implicit", "jfb"]
Scalar = float | torch.Tensor


# ---------------------------------------------------------------------------------------------
# forward solve
# ---------------------------------------------------------------------------------------------
@dataclass
class FixedPointReport:
    """What a fixed-point solve did, per batch element.

    Attributes:
        iterations: evaluations of ``T`` per element ``[B]`` (long).
        residual: final residual per element ``[B]`` (``inf`` for diverged elements).
        converged: ``[B]`` bool (residual ≤ tol).
        diverged: ``[B]`` bool (the divergence guard stopped the element).
        restarts: safeguard fall-backs to plain iteration (all elements).
        history: the :func:`~mrirecon.solvers.base.run` history (residual = max over running elements).
        seconds: wall time of the solve.
    """

    iterations: torch.Tensor
    residual: torch.Tensor
    converged: torch.Tensor
    diverged: torch.Tensor
    restarts: int = 0
    history: History = field(default_factory=History)
    seconds: float = 0.0

    def summary(self, prefix: str = "") -> dict[str, float]:
        """Scalars for a logger: mean/max iterations, max residual, counts of non-converged and diverged elements."""
        it = self.iterations.double()
        finite = self.residual[torch.isfinite(self.residual)]
        return {f"{prefix}iters": float(it.mean()), f"{prefix}iters_max": float(it.max()),
                f"{prefix}residual": float(finite.max()) if finite.numel() else float("inf"),
                f"{prefix}nonconverged": float((~self.converged).sum()), f"{prefix}diverged": float(self.diverged.sum()),
                f"{prefix}restarts": float(self.restarts)}


def solve_fixed_point(T: FixedPointMap, x0: torch.Tensor, config: FixedPointConfig | None = None,
                      progress: bool = False) -> tuple[torch.Tensor, FixedPointReport]:
    """Find ``x = T(x)`` from ``x0`` without autograd (see :mod:`mrirecon.solvers.anderson` for the rules).

    Args:
        T: the map ``[B, ...] -> [B, ...]``, independent per batch element.
        x0: the start ``[B, ...]`` (not modified).
        config: solver settings (default :class:`FixedPointConfig`).
        progress: show a progress bar.

    Returns:
        ``(out, report)``: per element the latest ``T(x_k)`` (its best in-bound evaluation if it diverged —
        never NaN or Inf) and the :class:`FixedPointReport`.

    Raises:
        NonFiniteError: ``x0`` holds NaN or Inf.
    """
    cfg = config or FixedPointConfig()
    solver = FixedPointSolver(T, cfg)
    t0 = time.perf_counter()
    with torch.no_grad():
        out, hist = run(solver, x0, progress=progress, divergence_factor=float("inf"), raise_on_divergence=False)
    st = solver.final
    assert st is not None and st.iters is not None and st.res is not None
    assert st.converged is not None and st.diverged is not None
    res = torch.where(st.diverged, torch.full_like(st.res, float("inf")), st.res)
    if bool(st.diverged.any()):
        hist.stop_reason = "diverged"
    hist.converged = bool(st.converged.all())
    if hist.converged:
        hist.stop_reason = "tol"
    report = FixedPointReport(iterations=st.iters.clone(), residual=res, converged=st.converged.clone(),
                              diverged=st.diverged.clone(), restarts=st.restarts, history=hist,
                              seconds=time.perf_counter() - t0)
    return out, report


# ---------------------------------------------------------------------------------------------
# the layer
# ---------------------------------------------------------------------------------------------
@dataclass
class DEQReport:
    """Reports of a layer call: the forward solve and (filled in during ``backward()``) the adjoint solve."""

    forward: FixedPointReport
    backward: FixedPointReport | None = None

    def summary(self) -> dict[str, float]:
        """``fwd/...`` and ``bwd/...`` scalars (see :meth:`FixedPointReport.summary`)."""
        out = self.forward.summary("fwd/")
        if self.backward is not None:
            out.update(self.backward.summary("bwd/"))
        return out


class FixedPointLayer:
    """``x* = T(x*)`` as a differentiable layer (forward: Anderson; backward: implicit or Jacobian-free).

    Args:
        forward: settings of the forward solve.
        backward: settings of the adjoint solve (implicit differentiation only; default: those of ``forward``).
        method: ``"implicit"`` or ``"jfb"`` (see the module docstring).

    Raises:
        ConfigError: unknown ``method``.
    """

    def __init__(self, forward: FixedPointConfig | None = None, backward: FixedPointConfig | None = None,
                 method: Backward = "implicit") -> None:
        if method not in ("implicit", "jfb"):
            raise ConfigError(f"FixedPointLayer: method must be 'implicit' or 'jfb', got {method!r}")
        self.forward = forward or FixedPointConfig()
        self.backward = backward or self.forward
        self.method = method

    def __call__(self, T: FixedPointMap, x0: torch.Tensor, progress: bool = False
                 ) -> tuple[torch.Tensor, DEQReport]:
        """Solve and attach the gradient.

        Args:
            T: the iteration (a differentiable map ``[B, ...] -> [B, ...]``).
            x0: the start (detached inside).

        Returns:
            ``(T(x*), report)``; ``report.backward`` is filled when the implicit backward runs.
        """
        z, fwd = solve_fixed_point(T, x0.detach(), self.forward, progress=progress)
        report = DEQReport(fwd)
        if not torch.is_grad_enabled():
            return z, report
        if self.method == "jfb":
            return T(z.detach()), report
        zs = z.detach().requires_grad_(True)
        out = T(zs)
        if not out.requires_grad:
            return out, report
        z0 = z.detach().requires_grad_(True)
        f0 = T(z0)
        handle: Any = None

        def hook(grad: torch.Tensor) -> torch.Tensor:
            handle.remove()

            def adjoint(u: torch.Tensor) -> torch.Tensor:
                (v,) = torch.autograd.grad(f0, z0, u, retain_graph=True)
                return v + grad

            u, rep = solve_fixed_point(adjoint, grad, self.backward)
            report.backward = rep
            return torch.where(rep.diverged.reshape(-1, *([1] * (grad.ndim - 1))), grad, u)

        handle = out.register_hook(hook)
        return out, report


# ---------------------------------------------------------------------------------------------
# data term and the iterations
# ---------------------------------------------------------------------------------------------
class DataTerm(DataProx):
    """``f(x) = ½‖Ax − y‖²`` with a *differentiable* proximal map (a fixed number of CG steps).

    The :class:`~mrirecon.solvers.dataprox.DataProx` interface (``aty``, ``normal``, ``grad``, ``prox``)
    for trainable iterations: :meth:`prox` runs exactly ``cg_iters`` CG steps (no tolerance test, so
    no host sync) and accepts a tensor ``α``, so gradients flow to ``v``, ``α`` and ``y``.

    **Support.** For SENSE operators the image is restricted to the support of the coil maps (the pixels
    where ``Σ_c |S_c|² > 0``; ESPIRiT maps are zero outside the object): pixels outside are seen by no
    coil, so ``f`` says nothing about them and an iteration there would be driven by the prior alone
    (and, for a learned prior, need not converge). The iterations below apply :meth:`project` (zero
    outside the support) to their output; for other operators it is the identity.

    Args:
        A: forward operator (images ``[B, *A.ishape]`` to data ``[B, *A.oshape]``).
        y: data ``[B, *A.oshape]``.
        cg_iters: conjugate-gradient steps of :meth:`prox`.
        restrict_support: restrict images to the coil maps' support (SENSE operators only).
    """

    kind = "cg-fixed"
    exact = False

    def __init__(self, A: Linop, y: torch.Tensor, cg_iters: int = 10, restrict_support: bool = True) -> None:
        if cg_iters < 1:
            raise ConfigError(f"DataTerm: cg_iters must be >= 1, got {cg_iters}")
        super().__init__(A, y)
        self.cg_iters = int(cg_iters)
        self.support: torch.Tensor | None = None
        if restrict_support and isinstance(A, Sense):
            inside = A.coil_support()
            if inside is not None:
                self.support = inside.to(y.real.dtype)

    def project(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` with the pixels outside the support set to zero (``x`` itself when there is no support)."""
        return x if self.support is None else x * self.support

    def prox(self, v: torch.Tensor, alpha: Scalar, x0: torch.Tensor | None = None) -> torch.Tensor:
        """``argmin_x ½‖Ax − y‖² + (1/2α)‖x − v‖²`` by ``cg_iters`` CG steps from ``x0`` (default ``v``)."""
        inv = 1.0 / alpha
        rhs = self.aty + inv * v

        def op(x: torch.Tensor) -> torch.Tensor:
            return self.normal(x) + inv * x

        cg = ConjugateGradient(op, rhs, ndim=self.ndim, max_iter=self.cg_iters)
        state = cg.init(v if x0 is None else x0)
        for _ in range(self.cg_iters):
            state = cg.step(state)
        self.last_iters = self.cg_iters
        return state.x

    def ls_init(self, iters: int) -> torch.Tensor:
        """A least-squares start: ``iters`` CG steps on ``A^H A x = A^H y`` from zero (early stopping regularises)."""
        cg = ConjugateGradient(self.normal, self.aty, ndim=self.ndim, max_iter=iters)
        state = cg.init(None)
        for _ in range(iters):
            state = cg.step(state)
        return state.x


Prior = Callable[[torch.Tensor], torch.Tensor]


class IterationMap:
    """An iteration ``s ↦ T(s)`` on a state tensor ``[B, ...]``, with the start and the read-out of the image."""

    def __init__(self, data: DataTerm) -> None:
        self.data = data

    def init(self, x0: torch.Tensor) -> torch.Tensor:
        """The state for a start image ``x0`` ``[B, *ishape]``."""
        return x0

    def __call__(self, s: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def output(self, s: torch.Tensor) -> torch.Tensor:
        """The image carried by a state."""
        return s

    @property
    def image_state(self) -> bool:
        """Whether the state is the image itself (then ``T(x) − x`` at a ground-truth image is defined)."""
        return True


class GradientStepMap(IterationMap):
    """Gradient descent with a regularising gradient: ``T(x) = x − η(∇f(x) + λ·R(x))``, ``R = σ²G_θ``.

    The fixed points solve ``∇f(x) + λR(x) = 0`` (a stationary point of ``f + λr`` when ``R = ∇r``).

    Args:
        data: the data term.
        reg: ``R(x) = σ²G_θ(x)`` on complex images ``[B, *ishape]``.
        step: ``η > 0``.  lam: ``λ ≥ 0``.
    """

    def __init__(self, data: DataTerm, reg: Prior, step: Scalar, lam: Scalar) -> None:
        super().__init__(data)
        self.reg, self.step, self.lam = reg, step, lam

    def direction(self, x: torch.Tensor) -> torch.Tensor:
        """``∇f(x) + λR(x)``."""
        return self.data.grad(x) + self.lam * self.reg(x)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return self.data.project(x - self.step * self.direction(x))


class ForwardBackwardMap(IterationMap):
    """PnP forward-backward splitting: ``T(x) = D(x − η∇f(x))``.

    Args:
        data: the data term.  denoiser: ``D`` on complex images.  step: ``η > 0``.
    """

    def __init__(self, data: DataTerm, denoiser: Prior, step: Scalar) -> None:
        super().__init__(data)
        self.denoiser, self.step = denoiser, step

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return self.data.project(self.denoiser(x - self.step * self.data.grad(x)))


class ADMMMap(IterationMap):
    """PnP-ADMM on the stacked state ``s = (z, u)`` ``[B, 2, *ishape]``.

    ``x = prox_{αf}(z − u)``, ``z⁺ = D(x + u)``, ``u⁺ = u + x − z⁺``; the image read out is ``prox_{αf}(z − u)``.

    Args:
        data: the data term (its ``cg_iters`` CG steps per prox).  denoiser: ``D``.  alpha: ``α > 0``.
    """

    def __init__(self, data: DataTerm, denoiser: Prior, alpha: Scalar) -> None:
        super().__init__(data)
        self.denoiser, self.alpha = denoiser, alpha

    @property
    def image_state(self) -> bool:
        return False

    def init(self, x0: torch.Tensor) -> torch.Tensor:
        return torch.stack((x0, torch.zeros_like(x0)), dim=1)

    def __call__(self, s: torch.Tensor) -> torch.Tensor:
        z, u = s[:, 0], s[:, 1]
        x = self.data.prox(z - u, self.alpha)
        w = x + u
        z_new = self.data.project(self.denoiser(w))
        return torch.stack((z_new, self.data.project(w - z_new)), dim=1)

    def output(self, s: torch.Tensor) -> torch.Tensor:
        return self.data.prox(s[:, 0] - s[:, 1], self.alpha)


__all__ = ["ADMMMap", "DEQReport", "DataTerm", "FixedPointConfig", "FixedPointLayer", "FixedPointReport",
           "FixedPointSolver", "ForwardBackwardMap", "GradientStepMap", "IterationMap", "solve_fixed_point"]

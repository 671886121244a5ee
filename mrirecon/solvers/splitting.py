"""Splitting methods for ``min_x ½‖Ax - y‖² + Σ_i φ_i(K_i x)``: ADMM (inner CG) and PDHG (Chambolle-Pock)."""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from mrirecon.errors import ConfigError
from mrirecon.operators.linop import finite_checks
from mrirecon.solvers.base import Solver, State, with_state
from mrirecon.solvers.cg import ConjugateGradient
from mrirecon.solvers.power import power_iteration
from mrirecon.solvers.terms import L2Data, Term


def _check_split_terms(who: str, terms: Sequence[Term]) -> list[Term]:
    out = list(terms)
    for t in out:
        if t.linop is None:
            raise ConfigError(f"{who}: term {t.name} is not of the form φ(Kx) (it has no linop/prox_phi)")
    return out


@dataclass
class ADMMState(State):
    """ADMM state: ``x``, the split variables ``z_i ≈ K_i x`` and the scaled duals ``u_i``."""

    z: tuple[torch.Tensor, ...] = ()
    u: tuple[torch.Tensor, ...] = ()


class ADMM(Solver[ADMMState]):
    """ADMM for ``min_x ½‖Ax - y‖² + Σ_i φ_i(K_i x)`` with the splitting ``z_i = K_i x`` (scaled form).

    One step::

        x   = argmin ½‖Ax - y‖² + (ρ/2) Σ ‖K_i x - z_i + u_i‖²   (warm-started CG, ``cg_iters`` steps)
        h_i = α K_i x + (1 - α) z_i                          (over-relaxation, α ∈ (0, 2))
        z_i = prox_{φ_i/ρ}(h_i + u_i)
        u_i = u_i + h_i - z_i

    as in BART's ``pics`` ADMM (``-m``; BART's defaults: ρ = 0.5, 10 CG iterations, α = 1.6). The residual
    recorded by :func:`run` is the relative change of ``x``; :attr:`primal_residual` of the state
    is not tracked separately.

    Args:
        data: the data term ``½‖Ax - y‖²``.
        terms: terms ``φ_i(K_i x)`` (each with ``linop`` and ``prox_phi``).
        rho: penalty parameter ρ > 0.
        cg_iters: CG iterations of the x-update.
        alpha: over-relaxation α (1: plain ADMM).
        max_iter, tol: limits used by :func:`run`.
    """

    def __init__(self, data: L2Data, terms: Sequence[Term], rho: float = 0.5, cg_iters: int = 10,
                 alpha: float = 1.0, max_iter: int = 50, tol: float = 0.0) -> None:
        super().__init__(max_iter, tol, data.ndim)
        if not rho > 0:
            raise ConfigError(f"ADMM: rho must be > 0, got {rho}")
        if not 0 < alpha < 2:
            raise ConfigError(f"ADMM: alpha must be in (0, 2), got {alpha}")
        self.alpha = float(alpha)
        self.data, self.terms = data, _check_split_terms("ADMM", terms)
        self.rho, self.cg_iters = float(rho), int(cg_iters)

    def _lhs(self, x: torch.Tensor) -> torch.Tensor:
        out = self.data.normal._apply(x)
        for t in self.terms:
            K = t.linop
            assert K is not None
            out = out + self.rho * K._adjoint(K._apply(x))
        return out

    def init(self, x0: torch.Tensor | None = None) -> ADMMState:
        x = torch.zeros_like(self.data.aty) if x0 is None else x0.clone()
        with finite_checks(False):
            z = tuple(t.linop._apply(x) for t in self.terms)  # type: ignore[union-attr]
        u = tuple(torch.zeros_like(zi) for zi in z)
        return ADMMState(x=x, z=z, u=u)

    def step(self, s: ADMMState) -> ADMMState:
        with finite_checks(False):
            rhs = self.data.aty
            for t, zi, ui in zip(self.terms, s.z, s.u):
                rhs = rhs + self.rho * t.linop._adjoint(zi - ui)  # type: ignore[union-attr]
            cg = ConjugateGradient(self._lhs, rhs, ndim=self.ndim, max_iter=self.cg_iters)
            state = cg.init(s.x)
            for _ in range(self.cg_iters):
                state = cg.step(state)
            x = state.x
            z, u = [], []
            for t, zi_old, ui in zip(self.terms, s.z, s.u):
                kx = t.linop._apply(x)  # type: ignore[union-attr]
                if self.alpha != 1.0:
                    kx = self.alpha * kx + (1 - self.alpha) * zi_old
                zi = t.prox_phi(kx + ui, 1.0 / self.rho)
                z.append(zi)
                u.append(ui + kx - zi)
        return with_state(s, x=x, z=tuple(z), u=tuple(u), iteration=s.iteration + 1,
                          residual=self.relative_change(x, s.x), step_size=self.rho)

    def objective(self, s: ADMMState) -> torch.Tensor:
        with finite_checks(False):
            out = self.data(s.x)
            for t in self.terms:
                out = out + t(s.x)
        return out


@dataclass
class PDHGState(State):
    """PDHG state: primal ``x``, extrapolated ``x_bar`` and one dual variable per term."""

    x_bar: torch.Tensor | None = None
    duals: tuple[torch.Tensor, ...] = ()


class PDHG(Solver[PDHGState]):
    """Primal-dual hybrid gradient (Chambolle-Pock) for ``min_x g(x) + Σ_i φ_i(K_i x)``.

    Every term enters through its operator and the prox of ``φ_i^*`` (Moreau's identity on
    ``prox_phi``); :class:`~mrirecon.solvers.terms.L2Data` is such a term (``K = A``,
    ``φ(z) = ½‖z - y‖²``), so no inner solve is needed. ``g`` (optional) is a term with a prox on
    ``x`` itself. One step::

        d_i   = prox_{σ φ_i^*}(d_i + σ K_i x̄)
        x_new = prox_{τ g}(x - τ Σ_i K_i^H d_i)
        x̄     = x_new + θ (x_new - x)

    Step sizes satisfy ``στ‖K‖² < 1`` with ``‖K‖² = ‖Σ K_i^H K_i‖`` estimated by power iteration
    (``sigma = tau = 0.99 / ‖K‖`` by default). The residual is the relative change of ``x``.

    Args:
        terms: terms ``φ_i(K_i x)``.
        g: optional term on ``x`` with a prox (e.g. a constraint or :class:`~mrirecon.solvers.terms.Tikhonov`).
        sigma, tau: dual and primal step sizes (``None``: from the operator norm).
        theta: extrapolation parameter (1 is the classical choice).
        shape: image shape (default that of the first term's linop input).
        max_iter, tol: limits used by :func:`run`.
        seed: seed of the power iteration's start vector.
    """

    def __init__(self, terms: Sequence[Term], g: Term | None = None, sigma: float | None = None,
                 tau: float | None = None, theta: float = 1.0, max_iter: int = 100, tol: float = 0.0,
                 seed: int = 0) -> None:
        self.terms = _check_split_terms("PDHG", terms)
        if not self.terms:
            raise ConfigError("PDHG: needs at least one term φ(Kx)")
        shape = self.terms[0].linop.ishape  # type: ignore[union-attr]
        super().__init__(max_iter, tol, len(shape))
        self.g, self.theta, self.seed = g, float(theta), seed
        self.norm_K2: float | None = None
        if sigma is None or tau is None:
            def KhK(x: torch.Tensor) -> torch.Tensor:
                out = None
                for t in self.terms:
                    K = t.linop
                    v = K._adjoint(K._apply(x))  # type: ignore[union-attr]
                    out = v if out is None else out + v
                return out  # type: ignore[return-value]

            ref = self._reference()
            lam, _ = power_iteration(KhK, shape, iters=50, tol=1e-5, seed=seed,
                                     dtype=ref.dtype, device=ref.device)
            self.norm_K2 = float(lam) * 1.02
            step = 0.99 / math.sqrt(self.norm_K2)
            sigma = step if sigma is None else sigma
            tau = step if tau is None else tau
        self.sigma, self.tau = float(sigma), float(tau)

    def _reference(self) -> torch.Tensor:
        for t in self.terms:
            if isinstance(t, L2Data):
                return t.aty
        return torch.zeros(self.terms[0].linop.ishape, dtype=torch.complex64)  # type: ignore[union-attr]

    def init(self, x0: torch.Tensor | None = None) -> PDHGState:
        ref = self._reference()
        x = torch.zeros_like(ref) if x0 is None else x0.clone()
        with finite_checks(False):
            duals = tuple(torch.zeros_like(t.linop._apply(x)) for t in self.terms)  # type: ignore[union-attr]
        return PDHGState(x=x, x_bar=x, duals=duals)

    def step(self, s: PDHGState) -> PDHGState:
        assert s.x_bar is not None
        with finite_checks(False):
            duals = []
            grad = None
            for t, d in zip(self.terms, s.duals):
                K = t.linop
                dn = t.prox_phi_conj(d + self.sigma * K._apply(s.x_bar), self.sigma)  # type: ignore[union-attr]
                duals.append(dn)
                kh = K._adjoint(dn)  # type: ignore[union-attr]
                grad = kh if grad is None else grad + kh
            x = s.x - self.tau * grad
            if self.g is not None:
                x = self.g.prox(x, self.tau)
            x_bar = x + self.theta * (x - s.x)
        return with_state(s, x=x, x_bar=x_bar, duals=tuple(duals), iteration=s.iteration + 1,
                          residual=self.relative_change(x, s.x), step_size=self.tau)

    def objective(self, s: PDHGState) -> torch.Tensor:
        with finite_checks(False):
            out = None
            for t in self.terms:
                v = t.phi(t.linop._apply(s.x))  # type: ignore[union-attr]
                out = v if out is None else out + v
            if self.g is not None:
                out = out + self.g(s.x)
        return out  # type: ignore[return-value]

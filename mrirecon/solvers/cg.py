"""Conjugate gradients for Hermitian positive (semi-)definite systems, batched."""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from mrirecon.operators.linop import Linop, finite_checks
from mrirecon.solvers.base import Solver, State, with_state


@dataclass
class CGState(State):
    """CG state: iterate ``x``, residual ``r = b - Mx``, search direction ``p``, ``rr = <r, r>`` per batch."""

    r: torch.Tensor | None = None
    p: torch.Tensor | None = None
    rr: torch.Tensor | None = None


class ConjugateGradient(Solver[CGState]):
    """Solve ``(M + lam·I) x = b`` for Hermitian PSD ``M`` by conjugate gradients (one system per batch element).

    For SENSE with Tikhonov regularisation, ``M = A^H A`` and ``b = A^H y`` (the normal equations of
    ``½‖Ax - y‖² + (λ/2)‖x‖²``, BART's ``pics -l2 -r λ``). The residual recorded by :func:`run` is
    ``‖b - (M + λI)x‖ / ‖b‖``; a batch element whose residual reached working precision (``‖r‖ ≤ eps·‖b‖``)
    stays put.

    Args:
        normal: ``M`` (a :class:`Linop`, e.g. ``A.N``, or a callable on ``[..., *shape]``).
        rhs: ``b``, complex ``[..., *shape]`` (not modified).
        lam: Tikhonov weight added to the diagonal.
        ndim: number of trailing dims of one problem (default ``len(normal.ishape)``).
        max_iter, tol: limits used by :func:`run`.
    """

    def __init__(self, normal: Linop | Callable[[torch.Tensor], torch.Tensor], rhs: torch.Tensor, lam: float = 0.0,
                 ndim: int | None = None, max_iter: int = 30, tol: float = 0.0) -> None:
        if ndim is None:
            if not isinstance(normal, Linop):
                raise ValueError("ConjugateGradient: give ndim when `normal` is not a Linop")
            ndim = len(normal.ishape)
        super().__init__(max_iter, tol, ndim)
        self._normal = normal._apply if isinstance(normal, Linop) else normal
        self.rhs = rhs
        self.lam = float(lam)
        self._bnorm = self.norm(rhs)
        # Converged to working precision: ``‖r‖ ≤ eps·‖b‖`` stops the element. Further steps change nothing in
        # value, but their ratios of underflowing ``<r, r>``/``<p, Mp>`` give NaN gradients through a fixed
        # number of differentiable steps (the DEQ data prox).
        eps = torch.finfo(rhs.real.dtype).eps
        self._floor = (eps * self._bnorm.detach()).square()

    def apply(self, x: torch.Tensor) -> torch.Tensor:
        """``(M + lam I) x``."""
        with finite_checks(False):
            out = self._normal(x)
        return out + self.lam * x if self.lam else out

    def init(self, x0: torch.Tensor | None = None) -> CGState:
        if x0 is None:
            x = torch.zeros_like(self.rhs)
            r = self.rhs.clone()
        else:
            x = x0.clone()
            r = self.rhs - self.apply(x)
        rr = self.dot(r, r)
        return CGState(x=x, r=r, p=r, rr=rr, residual=torch.sqrt(rr) / self._bnorm.clamp_min(1e-30))

    def step(self, s: CGState) -> CGState:
        assert s.p is not None and s.r is not None and s.rr is not None
        Ap = self.apply(s.p)
        pAp = self.dot(s.p, Ap)
        active = (s.rr > self._floor) & (pAp > 0)
        alpha = torch.where(active, s.rr / torch.where(active, pAp, torch.ones_like(pAp)), torch.zeros_like(pAp))
        a = self.batch_scalar(alpha).to(s.x.dtype)
        x = s.x + a * s.p
        r = s.r - a * Ap
        rr = self.dot(r, r)
        beta = torch.where(active, rr / torch.where(active, s.rr, torch.ones_like(s.rr)), torch.zeros_like(rr))
        p = r + self.batch_scalar(beta).to(s.x.dtype) * s.p
        res = torch.sqrt(rr) / self._bnorm.clamp_min(1e-30)
        return with_state(s, x=x, r=r, p=p, rr=rr, iteration=s.iteration + 1, residual=res,
                          step_size=float(alpha.detach().max()) if alpha.numel() else 0.0)

    def objective(self, s: CGState) -> torch.Tensor:
        """``½<x, (M + λI)x> - Re<b, x>`` (the quadratic CG minimises)."""
        return 0.5 * self.dot(s.x, self.apply(s.x)) - self.dot(self.rhs, s.x)

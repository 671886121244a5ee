"""Proximal gradient methods: ISTA and FISTA for ``min_x f(x) + g(x)`` (``f`` smooth, ``g`` with a prox)."""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from mrirecon.errors import ConfigError
from mrirecon.operators.linop import finite_checks
from mrirecon.solvers.base import Solver, State, with_state
from mrirecon.solvers.terms import Term


@dataclass
class FISTAState(State):
    """FISTA state: iterate ``x``, previous iterate ``x_prev``, momentum parameter ``t`` and the last
    gradient-step point ``v = z - step·∇f(z)`` (the prox input)."""

    x_prev: torch.Tensor | None = None
    t: float = 1.0
    v: torch.Tensor | None = None


class FISTA(Solver[FISTAState]):
    """FISTA (Beck & Teboulle 2009) — or ISTA with ``accelerate=False`` — for ``min_x f(x) + g(x)``.

    One step, from ``z = x_k + ((t_{k-1} - 1)/t_k)(x_k - x_{k-1})``::

        x_{k+1} = prox_{step·g}(z - step·∇f(z)),   t_{k+1} = (1 + sqrt(1 + 4 t_k²)) / 2

    which is BART's ``fista`` (``pics``' default algorithm for one L1 term). BART orders the loop as
    prox, momentum, gradient step, so the image it returns is the last gradient-step point
    ``v = z - step·∇f(z)`` rather than the prox output; ``return_gradient_step=True`` returns that
    point too (same iterates, same number of operator applications). The residual recorded by
    :func:`run` is the relative change ``‖x_{k+1} - x_k‖ / ‖x_{k+1}‖``.

    Args:
        f: smooth term (its ``grad``; e.g. :class:`~mrirecon.solvers.terms.L2Data`).
        g: term with a ``prox`` (e.g. :class:`~mrirecon.solvers.terms.L1Wavelet`).
        step: step size; ``None`` for ``0.95 / L`` with ``L = f.lipschitz()`` (for SENSE with normalised
            maps ``L = 1``, i.e. BART's default step 0.95).
        accelerate: FISTA momentum (``False``: plain ISTA).
        return_gradient_step: :meth:`result` returns the last gradient-step point (BART's output).
        max_iter, tol: limits used by :func:`run`.
    """

    def __init__(self, f: Term, g: Term, step: float | None = None, accelerate: bool = True,
                 return_gradient_step: bool = False, max_iter: int = 100, tol: float = 0.0) -> None:
        super().__init__(max_iter, tol, f.ndim)
        if step is None:
            lipschitz = getattr(f, "lipschitz", None)
            if lipschitz is None:
                raise ConfigError(f"FISTA: give a step size; {f.name} has no lipschitz()")
            L = float(lipschitz())
            if not L > 0 or not math.isfinite(L):
                raise ConfigError(f"FISTA: the Lipschitz constant of {f.name} is {L}; give a step size")
            step = 0.95 / L
        if not step > 0:
            raise ConfigError(f"FISTA: step must be > 0, got {step}")
        self.f, self.g, self.step_size, self.accelerate = f, g, float(step), accelerate
        self.return_gradient_step = return_gradient_step

    def init(self, x0: torch.Tensor | None = None) -> FISTAState:
        if x0 is None:
            aty = getattr(self.f, "aty", None)
            if aty is None:
                raise ConfigError("FISTA: give x0 (the smooth term has no A^H y to start from)")
            x = torch.zeros_like(aty)
        else:
            x = x0.clone()
        return FISTAState(x=x, x_prev=x, t=1.0)

    def step(self, s: FISTAState) -> FISTAState:
        assert s.x_prev is not None
        t_new = (1 + math.sqrt(1 + 4 * s.t * s.t)) / 2 if self.accelerate else 1.0
        if self.accelerate and s.iteration > 0:
            z = s.x + ((s.t - 1) / t_new) * (s.x - s.x_prev)
        else:
            z = s.x
        with finite_checks(False):
            v = z - self.step_size * self.f.grad(z)
            x = self.g.prox(v, self.step_size)
        return with_state(s, x=x, x_prev=s.x, t=t_new, v=v, iteration=s.iteration + 1,
                          residual=self.relative_change(x, s.x), step_size=self.step_size)

    def result(self, s: FISTAState) -> torch.Tensor:
        """``x`` (the prox output), or the last gradient-step point with ``return_gradient_step``."""
        if self.return_gradient_step and s.v is not None:
            return s.v
        return s.x

    def objective(self, s: FISTAState) -> torch.Tensor:
        """``f(x) + g(x)`` per batch element."""
        with finite_checks(False):
            return self.f(s.x) + self.g(s.x)

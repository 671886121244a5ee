"""Fixed-point solvers for ``x = T(x)``: plain (Picard) iteration and safeguarded Anderson acceleration.

Both are one :class:`FixedPointSolver` (a :class:`~mrirecon.solvers.base.Solver` driven by
:func:`~mrirecon.solvers.base.run`), configured by a :class:`FixedPointConfig`. ``T`` is any map of
tensors ``[B, ...] -> [B, ...]`` (real or complex) that acts on each batch element independently: a
PnP/DEQ iteration of images, or the adjoint iteration ``u ↦ J_Tᵀ u + g`` of implicit differentiation.
Every batch element is its own problem with its own stopping decision.

**Plain iteration**: ``x_{k+1} = T(x_k)``.

**Anderson acceleration** (Anderson 1965; type II in Walker & Ni 2011's form): with the last ``m``
iterates ``x_i`` and residuals ``g_i = T(x_i) − x_i`` (real inner product on complex entries),

    α = argmin_α ‖Σ_i α_i g_i‖²  subject to  Σ_i α_i = 1      (ridge-regularised normal equations)
    x_{k+1} = Σ_i α_i (x_i + β g_i)

**Safeguard** (per batch element): the element falls back to plain iteration from the best point so far
— ``x_{k+1} = T(x_best)``, the evaluation with the smallest residual — and restarts its memory when its
residual exceeds ``safeguard`` times the best residual, or when the Anderson extrapolation is not finite
or leaves the bound below.

**Stopping rules** (Willingham et al. 2024's three, per element): the iteration limit ``max_iter``; the
**divergence guard** — an element whose evaluation ``T(x)`` has an entry with modulus above ``bound`` (or
NaN/Inf) stops at once, is reported as diverged, and its output is its best in-bound evaluation (``x_0``
if none), so no NaN or Inf ever leaves the solver; and the **step tolerance**: the element has converged
when its residual is at most ``tol``, the residual being

* ``criterion="relative"`` (default): ``‖T(x) − x‖ / ‖T(x)‖`` (scale-free);
* ``criterion="mse"``: the mean square step ``mean_j |T(x)_j − x_j|²`` over the element's entries
  (Willingham et al.'s rule; it depends on the units of ``x``).

With ``tol = 0`` an element stops only at an exact fixed point (residual 0).

The output of an element is its latest evaluation ``T(x_k)`` (the best one if it diverged). The residual
that :func:`run` records in its :class:`~mrirecon.solvers.base.History` is the maximum over the elements
still running or converged (diverged elements report 0 there and are counted in the report instead).
"""
from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import torch

from mrirecon.errors import ConfigError, NonFiniteError, ShapeError
from mrirecon.solvers.base import Solver, State, with_state

Criterion = Literal["relative", "mse"]
FixedPointMap = Callable[[torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class FixedPointConfig:
    """How a fixed point ``x = T(x)`` is sought (see the module docstring for the exact rules).

    Attributes:
        max_iter: evaluations of ``T`` at most.
        tol: step tolerance (``0`` runs to ``max_iter``).
        criterion: ``"relative"`` (``‖T(x) − x‖ / ‖T(x)‖``) or ``"mse"`` (mean square step).
        bound: divergence guard on the modulus of every entry of ``T(x)`` and of the next iterate.
        anderson: Anderson acceleration (``False``: plain iteration).
        memory: ``m``, the number of past iterates Anderson combines.
        mixing: ``β ∈ (0, 1]``.
        ridge: regularisation of Anderson's normal equations, relative to their trace.
        safeguard: fall back to plain iteration from the best point when the residual exceeds this
            multiple of the best residual so far.

    Raises:
        ConfigError: a value out of range.
    """

    max_iter: int = 100
    tol: float = 1e-4
    criterion: Criterion = "relative"
    bound: float = 1e4
    anderson: bool = True
    memory: int = 5
    mixing: float = 1.0
    ridge: float = 1e-8
    safeguard: float = 5.0

    def __post_init__(self) -> None:
        checks = (("max_iter", self.max_iter >= 0), ("tol", self.tol >= 0), ("bound", self.bound > 0),
                  ("memory", self.memory >= 1), ("mixing", 0 < self.mixing <= 1), ("ridge", self.ridge >= 0),
                  ("safeguard", self.safeguard >= 1))
        for name, ok in checks:
            if not ok:
                raise ConfigError(f"FixedPointConfig: {name} = {getattr(self, name)!r} is out of range")
        if self.criterion not in ("relative", "mse"):
            raise ConfigError(f"FixedPointConfig: criterion must be 'relative' or 'mse', got {self.criterion!r}")


@dataclass
class FixedPointState(State):
    """State of :class:`FixedPointSolver` (``x`` is the next point at which ``T`` is evaluated).

    Attributes:
        out: per element, the current output (the latest ``T(x)``; the best one for diverged elements).
        f_best: ``T`` at the point with the smallest residual so far (the fall-back target).
        best: that smallest residual ``[B]`` (``inf`` before the first evaluation).
        res: the latest residual ``[B]``.
        mem_x, mem_g: Anderson memory, real ``[B, m, n]`` (points and residuals, flattened).
        valid: which memory slots hold data ``[B, m]``.
        converged, diverged: ``[B]`` bool; iters: evaluations per element ``[B]`` (frozen once it stops).
        restarts: safeguard fall-backs so far (all elements).
    """

    out: torch.Tensor | None = None
    f_best: torch.Tensor | None = None
    best: torch.Tensor | None = None
    res: torch.Tensor | None = None
    mem_x: torch.Tensor | None = None
    mem_g: torch.Tensor | None = None
    valid: torch.Tensor | None = None
    converged: torch.Tensor | None = None
    diverged: torch.Tensor | None = None
    iters: torch.Tensor | None = None
    restarts: int = 0


def _flat(x: torch.Tensor) -> torch.Tensor:
    """``[B, ...]`` (complex or real) -> real ``[B, n]``."""
    v = torch.view_as_real(x) if x.is_complex() else x
    return v.reshape(x.shape[0], -1)


def _unflat(v: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    if like.is_complex():
        return torch.view_as_complex(v.reshape(*like.shape, 2).contiguous())
    return v.reshape(like.shape)


def _bshape(mask: torch.Tensor, ndim: int) -> torch.Tensor:
    return mask.reshape(-1, *([1] * (ndim - 1)))


class FixedPointSolver(Solver[FixedPointState]):
    """Plain or Anderson-accelerated iteration for ``x = T(x)``, batched, safeguarded, with a divergence guard.

    Args:
        T: the map, ``[B, ...] -> [B, ...]`` (same shape and dtype), independent per batch element.
        config: the rules (:class:`FixedPointConfig`).

    ``run(solver, x0)`` returns the outputs ``[B, ...]`` and the History; :attr:`final` holds the last
    state (per-element iterations, residuals, converged/diverged flags).

    Raises:
        NonFiniteError: ``x0`` holds NaN or Inf (from :meth:`init`).
        ShapeError: ``T`` changes the shape or dtype (from :meth:`step`).
    """

    def __init__(self, T: FixedPointMap, config: FixedPointConfig | None = None) -> None:
        cfg = config or FixedPointConfig()
        super().__init__(cfg.max_iter, cfg.tol, 1)
        self.T, self.config = T, cfg
        self.final: FixedPointState | None = None

    @property
    def name(self) -> str:
        return "Anderson" if self.config.anderson else "fixed-point iteration"

    def init(self, x0: torch.Tensor | None = None) -> FixedPointState:
        if x0 is None or x0.ndim < 1:
            raise ConfigError(f"{self.name}: give a starting point x0 [B, ...]")
        if not bool(torch.isfinite(_flat(x0)).all()):
            raise NonFiniteError(f"{self.name}: the starting point x0 of shape {list(x0.shape)} holds NaN or Inf")
        x = x0.detach().clone()
        self._complex = x.is_complex()
        b, n = x.shape[0], _flat(x).shape[1]
        m = self.config.memory
        real = _flat(x).dtype
        zeros_b = torch.zeros(b, dtype=torch.bool, device=x.device)
        st = FixedPointState(
            x=x, out=x.clone(), f_best=x.clone(), best=torch.full((b,), math.inf, dtype=real, device=x.device),
            res=torch.full((b,), math.inf, dtype=real, device=x.device),
            mem_x=torch.zeros(b, m, n, dtype=real, device=x.device) if self.config.anderson else None,
            mem_g=torch.zeros(b, m, n, dtype=real, device=x.device) if self.config.anderson else None,
            valid=torch.zeros(b, m, dtype=torch.bool, device=x.device),
            converged=zeros_b, diverged=zeros_b.clone(), iters=torch.zeros(b, dtype=torch.long, device=x.device),
            residual=torch.full((b,), math.inf, dtype=real, device=x.device))
        self.final = st
        return st

    def residual_of(self, f: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
        """The stopping measure per element from ``T(x)`` and ``g = T(x) − x`` (both real ``[B, n]``)."""
        if self.config.criterion == "mse":
            n_entries = g.shape[1] // 2 if self._complex else g.shape[1]
            return g.square().sum(dim=1) / max(n_entries, 1)
        return g.norm(dim=1) / f.norm(dim=1).clamp_min(torch.finfo(f.dtype).tiny)

    def _in_bound(self, t: torch.Tensor) -> torch.Tensor:
        """Per element: all entries finite with modulus ``<= bound``."""
        mag = t.abs().reshape(t.shape[0], -1)
        return torch.isfinite(mag).all(dim=1) & (mag.amax(dim=1) <= self.config.bound) if mag.shape[1] else \
            torch.ones(t.shape[0], dtype=torch.bool, device=t.device)

    def _anderson(self, mem_x: torch.Tensor, mem_g: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        """``Σ α_i (x_i + β g_i)`` with ``α`` minimising ``‖Σ α_i g_i‖``, ``Σ α_i = 1`` (empty slots get α ≈ 0)."""
        G = mem_g * valid.unsqueeze(-1)
        H = torch.bmm(G, G.transpose(1, 2)).double()
        m = H.shape[-1]
        eye = torch.eye(m, dtype=H.dtype, device=H.device)
        scale = torch.diagonal(H, dim1=1, dim2=2).sum(-1) / valid.sum(-1).clamp_min(1)
        scale = torch.where(scale > 0, scale, torch.ones_like(scale)).reshape(-1, 1, 1)
        empty = (~valid).double().unsqueeze(-1) * eye
        H = H + scale * (self.config.ridge * eye + 1e30 * empty)
        w = torch.linalg.solve(H, torch.ones(H.shape[0], m, 1, dtype=H.dtype, device=H.device))[..., 0]
        alpha = (w / w.sum(-1, keepdim=True)).to(mem_x.dtype)
        return torch.einsum("bm,bmn->bn", alpha, mem_x + self.config.mixing * mem_g)

    def step(self, s: FixedPointState) -> FixedPointState:
        assert s.out is not None and s.f_best is not None and s.best is not None and s.valid is not None
        assert s.converged is not None and s.diverged is not None and s.iters is not None and s.res is not None
        x = s.x
        f = self.T(x)
        if not isinstance(f, torch.Tensor) or f.shape != x.shape or f.dtype != x.dtype:
            raise ShapeError(f"{self.name}: T must map {list(x.shape)} {x.dtype} to the same shape and dtype, got "
                             f"{list(getattr(f, 'shape', []))} {getattr(f, 'dtype', type(f).__name__)}")
        f = f.detach()
        ff, xf = _flat(f), _flat(x)
        g = ff - xf
        ok = self._in_bound(f)
        res = torch.where(ok, self.residual_of(ff, g), torch.full_like(s.res, math.inf))
        active = ~s.converged & ~s.diverged
        new_div = active & ~ok
        new_conv = active & ok & ((res <= self.tol) if self.tol > 0 else (res == 0))  # an exact fixed point stops
        going = active & ok & ~new_conv
        better = going & (res < s.best)
        best = torch.where(better, res, s.best)
        f_best = torch.where(_bshape(better, f.ndim), f, s.f_best)
        nd = x.ndim
        restarts = s.restarts
        mem_x, mem_g, valid = s.mem_x, s.mem_g, s.valid
        if self.config.anderson:
            assert mem_x is not None and mem_g is not None
            fallback = going & (res > self.config.safeguard * best)
            push = going & ~fallback
            slot = s.iteration % self.config.memory
            mem_x, mem_g, valid = mem_x.clone(), mem_g.clone(), valid.clone()
            mem_x[:, slot] = torch.where(push[:, None], xf, mem_x[:, slot])
            mem_g[:, slot] = torch.where(push[:, None], g, mem_g[:, slot])
            valid[:, slot] = valid[:, slot] | push
            cand_flat = self._anderson(mem_x, mem_g, valid)
            cand = _unflat(cand_flat, x)
            cand_ok = self._in_bound(cand)
            use_cand = push & cand_ok
            plain = push & ~cand_ok
            reset = fallback | plain
            valid = valid & ~reset[:, None]
            restarts += int(reset.sum())
            x_next = torch.where(_bshape(use_cand, nd), cand, x)
            x_next = torch.where(_bshape(plain, nd), f, x_next)
            x_next = torch.where(_bshape(fallback, nd), f_best, x_next)
        else:
            x_next = torch.where(_bshape(going, nd), f, x)
        out = torch.where(_bshape(going | new_conv, nd), f, s.out)
        out = torch.where(_bshape(new_div, nd), f_best, out)
        iters = torch.where(active, s.iters + 1, s.iters)
        res_all = torch.where(active, res, s.res)
        converged, diverged = s.converged | new_conv, s.diverged | new_div
        reported = torch.where(diverged, torch.zeros_like(res_all), res_all)
        st = with_state(s, x=x_next, out=out, f_best=f_best, best=best, res=res_all, mem_x=mem_x, mem_g=mem_g,
                        valid=valid, converged=converged, diverged=diverged, iters=iters, restarts=restarts,
                        iteration=s.iteration + 1, residual=reported, step_size=self.config.mixing)
        self.final = st
        return st

    def done(self, state: FixedPointState) -> bool:
        """Whether no element is still running."""
        assert state.converged is not None and state.diverged is not None
        return bool((state.converged | state.diverged).all())

    def result(self, state: FixedPointState) -> torch.Tensor:
        """The outputs ``[B, ...]`` (latest ``T(x)`` per element; best in-bound one where it diverged)."""
        assert state.out is not None
        return state.out

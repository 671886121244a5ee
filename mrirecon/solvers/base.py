"""The solver protocol and the one run loop that every iterative method goes through.

A :class:`Solver` separates *what one iteration does* from *how iterations are driven*
(STYLE.md §5, after sigpy's Alg/App split)::

    solver = FISTA(data_term, L1Wavelet(...), step=0.95)
    state = solver.init(x0)                  # a dataclass (State subclass)
    while not solver.done(state):            # tolerance on the solver's residual
        state = solver.step(state)           # pure: returns a new state

:func:`run` owns everything around that loop: the progress bar (tqdm, off by default), timing,
the residual/objective/step-size :class:`History`, callbacks, the tolerance and iteration limits
and a divergence guard. Later solvers (PnP-ADMM/FBS, DEQ fixed points) subclass :class:`Solver`
and reuse :func:`run`; unrolled networks call ``step`` directly a fixed number of times (every
step is made of differentiable torch operations and never writes into a tensor it was given).

Shapes: iterates ``x`` are complex ``[..., *ishape]``; the leading dimensions are a batch that is
solved jointly (one problem per batch element, with per-element scalars in CG). The residual that
:func:`run` records and compares with ``tol`` is the maximum over the batch.
"""
from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Generic, TypeVar

import torch

from mrirecon.errors import ConfigError, DivergenceError


@dataclass
class State:
    """Base class of solver states: the iterate and the bookkeeping every solver has.

    Attributes:
        x: the current iterate, complex ``[..., *ishape]``.
        iteration: number of completed steps.
        residual: the solver's convergence measure after the last step, ``[...]`` (per batch
            element; ``inf`` before the first step). What it means is solver-specific (relative
            change of ``x`` for proximal methods, relative residual norm for CG, fixed-point residual
            for PnP/DEQ) and documented on each solver.
        step_size: the step size used by the last step (``nan`` where a solver has none).
    """

    x: torch.Tensor
    iteration: int = 0
    residual: torch.Tensor = field(default_factory=lambda: torch.tensor(math.inf))
    step_size: float = math.nan


S = TypeVar("S", bound=State)


@dataclass
class History:
    """What happened during :func:`run`.

    Attributes:
        residual: per iteration, the solver's residual (maximum over the batch).
        objective: per iteration, the objective value (sum over the batch) when the solver defines
            one and ``record_objective`` was set; empty otherwise.
        step_size: per iteration, the step size (``nan`` where undefined).
        time: per iteration, seconds since the start of the run (after that iteration).
        iterations: number of steps taken.
        converged: whether the residual fell below the tolerance.
        stop_reason: ``"tol"``, ``"max_iter"``, ``"callback"`` or ``"diverged"``.
        init_time: seconds spent in ``init`` (set-up: right-hand sides, step-size estimates).
    """

    residual: list[float] = field(default_factory=list)
    objective: list[float] = field(default_factory=list)
    step_size: list[float] = field(default_factory=list)
    time: list[float] = field(default_factory=list)
    iterations: int = 0
    converged: bool = False
    stop_reason: str = ""
    init_time: float = 0.0

    @property
    def total_time(self) -> float:
        """Seconds of the whole run (set-up and iterations)."""
        return self.init_time + (self.time[-1] if self.time else 0.0)

    def time_per_iteration(self) -> float:
        """Median seconds per iteration (``nan`` without iterations)."""
        if not self.time:
            return math.nan
        d = [b - a for a, b in zip([0.0] + self.time[:-1], self.time)]
        d.sort()
        return d[len(d) // 2]


class Solver(Generic[S]):
    """An iterative method: ``init`` builds the state, ``step`` advances it, ``done`` tests it.

    Subclasses implement :meth:`init` and :meth:`step`, and may implement :meth:`objective`.
    ``step`` must not modify its input state or any tensor the caller handed to the solver; it
    returns a new state (``dataclasses.replace`` is the usual way).

    Args:
        max_iter: the iteration limit used by :func:`run`.
        tol: stop when the state's residual (max over the batch) is ``<= tol``; ``0`` disables.
        ndim: number of trailing dimensions of an iterate that form one problem (the rest is batch).
    """

    def __init__(self, max_iter: int, tol: float, ndim: int) -> None:
        if max_iter < 0:
            raise ConfigError(f"{type(self).__name__}: max_iter must be >= 0, got {max_iter}")
        if not tol >= 0:
            raise ConfigError(f"{type(self).__name__}: tol must be >= 0, got {tol}")
        self.max_iter = int(max_iter)
        self.tol = float(tol)
        self.ndim = int(ndim)

    @property
    def name(self) -> str:
        return type(self).__name__

    # -- protocol -------------------------------------------------------------------------
    def init(self, x0: torch.Tensor | None = None) -> S:
        """The initial state (``x0`` is copied, never modified)."""
        raise NotImplementedError

    def step(self, state: S) -> S:
        """One iteration: a new state from ``state`` (``state`` is left unchanged)."""
        raise NotImplementedError

    def done(self, state: S) -> bool:
        """Whether the tolerance is met (the iteration limit is handled by :func:`run`)."""
        return self.tol > 0 and bool((state.residual <= self.tol).all())

    def objective(self, state: S) -> torch.Tensor | None:
        """The objective at ``state.x`` per batch element ``[...]``, or ``None`` if undefined."""
        return None

    def result(self, state: S) -> torch.Tensor:
        """The solution carried by ``state`` (``state.x``)."""
        return state.x

    # -- helpers for subclasses -----------------------------------------------------------
    def norm(self, x: torch.Tensor) -> torch.Tensor:
        """Euclidean norm over the trailing ``ndim`` dimensions (one value per batch element)."""
        return batch_norm(x, self.ndim)

    def dot(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        """Real part of ``<a, b> = Σ conj(a) b`` over the trailing ``ndim`` dims."""
        if a.is_complex():
            a, b = torch.view_as_real(a), torch.view_as_real(b)
            return (a * b).sum(dim=tuple(range(-self.ndim - 1, 0)))
        return (a * b).sum(dim=tuple(range(-self.ndim, 0)))

    def batch_scalar(self, s: torch.Tensor) -> torch.Tensor:
        """Reshape per-batch scalars ``[...]`` to broadcast against iterates ``[..., *ishape]``."""
        return s.reshape(*s.shape, *([1] * self.ndim))

    def relative_change(self, new: torch.Tensor, old: torch.Tensor) -> torch.Tensor:
        """``||new - old|| / max(||new||, tiny)`` per batch element."""
        den = self.norm(new).clamp_min(torch.finfo(new.real.dtype).tiny)
        return self.norm(new - old) / den


Callback = Callable[[State, History], Any]


def batch_norm(x: torch.Tensor, ndim: int) -> torch.Tensor:
    """Euclidean norm over the trailing ``ndim`` dims (complex: over real and imaginary parts).

    ``torch.linalg.vector_norm`` over several dims of a complex tensor is two orders of magnitude
    slower on CPU than this sum of squares of the real view.
    """
    if x.is_complex():
        x = torch.view_as_real(x)
        ndim += 1
    return x.square().sum(dim=tuple(range(-ndim, 0))).sqrt()


def run(solver: Solver[S], x0: torch.Tensor | None = None, *, max_iter: int | None = None,
        tol: float | None = None, callback: Callback | Sequence[Callback] | None = None,
        progress: bool = False, record_objective: bool = False, divergence_factor: float = 1e6,
        raise_on_divergence: bool = True, state: S | None = None) -> tuple[torch.Tensor, History]:
    """Drive ``solver`` until its tolerance, its iteration limit, a callback or divergence stops it.

    Args:
        solver: the method.
        x0: initial iterate (copied) or ``None`` for the solver's default (usually zeros or ``A^H y``).
        max_iter, tol: override the solver's limits for this run (without ``tol``, the run stops when
            ``solver.done(state)`` says so).
        callback: called as ``callback(state, history)`` after every iteration; a truthy return
            value stops the run (``stop_reason="callback"``). A list of callbacks is allowed.
        progress: show a tqdm progress bar (off by default in the library).
        record_objective: evaluate ``solver.objective`` after each iteration (costs one extra
            forward operator application for most solvers).
        divergence_factor: the run counts as diverged when the iterate or residual is non-finite,
            or when the residual exceeds ``divergence_factor`` times its smallest value so far.
        raise_on_divergence: raise :class:`DivergenceError` on divergence (else stop and return the
            last finite iterate with ``stop_reason="diverged"``).
        state: resume from this state instead of calling ``solver.init``.

    Returns:
        ``(x, history)``: the solution (``solver.result``) and the :class:`History`.

    Raises:
        DivergenceError: the iterates diverged and ``raise_on_divergence`` is set.
    """
    from tqdm import tqdm

    n_iter = solver.max_iter if max_iter is None else int(max_iter)
    callbacks: list[Callback] = [] if callback is None else (
        list(callback) if isinstance(callback, (list, tuple)) else [callback])  # type: ignore[list-item]
    hist = History()
    t0 = time.perf_counter()
    if state is None:
        state = solver.init(x0)
    hist.init_time = time.perf_counter() - t0
    best = math.inf
    t_start = time.perf_counter()
    bar = tqdm(total=n_iter, desc=solver.name, disable=not progress, leave=False)
    try:
        for _ in range(n_iter):
            previous = state
            state = solver.step(state)
            res = float(state.residual.max()) if state.residual.numel() else 0.0
            hist.time.append(time.perf_counter() - t_start)
            hist.residual.append(res)
            hist.step_size.append(float(state.step_size))
            hist.iterations = state.iteration
            if record_objective:
                obj = solver.objective(state)
                if obj is not None:
                    hist.objective.append(float(obj.sum()))
            bar.update(1)
            if progress:
                bar.set_postfix(residual=f"{res:.2e}")
            finite = math.isfinite(res) and bool(torch.isfinite(torch.view_as_real(state.x)
                                                                if state.x.is_complex() else state.x).all())
            if not finite or res > divergence_factor * best:
                hist.stop_reason = "diverged"
                if raise_on_divergence:
                    raise DivergenceError(
                        f"{solver.name}: diverged at iteration {state.iteration} (residual {res:.3e}, "
                        f"smallest so far {best:.3e}); reduce the step size or check the operator")
                state = previous
                break
            best = min(best, res)
            # an explicit ``tol`` compares the recorded residual; otherwise the solver decides (its
            # ``done``: the residual against its own ``tol`` by default, per-element flags for fixed points)
            if (tol > 0 and res <= tol) if tol is not None else solver.done(state):
                hist.converged, hist.stop_reason = True, "tol"
                break
            if any(bool(cb(state, hist)) for cb in callbacks):
                hist.stop_reason = "callback"
                break
        else:
            hist.stop_reason = "max_iter"
    finally:
        bar.close()
    return solver.result(state), hist


def with_state(state: S, **changes: Any) -> S:
    """``dataclasses.replace`` for states (a new state object; tensors are shared, not copied)."""
    return replace(state, **changes)

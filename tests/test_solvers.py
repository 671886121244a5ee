"""Solvers against closed forms (ridge regression) and against long high-precision runs (L1 problems)."""
from __future__ import annotations

import pytest
import torch

from mrirecon.errors import DivergenceError
from mrirecon.operators import Sense, dense_matrix
from mrirecon.solvers import (
    ADMM,
    FISTA,
    PDHG,
    ConjugateGradient,
    L1Wavelet,
    L2Data,
    Solver,
    State,
    Tikhonov,
    TotalVariation,
    power_iteration,
    run,
)

C, H, W = 3, 9, 7

pytestmark = pytest.mark.usefixtures("one_thread")  # tiny problems: one intra-op thread


def _problem(seed: int = 0, batch: tuple[int, ...] = ()) -> tuple[Sense, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    maps = torch.randn(C, H, W, dtype=torch.complex128, generator=g) / 2
    mask = (torch.rand(1, 1, W, generator=g) < 0.5).double()
    mask[..., W // 2] = 1
    A = Sense(maps, mask)
    x = torch.randn(*batch, H, W, dtype=torch.complex128, generator=g)
    y = A(x) + 0.05 * torch.randn(*batch, C, H, W, dtype=torch.complex128, generator=g) * mask
    return A, x, y


def _ridge(A: Sense, y: torch.Tensor, lam: float) -> torch.Tensor:
    M = dense_matrix(A)
    n = M.shape[1]
    rhs = (M.conj().T @ y.reshape(*y.shape[:-3], -1).unsqueeze(-1)).squeeze(-1)
    sol = torch.linalg.solve(M.conj().T @ M + lam * torch.eye(n, dtype=M.dtype), rhs.unsqueeze(-1)).squeeze(-1)
    return sol.reshape(*y.shape[:-3], H, W)


def test_cg_matches_ridge_closed_form_batched() -> None:
    A, _, y = _problem(batch=(2,))
    lam = 0.1
    ref = _ridge(A, y, lam)
    x, hist = run(ConjugateGradient(A.N, A.H(y), lam=lam, max_iter=200, tol=1e-12))
    assert torch.allclose(x, ref, atol=1e-9)
    assert hist.converged and hist.stop_reason == "tol"
    assert len(hist.residual) == hist.iterations == len(hist.time)
    # both batch elements are solved independently: each matches its own closed form
    x0, _ = run(ConjugateGradient(A.N, A.H(y[0]), lam=lam, max_iter=200, tol=1e-12))
    assert torch.allclose(x0, ref[0], atol=1e-9)


def test_cg_does_not_write_into_inputs() -> None:
    A, _, y = _problem()
    b = A.H(y)
    b_copy, x0 = b.clone(), torch.ones(H, W, dtype=torch.complex128)
    x0_copy = x0.clone()
    solver = ConjugateGradient(A.N, b, lam=0.1, max_iter=5)
    s0 = solver.init(x0)
    s1 = solver.step(s0)
    assert torch.equal(b, b_copy) and torch.equal(x0, x0_copy)
    assert s1 is not s0 and s0.iteration == 0 and s1.iteration == 1


def test_cg_gradient_stays_finite_past_convergence() -> None:
    """A fixed number of differentiable CG steps far beyond convergence (the DEQ data prox, cg_iters 30 on a small
    crop) keeps finite gradients: the steps after ``‖r‖ ≤ eps·‖b‖`` are frozen, not ratios of underflowed dots."""
    g = torch.Generator().manual_seed(3)
    n = 6
    q = torch.linalg.qr(torch.randn(n, n, generator=g))[0]
    M = q @ torch.diag(torch.linspace(1.0, 2.0, n)) @ q.T  # well conditioned: CG converges in n steps
    b = torch.randn(1, n, generator=g).requires_grad_(True)
    cg = ConjugateGradient(lambda v: v @ M.T, b, ndim=1, max_iter=60)
    s = cg.init(None)
    for _ in range(60):
        s = cg.step(s)
    s.x.square().sum().backward()
    assert b.grad is not None and bool(torch.isfinite(b.grad).all())
    # and the value is the solution (float32 precision)
    ref = torch.linalg.solve(M, b.detach()[0])
    assert torch.allclose(s.x.detach()[0], ref, atol=1e-5)
    # the exact gradient of ‖M⁻¹b‖² is 2 M⁻¹ M⁻¹ b
    assert torch.allclose(b.grad[0], 2 * torch.linalg.solve(M, ref), atol=1e-4)


@pytest.mark.parametrize("make", ["fista", "ista", "pdhg"])
def test_proximal_solvers_match_ridge(make: str) -> None:
    A, _, y = _problem(1)
    lam = 0.2
    ref = _ridge(A, y, lam)
    data, reg = L2Data(A, y), Tikhonov(lam, (H, W))
    if make in ("fista", "ista"):
        solver = FISTA(data, reg, accelerate=make == "fista", max_iter=20000, tol=1e-13)
    else:
        solver = PDHG([data], g=reg, max_iter=20000, tol=1e-13)
    x, hist = run(solver)
    assert torch.allclose(x, ref, atol=1e-8), float((x - ref).abs().max())
    assert hist.converged


@pytest.fixture(scope="module")
def l1_reference() -> dict[str, torch.Tensor]:
    """Long high-precision FISTA runs (complex128, fixed wavelet) of the L1-wavelet and TV problems."""
    A, _, y = _problem(2)
    data = L2Data(A, y)
    wav = L1Wavelet(0.05, (H, W), "db2", levels=1, cycle_spin=False)
    xw, _ = run(FISTA(data, wav, max_iter=20000, tol=1e-12))
    xt, _ = run(PDHG([data, TotalVariation(0.05, (H, W))], max_iter=20000, tol=1e-13))
    return {"A": A, "y": y, "wav": xw, "tv": xt}


@pytest.mark.slow
@pytest.mark.parametrize("method", ["admm", "pdhg"])
def test_l1_wavelet_solvers_agree_with_long_run(l1_reference: dict, method: str) -> None:
    A, y = l1_reference["A"], l1_reference["y"]
    data = L2Data(A, y)
    wav = L1Wavelet(0.05, (H, W), "db2", levels=1, cycle_spin=False)
    if method == "admm":
        solver = ADMM(data, [wav], rho=0.1, cg_iters=10, max_iter=1000, tol=1e-11)
    else:
        solver = PDHG([data, wav], max_iter=20000, tol=1e-12)
    x, _ = run(solver)
    ref = l1_reference["wav"]
    assert float((x - ref).abs().max() / ref.abs().max()) < 1e-5


@pytest.mark.slow
@pytest.mark.parametrize("method", ["admm", "fista"])
def test_tv_solvers_agree_with_long_run(l1_reference: dict, method: str) -> None:
    A, y = l1_reference["A"], l1_reference["y"]
    data = L2Data(A, y)
    if method == "admm":
        solver = ADMM(data, [TotalVariation(0.05, (H, W))], rho=0.1, cg_iters=10, max_iter=1000, tol=1e-11)
    else:  # FISTA with the FGP prox of TV
        tv = TotalVariation(0.05, (H, W), prox_tol=1e-11, prox_iters=5000)
        solver = FISTA(data, tv, max_iter=3000, tol=1e-10)
    x, _ = run(solver)
    ref = l1_reference["tv"]
    assert float((x - ref).abs().max() / ref.abs().max()) < 1e-5


def test_fista_objective_decreases_and_is_recorded() -> None:
    A, _, y = _problem(3)
    solver = FISTA(L2Data(A, y), L1Wavelet(0.05, (H, W), levels=1, cycle_spin=False), max_iter=50)
    _, hist = run(solver, record_objective=True)
    assert len(hist.objective) == 50
    assert hist.objective[-1] < hist.objective[0]
    assert hist.stop_reason == "max_iter" and not hist.converged


def test_power_iteration_matches_dense_norm() -> None:
    A, _, _ = _problem(4)
    M = dense_matrix(A)
    exact = torch.linalg.matrix_norm(M, ord=2) ** 2
    lam, v = power_iteration(A.N, iters=500, tol=1e-12, dtype=torch.complex128)
    assert abs(float(lam) - float(exact)) < 1e-6 * float(exact)
    assert abs(float(torch.linalg.vector_norm(v)) - 1) < 1e-9


def test_step_is_differentiable_for_unrolling() -> None:
    A, _, y = _problem(5)
    lam = torch.tensor(0.1, dtype=torch.float64, requires_grad=True)
    data = L2Data(A, y)
    solver = FISTA(data, L1Wavelet(0.05, (H, W), levels=1, cycle_spin=False), step=0.1)
    state = solver.init()
    for _ in range(3):
        state = solver.step(state)
    yy = y.clone().requires_grad_(True)
    data2 = L2Data(A, yy)
    s = FISTA(data2, Tikhonov(0.1, (H, W)), step=0.1).init()
    solver2 = FISTA(data2, Tikhonov(0.1, (H, W)), step=0.1)
    for _ in range(3):
        s = solver2.step(s)
    (gy,) = torch.autograd.grad(s.x.abs().pow(2).sum(), yy)
    assert gy.shape == y.shape and torch.isfinite(gy.real).all() and gy.abs().sum() > 0
    del lam


class _Exploding(Solver[State]):
    def __init__(self) -> None:
        super().__init__(max_iter=50, tol=0.0, ndim=1)

    def init(self, x0: torch.Tensor | None = None) -> State:
        return State(x=torch.ones(3, dtype=torch.complex64))

    def step(self, s: State) -> State:
        x = s.x * 1e3
        return State(x=x, iteration=s.iteration + 1, residual=self.norm(x))


def test_run_detects_divergence_and_callbacks_stop() -> None:
    with pytest.raises(DivergenceError, match="diverged at iteration"):
        run(_Exploding())
    x, hist = run(_Exploding(), raise_on_divergence=False)
    assert hist.stop_reason == "diverged" and torch.isfinite(x.real).all()
    A, _, y = _problem(6)
    _, hist = run(ConjugateGradient(A.N, A.H(y), max_iter=100), callback=lambda s, h: s.iteration >= 3)
    assert hist.stop_reason == "callback" and hist.iterations == 3


def test_run_stops_when_the_solver_says_done() -> None:
    """Without an explicit ``tol``, ``run`` asks ``solver.done`` (here: a custom rule, not the residual)."""
    from dataclasses import dataclass

    from mrirecon.solvers.base import Solver, State, run, with_state

    @dataclass
    class CountState(State):
        pass

    class Halver(Solver[CountState]):
        def init(self, x0: torch.Tensor | None = None) -> CountState:
            return CountState(x=torch.ones(3) if x0 is None else x0.clone())

        def step(self, s: CountState) -> CountState:
            x = s.x / 2
            return with_state(s, x=x, iteration=s.iteration + 1, residual=self.relative_change(x, s.x))

        def done(self, s: CountState) -> bool:
            return s.iteration >= 4  # the residual stays at 1: only this rule can stop the run

    _, hist = run(Halver(max_iter=50, tol=0.0, ndim=1))
    assert hist.iterations == 4 and hist.stop_reason == "tol"
    _, hist = run(Halver(max_iter=50, tol=0.0, ndim=1), tol=1e-3)  # an explicit tol overrides done()
    assert hist.iterations == 50 and hist.stop_reason == "max_iter"

"""Plug-and-play solvers: data-consistency proxes against dense solves, proven contraction, divergence guard, GS-PnP descent.

The convergence tests use the conditions of Ryu et al. (2019): a strongly convex data term (8 coils at
acceleration 2 on a tiny image: ``A^H A`` is positive definite, its extreme eigenvalues computed from the
dense matrix) and a DnCNN with real spectral normalisation whose ``Lip(I − D)`` is *certified* by the
product of its layers' frequency-domain norms (a bound valid at every image size). The contraction
factor of the PnP operator then follows from :func:`contraction_bound`, and the tests check that the
measured fixed-point residual decays at least that fast and reaches 1e-5 within a stated number of
iterations, from two different starting points, to the same limit.
"""
from __future__ import annotations

import itertools
import math

import pytest
import torch

from mrirecon.denoisers import DnCNN, GSDRUNet
from mrirecon.denoisers.spectral import converge_spectral_norms, spectral_certificate
from mrirecon.errors import ConfigError, DivergenceError
from mrirecon.operators import FFT, Blur, Identity, Inpaint, Sample, Sense, dense_matrix, gaussian_kernel
from mrirecon.solvers import GradientStepPnP, PnPADMM, PnPFBS, contraction_bound, data_prox, run

H, W, C = 12, 11, 8

pytestmark = pytest.mark.usefixtures("one_thread")  # tiny problems: one intra-op thread


def _sense_problem(seed: int = 0, R: int = 2, coils: int = C) -> tuple[Sense, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    maps = torch.randn(coils, H, W, dtype=torch.complex128, generator=g)
    maps = maps / maps.abs().pow(2).sum(0).sqrt()  # Σ_c |S_c|² = 1 (as ESPIRiT maps)
    mask = torch.zeros(1, 1, W, dtype=torch.float64)
    mask[..., ::R] = 1
    mask[..., W // 2] = 1
    A = Sense(maps, mask)
    x = torch.randn(H, W, dtype=torch.complex128, generator=g)
    y = A(x) + 0.05 * torch.randn(coils, H, W, dtype=torch.complex128, generator=g) * mask
    return A, x, y


def _eig_range(A) -> tuple[float, float]:
    M = dense_matrix(A)
    ev = torch.linalg.eigvalsh(M.conj().T @ M)
    return float(ev[0]), float(ev[-1])


def _dense_prox(A, y: torch.Tensor, v: torch.Tensor, alpha: float) -> torch.Tensor:
    M = dense_matrix(A)
    n = M.shape[1]
    rhs = v.reshape(-1) + alpha * (M.conj().T @ y.reshape(-1))
    x = torch.linalg.solve(torch.eye(n, dtype=M.dtype) + alpha * M.conj().T @ M, rhs)
    return x.reshape(v.shape)


@pytest.fixture(scope="module")
def sn_denoiser() -> tuple[DnCNN, float]:
    """A real-SN DnCNN (fixed random weights, float64) and its certified bound on Lip(I − D)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    with torch.random.fork_rng():
        torch.manual_seed(3)
        den = DnCNN(depth=4, width=8, lipschitz=0.3, sn_size=16).double()
    converge_spectral_norms(den, 500)
    den.eval()
    eps = spectral_certificate(den, grid=128)["product"]  # frequency-domain bound, valid at every image size
    torch.set_num_threads(threads)
    assert eps is not None and eps < 1
    return den, float(eps)


# ---------------------------------------------------------------------------------------------
# data-consistency prox
# ---------------------------------------------------------------------------------------------
def _closed_form_cases() -> list[tuple[str, object, str]]:
    g = torch.Generator().manual_seed(1)
    cd = torch.complex128
    maps_full = torch.randn(3, H, W, dtype=cd, generator=g)
    phase = torch.exp(1j * torch.rand(1, H, W, dtype=torch.float64, generator=g) * 6)
    mask1 = (torch.rand(1, 1, W, generator=g) < 0.5).double()
    mask1[..., W // 2] = 1
    mask2 = (torch.rand(H, W, generator=g) < 0.4).double()
    pix = (torch.rand(H, W, generator=g) < 0.6).double()
    return [
        ("identity", Identity((H, W)), "diagonal"),
        ("inpaint", Inpaint(pix, (H, W)), "diagonal"),
        ("sense-fully-sampled", Sense(maps_full), "diagonal"),
        ("sense-single-coil-phase", Sense(phase, mask1), "cartesian"),
        ("sense-single-coil-2d", Sense(torch.ones(1, H, W, dtype=cd), mask2), "cartesian"),
        ("sample-fft", Sample(mask2, (H, W)) @ FFT((H, W)), "cartesian"),
        ("blur-circular", Blur(gaussian_kernel(1.2, 5), (H, W), "circular"), "circulant"),
    ]


@pytest.mark.parametrize("case", _closed_form_cases(), ids=lambda c: c[0])
def test_closed_form_prox_equals_cg_and_dense_solve(case) -> None:
    _, A, kind = case
    g = torch.Generator().manual_seed(2)
    y = torch.randn(*A.oshape, dtype=torch.complex128, generator=g)
    v = torch.randn(*A.ishape, dtype=torch.complex128, generator=g)
    exact = data_prox(A, y)
    assert exact.kind == kind and exact.exact
    cg = data_prox(A, y, cg_iters=500, cg_tol=1e-14, exact=False)
    assert cg.kind == "cg"
    for alpha in (0.3, 4.0):
        ref = _dense_prox(A, y, v, alpha)
        assert torch.allclose(exact.prox(v, alpha), ref, atol=1e-10), kind
        assert torch.allclose(cg.prox(v, alpha), ref, atol=1e-9)


def test_cg_prox_multicoil_sense_batched_and_warm_start() -> None:
    A, _, y = _sense_problem()
    data = data_prox(A, y, cg_iters=200, cg_tol=1e-13)
    assert data.kind == "cg" and not data.exact
    v = torch.randn(2, H, W, dtype=torch.complex128, generator=torch.Generator().manual_seed(5))
    out = data.prox(v, 1.5)
    for b in range(2):
        assert torch.allclose(out[b], _dense_prox(A, y, v[b], 1.5), atol=1e-10)
    # warm start at the solution: no iteration needed
    data.prox(v, 1.5, x0=out)
    assert data.last_iters <= 1


def test_prox_rejects_bad_alpha_and_data() -> None:
    A, _, y = _sense_problem()
    with pytest.raises(ConfigError, match="alpha"):
        data_prox(A, y).prox(A.H(y), 0.0)
    with pytest.raises(Exception, match=r"expected data y of shape"):
        data_prox(A, y[:3])


# ---------------------------------------------------------------------------------------------
# proven convergence (Ryu et al. 2019 conditions)
# ---------------------------------------------------------------------------------------------
MAX_ITERS = 60  # stated bound: with the contraction factors below (<= 0.75) 1e-5 is reached well within it


def _tail_rate(res: list[float]) -> float:
    """The worst ratio of successive residuals over the last half of the run (the linear rate)."""
    tail = res[len(res) // 2:]
    return max(b / a for a, b in itertools.pairwise(tail) if a > 0)


@pytest.mark.parametrize("method", ["admm", "fbs"])
def test_pnp_contraction_converges_to_unique_fixed_point(method: str, sn_denoiser) -> None:
    den, eps = sn_denoiser
    A, _, y = _sense_problem()
    mu, L = _eig_range(A)
    assert mu > 0.2  # strongly convex data term: Ryu's theorems apply
    alpha = 2.0 if method == "admm" else 2.0 / (mu + L)
    q = contraction_bound(method, alpha, mu, L, eps)
    assert q < 0.8, q  # a proven contraction
    cls = PnPADMM if method == "admm" else PnPFBS
    solver = cls(A, y, den, sigma=None, alpha=alpha, cg_iters=200, cg_tol=1e-13, max_iter=MAX_ITERS, tol=1e-5)
    g = torch.Generator().manual_seed(7)
    starts = [None, 3 * torch.randn(H, W, dtype=torch.complex128, generator=g)]
    limits = []
    for x0 in starts:
        x, hist = run(solver, x0)
        assert hist.converged and hist.stop_reason == "tol", (hist.residual[-5:], q)
        assert hist.residual[-1] <= 1e-5 and hist.iterations <= MAX_ITERS
        assert _tail_rate(hist.residual) <= q + 0.02  # the measured linear rate respects the bound
        x, _ = run(solver, x0, tol=1e-13, max_iter=400)  # run on to the limit
        limits.append(x)
    assert torch.allclose(limits[0], limits[1], atol=1e-9)


def test_admm_fbs_share_the_fixed_point_equation(sn_denoiser) -> None:
    """PnP-FBS's fixed point satisfies x = D(x − α∇f(x)) (checked at the computed limit)."""
    den, _ = sn_denoiser
    A, _, y = _sense_problem()
    mu, L = _eig_range(A)
    alpha = 2.0 / (mu + L)
    solver = PnPFBS(A, y, den, alpha=alpha, max_iter=400, tol=1e-13)
    x, _ = run(solver)
    assert torch.allclose(den(x - alpha * solver.data.grad(x)), x, atol=1e-10)


def test_pnp_batch_and_scale(sn_denoiser) -> None:
    """A batch is solved jointly (each element as alone), and ``scale`` makes the solve unit-free."""
    den, _ = sn_denoiser
    A, _, y = _sense_problem()
    yb = torch.stack([y, 2 * y])
    solver = PnPADMM(A, yb, den, alpha=2.0, cg_iters=200, cg_tol=1e-13, max_iter=200, tol=1e-12)
    xb, _ = run(solver)
    x0, _ = run(PnPADMM(A, y, den, alpha=2.0, cg_iters=200, cg_tol=1e-13, max_iter=200, tol=1e-12))
    assert torch.allclose(xb[0], x0, atol=1e-9)
    # data in other units (×1000) with scale=1000 gives the same image ×1000
    xs, _ = run(PnPADMM(A, 1000 * y, den, alpha=2.0, scale=1000.0, cg_iters=200, cg_tol=1e-13, max_iter=200,
                        tol=1e-12))
    assert torch.allclose(xs / 1000, x0, atol=1e-8)


# ---------------------------------------------------------------------------------------------
# divergence guard
# ---------------------------------------------------------------------------------------------
def _expansive_denoiser() -> DnCNN:
    """An unconstrained DnCNN whose residual map is strongly expansive (last layer scaled up)."""
    with torch.random.fork_rng():
        torch.manual_seed(0)
        den = DnCNN(depth=3, width=8).double().eval()
    with torch.no_grad():
        den.net[-1].weight.mul_(40.0)
    return den


@pytest.mark.parametrize("method", ["admm", "fbs"])
def test_divergence_guard_reports_instead_of_nan(method: str) -> None:
    A, _, y = _sense_problem(R=3, coils=4)
    den = _expansive_denoiser()
    solver = (PnPADMM(A, y, den, alpha=50.0, cg_iters=20, max_iter=300, tol=0)
              if method == "admm" else PnPFBS(A, y, den, alpha=1.9, max_iter=300, tol=0))
    with pytest.raises(DivergenceError, match="diverged at iteration"):
        run(solver)
    x, hist = run(solver, raise_on_divergence=False)
    assert hist.stop_reason == "diverged" and not hist.converged
    assert hist.iterations < 300
    assert torch.isfinite(torch.view_as_real(x)).all()


# ---------------------------------------------------------------------------------------------
# gradient-step PnP
# ---------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def gs_prior() -> GSDRUNet:
    with torch.random.fork_rng():
        torch.manual_seed(1)
        return GSDRUNet(widths=(4, 8), blocks=1, activation="elu").double().eval()


@pytest.mark.parametrize("operator", ["sense", "inpaint"])
def test_gs_pnp_objective_non_increasing(operator: str, gs_prior) -> None:
    if operator == "sense":
        A, _, y = _sense_problem(R=3, coils=4)
    else:
        g = torch.Generator().manual_seed(4)
        A = Inpaint((torch.rand(H, W, generator=g) < 0.5).double(), (H, W))
        y = A(torch.randn(H, W, dtype=torch.complex128, generator=g))
    solver = GradientStepPnP(A, y, gs_prior, sigma=None, lam=0.5, step=1.0, max_iter=40, tol=1e-7,
                             cg_iters=200, cg_tol=1e-12)
    x, hist = run(solver, record_objective=True)
    F = hist.objective
    assert len(F) == hist.iterations >= 5
    F0 = float(solver.objective(solver.init()))
    seq = [F0] + F
    for a, b in itertools.pairwise(seq):
        assert b <= a + 1e-12 * abs(a), (a, b)
    assert seq[-1] < seq[0]
    assert all(0 < t <= 1.0 for t in hist.step_size)
    # the recorded objective is F = f + λ g at the returned iterate
    f = float(solver.data(x).sum())
    with torch.no_grad():
        g_val = float(gs_prior.g(x).sum())
    assert math.isclose(F[-1], f + 0.5 * g_val, rel_tol=1e-9)


def test_gs_pnp_backtracks_when_the_step_is_too_large(gs_prior) -> None:
    A, _, y = _sense_problem(R=3, coils=4)
    solver = GradientStepPnP(A, y, gs_prior, lam=5.0, step=50.0, max_iter=10, tol=0, cg_iters=200, cg_tol=1e-12)
    _, hist = run(solver, record_objective=True)
    assert min(hist.step_size) < 50.0  # the line search reduced the step
    assert all(b <= a + 1e-12 * abs(a) for a, b in zip(hist.objective[:-1], hist.objective[1:]))


def test_gs_pnp_needs_a_gradient_step_prior(sn_denoiser) -> None:
    A, _, y = _sense_problem()
    with pytest.raises(ConfigError, match="gradient-step"):
        GradientStepPnP(A, y, sn_denoiser[0])


def test_contraction_bound_values() -> None:
    # FBS: (1 + ε) max(|1 − αμ|, |1 − αL|)
    assert math.isclose(contraction_bound("fbs", 1.0, 0.5, 1.0, 0.2), 1.2 * 0.5)
    # ADMM with ε = 0: the prox part alone, 1/(1 + αμ)
    assert math.isclose(contraction_bound("admm", 2.0, 0.5, 1.0, 0.0), 0.5)
    with pytest.raises(ConfigError):
        contraction_bound("hqs", 1.0, 0.5, 1.0, 0.1)

"""Fixed-point solvers, the DEQ layer (implicit / Jacobian-free backward) and the DEQ / unrolled-ADMM networks."""
from __future__ import annotations

import math

import pytest
import torch

import mrirecon.models  # noqa: F401  (registers deq, unrolled-admm)
from mrirecon.denoisers.registry import build_model
from mrirecon.errors import ConfigError, NonFiniteError
from mrirecon.operators.imaging import Blur, gaussian_kernel
from mrirecon.operators.sense import Sense
from mrirecon.solvers.anderson import FixedPointConfig, FixedPointSolver
from mrirecon.solvers.base import run
from mrirecon.solvers.deq import (ADMMMap, DataTerm, FixedPointLayer, ForwardBackwardMap, GradientStepMap,
                                  solve_fixed_point)

C128 = torch.complex128

pytestmark = pytest.mark.usefixtures("one_thread")  # tiny problems: one intra-op thread


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def randc(*shape: int, seed: int = 0, dtype: torch.dtype = C128) -> torch.Tensor:
    g = gen(seed)
    return torch.complex(torch.randn(shape, generator=g, dtype=torch.float64),
                         torch.randn(shape, generator=g, dtype=torch.float64)).to(dtype)


def sense_problem(h: int = 9, w: int = 7, coils: int = 3, accel_keep: float = 0.5, seed: int = 0,
                  batch: int = 2) -> tuple[Sense, torch.Tensor, torch.Tensor]:
    """A tiny batched SENSE problem (odd sizes, normalised maps, a line mask) in complex128."""
    maps = randc(batch, coils, h, w, seed=seed)
    maps = maps / maps.abs().pow(2).sum(dim=1, keepdim=True).sqrt()
    g = gen(seed + 1)
    mask = (torch.rand(batch, 1, 1, w, generator=g, dtype=torch.float64) < accel_keep).double()
    mask[..., w // 2] = 1.0
    A = Sense(maps, mask)
    x_true = randc(batch, h, w, seed=seed + 2) * 0.5
    y = A(x_true) + 0.01 * randc(batch, coils, h, w, seed=seed + 3) * mask
    return A, y, x_true


def tiny_net(seed: int = 0, width: int = 4) -> torch.nn.Module:
    net = build_model("dncnn", {"depth": 3, "width": width}, seed=seed).double()
    with torch.no_grad():  # small weights: x - N(x) has a small Lipschitz constant, T is a contraction
        for p in net.parameters():
            p.mul_(0.3)
    return net


# ---------------------------------------------------------------------------------------------
# the fixed-point solver
# ---------------------------------------------------------------------------------------------
def slow_linear(n: int = 40, rate: float = 0.97, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = gen(seed)
    Q, _ = torch.linalg.qr(torch.randn(n, n, generator=g, dtype=torch.float64))
    eig = torch.linspace(-0.5, rate, n, dtype=torch.float64)
    M = Q @ torch.diag(eig) @ Q.T
    b = torch.randn(3, n, generator=g, dtype=torch.float64)
    return M, b


def test_plain_iteration_reaches_the_fixed_point_of_a_contraction() -> None:
    M, b = slow_linear()
    x_star = torch.linalg.solve(torch.eye(len(M), dtype=M.dtype) - M, b.T).T
    out, rep = solve_fixed_point(lambda x: x @ M.T + b, torch.zeros_like(b),
                                 FixedPointConfig(max_iter=2000, tol=1e-10, anderson=False))
    assert bool(rep.converged.all()) and not bool(rep.diverged.any())
    assert float((out - x_star).norm() / x_star.norm()) < 1e-8
    assert rep.history.stop_reason == "tol" and rep.history.converged


def test_anderson_needs_fewer_iterations_than_plain_iteration_linear() -> None:
    M, b = slow_linear()
    T = lambda x: x @ M.T + b  # noqa: E731
    _, plain = solve_fixed_point(T, torch.zeros_like(b), FixedPointConfig(max_iter=3000, tol=1e-4, anderson=False))
    _, acc = solve_fixed_point(T, torch.zeros_like(b), FixedPointConfig(max_iter=3000, tol=1e-4, anderson=True))
    assert bool(plain.converged.all()) and bool(acc.converged.all())
    assert bool((2 * acc.iterations < plain.iterations).all()), (acc.iterations, plain.iterations)


def test_anderson_needs_fewer_iterations_on_a_deq_gd_mri_problem() -> None:
    """Gradient descent with a (small-weight) network regulariser on undersampled SENSE: slow plain iteration."""
    A, y, _ = sense_problem(seed=3)
    data = DataTerm(A, y)
    net = tiny_net(1)
    T = GradientStepMap(data, lambda x: x - net(x), step=0.9, lam=0.2)
    counts = {}
    for anderson in (False, True):
        with torch.no_grad():
            _, rep = solve_fixed_point(T, data.aty.clone(), FixedPointConfig(max_iter=3000, tol=1e-4, anderson=anderson))
        assert bool(rep.converged.all()), f"anderson={anderson}: {rep.summary()}"
        counts[anderson] = rep.iterations
    assert bool((2 * counts[True] < counts[False]).all()), counts


def test_mse_criterion_is_the_mean_square_step() -> None:
    T = lambda x: 0.5 * x  # noqa: E731
    x0 = torch.full((1, 4), 2.0, dtype=torch.float64)
    _, rep = solve_fixed_point(T, x0, FixedPointConfig(max_iter=1, tol=0.0, criterion="mse", anderson=False))
    assert float(rep.residual[0]) == pytest.approx(1.0)  # |T(x0) - x0|² = 1 per entry
    _, rep = solve_fixed_point(T, x0, FixedPointConfig(max_iter=1, tol=0.0, criterion="relative", anderson=False))
    assert float(rep.residual[0]) == pytest.approx(1.0)  # ‖-x0/2‖ / ‖x0/2‖


@pytest.mark.parametrize("anderson", [False, True])
def test_divergence_guard_never_lets_nan_or_inf_out(anderson: bool) -> None:
    blow_up = lambda x: 2.0 * x * x + 1.0  # noqa: E731  (no real fixed point; grows doubly exponentially)

    calls = {"n": 0}

    def nan_later(x: torch.Tensor) -> torch.Tensor:
        calls["n"] += 1
        return x * 0.5 + (float("nan") if calls["n"] > 3 else 0.0)

    for T in (blow_up, nan_later):
        x0 = torch.ones(3, 5, dtype=torch.float64)
        out, rep = solve_fixed_point(T, x0, FixedPointConfig(max_iter=200, tol=1e-8, bound=1e3, anderson=anderson))
        assert bool(torch.isfinite(out).all()) and out.abs().max() <= 1e3
        assert not bool(rep.converged.any()) and not rep.history.converged
        if T is nan_later or not anderson:  # (Anderson's safeguard keeps x ↦ 2x² + 1 bounded: no guard needed)
            assert bool(rep.diverged.all()) and rep.history.stop_reason == "diverged"


def test_divergence_of_one_element_does_not_stop_the_others() -> None:
    def T(x: torch.Tensor) -> torch.Tensor:
        out = 0.5 * x + 1.0
        out[1] = 3.0 * x[1] * x[1] + 1.0
        return out

    out, rep = solve_fixed_point(T, torch.zeros(3, 4, dtype=torch.float64),
                                 FixedPointConfig(max_iter=500, tol=1e-10, bound=1e3, anderson=False))
    assert rep.diverged.tolist() == [False, True, False]
    assert rep.converged.tolist() == [True, False, True]
    assert torch.allclose(out[[0, 2]], torch.full((2, 4), 2.0, dtype=torch.float64))
    assert bool(torch.isfinite(out).all())


def test_solver_runs_through_the_run_loop_and_rejects_bad_starts() -> None:
    solver = FixedPointSolver(lambda x: 0.5 * x, FixedPointConfig(max_iter=5, tol=0.0, anderson=False))
    out, hist = run(solver, torch.ones(2, 3))
    assert hist.iterations == 5 and len(hist.residual) == 5 and hist.stop_reason == "max_iter"
    assert torch.allclose(out, torch.full((2, 3), 0.5 ** 5))
    # Anderson solves a linear map exactly and then stops (residual 0), also under run()'s own guard
    solver = FixedPointSolver(lambda x: 0.5 * x + 1.0, FixedPointConfig(max_iter=50, tol=0.0))
    out, hist = run(solver, torch.ones(2, 3, dtype=torch.float64))
    assert torch.allclose(out, torch.full((2, 3), 2.0, dtype=torch.float64)) and solver.done(solver.final)
    with pytest.raises(NonFiniteError, match="x0"):
        run(solver, torch.tensor([[1.0, float("nan")]]))
    with pytest.raises(ConfigError, match="memory"):
        FixedPointConfig(memory=0)


# ---------------------------------------------------------------------------------------------
# the layer: gradients
# ---------------------------------------------------------------------------------------------
def gd_loss(step: torch.Tensor, lam: torch.Tensor, net: torch.nn.Module, data: DataTerm, x_ref: torch.Tensor,
            method: str, tol: float = 1e-12) -> torch.Tensor:
    layer = FixedPointLayer(FixedPointConfig(max_iter=5000, tol=tol), FixedPointConfig(max_iter=5000, tol=tol),
                            method=method)  # type: ignore[arg-type]
    T = GradientStepMap(data, lambda x: x - net(x), step, lam)
    z, _ = layer(T, data.aty)
    return (z - x_ref).abs().square().sum()


def test_implicit_gradient_matches_finite_differences() -> None:
    A, y, x_true = sense_problem(seed=5, accel_keep=0.8)  # a well-conditioned contraction: tight solves are fast
    data = DataTerm(A, y)
    net = tiny_net(2)
    step = torch.tensor(0.8, dtype=torch.float64, requires_grad=True)
    lam = torch.tensor(0.3, dtype=torch.float64, requires_grad=True)
    w = net.net[0].weight
    loss = gd_loss(step, lam, net, data, x_true, "implicit")
    g_step, g_lam, g_w = torch.autograd.grad(loss, (step, lam, w))

    def L(s: float, lm: float) -> float:
        with torch.no_grad():
            return float(gd_loss(torch.tensor(s, dtype=torch.float64), torch.tensor(lm, dtype=torch.float64), net,
                                 data, x_true, "implicit"))

    eps = 1e-6
    fd_step = (L(0.8 + eps, 0.3) - L(0.8 - eps, 0.3)) / (2 * eps)
    fd_lam = (L(0.8, 0.3 + eps) - L(0.8, 0.3 - eps)) / (2 * eps)
    # the fixed point of gradient descent (∇f + λR = 0) does not depend on the step: both derivatives vanish
    assert abs(float(g_step)) < 1e-9 and abs(fd_step) < 1e-7
    assert float(g_lam) == pytest.approx(fd_lam, rel=1e-5, abs=1e-9)
    # the network weight with the largest gradient
    flat = int(g_w.abs().argmax())
    idx = tuple(int(i) for i in torch.unravel_index(torch.tensor(flat), g_w.shape))
    assert float(g_w.abs().max()) > 1e-4
    with torch.no_grad():
        w0 = float(w[idx])
        w[idx] = w0 + eps
        lp = L(0.8, 0.3)
        w[idx] = w0 - eps
        lm_ = L(0.8, 0.3)
        w[idx] = w0
    assert float(g_w[idx]) == pytest.approx((lp - lm_) / (2 * eps), rel=1e-5, abs=1e-9)
    # the gradient with respect to the data y as well
    y_var = y.clone().requires_grad_(True)
    loss_y = gd_loss(step.detach(), lam.detach(), net, DataTerm(A, y_var), x_true, "implicit")
    (g_y,) = torch.autograd.grad(loss_y, y_var)
    e = torch.zeros_like(y)
    j = (1, 2, 4, 3)
    e[j] = eps
    with torch.no_grad():
        fd_y = (float(gd_loss(step.detach(), lam.detach(), net, DataTerm(A, y + e), x_true, "implicit"))
                - float(gd_loss(step.detach(), lam.detach(), net, DataTerm(A, y - e), x_true, "implicit"))) / (2 * eps)
    assert float(g_y[j].real) == pytest.approx(fd_y, rel=1e-5, abs=1e-9)


def test_jfb_gives_a_descent_direction() -> None:
    A, y, x_true = sense_problem(seed=7, accel_keep=0.8)
    data = DataTerm(A, y)
    net = tiny_net(4)
    params = list(net.parameters())
    step = torch.tensor(0.8, dtype=torch.float64)
    lam = torch.tensor(0.3, dtype=torch.float64)
    true = torch.autograd.grad(gd_loss(step, lam, net, data, x_true, "implicit"), params)
    jfb = torch.autograd.grad(gd_loss(step, lam, net, data, x_true, "jfb"), params)
    dot = sum(float((a * b).sum()) for a, b in zip(jfb, true))
    # the update direction -g_jfb has a negative inner product with the true gradient
    assert -dot < 0
    # and it is not the true gradient itself (JFB drops the (I - J)^-1 factor)
    assert any(not torch.allclose(a, b) for a, b in zip(jfb, true))


def test_backward_report_is_filled_and_backward_divergence_falls_back_to_jfb() -> None:
    A, y, x_true = sense_problem(seed=9)
    data = DataTerm(A, y)
    net = tiny_net(5)
    step = torch.tensor(0.8, dtype=torch.float64, requires_grad=True)
    layer = FixedPointLayer(FixedPointConfig(max_iter=500, tol=1e-10),
                            FixedPointConfig(max_iter=500, tol=1e-10, bound=1e-30))  # every adjoint element "diverges"
    T = GradientStepMap(data, lambda x: x - net(x), step, 0.3)
    z, rep = layer(T, data.aty)
    assert rep.backward is None
    (g,) = torch.autograd.grad((z - x_true).abs().square().sum(), step)
    assert rep.backward is not None and bool(rep.backward.diverged.all())
    layer_jfb = FixedPointLayer(FixedPointConfig(max_iter=500, tol=1e-10), method="jfb")
    z2, _ = layer_jfb(T, data.aty)
    (g2,) = torch.autograd.grad((z2 - x_true).abs().square().sum(), step)
    assert torch.isfinite(g) and float(g) == pytest.approx(float(g2), rel=1e-8)
    assert set(rep.summary()) >= {"fwd/iters", "bwd/iters", "fwd/diverged", "bwd/diverged"}


# ---------------------------------------------------------------------------------------------
# iterations
# ---------------------------------------------------------------------------------------------
def test_data_prox_matches_the_normal_equations() -> None:
    A, y, _ = sense_problem(seed=11)
    data = DataTerm(A, y, cg_iters=200)
    v = randc(2, 9, 7, seed=12)
    x = data.prox(v, 0.7)
    resid = A.N(x) + x / 0.7 - A.H(y) - v / 0.7
    assert float(resid.norm() / v.norm()) < 1e-10


def test_fixed_points_of_the_three_iterations() -> None:
    A, y, _ = sense_problem(seed=13)
    data = DataTerm(A, y, cg_iters=100)
    net = tiny_net(6)
    cfg = FixedPointConfig(max_iter=3000, tol=1e-12)
    with torch.no_grad():
        gd = GradientStepMap(data, lambda x: x - net(x), 0.8, 0.3)
        x, rep = solve_fixed_point(gd, data.aty, cfg)
        assert bool(rep.converged.all())
        assert float((data.grad(x) + 0.3 * (x - net(x))).norm()) < 1e-9   # stationarity
        fbs = ForwardBackwardMap(data, net, 0.9)
        x, rep = solve_fixed_point(fbs, data.aty, cfg)
        assert bool(rep.converged.all())
        assert float((net(x - 0.9 * data.grad(x)) - x).norm()) < 1e-9
        admm = ADMMMap(data, net, 0.7)
        s, rep = solve_fixed_point(admm, admm.init(data.aty), cfg)
        assert bool(rep.converged.all())
        x = admm.output(s)
        assert float((x - s[:, 0]).norm() / x.norm()) < 1e-8   # x = z at a fixed point
        assert not admm.image_state and gd.image_state


# ---------------------------------------------------------------------------------------------
# networks
# ---------------------------------------------------------------------------------------------
def small_deq(iteration: str = "gd", **kw: object) -> torch.nn.Module:
    cfg = {"iteration": iteration, "network_options": {"depth": 3, "width": 4}, "max_iter": 200, "tol": 1e-6,
           "init_iters": 3, "cg_iters": 5, **kw}
    model = build_model("deq", cfg, seed=0).double()
    with torch.no_grad():  # small weights: a contractive iteration
        for p in model.net.parameters():
            p.mul_(0.3)
    return model


@pytest.mark.parametrize("iteration", ["gd", "fbs", "admm"])
def test_deq_network_is_scale_equivariant_and_reports(iteration: str) -> None:
    A, y, _ = sense_problem(seed=15)
    model = small_deq(iteration)
    with torch.no_grad():
        x1 = model.forward_op(y, A)
        rep = model.last_report
        x2 = model.forward_op(1e-5 * y, A)
    assert x1.shape == (2, 9, 7) and x1.dtype == C128
    assert torch.allclose(1e-5 * x1, x2, rtol=1e-6, atol=1e-12)
    assert rep is not None and rep.forward.iterations.shape == (2,) and bool(rep.forward.converged.all())


def test_deq_trains_end_to_end_with_gradients_to_every_parameter() -> None:
    A, y, x_true = sense_problem(seed=17)
    model = small_deq("gd", max_iter=50, tol=1e-4, backward_max_iter=50)
    p = model.prepare(y, A)
    out = model.solve(p)
    loss = (out - x_true / p.scale.reshape(-1, 1, 1)).abs().square().mean()
    loss.backward()
    assert all(q.grad is not None and bool(torch.isfinite(q.grad).all()) for q in model.parameters())
    assert model.last_report is not None and model.last_report.backward is not None


def test_deq_with_a_diverging_step_returns_finite_images() -> None:
    A, y, _ = sense_problem(seed=19)
    model = small_deq("gd", step=50.0, lam=50.0, bound=10.0)
    with torch.no_grad():
        x = model.forward_op(y, A)
    assert bool(torch.isfinite(torch.view_as_real(x)).all())
    assert model.last_report is not None and bool(model.last_report.forward.diverged.any())


def test_unrolled_admm_runs_on_sense_and_on_a_blur_with_gradients() -> None:
    model = build_model("unrolled-admm", {"iterations": 3, "network_options": {"depth": 3, "width": 4},
                                          "tied_parameters": False, "init_iters": 3, "cg_iters": 4}, seed=0).double()
    A, y, x_true = sense_problem(seed=21)
    x = model.forward_op(y, A)
    x.abs().square().mean().backward()
    assert all(q.grad is not None for q in model.parameters())
    assert len(model.alphas) == 3 and model.last_history.iterations == 3
    B = Blur(gaussian_kernel(1.0, 5), (9, 7))
    xb = x_true[:, :, :]
    yb = B(xb)
    with torch.no_grad():
        out = model.forward_op(yb, B)
        model.configure(iterations=6)  # tied weights: more iterations than trained
        out6 = model.forward_op(yb, B)
    assert out.shape == xb.shape and bool(torch.isfinite(torch.view_as_real(out6)).all())
    assert model.last_history.iterations == 6
    with pytest.raises(ConfigError):
        model.configure(iterations=0)


def test_network_config_errors_name_the_problem() -> None:
    with pytest.raises(ConfigError, match="iteration"):
        build_model("deq", {"iteration": "newton"})
    with pytest.raises(ConfigError, match="network"):
        build_model("deq", {"network": "no-such-net"})
    with pytest.raises(ConfigError, match="iterations"):
        build_model("unrolled-admm", {"iterations": 0})
    model = small_deq("admm")
    with pytest.raises(ConfigError, match="not defined"):
        A, y, x = sense_problem()
        model.one_step_residual(x, DataTerm(A, y))
    with pytest.raises(ConfigError, match="unknown setting"):
        model.configure(max_iters=3)
    assert math.isfinite(float(model.value("alpha")))


def test_iterates_stay_in_the_support_of_the_coil_maps() -> None:
    """Pixels that no coil sees (maps zero, as ESPIRiT's outside the object) are set to zero by every iteration."""
    A, y, _ = sense_problem(seed=23)
    maps = A.maps.clone()
    maps[..., :2, :] = 0
    B = Sense(maps, A.mask)
    data = DataTerm(B, B(randc(2, 9, 7, seed=24)))
    assert data.support is not None and float(data.support[..., :2, :].abs().sum()) == 0
    net = tiny_net(7)
    x0 = randc(2, 9, 7, seed=25)
    for T in (GradientStepMap(data, lambda x: x - net(x), 0.8, 0.3), ForwardBackwardMap(data, net, 0.9)):
        assert float(T(x0)[..., :2, :].abs().max()) == 0
    admm = ADMMMap(data, net, 0.7)
    assert float(admm(admm.init(x0))[..., :2, :].abs().max()) == 0
    assert DataTerm(A, y).support is None                       # maps nonzero everywhere: no restriction
    assert A.coil_support() is None and torch.equal(B.coil_support(), data.support > 0)
    assert DataTerm(B, data.y, restrict_support=False).support is None


def test_scale_of_an_image_of_isolated_values_is_its_maximum_not_one() -> None:
    """A crop of background noise: the 3x3 median of |x_ls| is zero everywhere, so the scale falls back to the plain
    maximum (data normalised to O(1)), and only all-zero data keep the scale 1."""
    from mrirecon.models.model_based import prepare_problem
    from mrirecon.operators.fft import FFT

    A = FFT((9, 8))
    x = torch.zeros(2, 9, 8, dtype=C128)
    x[0, 2, 3] = 3e-6
    x[0, 6, 5] = -2e-6j
    p = prepare_problem(A(x), A, init_iters=2)
    assert float(p.scale[0]) == pytest.approx(3e-6, rel=1e-6)
    assert float(p.scale[1]) == 1.0
    assert float(p.x0[0].abs().max()) == pytest.approx(1.0, rel=1e-6)


# ---------------------------------------------------------------------------------------------
# a DEQ with a certified contraction: T = D ∘ (I − η A^H A), Lip(D) ≤ ε by real spectral normalisation
# ---------------------------------------------------------------------------------------------
SN_NET = {"depth": 3, "width": 4, "residual": False, "lipschitz": 0.8, "activation": "maxmin", "sn_size": 16}


def test_non_residual_sn_dncnn_bounds_lip_d_and_keeps_its_graph_across_calls() -> None:
    net = build_model("dncnn", SN_NET, seed=1).double()
    assert net.lipschitz_bounds() == pytest.approx({"D": 0.8, "I-D": 1.8}, rel=1e-6)
    assert net.lipschitz_bound() == pytest.approx(1.8)  # the I − D bound that PnP reports stays valid
    res = build_model("dncnn", {**SN_NET, "residual": True}, seed=1)
    assert res.lipschitz_bounds() == pytest.approx({"D": 1.8, "I-D": 0.8}, rel=1e-6)
    # a DEQ calls its network several times before one backward pass: the power-iteration buffer
    # advances in place between the calls and must not be part of the graph
    net.train()
    x = randc(2, 12, 10, seed=3)
    y = net(x)
    net(x)
    y.abs().sum().backward()
    net.eval()
    with torch.no_grad():
        ratios = [float((net(x + d) - net(x)).abs().pow(2).sum().sqrt() / d.abs().pow(2).sum().sqrt())
                  for d in (1e-3 * randc(2, 12, 10, seed=s) for s in range(5))]
    assert max(ratios) <= 0.8 * (1 + 1e-3)


def test_positive_scalar_with_an_upper_bound() -> None:
    from mrirecon.models.equilibrium import PositiveScalar

    p = PositiveScalar(1.5, learn=True, upper=2.0)
    assert float(p().detach()) == pytest.approx(1.5)
    with torch.no_grad():
        p.raw.fill_(50.0)
    assert float(p().detach()) <= 2.0  # saturates at the bound (η = 2/‖A‖² still gives Lip(T) ≤ ε)
    with pytest.raises(ConfigError):
        PositiveScalar(2.5, learn=True, upper=2.0)


def test_fbs_deq_with_a_certified_contraction_converges_to_one_fixed_point() -> None:
    A, y, _ = sense_problem(h=12, w=10, seed=31)
    model = build_model("deq", {"iteration": "fbs", "network_options": SN_NET, "step": 1.5, "step_max": 2.0,
                                "max_iter": 400, "tol": 1e-9, "anderson": False, "init_iters": 3}, seed=0).double()
    model.eval()
    bound = model.contraction_bound()  # ‖A‖ ≤ 1 with normalised maps
    # certified by the layers' frequency-domain norms: at least the nominal ε = 0.8 (the power iteration that
    # normalised the layers underestimates their norms, here by ~4 %), and still a contraction
    assert bound is not None and 0.8 - 1e-6 <= bound < 1
    p = model.prepare(y, A)
    T = model.iteration_map(p.data)
    with torch.no_grad():
        # the measured one-step ratio never exceeds the certified bound
        for s in range(3):
            u, v = randc(2, 12, 10, seed=40 + s), randc(2, 12, 10, seed=50 + s)
            num = (T(u) - T(v)).abs().pow(2).sum(dim=(-2, -1)).sqrt()
            den = (u - v).abs().pow(2).sum(dim=(-2, -1)).sqrt()
            assert bool((num <= bound * den * (1 + 1e-9)).all())
        x1 = model.solve(p)
        rep = model.last_report
        x0 = 3.0 * randc(2, 12, 10, seed=60)  # another start: the same limit (the fixed point is unique)
        s, _ = model.layer(T, x0)
        x2 = T.output(s)
    assert rep is not None and bool(rep.forward.converged.all())
    assert torch.allclose(x1, x2, atol=1e-7)
    assert build_model("deq", {"iteration": "gd", "network_options": SN_NET}, seed=0).contraction_bound() is None


# ---------------------------------------------------------------------------------------------
# DEQ-ADMM with the noise-adaptive alpha of pnp-admm, and without the support restriction
# ---------------------------------------------------------------------------------------------
def test_noise_adaptive_alpha_follows_the_estimated_noise_per_element() -> None:
    from mrirecon.solvers.scaling import estimate_noise

    A, y, _ = sense_problem(h=24, w=20, coils=4, seed=31)
    model = small_deq("admm", sigma=0.1, alpha=2.0)
    p = model.prepare(y, A)
    assert p.noise is not None and p.noise.shape == (2,)
    expected = estimate_noise(y, A.mask) / p.scale
    assert torch.allclose(p.noise, expected)
    alpha = model.admm_alpha(p.noise, 2)
    assert alpha.shape == (2, 1, 1)
    assert torch.allclose(alpha.reshape(2), 2.0 * (0.1 / expected) ** 2, rtol=1e-6)
    T = model.iteration_map(p.data, p.noise)
    assert isinstance(T, ADMMMap) and T.alpha is not None and torch.equal(T.alpha, alpha)
    # the noise level unknown (NaN) or not asked for: alpha is the learned factor itself
    nan = torch.tensor([math.nan, float(p.noise[1])], dtype=torch.float64)
    a2 = model.admm_alpha(nan, 2).reshape(2).detach()
    assert float(a2[0]) == pytest.approx(2.0) and float(a2[1]) == pytest.approx(float(alpha[1].detach()))
    assert float(model.admm_alpha(None, 2).detach()) == pytest.approx(2.0)
    assert small_deq("admm", alpha=2.0).prepare(y, A).noise is None
    # a general imaging operator: no k-space noise estimate, alpha = a
    B = Blur(gaussian_kernel(1.0, 5), (9, 7))
    pb = model.prepare(B(randc(2, 9, 7, seed=33)), B)
    assert pb.noise is not None and bool(pb.noise.isnan().all())
    with torch.no_grad():
        assert bool(torch.isfinite(torch.view_as_real(model.forward_op(B(randc(2, 9, 7, seed=33)), B))).all())


def test_noise_adaptive_alpha_needs_admm_and_a_positive_sigma() -> None:
    for kw in ({"iteration": "gd", "sigma": 0.1}, {"iteration": "fbs", "sigma": 0.1},
               {"iteration": "admm", "sigma": 0.0}, {"iteration": "admm", "sigma": -1.0}):
        with pytest.raises(ConfigError, match="sigma"):
            build_model("deq", kw)


def test_support_false_leaves_the_unseen_pixels_to_the_prior() -> None:
    A, _, _ = sense_problem(seed=35)
    maps = A.maps.clone()
    maps[..., :2, :] = 0
    B = Sense(maps, A.mask)
    yb = B(randc(2, 9, 7, seed=36))
    with torch.no_grad():
        inside = small_deq("admm").forward_op(yb, B)
        free = small_deq("admm", support=False).forward_op(yb, B)
    assert float(inside[..., :2, :].abs().max()) == 0
    assert float(free[..., :2, :].abs().max()) > 0
    assert small_deq("admm", support=False).prepare(yb, B).data.support is None

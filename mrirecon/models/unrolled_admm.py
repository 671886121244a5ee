"""Differentiable unrolled ADMM (after Milacski et al.): ``T`` PnP-ADMM iterations with tied weights, trained end to end.

With ``f(x) = ½‖Ax − y‖²`` (normalised units, :mod:`mrirecon.models.model_based`), a learned denoiser network
``D_θ`` and learned weights ``α_t > 0`` (the ADMM penalty is ``ρ_t = 1/α_t``), from ``z_0 = x_ls``, ``u_0 = 0``::

    x_t = prox_{α_t f}(z_{t−1} − u_{t−1})     (cg_iters CG steps, differentiable)
    z_t = D_θ(x_t + u_{t−1})
    u_t = u_{t−1} + x_t − z_t                 t = 1 … T
    output  x_{T+1} = prox_{α_T f}(z_T − u_T)  (data-consistent)

The network ``D_θ`` is shared by every iteration (tied weights); ``α`` is one learned scalar
(``tied_parameters``) or one per iteration. Nothing here depends on the operator being SENSE: the same network
runs on any :class:`~mrirecon.operators.linop.Linop` (``forward_op(y, A)``), which is how it is trained across a
mixture of forward models. Because the weights are tied, the number of iterations can be changed at
inference (:meth:`UnrolledADMM.configure`; per-iteration ``α`` then repeats its last value).
"""
from __future__ import annotations

import time
from typing import Any

import torch
from torch import nn

from mrirecon.denoisers.registry import register
from mrirecon.errors import ConfigError
from mrirecon.models.equilibrium import PositiveScalar
from mrirecon.models.model_based import ModelBased, Problem, build_network
from mrirecon.solvers.base import History
from mrirecon.solvers.deq import ADMMMap


@register("unrolled-admm")
class UnrolledADMM(ModelBased):
    """Unrolled PnP-ADMM with a tied learned denoiser and learned penalties (see the module docstring).

    Args:
        iterations: ``T``, the number of unrolled iterations.
        network: a registered denoiser network used as ``D_θ``.
        network_options: its constructor arguments.
        alpha: initial ``α`` (``1/ρ``).
        tied_parameters: one ``α`` for all iterations (else one per iteration).
        learn_parameters: learn ``α`` (else fixed).
        cg_iters: CG steps per data prox.
        init_iters: CG steps of the start/scale estimate.

    Raises:
        ConfigError: ``iterations < 1`` or an unknown network.
    """

    def __init__(self, iterations: int = 8, network: str = "dncnn", network_options: dict[str, Any] | None = None,
                 alpha: float = 1.0, tied_parameters: bool = True, learn_parameters: bool = True, cg_iters: int = 10,
                 init_iters: int = 10) -> None:
        super().__init__()
        if iterations < 1:
            raise ConfigError(f"UnrolledADMM: iterations must be >= 1, got {iterations}")
        self.iterations = int(iterations)
        self.run_iterations = self.iterations
        self.net = build_network(network, network_options, "UnrolledADMM")
        n = 1 if tied_parameters else self.iterations
        self.alphas = nn.ModuleList(PositiveScalar(alpha, learn_parameters) for _ in range(n))
        self.cg_iters, self.init_iters = int(cg_iters), int(init_iters)
        self.tol = 0.0
        self.last_history: History | None = None

    def alpha(self, t: int) -> torch.Tensor:
        """``α_t`` (0-based ``t``; beyond the trained iterations the last one repeats)."""
        return self.alphas[min(t, len(self.alphas) - 1)]()

    def configure(self, iterations: int | None = None, tol: float | None = None) -> None:
        """Run a different number of iterations from now on (the weights are tied), or stop early at inference.

        Args:
            iterations: ``T`` at most.
            tol: without autograd, stop once ``‖z_t − z_{t−1}‖ / ‖z_t‖ ≤ tol`` for every batch element (0: never).

        Raises:
            ConfigError: ``iterations < 1`` or ``tol < 0``.
        """
        if iterations is not None:
            if iterations < 1:
                raise ConfigError(f"UnrolledADMM: iterations must be >= 1, got {iterations}")
            self.run_iterations = int(iterations)
        if tol is not None:
            if not tol >= 0:
                raise ConfigError(f"UnrolledADMM: tol must be >= 0, got {tol}")
            self.tol = float(tol)

    def solve(self, problem: Problem) -> torch.Tensor:
        """``x_{T+1}`` of the normalised problem; :attr:`last_history` records ``‖z_t − z_{t−1}‖ / ‖z_t‖`` per iteration."""
        data = problem.data
        s = ADMMMap(data, self.net, self.alpha(0)).init(problem.x0)
        T = self.run_iterations
        hist = History()
        t0 = time.perf_counter()
        t_used = 0
        for t in range(T):
            s_new = ADMMMap(data, self.net, self.alpha(t))(s)
            with torch.no_grad():
                dz = (s_new[:, 0] - s[:, 0]).reshape(s.shape[0], -1).norm(dim=1)
                rel = dz / s_new[:, 0].reshape(s.shape[0], -1).norm(dim=1).clamp_min(1e-30)
            s, t_used = s_new, t + 1
            hist.residual.append(float(rel.max()))
            hist.time.append(time.perf_counter() - t0)
            if self.tol > 0 and not torch.is_grad_enabled() and bool((rel <= self.tol).all()):
                hist.converged, hist.stop_reason = True, "tol"
                break
        hist.iterations = t_used
        if not hist.stop_reason:
            hist.stop_reason = "max_iter"
        self.last_history = hist
        return ADMMMap(data, self.net, self.alpha(t_used - 1)).output(s)

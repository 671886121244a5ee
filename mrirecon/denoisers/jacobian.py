"""Spectral norms of Jacobians by power iteration with autograd, and the firm-non-expansiveness penalty.

For a map ``f: R^n -> R^n`` (a denoiser on real channels) and a point ``x``, the largest singular value
of ``J = ∂f/∂x`` is found by power iteration on ``Jᵀ J``. Both products come from reverse-mode
autograd: one forward pass builds ``y = f(x)``; ``g(u) = Jᵀ u`` is a vector-Jacobian product built
with ``create_graph=True``; ``J v`` is then the gradient of ``⟨g(u), v⟩`` with respect to ``u``
(the "double-vjp" Jacobian-vector product), which works for any differentiable network, including
gradient-step denoisers that differentiate inside their forward.

Affine combinations ``M = a·J + b·I`` (``I − D``: ``a=−1, b=1``; ``2D − I``: ``a=2, b=−1``) reuse the
same graph.

Penalty (Pesquet et al. 2021, Terris et al. 2020): with ``Q = 2D − I``,
``λ · max(‖J_Q(x̃)‖², 1 − ε)`` at random points ``x̃ = t·x + (1 − t)·y`` between clean ``x`` and noisy
``y`` images (``t ~ U[0, 1]``) pushes ``‖J_Q‖ ≤ 1`` everywhere it is evaluated, i.e. ``Q`` non-expansive
and ``D = (Q + I)/2`` firmly non-expansive.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

RealMap = Callable[[torch.Tensor], torch.Tensor]


def _bnorm(v: torch.Tensor) -> torch.Tensor:
    """Per-sample 2-norms of a batch ``[B, ...]`` -> ``[B]``."""
    return v.flatten(1).norm(dim=1)


def _bnormalise(v: torch.Tensor) -> torch.Tensor:
    return v / _bnorm(v).clamp_min(1e-30).reshape(-1, *([1] * (v.ndim - 1)))


@dataclass
class JacobianNorms:
    """Per-sample spectral-norm estimates ``[B]`` of ``a·J + b·I`` for each requested ``(a, b)``."""

    norms: dict[tuple[float, float], torch.Tensor]


class JacobianProducts:
    """``J v`` and ``Jᵀ u`` of a map ``f`` at a point ``x`` (batch ``[B, ...]``, per-sample Jacobians).

    Args:
        f: the map, real tensors ``[B, ...]`` -> ``[B, ...]`` acting on each sample independently.
        x: the point (detached inside).
        create_graph: keep the graph for differentiating the products with respect to ``f``'s parameters.
    """

    def __init__(self, f: RealMap, x: torch.Tensor, create_graph: bool = False) -> None:
        with torch.enable_grad():
            self.x = x.detach().requires_grad_(True)
            self.y = f(self.x)
            if self.y.shape != self.x.shape:
                raise ValueError(f"JacobianProducts: f must map {list(self.x.shape)} to the same shape, "
                                 f"got {list(self.y.shape)}")
            self.u = torch.zeros_like(self.y, requires_grad=True)
            (self.g,) = torch.autograd.grad(self.y, self.x, self.u, create_graph=True)
        self.create_graph = create_graph

    def jvp(self, v: torch.Tensor, create_graph: bool | None = None) -> torch.Tensor:
        """``J v``."""
        cg = self.create_graph if create_graph is None else create_graph
        with torch.enable_grad():
            (out,) = torch.autograd.grad(self.g, self.u, v, retain_graph=True, create_graph=cg)
        return out

    def vjp(self, u: torch.Tensor, create_graph: bool | None = None) -> torch.Tensor:
        """``Jᵀ u``."""
        cg = self.create_graph if create_graph is None else create_graph
        with torch.enable_grad():
            (out,) = torch.autograd.grad(self.y, self.x, u, retain_graph=True, create_graph=cg)
        return out


def jacobian_spectral_norm(f: RealMap, x: torch.Tensor, iters: int = 50, a: float = 1.0, b: float = 0.0,
                           generator: torch.Generator | None = None, tol: float = 0.0,
                           create_graph: bool = False, products: JacobianProducts | None = None,
                           ) -> torch.Tensor:
    """Per-sample largest singular value of ``M = a·J_f(x) + b·I`` by power iteration on ``Mᵀ M``.

    ``σ_k = ‖M v_k‖`` with ``v_{k+1} = Mᵀ M v_k / ‖Mᵀ M v_k‖`` (per sample); ``σ_k`` increases to the
    largest singular value (a lower bound at every step).

    Args:
        f: the map (real tensors, per-sample).
        x: the point ``[B, ...]``.
        iters: power-iteration steps (the last one is differentiable when ``create_graph``).
        a, b: the affine combination (``J``: 1, 0; ``I − J``: −1, 1; ``2J − I``: 2, −1).
        generator: seeds the random start vector.
        tol: stop early when every sample's estimate changes by less than ``tol`` relatively.
        create_graph: return a value differentiable with respect to ``f``'s parameters (for penalties).
        products: reuse the graph of a :class:`JacobianProducts` at ``x``.

    Returns:
        ``[B]`` estimates of ``‖a·J + b·I‖₂``.
    """
    prod = products or JacobianProducts(f, x, create_graph=create_graph)
    v = _bnormalise(torch.randn(x.shape, generator=generator, dtype=x.dtype).to(x.device))

    def mv(vv: torch.Tensor, cg: bool) -> torch.Tensor:
        return a * prod.jvp(vv, cg) + b * vv

    def mtv(uu: torch.Tensor) -> torch.Tensor:
        return a * prod.vjp(uu, False) + b * uu

    prev = None
    for _ in range(max(iters - 1, 0)):
        w = mtv(mv(v, False).detach()).detach()
        est = _bnorm(w).sqrt()  # ‖MᵀM v‖^(1/2) ≤ σ_max, increasing
        v = _bnormalise(w)
        if tol > 0 and prev is not None and bool(((est - prev).abs() <= tol * est.clamp_min(1e-30)).all()):
            break
        prev = est
    return _bnorm(mv(v, create_graph))


@dataclass
class PenaltyResult:
    """The value of the penalty (a scalar to add to the loss) and the measured ``‖J_Q(x̃)‖`` per point."""

    penalty: torch.Tensor
    norms: torch.Tensor


def fne_penalty(denoise: RealMap, clean: torch.Tensor, noisy: torch.Tensor, lam: float, eps: float = 0.05,
                iters: int = 10, generator: torch.Generator | None = None) -> PenaltyResult:
    """``λ · mean_i max(‖J_Q(x̃_i)‖², 1 − ε)`` with ``Q = 2D − I`` at ``x̃ = t·clean + (1 − t)·noisy``.

    Args:
        denoise: ``D`` on real channels ``[B, 2, H, W]`` (closed over σ if it takes a noise map).
        clean, noisy: ``[B, 2, H, W]``.
        lam: ``λ``.
        eps: ``ε``; below ``‖J_Q‖² = 1 − ε`` the penalty is constant (no gradient).
        iters: power-iteration steps (the last is differentiable in ``D``'s parameters).
        generator: seeds ``t`` and the power-iteration start.

    Returns:
        :class:`PenaltyResult` (penalty differentiable in ``D``'s parameters).
    """
    b = clean.shape[0]
    t = torch.rand(b, generator=generator, dtype=clean.dtype).to(clean.device).reshape(b, 1, 1, 1)
    point = (t * clean + (1 - t) * noisy).detach()
    norms = jacobian_spectral_norm(denoise, point, iters=iters, a=2.0, b=-1.0, generator=generator,
                                   create_graph=True)
    pen = torch.clamp(norms.square(), min=1.0 - eps).mean() * lam
    return PenaltyResult(pen, norms.detach())

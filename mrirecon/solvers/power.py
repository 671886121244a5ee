"""Power iteration: the largest eigenvalue of a Hermitian positive semi-definite operator (``‖A‖²`` from ``A^H A``)."""
from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

from mrirecon.operators.linop import Linop, finite_checks
from mrirecon.solvers.base import batch_norm


def _norm(x: torch.Tensor) -> torch.Tensor:
    """The Euclidean norm of the whole tensor."""
    return batch_norm(x, x.ndim)


def power_iteration(op: Linop | Callable[[torch.Tensor], torch.Tensor], shape: Sequence[int] | None = None,
                    iters: int = 30, tol: float = 1e-4, seed: int = 0, dtype: torch.dtype = torch.complex64,
                    device: torch.device | str | None = None, x0: torch.Tensor | None = None
                    ) -> tuple[torch.Tensor, torch.Tensor]:
    """Largest eigenvalue of a Hermitian PSD operator ``N`` (e.g. ``A.N`` gives ``‖A‖²``) by power iteration.

    Args:
        op: the operator ``N`` (a :class:`Linop`, or a callable on tensors of ``shape``).
        shape: shape of one input (with any batch dims: one eigenvalue per batch element of the
            leading dims is *not* computed; the whole tensor is one vector). Default ``op.ishape``.
        iters: maximum number of iterations.
        tol: stop when the eigenvalue estimate changes by less than ``tol`` (relative).
        seed: seed of the random start vector (``torch.Generator``; the global RNG is not used).
        dtype, device: of the start vector.
        x0: start vector instead of a random one.

    Returns:
        ``(lam, v)``: the eigenvalue estimate (a 0-d real tensor, a lower bound that converges to
        ``λ_max``) and the unit-norm eigenvector estimate.
    """
    if x0 is None:
        if shape is None:
            if not isinstance(op, Linop):
                raise ValueError("power_iteration: give `shape` when `op` is not a Linop")
            shape = op.ishape
        gen = torch.Generator(device="cpu").manual_seed(seed)
        x = torch.randn(tuple(shape), generator=gen, dtype=dtype).to(device)
    else:
        x = x0.clone()
    apply = op._apply if isinstance(op, Linop) else op
    x = x / _norm(x)
    lam = torch.zeros((), dtype=x.real.dtype, device=x.device)
    with torch.no_grad(), finite_checks(False):
        for _ in range(iters):
            y = apply(x)
            new = _norm(y)
            if new == 0:
                return new, x
            x = y / new
            done = (new - lam).abs() <= tol * new
            lam = new
            if done:
                break
    return lam, x

"""The data-consistency proximal operator of ``f(x) = ½‖Ax − y‖²``, exact where the normal operator allows.

``prox_{αf}(v) = argmin_x ½‖Ax − y‖² + (1/2α)‖x − v‖² = (I + α A^H A)^{-1} (v + α A^H y)``

is the data step of PnP-ADMM and of gradient-step PnP. :func:`data_prox` picks the exact form that the
operator admits and falls back to conjugate gradients otherwise:

======================================  =====================================================  ==================
operator ``A``                          normal ``A^H A``                                       prox
======================================  =====================================================  ==================
``Multiply``/``Inpaint``/``Identity``,  diagonal ``w``                                         ``(v + αA^H y) / (1 + αw)``
fully sampled single-set ``Sense``      ``Σ_c |S_c|²`` (times the constant mask)
single-coil Cartesian ``Sense`` with    ``S^H F^H M² F S`` (``S`` unitary diagonal)            ``S^H F^H [F S (v + αA^H y) / (1 + αM²)]``
``|S| = 1``, ``Sample ∘ FFT``
``Blur(boundary="circular")``           circulant: ``fft2^{-1} diag(d) fft2``                  ``fft2^{-1}[fft2(v + αA^H y) / (1 + αd)]``
anything else (multicoil SENSE, ...)    ``A.N`` (the fast SENSE normal)                        CG, warm-started
======================================  =====================================================  ==================

The CG form solves ``(A^H A + I/α) x = A^H y + v/α`` (condition number ``(α‖A‖² + 1)/(αμ + 1)``, small for
moderate ``α``: a few iterations suffice, fewer when warm-started from the previous iterate).
"""
from __future__ import annotations

import math

import torch

from mrirecon.errors import ConfigError, ShapeError
from mrirecon.operators.fft import FFT, fft2c, ifft2c
from mrirecon.operators.imaging import Blur
from mrirecon.operators.linop import Compose, Identity, Linop, Multiply, check_tensor, finite_checks
from mrirecon.operators.sense import Sense
from mrirecon.solvers.cg import ConjugateGradient
from mrirecon.solvers.terms import _sum_trailing


class DataProx:
    """``f(x) = ½‖Ax − y‖²`` with its gradient and the proximal map ``prox_{αf}``.

    Args:
        A: forward operator, images ``[..., *A.ishape]`` to data ``[..., *A.oshape]``.
        y: measured data ``[..., *A.oshape]`` (not modified).

    Attributes:
        exact: whether :meth:`prox` is a closed form (``False``: an iterative solve).
        kind: ``"diagonal"``, ``"cartesian"``, ``"circulant"`` or ``"cg"``.
        last_iters: inner iterations of the last :meth:`prox` call (0 for closed forms).
    """

    exact: bool = True
    kind: str = ""

    def __init__(self, A: Linop, y: torch.Tensor) -> None:
        check_tensor(y, A.oshape, f"{type(self).__name__}({A.name})", "data y")
        self.A, self.y = A, y
        self.ndim = len(A.ishape)
        self._aty: torch.Tensor | None = None
        self._normal = A.N
        self.last_iters = 0

    @property
    def aty(self) -> torch.Tensor:
        """``A^H y`` (computed once)."""
        if self._aty is None:
            with finite_checks(False):
                self._aty = self.A._adjoint(self.y)
        return self._aty

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """``½‖Ax − y‖²`` per batch element ``[...]``."""
        with finite_checks(False):
            r = self.A._apply(x) - self.y
        return 0.5 * _sum_trailing(r.abs() ** 2, len(self.A.oshape))

    def normal(self, x: torch.Tensor) -> torch.Tensor:
        """``A^H A x`` (the operator's fast normal where it has one)."""
        with finite_checks(False):
            return self._normal._apply(x)

    def grad(self, x: torch.Tensor) -> torch.Tensor:
        """``∇f(x) = A^H A x − A^H y``."""
        return self.normal(x) - self.aty

    def prox(self, v: torch.Tensor, alpha: float, x0: torch.Tensor | None = None) -> torch.Tensor:
        """``argmin_x ½‖Ax − y‖² + (1/2α)‖x − v‖²`` for ``v`` ``[..., *A.ishape]`` (``x0``: warm start of iterative forms)."""
        raise NotImplementedError

    def _check_alpha(self, alpha: float) -> None:
        if not (alpha > 0 and math.isfinite(alpha)):
            raise ConfigError(f"{type(self).__name__}: alpha must be a positive finite number, got {alpha}")


class DiagonalProx(DataProx):
    """Exact prox for operators whose normal is a pointwise multiplication ``A^H A = diag(w)``.

    Args:
        A, y: as :class:`DataProx`.
        weight: ``w``, real, broadcastable to the image ``[..., *A.ishape]``.
    """

    kind = "diagonal"

    def __init__(self, A: Linop, y: torch.Tensor, weight: torch.Tensor | float) -> None:
        super().__init__(A, y)
        self.weight = weight

    def prox(self, v: torch.Tensor, alpha: float, x0: torch.Tensor | None = None) -> torch.Tensor:
        self._check_alpha(alpha)
        self.last_iters = 0
        return (v + alpha * self.aty) / (1 + alpha * self.weight)


class CartesianProx(DataProx):
    """Exact prox of single-coil Cartesian sampling ``A = M F S`` (``F`` the centred unitary 2D FFT, ``|S| = 1``).

    ``A^H A = S^H F^H M² F S`` with ``S`` a unitary diagonal (a phase, or 1), so
    ``(I + αA^H A)^{-1} = S^H F^H (1 + αM²)^{-1} F S``.

    Args:
        A, y: as :class:`DataProx`.
        mask: real ``M``, broadcastable to the k-space ``[..., H, W]``.
        phase: ``S`` (complex, ``|S| = 1``) broadcastable to the image, or ``None`` for ``S = 1``.
    """

    kind = "cartesian"

    def __init__(self, A: Linop, y: torch.Tensor, mask: torch.Tensor, phase: torch.Tensor | None = None) -> None:
        super().__init__(A, y)
        self.mask2 = mask * mask
        self.phase = phase

    def prox(self, v: torch.Tensor, alpha: float, x0: torch.Tensor | None = None) -> torch.Tensor:
        self._check_alpha(alpha)
        self.last_iters = 0
        u = v + alpha * self.aty
        if self.phase is not None:
            u = u * self.phase
        x = ifft2c(fft2c(u) / (1 + alpha * self.mask2))
        return x * self.phase.conj() if self.phase is not None else x


class CirculantProx(DataProx):
    """Exact prox for a circulant normal operator ``A^H A = fft2^{-1} diag(d) fft2`` (circular blur).

    The eigenvalues are measured from the operator itself: ``d = fft2(A^H A δ)`` with ``δ`` the unit
    impulse at pixel ``(0, 0)``.

    Args:
        A, y: as :class:`DataProx`; ``A.ishape`` ends with ``(H, W)`` and ``A^H A`` is a circular
            convolution over the last two dimensions.
    """

    kind = "circulant"

    def __init__(self, A: Linop, y: torch.Tensor) -> None:
        super().__init__(A, y)
        delta = torch.zeros(A.ishape, dtype=y.dtype, device=y.device)
        delta[(..., 0, 0)] = 1
        with finite_checks(False):
            self.eig = torch.fft.fft2(self.normal(delta)).real.clamp_min(0)

    def prox(self, v: torch.Tensor, alpha: float, x0: torch.Tensor | None = None) -> torch.Tensor:
        self._check_alpha(alpha)
        self.last_iters = 0
        return torch.fft.ifft2(torch.fft.fft2(v + alpha * self.aty) / (1 + alpha * self.eig))


class CGProx(DataProx):
    """The prox by conjugate gradients on ``(A^H A + I/α) x = A^H y + v/α``, warm-started.

    Stops at ``cg_iters`` iterations or when ``‖residual‖ ≤ cg_tol·‖A^H y + v/α‖`` (per batch element).

    Args:
        A, y: as :class:`DataProx`.
        cg_iters: maximum CG iterations per prox.
        cg_tol: relative tolerance of the CG residual.
    """

    kind = "cg"
    exact = False

    def __init__(self, A: Linop, y: torch.Tensor, cg_iters: int = 30, cg_tol: float = 1e-6) -> None:
        super().__init__(A, y)
        if cg_iters < 1:
            raise ConfigError(f"CGProx: cg_iters must be >= 1, got {cg_iters}")
        if not cg_tol >= 0:
            raise ConfigError(f"CGProx: cg_tol must be >= 0, got {cg_tol}")
        self.cg_iters, self.cg_tol = int(cg_iters), float(cg_tol)

    def prox(self, v: torch.Tensor, alpha: float, x0: torch.Tensor | None = None) -> torch.Tensor:
        self._check_alpha(alpha)
        rhs = self.aty + v / alpha
        solver = ConjugateGradient(self.normal, rhs, lam=1.0 / alpha, ndim=self.ndim, max_iter=self.cg_iters,
                                   tol=self.cg_tol)
        state = solver.init(v if x0 is None else x0)
        n = 0
        while n < self.cg_iters and not solver.done(state):
            state = solver.step(state)
            n += 1
        self.last_iters = n
        return state.x


def _unit_modulus(t: torch.Tensor, tol: float = 1e-6) -> bool:
    return bool(((t.abs() - 1).abs() <= tol).all())


def _sense_diagonal_normal(A: Sense) -> torch.Tensor | None:
    """``Σ_c |S_c|² m²`` when the SENSE normal is diagonal (one map set, a constant mask), else ``None``."""
    if A.multi_set:
        return None
    weight = A.maps.abs().pow(2).sum(dim=-3)
    if A.mask is None:
        return weight
    m = A.mask.reshape(-1)
    if not bool((m == m[0]).all()):
        return None
    return weight * float(m[0]) ** 2


def data_prox(A: Linop, y: torch.Tensor, cg_iters: int = 30, cg_tol: float = 1e-6, exact: bool = True) -> DataProx:
    """The data term ``½‖Ax − y‖²`` with the best available prox for ``A`` (see the module table).

    Args:
        A: forward operator.
        y: data ``[..., *A.oshape]``.
        cg_iters, cg_tol: the CG fall-back's limits.
        exact: use a closed form where one exists (``False``: always CG, e.g. to test the closed forms).

    Returns:
        a :class:`DataProx` (``.kind`` says which form).

    Raises:
        DTypeError, ShapeError: ``y`` is not complex ``[..., *A.oshape]``.
    """
    if exact:
        N = A.N
        if isinstance(N, Identity):
            return DiagonalProx(A, y, 1.0)
        if isinstance(N, Multiply) and not N.weights.is_complex():
            return DiagonalProx(A, y, N.weights)
        if isinstance(A, Sense):
            weight = _sense_diagonal_normal(A)
            if weight is not None:
                return DiagonalProx(A, y, weight)
            if not A.multi_set and A.maps.shape[-3] == 1 and _unit_modulus(A.maps):
                mask = torch.ones((), dtype=y.real.dtype, device=y.device) if A.mask is None else A.mask
                return CartesianProx(A, y, mask[..., 0, :, :], A.maps[..., 0, :, :])
        if isinstance(A, Compose) and len(A.ops) == 2 and isinstance(A.ops[1], FFT) and \
                isinstance(A.ops[0], Multiply) and not A.ops[0].weights.is_complex() and \
                A.ops[1].dim == (-2, -1) and len(A.ishape) >= 2:
            return CartesianProx(A, y, A.ops[0].weights)
        if isinstance(A, Blur) and A.boundary == "circular":
            return CirculantProx(A, y)
    return CGProx(A, y, cg_iters, cg_tol)


def check_image(x: torch.Tensor, A: Linop, who: str, what: str) -> None:
    """Raise :class:`ShapeError`/`DTypeError` unless ``x`` is a complex image ``[..., *A.ishape]``."""
    if x is None:
        raise ShapeError(f"{who}: {what} is None")
    check_tensor(x, A.ishape, who, what)

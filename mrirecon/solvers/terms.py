"""Objective terms with exact gradients and proximal operators, and generic fall-backs (STYLE.md §6).

A :class:`Term` is a function ``f(x)`` of a complex image ``x [..., *shape]`` (its value is one number
per batch element). Every term can give

* ``f(x)`` (``term(x)``),
* ``grad(x)``: by default automatic differentiation of ``f`` (the gradient in PyTorch's complex
  convention: for ``f = ½‖Ax - y‖²`` it is ``A^H(Ax - y)``),
* ``prox(v, tau) = argmin_x ½‖x - v‖² + tau·f(x)``: by default an inner iterative solve —
  accelerated gradient descent on autograd gradients for smooth terms, and a primal-dual
  (Chambolle-Pock) solve for terms of the form ``f(x) = φ(Kx)`` with a simple ``φ``.

Subclasses override these with exact forms where one exists, and each override is tested against
its fall-back. Terms of the form ``φ(Kx)`` also expose ``linop`` (``K``) and ``prox_phi`` (the exact
prox of ``φ``), which is what ADMM and PDHG use. The terms:

=====================  ===========================================  ==============================
term                   ``f(x)``                                     exact ``prox``
=====================  ===========================================  ==============================
:class:`L2Data`        ``½‖Ax - y‖²``                               CG on ``(I + τA^H A)x = v + τA^H y``
:class:`Tikhonov`      ``(λ/2)‖x - x_ref‖²``                        closed form
:class:`L1`            ``λ Σ|x|``                                   complex soft-thresholding
:class:`L1Wavelet`     ``λ‖W_s x‖₁`` (orthonormal ``W``, shift s)   soft-thresholding of ``W_s v``
:class:`TotalVariation` ``λ Σ_r ‖(Dx)(r)‖₂`` (iso) or ``λ‖Dx‖₁``    dual projected gradient (FGP), to a tolerance
=====================  ===========================================  ==============================

The λ conventions follow BART (``bart pics``): the data term is ``½‖Ax - y‖²``, ``-R W:..:λ`` is
``λ‖Wx‖₁`` with the threshold ``λ·step`` inside FISTA, and ``-l2 -r λ`` solves ``(A^H A + λI)x = A^H y``
(i.e. :class:`Tikhonov` with ``(λ/2)‖x‖²``).
"""
from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from mrirecon.errors import ConfigError
from mrirecon.operators.finite_diff import FiniteDifference
from mrirecon.operators.linop import Linop, finite_checks
from mrirecon.operators.sense import Sense
from mrirecon.operators.wavelets import BartRandShift, Wavelet, bart_wavelet_threshold
from mrirecon.solvers.power import power_iteration


def _sum_trailing(t: torch.Tensor, ndim: int) -> torch.Tensor:
    return t.sum(dim=tuple(range(-ndim, 0))) if ndim else t


def _abs2(z: torch.Tensor) -> torch.Tensor:
    """``|z|²`` elementwise (real tensor)."""
    return z.real.square() + z.imag.square() if z.is_complex() else z.square()


def _fro(x: torch.Tensor) -> float:
    """Frobenius norm of a whole tensor, as a float."""
    return float(_abs2(x).sum().sqrt())


def soft_threshold(z: torch.Tensor, t: float | torch.Tensor) -> torch.Tensor:
    """Complex soft-thresholding ``z · max(|z| - t, 0) / |z|`` (the prox of ``t|·|``)."""
    mag = z.abs()
    scale = torch.clamp(mag - t, min=0) / torch.clamp(mag, min=torch.finfo(mag.dtype).tiny)
    return z * scale


def _soft_pairs(b: torch.Tensor, t: float) -> torch.Tensor:
    """Complex soft-thresholding of stacked real/imaginary parts ``[2B, 1, h, w]`` (pairs along dim 0)."""
    pairs = b.reshape(-1, 2, *b.shape[1:])
    mag2 = pairs[:, 0] * pairs[:, 0] + pairs[:, 1] * pairs[:, 1]
    scale = torch.clamp(1 - t * torch.rsqrt(torch.clamp(mag2, min=torch.finfo(mag2.dtype).tiny)), min=0)
    return (pairs * scale.unsqueeze(1)).reshape(b.shape)


def group_soft_threshold(z: torch.Tensor, t: float | torch.Tensor, dim: int) -> torch.Tensor:
    """Soft-thresholding of the Euclidean norm along ``dim`` (prox of ``t Σ ‖z_r‖₂``)."""
    mag = _abs2(z).sum(dim=dim, keepdim=True).sqrt()
    scale = torch.clamp(mag - t, min=0) / torch.clamp(mag, min=torch.finfo(mag.dtype).tiny)
    return z * scale


class Term:
    """A term ``f(x)`` of an objective on complex images ``x [..., *shape]``.

    Args:
        shape: trailing dimensions of ``x`` (the rest is batch).

    Attributes:
        smooth: whether ``f`` is differentiable (then ``grad`` is a gradient, not a sub-gradient).
        linop: ``K`` when ``f(x) = φ(Kx)`` with a simple ``φ`` (``prox_phi`` is then defined), else ``None``.
    """

    smooth: bool = False
    linop: Linop | None = None

    def __init__(self, shape: Sequence[int]) -> None:
        self.shape = tuple(int(s) for s in shape)
        self.ndim = len(self.shape)

    @property
    def name(self) -> str:
        return type(self).__name__

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """``f(x)``, one real value per batch element ``[...]``."""
        raise NotImplementedError

    # -- gradient ---------------------------------------------------------------------------
    def grad(self, x: torch.Tensor) -> torch.Tensor:
        """``∇f(x)`` by automatic differentiation (PyTorch's complex convention); differentiable itself."""
        with torch.enable_grad():
            xr = x if x.requires_grad else x.detach().requires_grad_(True)
            (g,) = torch.autograd.grad(self(xr).sum(), xr, create_graph=x.requires_grad)
        return g

    def gradient_step(self, x: torch.Tensor, step: float) -> torch.Tensor:
        """``x - step·∇f(x)`` (terms may fuse this into fewer passes over memory)."""
        return x - step * self.grad(x)

    # -- prox -------------------------------------------------------------------------------
    def prox(self, v: torch.Tensor, tau: float) -> torch.Tensor:
        """``argmin_x ½‖x - v‖² + tau·f(x)``; the default is an inner iterative solve (see :meth:`prox_inner`)."""
        return self.prox_inner(v, tau)

    def prox_inner(self, v: torch.Tensor, tau: float, iters: int = 5000, tol: float = 1e-9) -> torch.Tensor:
        """The generic prox by an inner solve (the fall-back that exact overrides are tested against).

        Smooth terms: Nesterov-accelerated gradient descent with backtracking on
        ``h(x) = ½‖x - v‖² + tau·f(x)`` using :meth:`grad`. Terms ``φ(Kx)``: accelerated Chambolle-Pock
        on ``min_x ½‖x - v‖² + tau·φ(Kx)`` using ``prox_phi``, run for all ``iters`` iterations (its
        steps shrink, so a small change of ``x`` does not mean convergence; the error decays like
        ``1/iters``). The smooth solve stops when the relative change of ``x`` falls below ``tol``.

        Raises:
            NotImplementedError: a non-smooth term without a ``linop``/``prox_phi`` structure.
        """
        if self.smooth:
            return _prox_smooth(self, v, tau, iters, tol)
        if self.linop is not None:
            return _prox_primal_dual(self, v, tau, iters)
        raise NotImplementedError(f"{self.name}: no prox (neither smooth nor of the form φ(Kx))")

    def prox_phi(self, z: torch.Tensor, tau: float) -> torch.Tensor:
        """``argmin_u ½‖u - z‖² + tau·φ(u)`` for ``f = φ ∘ K`` (defined where ``linop`` is set)."""
        raise NotImplementedError(f"{self.name}: not of the form φ(Kx)")

    def phi(self, z: torch.Tensor) -> torch.Tensor:
        """``φ(z)`` for ``f = φ ∘ K`` (per batch element)."""
        raise NotImplementedError(f"{self.name}: not of the form φ(Kx)")

    def prox_phi_conj(self, z: torch.Tensor, sigma: float) -> torch.Tensor:
        """``prox`` of ``sigma·φ*`` by Moreau's identity: ``z - sigma·prox_{φ/sigma}(z / sigma)``."""
        return z - sigma * self.prox_phi(z / sigma, 1.0 / sigma)


# ---------------------------------------------------------------------------------------------
# generic inner solves (fall-backs)
# ---------------------------------------------------------------------------------------------
def _prox_smooth(term: Term, v: torch.Tensor, tau: float, iters: int, tol: float) -> torch.Tensor:
    nd = term.ndim

    def h(x: torch.Tensor) -> torch.Tensor:
        return 0.5 * _sum_trailing((x - v).abs() ** 2, nd) + tau * term(x)

    def grad_h(x: torch.Tensor) -> torch.Tensor:
        return (x - v) + tau * Term.grad(term, x)

    x = v.detach().clone()
    y, t, step = x, 1.0, 1.0
    with torch.no_grad():
        for _ in range(iters):
            g = grad_h(y)
            hy = h(y).sum()
            while True:
                x_new = y - step * g
                if h(x_new).sum() <= hy - 0.5 * step * float((g.abs() ** 2).sum()) + 1e-12 * abs(float(hy)):
                    break
                step *= 0.5
            t_new = (1 + math.sqrt(1 + 4 * t * t)) / 2
            change = _fro(x_new - x) / max(_fro(x_new), 1e-30)
            y = x_new + ((t - 1) / t_new) * (x_new - x)
            x, t = x_new, t_new
            if change < tol:
                break
    return x


def _prox_primal_dual(term: Term, v: torch.Tensor, tau: float, iters: int) -> torch.Tensor:
    """Chambolle-Pock (accelerated, the primal part is 1-strongly convex) for ``½‖x - v‖² + tau φ(Kx)``."""
    K = term.linop
    assert K is not None
    L2, _ = power_iteration(K.N, v.shape, iters=100, tol=1e-7, dtype=v.dtype, device=v.device)
    L = math.sqrt(float(L2)) * 1.01 + 1e-12
    s, sig = 1.0 / L, 1.0 / L  # primal and dual steps, s·sig·L² < 1
    x = v.detach().clone()
    xbar = x
    z = torch.zeros_like(K._apply(x))
    with torch.no_grad(), finite_checks(False):
        for _ in range(iters):
            # dual: prox of sig·(tau φ)^*
            u = z + sig * K._apply(xbar)
            z = u - sig * term.prox_phi(u / sig, tau / sig)
            x_old = x
            x = (x - s * K._adjoint(z) + s * v) / (1 + s)
            theta = 1 / math.sqrt(1 + 2 * s)  # gamma = 1 (strong convexity of ½‖x - v‖²)
            s, sig = theta * s, sig / theta
            xbar = x + theta * (x - x_old)
    return x


# ---------------------------------------------------------------------------------------------
# concrete terms
# ---------------------------------------------------------------------------------------------
def operator_norm_bound(A: Linop, iters: int = 30, seed: int = 0) -> float:
    """An estimate (upper bound where cheap) of ``‖A‖²``.

    For :class:`~mrirecon.operators.sense.Sense` the exact bound ``max|mask|² · max_r Σ_c |S_c(r)|²``
    (times the number of map sets) costs nothing and is tight for normalised (e.g. ESPIRiT) maps;
    otherwise power iteration on ``A^H A`` (a slight under-estimate, enlarged by 1 %).
    """
    if isinstance(A, Sense):
        m2 = 1.0 if A.mask is None else float(A.mask.abs().max()) ** 2
        s2 = A.maps.abs().pow(2).sum(dim=-3)
        if A.multi_set:
            return m2 * float(s2.sum(dim=-3).max())
        return m2 * float(s2.max())
    lam, _ = power_iteration(A.N, A.ishape, iters=iters, seed=seed)
    return float(lam) * 1.01


class L2Data(Term):
    """Data fidelity ``f(x) = ½‖Ax - y‖²`` (BART's data term).

    Args:
        A: forward operator (e.g. :class:`~mrirecon.operators.sense.Sense`); its normal operator
            ``A.N`` is used for gradients (a fast form for SENSE).
        y: measured data ``[..., *A.oshape]`` (not modified).
        cg_iters, cg_tol: the CG solve inside the exact :meth:`prox`.
    """

    smooth = True

    def __init__(self, A: Linop, y: torch.Tensor, cg_iters: int = 100, cg_tol: float = 1e-6) -> None:
        super().__init__(A.ishape)
        self.A, self.y = A, y
        self.linop = A
        self.normal = A.N
        self._aty: torch.Tensor | None = None
        self.cg_iters, self.cg_tol = cg_iters, cg_tol

    @property
    def aty(self) -> torch.Tensor:
        """``A^H y`` (computed once)."""
        if self._aty is None:
            self._aty = self.A._adjoint(self.y)
        return self._aty

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        r = self.A._apply(x) - self.y
        return 0.5 * _sum_trailing(r.abs() ** 2, len(self.A.oshape))

    def grad(self, x: torch.Tensor) -> torch.Tensor:
        """``A^H A x - A^H y`` (fast normal operator)."""
        return self.normal._apply(x) - self.aty

    def gradient_step(self, x: torch.Tensor, step: float) -> torch.Tensor:
        """``x - step (A^H A x - A^H y)`` in two passes over the image."""
        return torch.add(x + step * self.aty, self.normal._apply(x), alpha=-step)

    def prox(self, v: torch.Tensor, tau: float) -> torch.Tensor:
        """``(I + τA^H A)^{-1}(v + τA^H y)`` by conjugate gradients (to ``cg_tol``)."""
        from mrirecon.solvers.base import run
        from mrirecon.solvers.cg import ConjugateGradient

        def op(x: torch.Tensor) -> torch.Tensor:
            return x + tau * self.normal._apply(x)

        solver = ConjugateGradient(op, v + tau * self.aty, ndim=self.ndim, max_iter=self.cg_iters, tol=self.cg_tol)
        x, _ = run(solver, v)
        return x

    def phi(self, z: torch.Tensor) -> torch.Tensor:
        return 0.5 * _sum_trailing((z - self.y).abs() ** 2, len(self.A.oshape))

    def prox_phi(self, z: torch.Tensor, tau: float) -> torch.Tensor:
        """``(z + τy) / (1 + τ)``."""
        return (z + tau * self.y) / (1 + tau)

    def lipschitz(self) -> float:
        """``‖A‖²`` (see :func:`operator_norm_bound`), the Lipschitz constant of :meth:`grad`."""
        return operator_norm_bound(self.A)


class Tikhonov(Term):
    """``f(x) = (λ/2)‖x - x_ref‖²`` (BART's ``-l2 -r λ``: normal equations ``(A^H A + λI)x = A^H y``).

    Args:
        lam: weight λ ≥ 0.
        shape: image shape.
        ref: reference image ``x_ref`` (default 0).
    """

    smooth = True

    def __init__(self, lam: float, shape: Sequence[int], ref: torch.Tensor | None = None) -> None:
        super().__init__(shape)
        if lam < 0:
            raise ConfigError(f"Tikhonov: lam must be >= 0, got {lam}")
        self.lam, self.ref = float(lam), ref

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        d = x if self.ref is None else x - self.ref
        return 0.5 * self.lam * _sum_trailing(d.abs() ** 2, self.ndim)

    def grad(self, x: torch.Tensor) -> torch.Tensor:
        return self.lam * (x if self.ref is None else x - self.ref)

    def prox(self, v: torch.Tensor, tau: float) -> torch.Tensor:
        num = v if self.ref is None else v + tau * self.lam * self.ref
        return num / (1 + tau * self.lam)


class L1(Term):
    """``f(x) = λ Σ_i |x_i|`` (complex modulus); exact prox: soft-thresholding at ``τλ``."""

    def __init__(self, lam: float, shape: Sequence[int]) -> None:
        super().__init__(shape)
        if lam < 0:
            raise ConfigError(f"L1: lam must be >= 0, got {lam}")
        self.lam = float(lam)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return self.lam * _sum_trailing(x.abs(), self.ndim)

    def prox(self, v: torch.Tensor, tau: float) -> torch.Tensor:
        return soft_threshold(v, tau * self.lam)


class L1Wavelet(Term):
    """``f(x) = λ‖W_s x‖₁``: L1 norm of an orthonormal periodic Daubechies wavelet transform.

    With ``cycle_spin`` (default, as BART's ``pics`` without ``-n``), every :meth:`prox` call draws
    a new random circular shift ``s`` (in ``[0, 2^(levels+1)]`` per axis, BART's range) from the
    term's own generator, and applies the exact prox of ``λ‖W_s ·‖₁``:
    ``W_s^H soft(W_s v, τλ)``. All coefficients are thresholded, the coarsest band included (as in
    BART). The value ``f(x)`` and ``linop`` use the unshifted transform.

    ``transform="bart"`` swaps in BART's own frame and generator instead (see
    :func:`~mrirecon.operators.wavelets.bart_wavelet_threshold`): half-sample symmetric extension with
    redundant border coefficients, per-axis levels, and shifts from glibc's ``rand_r`` started at
    ``1 + seed`` (``seed=0`` is the sequence of ``bart pics``). With the same data, maps and λ, FISTA
    with it reproduces ``bart pics -R W:3:0:λ`` to float rounding (tested: NRMSE < 1e-5 after 100
    iterations). That frame is not tight, so its ``prox`` (BART's ``W⁺ soft(W v)``) is not the exact
    prox of ``λ‖W v‖₁``; ``linop`` is ``None`` then (ADMM/PDHG need the orthonormal transform), and
    ``f(x)`` is the L1 norm of the orthonormal coefficients.

    Args:
        lam: weight λ ≥ 0.
        shape: image shape ``(..., H, W)`` (leading dims, e.g. map sets, are transformed separately).
        wavelet: ``"db1"`` … ``"db8"`` (default ``"db2"``, BART's ``dau2``).
        levels: decomposition levels (``None``: BART's rule, bands ≥ 16; orthonormal transform only).
        cycle_spin: draw a random shift per prox call.
        seed: seed of the shift generator (``torch.Generator``, not the global RNG).
        transform: ``"orthonormal"`` (default) or ``"bart"``.
    """

    TRANSFORMS = ("orthonormal", "bart")

    def __init__(self, lam: float, shape: Sequence[int], wavelet: str = "db2", levels: int | None = None,
                 cycle_spin: bool = True, seed: int = 0, transform: str = "orthonormal") -> None:
        super().__init__(shape)
        if lam < 0:
            raise ConfigError(f"L1Wavelet: lam must be >= 0, got {lam}")
        if transform not in self.TRANSFORMS:
            raise ConfigError(f"L1Wavelet: transform must be one of {self.TRANSFORMS}, got {transform!r}")
        if transform == "bart" and levels is not None:
            raise ConfigError("L1Wavelet: transform='bart' uses BART's own levels; leave levels=None")
        self.lam = float(lam)
        self.W = Wavelet(self.shape[-2:], wavelet, levels)
        self.transform = transform
        self.linop = self.W if transform == "orthonormal" else None
        self.cycle_spin = cycle_spin
        self.generator = torch.Generator().manual_seed(seed)
        self.bart_shifts = BartRandShift(1 + seed) if transform == "bart" else None
        self.last_shift: tuple[int, int] = (0, 0)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return self.lam * _sum_trailing(self.W._apply(x).abs(), self.ndim)

    def phi(self, z: torch.Tensor) -> torch.Tensor:
        return self.lam * _sum_trailing(z.abs(), self.ndim)

    def prox_phi(self, z: torch.Tensor, tau: float) -> torch.Tensor:
        return soft_threshold(z, tau * self.lam)

    def draw_shift(self) -> tuple[int, int]:
        """A random shift in ``[0, 2^(levels+1)]`` per axis (BART's range), reduced modulo the image size."""
        if self.bart_shifts is not None:
            dy, dx = self.bart_shifts.draw(self.shape[-2:])
            return (dy % self.shape[-2], dx % self.shape[-1])
        hi = 2 ** (self.W.levels + 1) + 1
        s = torch.randint(0, hi, (2,), generator=self.generator)
        return (int(s[0]) % self.shape[-2], int(s[1]) % self.shape[-1])

    def prox(self, v: torch.Tensor, tau: float) -> torch.Tensor:
        """Exact: ``W_s^H soft(W_s v, τλ)`` (a fresh random ``s`` per call with ``cycle_spin``)."""
        if self.transform == "bart":
            self.last_shift = self.draw_shift() if self.cycle_spin else (0, 0)
            return bart_wavelet_threshold(v, tau * self.lam, self.last_shift, self.W.wavelet)
        W = self.W
        if self.cycle_spin:
            self.last_shift = self.draw_shift()
            W = self.W.replace(shift=self.last_shift)
        t = tau * self.lam
        # Work on the unpacked bands of the stacked real/imaginary parts (no packing, no complex abs),
        # the three detail bands of a level thresholded together.
        x = torch.roll(v, shifts=W.shift, dims=(-2, -1)) if any(W.shift) else v
        lead = x.shape[:-2]
        approx, levels = W.decompose_real(torch.stack([x.real, x.imag], dim=-3).reshape(-1, 1, *x.shape[-2:]))
        shrink = [tuple(None if b is None else _soft_pairs(b, t) for b in level) for level in levels]
        r = W.reconstruct_real(_soft_pairs(approx, t), shrink)  # type: ignore[arg-type]
        r = r.reshape(*lead, 2, *r.shape[-2:])
        out = torch.complex(r[..., 0, :, :], r[..., 1, :, :])
        return torch.roll(out, shifts=tuple(-s for s in W.shift), dims=(-2, -1)) if any(W.shift) else out


class TotalVariation(Term):
    """Total variation with periodic forward differences ``D``.

    Isotropic: ``f(x) = λ Σ_r sqrt(Σ_d |(D_d x)(r)|²)``; anisotropic: ``f(x) = λ Σ_r Σ_d |(D_d x)(r)|``
    (BART's ``-R T:flags:0:λ`` is the isotropic one: it thresholds the gradient jointly).

    ``prox`` has no closed form; the override solves the dual problem by Beck and Teboulle's fast
    gradient projection (FGP) to a relative tolerance ``prox_tol`` (default 1e-6), which is much
    faster than the generic primal-dual fall-back. ADMM and PDHG use ``linop = D`` and the exact
    ``prox_phi`` (group or plain soft-thresholding of the gradient field) instead.

    Args:
        lam: weight λ ≥ 0.
        shape: image shape.
        isotropic: isotropic (default) or anisotropic TV.
        dims: axes of the differences (default the last two).
    """

    def __init__(self, lam: float, shape: Sequence[int], isotropic: bool = True,
                 dims: Sequence[int] = (-2, -1), prox_iters: int = 2000, prox_tol: float = 1e-6) -> None:
        super().__init__(shape)
        if lam < 0:
            raise ConfigError(f"TotalVariation: lam must be >= 0, got {lam}")
        self.lam = float(lam)
        self.isotropic = isotropic
        self.D = FiniteDifference(self.shape, dims)
        self.linop = self.D
        self.prox_iters, self.prox_tol = prox_iters, prox_tol
        self._axis = -self.ndim - 1  # the axis of the stacked differences

    def phi(self, z: torch.Tensor) -> torch.Tensor:
        if self.isotropic:
            mag = _abs2(z).sum(dim=self._axis).sqrt()
            return self.lam * _sum_trailing(mag, self.ndim)
        return self.lam * _sum_trailing(z.abs(), self.ndim + 1)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return self.phi(self.D._apply(x))

    def prox_phi(self, z: torch.Tensor, tau: float) -> torch.Tensor:
        if self.isotropic:
            return group_soft_threshold(z, tau * self.lam, self._axis)
        return soft_threshold(z, tau * self.lam)

    def _project(self, p: torch.Tensor) -> torch.Tensor:
        """Projection onto the unit ball of the dual norm (per pixel ℓ2 ball or per entry modulus ≤ 1)."""
        if self.isotropic:
            mag = _abs2(p).sum(dim=self._axis, keepdim=True).sqrt()
        else:
            mag = p.abs()
        return p / torch.clamp(mag, min=1.0)

    def prox(self, v: torch.Tensor, tau: float) -> torch.Tensor:
        """``argmin_x ½‖x - v‖² + τλ TV(x)`` by FGP on the dual: ``x = v - τλ D^H p``, ``p`` in the unit ball."""
        c = tau * self.lam
        if c == 0:
            return v.clone()
        D = self.D
        L = 4.0 * len(D.dims)  # ‖D‖² bound
        p = torch.zeros_like(D._apply(v))
        q, t = p, 1.0
        x = v
        for _ in range(self.prox_iters):
            x_q = v - c * D._adjoint(q)
            p_new = self._project(q + D._apply(x_q) / (c * L))
            t_new = (1 + math.sqrt(1 + 4 * t * t)) / 2
            q = p_new + ((t - 1) / t_new) * (p_new - p)
            x_new = v - c * D._adjoint(p_new)
            change = _fro(x_new - x) / max(_fro(x_new), 1e-30)
            p, t, x = p_new, t_new, x_new
            if change < self.prox_tol:
                break
        return x

"""Real spectral normalisation (Ryu et al. 2019): bound each convolution as an operator on images.

``torch.nn.utils.spectral_norm`` bounds the spectral norm of the kernel reshaped to a
``[C_out, C_in·k·k]`` matrix; that is not the operator norm of the convolution (it can be off by
a factor up to ``k`` either way). Here the norm is that of the linear map ``x -> conv(x, W)`` on
``[C_in, S, S]`` images, with the layer's own stride, padding, dilation and groups, found by power
iteration on ``Aᵀ A`` (``A`` = conv2d / conv_transpose2d, ``Aᵀ`` = the transposed operation). The
power-iteration vector is a buffer of each layer, advanced ``iters`` steps at every training forward
(warm start), and the weight used is ``W · c / σ̂`` (``mode="normalize"``, Ryu et al.) or
``W · c / max(σ̂, c)`` (``mode="clip"``). One step per training step lags behind fast-changing weights
(``σ̂`` is a lower bound, so the bound can be exceeded by a few percent early in training); when the
layer is switched to eval mode, ``u`` is therefore refined by Lanczos steps on ``Aᵀ A`` (same operator,
faster convergence for the clustered top of a convolution's spectrum) before the first evaluation, and
likewise at the first training step.

Size: for zero padding the norm on ``S × S`` images grows with ``S`` towards the norm on the whole
plane (the supremum over frequencies of the kernel's transfer matrix); from ``S = 32`` on, the gap is a
fraction of a percent for 3 × 3 kernels (measured in the tests at 64 × 64).

Batch norm is not compatible: in training mode it divides by batch statistics (a data-dependent,
unbounded gain), so the product of layer bounds no longer bounds the network. Networks with real
spectral normalisation therefore have no batch norm (:class:`~mrirecon.denoisers.architectures.DnCNN`
refuses the combination); :func:`fold_batchnorm` folds eval-mode batch norm of a plain network into
its convolutions, after which its layer norms can be measured.
"""
from __future__ import annotations

import hashlib
import math
from collections import OrderedDict
from collections.abc import Callable, Iterator
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import parametrize

from mrirecon.errors import ConfigError

ConvLayer = nn.Conv2d | nn.ConvTranspose2d


def _explicit_padding(conv: ConvLayer) -> tuple[int, int]:
    """The layer's padding as two ints (``'same'``/``'valid'`` resolved)."""
    pad = conv.padding
    if isinstance(pad, str):
        if pad == "valid":
            return (0, 0)
        # 'same' (stride 1): symmetric only for odd effective kernel sizes
        out = []
        for k, d in zip(conv.kernel_size, conv.dilation):
            total = d * (k - 1)
            if total % 2:
                raise ConfigError(f"{conv}: padding='same' with an even kernel pads asymmetrically; "
                                  f"real spectral normalisation needs symmetric padding")
            out.append(total // 2)
        return (out[0], out[1])
    return (int(pad[0]), int(pad[1]))


class ConvOperator:
    """A convolution layer's linear part ``x -> conv(x, W)`` (no bias) and its transpose, for a weight ``W``.

    Args:
        conv: a ``Conv2d`` or ``ConvTranspose2d`` with ``padding_mode='zeros'``.

    Raises:
        ConfigError: another padding mode (its operator is not the one implemented here).
    """

    def __init__(self, conv: ConvLayer) -> None:
        if conv.padding_mode != "zeros":
            raise ConfigError(f"{conv}: real spectral normalisation supports padding_mode='zeros', "
                              f"got {conv.padding_mode!r}")
        self.transposed = isinstance(conv, nn.ConvTranspose2d)
        self.stride = tuple(conv.stride)
        self.padding = _explicit_padding(conv)
        self.dilation = tuple(conv.dilation)
        self.groups = conv.groups
        self.output_padding = tuple(conv.output_padding) if self.transposed else (0, 0)
        self.kernel_size = tuple(conv.kernel_size)
        self.in_channels = conv.in_channels

    def apply(self, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        """``A x``: the layer's convolution without bias; ``x`` ``[N, C_in, H, W]``."""
        if self.transposed:
            return F.conv_transpose2d(x, w, None, self.stride, self.padding, self.output_padding,
                                      self.groups, self.dilation)
        return F.conv2d(x, w, None, self.stride, self.padding, self.dilation, self.groups)

    def adjoint(self, y: torch.Tensor, w: torch.Tensor, in_size: tuple[int, int]) -> torch.Tensor:
        """``Aᵀ y`` for inputs of spatial size ``in_size`` (the output padding restores the exact size)."""
        if self.transposed:
            return F.conv2d(y, w, None, self.stride, self.padding, self.dilation, self.groups)
        op = []
        for i in range(2):
            produced = ((y.shape[-2 + i] - 1) * self.stride[i] - 2 * self.padding[i]
                        + self.dilation[i] * (self.kernel_size[i] - 1) + 1)
            op.append(in_size[i] - produced)
        return F.conv_transpose2d(y, w, None, self.stride, self.padding, tuple(op), self.groups, self.dilation)


def _normalise(u: torch.Tensor) -> torch.Tensor:
    return u / u.norm().clamp_min(1e-30)


class RealSpectralNorm(nn.Module):
    """Parametrisation ``W -> W · c / σ̂(W)`` with ``σ̂`` the power-iteration estimate of ``‖conv(·, W)‖``.

    Register it with :func:`apply_real_spectral_norm` (or ``torch.nn.utils.parametrize``).

    Args:
        conv: the layer to normalise (its stride/padding/dilation/groups define the operator).
        bound: the target operator norm ``c``.
        size: side ``S`` of the ``[C_in, S, S]`` images on which the norm is estimated.
        iters: power-iteration steps per training forward (warm-started from the buffer ``u``).
        mode: ``"normalize"`` (norm set to ``c``) or ``"clip"`` (norm set to ``min(σ, c)``).
        init_iters: Lanczos steps of the first training forward (from the random start).
        refresh_iters: Lanczos steps at the first forward after switching to eval mode.
        seed: seed of the random start vector.

    Buffers:
        u: ``[1, C_in, S, S]``, unit-norm estimate of the top right singular vector.
        sigma: the last estimate ``σ̂`` of the unnormalised weight's operator norm.
        initialised: whether ``u`` has had its ``init_iters`` steps.
    """

    def __init__(self, conv: ConvLayer, bound: float = 1.0, size: int = 32, iters: int = 1,
                 mode: Literal["normalize", "clip"] = "normalize", init_iters: int = 50, refresh_iters: int = 50,
                 seed: int = 0) -> None:
        super().__init__()
        if bound <= 0 or size < 1 or iters < 0:
            raise ConfigError(f"RealSpectralNorm: need bound > 0, size >= 1, iters >= 0; got bound={bound}, "
                              f"size={size}, iters={iters}")
        if mode not in ("normalize", "clip"):
            raise ConfigError(f"RealSpectralNorm: mode must be 'normalize' or 'clip', got {mode!r}")
        self.op = ConvOperator(conv)
        self.bound, self.size, self.iters, self.mode, self.init_iters = float(bound), size, iters, mode, init_iters
        self.refresh_iters = refresh_iters
        self._refresh = True
        g = torch.Generator().manual_seed(seed)
        u = torch.randn(1, conv.in_channels, size, size, generator=g, dtype=conv.weight.dtype)
        self.register_buffer("u", _normalise(u).to(conv.weight.device))
        self.register_buffer("sigma", torch.ones((), dtype=conv.weight.dtype, device=conv.weight.device))
        self.register_buffer("initialised", torch.zeros((), dtype=torch.bool, device=conv.weight.device))

    @torch.no_grad()
    def power_iteration(self, w: torch.Tensor, iters: int) -> None:
        """Advance the buffer ``u`` by ``iters`` steps of power iteration on ``Aᵀ A``."""
        u = self.u.to(w.dtype)
        for _ in range(iters):
            u = _normalise(self.op.adjoint(self.op.apply(u, w), w, (self.size, self.size)))
        self.u.copy_(u)

    @torch.no_grad()
    def settle(self, w: torch.Tensor, steps: int) -> None:
        """Replace ``u`` by the top Ritz vector of ``steps`` Lanczos steps on ``Aᵀ A`` started from ``u``.

        Lanczos converges much faster than power iteration when the top singular values of a convolution
        are clustered (they usually are); like power iteration it approaches ``σ`` from below.
        """
        if steps < 1:
            return
        u = self.u.to(w.dtype)

        def normal(x: torch.Tensor) -> torch.Tensor:
            return self.op.adjoint(self.op.apply(x.to(w.dtype), w), w, (self.size, self.size))

        _, vec = lanczos_top(normal, u, steps)
        self.u.copy_(_normalise(vec).to(self.u.dtype))

    def train(self, mode: bool = True) -> RealSpectralNorm:
        if self.training and not mode:
            self._refresh = True
        return super().train(mode)

    def estimate(self, w: torch.Tensor) -> torch.Tensor:
        """``σ̂ = ‖A u‖`` (differentiable in ``w``; ``u`` is a constant).

        ``u`` is copied: the graph must not hold the buffer itself, which the next training forward advances in
        place (a DEQ calls its network many times before one backward pass).
        """
        return self.op.apply(self.u.to(w.dtype, copy=True), w).norm()

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        if self.training:
            if not bool(self.initialised):
                self.settle(w.detach(), self.init_iters)
                self.initialised.fill_(True)
            self.power_iteration(w.detach(), self.iters)
        elif self._refresh:
            self.settle(w.detach(), self.refresh_iters)
            self._refresh = False
        sigma = self.estimate(w)
        with torch.no_grad():
            self.sigma.copy_(sigma.detach())
        if self.mode == "clip":
            return w * (self.bound / torch.clamp(sigma, min=self.bound))
        return w * (self.bound / sigma)


def apply_real_spectral_norm(conv: ConvLayer, bound: float = 1.0, size: int = 32, iters: int = 1,
                             mode: Literal["normalize", "clip"] = "normalize", seed: int = 0) -> ConvLayer:
    """Register :class:`RealSpectralNorm` on ``conv.weight`` (in place) and return ``conv``."""
    parametrize.register_parametrization(conv, "weight", RealSpectralNorm(conv, bound, size, iters, mode, seed=seed))
    return conv


def sn_layers(model: nn.Module) -> Iterator[tuple[str, ConvLayer, RealSpectralNorm]]:
    """``(name, conv, parametrisation)`` for every convolution of ``model`` with real spectral normalisation."""
    for name, mod in model.named_modules():
        if isinstance(mod, (nn.Conv2d, nn.ConvTranspose2d)) and parametrize.is_parametrized(mod, "weight"):
            for p in mod.parametrizations.weight:
                if isinstance(p, RealSpectralNorm):
                    yield name, mod, p


@torch.no_grad()
def converge_spectral_norms(model: nn.Module, steps: int = 80, restarts: int = 2) -> None:
    """Refine ``u`` of every real-SN layer by ``restarts`` rounds of ``steps`` Lanczos steps (e.g. before export)."""
    for _, conv, p in sn_layers(model):
        for _ in range(restarts):
            p.settle(conv.parametrizations.weight.original.detach(), steps)
        p.initialised.fill_(True)
        p._refresh = False


@torch.no_grad()
def lanczos_top(apply: Callable[[torch.Tensor], torch.Tensor], v0: torch.Tensor, steps: int
                ) -> tuple[float, torch.Tensor]:
    """Largest eigenvalue and eigenvector estimate of a symmetric PSD operator by Lanczos (full reorthogonalisation).

    Args:
        apply: ``x -> M x`` on tensors shaped like ``v0``.
        v0: start vector.
        steps: Krylov dimension.

    Returns:
        ``(λ, v)``: the top Ritz value (≤ ``λ_max``) and its Ritz vector (float64, unit norm).
    """
    q = (v0 / v0.norm().clamp_min(1e-30)).to(torch.float64)
    basis, alphas, betas = [q], [], []
    for j in range(steps):
        w = apply(basis[-1].to(v0.dtype)).to(torch.float64)
        alphas.append(float((w * basis[-1]).sum()))
        for _ in range(2):  # full reorthogonalisation, twice
            for b in basis:
                w = w - (w * b).sum() * b
        beta = float(w.norm())
        if j == steps - 1 or beta <= 1e-12 * max(abs(alphas[-1]), 1e-300):
            break
        betas.append(beta)
        basis.append(w / beta)
    k = len(alphas)
    t = torch.diag(torch.tensor(alphas, dtype=torch.float64))
    if k > 1:
        off = torch.tensor(betas[:k - 1], dtype=torch.float64)
        t = t + torch.diag(off, 1) + torch.diag(off, -1)
    evals, evecs = torch.linalg.eigh(t)
    vec = sum(evecs[i, -1] * basis[i] for i in range(k))
    return float(evals[-1]), _normalise(vec)


def conv_operator_norm(conv: ConvLayer, size: int | tuple[int, int], iters: int = 500, seed: int = 0,
                       dtype: torch.dtype = torch.float64) -> float:
    """Operator norm of the conv layer's linear part on ``[C_in, *size]`` images, measured independently.

    Power iteration from a fresh random vector; the forward map is the layer's own ``forward`` with
    the bias removed, with its current effective weight, and the transpose comes
    from autograd (a vector-Jacobian product), so nothing of :class:`RealSpectralNorm` is reused.
    The bias does not enter: it shifts the output and does not change the Lipschitz constant.

    Args:
        conv: the layer (in eval mode its parametrisation does not update).
        size: image size ``S`` or ``(H, W)``.
        iters: power-iteration steps.
        seed: seed of the start vector.
        dtype: computation dtype.

    Returns:
        the estimate of ``‖conv‖₂`` (a lower bound that converges from below).
    """
    h, w = (size, size) if isinstance(size, int) else size
    was_training = conv.training
    conv.eval()
    try:
        weight = conv.weight.detach().to(dtype)

        def f(x: torch.Tensor) -> torch.Tensor:
            return conv._conv_forward(x, weight, None) if isinstance(conv, nn.Conv2d) else F.conv_transpose2d(
                x, weight, None, conv.stride, conv.padding, conv.output_padding, conv.groups, conv.dilation)

        g = torch.Generator().manual_seed(seed)
        v = _normalise(torch.randn(1, conv.in_channels, h, w, generator=g, dtype=dtype))
        sigma = 0.0
        for _ in range(iters):
            x = v.clone().requires_grad_(True)
            y = f(x)
            (jt,) = torch.autograd.grad(y, x, y.detach())  # Aᵀ A v
            sigma = math.sqrt(float((v * jt).sum()))
            v = _normalise(jt.detach())
        return sigma
    finally:
        conv.train(was_training)


def _correlation_kernel(conv: ConvLayer) -> torch.Tensor | None:
    """The ``[C_out, C_in, k1, k2]`` float64 kernel of the equivalent stride-1 correlation (dilation expanded),
    or None for strided or grouped layers."""
    if any(s != 1 for s in conv.stride) or conv.groups != 1:
        return None
    w = conv.weight.detach().to(torch.float64)
    if isinstance(conv, nn.ConvTranspose2d):
        w = w.transpose(0, 1)  # [C_out, C_in, k, k] of the equivalent correlation (same singular values)
    dh, dw = conv.dilation
    if dh > 1 or dw > 1:
        k1, k2 = w.shape[-2:]
        big = w.new_zeros(*w.shape[:2], (k1 - 1) * dh + 1, (k2 - 1) * dw + 1)
        big[..., ::dh, ::dw] = w
        w = big
    return w


CERTIFY_GRID = 256
"""Default frequency grid (``grid × grid``) of the certified bounds: sampling error ~1e-4 relative for 3×3 kernels,
a few seconds per 64-channel layer on a CPU."""


def conv_frequency_norm(conv: ConvLayer, grid: int = CERTIFY_GRID) -> float | None:
    """``sup_ω σ_max(K̂(ω))`` of a stride-1, ungrouped convolution, on a ``grid × grid`` frequency grid.

    ``K̂(ω) = Σ_{p,q} W[:, :, p, q] e^{−i(ω₁p + ω₂q)}`` is the kernel's ``C_out × C_in`` transfer matrix; its
    supremum over frequencies is the norm of the convolution on the whole plane, hence an upper bound (up to
    the grid's sampling error, ~1e-4 relative for 3×3 kernels at ``grid=256``; :func:`conv_norm_upper_bound`
    bounds that error too) of the zero-padded convolution's norm at every image size. Independent of power
    iteration; used to certify networks.

    Returns:
        the estimate, or None for strided or grouped layers (not covered).
    """
    norms = _layer_norms(conv, grid)
    return None if norms is None else norms[0]


def _grid_supremum(w: torch.Tensor, grid: int) -> float:
    """``max σ_max(K̂(ω))`` over a ``grid × grid`` frequency grid of a correlation kernel ``[C_out, C_in, k1, k2]``."""
    # a real kernel has K̂(−ω) = conj(K̂(ω)) (same singular values): half the grid suffices
    k_hat = torch.fft.rfft2(w, s=(grid, grid))
    return float(torch.linalg.svdvals(k_hat.permute(2, 3, 0, 1)).max())


def conv_norm_upper_bound(conv: ConvLayer, grid: int = CERTIFY_GRID) -> float | None:
    """A rigorous upper bound on the norm of a stride-1, ungrouped convolution at every image size.

    The grid maximum of :func:`conv_frequency_norm` plus a bound on what the grid can miss: at the frequency
    ``ω*`` of the supremum, with maximising unit vectors ``u, v``, ``f(ω) = Re(uᴴ K̂(ω) v)`` is a trigonometric
    polynomial with ``f ≤ σ_max(K̂) ≤ f(ω*)``, so ``∇f(ω*) = 0`` and, at the nearest grid point (at most
    ``π/grid`` away per axis), ``σ_max ≥ f ≥ f(ω*) − (π/grid)² M₂`` with ``M₂ = Σ_{p,q} (p² + q²) ‖W_pq‖₂``
    (taps ``p, q`` counted from the kernel's centre, which changes ``K̂`` only by a phase).

    Returns:
        the bound, or None for strided or grouped layers (not covered).
    """
    norms = _layer_norms(conv, grid)
    return None if norms is None else norms[1]


_NORMS_CACHE: OrderedDict[tuple[str, int], tuple[float, float]] = OrderedDict()
_NORMS_CACHE_SIZE = 256  # layers kept (training certifies a new weight set at every check)


def _layer_norms(conv: ConvLayer, grid: int) -> tuple[float, float] | None:
    """``(grid supremum, rigorous upper bound)`` of one convolution's norm (None if not covered), computed once
    per kernel and grid: cached by the kernel's values, so a shipped network is certified once per process and
    :func:`spectral_certificate` and :func:`certified_lipschitz` share the work."""
    with torch.no_grad():
        w = _correlation_kernel(conv)
        if w is None:
            return None
        key = (hashlib.sha1(w.detach().to(torch.float64).cpu().numpy().tobytes()).hexdigest(), int(grid))
        if key in _NORMS_CACHE:
            _NORMS_CACHE.move_to_end(key)
            return _NORMS_CACHE[key]
        sup = _grid_supremum(w, grid)
        k1, k2 = w.shape[-2:]
        p = torch.arange(k1, dtype=torch.float64) - (k1 - 1) / 2
        q = torch.arange(k2, dtype=torch.float64) - (k2 - 1) / 2
        tap_norms = torch.linalg.matrix_norm(w.permute(2, 3, 0, 1), ord=2)  # [k1, k2]
        m2 = float(((p[:, None] ** 2 + q[None, :] ** 2) * tap_norms).sum())
    norms = (sup, sup + (math.pi / grid) ** 2 * m2)
    _NORMS_CACHE[key] = norms
    while len(_NORMS_CACHE) > _NORMS_CACHE_SIZE:
        _NORMS_CACHE.popitem(last=False)  # least recently used
    return norms


def _product(values: list[float | None]) -> float | None:
    if not values or any(v is None for v in values):
        return None
    return math.prod(v for v in values if v is not None)


def certified_lipschitz(model: nn.Module, grid: int = CERTIFY_GRID) -> float | None:
    """The product of :func:`conv_norm_upper_bound` over the real-SN convolutions of ``model`` (None if a layer
    is not covered or there is none): a rigorous bound on the Lipschitz constant of a chain of these layers with
    1-Lipschitz activations. The per-layer norms are cached by the kernels' values (:func:`_layer_norms`)."""
    return _product([conv_norm_upper_bound(conv, grid) for _, conv, _ in sn_layers(model)])


def spectral_certificate(model: nn.Module, grid: int = CERTIFY_GRID) -> dict[str, object]:
    """Per-layer norms of the real-SN convolutions of ``model`` and their products.

    Returns:
        ``{"layers": [{"name", "target", "frequency_sup", "upper_bound"}], "target_product", "product",
        "certified_product"}``: ``product`` is the product of the grid suprema, ``certified_product`` that of the
        rigorous per-layer bounds (:func:`certified_lipschitz`; None if a layer is not covered) — a bound, valid
        at every image size, on the Lipschitz constant of a chain of these layers with 1-Lipschitz activations
        (e.g. ``I − D`` of a real-SN DnCNN). Each layer's norms are computed once for both.
    """
    layers = []
    for name, conv, p in sn_layers(model):
        norms = _layer_norms(conv, grid)
        layers.append({"name": name, "target": p.bound, "frequency_sup": None if norms is None else norms[0],
                       "upper_bound": None if norms is None else norms[1]})
    return {"layers": layers,
            "target_product": math.prod(d["target"] for d in layers) if layers else None,
            "product": _product([d["frequency_sup"] for d in layers]),
            "certified_product": _product([d["upper_bound"] for d in layers])}


def conv_dense_matrix(conv: ConvLayer, size: tuple[int, int], dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """The dense matrix of the conv layer's linear part on ``[C_in, H, W]`` images (for tiny sizes in tests)."""
    h, w = size
    was_training = conv.training
    conv.eval()
    try:
        weight = conv.weight.detach().to(dtype)
        n = conv.in_channels * h * w
        eye = torch.eye(n, dtype=dtype).reshape(n, conv.in_channels, h, w)
        if isinstance(conv, nn.Conv2d):
            out = conv._conv_forward(eye, weight, None)
        else:
            out = F.conv_transpose2d(eye, weight, None, conv.stride, conv.padding, conv.output_padding,
                                     conv.groups, conv.dilation)
        return out.reshape(n, -1).T
    finally:
        conv.train(was_training)


@torch.no_grad()
def fold_batchnorm(model: nn.Module) -> nn.Module:
    """Fold every eval-mode ``BatchNorm2d`` that directly follows a ``Conv2d`` in an ``nn.Sequential`` (in place).

    ``BN(conv(x)) = γ (W x + b − μ)/√(v + ε) + β`` becomes one convolution with weight ``W γ/√(v+ε)`` and
    bias ``(b − μ) γ/√(v+ε) + β``; the batch norm is replaced by ``nn.Identity``. Exact in eval mode only
    (running statistics); the model is put in eval mode.

    Returns:
        ``model``.
    """
    model.eval()
    for seq in [m for m in model.modules() if isinstance(m, nn.Sequential)]:
        mods = list(seq)
        for i in range(len(mods) - 1):
            conv, bn = mods[i], mods[i + 1]
            if not (isinstance(conv, nn.Conv2d) and isinstance(bn, nn.BatchNorm2d)):
                continue
            if parametrize.is_parametrized(conv):
                raise ConfigError(f"fold_batchnorm: {conv} is parametrised; fold before adding parametrisations")
            scale = bn.weight / torch.sqrt(bn.running_var + bn.eps) if bn.affine else \
                1.0 / torch.sqrt(bn.running_var + bn.eps)
            shift = bn.bias if bn.affine else torch.zeros_like(scale)
            b = conv.bias if conv.bias is not None else torch.zeros_like(scale)
            conv.weight.mul_(scale.reshape(-1, 1, 1, 1))
            new_bias = (b - bn.running_mean) * scale + shift
            if conv.bias is None:
                conv.bias = nn.Parameter(new_bias)
            else:
                conv.bias.copy_(new_bias)
            seq[i + 1] = nn.Identity()
    return model

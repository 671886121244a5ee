"""Denoising networks for complex MRI images: DnCNN, a small U-Net, DRUNet-light.

All take complex ``[..., H, W]`` images through :class:`~mrirecon.denoisers.base.Denoiser` (two real
channels inside, optionally a third constant channel with the noise level ``σ``) and accept any
image size, odd ones included: the multiscale networks zero-pad to a multiple of ``2^(levels−1)``
and crop back. Zero padding and cropping are linear maps of norm 1, so they do not increase
Lipschitz constants (reflect padding would).
"""
from __future__ import annotations

import math
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from mrirecon.denoisers.base import Denoiser
from mrirecon.denoisers.registry import register
from mrirecon.denoisers.spectral import CERTIFY_GRID, apply_real_spectral_norm, sn_layers
from mrirecon.errors import ConfigError

Activation = Literal["relu", "elu", "softplus", "maxmin"]


class MaxMin(nn.Module):
    """GroupSort with groups of 2 (Anil et al. 2019): channels ``(a, b)`` → ``(max(a, b), min(a, b))``.

    A permutation of each pair, so 1-Lipschitz *and* norm-preserving: unlike ReLU, which discards about half the
    energy at every layer, it lets a deep network whose convolutions are spectrally normalised below 1 still
    reach a gain close to its bound (ReLU networks under real spectral normalisation collapse towards ``N = 0``).
    Needs an even number of channels.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a, b = x.chunk(2, dim=1)
        return torch.cat((torch.maximum(a, b), torch.minimum(a, b)), dim=1)


def make_activation(name: str) -> nn.Module:
    """A 1-Lipschitz activation: ``relu``, ``elu`` (smooth up to a kink in the 2nd derivative), ``softplus`` or
    ``maxmin`` (norm-preserving, :class:`MaxMin`)."""
    if name == "relu":
        return nn.ReLU()
    if name == "elu":
        return nn.ELU()
    if name == "softplus":
        return nn.Softplus()
    if name == "maxmin":
        return MaxMin()
    raise ConfigError(f"unknown activation {name!r}; expected relu, elu, softplus or maxmin")


def pad_to_multiple(x: torch.Tensor, multiple: int) -> tuple[torch.Tensor, tuple[int, int]]:
    """Zero-pad the last two dims (bottom/right) to multiples of ``multiple``; returns the original size."""
    h, w = x.shape[-2:]
    ph, pw = (-h) % multiple, (-w) % multiple
    if ph or pw:
        x = F.pad(x, (0, pw, 0, ph))
    return x, (h, w)


@register("dncnn")
class DnCNN(Denoiser):
    """DnCNN (Zhang et al. 2017): ``D(x) = x − N(x)``, ``N`` = conv–ReLU ×(depth−1), conv.

    With ``lipschitz=ε`` every convolution gets real spectral normalisation to ``ε^(1/depth)``, so that
    ``Lip(I − D) = Lip(N) ≤ ε`` (ReLU is 1-Lipschitz; biases and the noise-level channel do not change the
    Lipschitz constant in ``x``) — the condition of PnP-ADMM/FBS convergence (Ryu et al. 2019) for ``ε < 1``.

    Args:
        depth: number of convolutions (≥ 2).
        width: channels of the hidden layers.
        batchnorm: batch norm after the hidden convolutions (not allowed with ``lipschitz``: see
            :mod:`mrirecon.denoisers.spectral`).
        bias: convolutions with bias.
        noise_map: take the noise level ``σ`` as an input channel.
        lipschitz: ``ε``, the certified bound on ``Lip(I − D)`` by real spectral normalisation; None for none.
        sn_size: image side on which each layer's operator norm is estimated.
        sn_iters: power-iteration steps per training step.
        sn_mode: ``"normalize"`` (each layer at exactly its bound) or ``"clip"`` (at most its bound).
        activation: ``relu`` (Zhang et al.) or any of :func:`make_activation`; ``maxmin`` (norm-preserving)
            is the one that trains well under real spectral normalisation (``width`` must then be even).
        residual: ``D(x) = x − N(x)`` (Zhang et al.; default). ``False``: ``D = N``, so ``lipschitz`` bounds
            ``Lip(D)`` itself — the condition that makes ``x ↦ D(x − η∇f(x))`` a contraction (a DEQ whose
            fixed point exists, is unique and is reached, see :meth:`lipschitz_bounds`).

    Raises:
        ConfigError: depth < 2, width < 1, batch norm with ``lipschitz``, or ``maxmin`` with an odd width.
    """

    residual = True

    def __init__(self, depth: int = 17, width: int = 64, batchnorm: bool = False, bias: bool = True,
                 noise_map: bool = False, lipschitz: float | None = None, sn_size: int = 32, sn_iters: int = 1,
                 sn_mode: Literal["normalize", "clip"] = "normalize", activation: Activation = "relu",
                 residual: bool = True) -> None:
        super().__init__()
        self.residual = bool(residual)
        if depth < 2 or width < 1:
            raise ConfigError(f"DnCNN: need depth >= 2 and width >= 1, got depth={depth}, width={width}")
        if activation == "maxmin" and width % 2:
            raise ConfigError(f"DnCNN: activation maxmin pairs channels and needs an even width, got width={width}")
        if lipschitz is not None and batchnorm:
            raise ConfigError("DnCNN: batchnorm=True cannot be combined with lipschitz (real spectral "
                              "normalisation): batch norm divides by batch statistics, an unbounded gain; "
                              "set batchnorm=False")
        if lipschitz is not None and not lipschitz > 0:
            raise ConfigError(f"DnCNN: lipschitz must be > 0, got {lipschitz}")
        self.noise_map = noise_map
        cin = 2 + int(noise_map)
        layers: list[nn.Module] = [nn.Conv2d(cin, width, 3, padding=1, bias=bias), make_activation(activation)]
        for _ in range(depth - 2):
            layers.append(nn.Conv2d(width, width, 3, padding=1, bias=bias and not batchnorm))
            if batchnorm:
                layers.append(nn.BatchNorm2d(width))
            layers.append(make_activation(activation))
        layers.append(nn.Conv2d(width, 2, 3, padding=1, bias=bias))
        self.net = nn.Sequential(*layers)
        self._lipschitz = lipschitz
        if lipschitz is not None:
            per_layer = lipschitz ** (1.0 / depth)
            convs = [m for m in self.net if isinstance(m, nn.Conv2d)]
            for i, conv in enumerate(convs):
                apply_real_spectral_norm(conv, per_layer, sn_size, sn_iters, sn_mode, seed=i)

    def body(self, inp: torch.Tensor) -> torch.Tensor:
        return self.net(inp)

    def lipschitz_bounds(self) -> dict[str, float] | None:
        """Nominal bounds ``{"D": …, "I-D": …}`` under real spectral normalisation (else None): the network
        ``N`` is ``ε``-Lipschitz with ``ε`` the product of its layers' targets; ``D = I − N`` (``Lip(I − D) ≤ ε``)
        or ``D = N`` (``Lip(I − D) ≤ 1 + ε``, triangle inequality).

        The power iteration enforcing each target estimates the layer's norm from below, so ``ε`` is what
        the normalisation aims at, not a proof: :meth:`certified_bounds` replaces it by the product of
        rigorous per-layer bounds.
        """
        if self._lipschitz is None:
            return None
        eps = math.prod(p.bound for _, _, p in sn_layers(self))
        return self._bounds(eps)

    def certified_bounds(self, grid: int = CERTIFY_GRID) -> dict[str, float] | None:
        """Rigorous bounds ``{"D": …, "I-D": …}`` under real spectral normalisation (else None).

        ``ε`` is :func:`~mrirecon.denoisers.spectral.certified_lipschitz`: the product over the layers of the
        frequency-domain supremum of each convolution's norm on a ``grid²`` grid plus the bound on its sampling
        error — valid at every image size and independent of the power iteration (cached per weight set; a
        few seconds per 64-channel layer at ``grid=256`` on a CPU).
        """
        from mrirecon.denoisers.spectral import certified_lipschitz  # noqa: PLC0415

        if self._lipschitz is None:
            return None
        eps = certified_lipschitz(self, grid)
        return None if eps is None else self._bounds(eps)

    def _bounds(self, eps: float) -> dict[str, float]:
        return {"D": 1 + eps, "I-D": eps} if self.residual else {"D": eps, "I-D": 1 + eps}


def widen_dncnn(source: DnCNN, target: DnCNN, scale: float = 0.1) -> None:
    """Copy ``source`` into the wider ``target`` so that ``target`` computes the same map (Net2Net-style).

    ``source``'s weights fill the first channels of every layer of ``target``. The new hidden channels keep
    ``target``'s own initial incoming weights, multiplied by ``scale``, with zero biases, and get zero outgoing
    weights, so they do not change the output until training moves them. ``target`` is changed in place.

    Raises:
        ConfigError: the two differ in anything but the width, ``target`` is narrower, or either uses real
            spectral normalisation, batch norm or ``maxmin`` (whose channel pairing widening would change).
    """
    a, b = source.config, target.config
    others = {k: (getattr(a, k), getattr(b, k)) for k in vars(a) if k != "width" and getattr(a, k) != getattr(b, k)}
    if others:
        raise ConfigError(f"widen_dncnn: the networks differ in more than the width: {others}")
    if b.width < a.width:
        raise ConfigError(f"widen_dncnn: target width {b.width} is narrower than the source's {a.width}")
    if a.lipschitz is not None or a.batchnorm or a.activation == "maxmin":
        raise ConfigError("widen_dncnn: only plain DnCNNs widen function-preservingly (no real spectral "
                          f"normalisation, batch norm or maxmin); got lipschitz={a.lipschitz}, "
                          f"batchnorm={a.batchnorm}, activation={a.activation!r}")
    convs = [(s, t) for s, t in zip(source.net, target.net) if isinstance(s, nn.Conv2d)]
    with torch.no_grad():
        for i, (s, t) in enumerate(convs):
            co, ci = s.weight.shape[:2]
            t.weight.mul_(scale)
            t.weight[:co, :ci] = s.weight
            if i > 0:
                t.weight[:, ci:] = 0.0
            if t.bias is not None and s.bias is not None:
                t.bias.zero_()
                t.bias[:co] = s.bias


class _DoubleConv(nn.Sequential):
    def __init__(self, cin: int, cout: int, act: str) -> None:
        super().__init__(nn.Conv2d(cin, cout, 3, padding=1), make_activation(act),
                         nn.Conv2d(cout, cout, 3, padding=1), make_activation(act))


@register("unet")
class UNet(Denoiser):
    """A small U-Net: double 3×3 convolutions, 2×2 average pooling, 2×2 transposed convolutions, concatenated skips.

    Args:
        width: channels at the finest scale (doubled per level).
        levels: number of scales (≥ 1).
        activation: relu, elu or softplus.
        noise_map: take ``σ`` as an input channel.
        residual: predict the noise (``D(x) = x − N(x)``) instead of the image.

    Raises:
        ConfigError: levels < 1 or width < 1.
    """

    def __init__(self, width: int = 32, levels: int = 3, activation: Activation = "relu", noise_map: bool = False,
                 residual: bool = True) -> None:
        super().__init__()
        if levels < 1 or width < 1:
            raise ConfigError(f"UNet: need levels >= 1 and width >= 1, got levels={levels}, width={width}")
        self.noise_map, self.residual, self.levels = noise_map, residual, levels
        chans = [width * 2 ** i for i in range(levels)]
        cin = 2 + int(noise_map)
        self.down = nn.ModuleList()
        for c in chans:
            self.down.append(_DoubleConv(cin, c, activation))
            cin = c
        self.up = nn.ModuleList()
        self.merge = nn.ModuleList()
        for i in range(levels - 1, 0, -1):
            self.up.append(nn.ConvTranspose2d(chans[i], chans[i - 1], 2, stride=2))
            self.merge.append(_DoubleConv(2 * chans[i - 1], chans[i - 1], activation))
        self.out = nn.Conv2d(chans[0], 2, 1)

    def body(self, inp: torch.Tensor) -> torch.Tensor:
        x, (h, w) = pad_to_multiple(inp, 2 ** (self.levels - 1))
        skips = []
        for i, block in enumerate(self.down):
            if i > 0:
                x = F.avg_pool2d(x, 2)
            x = block(x)
            skips.append(x)
        skips.pop()
        for up, merge in zip(self.up, self.merge):
            x = merge(torch.cat((up(x), skips.pop()), dim=1))
        return self.out(x)[..., :h, :w]


class ResBlock(nn.Module):
    """``x + conv(act(conv(x)))`` (DRUNet's residual block, no normalisation)."""

    def __init__(self, c: int, act: str, bias: bool) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(c, c, 3, padding=1, bias=bias), make_activation(act),
                                  nn.Conv2d(c, c, 3, padding=1, bias=bias))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


@register("drunet")
class DRUNetLight(Denoiser):
    """DRUNet-light (after Zhang et al. 2021): a residual U-Net with ``blocks`` residual blocks per scale.

    head conv → [res blocks, 2×2 strided conv] per level → res blocks → [2×2 transposed conv, add skip,
    res blocks] per level → tail conv. Additive skips, no normalisation layers.

    Args:
        widths: channels per scale (finest first), e.g. ``(16, 32, 64)``.
        blocks: residual blocks per scale.
        activation: relu, elu or softplus (use a smooth one inside a gradient-step denoiser).
        bias: convolutions with bias (DRUNet has none).
        noise_map: take ``σ`` as an input channel.
        residual: predict the noise instead of the image.

    Raises:
        ConfigError: empty ``widths`` or ``blocks`` < 0.
    """

    def __init__(self, widths: tuple[int, ...] = (32, 64, 128), blocks: int = 2, activation: Activation = "relu",
                 bias: bool = False, noise_map: bool = False, residual: bool = False) -> None:
        super().__init__()
        if len(widths) < 1 or any(c < 1 for c in widths) or blocks < 0:
            raise ConfigError(f"DRUNetLight: need at least one positive width and blocks >= 0, "
                              f"got widths={widths}, blocks={blocks}")
        self.noise_map, self.residual, self.levels = noise_map, residual, len(widths)
        cin = 2 + int(noise_map)
        self.head = nn.Conv2d(cin, widths[0], 3, padding=1, bias=bias)
        self.downs = nn.ModuleList(
            nn.Sequential(*[ResBlock(widths[i], activation, bias) for _ in range(blocks)],
                          nn.Conv2d(widths[i], widths[i + 1], 2, stride=2, bias=bias))
            for i in range(len(widths) - 1))
        self.mid = nn.Sequential(*[ResBlock(widths[-1], activation, bias) for _ in range(blocks)])
        self.ups = nn.ModuleList(
            nn.Sequential(nn.ConvTranspose2d(widths[i + 1], widths[i], 2, stride=2, bias=bias),
                          *[ResBlock(widths[i], activation, bias) for _ in range(blocks)])
            for i in range(len(widths) - 2, -1, -1))
        self.tail = nn.Conv2d(widths[0], 2, 3, padding=1, bias=bias)

    def body(self, inp: torch.Tensor) -> torch.Tensor:
        x, (h, w) = pad_to_multiple(inp, 2 ** (self.levels - 1))
        x = self.head(x)
        skips = [x]
        for down in self.downs:
            x = down(x)
            skips.append(x)
        x = self.mid(x)
        for up in self.ups:
            x = up(x + skips.pop())
        x = self.tail(x + skips.pop())
        return x[..., :h, :w]

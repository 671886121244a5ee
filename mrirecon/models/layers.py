"""Small real-valued CNN building blocks of the unrolled networks (real channels live only here)."""
from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from mrirecon.errors import ConfigError

Activation = Literal["prelu", "relu", "leaky_relu"]


def make_activation(name: str, channels: int) -> nn.Module:
    """``prelu`` (one slope per channel, as in Adler & Öktem's learned primal-dual), ``relu`` or ``leaky_relu``."""
    if name == "prelu":
        return nn.PReLU(channels, init=0.0)
    if name == "relu":
        return nn.ReLU()
    if name == "leaky_relu":
        return nn.LeakyReLU(0.2)
    raise ConfigError(f"unknown activation {name!r}; expected prelu, relu or leaky_relu")


class ConvStack(nn.Module):
    """``depth`` 3×3 convolutions with activations in between: ``cin -> width -> … -> width -> cout``.

    The last convolution is initialised to zero (weights and bias), so a fresh stack outputs zeros: an
    unrolled network built from residual updates ``v + ConvStack(...)`` starts as its classical iteration.

    Args:
        cin, cout: input and output channels.
        width: hidden channels.
        depth: number of convolutions (≥ 1).
        activation: see :func:`make_activation`.
    """

    def __init__(self, cin: int, cout: int, width: int, depth: int, activation: str = "prelu") -> None:
        super().__init__()
        if depth < 1 or width < 1:
            raise ConfigError(f"ConvStack: depth and width must be >= 1, got depth={depth}, width={width}")
        layers: list[nn.Module] = []
        c = cin
        for _ in range(depth - 1):
            layers += [nn.Conv2d(c, width, 3, padding=1), make_activation(activation, width)]
            c = width
        last = nn.Conv2d(c, cout, 3, padding=1)
        nn.init.zeros_(last.weight)
        nn.init.zeros_(last.bias)
        layers.append(last)
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class _Double(nn.Sequential):
    """conv–norm–act twice. No conv bias: the instance norm that follows removes it (its gradient is zero up to
    round-off, which Adam would turn into full-size random steps)."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__(nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.InstanceNorm2d(cout), nn.LeakyReLU(0.2),
                         nn.Conv2d(cout, cout, 3, padding=1, bias=False), nn.InstanceNorm2d(cout), nn.LeakyReLU(0.2))


class _UNetBody(nn.Module):
    """The U-Net pass shared by :class:`SmallUNet` and :class:`ConvUNet`: pad to a multiple of ``2^levels``,
    ``down`` blocks with average pooling between them, ``up`` blocks on the bilinearly upsampled features
    concatenated with the skips, the ``out`` convolution, crop back."""

    levels: int
    down: nn.ModuleList
    up: nn.ModuleList
    out: nn.Conv2d

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        m = 2 ** self.levels
        x = F.pad(x, (0, (-w) % m, 0, (-h) % m))
        skips = []
        for i, blk in enumerate(self.down):
            x = blk(F.avg_pool2d(x, 2) if i else x)
            skips.append(x)
        for j, blk in enumerate(self.up):
            skip = skips[self.levels - 1 - j]
            x = F.interpolate(x, size=skip.shape[-2:], mode="bilinear", align_corners=False)
            x = blk(torch.cat([x, skip], dim=1))
        return self.out(x)[..., :h, :w]


class SmallUNet(_UNetBody):
    """A U-Net (instance norm, leaky ReLU, average pooling, bilinear upsampling) for any image size.

    Inputs are zero-padded to a multiple of ``2^levels`` and cropped back. The output convolution starts
    at zero (a fresh U-Net outputs zeros; it is used for residual corrections).

    Args:
        cin, cout: channels in and out.
        width: channels at the finest level (doubled per level).
        levels: number of poolings.
    """

    def __init__(self, cin: int, cout: int, width: int = 8, levels: int = 3) -> None:
        super().__init__()
        if levels < 0 or width < 1:
            raise ConfigError(f"SmallUNet: levels must be >= 0 and width >= 1, got {levels}, {width}")
        self.levels = levels
        self.down = nn.ModuleList()
        c, chans = cin, []
        for i in range(levels + 1):
            self.down.append(_Double(c, width * 2 ** i))
            c = width * 2 ** i
            chans.append(c)
        self.up = nn.ModuleList(_Double(chans[i + 1] + chans[i], chans[i]) for i in reversed(range(levels)))
        self.out = nn.Conv2d(chans[0], cout, 1)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)



class ConvUNet(_UNetBody):
    """A U-Net without normalisation layers (3×3 convolutions, ``activation``, average pooling, bilinear upsampling).

    Two convolutions per level, ``width · 2^l`` channels at level ``l``; inputs are zero-padded to a multiple of
    ``2^levels`` and cropped back. Its receptive field grows with ``2^levels`` at about the cost of a few
    full-resolution convolutions, which is what de-aliasing 1D undersampling needs from a primal update. The output
    convolution starts at zero, like :class:`ConvStack`.

    Args:
        cin, cout: channels in and out.
        width: channels at full resolution.
        levels: poolings (0: a plain 4-convolution stack).
        activation: see :func:`make_activation`.
    """

    def __init__(self, cin: int, cout: int, width: int, levels: int = 2, activation: str = "prelu") -> None:
        super().__init__()
        if levels < 0 or width < 1:
            raise ConfigError(f"ConvUNet: levels must be >= 0 and width >= 1, got {levels}, {width}")
        self.levels = levels

        def block(a: int, b: int) -> nn.Sequential:
            return nn.Sequential(nn.Conv2d(a, b, 3, padding=1), make_activation(activation, b),
                                 nn.Conv2d(b, b, 3, padding=1), make_activation(activation, b))

        chans = [width * 2 ** i for i in range(levels + 1)]
        self.down = nn.ModuleList(block(cin if i == 0 else chans[i - 1], chans[i]) for i in range(levels + 1))
        self.up = nn.ModuleList(block(chans[i + 1] + chans[i], chans[i]) for i in reversed(range(levels)))
        self.out = nn.Conv2d(chans[0], cout, 1)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)


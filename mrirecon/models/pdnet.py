"""The learned primal-dual network for multicoil MRI (PD-net).

Adler & Öktem's learned primal-dual (IEEE TMI 2018) applied to MRI as in Cheng et al., "Model learning:
primal dual networks for fast MR imaging" (MICCAI 2019): PDHG (Chambolle-Pock) for

    min_x  ½‖E x − y‖²  (+ a regulariser that the network learns),      E = Sample(mask) ∘ F ∘ S  (SENSE)

is unrolled for ``iterations`` steps, and each primal (image) and dual (k-space) update gets a learned
residual correction by a small CNN. The primal variable carries ``primal_channels`` complex images
``f = [x, f₁, …]`` and the dual ``dual_channels`` complex multicoil k-spaces ``h = [d, h₁, …]`` (the
"memory" of the learned iteration). Iteration ``i``::

    d'   = (d + σᵢ (E x̄ − y)) / (1 + σᵢ)           PDHG dual step: prox of σ φ*,  φ(z) = ½‖z − y‖²
    h    = [d', h₁, …] + Γᵢ(h, E x̄, y)              dual CNN, per coil (coils are a batch dimension)
    x'   = x − τᵢ E^H d                              PDHG primal step
    f_new = [x', f₁, …] + Λᵢ(f, E^H d)               primal CNN
    x̄    = x_new + θ (x_new − x)                     extrapolation

and the output is ``x`` after the last iteration. The last convolution of every CNN starts at zero, so
a fresh network *is* PDHG on the least-squares problem (started from ``E^H y``); with
``classical_steps=False`` the PDHG parts are dropped and the updates are Adler & Öktem's purely learned
ones (``h + Γ``, ``f + Λ``). ``σᵢ, τᵢ`` are learned per iteration (``learn_steps``) from ``sigma, tau``.

Coil maps (``maps``): ``"learned"`` from the ACS lines by :class:`~mrirecon.models.sensitivity.SensitivityNet`
(E2E-VarNet's sensitivity module; no ESPIRiT needed), ``"refine"`` (given maps plus a learned correction)
or ``"given"`` (the sample's maps, e.g. ESPIRiT, used as they are).

The network receives the sample on every call and builds its operator ``E`` from it (STYLE §4):
:meth:`PDNet.unroll` takes ``(y, E)`` directly, for any SENSE-like operator.
"""
from __future__ import annotations

from typing import Literal

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from mrirecon.denoisers.registry import register
from mrirecon.errors import ConfigError, ShapeError
from mrirecon.models.base import ReconModel, channels_to_complex, complex_to_channels
from mrirecon.models.layers import Activation, ConvStack, ConvUNet
from mrirecon.models.sensitivity import SensitivityNet
from mrirecon.operators.linop import Linop, finite_checks
from mrirecon.operators.sense import Sense


@register("pdnet")
class PDNet(ReconModel):
    """Learned primal-dual network (unrolled PDHG with CNN updates) for multicoil SENSE.

    Args:
        iterations: unrolled PDHG iterations.
        primal_channels: complex images carried by the primal variable (memory; ≥ 1).
        dual_channels: complex multicoil k-spaces carried by the dual variable (memory; ≥ 1).
        width: hidden channels of the primal (image) CNNs (at full resolution for a U-Net).
        depth: convolutions per primal CNN (3 in Adler & Öktem; ignored by ``primal_net="unet"``).
        primal_net: ``"cnn"`` (Adler & Öktem's plain stack) or ``"unet"`` (:class:`~mrirecon.models.layers.ConvUNet`
            with ``primal_levels`` poolings: a larger receptive field for about the same cost).
        primal_levels: poolings of the primal U-Net.
        dual_width, dual_depth: the same for the dual (k-space) CNNs, which run once per coil: on a CPU, or with
            many coils, a narrower dual CNN saves most of the time.
        share_weights: one primal and one dual CNN for all iterations (else one per iteration).
        activation: ``prelu`` (Adler & Öktem), ``relu`` or ``leaky_relu``.
        classical_steps: include the PDHG steps in the updates (a fresh network is PDHG).
        sigma, tau: initial dual and primal step sizes (PDHG converges for ``στ‖E‖² < 1``; ``‖E‖ ≤ 1`` for
            maps with ``Σ|S|² ≤ 1``).
        theta: extrapolation parameter θ.
        learn_steps: learn ``σᵢ, τᵢ`` per iteration (kept positive, parametrised by their logarithm).
        init: primal start ``"adjoint"`` (``x₀ = E^H y``) or ``"zero"``.
        maps: ``"learned"`` (from the ACS lines), ``"refine"`` or ``"given"`` (see the module docstring).
        sens_width, sens_levels: the sensitivity U-Net (``maps`` learned or refine; E2E-VarNet: 8 channels, 4 pools).
        grad_checkpoint: recompute each iteration in the backward pass (activation memory of one iteration
            instead of all; for large k-space on GPUs).

    Raises:
        ConfigError: invalid sizes or options.
    """

    def __init__(self, iterations: int = 10, primal_channels: int = 5, dual_channels: int = 5, width: int = 32,
                 depth: int = 3, primal_net: Literal["cnn", "unet"] = "cnn", primal_levels: int = 2,
                 dual_width: int = 32, dual_depth: int = 3, share_weights: bool = False, activation: Activation = "prelu",
                 classical_steps: bool = True, sigma: float = 0.9, tau: float = 0.9, theta: float = 1.0,
                 learn_steps: bool = True, init: Literal["adjoint", "zero"] = "adjoint",
                 maps: Literal["learned", "refine", "given"] = "learned", sens_width: int = 8, sens_levels: int = 4,
                 grad_checkpoint: bool = False) -> None:
        super().__init__()
        for name, v in (("iterations", iterations), ("primal_channels", primal_channels),
                        ("dual_channels", dual_channels), ("width", width), ("depth", depth),
                        ("dual_width", dual_width), ("dual_depth", dual_depth)):
            if v < 1:
                raise ConfigError(f"PDNet: {name} must be >= 1, got {v}")
        if not (sigma > 0 and tau > 0):
            raise ConfigError(f"PDNet: sigma and tau must be > 0, got {sigma}, {tau}")
        if init not in ("adjoint", "zero"):
            raise ConfigError(f"PDNet: init must be 'adjoint' or 'zero', got {init!r}")
        if primal_net not in ("cnn", "unet"):
            raise ConfigError(f"PDNet: primal_net must be 'cnn' or 'unet', got {primal_net!r}")
        if maps not in ("learned", "refine", "given"):
            raise ConfigError(f"PDNet: maps must be 'learned', 'refine' or 'given', got {maps!r}")
        self.iterations, self.np, self.nd = iterations, primal_channels, dual_channels
        self.classical_steps, self.theta, self.init = classical_steps, float(theta), init
        self.maps_mode, self.grad_checkpoint = maps, grad_checkpoint
        self.uses_maps = maps in ("refine", "given")
        n_nets = 1 if share_weights else iterations
        self.dual_nets = nn.ModuleList(ConvStack(2 * (dual_channels + 2), 2 * dual_channels, dual_width, dual_depth,
                                                 activation) for _ in range(n_nets))
        cin, cout = 2 * (primal_channels + 1), 2 * primal_channels
        self.primal_nets = nn.ModuleList(
            (ConvStack(cin, cout, width, depth, activation) if primal_net == "cnn"
             else ConvUNet(cin, cout, width, primal_levels, activation)) for _ in range(n_nets))
        log_sigma = torch.full((iterations,), float(sigma)).log()
        log_tau = torch.full((iterations,), float(tau)).log()
        if learn_steps:
            self.log_sigma = nn.Parameter(log_sigma)
            self.log_tau = nn.Parameter(log_tau)
        else:
            self.register_buffer("log_sigma", log_sigma)
            self.register_buffer("log_tau", log_tau)
        self.sens_net = SensitivityNet(maps, sens_width, sens_levels) if maps in ("learned", "refine") else None

    # ------------------------------------------------------------------------------------------
    def steps(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The step sizes ``(σ, τ)``, each ``[iterations]``."""
        return self.log_sigma.exp(), self.log_tau.exp()

    def sensitivity(self, y: torch.Tensor, mask: torch.Tensor, maps: torch.Tensor | None) -> torch.Tensor:
        """The coil maps the network uses: learned, refined or given (``[B, C, H, W]``)."""
        if self.sens_net is None:
            assert maps is not None
            return maps
        return self.sens_net(y, mask, maps)

    def reconstruct(self, y: torch.Tensor, mask: torch.Tensor, maps: torch.Tensor | None) -> torch.Tensor:
        maps = self.sensitivity(y, mask, maps)
        return self.unroll(y, Sense(maps, mask))

    def unroll(self, y: torch.Tensor, A: Linop, x0: torch.Tensor | None = None) -> torch.Tensor:
        """Run the learned primal-dual iteration for ``y ≈ A x``.

        Args:
            y: k-space ``[B, C, H, W]`` complex (scaled to order one: :meth:`forward` does it).
            A: a SENSE-like operator, ``ishape = (H, W)``, ``oshape = (C, H, W)``, batched like ``y``.
            x0: primal start ``[B, H, W]`` (default from ``init``).

        Returns:
            the image ``x`` ``[B, H, W]``.

        Raises:
            ShapeError: ``A`` or ``y`` of the wrong shape.
        """
        if len(A.ishape) != 2 or len(A.oshape) != 3:
            raise ShapeError(f"PDNet: needs an operator from images [H, W] to multicoil k-space [C, H, W], got "
                             f"{A.ishape} -> {A.oshape}")
        if y.ndim != 4 or tuple(y.shape[1:]) != tuple(A.oshape):
            raise ShapeError(f"PDNet: k-space of shape {list(y.shape)} does not match the operator's output "
                             f"[B, {', '.join(map(str, A.oshape))}]")
        b, c, h, w = y.shape
        if x0 is None:
            x0 = A.adjoint(y) if self.init == "adjoint" else y.new_zeros(b, h, w)
        f = torch.cat([x0.unsqueeze(1), x0.new_zeros(b, self.np - 1, h, w)], dim=1)
        hd = y.new_zeros(b, c, self.nd, h, w)
        x_bar = x0
        sig, tau = self.steps()
        with finite_checks(False):
            for i in range(self.iterations):
                if self.grad_checkpoint and torch.is_grad_enabled():
                    f, hd, x_bar = checkpoint(self._iteration, i, f, hd, x_bar, y, A, sig[i], tau[i],
                                              use_reentrant=False)
                else:
                    f, hd, x_bar = self._iteration(i, f, hd, x_bar, y, A, sig[i], tau[i])
        return f[:, 0]

    def _iteration(self, i: int, f: torch.Tensor, hd: torch.Tensor, x_bar: torch.Tensor, y: torch.Tensor,
                   A: Linop, sigma: torch.Tensor, tau: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        b, c, nd, h, w = hd.shape
        k = 0 if len(self.dual_nets) == 1 else i
        # dual update (k-space, per coil)
        ex = A._apply(x_bar)                                                   # [B, C, H, W]
        inp = torch.cat([hd, ex.unsqueeze(2), y.unsqueeze(2)], dim=2)          # [B, C, nd + 2, H, W]
        dh = channels_to_complex(self.dual_nets[k](complex_to_channels(inp.reshape(b * c, nd + 2, h, w))))
        dh = dh.reshape(b, c, nd, h, w)
        if self.classical_steps:
            d0 = (hd[:, :, 0] + sigma * (ex - y)) / (1 + sigma)
            hd = torch.cat([d0.unsqueeze(2), hd[:, :, 1:]], dim=2) + dh
        else:
            hd = hd + dh
        # primal update (image)
        g = A._adjoint(hd[:, :, 0])                                            # [B, H, W]
        pin = torch.cat([f, g.unsqueeze(1)], dim=1)                            # [B, np + 1, H, W]
        df = channels_to_complex(self.primal_nets[k](complex_to_channels(pin)))
        x_old = f[:, 0]
        if self.classical_steps:
            f = torch.cat([(x_old - tau * g).unsqueeze(1), f[:, 1:]], dim=1) + df
        else:
            f = f + df
        x_bar = f[:, 0] + self.theta * (f[:, 0] - x_old)
        return f, hd, x_bar

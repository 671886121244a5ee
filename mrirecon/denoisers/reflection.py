"""Firm non-expansiveness by rescaling the reflection: ``D' = ½(I + (2D − I)/L)``.

``D`` is firmly non-expansive exactly when its reflection ``R = 2D − I`` is non-expansive. If ``Lip(R) ≤ L``
with ``L ≥ 1``, then ``R/L`` is non-expansive and ``D' = ½(I + R/L)`` is firmly non-expansive: the
reflection of ``D'`` is ``R/L``, so ``Lip(2D' − I) = Lip(R)/L ≤ 1``. For a denoiser whose estimated
``Lip(2D − I)`` is a little above 1 (a Jacobian-penalised network after training that weighed the penalty
lightly), this is the smallest change of that form that brings the estimate to 1: with ``L`` the largest
value the estimate found, ``D' = ((1 − 1/L)/2)·I + D/L``. The rigour is that of ``L``: an estimate
(:func:`~mrirecon.denoisers.certificate.lipschitz_certificate`, power iteration at sampled points) gives an
estimate, which is why the wrapped network is certified again at fresh points.
"""
from __future__ import annotations

import math
from typing import Any

import torch

from mrirecon.denoisers.base import Denoiser
from mrirecon.denoisers.registry import build_model, model_config_dict, register
from mrirecon.errors import ConfigError


@register("reflection-scaled")
class ReflectionScaled(Denoiser):
    """``D'(x) = ½(x + (2D(x) − x)/bound)`` for a registered denoiser ``D``.

    Args:
        denoiser: registered name of ``D`` (e.g. ``"dncnn"``).
        denoiser_config: its constructor arguments (``None``: its defaults).
        bound: ``L ≥ 1``, a bound (or estimate) of ``Lip(2D − I)``; ``1`` leaves ``D`` unchanged.

    Raises:
        ConfigError: ``bound`` is not a finite number ``≥ 1``, or ``denoiser`` does not name a denoiser.
    """

    def __init__(self, denoiser: str = "dncnn", denoiser_config: dict[str, Any] | None = None,
                 bound: float = 1.0) -> None:
        super().__init__()
        if not (math.isfinite(bound) and bound >= 1.0):
            raise ConfigError(f"ReflectionScaled: bound must be a finite number >= 1 (a bound on Lip(2D - I)), "
                              f"got {bound!r}")
        inner = build_model(denoiser, denoiser_config, seed=0)  # its own forked RNG: the global one is untouched
        if not isinstance(inner, Denoiser):
            raise ConfigError(f"ReflectionScaled: model {denoiser!r} is a {type(inner).__name__}, not a denoiser")
        self.denoiser, self.bound = inner, float(bound)
        self.noise_map = inner.noise_map

    @classmethod
    def wrap(cls, denoiser: Denoiser, bound: float) -> ReflectionScaled:
        """Wrap a registered denoiser (its weights are copied; ``denoiser`` itself is not changed)."""
        name, config = model_config_dict(denoiser)
        out = cls(name, config, bound)
        out.denoiser.load_state_dict(denoiser.state_dict())
        p = next(iter(denoiser.parameters()), None)
        return out.to(p.device, p.dtype) if p is not None else out

    def forward_channels(self, z: torch.Tensor, sigma: torch.Tensor | None = None) -> torch.Tensor:
        d = self.denoiser.forward_channels(z, sigma)
        return 0.5 * (z + (2.0 * d - z) / self.bound)

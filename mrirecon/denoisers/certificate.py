"""Lipschitz certificate of a denoiser: Jacobian spectral norms of ``D``, ``I − D`` and ``2D − I``.

At ``n_points`` validation points ``x̃`` (noisy images at the given noise levels, or random points
``t·x + (1 − t)·y`` between a clean image ``x`` and its noisy version ``y``), the largest singular
values of ``J_D(x̃)``, ``I − J_D(x̃)`` and ``2 J_D(x̃) − I`` are estimated by power iteration
(:mod:`mrirecon.denoisers.jacobian`). Their maximum over points is an empirical estimate of (a lower
bound on) the Lipschitz constants ``Lip(D)``, ``Lip(I − D)`` (``< 1``: the PnP-ADMM/FBS condition of
Ryu et al. 2019) and ``Lip(2D − I)`` (``≤ 1``: ``D`` firmly non-expansive, Pesquet et al. 2021). For
networks with real spectral normalisation, :attr:`LipschitzCertificate.certified_bound` adds the
architectural guarantee on ``Lip(I − D)`` (rigorous) and :attr:`~LipschitzCertificate.bound` its nominal value.
"""
from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import torch

from mrirecon.denoisers.base import Denoiser, check_complex_image, from_channels, to_channels
from mrirecon.denoisers.jacobian import JacobianProducts, jacobian_spectral_norm
from mrirecon.errors import ConfigError, NonFiniteError, ShapeError

DEFAULT_SIGMAS = (5 / 255, 15 / 255, 25 / 255)
QUANTITIES = {"D": (1.0, 0.0), "I-D": (-1.0, 1.0), "2D-I": (2.0, -1.0)}


@dataclass
class Stat:
    """Summary of per-point estimates: mean, max, min, standard deviation (the spread), count."""

    mean: float
    max: float
    min: float
    std: float
    n: int

    @classmethod
    def of(cls, values: Sequence[float]) -> Stat:
        t = torch.tensor(list(values), dtype=torch.float64)
        std = float(t.std(unbiased=False)) if len(values) > 1 else 0.0
        return cls(float(t.mean()), float(t.max()), float(t.min()), std, len(values))


@dataclass
class LipschitzCertificate:
    """Empirical Lipschitz estimates of ``D``, ``I − D`` and ``2D − I`` over validation points.

    Attributes:
        stats: ``{"D": Stat, "I-D": Stat, "2D-I": Stat}``.
        points, iters, crop, sigmas, interpolate, seed: how it was measured.
        bound: nominal architectural bound on ``Lip(I − D)`` (the product of the real-SN layer targets), or None.
        certified_bound: rigorous architectural bound on ``Lip(I − D)``
            (:meth:`~mrirecon.denoisers.base.Denoiser.certified_bound`), or None.
    """

    stats: dict[str, Stat]
    points: int
    iters: int
    crop: int | None
    sigmas: tuple[float, ...]
    interpolate: bool
    seed: int
    bound: float | None = None
    per_point: dict[str, list[float]] = field(default_factory=dict)
    certified_bound: float | None = None

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        d = asdict(self)
        d["sigmas"] = list(self.sigmas)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> LipschitzCertificate:
        stats = {k: Stat(**v) for k, v in d["stats"].items()}
        rest = {k: v for k, v in d.items() if k != "stats"}
        rest["sigmas"] = tuple(rest.get("sigmas", ()))
        return cls(stats=stats, **rest)

    def table(self) -> str:
        """The certificate as a short text table."""
        lines = [f"Lipschitz certificate ({self.points} points, {self.iters} power iterations"
                 f"{'' if self.crop is None else f', {self.crop}x{self.crop} crops'}; max = estimate of Lip)",
                 f"{'map':<11}{'mean':>9}{'max':>9}{'min':>9}{'spread':>9}"]
        for name in QUANTITIES:
            s = self.stats[name]
            lines.append(f"{'Lip(' + name + ')':<11}{s.mean:9.4f}{s.max:9.4f}{s.min:9.4f}{s.std:9.4f}")
        if self.certified_bound is not None:
            lines.append(f"architectural bound (real spectral normalisation, certified): "
                         f"Lip(I-D) <= {self.certified_bound:.4f}")
        if self.bound is not None:
            lines.append(f"nominal bound (product of the layers' normalisation targets): Lip(I-D) <= {self.bound:.4f}")
        return "\n".join(lines)


def _channel_map(denoiser: Denoiser | Callable[..., torch.Tensor],
                 sigma: torch.Tensor) -> Callable[[torch.Tensor], torch.Tensor]:
    if isinstance(denoiser, Denoiser):
        return lambda z: denoiser.forward_channels(z, sigma)
    return lambda z: to_channels(denoiser(from_channels(z), sigma))


def certificate_points(images: torch.Tensor | Sequence[torch.Tensor], n_points: int, sigmas: Sequence[float],
                       seed: int, crop: int | None, interpolate: bool) -> list[tuple[torch.Tensor, float]]:
    """The validation points ``x̃`` (complex ``[h, w]``) and their noise levels.

    Point ``i`` uses image ``i mod N``, noise level ``sigmas[i mod len(sigmas)]``, a random ``crop × crop`` window
    (the whole image when None), complex Gaussian noise of that standard deviation per real/imaginary part
    and (``interpolate``) ``t ~ U[0, 1]``; all drawn from ``seed``.
    """
    g = torch.Generator().manual_seed(seed)
    pts = []
    for i in range(n_points):
        x = images[i % len(images)]
        h, w = x.shape[-2:]
        ch, cw = (h, w) if crop is None else (min(crop, h), min(crop, w))
        top = int(torch.randint(h - ch + 1, (1,), generator=g))
        left = int(torch.randint(w - cw + 1, (1,), generator=g))
        x = x[top:top + ch, left:left + cw]
        s = float(sigmas[i % len(sigmas)])
        noise = torch.randn(2, ch, cw, generator=g, dtype=x.real.dtype)
        y = x + s * torch.complex(noise[0], noise[1])
        t = float(torch.rand((), generator=g)) if interpolate else 0.0
        pts.append((t * x + (1 - t) * y, s))
    return pts


def lipschitz_certificate(denoiser: Denoiser | Callable[..., torch.Tensor],
                          images: torch.Tensor | Sequence[torch.Tensor],
                          sigmas: Sequence[float] = DEFAULT_SIGMAS, n_points: int = 16, iters: int = 50,
                          seed: int = 0, crop: int | None = 64, batch: int = 4, interpolate: bool = True,
                          tol: float = 1e-4, certify: bool = False) -> LipschitzCertificate:
    """Estimate ``Lip(D)``, ``Lip(I − D)``, ``Lip(2D − I)`` by power iteration on Jacobians at many points.

    Args:
        denoiser: a :class:`Denoiser` (or any ``f(x, sigma)`` on complex images), put in eval mode while measured.
        images: clean complex validation images, ``[N, H, W]`` or a list of ``[H, W]`` (scaled like the training
            data: max magnitude 1).
        sigmas: noise levels of the points (cycled).
        n_points: number of points.
        iters: maximum power-iteration steps per point and map.
        seed: seed of crops, noise, ``t`` and start vectors.
        crop: side of random crops (None: whole images).
        batch: points evaluated together (points of different sizes are evaluated separately).
        interpolate: points between clean and noisy images (else the noisy images).
        tol: relative change below which the power iteration stops early.
        certify: also compute the rigorous architectural bound (``certified_bound``; real-SN networks only,
            seconds per layer, cached per weight set) — at export and in the commands, not in training-time checks.

    Returns:
        :class:`LipschitzCertificate`.

    Raises:
        ConfigError: n_points < 1 or iters < 1.  ShapeError, DTypeError: ``images`` not complex images.
    """
    if n_points < 1 or iters < 1:
        raise ConfigError(f"lipschitz_certificate: need n_points >= 1 and iters >= 1, got {n_points}, {iters}")
    imgs = list(images)
    if not imgs:
        raise ShapeError("lipschitz_certificate: no validation images")
    for x in imgs:
        check_complex_image(x, "lipschitz_certificate")
        if x.ndim != 2:
            raise ShapeError(f"lipschitz_certificate: expected images [H, W], got shape {list(x.shape)}")
    module = denoiser if isinstance(denoiser, torch.nn.Module) else None
    was_training = module.training if module is not None else False
    dtype, device = torch.float32, torch.device("cpu")
    if module is not None:
        module.eval()
        p = next(iter(module.parameters()), None)
        if p is not None:
            dtype, device = p.dtype, p.device
    cdtype = torch.complex128 if dtype == torch.float64 else torch.complex64
    pts = certificate_points([x.detach().to("cpu", cdtype) for x in imgs], n_points, sigmas, seed, crop,
                             interpolate)
    groups: list[list[tuple[torch.Tensor, float]]] = []
    for pt in pts:  # consecutive points of one size, at most `batch` per group
        if groups and len(groups[-1]) < batch and groups[-1][0][0].shape == pt[0].shape:
            groups[-1].append(pt)
        else:
            groups.append([pt])
    per_point: dict[str, list[float]] = {k: [] for k in QUANTITIES}
    g = torch.Generator().manual_seed(seed + 1)
    try:
        for group in groups:
            z = to_channels(torch.stack([x for x, _ in group])).to(device)
            s = torch.tensor([sg for _, sg in group], dtype=dtype, device=device)
            prod = JacobianProducts(_channel_map(denoiser, s), z)
            for name, (a, b) in QUANTITIES.items():
                est = jacobian_spectral_norm(None, z, iters=iters, a=a, b=b, generator=g, tol=tol,  # type: ignore[arg-type]
                                             products=prod)
                per_point[name].extend(float(v) for v in est)
            del prod
    finally:
        if module is not None:
            module.train(was_training)
    bound = denoiser.lipschitz_bound() if isinstance(denoiser, Denoiser) else None
    certified = denoiser.certified_bound() if certify and isinstance(denoiser, Denoiser) else None
    for vals in per_point.values():
        if not all(math.isfinite(v) for v in vals):
            raise NonFiniteError("lipschitz_certificate: a Jacobian norm is not finite (the denoiser returns NaN/Inf)")
    return LipschitzCertificate(stats={k: Stat.of(v) for k, v in per_point.items()}, points=n_points, iters=iters,
                                crop=crop, sigmas=tuple(float(s) for s in sigmas), interpolate=interpolate,
                                seed=seed, bound=bound, per_point=per_point,
                                certified_bound=certified)

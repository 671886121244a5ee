"""Shared plumbing of the model-based networks (DEQ, unrolled ADMM): operator in, scale, start, sample wrapper.

Every network here is called with the forward operator on each call (STYLE §4):
``model.forward_op(y, A)`` reconstructs data ``y`` ``[B, *A.oshape]`` of any
:class:`~mrirecon.operators.linop.Linop` ``A`` (multicoil SENSE, or a general imaging operator), and
``model(sample)`` does so for a :class:`~mrirecon.data.sample.KSpaceSample` with coil maps
(``A = Sense(maps, mask)``). Neither modifies its inputs.

**Units.** Data come in arbitrary units (fastMRI k-space is ~1e-5). Both entry points compute a start
``x_ls`` — ``init_iters`` conjugate-gradient steps on ``A^H A x = A^H y`` from zero (an early-stopped, hence
regularised, least-squares image) — and a scale ``s`` = the maximum of the 3×3 median-filtered ``|x_ls|``
per batch element (the median ignores isolated noise spikes). The network works on ``y/s`` from ``x_ls/s``
(images with a magnitude maximum near 1, the units its denoiser sees) and the result is multiplied by ``s``,
so ``model(c·y) = c·model(y)`` for ``c > 0``. ``s`` carries no gradient.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from mrirecon.errors import ConfigError, MissingWeightsError, ShapeError
from mrirecon.models.base import batched_inputs
from mrirecon.operators.linop import Linop, check_tensor
from mrirecon.operators.sense import Sense
from mrirecon.solvers.deq import DataTerm
from mrirecon.solvers.scaling import estimate_noise, robust_max

if TYPE_CHECKING:  # models sit below data (STYLE.md §1): the sample type is only named here
    from mrirecon.data.sample import KSpaceSample


def softplus_inverse(v: float) -> float:
    """``p`` with ``softplus(p) = v`` (for positive parameters stored unconstrained)."""
    if not v > 0:
        raise ConfigError(f"a positive parameter is needed, got {v}")
    return v + math.log(-math.expm1(-v))


@dataclass
class Problem:
    """A normalised problem: data term on ``y/s``, start ``x_ls/s`` ``[B, *ishape]`` and the scale ``s`` ``[B]``.

    ``noise`` (when asked for): the k-space noise level ``σ_n/s`` per element ``[B]`` in the same units
    (:func:`~mrirecon.solvers.scaling.estimate_noise`), NaN where it cannot be estimated (not a SENSE operator, or
    no sampled value near the k-space edge).
    """

    data: DataTerm
    x0: torch.Tensor
    scale: torch.Tensor
    noise: torch.Tensor | None = None


def prepare_problem(y: torch.Tensor, A: Linop, init_iters: int = 10, cg_iters: int = 10, who: str = "model",
                    noise: bool = False, restrict_support: bool = True) -> Problem:
    """Validate ``y`` against ``A``, compute the start ``x_ls`` and the scale ``s``, and normalise (module docstring).

    Args:
        y: data ``[B, *A.oshape]`` (a batch dimension is required).
        A: the forward operator.
        init_iters: CG steps of the least-squares start.
        cg_iters: CG steps of the returned data term's prox.
        noise: also estimate the normalised noise level (:attr:`Problem.noise`).
        restrict_support: the data term's ``restrict_support`` (:class:`~mrirecon.solvers.deq.DataTerm`).

    Returns:
        :class:`Problem` with the data term of ``y/s``, the start ``x_ls/s`` and ``s`` ``[B]`` (no gradient into ``s``
        or the noise level).

    Raises:
        DTypeError, ShapeError: ``y`` is not complex ``[B, *A.oshape]``.  ConfigError: ``init_iters < 1``.
    """
    check_tensor(y, A.oshape, who, "data y")
    if y.ndim != len(A.oshape) + 1:
        raise ShapeError(f"{who}: expected a batch of data [B, {', '.join(map(str, A.oshape))}], got {list(y.shape)}")
    if init_iters < 1:
        raise ConfigError(f"{who}: init_iters must be >= 1, got {init_iters}")
    raw = DataTerm(A, y, cg_iters)
    nd = len(A.ishape)
    with torch.no_grad():
        x_ls = raw.ls_init(init_iters)
        if nd >= 2:
            s = robust_max(x_ls, nd)
        else:
            peak = x_ls.abs().reshape(x_ls.shape[0], -1).amax(dim=1)
            s = torch.where(peak > 0, peak, torch.ones_like(peak))
    sy = s.reshape(-1, *([1] * len(A.oshape))).to(y.dtype)
    sx = s.reshape(-1, *([1] * nd)).to(x_ls.dtype)
    sigma_n = None
    if noise:
        sigma_n = torch.full_like(s, math.nan)
        if isinstance(A, Sense):
            with torch.no_grad():
                mask = A.mask if A.mask is not None else torch.ones((), dtype=y.real.dtype, device=y.device)
                sigma_n = estimate_noise(y, mask) / s
    return Problem(data=DataTerm(A, y / sy, cg_iters, restrict_support), x0=x_ls / sx, scale=s, noise=sigma_n)


def sense_operator(sample: KSpaceSample, who: str = "model") -> tuple[torch.Tensor, Linop, bool]:
    """``(y [B, C, H, W], Sense(maps, mask), unbatched)`` of a sample with one set of coil maps.

    Raises:
        DataError: no maps.  DTypeError, ShapeError: ill-formed sample, or several map sets.
    """
    y, mask, maps, unbatched = batched_inputs(sample, who, uses_maps=True)
    assert maps is not None
    return y, Sense(maps, mask.to(y.real.dtype)), unbatched


class ModelBased(nn.Module):
    """Base class of the networks of this package (see the module docstring).

    Subclasses implement :meth:`solve` on a normalised :class:`Problem`.

    Attributes:
        init_iters: CG steps of the start/scale estimate.
        cg_iters: CG steps of every data-consistency prox.
    """

    uses_maps = True
    init_iters: int = 10
    cg_iters: int = 10

    def prepare(self, y: torch.Tensor, A: Linop, **options: Any) -> Problem:
        """:func:`prepare_problem` with this network's ``init_iters`` and ``cg_iters`` (``options``: its
        ``noise``/``restrict_support``)."""
        return prepare_problem(y, A, self.init_iters, self.cg_iters, type(self).__name__, **options)

    def solve(self, problem: Problem) -> torch.Tensor:
        """The normalised reconstruction ``[B, *ishape]`` of a prepared problem."""
        raise NotImplementedError

    def forward_op(self, y: torch.Tensor, A: Linop) -> torch.Tensor:
        """Reconstruct data ``y`` ``[B, *A.oshape]`` of the operator ``A``; returns complex ``[B, *A.ishape]``."""
        p = self.prepare(y, A)
        x = self.solve(p)
        return x * p.scale.reshape(-1, *([1] * (x.ndim - 1))).to(x.dtype)

    def operator(self, sample: KSpaceSample) -> tuple[torch.Tensor, Linop, bool]:
        """:func:`sense_operator` of a sample."""
        return sense_operator(sample, type(self).__name__)

    def forward(self, sample: KSpaceSample) -> torch.Tensor:
        """Reconstruct a sample (or batch): complex ``[B, H, W]`` (``[H, W]`` for an unbatched sample)."""
        y, A, unbatched = self.operator(sample)
        x = self.forward_op(y, A)
        return x[0] if unbatched else x


def build_network(name: str, options: dict | None, who: str) -> nn.Module:
    """A registered denoiser network (complex images in and out) from its name and constructor options.

    Raises:
        ConfigError: unknown name or options, or a network that is not a denoiser.
    """
    from mrirecon.denoisers.base import Denoiser  # noqa: PLC0415
    from mrirecon.denoisers.registry import build_model  # noqa: PLC0415

    try:
        net = build_model(name, options or {}, seed=None)
    except KeyError as exc:
        raise ConfigError(f"{who}: network: {exc.args[0]}") from None
    if not isinstance(net, Denoiser):
        raise ConfigError(f"{who}: network {name!r} is not a denoiser (complex images in and out)")
    return net


def load_model_based(name_or_path: str, kind: type | tuple[type, ...] | None = None, who: str = "weights"
                     ) -> nn.Module:
    """A network of this package from a shipped name (``mrirecon/weights/NAME.pt``) or a weights/checkpoint file.

    Args:
        name_or_path: shipped name or file.
        kind: the class(es) the network must be.
        who: names the option in errors.

    Returns:
        the network in eval mode, its parameters frozen.

    Raises:
        MissingWeightsError: neither a file nor a shipped name (lists the shipped names).
        ConfigError: a network of another kind.  DataError: unreadable file.
    """
    import mrirecon.models  # noqa: F401,PLC0415  (registers the networks)
    from mrirecon.denoisers.zoo import model_from_file, weights_path  # noqa: PLC0415

    try:
        p = weights_path(name_or_path)
    except KeyError as exc:
        raise MissingWeightsError(f"{who}: {exc.args[0]}") from None
    model = model_from_file(p)
    if kind is not None and not isinstance(model, kind):
        kinds = kind if isinstance(kind, tuple) else (kind,)
        raise ConfigError(f"{who}: {p} holds a {type(model).__name__}, expected "
                          f"{' or '.join(k.__name__ for k in kinds)}")
    for q in model.parameters():
        q.requires_grad_(False)
    return model.eval()

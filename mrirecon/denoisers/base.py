"""The denoiser interface: complex images in and out, two real channels inside.

Every denoiser ``D`` is a :class:`torch.nn.Module` called as ``D(x, sigma=None)`` with ``x`` a complex
tensor ``[..., H, W]`` (complex64 or complex128; leading dimensions are a batch) and returns a complex
tensor of the same shape and dtype. Inside, ``x`` becomes real channels ``[B, 2, H, W]`` (real and
imaginary part); this map is an isometry (``‖x‖₂ = ‖[Re x, Im x]‖₂``), so Lipschitz constants measured
or bounded on the channels are those of the complex map.

Scale convention: the shipped denoisers were trained on images whose magnitude maximum is 1, with
complex white Gaussian noise of standard deviation ``σ`` in each of the real and imaginary parts.
Solvers rescale their iterate to that range (and back) before calling ``D``.
"""
from __future__ import annotations

import torch
from torch import nn

from mrirecon.denoisers.spectral import CERTIFY_GRID
from mrirecon.errors import ConfigError, DTypeError, ShapeError


def parameter_count(module: nn.Module) -> int:
    """The number of scalar parameters of ``module`` (every ``nn.Parameter``, trainable or not)."""
    return int(sum(p.numel() for p in module.parameters()))


def to_channels(x: torch.Tensor) -> torch.Tensor:
    """Complex ``[B, H, W]`` -> real ``[B, 2, H, W]`` (real part, imaginary part)."""
    return torch.stack((x.real, x.imag), dim=-3)


def from_channels(z: torch.Tensor) -> torch.Tensor:
    """Real ``[B, 2, H, W]`` -> complex ``[B, H, W]``; the inverse of :func:`to_channels`."""
    return torch.complex(z[..., 0, :, :], z[..., 1, :, :])


def check_complex_image(x: object, who: str) -> torch.Tensor:
    """Validate a complex image batch ``[..., H, W]``.

    Raises:
        DTypeError: ``x`` is not a complex tensor.  ShapeError: fewer than two dimensions.
    """
    if not isinstance(x, torch.Tensor):
        raise DTypeError(f"{who}: expected a complex torch tensor [..., H, W], got {type(x).__name__}")
    if not x.is_complex():
        raise DTypeError(f"{who}: expected a complex image tensor (complex64/complex128) [..., H, W], "
                         f"got {x.dtype} of shape {list(x.shape)}")
    if x.ndim < 2:
        raise ShapeError(f"{who}: expected an image [..., H, W], got shape {list(x.shape)}")
    return x


def sigma_tensor(sigma: float | torch.Tensor | None, batch: tuple[int, ...], like: torch.Tensor,
                 who: str) -> torch.Tensor | None:
    """``sigma`` (a number, or a tensor broadcastable to the leading dims ``batch``) as a real ``[B]`` tensor.

    Raises:
        ShapeError: ``sigma`` does not broadcast to ``batch``.
    """
    if sigma is None:
        return None
    s = torch.as_tensor(sigma, dtype=like.dtype, device=like.device)
    try:
        s = torch.broadcast_to(s, batch)
    except RuntimeError:
        raise ShapeError(f"{who}: sigma of shape {list(s.shape)} does not broadcast to the batch dimensions "
                         f"{list(batch)} of the image") from None
    return s.reshape(-1)


class Denoiser(nn.Module):
    """Base class of denoisers: complex API, real-channel networks.

    Subclasses implement :meth:`forward_channels` on real ``[B, 2, H, W]`` tensors (or, for plain
    networks, :meth:`body`, with the input/residual handling below).

    Attributes:
        noise_map: the network takes ``σ`` as an extra constant input channel.
        residual: the network predicts the noise, ``D(x) = x − N(x)`` (so ``I − D = N``).
    """

    noise_map: bool = False
    residual: bool = False

    def forward(self, x: torch.Tensor, sigma: float | torch.Tensor | None = None) -> torch.Tensor:
        """Denoise complex images.

        Args:
            x: complex ``[..., H, W]``; computed in the dtype of the network's parameters, returned in ``x``'s.
            sigma: noise standard deviation (per real/imaginary part, in the units of ``x``): a number or a
                tensor broadcastable to ``x.shape[:-2]``. Required by networks with ``noise_map``; blind
                networks ignore it.

        Returns:
            complex ``[..., H, W]``, the same dtype as ``x``.

        Raises:
            DTypeError, ShapeError: bad ``x`` or ``sigma``.  ConfigError: ``sigma`` missing for a noise-map network.
        """
        who = type(self).__name__
        check_complex_image(x, who)
        lead, (h, w) = tuple(x.shape[:-2]), tuple(x.shape[-2:])
        real = self._real_dtype(x)
        cdtype = torch.complex128 if real == torch.float64 else torch.complex64
        z = to_channels(x.reshape(-1, h, w).to(cdtype))
        s = sigma_tensor(sigma, lead, z, who)
        out = self.forward_channels(z, s)
        return from_channels(out).reshape(*lead, h, w).to(x.dtype)

    def _real_dtype(self, x: torch.Tensor) -> torch.dtype:
        p = next(iter(self.parameters()), None)
        if p is not None and p.is_floating_point():
            return p.dtype
        return torch.float64 if x.dtype == torch.complex128 else torch.float32

    def forward_channels(self, z: torch.Tensor, sigma: torch.Tensor | None = None) -> torch.Tensor:
        """The denoiser on real channels: ``[B, 2, H, W]`` (and ``σ`` ``[B]`` or None) -> ``[B, 2, H, W]``."""
        inp = self.network_input(z, sigma)
        n = self.body(inp)
        return z - n if self.residual else n

    def network_input(self, z: torch.Tensor, sigma: torch.Tensor | None) -> torch.Tensor:
        """``z`` with the noise-level channel appended when the network takes one."""
        if not self.noise_map:
            return z
        if sigma is None:
            raise ConfigError(f"{type(self).__name__}: this network takes a noise-level map (noise_map=True); "
                              f"call it as D(x, sigma=...)")
        s = sigma.to(z.dtype).reshape(-1, 1, 1, 1).expand(z.shape[0], 1, z.shape[-2], z.shape[-1])
        return torch.cat((z, s), dim=1)

    def body(self, inp: torch.Tensor) -> torch.Tensor:
        """The network proper: ``[B, 2 (+1), H, W]`` -> ``[B, 2, H, W]``."""
        raise NotImplementedError

    def lipschitz_bounds(self) -> dict[str, float] | None:
        """Nominal architectural bounds ``{"D": …, "I-D": …}`` (real spectral normalisation), or None.

        Nominal: from the product of the layers' spectral-normalisation targets. The power iteration that
        enforces them approaches each layer's norm from below, so the true product can lie slightly above it;
        :meth:`certified_bounds` is the rigorous counterpart. Architectures with a bound override both.
        """
        return None

    def certified_bounds(self, grid: int = CERTIFY_GRID) -> dict[str, float] | None:
        """Rigorous architectural bounds ``{"D": …, "I-D": …}``, valid at every image size, or None."""
        return None

    def lipschitz_bound(self) -> float | None:
        """The nominal bound on Lip(I − D) (:meth:`lipschitz_bounds`), or None."""
        bounds = self.lipschitz_bounds()
        return None if bounds is None else bounds["I-D"]

    def certified_bound(self, grid: int = CERTIFY_GRID) -> float | None:
        """The rigorous bound on Lip(I − D) (:meth:`certified_bounds`), or None."""
        bounds = self.certified_bounds(grid)
        return None if bounds is None else bounds["I-D"]

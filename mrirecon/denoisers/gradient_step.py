"""Gradient-step denoisers (Hurault et al. 2022): ``D(x) = x − ∇g(x)`` with ``g(x) = ½‖x − N(x)‖²``.

``D`` is an explicit gradient step on a potential ``g`` built from any network ``N``; PnP methods
that use it minimise an explicit objective ``f(x) + λ g(x)`` and converge when ``∇g`` is
``L``-Lipschitz with ``L < 1`` (``Lip(I − D) = Lip(∇g)``, which the certificate measures). ``N`` should
be smooth (ELU or softplus activations) so that ``∇g`` is Lipschitz.

``∇g(x) = (x − N(x)) − J_N(x)ᵀ (x − N(x))``, computed by autograd. When gradients are enabled (training,
Jacobian power iteration), the graph of ``∇g`` is kept (``create_graph``) so that the loss on ``D`` can be
differentiated with respect to ``N``'s parameters; under ``torch.no_grad()`` it is not.
"""
from __future__ import annotations

import torch

from mrirecon.denoisers.architectures import Activation, DRUNetLight
from mrirecon.denoisers.base import Denoiser, check_complex_image, from_channels, sigma_tensor, to_channels
from mrirecon.denoisers.registry import register


class GradientStepDenoiser(Denoiser):
    """``D(x) = x − ∇g(x)``, ``g(x) = ½‖x − N(x)‖²`` for a network ``N`` (a :class:`Denoiser` on channels).

    Args:
        network: ``N``; its own ``residual`` setting defines ``N(x)``.
    """

    def __init__(self, network: Denoiser) -> None:
        super().__init__()
        self.network = network
        self.noise_map = network.noise_map

    # -- on real channels -------------------------------------------------------------------------
    def g_channels(self, z: torch.Tensor, sigma: torch.Tensor | None = None) -> torch.Tensor:
        """``g`` per sample: ``[B, 2, H, W]`` -> ``[B]``."""
        r = z - self.network.forward_channels(z, sigma)
        return 0.5 * r.flatten(1).square().sum(dim=1)

    def grad_g_channels(self, z: torch.Tensor, sigma: torch.Tensor | None = None,
                        create_graph: bool | None = None) -> torch.Tensor:
        """``∇g`` per sample on channels ``[B, 2, H, W]``.

        Args:
            create_graph: keep the graph of ``∇g`` (default: whether gradients are enabled by the caller).
        """
        cg = torch.is_grad_enabled() if create_graph is None else create_graph
        with torch.enable_grad():
            zz = z if z.requires_grad else z.detach().requires_grad_(True)
            g = self.g_channels(zz, sigma)
            (grad,) = torch.autograd.grad(g.sum(), zz, create_graph=cg)
        return grad

    def forward_channels(self, z: torch.Tensor, sigma: torch.Tensor | None = None) -> torch.Tensor:
        return z - self.grad_g_channels(z, sigma)

    # -- complex API for solvers ------------------------------------------------------------------
    def _prep(self, x: torch.Tensor, sigma: float | torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor | None]:
        check_complex_image(x, type(self).__name__)
        real = self._real_dtype(x)
        cdtype = torch.complex128 if real == torch.float64 else torch.complex64
        z = to_channels(x.reshape(-1, *x.shape[-2:]).to(cdtype))
        return z, sigma_tensor(sigma, tuple(x.shape[:-2]), z, type(self).__name__)

    def g(self, x: torch.Tensor, sigma: float | torch.Tensor | None = None) -> torch.Tensor:
        """The potential ``g(x) = ½‖x − N(x)‖²`` of complex images ``[..., H, W]`` -> real ``[...]`` (differentiable)."""
        z, s = self._prep(x, sigma)
        return self.g_channels(z, s).reshape(x.shape[:-2]).to(x.real.dtype)

    def grad_g(self, x: torch.Tensor, sigma: float | torch.Tensor | None = None,
               create_graph: bool | None = None) -> torch.Tensor:
        """``∇g`` of complex images ``[..., H, W]`` (``∂g/∂Re x + i ∂g/∂Im x``, PyTorch's convention for real
        functions of complex tensors), complex ``[..., H, W]``.

        Args:
            create_graph: keep the graph (default: whether gradients are enabled).
        """
        z, s = self._prep(x, sigma)  # differentiable in x when x requires grad
        out = self.grad_g_channels(z, s, create_graph)
        return from_channels(out).reshape(x.shape).to(x.dtype)


@register("gs-drunet")
class GSDRUNet(GradientStepDenoiser):
    """Gradient-step denoiser whose ``N`` is a :class:`~mrirecon.denoisers.architectures.DRUNetLight`.

    Args:
        widths: channels per scale of ``N``.
        blocks: residual blocks per scale.
        activation: ``N``'s activation; smooth (elu, softplus) for a Lipschitz ``∇g``.
        noise_map: ``N`` takes ``σ`` as an input channel.
    """

    def __init__(self, widths: tuple[int, ...] = (32, 64, 128), blocks: int = 2, activation: Activation = "elu",
                 noise_map: bool = False) -> None:
        super().__init__(DRUNetLight(widths=widths, blocks=blocks, activation=activation, bias=True,
                                     noise_map=noise_map, residual=False))

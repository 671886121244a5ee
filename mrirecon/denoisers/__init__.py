"""CNN denoisers for complex MRI images and their Lipschitz control.

* architectures: :class:`DnCNN`, :class:`UNet`, :class:`DRUNetLight` (complex in/out, 2 real channels
  inside, optional noise-level map), registered by name (``build_model("dncnn", {...})``);
* real spectral normalisation (:mod:`.spectral`): each convolution's operator norm on images bounded,
  so that ``Lip(I − D) ≤ ε`` for a residual DnCNN (``DnCNN(lipschitz=ε)``);
* Jacobian spectral norms and the firm-non-expansiveness penalty (:mod:`.jacobian`);
* gradient-step denoisers ``D = I − ∇g`` (:mod:`.gradient_step`);
* the equivariant wrapper over the 8 rotations/flips (:mod:`.equivariant`);
* the reflection rescaling ``D' = ½(I + (2D − I)/L)`` that makes a denoiser with ``Lip(2D − I) ≤ L`` firmly
  non-expansive (:mod:`.reflection`);
* the Lipschitz certificate (:func:`lipschitz_certificate`);
* shipped weights: ``load_denoiser("dncnn-sn")`` (:mod:`.zoo`).
"""
from mrirecon.denoisers.architectures import DnCNN, DRUNetLight, UNet, widen_dncnn
from mrirecon.denoisers.base import Denoiser, from_channels, parameter_count, to_channels
from mrirecon.denoisers.certificate import LipschitzCertificate, lipschitz_certificate
from mrirecon.denoisers.equivariant import EquivariantDenoiser
from mrirecon.denoisers.gradient_step import GradientStepDenoiser, GSDRUNet
from mrirecon.denoisers.jacobian import fne_penalty, jacobian_spectral_norm
from mrirecon.denoisers.reflection import ReflectionScaled
from mrirecon.denoisers.registry import MODELS, build_model, register
from mrirecon.denoisers.spectral import RealSpectralNorm, apply_real_spectral_norm, conv_operator_norm
from mrirecon.denoisers.zoo import load_denoiser, save_weights, shipped_denoisers

__all__ = [
    "MODELS", "DRUNetLight", "Denoiser", "DnCNN", "EquivariantDenoiser", "GSDRUNet", "GradientStepDenoiser",
    "LipschitzCertificate", "RealSpectralNorm", "ReflectionScaled", "UNet", "apply_real_spectral_norm", "build_model",
    "conv_operator_norm", "fne_penalty", "from_channels", "jacobian_spectral_norm", "lipschitz_certificate",
    "load_denoiser", "parameter_count", "register", "save_weights", "shipped_denoisers", "to_channels",
    "widen_dncnn",
]

"""Linear operators on torch complex tensors: the algebra, FFTs, SENSE, masks, coils, imaging ops.

Importing this package imports every operator module, so that the example registry
(:mod:`mrirecon.operators.catalog`) is complete.
"""
from mrirecon.operators.catalog import EXAMPLES
from mrirecon.operators.coils import (CoilMix, acs_size, bandwidth_ratio, coil_compress, compression_matrix,
                                      lowres_maps, noise_covariance, prewhiten, prewhitening_matrix, rss,
                                      sense_combine)
from mrirecon.operators.fft import FFT, fft2c, fft3c, fftnc, ifft2c, ifft3c, ifftnc
from mrirecon.operators.imaging import (Blur, DenseMatrix, Downsample, Inpaint, bicubic_taps, denoising,
                                        gaussian_kernel, gaussian_matrix)
from mrirecon.operators.linop import (Adjoint, Compose, Identity, Linop, Multiply, Scale, Sum, VStack,
                                      check_tensor, complex_dtype, dense_matrix, finite_checks)
from mrirecon.operators.masks import (MASKS, MaskSpec, equispaced_mask, gaussian_mask, poisson_mask,
                                      poisson_mask_bart, random_mask)
from mrirecon.operators.sense import CoilExpand, Sample, Sense, SenseNormal, coil_expand, coil_reduce
from mrirecon.operators.finite_diff import FiniteDifference
from mrirecon.operators.wavelets import Wavelet

__all__ = [
    "CoilMix", "acs_size", "bandwidth_ratio", "coil_compress", "compression_matrix", "lowres_maps",
    "noise_covariance", "prewhiten", "prewhitening_matrix", "rss", "sense_combine",
    "Blur", "DenseMatrix", "Downsample", "Inpaint", "bicubic_taps", "denoising", "gaussian_kernel",
    "gaussian_matrix",
    "EXAMPLES", "FFT", "MASKS", "MaskSpec", "equispaced_mask", "gaussian_mask", "poisson_mask",
    "poisson_mask_bart", "random_mask", "Adjoint", "CoilExpand", "Compose", "Identity", "Linop", "Multiply", "Sample",
    "Scale", "Sense", "SenseNormal", "Sum", "VStack", "check_tensor", "coil_expand", "coil_reduce",
    "complex_dtype", "dense_matrix", "fft2c", "fft3c", "fftnc", "finite_checks", "ifft2c", "ifft3c",
    "ifftnc",
    "FiniteDifference", "Wavelet",
]

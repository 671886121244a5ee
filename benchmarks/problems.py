"""Reference problems shared by the baselines benchmark, the comparison notebook and the tests.

``reference_problem()``: a simulated 15-coil 320×320 complex64 slice (Shepp-Logan with a smooth
phase, sigpy birdcage sensitivities normalised to unit root-sum-of-squares, complex Gaussian noise),
sampled with a 4× equispaced line mask with 26 fully sampled centre lines (along the last axis).

``bart_phantom_case()``: BART's own phantom with noise and BART ESPIRiT maps (needs BART), the
problem of the BART comparisons in ``tests/test_classical.py`` and ``benchmarks/cs_wavelet_seeds.py``.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch


@dataclass
class Problem:
    """A simulated multicoil slice: k-space ``[C, H, W]`` (zero where not sampled), mask ``[1, 1, W]``,
    the true maps ``[C, H, W]`` and the complex ground-truth image ``[H, W]``."""

    kspace: torch.Tensor
    mask: torch.Tensor
    maps: torch.Tensor
    image: torch.Tensor
    noise_std: float


def equispaced_mask(width: int, accel: int, center_lines: int) -> torch.Tensor:
    """``[1, 1, W]`` float32 line mask: every ``accel``-th line plus ``center_lines`` centred lines.

    The centre block starts at ``(W - center_lines) // 2`` (so it contains the DC line ``W // 2``);
    the equispaced lines are aligned on the DC line.
    """
    mask = torch.zeros(width, dtype=torch.float32)
    mask[(width // 2) % accel::accel] = 1
    c0 = (width - center_lines) // 2
    mask[c0:c0 + center_lines] = 1
    return mask.reshape(1, 1, width)


def reference_problem(n: int = 320, coils: int = 15, accel: int = 4, center_lines: int = 26,
                      noise: float = 0.005, seed: int = 0) -> Problem:
    """The benchmark's reference problem (see module docstring); deterministic from ``seed``.

    ``noise`` is the k-space noise standard deviation relative to the maximum image magnitude.
    """
    import sigpy
    import sigpy.mri

    from mrirecon.operators import fft2c

    img = sigpy.shepp_logan((n, n)).astype(np.complex64)
    yy, xx = np.meshgrid(np.linspace(-1, 1, n), np.linspace(-1, 1, n), indexing="ij")
    img = img * np.exp(1j * np.pi / 3 * (xx + 0.5 * yy ** 2)).astype(np.complex64)
    maps = sigpy.mri.birdcage_maps((coils, n, n), r=1.5).astype(np.complex64)
    maps /= np.sqrt((np.abs(maps) ** 2).sum(0, keepdims=True))
    image, smaps = torch.from_numpy(img), torch.from_numpy(maps)
    full = fft2c(smaps * image)
    gen = torch.Generator().manual_seed(seed)
    std = noise * float(image.abs().max())
    full = full + std * torch.randn(full.shape, dtype=torch.complex64, generator=gen)
    mask = equispaced_mask(n, accel, center_lines)
    return Problem(kspace=full * mask, mask=mask, maps=smaps, image=image, noise_std=std)


def bart_phantom_case(bart: str, folder: Path) -> dict:
    """BART's phantom (128², 8 coils, ``bart phantom -x 128 -s 8 -k``) + complex noise (2 % of the peak / 128),
    3× equispaced lines with 20 centre lines, and ``bart ecalib -m1`` maps.

    Writes ``ksp`` and ``maps`` (cfl, BART layout) into ``folder`` for ``bart pics``. Returns
    ``{"dir", "ksp" [C, H, W], "mask", "maps", "gt"}``, ``gt`` the magnitude of the fully sampled image
    combined with the same maps. Raises ``subprocess.CalledProcessError`` when BART fails.
    """
    import subprocess

    from mrirecon.io.cfl import read_cfl, write_cfl
    from mrirecon.operators import Sense

    folder = Path(folder)

    def ours(arr: np.ndarray) -> torch.Tensor:  # BART [H, W, 1, C] -> ours [C, H, W]
        return torch.from_numpy(np.ascontiguousarray(np.moveaxis(arr.reshape(128, 128, 8), -1, 0)))

    def tool(*args: object) -> None:
        subprocess.run([bart, *map(str, args)], check=True, capture_output=True)

    tool("phantom", "-x", "128", "-s", "8", "-k", folder / "full")
    full = ours(read_cfl(folder / "full"))
    gen = torch.Generator().manual_seed(0)
    full = full + 0.02 * float(full.abs().max()) / 128 * torch.randn(full.shape, dtype=torch.complex64, generator=gen)
    mask = equispaced_mask(128, 3, 20)
    ksp = full * mask
    write_cfl(folder / "ksp", np.moveaxis(ksp.numpy(), 0, -1)[:, :, None, :])
    tool("ecalib", "-m1", folder / "ksp", folder / "maps")
    maps = ours(read_cfl(folder / "maps"))
    gt = Sense(maps).adjoint(full).abs()
    return {"dir": folder, "ksp": ksp, "mask": mask, "maps": maps, "gt": gt}

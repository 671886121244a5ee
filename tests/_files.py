"""Test helpers: fastMRI-style files written by hand with h5py (independently of mrirecon's writer)."""
from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np

KNEE_STYLE_HEADER = """<?xml version="1.0" encoding="utf-8"?>
<ismrmrdHeader xmlns="http://www.ismrm.org/ISMRMRD" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">
  <studyInformation><studyTime>11:22:33</studyTime></studyInformation>
  <measurementInformation><patientPosition>FFS</patientPosition><protocolName>CORPD_FBK</protocolName></measurementInformation>
  <acquisitionSystemInformation><systemVendor>SIEMENS</systemVendor><systemFieldStrength_T>2.89362</systemFieldStrength_T>
    <receiverChannels>{coils}</receiverChannels></acquisitionSystemInformation>
  <experimentalConditions><H1resonanceFrequency_Hz>123251815</H1resonanceFrequency_Hz></experimentalConditions>
  <encoding>
    <encodedSpace><matrixSize><x>{ex}</x><y>{ey}</y><z>1</z></matrixSize>
      <fieldOfView_mm><x>280</x><y>140</y><z>4.5</z></fieldOfView_mm></encodedSpace>
    <reconSpace><matrixSize><x>{rx}</x><y>{ry}</y><z>1</z></matrixSize>
      <fieldOfView_mm><x>140</x><y>140</y><z>3</z></fieldOfView_mm></reconSpace>
    <trajectory>cartesian</trajectory>
    <encodingLimits>
      <kspace_encoding_step_1><minimum>0</minimum><maximum>{kmax}</maximum><center>{kcenter}</center></kspace_encoding_step_1>
      <kspace_encoding_step_2><minimum>0</minimum><maximum>0</maximum><center>0</center></kspace_encoding_step_2>
      <slice><minimum>0</minimum><maximum>{smax}</maximum><center>0</center></slice>
    </encodingLimits>
  </encoding>
</ismrmrdHeader>"""


def _rss_target(kspace: np.ndarray, recon: tuple[int, int], multicoil: bool) -> np.ndarray:
    """Target as fastMRI makes it: RSS (or magnitude) of the centred inverse FFT, centre-cropped (fastmri code)."""
    import fastmri
    from fastmri.data import transforms as T

    img = fastmri.complex_abs(fastmri.ifft2c(T.to_tensor(kspace)))
    if multicoil:
        img = fastmri.rss(img, dim=1)
    return T.center_crop(img, recon).numpy().astype(np.float32)


def write_fastmri_style(path: Path, slices: int = 3, coils: int = 4, shape: tuple[int, int] = (24, 19),
                        recon: tuple[int, int] = (12, 12), limits: tuple[int, int] | None = (15, 8),
                        seed: int = 0, singlecoil: bool = False, with_mask: bool = False) -> Path:
    """A knee-like file: readout oversampled ``H``, odd ``W``, asymmetric encoding limits (zero columns outside).

    ``limits = (maximum, center)`` of ``kspace_encoding_step_1``: columns outside fastMRI's padding are zero.
    """
    rng = np.random.default_rng(seed)
    h, w = shape
    kshape = (slices, h, w) if singlecoil else (slices, coils, h, w)
    k = (rng.standard_normal(kshape) + 1j * rng.standard_normal(kshape)).astype(np.complex64) * 1e-4
    kmax, kcenter = limits if limits is not None else (w - 1, w // 2)
    left = w // 2 - kcenter
    right = left + kmax + 1
    k[..., :left] = 0
    k[..., right:] = 0
    hdr = KNEE_STYLE_HEADER.format(coils=1 if singlecoil else coils, ex=h, ey=w, rx=recon[0], ry=recon[1],
                                   kmax=kmax, kcenter=kcenter, smax=slices - 1)
    target = _rss_target(k, recon, not singlecoil)
    path.parent.mkdir(parents=True, exist_ok=True)
    with h5py.File(path, "w") as f:
        f.create_dataset("kspace", data=k)
        f.create_dataset("ismrmrd_header", data=np.bytes_(hdr.encode()))
        if with_mask:
            m = np.zeros(w, dtype=np.float32)
            m[::3] = 1
            m[w // 2 - 2: w // 2 + 2] = 1
            f.create_dataset("mask", data=m)
            f["kspace"][...] = k * m
        else:
            f.create_dataset("reconstruction_esc" if singlecoil else "reconstruction_rss", data=target)
        f.attrs["acquisition"] = "CORPD_FBK"
        f.attrs["max"] = float(target.max())
        f.attrs["norm"] = float(np.linalg.norm(target))
        f.attrs["patient_id"] = "abc123"
    return path

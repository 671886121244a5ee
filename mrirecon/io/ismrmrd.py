"""ISMRMRD raw data (HDF5 ``.h5``/``.mrd`` files and ``.mrd`` streams) to Cartesian k-space (numpy only).

:func:`read_ismrmrd` turns the acquisitions of one encoding space into k-space arrays
``[N, C, H, W]`` (``H`` readout after oversampling removal, ``W`` = ``kspace_encode_step_1``), one entry
per combination of slice, contrast, repetition, phase, set and average (averages combined on request),
following the acquisition flags:

* noise measurements → noise covariance ``Ψ = η η^H / (N - 1)`` scaled to the imaging dwell time
  (``· t_noise / t_imaging``: noise variance is proportional to the bandwidth) and, by default,
  prewhitening ``y ← L⁻¹ y`` with ``Ψ = L L^H``, after which the imaging noise is white with unit complex
  variance (``E|n|² = 1``). This equals :func:`mrirecon.operators.coils.prewhitening_matrix` with
  ``bandwidth_ratio(t_imaging, t_noise, receiver_noise_bandwidth=1)``; Gadgetron additionally multiplies by
  the receiver noise bandwidth (0.793) and ``sqrt(2)``, a global scale that changes no reconstruction;
* parallel-calibration lines → a separate calibration k-space (``calib``); calibration-and-imaging lines
  count as imaging lines;
* reverse-readout lines are flipped; navigator, phase-correction, feedback, dummy-scan and
  phase-stabilisation lines are skipped;
* ``discard_pre``/``discard_post`` samples are dropped, the readout is placed by ``center_sample``
  (partial echo zero-filled) and the oversampling is removed by cropping the readout in the image domain
  to the recon field of view;
* lines are placed by ``kspace_encode_step_1`` (and ``_2``) relative to the encoding-limit centres;
  partial Fourier is zero-filled and reported (``partial_fourier``);
* 3D encodings (``kspace_encode_step_2``) fully sampled along ``kz`` are split into partitions (an inverse
  FFT along ``kz``); non-Cartesian trajectories raise a clear "not supported yet" error.

FFTs here are centred and orthonormal (the convention of :mod:`mrirecon.operators.fft`).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from mrirecon.errors import DataError, NonFiniteError, ShapeError
from mrirecon.io.h5util import PathLike, open_h5, read_dataset

# acquisition flags (bit numbers of the ISMRMRD standard, as in ismrmrd.constants)
_NOISE, _CALIB, _CALIB_AND_IMAGING, _REVERSE = 19, 20, 21, 22
_SKIP = {23: "navigator", 24: "phase correction", 26: "HP feedback", 27: "dummy scan", 28: "RT feedback",
         29: "surface-coil correction", 30: "phase stabilisation reference", 31: "phase stabilisation"}


def _bit(flag: int) -> int:
    return 1 << (flag - 1)


@dataclass(frozen=True)
class RawIndex:
    """The counters that identify one output image (``average = -1`` when averages are combined)."""

    slice: int = 0
    contrast: int = 0
    repetition: int = 0
    phase: int = 0
    set: int = 0
    average: int = -1
    partition: int = -1

    def label(self) -> str:
        parts = [f"slice{self.slice}"]
        for name in ("contrast", "repetition", "phase", "set"):
            if getattr(self, name):
                parts.append(f"{name}{getattr(self, name)}")
        if self.average > 0:
            parts.append(f"average{self.average}")
        if self.partition >= 0:
            parts.append(f"partition{self.partition}")
        return "_".join(parts)


@dataclass
class RawKSpace:
    """Cartesian k-space assembled from an ISMRMRD file.

    Attributes:
        source: the file.
        kspace: complex64 ``[N, C, H, W]`` imaging data, zero where not acquired.
        mask: float32 ``[N, W]``: 1 where a ``kspace_encode_step_1`` line was acquired.
        index: the :class:`RawIndex` of each of the ``N`` entries (sorted by slice, contrast, ...).
        calib: complex64 ``[N, C, H, W]`` parallel-calibration-only lines, or ``None`` when there are none.
        calib_mask: float32 ``[N, W]`` or ``None``.
        noise_covariance: ``[C, C]`` complex noise covariance (per imaging sample), or ``None`` without noise scans.
        prewhitened: whether the data were prewhitened with it.
        recon_size: ``(h, w)`` of the header's recon matrix.
        encoded_size: ``(x, y, z)`` of the header's encoded matrix (before oversampling removal).
        fov_mm: ``(H, W)`` field of view of the k-space arrays in mm (``None`` when the header has none).
        partial_fourier: ``(readout, phase)`` fraction of k-space the encoding covers (1.0: full).
        header_xml: the ISMRMRD XML header text.
        counts: numbers of acquisitions by kind (imaging, calibration, noise, skipped, ...).
    """

    source: str
    kspace: np.ndarray
    mask: np.ndarray
    index: list[RawIndex]
    calib: np.ndarray | None
    calib_mask: np.ndarray | None
    noise_covariance: np.ndarray | None
    prewhitened: bool
    recon_size: tuple[int, int]
    encoded_size: tuple[int, int, int]
    fov_mm: tuple[float, float] | None
    partial_fourier: tuple[float, float]
    header_xml: str
    counts: dict[str, int] = field(default_factory=dict)

    @property
    def acceleration(self) -> float:
        """Nominal acceleration: columns within the encoding limits over columns acquired (first entry)."""
        return float(self.mask.shape[-1] * self.partial_fourier[1] / max(1.0, float(self.mask[0].sum())))


def _fft1c(x: np.ndarray, axis: int, inverse: bool) -> np.ndarray:
    f = np.fft.ifft if inverse else np.fft.fft
    return np.fft.fftshift(f(np.fft.ifftshift(x, axes=axis), axis=axis, norm="ortho"), axes=axis)


# ---------------------------------------------------------------------------------------------
# reading the acquisitions
# ---------------------------------------------------------------------------------------------
def _is_hdf5(path: Path) -> bool:
    with open(path, "rb") as fh:
        return fh.read(8) == b"\x89HDF\r\n\x1a\n"


def _load_hdf5(path: Path, group: str) -> tuple[str, np.ndarray, list[np.ndarray]]:
    with open_h5(path, "HDF5 file (ISMRMRD)") as f:
        if group not in f:
            raise DataError(f"{path}: group '/{group}' is missing (not an ISMRMRD file? it holds {sorted(f.keys())})")
        g = f[group]
        if "xml" not in g:
            raise DataError(f"{path}: field '/{group}/xml' (the ISMRMRD header) is missing")
        if "data" not in g:
            raise DataError(f"{path}: field '/{group}/data' (the acquisitions) is missing")
        xml = read_dataset(f, f"{group}/xml", 0, str(path))
        xml = xml.decode() if isinstance(xml, bytes) else str(xml)
        dset = g["data"]
        try:
            heads = dset.fields("head")[()]
            raw = dset.fields("data")[()]
        except (OSError, RuntimeError, KeyError, ValueError) as exc:
            raise DataError(f"{path}: field '/{group}/data': cannot read the acquisitions ({exc})") from None
    return xml, np.atleast_1d(heads), list(np.atleast_1d(raw))


def _load_stream(path: Path) -> tuple[str, np.ndarray, list[np.ndarray]]:
    import ismrmrd
    from ismrmrd.hdf5 import acquisition_header_dtype
    from ismrmrd.serialization import ProtocolDeserializer

    xml = None
    heads: list[np.ndarray] = []
    datas: list[np.ndarray] = []
    try:
        with ProtocolDeserializer(str(path)) as des:
            for obj in des.deserialize():
                if isinstance(obj, ismrmrd.Acquisition):
                    heads.append(np.frombuffer(bytes(obj.getHead()), dtype=acquisition_header_dtype))
                    datas.append(np.ascontiguousarray(obj.data, dtype=np.complex64).view(np.float32).ravel())
                elif xml is None and type(obj).__name__ == "ismrmrdHeader":
                    import ismrmrd.xsd
                    xml = ismrmrd.xsd.ToXML(obj)
    except EOFError:
        pass  # a stream without a CLOSE message
    except Exception as exc:  # the deserializer raises ValueError/struct errors on garbage
        raise DataError(f"{path}: not a readable ISMRMRD file or stream ({type(exc).__name__}: {exc})") from None
    if xml is None:
        raise DataError(f"{path}: the ISMRMRD stream has no XML header")
    return xml, (np.concatenate(heads) if heads else np.zeros(0, acquisition_header_dtype)), datas


def _parse_header(xml: str, src: str) -> Any:
    import ismrmrd.xsd

    try:
        return ismrmrd.xsd.CreateFromDocument(xml)
    except Exception as exc:
        raise DataError(f"{src}: field '/dataset/xml': not a valid ISMRMRD header ({type(exc).__name__}: "
                        f"{str(exc)[:200]})") from None


def _limits(lim: Any, n: int) -> tuple[int, int, int]:
    if lim is None:
        return 0, n - 1, n // 2
    return int(lim.minimum), int(lim.maximum), int(lim.center)


def read_ismrmrd(path: PathLike, *, dataset: str = "dataset", encoding: int = 0, prewhiten: bool = True,
                 combine_averages: bool = False, remove_oversampling: bool = True) -> RawKSpace:
    """Assemble Cartesian k-space from an ISMRMRD raw file (see the module docstring for the flags honoured).

    Args:
        path: an ISMRMRD HDF5 file (``.h5``/``.mrd``) or an ISMRMRD binary stream (``.mrd``/``.bin``).
        dataset: the HDF5 group (``"dataset"``).
        encoding: which encoding space (``encoding_space_ref``) to read.
        prewhiten: decorrelate the coils with the noise scans (when the file has any).
        combine_averages: average repeated acquisitions of a line across the ``average`` counter.
        remove_oversampling: crop the readout to the recon field of view.

    Returns:
        A :class:`RawKSpace`.

    Raises:
        DataError: missing header/acquisitions, unsupported trajectory, no imaging lines, lines outside the
            encoded matrix or inconsistent encoding limits (named).  ShapeError: channel counts that differ or
            are zero.  NonFiniteError: NaN/Inf samples.
    """
    p = Path(path)
    src = str(p)
    if not p.exists():
        raise DataError(f"{p}: file not found")
    if p.is_dir():
        raise DataError(f"{p}: is a folder, expected an ISMRMRD file")
    xml, heads, raw = _load_hdf5(p, dataset) if _is_hdf5(p) else _load_stream(p)
    hdr = _parse_header(xml, src)
    if not hdr.encoding or encoding >= len(hdr.encoding):
        raise DataError(f"{src}: field '/dataset/xml' encoding[{encoding}] does not exist "
                        f"(the header has {len(hdr.encoding)} encoding section(s))")
    enc = hdr.encoding[encoding]
    traj = getattr(enc.trajectory, "value", str(enc.trajectory))
    if traj != "cartesian":
        raise DataError(f"{src}: trajectory '{traj}' (encoding/trajectory) is not supported yet; only Cartesian "
                        f"raw data can be read (non-Cartesian needs gridding/NUFFT)")
    es, rs = enc.encodedSpace, enc.reconSpace
    ex, ey, ez = int(es.matrixSize.x), int(es.matrixSize.y), int(es.matrixSize.z or 1)
    rx, ry = int(rs.matrixSize.x), int(rs.matrixSize.y)
    if min(ex, ey, ez, rx, ry) < 1:
        raise DataError(f"{src}: field encoding/encodedSpace/matrixSize = ({ex}, {ey}, {ez}) or reconSpace "
                        f"({rx}, {ry}) is not positive")
    lim = enc.encodingLimits
    ky_lim = _limits(getattr(lim, "kspace_encoding_step_1", None), ey)
    kz_lim = _limits(getattr(lim, "kspace_encoding_step_2", None), ez)
    for name, (lo, hi, c), n in (("kspace_encoding_step_1", ky_lim, ey), ("kspace_encoding_step_2", kz_lim, ez)):
        left = n // 2 - c
        if lo > hi or left < 0 or left + hi + 1 > n or c < lo:
            raise DataError(f"{src}: field encoding/encodingLimits/{name} (min, max, center) = ({lo}, {hi}, {c}) is "
                            f"inconsistent with the encoded matrix size {n}")
    ky_off, kz_off = ey // 2 - ky_lim[2], ez // 2 - kz_lim[2]

    flags = heads["flags"].astype(np.uint64) if len(heads) else np.zeros(0, np.uint64)

    def has(flag: int) -> np.ndarray:
        return (flags & np.uint64(_bit(flag))) != 0

    noise = has(_NOISE)
    skipped = np.zeros(len(heads), bool)
    for flag in _SKIP:
        skipped |= has(flag)
    own = heads["encoding_space_ref"] == encoding if len(heads) else np.zeros(0, bool)
    calib_only = has(_CALIB) & ~has(_CALIB_AND_IMAGING) & ~noise & ~skipped & own
    imaging = ~noise & ~skipped & ~calib_only & own
    counts = {"acquisitions": int(len(heads)), "imaging": int(imaging.sum()), "calibration": int(calib_only.sum()),
              "noise": int(noise.sum()), "skipped": int(skipped.sum()),
              "other_encodings": int((~own & ~noise).sum())}
    if not imaging.any():
        raise DataError(f"{src}: field '/{dataset}/data' has no imaging acquisitions for encoding {encoding} "
                        f"({counts['acquisitions']} acquisitions: {counts['noise']} noise, "
                        f"{counts['calibration']} calibration, {counts['skipped']} navigator/phase-correction/other)")

    def samples(i: int) -> np.ndarray:
        h = heads[i]
        c, n = int(h["active_channels"]), int(h["number_of_samples"])
        d = np.asarray(raw[i], dtype=np.float32)
        if d.size != 2 * c * n:
            raise DataError(f"{src}: acquisition {i}: {d.size // 2} complex samples stored, header says "
                            f"{c} channels × {n} samples (truncated file?)")
        return d.view(np.complex64).reshape(c, n)

    ncoils = {int(heads[i]["active_channels"]) for i in np.nonzero(imaging)[0]}
    if len(ncoils) != 1 or 0 in ncoils:
        raise ShapeError(f"{src}: imaging acquisitions have {sorted(ncoils)} active channels; expected one "
                         f"non-zero channel count")
    C = ncoils.pop()

    # noise covariance and prewhitening
    cov = None
    white = None
    if noise.any():
        nd = [samples(i) for i in np.nonzero(noise)[0]]
        if any(x.shape[0] != C for x in nd):
            raise ShapeError(f"{src}: noise acquisitions have {sorted({x.shape[0] for x in nd})} channels, the "
                             f"imaging data {C}")
        X = np.concatenate(nd, axis=1).astype(np.complex128)
        if not np.isfinite(X).all():
            raise NonFiniteError(f"{src}: noise acquisitions hold NaN/Inf samples")
        if X.shape[1] < 2:
            raise DataError(f"{src}: the noise acquisitions hold {X.shape[1]} sample(s) per channel; need at least 2")
        cov = X @ X.conj().T / (X.shape[1] - 1)
        t_noise = float(np.median(heads["sample_time_us"][noise]))
        t_acq = float(np.median(heads["sample_time_us"][imaging]))
        if t_noise > 0 and t_acq > 0:
            cov = cov * (t_noise / t_acq)
        if prewhiten:
            try:
                L = np.linalg.cholesky(cov)
            except np.linalg.LinAlgError:
                raise DataError(f"{src}: the noise covariance of the noise scans is not positive definite "
                                f"(a dead channel?); read with prewhiten=False") from None
            white = np.linalg.inv(L).astype(np.complex64)

    # assemble lines
    def key_of(h: np.ndarray) -> RawIndex:
        idx = h["idx"]
        return RawIndex(slice=int(idx["slice"]), contrast=int(idx["contrast"]), repetition=int(idx["repetition"]),
                        phase=int(idx["phase"]), set=int(idx["set"]),
                        average=-1 if combine_averages else int(idx["average"]))

    buffers: dict[tuple[bool, RawIndex], tuple[np.ndarray, np.ndarray]] = {}
    ro_partial = 1.0
    for i in np.nonzero(imaging | calib_only)[0]:
        h = heads[i]
        d = samples(i)
        if d.shape[0] != C:
            raise ShapeError(f"{src}: acquisition {i} has {d.shape[0]} channels, the others {C}")
        if not np.isfinite(d.view(np.float32)).all():
            raise NonFiniteError(f"{src}: acquisition {i} (kspace_encode_step_1 = "
                                 f"{int(h['idx']['kspace_encode_step_1'])}) holds NaN/Inf samples")
        pre, post = int(h["discard_pre"]), int(h["discard_post"])
        n = d.shape[1]
        center = int(h["center_sample"]) - pre
        d = d[:, pre:n - post]
        if flags[i] & np.uint64(_bit(_REVERSE)):
            d = d[:, ::-1]
            center = d.shape[1] - 1 - center
        start = ex // 2 - center
        if start < 0 or start + d.shape[1] > ex:
            raise DataError(f"{src}: acquisition {i}: {d.shape[1]} samples with center_sample {center} do not fit "
                            f"the encoded readout size {ex} (encoding/encodedSpace/matrixSize/x)")
        ro_partial = min(ro_partial, d.shape[1] / ex)
        ky = int(h["idx"]["kspace_encode_step_1"]) + ky_off
        kz = int(h["idx"]["kspace_encode_step_2"]) + kz_off
        if not 0 <= ky < ey or not 0 <= kz < ez:
            raise DataError(f"{src}: acquisition {i}: kspace_encode_step_1/2 = "
                            f"({int(h['idx']['kspace_encode_step_1'])}, {int(h['idx']['kspace_encode_step_2'])}) "
                            f"falls outside the encoded matrix ({ey}, {ez}) given the encoding-limit centres")
        if white is not None:
            d = white @ d
        bkey = (bool(calib_only[i]), key_of(h))
        if bkey not in buffers:
            buffers[bkey] = (np.zeros((C, ez, ex, ey), np.complex64), np.zeros((ez, ey), np.int32))
        buf, cnt = buffers[bkey]
        buf[:, kz, start:start + d.shape[1], ky] += d
        cnt[kz, ky] += 1

    keys = sorted({k for (is_cal, k) in buffers if not is_cal},
                  key=lambda r: (r.slice, r.contrast, r.repetition, r.phase, r.set, r.average))
    # readout oversampling removal: crop the readout to the recon field of view (image domain)
    nx = ex
    if remove_oversampling:
        efov, rfov = getattr(es.fieldOfView_mm, "x", None), getattr(rs.fieldOfView_mm, "x", None)
        nx = int(round(ex * rfov / efov)) if efov and rfov else rx
        nx = min(ex, max(1, nx))

    def finish(buf: np.ndarray, cnt: np.ndarray) -> list[tuple[np.ndarray, np.ndarray, int]]:
        k = buf / np.maximum(cnt, 1)[None, :, None, :]
        if nx < ex:
            img = _fft1c(k, axis=2, inverse=True)
            s0 = ex // 2 - nx // 2
            k = _fft1c(img[:, :, s0:s0 + nx], axis=2, inverse=False)
        m = (cnt > 0).astype(np.float32)
        if ez == 1:
            return [(k[:, 0].astype(np.complex64), m[0], -1)]
        ky_lines = m.any(axis=0)                        # [ey]: lines acquired in some partition
        kz_range = slice(kz_off + kz_lim[0], kz_off + kz_lim[1] + 1)
        if not m[kz_range][:, ky_lines].all():
            raise DataError(f"{src}: 3D encoding undersampled along kspace_encode_step_2 is not supported yet "
                            f"(partitions can only be separated when kz is fully sampled)")
        img = _fft1c(k, axis=1, inverse=True)
        return [(img[:, z].astype(np.complex64), ky_lines.astype(np.float32), z) for z in range(ez)]

    out_k, out_m, out_idx, out_c, out_cm = [], [], [], [], []
    have_calib = any(is_cal for is_cal, _ in buffers)
    for key in keys:
        parts = finish(*buffers[(False, key)])
        cal = buffers.get((True, key))
        if cal is None and have_calib:  # calibration acquired once (e.g. a separate reference scan) per slice
            cal = next((v for (is_cal, k), v in buffers.items() if is_cal and k.slice == key.slice), None)
        cparts = finish(*cal) if cal is not None else None
        for j, (k, m, z) in enumerate(parts):
            out_k.append(k)
            out_m.append(m)
            out_idx.append(RawIndex(**{**key.__dict__, "partition": z}))
            if have_calib:
                out_c.append(cparts[j][0] if cparts else np.zeros_like(k))
                out_cm.append(cparts[j][1] if cparts else np.zeros_like(m))
    efov = es.fieldOfView_mm
    fov = None
    if efov is not None and efov.x and efov.y:
        fov = (float(efov.x) * nx / ex, float(efov.y))
    return RawKSpace(
        source=src, kspace=np.stack(out_k), mask=np.stack(out_m), index=out_idx,
        calib=np.stack(out_c) if have_calib else None, calib_mask=np.stack(out_cm) if have_calib else None,
        noise_covariance=cov, prewhitened=white is not None, recon_size=(rx, ry), encoded_size=(ex, ey, ez),
        fov_mm=fov, partial_fourier=(float(ro_partial), (ky_lim[1] - ky_lim[0] + 1) / ey),
        header_xml=xml, counts=counts)


def header_for_kspace(raw: RawKSpace) -> str:
    """The ISMRMRD header rewritten for the assembled k-space (encoded ``x`` = readout after oversampling removal).

    fastMRI-style files need ``encodedSpace`` to describe the stored k-space array.
    """
    import ismrmrd.xsd

    hdr = ismrmrd.xsd.CreateFromDocument(raw.header_xml)
    enc = hdr.encoding[0]
    nx = raw.kspace.shape[-2]
    ex = int(enc.encodedSpace.matrixSize.x)
    if nx != ex:
        if enc.encodedSpace.fieldOfView_mm is not None:
            enc.encodedSpace.fieldOfView_mm.x = float(enc.encodedSpace.fieldOfView_mm.x) * nx / ex
        enc.encodedSpace.matrixSize.x = nx
    if enc.encodedSpace.matrixSize.z and int(enc.encodedSpace.matrixSize.z) > 1:
        enc.encodedSpace.matrixSize.z = 1
    return ismrmrd.xsd.ToXML(hdr)


def looks_like_ismrmrd(path: PathLike) -> bool:
    """Whether ``path`` is an HDF5 file with an ``/dataset/data`` group entry, or a non-HDF5 ``.mrd`` stream."""
    p = Path(path)
    if not p.is_file():
        return False
    if not _is_hdf5(p):
        return p.suffix in (".mrd", ".bin")
    import h5py

    try:
        with h5py.File(p, "r") as f:
            return "dataset" in f and isinstance(f["dataset"], h5py.Group) and ("data" in f["dataset"]
                                                                                 or "xml" in f["dataset"])
    except OSError:
        return False


__all__ = ["RawIndex", "RawKSpace", "header_for_kspace", "looks_like_ismrmrd", "read_ismrmrd"]

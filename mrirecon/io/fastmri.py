"""fastMRI HDF5 files: read, validate and write (numpy/h5py only).

A fastMRI file holds one volume:

* ``kspace``: complex64 ``[slices, coils, H, W]`` (multicoil) or ``[slices, H, W]`` (singlecoil); ``H`` is the
  readout (ISMRMRD ``x``), ``W`` the phase encoding (``y``, the direction that masks undersample);
* ``ismrmrd_header``: the ISMRMRD XML header (encoded and recon matrix sizes, encoding limits);
* ``reconstruction_rss`` (multicoil) / ``reconstruction_esc`` (singlecoil): float32 ``[slices, h, w]`` targets
  at the recon size (absent in test sets);
* optional ``mask`` (``[W]``, test sets) and attributes ``max``, ``norm``, ``acquisition``, ``patient_id``.

The submission format of the fastMRI challenge is one file per volume with a single dataset
``reconstruction``, float32 ``[slices, h, w]`` (:func:`write_submission`).
"""
from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from mrirecon.errors import DataError, DTypeError, NonFiniteError, ShapeError
from mrirecon.io.h5util import PathLike, atomic_h5, open_h5, read_dataset

ISMRMRD_NS = "http://www.ismrm.org/ISMRMRD"
TARGET_KEYS = ("reconstruction_rss", "reconstruction_esc", "reconstruction")


@dataclass(frozen=True)
class EncodingInfo:
    """What the ISMRMRD header says about the first encoding space.

    Attributes:
        encoded_size: ``(x, y, z)`` encoded matrix (``x`` readout, ``y`` phase encoding).
        recon_size: ``(x, y, z)`` reconstructed matrix.
        encoded_fov_mm, recon_fov_mm: fields of view in mm, or ``None`` when absent.
        ky_limits: ``(minimum, maximum, center)`` of ``kspace_encoding_step_1``, or ``None``.
        kz_limits: the same for ``kspace_encoding_step_2``, or ``None``.
        coils: ``receiverChannels``, or ``None``.
        trajectory: e.g. ``"cartesian"``.
        acceleration: ``(ky, kz)`` parallel-imaging factors from the header, or ``None``.
    """

    encoded_size: tuple[int, int, int]
    recon_size: tuple[int, int, int]
    encoded_fov_mm: tuple[float, float, float] | None = None
    recon_fov_mm: tuple[float, float, float] | None = None
    ky_limits: tuple[int, int, int] | None = None
    kz_limits: tuple[int, int, int] | None = None
    coils: int | None = None
    trajectory: str = "cartesian"
    acceleration: tuple[int, int] | None = None

    @property
    def padding(self) -> tuple[int, int]:
        """fastMRI's ``(padding_left, padding_right)``: the columns that the encoding limits can hold.

        ``padding_left = encoded_y // 2 - center``, ``padding_right = padding_left + maximum + 1``; columns
        outside ``[left, right)`` were never acquired (asymmetric/partial Fourier encoding).
        """
        if self.ky_limits is None:
            return 0, self.encoded_size[1]
        _, kmax, center = self.ky_limits
        left = self.encoded_size[1] // 2 - center
        return left, left + kmax + 1


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def _find(root: ET.Element, path: list[str]) -> ET.Element | None:
    """Namespace-agnostic nested lookup (first match at each level, searched depth-first like fastMRI)."""
    node: ET.Element | None = root
    for name in path:
        if node is None:
            return None
        node = next((el for el in node.iter() if el is not node and _local(el.tag) == name), None)
    return node


def parse_ismrmrd_header(xml: bytes | str, source: str = "ismrmrd_header") -> EncodingInfo:
    """Parse the fields of an ISMRMRD XML header that reconstruction needs.

    Args:
        xml: the header text (bytes or str).
        source: ``"file: field"`` used in error messages.

    Raises:
        DataError: the XML is malformed, or the encoded/recon matrix size is missing or not a positive integer.
    """
    if isinstance(xml, np.ndarray):
        xml = xml.item() if xml.size == 1 else xml.tobytes()
    try:
        root = ET.fromstring(xml)
    except ET.ParseError as exc:
        raise DataError(f"{source}: not valid XML ({exc})") from None
    enc = _find(root, ["encoding"])
    if enc is None:
        raise DataError(f"{source}: no <encoding> section")

    def num(path: list[str], cast: type = int, required: bool = True) -> Any:
        el = _find(enc, path)
        if el is None or el.text is None or not el.text.strip():
            if required:
                raise DataError(f"{source}: field encoding/{'/'.join(path)} is missing")
            return None
        try:
            return cast(float(el.text)) if cast is int else cast(el.text)
        except ValueError:
            raise DataError(f"{source}: field encoding/{'/'.join(path)} = {el.text!r} is not a number") from None

    def triple(space: str, what: str, cast: type, required: bool) -> tuple | None:
        vals = [num([space, what, a], cast, required) for a in "xyz"]
        return None if any(v is None for v in vals) else tuple(vals)

    encoded = triple("encodedSpace", "matrixSize", int, True)
    recon = triple("reconSpace", "matrixSize", int, True)
    for name, size in (("encodedSpace", encoded), ("reconSpace", recon)):
        if min(size) < 1:
            raise DataError(f"{source}: field encoding/{name}/matrixSize = {size}: expected positive sizes")

    def limits(name: str) -> tuple[int, int, int] | None:
        if _find(enc, ["encodingLimits", name]) is None:
            return None
        lim = tuple(num(["encodingLimits", name, k], int, True) for k in ("minimum", "maximum", "center"))
        if not lim[0] <= lim[1]:
            raise DataError(f"{source}: field encoding/encodingLimits/{name}: minimum {lim[0]} > maximum {lim[1]}")
        return lim

    ky, kz = limits("kspace_encoding_step_1"), limits("kspace_encoding_step_2")
    if ky is not None:
        left = encoded[1] // 2 - ky[2]
        if left < 0 or left + ky[1] + 1 > encoded[1] or ky[2] < ky[0]:
            raise DataError(f"{source}: field encoding/encodingLimits/kspace_encoding_step_1 (min, max, center) = "
                            f"{ky} is inconsistent with the encoded matrix y = {encoded[1]} (lines would fall "
                            f"outside [0, {encoded[1]}))")
    traj = _find(enc, ["trajectory"])
    coils_el = _find(root, ["acquisitionSystemInformation", "receiverChannels"])
    acc = None
    if _find(enc, ["parallelImaging"]) is not None:
        a1 = num(["parallelImaging", "accelerationFactor", "kspace_encoding_step_1"], int, False)
        a2 = num(["parallelImaging", "accelerationFactor", "kspace_encoding_step_2"], int, False)
        acc = (a1 or 1, a2 or 1)
    return EncodingInfo(
        encoded_size=encoded, recon_size=recon,
        encoded_fov_mm=triple("encodedSpace", "fieldOfView_mm", float, False),
        recon_fov_mm=triple("reconSpace", "fieldOfView_mm", float, False),
        ky_limits=ky, kz_limits=kz,
        coils=int(float(coils_el.text)) if coils_el is not None and coils_el.text else None,
        trajectory=(traj.text or "cartesian").strip() if traj is not None else "cartesian",
        acceleration=acc,
    )


def make_ismrmrd_header(encoded_size: tuple[int, int, int], recon_size: tuple[int, int, int],
                        encoded_fov_mm: tuple[float, float, float], recon_fov_mm: tuple[float, float, float],
                        coils: int, ky_limits: tuple[int, int, int] | None = None,
                        slice_limits: tuple[int, int, int] | None = None, field_strength_t: float = 3.0,
                        protocol_name: str | None = None, patient_id: str | None = None,
                        vendor: str = "mrirecon") -> str:
    """An ISMRMRD XML header (written with the ``ismrmrd`` package's schema classes) for a Cartesian scan.

    Args:
        encoded_size, recon_size: ``(x, y, z)`` matrices (``x`` readout, ``y`` phase encoding).
        encoded_fov_mm, recon_fov_mm: fields of view in mm.
        coils: number of receiver channels.
        ky_limits: ``(min, max, center)`` of ``kspace_encoding_step_1``; default ``(0, y-1, y//2)``.
        slice_limits: ``(min, max, center)`` of the slice counter, or ``None``.
    """
    import ismrmrd.xsd as x

    ky = ky_limits or (0, encoded_size[1] - 1, encoded_size[1] // 2)
    lim = x.encodingLimitsType(
        kspace_encoding_step_0=x.limitType(minimum=0, maximum=encoded_size[0] - 1, center=encoded_size[0] // 2),
        kspace_encoding_step_1=x.limitType(minimum=ky[0], maximum=ky[1], center=ky[2]),
        kspace_encoding_step_2=x.limitType(minimum=0, maximum=encoded_size[2] - 1, center=encoded_size[2] // 2),
        slice=None if slice_limits is None else x.limitType(minimum=slice_limits[0], maximum=slice_limits[1],
                                                            center=slice_limits[2]),
    )

    def space(size: tuple[int, int, int], fov: tuple[float, float, float]) -> Any:
        return x.encodingSpaceType(matrixSize=x.matrixSizeType(x=int(size[0]), y=int(size[1]), z=int(size[2])),
                                   fieldOfView_mm=x.fieldOfViewMm(x=float(fov[0]), y=float(fov[1]), z=float(fov[2])))

    header = x.ismrmrdHeader(
        version=1,
        subjectInformation=x.subjectInformationType(patientID=patient_id) if patient_id else None,
        measurementInformation=None if protocol_name is None else x.measurementInformationType(
            protocolName=protocol_name, patientPosition=x.patientPositionType.HFS),
        acquisitionSystemInformation=x.acquisitionSystemInformationType(
            systemVendor=vendor, systemFieldStrength_T=float(field_strength_t), receiverChannels=int(coils)),
        experimentalConditions=x.experimentalConditionsType(H1resonanceFrequency_Hz=int(42.577478e6 * field_strength_t)),
        encoding=[x.encodingType(encodedSpace=space(encoded_size, encoded_fov_mm),
                                 reconSpace=space(recon_size, recon_fov_mm), encodingLimits=lim,
                                 trajectory=x.trajectoryType.CARTESIAN)],
    )
    return x.ToXML(header)


@dataclass(frozen=True)
class FastMRIFileInfo:
    """Validated layout of one fastMRI file (no k-space values are read).

    Attributes:
        path: the file.
        challenge: ``"multicoil"`` (``kspace`` 4D) or ``"singlecoil"`` (3D).
        num_slices, coils: sizes (``coils`` is 1 for singlecoil).
        matrix: ``(H, W)`` of the k-space.
        encoding: the parsed header.
        targets: the target datasets present (``reconstruction_rss``/``_esc``/``reconstruction``).
        target_shape: ``(h, w)`` of the first target, or ``None``.
        mask: the file's ``mask`` (``[W]`` float32, test sets) or ``None``.
        attrs: the file attributes (numpy scalars turned into Python numbers).
        datasets: all top-level dataset names.
    """

    path: str
    challenge: str
    num_slices: int
    coils: int
    matrix: tuple[int, int]
    encoding: EncodingInfo
    targets: tuple[str, ...] = ()
    target_shape: tuple[int, int] | None = None
    mask: np.ndarray | None = None
    attrs: dict[str, Any] = field(default_factory=dict)
    datasets: tuple[str, ...] = ()

    @property
    def recon_size(self) -> tuple[int, int]:
        """``(h, w)`` of the reconstruction: the header's recon matrix ``(x, y)``."""
        return self.encoding.recon_size[0], self.encoding.recon_size[1]

    def target_key(self, challenge: str | None = None) -> str | None:
        """The target dataset for ``challenge`` (fastMRI: ``_rss`` for multicoil, ``_esc`` for singlecoil)."""
        want = {"multicoil": "reconstruction_rss", "singlecoil": "reconstruction_esc"}[challenge or self.challenge]
        if want in self.targets:
            return want
        return "reconstruction" if "reconstruction" in self.targets else None


def _plain(v: Any) -> Any:
    if isinstance(v, bytes):
        return v.decode(errors="replace")
    if isinstance(v, np.generic):
        return v.item()
    if isinstance(v, np.ndarray):
        return v.tolist()
    return v


def inspect_file(f: h5py.File, source: str | None = None) -> FastMRIFileInfo:
    """Validate an open fastMRI file and describe its layout (see :class:`FastMRIFileInfo`).

    Raises:
        DataError: ``kspace`` or ``ismrmrd_header`` missing or unreadable, inconsistent encoding limits.
        DTypeError: ``kspace`` not complex, target not real.
        ShapeError: ``kspace`` not 3D/4D, zero coils or slices, target slices differ from k-space slices.
    """
    src = source or f.filename
    names = tuple(sorted(f.keys()))
    if "kspace" not in f:
        raise DataError(f"{src}: field 'kspace' is missing (expected complex64 [slices, coils, H, W] or "
                        f"[slices, H, W]); the file holds {list(names) or 'nothing'}")
    ks = f["kspace"]
    if not isinstance(ks, h5py.Dataset):
        raise DataError(f"{src}: field 'kspace' is a group, expected a dataset")
    if ks.dtype.kind != "c":
        raise DTypeError(f"{src}: field 'kspace' has dtype {ks.dtype}, expected complex64 (or complex128)")
    if ks.ndim not in (3, 4):
        raise ShapeError(f"{src}: field 'kspace' has shape {list(ks.shape)}, expected [slices, coils, H, W] "
                         f"(multicoil) or [slices, H, W] (singlecoil)")
    if 0 in ks.shape:
        what = ["slices", "coils", "H", "W"] if ks.ndim == 4 else ["slices", "H", "W"]
        zero = [w for w, s in zip(what, ks.shape) if s == 0]
        raise ShapeError(f"{src}: field 'kspace' has shape {list(ks.shape)}: zero {', '.join(zero)}")
    if "ismrmrd_header" not in f:
        raise DataError(f"{src}: field 'ismrmrd_header' is missing (expected the ISMRMRD XML header)")
    enc = parse_ismrmrd_header(read_dataset(f, "ismrmrd_header", (), src), f"{src}: ismrmrd_header")
    multicoil = ks.ndim == 4
    targets = tuple(k for k in TARGET_KEYS if k in f)
    tshape = None
    for k in targets:
        t = f[k]
        if t.dtype.kind not in "fiu":
            raise DTypeError(f"{src}: field {k!r} has dtype {t.dtype}, expected float32 magnitude images")
        if t.ndim != 3 or t.shape[0] != ks.shape[0]:
            raise ShapeError(f"{src}: field {k!r} has shape {list(t.shape)}, expected [{ks.shape[0]}, h, w] "
                             f"(one image per k-space slice)")
        tshape = tshape or (int(t.shape[1]), int(t.shape[2]))
    mask = None
    if "mask" in f:
        mask = np.asarray(read_dataset(f, "mask", (), src)).astype(np.float32)
        if mask.ndim != 1 or mask.shape[0] != ks.shape[-1]:
            raise ShapeError(f"{src}: field 'mask' has shape {list(mask.shape)}, expected [{ks.shape[-1]}] "
                             f"(one entry per k-space column)")
    return FastMRIFileInfo(
        path=str(src), challenge="multicoil" if multicoil else "singlecoil", num_slices=int(ks.shape[0]),
        coils=int(ks.shape[1]) if multicoil else 1, matrix=(int(ks.shape[-2]), int(ks.shape[-1])), encoding=enc,
        targets=targets, target_shape=tshape, mask=mask,
        attrs={k: _plain(v) for k, v in f.attrs.items()}, datasets=names)


def inspect_fastmri(path: PathLike) -> FastMRIFileInfo:
    """Open ``path``, validate it as a fastMRI file and describe it (see :func:`inspect_file`)."""
    with open_h5(path, "HDF5 file (fastMRI)") as f:
        return inspect_file(f, str(path))


def check_finite(arr: np.ndarray, source: str, field_name: str) -> None:
    """Raise :class:`NonFiniteError` naming ``source`` and ``field_name`` if ``arr`` holds NaN or Inf."""
    if not np.isfinite(arr).all():
        bad = np.argwhere(~np.isfinite(arr))
        raise NonFiniteError(f"{source}: field {field_name!r} holds {len(bad)} NaN/Inf value(s), first at index "
                             f"{tuple(int(i) for i in bad[0])}")


def read_kspace(f: h5py.File, index: int | slice = slice(None), source: str | None = None) -> np.ndarray:
    """k-space of one slice (``index`` int) or several (a slice object), complex64, checked to be finite.

    Returns:
        ``[C, H, W]`` for one multicoil slice, ``[H, W]`` for one singlecoil slice (leading slice dim otherwise).
    """
    src = source or f.filename
    k = np.asarray(read_dataset(f, "kspace", index, src))
    if k.dtype != np.complex64:
        k = k.astype(np.complex64)
    where = "kspace" if isinstance(index, slice) else f"kspace[{index}]"
    check_finite(k, src, where)
    return k


def read_target(f: h5py.File, key: str, index: int | slice = slice(None), source: str | None = None) -> np.ndarray:
    """A target image (or stack) as float32, checked to be finite."""
    src = source or f.filename
    t = np.asarray(read_dataset(f, key, index, src), dtype=np.float32)
    check_finite(t, src, key)
    return t


def write_fastmri(path: PathLike, kspace: np.ndarray, header: str | bytes, *,
                  reconstruction_rss: np.ndarray | None = None, reconstruction_esc: np.ndarray | None = None,
                  mask: np.ndarray | None = None, attrs: Mapping[str, Any] | None = None,
                  extra: Mapping[str, np.ndarray] | None = None) -> None:
    """Write a fastMRI-format file atomically (temporary file, then rename).

    Args:
        kspace: complex ``[slices, coils, H, W]`` (multicoil) or ``[slices, H, W]`` (singlecoil); stored complex64.
        header: the ISMRMRD XML header (e.g. from :func:`make_ismrmrd_header`).
        reconstruction_rss, reconstruction_esc: float32 ``[slices, h, w]`` targets.
        mask: optional ``[W]`` sampling mask (fastMRI test-set convention).
        attrs: file attributes (fastMRI: ``max``, ``norm``, ``acquisition``, ``patient_id``).
        extra: further datasets (e.g. ``image``: the complex ground truth of the demo dataset).

    Raises:
        DTypeError, ShapeError, NonFiniteError: bad k-space.
    """
    k = np.asarray(kspace)
    if k.dtype.kind != "c":
        raise DTypeError(f"write_fastmri({path}): kspace must be complex, got {k.dtype}")
    if k.ndim not in (3, 4) or 0 in k.shape:
        raise ShapeError(f"write_fastmri({path}): kspace must be [slices, coils, H, W] or [slices, H, W] with no "
                         f"zero size, got {list(k.shape)}")
    check_finite(k, f"write_fastmri({path})", "kspace")
    hdr = header.encode() if isinstance(header, str) else header
    parse_ismrmrd_header(hdr, f"write_fastmri({path}): header")
    with atomic_h5(path) as f:
        f.create_dataset("kspace", data=k.astype(np.complex64, copy=False))
        f.create_dataset("ismrmrd_header", data=np.bytes_(hdr))
        for key, t in (("reconstruction_rss", reconstruction_rss), ("reconstruction_esc", reconstruction_esc)):
            if t is not None:
                t = np.asarray(t, dtype=np.float32)
                if t.ndim != 3 or t.shape[0] != k.shape[0]:
                    raise ShapeError(f"write_fastmri({path}): {key} must be [{k.shape[0]}, h, w], got {list(t.shape)}")
                f.create_dataset(key, data=t)
        if mask is not None:
            f.create_dataset("mask", data=np.asarray(mask))
        for key, arr in (extra or {}).items():
            f.create_dataset(key, data=np.asarray(arr))
        for key, v in (attrs or {}).items():
            f.attrs[key] = v


def write_submission(path: PathLike, reconstruction: np.ndarray) -> None:
    """Write a reconstruction in the fastMRI submission format: dataset ``reconstruction``, float32 ``[S, h, w]``.

    Raises:
        ShapeError: not 3D (a 2D image is accepted as one slice).  NonFiniteError: NaN/Inf.
    """
    r = np.asarray(reconstruction)
    if np.iscomplexobj(r):
        r = np.abs(r)
    r = r.astype(np.float32)
    if r.ndim == 2:
        r = r[None]
    if r.ndim != 3:
        raise ShapeError(f"write_submission({path}): reconstruction must be [slices, h, w], got {list(r.shape)}")
    check_finite(r, f"write_submission({path})", "reconstruction")
    with atomic_h5(path) as f:
        f.create_dataset("reconstruction", data=r)


def read_submission(path: PathLike) -> np.ndarray:
    """Read the ``reconstruction`` dataset of a submission file (float32 ``[S, h, w]``)."""
    with open_h5(path) as f:
        if "reconstruction" not in f:
            raise DataError(f"{path}: field 'reconstruction' is missing; the file holds {sorted(f.keys())}")
        return np.asarray(read_dataset(f, "reconstruction", (), str(path)), dtype=np.float32)


def is_fastmri(path: PathLike) -> bool:
    """Whether ``path`` is an HDF5 file with a top-level ``kspace`` dataset (without validating it)."""
    try:
        with h5py.File(Path(path), "r") as f:
            return "kspace" in f
    except OSError:
        return False


# ---------------------------------------------------------------------------------------------
# sensitivity-map sidecar files (precomputed maps for a fastMRI folder, one file per volume)
# ---------------------------------------------------------------------------------------------
def write_maps_sidecar(path: PathLike, maps: np.ndarray, kspace_shape: tuple[int, ...],
                       attrs: Mapping[str, Any] | None = None) -> None:
    """Write precomputed coil maps for one fastMRI file atomically.

    Args:
        path: the sidecar file (same name as the k-space file, in a separate folder).
        maps: complex ``[S, C, H, W]`` or ``[S, M, C, H, W]`` (several map sets).
        kspace_shape: shape of the k-space the maps belong to (checked when reading).
        attrs: provenance (method, parameters, source file).
    """
    m = np.asarray(maps)
    if m.dtype.kind != "c":
        raise DTypeError(f"write_maps_sidecar({path}): maps must be complex, got {m.dtype}")
    if m.ndim not in (4, 5) or m.shape[0] != kspace_shape[0] or tuple(m.shape[-3:]) != tuple(kspace_shape[-3:]):
        raise ShapeError(f"write_maps_sidecar({path}): maps of shape {list(m.shape)} do not match k-space "
                         f"{list(kspace_shape)} (expected [S, (M,) C, H, W])")
    check_finite(m, f"write_maps_sidecar({path})", "maps")
    with atomic_h5(path) as f:
        f.create_dataset("maps", data=m.astype(np.complex64, copy=False))
        f.attrs["kspace_shape"] = np.asarray(kspace_shape, dtype=np.int64)
        for k, v in (attrs or {}).items():
            f.attrs[k] = v


def check_maps_sidecar(f: h5py.File, kspace_shape: tuple[int, ...], source: str) -> None:
    """Validate an open sidecar against the k-space shape it must match.

    Raises:
        DataError: no ``maps`` dataset.  ShapeError: recorded or actual shape does not match the k-space.
    """
    if "maps" not in f:
        raise DataError(f"{source}: field 'maps' is missing (not a sensitivity-map sidecar)")
    m = f["maps"]
    rec = tuple(int(v) for v in f.attrs.get("kspace_shape", ()))
    if m.dtype.kind != "c":
        raise DTypeError(f"{source}: field 'maps' has dtype {m.dtype}, expected complex64")
    if (rec and rec != tuple(kspace_shape)) or m.shape[0] != kspace_shape[0] \
            or tuple(m.shape[-3:]) != tuple(kspace_shape[-3:]):
        raise ShapeError(f"{source}: field 'maps' has shape {list(m.shape)} (made for k-space {list(rec)}), but the "
                         f"k-space has shape {list(kspace_shape)}; recompute the maps")

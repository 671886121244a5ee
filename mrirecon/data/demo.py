"""The embedded demo dataset: multicoil brain k-space simulated from the MNI152 T1 template (no network).

``demo_root()`` returns a folder ``train/ val/ test/`` of fastMRI-format multicoil files, built on first
use (in well under a minute) from the template that the nilearn wheel ships and cached under
``$MRIRECON_DATA`` (default ``~/.cache/mrirecon``) as ``demo-v{DEMO_VERSION}``.

How a volume is simulated (every random choice drawn from ``numpy.random.default_rng([seed, file index])``):

1. **Geometry.** Slices are cut from the 1 mm template in three orientations (axial, coronal and sagittal;
   sagittal from one hemisphere only, because the template is left-right symmetric and mirrored slices
   would repeat anatomy). Each volume gets a random in-plane rotation (±10°) and shift (±4 mm). Slices are
   sampled by trilinear interpolation on a grid ``oversample`` times finer than the matrix from the
   template averaged over the slice thickness (a box of the slice spacing along the normal).
2. **Splits without shared anatomy.** Along the normal of each orientation the brain extent is cut at three
   fractions (axial/coronal 0.30/0.45/0.60, sagittal 0.25/0.50/0.75) into train | val | test | train; slices
   within ``gap_mm / 2`` of a cut are dropped, so that slices of the same orientation in different splits are
   at least ``gap_mm`` apart. (Slices of different orientations necessarily intersect along a line.)
3. **Object.** ``x = bias · template · exp(iφ)`` with a smooth multiplicative bias field (±15 %) and a smooth
   random phase (low-order Fourier series, about 1 rad standard deviation plus a random offset), both
   drifting slowly from slice to slice. The object is band-limited to the matrix by cropping its k-space
   from the fine grid (no "inverse crime" of simulating on the reconstruction grid); the result is the
   ``image`` dataset (complex64, the noise-free ground truth).
4. **Coils.** ``coils`` birdcage sensitivities (``sigpy.mri.birdcage_maps``, normalised to
   ``Σ_c |S_c|² = 1``) on a canvas 1.3× the field of view, with a random radius and flips per volume and a
   crop window and radius that drift across the slices of the volume.
5. **k-space.** ``y_c = F(S_c · image) + n_c`` with complex white Gaussian noise of standard deviation
   ``σ = noise · max|image|`` (``noise`` drawn per volume in ``noise_range``), then everything is scaled by a
   random receiver gain so that ``max`` lies between 1e-4 and 1e-3 (fastMRI-like magnitudes: methods must
   not assume unit scale). ``reconstruction_rss`` is the root-sum-of-squares of the inverse FFT of the
   noisy k-space, as in fastMRI.

The default configuration (:class:`DemoConfig`) gives 160 × 128 matrices at 1.2 mm (a 192 × 154 mm field of
view that holds the template's brain in every orientation with the phase encoding along the shorter
side), 8 coils and 1.5 mm slice spacing: about 235 slices and 370 MB.
"""
from __future__ import annotations

import json
import math
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from mrirecon.errors import DataError

DEMO_VERSION = 1
TEMPLATE_NAME = "mni_icbm152_t1_tal_nlin_sym_09a_converted.nii.gz"
SPLITS = ("train", "val", "test")
ACQUISITION = {"axial": "AXT1", "coronal": "CORT1", "sagittal": "SAGT1"}
PATIENT_ID = "mni152-2009a-sym"


@dataclass(frozen=True)
class Orientation:
    """How slices of one orientation are cut from the template (axes of the template array ``[x, y, z]``)."""

    name: str
    normal: int          # template axis along which slices are stacked
    rows: int            # template axis along image rows (H, readout)
    row_sign: int        # +1: row index increases with the template index
    cols: int            # template axis along image columns (W, phase encoding)
    col_sign: int
    cuts: tuple[float, float, float]  # train | val | test | train boundaries, fractions of the brain extent
    half: bool = False   # only the half of the extent above the midline (sagittal: one hemisphere)


ORIENTATIONS: tuple[Orientation, ...] = (
    Orientation("axial", normal=2, rows=1, row_sign=-1, cols=0, col_sign=-1, cuts=(0.30, 0.45, 0.60)),
    Orientation("coronal", normal=1, rows=2, row_sign=-1, cols=0, col_sign=-1, cuts=(0.30, 0.45, 0.60)),
    Orientation("sagittal", normal=0, rows=1, row_sign=-1, cols=2, col_sign=1, cuts=(0.25, 0.50, 0.75), half=True),
)


@dataclass(frozen=True)
class DemoConfig:
    """Parameters of the demo dataset (the defaults define the cached ``demo_root()`` dataset).

    Attributes:
        matrix: ``(H, W)`` k-space / image matrix (``H`` readout, ``W`` phase encoding).
        voxel_mm: in-plane pixel size.
        coils: number of receive coils.
        slice_spacing_mm: distance between slices (also the simulated slice thickness).
        gap_mm: minimum distance between slices of the same orientation in different splits.
        slices_per_file: maximum number of slices in one file (one "volume").
        oversample: simulation grid refinement before band-limiting.
        noise_range: range of the relative noise level ``σ / max|image|`` per volume.
        seed: the seed everything random is drawn from.
    """

    matrix: tuple[int, int] = (160, 128)
    voxel_mm: float = 1.2
    coils: int = 8
    slice_spacing_mm: float = 1.5
    gap_mm: float = 6.0
    slices_per_file: int = 12
    oversample: int = 2
    noise_range: tuple[float, float] = (0.015, 0.03)
    seed: int = 0

    @classmethod
    def tiny(cls, seed: int = 0) -> DemoConfig:
        """A small variant for tests: 40 × 32 at 4.8 mm, 6 mm spacing (about 50 slices, built in seconds)."""
        return cls(matrix=(40, 32), voxel_mm=4.8, slice_spacing_mm=6.0, gap_mm=12.0, slices_per_file=6, seed=seed)


@dataclass
class VolumePlan:
    """One file to simulate: its split, orientation and slice positions (mm along the normal, template index)."""

    name: str
    split: str
    orientation: Orientation
    positions: list[float] = field(default_factory=list)


def default_data_dir() -> Path:
    """``$MRIRECON_DATA`` or ``~/.cache/mrirecon``."""
    return Path(os.environ.get("MRIRECON_DATA") or Path.home() / ".cache" / "mrirecon").expanduser()


def template_path() -> Path:
    """The MNI152 T1 template inside the installed nilearn package."""
    try:
        import nilearn
    except ImportError:  # pragma: no cover - nilearn is a dependency
        raise DataError("the demo dataset needs the nilearn package (pip install nilearn)") from None
    path = Path(nilearn.__file__).parent / "datasets" / "data" / TEMPLATE_NAME
    if not path.exists():
        raise DataError(f"{path}: the MNI152 template is missing from the nilearn installation")
    return path


def load_template() -> np.ndarray:
    """The template as float32 ``[x, y, z]`` (1 mm voxels, brain only, values 0..255)."""
    import nibabel as nib

    return np.asarray(nib.load(str(template_path())).dataobj, dtype=np.float32)


def plan_volumes(vol: np.ndarray, config: DemoConfig) -> list[VolumePlan]:
    """Slice positions of every file: orientation slabs cut into splits with gaps, chunked into volumes."""
    mask = vol > 0
    plans: list[VolumePlan] = []
    for ori in ORIENTATIONS:
        other = tuple(a for a in range(3) if a != ori.normal)
        idx = np.nonzero(mask.any(axis=other))[0]
        lo, hi = float(idx.min()), float(idx.max() + 1)
        if ori.half:
            lo = (vol.shape[ori.normal] - 1) / 2.0 + 0.5  # right of the midline plane
        length = hi - lo
        n = int(math.floor(length / config.slice_spacing_mm))
        pos = lo + (np.arange(n) + 0.5) * config.slice_spacing_mm
        cuts = [lo + c * length for c in ori.cuts]
        labels = ["train", "val", "test", "train"]
        regions: dict[tuple[str, int], list[float]] = {}
        for p in pos:
            if min(abs(p - c) for c in cuts) < config.gap_mm / 2:
                continue
            region = int(np.searchsorted(cuts, p))
            regions.setdefault((labels[region], region), []).append(float(p))
        for (split, region), ps in sorted(regions.items(), key=lambda kv: kv[0][1]):
            nfiles = max(1, math.ceil(len(ps) / config.slices_per_file))
            for chunk in np.array_split(np.asarray(ps), nfiles):
                plans.append(VolumePlan("", split, ori, [float(p) for p in chunk]))
    counters: dict[tuple[str, str], int] = {}
    for p in plans:
        k = counters.get((p.split, p.orientation.name), 0)
        counters[(p.split, p.orientation.name)] = k + 1
        p.name = f"{p.split}_{p.orientation.name}_{k:02d}.h5"
    return plans


def _smooth_field(rng: np.random.Generator, shape: tuple[int, int], order: int) -> tuple[np.ndarray, np.ndarray]:
    """Two random real low-frequency fields (Fourier orders ≤ ``order``), each with unit standard deviation."""
    h, w = shape
    k = np.arange(-order, order + 1)
    eu = np.exp(2j * np.pi * k[:, None] * ((np.arange(h) - h / 2) / h)[None, :])   # [K, h]
    ev = np.exp(2j * np.pi * k[:, None] * ((np.arange(w) - w / 2) / w)[None, :])   # [K, w]
    decay = 1.0 / (1.0 + k[:, None] ** 2 + k[None, :] ** 2)
    decay[order, order] = 0.0  # no constant term
    out = []
    for _ in range(2):
        amp = (rng.standard_normal(decay.shape) + 1j * rng.standard_normal(decay.shape)) * decay
        f = np.real(eu.T @ amp @ ev)
        out.append(f / (f.std() + 1e-12))
    return out[0], out[1]


def _fft2c(x: np.ndarray) -> np.ndarray:
    """Centred orthonormal 2D FFT over the last two axes (numpy twin of :func:`mrirecon.operators.fft2c`)."""
    import scipy.fft

    ax = (-2, -1)
    return np.fft.fftshift(scipy.fft.fft2(np.fft.ifftshift(x, axes=ax), norm="ortho", workers=-1), axes=ax)


def _ifft2c(x: np.ndarray) -> np.ndarray:
    """Centred orthonormal 2D inverse FFT over the last two axes."""
    import scipy.fft

    ax = (-2, -1)
    return np.fft.fftshift(scipy.fft.ifft2(np.fft.ifftshift(x, axes=ax), norm="ortho", workers=-1), axes=ax)


def _center_crop(x: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    h, w = x.shape[-2:]
    top, left = (h - shape[0] + 1) // 2, (w - shape[1] + 1) // 2
    return x[..., top:top + shape[0], left:left + shape[1]]


def slab_profile(vol: np.ndarray, ori: Orientation, config: DemoConfig) -> np.ndarray:
    """The template averaged over the slice thickness along the normal of ``ori`` (a box of the slice spacing)."""
    from scipy.ndimage import uniform_filter1d

    size = max(1, int(round(config.slice_spacing_mm)))
    return uniform_filter1d(vol, size=size, axis=ori.normal, mode="constant") if size > 1 else vol


def _sample_slices(vol: np.ndarray, plan: VolumePlan, config: DemoConfig, rng: np.random.Generator) -> np.ndarray:
    """Template slices on the fine grid: float32 ``[S, H·os, W·os]`` (rotated and shifted in plane).

    ``vol`` is the template already averaged over the slice thickness (:func:`slab_profile`).
    """
    from scipy.ndimage import map_coordinates

    ori = plan.orientation
    os_ = config.oversample
    hs, ws = config.matrix[0] * os_, config.matrix[1] * os_
    d = config.voxel_mm / os_
    theta = np.deg2rad(rng.uniform(-10, 10))
    shift = rng.uniform(-4, 4, size=2)
    mask = vol > 0
    centre = [0.0, 0.0, 0.0]
    for ax in (ori.rows, ori.cols):
        other = tuple(a for a in range(3) if a != ax)
        idx = np.nonzero(mask.any(axis=other))[0]
        centre[ax] = (idx.min() + idx.max()) / 2.0
    u = (np.arange(hs) - (hs - 1) / 2) * d
    v = (np.arange(ws) - (ws - 1) / 2) * d
    uu, vv = np.meshgrid(u, v, indexing="ij")
    ur = np.cos(theta) * uu - np.sin(theta) * vv + shift[0]
    vr = np.sin(theta) * uu + np.cos(theta) * vv + shift[1]
    coords = np.empty((3, len(plan.positions), hs, ws), dtype=np.float32)
    coords[ori.rows] = (centre[ori.rows] + ori.row_sign * ur)[None]
    coords[ori.cols] = (centre[ori.cols] + ori.col_sign * vr)[None]
    coords[ori.normal] = np.asarray(plan.positions, dtype=np.float32)[:, None, None]
    out = map_coordinates(vol, coords.reshape(3, -1), order=1, mode="constant", cval=0.0, prefilter=False)
    return out.reshape(len(plan.positions), hs, ws)


def _coil_maps(config: DemoConfig, nslices: int, rng: np.random.Generator) -> np.ndarray:
    """Birdcage maps per slice, complex64 ``[S, C, H, W]``, drifting slowly across the slices.

    Two birdcage maps (radii ``r0 ∓ dr/2``) on a canvas 1.3× the field of view are blended linearly
    across the slices (and renormalised to ``Σ_c |S_c|² = 1``) while the crop window drifts.
    """
    import sigpy.mri

    h, w = config.matrix
    hc, wc = int(math.ceil(1.3 * h)), int(math.ceil(1.3 * w))
    r0, dr = rng.uniform(1.3, 2.0), rng.uniform(-0.2, 0.2)
    base = rng.uniform(-1, 1, size=2) * np.array([hc - h, wc - w]) / 4
    drift = rng.uniform(-1, 1, size=2) * np.array([hc - h, wc - w]) / 4
    flips = tuple(ax for ax in (-2, -1) if rng.random() < 0.5)
    keys = [sigpy.mri.birdcage_maps((config.coils, hc, wc), r=r0 + dr * t, dtype=np.complex64) for t in (-0.5, 0.5)]
    if flips:
        keys = [np.flip(m, axis=flips) for m in keys]
    out = np.empty((nslices, config.coils, h, w), dtype=np.complex64)
    for s in range(nslices):
        t = s / max(nslices - 1, 1)
        off = np.round((np.array([hc - h, wc - w]) / 2 + base + drift * (t - 0.5))).astype(int)
        m = (1 - t) * keys[0][:, off[0]:off[0] + h, off[1]:off[1] + w] + t * keys[1][:, off[0]:off[0] + h, off[1]:off[1] + w]
        out[s] = m / np.sqrt((np.abs(m) ** 2).sum(axis=0, keepdims=True))
    return out


def simulate_volume(vol: np.ndarray, plan: VolumePlan, config: DemoConfig, index: int) -> dict[str, object]:
    """Simulate one file: k-space, ground truth, RSS target, header and attributes (see the module docstring).

    ``vol`` is the template averaged over the slice thickness along the plan's normal (:func:`slab_profile`).
    """
    from mrirecon.io.fastmri import make_ismrmrd_header

    rng = np.random.default_rng([config.seed, index])
    h, w = config.matrix
    s = len(plan.positions)
    mag = _sample_slices(vol, plan, config, rng)                     # [S, Hs, Ws]
    hs, ws = mag.shape[-2:]
    bias_a, bias_b = _smooth_field(rng, (hs, ws), 1)
    ph_a, ph_b = _smooth_field(rng, (hs, ws), 2)
    offset = rng.uniform(-np.pi, np.pi)
    t = (np.arange(s) / max(s - 1, 1))[:, None, None]
    norm = np.sqrt((1 - t) ** 2 + t ** 2)
    bias = np.exp(0.15 * ((1 - t) * bias_a + t * bias_b) / norm)
    phase = offset + ((1 - t) * ph_a + t * ph_b) / norm
    x = (bias * mag * np.exp(1j * phase)).astype(np.complex64)
    # band-limit to the matrix; the factor keeps intensities (orthonormal FFTs of different sizes)
    image = _ifft2c(_center_crop(_fft2c(x), (h, w))) * np.float32(config.oversample)
    maps = _coil_maps(config, s, rng)
    kspace = _fft2c(maps * image[:, None])
    noise = rng.uniform(*config.noise_range)
    sigma = noise * float(np.abs(image).max())
    kspace += (sigma / math.sqrt(2) * (rng.standard_normal(kspace.shape, dtype=np.float32)
                                       + 1j * rng.standard_normal(kspace.shape, dtype=np.float32))).astype(np.complex64)
    rss = np.sqrt((np.abs(_ifft2c(kspace)) ** 2).sum(axis=1))
    gain = np.float32(10 ** rng.uniform(-4, -3) / rss.max())
    kspace, image, rss, sigma = kspace * gain, image * gain, rss * gain, sigma * float(gain)
    acq = ACQUISITION[plan.orientation.name]
    fov = (h * config.voxel_mm, w * config.voxel_mm, config.slice_spacing_mm)
    header = make_ismrmrd_header((h, w, 1), (h, w, 1), fov, fov, config.coils, slice_limits=(0, s - 1, s // 2),
                                 protocol_name=acq, patient_id=PATIENT_ID, vendor="mrirecon demo (simulated)")
    attrs = {
        "acquisition": acq, "max": float(rss.max()), "norm": float(np.linalg.norm(rss)), "patient_id": PATIENT_ID,
        "orientation": plan.orientation.name, "split": plan.split, "noise_std": float(sigma),
        "slice_positions_mm": np.asarray(plan.positions, dtype=np.float32), "voxel_mm": float(config.voxel_mm),
        "demo_version": DEMO_VERSION, "seed": int(config.seed),
    }
    return {"kspace": kspace.astype(np.complex64), "image": image.astype(np.complex64),
            "reconstruction_rss": rss.astype(np.float32), "header": header, "attrs": attrs}


@contextmanager
def _locked(lock_path: Path) -> Iterator[None]:
    """An exclusive advisory lock on ``lock_path`` (POSIX ``flock``; elsewhere only the atomic rename protects)."""
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows
        yield
        return
    with open(lock_path, "a+") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def build_demo(root: str | os.PathLike[str], config: DemoConfig | None = None, progress: bool = False) -> Path:
    """Build the demo dataset at ``root`` (nothing is done when it is already complete).

    Two processes may call this at once: an exclusive file lock (``.{name}.lock`` next to ``root``)
    serialises them, the dataset is written into a temporary sibling folder and renamed into place
    only when complete, and a folder left behind by a killed build is removed by the next one.

    Returns:
        ``root``, holding ``train/ val/ test/`` and ``demo.json`` (the configuration and file list).

    Raises:
        DataError: ``root`` exists but is not a complete demo dataset.
    """
    from mrirecon.io.fastmri import write_fastmri

    config = config or DemoConfig()
    root = Path(root).expanduser()
    if (root / "demo.json").exists():
        return root
    with _locked(root.parent / f".{root.name}.lock"):
        if (root / "demo.json").exists():
            return root
        if root.exists():
            raise DataError(f"{root}: exists but is not a complete demo dataset (no demo.json); remove it and retry")
        for stale in root.parent.glob(f".{root.name}.tmp-*"):
            shutil.rmtree(stale, ignore_errors=True)
        tmp = Path(tempfile.mkdtemp(dir=root.parent, prefix=f".{root.name}.tmp-"))
        try:
            t0 = time.perf_counter()
            vol = load_template()
            plans = plan_volumes(vol, config)
            files = []
            it = plans
            if progress:
                from tqdm import tqdm
                it = tqdm(plans, desc="building the demo dataset", unit="file")
            profiles: dict[str, np.ndarray] = {}
            for i, plan in enumerate(it):
                ori = plan.orientation
                if ori.name not in profiles:
                    profiles[ori.name] = slab_profile(vol, ori, config)
                sim = simulate_volume(profiles[ori.name], plan, config, i)
                write_fastmri(tmp / plan.split / plan.name, sim["kspace"], sim["header"],
                              reconstruction_rss=sim["reconstruction_rss"], attrs=sim["attrs"],
                              extra={"image": sim["image"]})
                files.append({"file": f"{plan.split}/{plan.name}", "split": plan.split,
                              "orientation": plan.orientation.name, "slices": len(plan.positions),
                              "positions_mm": [round(p, 3) for p in plan.positions]})
            manifest = {"version": DEMO_VERSION, "config": asdict(config), "template": TEMPLATE_NAME,
                        "build_seconds": round(time.perf_counter() - t0, 2), "files": files,
                        "slices": {sp: sum(f["slices"] for f in files if f["split"] == sp) for sp in SPLITS}}
            (tmp / "demo.json").write_text(json.dumps(manifest, indent=1))
            os.rename(tmp, root)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    return root


def demo_root(build: bool = True) -> Path:
    """The folder of the demo dataset (``train/``, ``val/``, ``test/``), built on first use.

    Args:
        build: build it when missing (else raise).

    Raises:
        DataError: missing and ``build`` is false.
    """
    root = default_data_dir() / f"demo-v{DEMO_VERSION}"
    if (root / "demo.json").exists():
        return root
    if not build:
        raise DataError(f"{root}: the demo dataset has not been built; run `mrirecon prep demo` "
                        f"(or call demo_root(build=True))")
    return build_demo(root, DemoConfig(), progress=True)


def demo_files(root: str | os.PathLike[str], split: str) -> list[Path]:
    """The ``.h5`` files of one split, sorted."""
    if split not in SPLITS:
        raise DataError(f"demo dataset: unknown split {split!r}; expected one of {SPLITS}")
    return sorted((Path(root) / split).glob("*.h5"))

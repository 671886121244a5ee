"""ISMRMRD raw reader, checked against files written by ``ismrmrd_generate_cartesian_shepp_logan``, the
phantom/coil images stored in them and the output of ``ismrmrd_recon_cartesian_2d``.

Tolerances: noise-free files (``-n 0``) must match the stored phantom, coil images and the reference recon
to float32 precision (relative 1e-5); SENSE from R = 2 data with the stored maps to 1e-3 (CG residual).
"""
from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
from conftest import run_tool

from mrirecon.errors import DataError, NonFiniteError, ShapeError
from mrirecon.io.ismrmrd import header_for_kspace, read_ismrmrd


def ifft2c(k: np.ndarray) -> np.ndarray:
    ax = (-2, -1)
    return np.fft.fftshift(np.fft.ifft2(np.fft.ifftshift(k, axes=ax), norm="ortho"), axes=ax)


def _complex(a: np.ndarray) -> np.ndarray:
    return a["real"] + 1j * a["imag"]


def generate(tools: dict[str, str], path: Path, **opts: object) -> Path:
    """Run the ISMRMRD phantom generator (options by long name, e.g. matrix=48, noise_calibration=True)."""
    args = [tools["generate_cartesian_shepp_logan"], "-o", str(path)]
    for k, v in opts.items():
        flag = "--" + k.replace("_", "-")
        args += [flag] if v is True else [flag, str(v)]
    run_tool(*args, cwd=path.parent)
    return path


def stored(path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The generator's phantom ``[x, y]``, maps ``[C, x, y]`` and coil images ``[C, x_os, y]`` (our axis order)."""
    with h5py.File(path, "r") as f:
        ph = _complex(f["dataset/phantom"][()])[0].T
        csm = _complex(f["dataset/csm"][()])[0].transpose(0, 2, 1)
        ci = _complex(f["dataset/coil_images"][()])[0].transpose(0, 2, 1)
    return ph, csm, ci


def rewrite(src: Path, dst: Path, edit: Callable[[list[tuple[np.ndarray, np.ndarray]]], list],
            xml_edit: Callable[[str], str] | None = None) -> Path:
    """Copy an ISMRMRD file, passing its acquisitions ``[(head, data[C, N])]`` through ``edit`` (ismrmrd writer)."""
    import ismrmrd

    with h5py.File(src, "r") as f:
        xml = f["dataset/xml"][0]
        xml = xml.decode() if isinstance(xml, bytes) else xml
        heads = f["dataset/data"].fields("head")[()]
        raw = f["dataset/data"].fields("data")[()]
    acqs = []
    for h, d in zip(heads, raw):
        acqs.append((h.copy(), d.view(np.complex64).reshape(int(h["active_channels"]), int(h["number_of_samples"]))))
    acqs = edit(acqs)
    ds = ismrmrd.Dataset(str(dst), "dataset", create_if_needed=True)
    ds.write_xml_header(xml_edit(xml) if xml_edit else xml)
    for h, d in acqs:
        h = h.copy()
        h["active_channels"], h["number_of_samples"] = d.shape
        h["available_channels"] = d.shape[0]
        acq = ismrmrd.Acquisition(h, np.ascontiguousarray(d, dtype=np.complex64))
        ds.append_acquisition(acq)
    ds.close()
    return dst


def flag(n: int) -> np.uint64:
    return np.uint64(1 << (n - 1))


# ---------------------------------------------------------------------------------------------
# against the reference tools
# ---------------------------------------------------------------------------------------------
@pytest.mark.ismrmrd_tools
@pytest.mark.parametrize("matrix,coils,os_", [(48, 4, 2), (40, 3, 1)])
def test_fully_sampled_matches_phantom_coil_images_and_reference_recon(ismrmrd_tools: dict[str, str], tmp_path: Path,
                                                                        matrix: int, coils: int, os_: int) -> None:
    p = generate(ismrmrd_tools, tmp_path / "full.h5", matrix=matrix, coils=coils, oversampling=os_, noise_level=0)
    raw = read_ismrmrd(p)
    nx = matrix * os_ // 2          # the generator's header: recon x = readout / 2 (whatever the oversampling)
    assert raw.kspace.shape == (1, coils, nx, matrix) and raw.kspace.dtype == np.complex64
    assert raw.recon_size == (nx, matrix) and raw.mask.all() and raw.acceleration == 1.0
    ph, csm, ci = stored(p)
    img = ifft2c(raw.kspace[0])
    lo = (matrix * os_ - nx) // 2
    ref_ci = ci[:, lo:lo + nx]
    assert np.abs(img - ref_ci).max() <= 1e-5 * np.abs(ref_ci).max()
    pad = (matrix * os_ - matrix) // 2   # the phantom and maps sit in the middle of the oversampled readout
    ph_os = np.zeros((matrix * os_, matrix), complex)
    csm_os = np.zeros((coils, matrix * os_, matrix), complex)
    ph_os[pad:pad + matrix], csm_os[:, pad:pad + matrix] = ph, csm
    ph_c, csm_c = ph_os[lo:lo + nx], csm_os[:, lo:lo + nx]
    sense = (csm_c.conj() * img).sum(0) / np.maximum((np.abs(csm_c) ** 2).sum(0), 1e-30)
    assert np.abs(sense - ph_c).max() <= 1e-5 * np.abs(ph).max()
    # ismrmrd_recon_cartesian_2d: root-sum-of-squares of an unnormalised inverse FFT, readout cropped
    tool = tmp_path / "tool.h5"
    shutil.copy(p, tool)
    run_tool(ismrmrd_tools["recon_cartesian_2d"], tool)
    with h5py.File(tool, "r") as f:
        group = next(g for g in f["dataset"] if g not in ("data", "xml", "phantom", "csm", "coil_images"))
        ref = f["dataset"][group]["data"][()].reshape(matrix, nx).T
    rss = np.sqrt((np.abs(img) ** 2).sum(0)) * np.sqrt(matrix * os_ * matrix)
    assert np.abs(rss - ref).max() <= 1e-5 * ref.max()


@pytest.mark.ismrmrd_tools
def test_accelerated_with_calibration_and_repetitions(ismrmrd_tools: dict[str, str], tmp_path: Path) -> None:
    """R = 2 interleaved repetitions with a 16-line calibration region; CG-SENSE with the stored maps = phantom."""
    from mrirecon.operators import Sense

    m = 48
    p = generate(ismrmrd_tools, tmp_path / "acc.h5", matrix=m, coils=4, acceleration=2, calibration_width=16,
                 repetitions=2, noise_level=0)
    raw = read_ismrmrd(p)
    assert [r.repetition for r in raw.index] == [0, 1, 2, 3]
    lines = np.arange(m)
    calib = (lines >= m // 2 - 8) & (lines <= m // 2 + 7)
    for r, (mask, cmask) in enumerate(zip(raw.mask, raw.calib_mask)):
        on_grid = (lines - r % 2) % 2 == 0
        np.testing.assert_array_equal(mask, on_grid.astype(np.float32))
        np.testing.assert_array_equal(cmask, (calib & ~on_grid).astype(np.float32))
    assert raw.acceleration == 2.0
    assert raw.counts["calibration"] == 4 * 8 and raw.counts["imaging"] == 4 * 24
    # interleaved repetitions 0 and 1 together are the fully sampled k-space
    full = raw.kspace[0] + raw.kspace[1]
    ph, csm, _ = stored(p)
    sense_full = (csm.conj() * ifft2c(full)).sum(0) / (np.abs(csm) ** 2).sum(0)
    assert np.abs(sense_full - ph).max() <= 1e-5 * np.abs(ph).max()
    # CG-SENSE from one repetition (R = 2) with the stored maps
    E = Sense(torch.from_numpy(csm.astype(np.complex128)), torch.from_numpy(raw.mask[0]).reshape(1, 1, m).double())
    b = E.H(torch.from_numpy(raw.kspace[0].astype(np.complex128)))
    x = torch.zeros_like(b)
    r = b - E.N(x)
    d = r.clone()
    for _ in range(200):
        Ad = E.N(d)
        a = (r.abs() ** 2).sum() / (d.conj() * Ad).sum().real
        x, r_new = x + a * d, r - a * Ad
        if r_new.abs().norm() < 1e-10 * b.abs().norm():
            break
        d = r_new + (r_new.abs() ** 2).sum() / (r.abs() ** 2).sum() * d
        r = r_new
    err = np.abs(x.numpy() - ph).max() / np.abs(ph).max()
    assert err < 1e-3
    # the library's own `sense` method (CG on the normal equations, λ = 0) on the same data and maps
    from mrirecon.data.sample import KSpaceSample
    from mrirecon.methods import reconstruct

    sample = KSpaceSample(kspace=torch.from_numpy(raw.kspace[0]), mask=torch.from_numpy(raw.mask[0]),
                          maps=torch.from_numpy(csm.astype(np.complex64)))
    res = reconstruct(sample, "sense", lam=0.0, iters=200)
    err = np.abs(res.image.numpy().reshape(ph.shape) - ph).max() / np.abs(ph).max()
    assert err < 1e-3, err


@pytest.mark.ismrmrd_tools
def test_noise_scans_and_prewhitening(ismrmrd_tools: dict[str, str], tmp_path: Path) -> None:
    p = generate(ismrmrd_tools, tmp_path / "noise.h5", matrix=32, coils=4, noise_calibration=True, noise_level=0.05)
    raw = read_ismrmrd(p)
    plain = read_ismrmrd(p, prewhiten=False)
    assert raw.prewhitened and not plain.prewhitened and raw.counts["noise"] == 1
    cov = raw.noise_covariance
    assert cov.shape == (4, 4)
    # the generator adds N(0, 0.05²) to the real and imaginary parts: Ψ ≈ 2·0.05² I (64 noise samples)
    assert np.allclose(np.diag(cov).real, 2 * 0.05 ** 2, rtol=0.5)
    W = np.linalg.inv(np.linalg.cholesky(cov))
    np.testing.assert_allclose(raw.kspace[0], np.einsum("ij,jxy->ixy", W, plain.kspace[0]), rtol=1e-4, atol=1e-4)


def _correlated_noise_file(tmp_path: Path, psi: np.ndarray, n_noise: int = 4000) -> Path:
    """A hand-made ISMRMRD file: 1 noise scan with covariance ``psi`` (dwell 2 µs), 8×6 noise-only imaging (4 µs)."""
    import ismrmrd

    from mrirecon.io.fastmri import make_ismrmrd_header

    rng = np.random.default_rng(0)
    c = psi.shape[0]
    L = np.linalg.cholesky(psi)
    path = tmp_path / "corr.h5"
    ds = ismrmrd.Dataset(str(path), "dataset", create_if_needed=True)
    ds.write_xml_header(make_ismrmrd_header((8, 6, 1), (8, 6, 1), (80, 60, 5), (80, 60, 5), c))

    def white(n: int) -> np.ndarray:
        return (rng.standard_normal((c, n)) + 1j * rng.standard_normal((c, n))) / np.sqrt(2)

    noise = ismrmrd.Acquisition.from_array((L @ white(n_noise)).astype(np.complex64))
    noise.setFlag(ismrmrd.ACQ_IS_NOISE_MEASUREMENT)
    noise.sample_time_us = 2.0
    ds.append_acquisition(noise)
    for ky in range(6):
        # imaging dwell time twice the noise dwell time: half the noise variance
        acq = ismrmrd.Acquisition.from_array((L @ white(8) / np.sqrt(2)).astype(np.complex64))
        acq.idx.kspace_encode_step_1 = ky
        acq.center_sample = 4
        acq.sample_time_us = 4.0
        ds.append_acquisition(acq)
    ds.close()
    return path


def test_correlated_noise_is_whitened(tmp_path: Path) -> None:
    psi = np.array([[2.0, 0.8, 0.2], [0.8, 1.0, 0.3j], [0.2, -0.3j, 0.5]])
    raw = read_ismrmrd(_correlated_noise_file(tmp_path, psi))
    assert raw.prewhitened
    np.testing.assert_allclose(raw.noise_covariance, psi / 2, atol=0.05)   # scaled by the dwell-time ratio
    y = raw.kspace[0].reshape(3, -1)
    emp = y @ y.conj().T / y.shape[1]
    assert np.abs(emp - np.eye(3)).max() < 0.45   # 48 samples per coil


def test_prewhitening_agrees_with_coils_module(tmp_path: Path) -> None:
    """Our numpy prewhitening = mrirecon.operators.coils with the dwell-time bandwidth ratio (no 0.793 factor)."""
    from mrirecon.operators import coils

    psi = np.array([[2.0, 0.8], [0.8, 1.0]])
    path = _correlated_noise_file(tmp_path, psi)
    raw, plain = read_ismrmrd(path), read_ismrmrd(path, prewhiten=False)
    with h5py.File(path, "r") as f:
        noise = torch.from_numpy(f["dataset/data"].fields("data")[0].view(np.complex64).reshape(2, -1))
    W = coils.prewhitening_matrix(coils.noise_covariance(noise), coils.bandwidth_ratio(4.0, 2.0, 1.0))
    out = coils.prewhiten(torch.from_numpy(plain.kspace[0]), W.to(torch.complex64))
    np.testing.assert_allclose(out.numpy(), raw.kspace[0], rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(raw.noise_covariance, coils.noise_covariance(noise).numpy() / 2, rtol=1e-10)


# ---------------------------------------------------------------------------------------------
# flags and layout, on edited copies of a generated file
# ---------------------------------------------------------------------------------------------
@pytest.fixture
def base(ismrmrd_tools: dict[str, str], tmp_path: Path) -> Path:
    return generate(ismrmrd_tools, tmp_path / "base.h5", matrix=32, coils=3, noise_level=0)


def test_reverse_discard_navigators_are_handled(base: Path, tmp_path: Path) -> None:
    ref = read_ismrmrd(base)

    def edit(acqs: list) -> list:
        out = []
        for i, (h, d) in enumerate(acqs):
            if i % 2:                                          # reversed readout
                h["flags"] |= flag(22)
                d = d[:, ::-1]
                h["center_sample"] = d.shape[1] - 1 - int(h["center_sample"])
            if i % 3 == 0:                                     # 3 samples before, 2 after to discard
                d = np.concatenate([np.full((d.shape[0], 3), 1e6), d, np.full((d.shape[0], 2), -1e6)], axis=1)
                h["discard_pre"], h["discard_post"] = 3, 2
                h["center_sample"] += 3
            out.append((h, d))
            if i == 5:                                         # navigator and phase-correction lines: skipped
                for f in (23, 24):
                    nav = h.copy()
                    nav["flags"] = flag(f)
                    out.append((nav, np.full_like(d, 1e9)))
        return out

    raw = read_ismrmrd(rewrite(base, tmp_path / "edited.h5", edit))
    assert raw.counts["skipped"] == 2
    np.testing.assert_allclose(raw.kspace, ref.kspace, rtol=1e-6, atol=1e-7)


def test_partial_fourier_and_partial_echo(base: Path, tmp_path: Path) -> None:
    ref = read_ismrmrd(base, remove_oversampling=False)

    def edit(acqs: list) -> list:
        out = []
        for h, d in acqs:
            if h["idx"]["kspace_encode_step_1"] < 8:          # phase partial Fourier: 24 of 32 lines
                continue
            h["center_sample"] -= 16                          # partial echo: drop the first 16 of 64 samples
            out.append((h, d[:, 16:]))
        return out

    xml = lambda s: s.replace("<minimum>0</minimum>\n\t\t\t\t<maximum>31</maximum>", "<minimum>8</minimum>\n\t\t\t\t<maximum>31</maximum>")  # noqa: E731
    raw = read_ismrmrd(rewrite(base, tmp_path / "pf.h5", edit, xml), remove_oversampling=False)
    assert raw.partial_fourier == (0.75, 0.75)
    expect = ref.kspace.copy()
    expect[..., :8] = 0
    expect[..., :16, :] = 0
    np.testing.assert_array_equal(raw.kspace, expect)
    np.testing.assert_array_equal(raw.mask[0], (np.arange(32) >= 8).astype(np.float32))


def test_averages(base: Path, tmp_path: Path) -> None:
    ref = read_ismrmrd(base)

    def edit(acqs: list) -> list:
        out = []
        for h, d in acqs:
            for avg, delta in ((0, 1.0), (1, -1.0)):
                h2 = h.copy()
                h2["idx"]["average"] = avg
                out.append((h2, d + delta))
        return out

    path = rewrite(base, tmp_path / "avg.h5", edit)
    sep = read_ismrmrd(path, remove_oversampling=False)
    assert [r.average for r in sep.index] == [0, 1]
    comb = read_ismrmrd(path, combine_averages=True)
    assert [r.average for r in comb.index] == [-1]
    np.testing.assert_allclose(comb.kspace, ref.kspace, rtol=1e-5, atol=1e-5)


def test_mrd_stream_equals_hdf5(base: Path, tmp_path: Path) -> None:
    import ismrmrd
    import ismrmrd.xsd
    from ismrmrd.serialization import ProtocolSerializer

    ref = read_ismrmrd(base)
    with h5py.File(base, "r") as f:
        xml = f["dataset/xml"][0]
    ds = ismrmrd.Dataset(str(base), "dataset", mode="r")
    stream = tmp_path / "base.mrd"
    with ProtocolSerializer(str(stream)) as ser:
        ser.serialize(ismrmrd.xsd.CreateFromDocument(xml))
        for i in range(ds.number_of_acquisitions()):
            ser.serialize(ds.read_acquisition(i))
    ds.close()
    raw = read_ismrmrd(stream)
    np.testing.assert_array_equal(raw.kspace, ref.kspace)
    assert raw.index == ref.index
    # and through the command line: the stream reconstructs to the same image as the HDF5 file
    from mrirecon.cli import main

    assert main(["recon", str(stream), "-o", str(tmp_path / "s.npy")]) == 0
    assert main(["recon", str(base), "-o", str(tmp_path / "h.npy")]) == 0
    np.testing.assert_array_equal(np.load(tmp_path / "s.npy"), np.load(tmp_path / "h.npy"))


def test_header_for_kspace_describes_the_array(base: Path) -> None:
    from mrirecon.io.fastmri import parse_ismrmrd_header

    raw = read_ismrmrd(base)
    enc = parse_ismrmrd_header(header_for_kspace(raw))
    assert enc.encoded_size == (32, 32, 1) and enc.recon_size == (32, 32, 1)
    assert enc.encoded_fov_mm[0] == pytest.approx(enc.recon_fov_mm[0])


# ---------------------------------------------------------------------------------------------
# bad input
# ---------------------------------------------------------------------------------------------
def test_bad_files(base: Path, tmp_path: Path) -> None:
    with pytest.raises(DataError, match="trajectory 'radial' .* not supported yet"):
        read_ismrmrd(rewrite(base, tmp_path / "radial.h5", lambda a: a,
                             lambda s: s.replace(">cartesian<", ">radial<")))
    def noise_only(acqs: list) -> list:
        h, d = acqs[0]
        h["flags"] = flag(19)
        return [(h, d)]

    only_noise = rewrite(base, tmp_path / "noise_only.h5", noise_only)
    with pytest.raises(DataError, match="noise_only.h5: field '/dataset/data' has no imaging acquisitions"):
        read_ismrmrd(only_noise)
    bad_limits = rewrite(base, tmp_path / "limits.h5", lambda a: a,
                         lambda s: s.replace("<center>16</center>", "<center>40</center>", 1))
    with pytest.raises(DataError, match="kspace_encoding_step_1.*inconsistent"):
        read_ismrmrd(bad_limits)

    def nan(acqs: list) -> list:
        acqs[7][1][0, 3] = np.nan
        return acqs

    with pytest.raises(NonFiniteError, match="acquisition 7 .*NaN"):
        read_ismrmrd(rewrite(base, tmp_path / "nan.h5", nan))

    def zero(acqs: list) -> list:
        return [(h, d[:0]) for h, d in acqs]

    with pytest.raises(ShapeError, match="active channels"):
        read_ismrmrd(rewrite(base, tmp_path / "zero.h5", zero))
    nodata = tmp_path / "nodata.h5"
    with h5py.File(base, "r") as f, h5py.File(nodata, "w") as g:
        f.copy("dataset/xml", g, "dataset/xml")
    with pytest.raises(DataError, match="nodata.h5: field '/dataset/data'.* missing"):
        read_ismrmrd(nodata)
    data = base.read_bytes()
    (tmp_path / "trunc.h5").write_bytes(data[: len(data) // 3])
    with pytest.raises(DataError, match="trunc.h5: not a readable .*truncated"):
        read_ismrmrd(tmp_path / "trunc.h5")
    (tmp_path / "junk.mrd").write_bytes(b"\x07\x00garbage")
    with pytest.raises(DataError, match="junk.mrd"):
        read_ismrmrd(tmp_path / "junk.mrd")


def test_3d_encoding_is_split_into_partitions(tmp_path: Path) -> None:
    """A hand-made 3D Cartesian file (kz fully sampled): partitions = the 3D inverse FFT's z planes."""
    import ismrmrd

    from mrirecon.io.fastmri import make_ismrmrd_header

    rng = np.random.default_rng(3)
    c, nz, nx, ny = 2, 4, 16, 12
    coil_img = (rng.standard_normal((c, nz, nx, ny)) + 1j * rng.standard_normal((c, nz, nx, ny)))
    ax = (1, 2, 3)
    k = np.fft.fftshift(np.fft.fftn(np.fft.ifftshift(coil_img, axes=ax), axes=ax, norm="ortho"), axes=ax)
    xml = make_ismrmrd_header((nx, ny, nz), (nx, ny, nz), (160, 120, 40), (160, 120, 40), c)
    path = tmp_path / "3d.h5"
    ds = ismrmrd.Dataset(str(path), "dataset", create_if_needed=True)
    ds.write_xml_header(xml)
    for kz in range(nz):
        for ky in range(ny):
            acq = ismrmrd.Acquisition.from_array(k[:, kz, :, ky].astype(np.complex64))
            acq.idx.kspace_encode_step_1, acq.idx.kspace_encode_step_2 = ky, kz
            acq.center_sample = nx // 2
            ds.append_acquisition(acq)
    ds.close()
    raw = read_ismrmrd(path)
    assert [r.partition for r in raw.index] == [0, 1, 2, 3] and raw.kspace.shape == (4, c, nx, ny)
    for z in range(nz):
        np.testing.assert_allclose(ifft2c(raw.kspace[z]), coil_img[:, z], rtol=1e-5, atol=1e-5)

    def drop(acqs: list) -> list:   # kz undersampled: a clear "not supported yet"
        return [(h, d) for h, d in acqs if not (h["idx"]["kspace_encode_step_2"] == 1 and h["idx"]["kspace_encode_step_1"] == 3)]

    with pytest.raises(DataError, match="3D encoding undersampled along kspace_encode_step_2 is not supported yet"):
        read_ismrmrd(rewrite(path, tmp_path / "3d_us.h5", drop))


def test_slices_and_contrasts_are_split(base: Path, tmp_path: Path) -> None:
    """Acquisitions of 2 slices x 2 contrasts (the reference tool writes one of each): one image per pair, in
    index order, each holding exactly its own lines."""
    ref = read_ismrmrd(base)
    gains = {(s, c): 1.0 + s + 2 * c for s in (0, 1) for c in (0, 1)}

    def edit(acqs: list) -> list:
        out = []
        for (s, c), gain in gains.items():
            for h, d in acqs:
                h2 = h.copy()
                h2["idx"]["slice"] = s
                h2["idx"]["contrast"] = c
                out.append((h2, d * gain))
        return out

    path = rewrite(base, tmp_path / "slc_con.h5", edit)
    got = read_ismrmrd(path)
    pairs = [(r.slice, r.contrast) for r in got.index]
    assert sorted(pairs) == sorted(gains) and len(pairs) == 4
    for i, key in enumerate(pairs):
        np.testing.assert_allclose(got.kspace[i], ref.kspace[0] * gains[key], rtol=1e-5, atol=1e-5)

"""The command line: ``info``, ``recon``, ``prep`` and ``demo``, including bad input (one-line errors, no debris)."""
from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
from _files import write_fastmri_style
from conftest import REPO, run_tool

from mrirecon.cli import main
from mrirecon.io.cfl import read_cfl, write_cfl
from mrirecon.operators import ifft2c


def cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    rc = main([str(a) for a in argv])
    out = capsys.readouterr()
    return rc, out.out, out.err


def rss_of(path: Path) -> np.ndarray:
    with h5py.File(path, "r") as f:
        k = torch.from_numpy(f["kspace"][()])
    return ifft2c(k).abs().pow(2).sum(1).sqrt().numpy()


@pytest.fixture
def knee(tmp_path: Path) -> Path:
    return write_fastmri_style(tmp_path / "in" / "file1000.h5", slices=3, shape=(24, 19), recon=(12, 12))


@pytest.fixture
def adjoint_method(monkeypatch: pytest.MonkeyPatch) -> str:
    """A test method that needs maps and takes lam/iters: the coil-combined adjoint scaled by ``lam``."""
    from mrirecon.methods import METHODS, MethodSpec, ReconResult, _load_all
    from mrirecon.operators import Sense

    @dataclasses.dataclass
    class Opts:
        lam: float = 1.0
        iters: int = 1

    def run(sample, options):  # type: ignore[no-untyped-def]
        return ReconResult(image=options.lam * Sense(sample.maps, sample.mask).adjoint(sample.kspace))

    _load_all()
    monkeypatch.setitem(METHODS._entries, "test-adjoint", MethodSpec("test-adjoint", run, Opts, True, "test"))
    return "test-adjoint"


# ---------------------------------------------------------------------------------------------
# info
# ---------------------------------------------------------------------------------------------
def test_info_fastmri_ismrmrd_cfl(capsys: pytest.CaptureFixture[str], knee: Path, tmp_path: Path,
                                  ismrmrd_tools: dict[str, str]) -> None:
    rc, out, _ = cli(capsys, "info", knee, "--json")
    d = json.loads(out)
    assert rc == 0 and d["format"] == "fastMRI HDF5" and d["coils"] == 4 and d["slices"] == 3
    assert d["matrix (H readout, W phase)"] == [24, 19] and d["recon size"] == [12, 12]
    assert d["sampling"] == "fully sampled" and d["padding"] == [1, 17]
    raw = tmp_path / "sl.h5"
    run_tool(ismrmrd_tools["generate_cartesian_shepp_logan"], "-m", "32", "-c", "4", "-a", "2", "-w", "8", "-C",
             "-o", raw, cwd=tmp_path)
    rc, out, _ = cli(capsys, "info", raw)
    assert rc == 0 and "ISMRMRD raw" in out and "1D lines equispaced, acceleration 2.00" in out
    assert "noise=1" in out and "calibration=" in out
    from mrirecon.operators.masks import MaskSpec

    m = MaskSpec("poisson", 4, calib=8).make((30, 26), 0).numpy()
    k = (np.random.default_rng(0).standard_normal((1, 30, 26, 3)) + 0j) * m[None, :, :, None]
    write_cfl(tmp_path / "k", k.astype(np.complex64))
    rc, out, _ = cli(capsys, "info", tmp_path / "k.cfl", "--json")
    d = json.loads(out)
    assert d["format"] == "BART cfl" and d["coils"] == 3 and d["sampling"].startswith("2D, acceleration")
    assert d["acceleration"] == pytest.approx(30 * 26 / m.sum(), rel=1e-3)


# ---------------------------------------------------------------------------------------------
# recon
# ---------------------------------------------------------------------------------------------
def test_recon_outputs(capsys: pytest.CaptureFixture[str], knee: Path, tmp_path: Path) -> None:
    from mrirecon.data.transforms import center_crop_or_pad

    ref = center_crop_or_pad(torch.from_numpy(rss_of(knee)), (12, 12)).numpy()
    out = tmp_path / "out"
    assert cli(capsys, "recon", knee, "-o", out / "r.h5", "--method", "zf")[0] == 0
    with h5py.File(out / "r.h5", "r") as f:
        r = f["reconstruction"][()]
    assert r.dtype == np.float32 and r.shape == (3, 12, 12)
    np.testing.assert_allclose(r, ref, rtol=1e-5, atol=1e-7)
    assert cli(capsys, "recon", knee, "-o", out / "r.npy", "--slices", "1:3")[0] == 0
    a = np.load(out / "r.npy")
    assert a.dtype == np.complex64 and a.shape == (2, 12, 12)
    np.testing.assert_allclose(np.abs(a), ref[1:3], rtol=1e-5, atol=1e-7)
    assert cli(capsys, "recon", knee, "-o", out / "r.cfl", "--no-crop")[0] == 0
    assert read_cfl(out / "r.cfl").shape == (24, 19, 3)
    assert cli(capsys, "recon", knee, "-o", out / "r.nii.gz")[0] == 0
    import nibabel as nib

    img = nib.load(out / "r.nii.gz")
    assert img.shape == (12, 12, 3)
    np.testing.assert_allclose(img.header.get_zooms(), (140 / 12, 140 / 12, 3), rtol=1e-5)
    np.testing.assert_allclose(np.asarray(img.dataobj)[..., 2], ref[2], rtol=1e-5, atol=1e-7)
    assert cli(capsys, "recon", knee, "-o", out / "r.png")[0] == 0
    assert (out / "r.png").read_bytes()[:4] == b"\x89PNG"
    assert sorted(p.name for p in out.iterdir()) == ["r.cfl", "r.h5", "r.hdr", "r.nii.gz", "r.npy", "r.png"]


def test_recon_ismrmrd_matches_reference_tool(capsys: pytest.CaptureFixture[str], tmp_path: Path,
                                              ismrmrd_tools: dict[str, str]) -> None:
    """``mrirecon recon raw.h5 --method zf`` = ``ismrmrd_recon_cartesian_2d`` / sqrt(N) (RSS, unnormalised FFT)."""
    raw = tmp_path / "raw.h5"
    run_tool(ismrmrd_tools["generate_cartesian_shepp_logan"], "-m", "40", "-c", "4", "-n", "0", "-o", raw,
             cwd=tmp_path)
    tool = tmp_path / "tool.h5"
    tool.write_bytes(raw.read_bytes())
    run_tool(ismrmrd_tools["recon_cartesian_2d"], tool)
    with h5py.File(tool, "r") as f:
        group = next(g for g in f["dataset"] if g not in ("data", "xml", "phantom", "csm", "coil_images"))
        ref = f["dataset"][group]["data"][()].reshape(40, 40).T / np.sqrt(80 * 40)
    assert cli(capsys, "recon", raw, "-o", tmp_path / "ours.npy", "--no-prewhiten")[0] == 0
    ours = np.abs(np.load(tmp_path / "ours.npy")[0])
    np.testing.assert_allclose(ours, ref, rtol=1e-5, atol=1e-5 * ref.max())


def test_recon_retrospective_maps_and_options(capsys: pytest.CaptureFixture[str], knee: Path, tmp_path: Path,
                                              adjoint_method: str) -> None:
    rc, out, err = cli(capsys, "recon", knee, "-o", tmp_path / "a.npy", "--method", adjoint_method, "--maps", "rss",
                       "--accel", "2", "--center-fraction", "0.3", "--mask", "equispaced", "--lam", "2")
    assert rc == 0, err
    assert "retrospective" in out and "1D lines" in out
    a = np.load(tmp_path / "a.npy")
    rc, _, _ = cli(capsys, "recon", knee, "-o", tmp_path / "b.npy", "--method", adjoint_method, "--maps", "rss",
                   "--accel", "2", "--center-fraction", "0.3", "--mask", "equispaced")
    np.testing.assert_allclose(a, 2 * np.load(tmp_path / "b.npy"), rtol=1e-5)   # --lam reached the method
    rc, _, err = cli(capsys, "recon", knee, "-o", tmp_path / "c.npy", "--method", adjoint_method, "--weights", "x")
    assert rc == 2 and "has no option --weights" in err and "['iters', 'lam']" in err
    # a mask from a file (the same equispaced mask, saved), and maps from a file
    from mrirecon.operators.masks import MaskSpec

    m = MaskSpec("equispaced", 2, 0.3).make((24, 19), 0).numpy()
    np.save(tmp_path / "mask.npy", m)
    maps = np.ones((3, 4, 24, 19), np.complex64) / 2
    np.save(tmp_path / "maps.npy", maps)
    rc, _, err = cli(capsys, "recon", knee, "-o", tmp_path / "d.npy", "--method", adjoint_method, "--maps", "file",
                     "--maps-file", tmp_path / "maps.npy", "--mask", tmp_path / "mask.npy", "--no-crop")
    assert rc == 0, err
    with h5py.File(knee, "r") as f:
        k = torch.from_numpy(f["kspace"][()])
    expect = (ifft2c(k * torch.from_numpy(m)).sum(1) / 2).numpy()
    np.testing.assert_allclose(np.load(tmp_path / "d.npy"), expect, rtol=1e-4, atol=1e-8)


def test_recon_bart_cfl_and_undersampled_input(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    from mrirecon.operators.masks import MaskSpec

    m = MaskSpec("poisson", 3, calib=8).make((30, 26), 1).numpy()
    k = ((np.random.default_rng(0).standard_normal((1, 30, 26, 3)) + 0j) * m[None, :, :, None]).astype(np.complex64)
    write_cfl(tmp_path / "k", k)
    assert cli(capsys, "recon", tmp_path / "k.cfl", "-o", tmp_path / "x.cfl")[0] == 0
    x = read_cfl(tmp_path / "x.cfl")
    expect = ifft2c(torch.from_numpy(k[0].transpose(2, 0, 1))).abs().pow(2).sum(0).sqrt().numpy()
    np.testing.assert_allclose(np.abs(x), expect, rtol=1e-5, atol=1e-6)
    rc, _, err = cli(capsys, "recon", tmp_path / "k.cfl", "-o", tmp_path / "y.npy", "--accel", "4")
    assert rc == 2 and "needs fully sampled data" in err and not (tmp_path / "y.npy").exists()


def test_list_methods(capsys: pytest.CaptureFixture[str]) -> None:
    rc, out, _ = cli(capsys, "recon", "--list-methods")
    assert rc == 0 and any(line.startswith("zf ") for line in out.splitlines())
    rc, _, err = cli(capsys, "recon", "x.h5")
    assert rc == 2 and "needs INPUT and -o OUTPUT" in err


# ---------------------------------------------------------------------------------------------
# bad input: one-line errors naming file and field, exit 2, nothing written
# ---------------------------------------------------------------------------------------------
def _bad_files(tmp: Path, knee: Path, base: Path) -> dict[str, tuple[Path, str]]:
    out: dict[str, tuple[Path, str]] = {}
    data = knee.read_bytes()
    (tmp / "trunc.h5").write_bytes(data[: len(data) // 2])
    out["truncated"] = (tmp / "trunc.h5", "trunc.h5: not a readable .*truncated")
    (tmp / "junk.h5").write_bytes(b"not hdf5 at all")
    out["corrupt"] = (tmp / "junk.h5", "junk.h5: not a readable")

    def variant(name: str, edit) -> Path:  # type: ignore[no-untyped-def]
        p = tmp / name
        p.write_bytes(data)
        with h5py.File(p, "a") as f:
            edit(f)
        return p

    out["no kspace header"] = (variant("nohdr.h5", lambda f: f.__delitem__("ismrmrd_header")),
                               "nohdr.h5: field 'ismrmrd_header' is missing")

    def dtype(f: h5py.File) -> None:
        k = f["kspace"][()]
        del f["kspace"]
        f["kspace"] = k.real
    out["wrong dtype"] = (variant("dtype.h5", dtype), "dtype.h5: field 'kspace' has dtype float32")

    def zero(f: h5py.File) -> None:
        del f["kspace"]
        f["kspace"] = np.zeros((3, 0, 24, 19), np.complex64)
    out["zero coils"] = (variant("zero.h5", zero), "zero.h5: field 'kspace' has shape .*zero coils")

    def nan(f: h5py.File) -> None:
        k = f["kspace"][()]
        k[2, 1, 5, 5] = np.inf
        f["kspace"][...] = k
    out["inf"] = (variant("inf.h5", nan), "inf.h5: field 'kspace' holds 1 NaN/Inf")

    def limits(f: h5py.File) -> None:
        x = f["ismrmrd_header"][()].decode().replace("<center>8</center>", "<center>30</center>")
        del f["ismrmrd_header"]
        f["ismrmrd_header"] = np.bytes_(x.encode())
    out["limits"] = (variant("limits.h5", limits), "limits.h5: .*kspace_encoding_step_1.*inconsistent")
    # ISMRMRD: no /dataset/data, no imaging lines
    nod = tmp / "nodata.h5"
    with h5py.File(base, "r") as f, h5py.File(nod, "w") as g:
        f.copy("dataset/xml", g, "dataset/xml")
        g["dataset"].create_group("extra")
    out["no /dataset/data"] = (nod, "nodata.h5: field '/dataset/data'")
    noimg = tmp / "noimg.h5"
    noimg.write_bytes(base.read_bytes())
    with h5py.File(noimg, "a") as f:
        d = f["dataset/data"]
        arr = d[()]
        arr["head"]["flags"] = 1 << 18   # every acquisition flagged as a noise measurement
        d[...] = arr
    out["no imaging"] = (noimg, "noimg.h5: field '/dataset/data' has no imaging acquisitions")
    return out


def test_bad_inputs_give_one_line_errors(capsys: pytest.CaptureFixture[str], knee: Path, tmp_path: Path,
                                         ismrmrd_tools: dict[str, str]) -> None:
    base = tmp_path / "base.h5"
    run_tool(ismrmrd_tools["generate_cartesian_shepp_logan"], "-m", "16", "-c", "2", "-o", base, cwd=tmp_path)
    bad = tmp_path / "bad"
    bad.mkdir()
    outdir = tmp_path / "out"
    import re

    for what, (path, pattern) in _bad_files(bad, knee, base).items():
        for cmd in (["recon", path, "-o", outdir / "r.h5"], ["info", path]):
            rc, out, err = cli(capsys, *cmd)
            assert rc == 2, (what, cmd[0], out, err)
            lines = err.strip().splitlines()
            assert len(lines) == 1 and "Traceback" not in err, (what, err)
            assert re.search(pattern, lines[0]), (what, lines[0])
        assert not outdir.exists() or list(outdir.iterdir()) == [], what
    rc, _, err = cli(capsys, "recon", knee, "-o", outdir / "r.jpeg")
    assert rc == 2 and "unknown output extension .jpeg" in err
    assert not outdir.exists() or list(outdir.iterdir()) == []


@pytest.mark.slow
def test_debug_shows_the_traceback(tmp_path: Path) -> None:
    (tmp_path / "junk.h5").write_bytes(b"junk")
    assert main(["recon", str(tmp_path / "junk.h5"), "-o", str(tmp_path / "o.h5")]) == 2   # one line (see above)
    cmd = [sys.executable, "-m", "mrirecon", "--debug", "recon", str(tmp_path / "junk.h5"), "-o", str(tmp_path / "o.h5")]
    debug = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True)
    assert debug.returncode != 0 and "Traceback" in debug.stderr and "DataError" in debug.stderr


# ---------------------------------------------------------------------------------------------
# prep
# ---------------------------------------------------------------------------------------------
def test_prep_convert_loads_in_fastmri(capsys: pytest.CaptureFixture[str], tmp_path: Path,
                                       ismrmrd_tools: dict[str, str]) -> None:
    from fastmri.data import SliceDataset

    from mrirecon.data.fastmri import FastMRISliceDataset
    from mrirecon.io.ismrmrd import read_ismrmrd

    full = tmp_path / "full.h5"
    run_tool(ismrmrd_tools["generate_cartesian_shepp_logan"], "-m", "32", "-c", "4", "-C", "-o", full, cwd=tmp_path)
    out = tmp_path / "fm"
    rc, text, err = cli(capsys, "prep", "convert", full, out / "sl.h5")
    assert rc == 0, err
    ds = SliceDataset(out, challenge="multicoil")
    kspace, mask, target, attrs, fname, _ = ds[0]
    raw = read_ismrmrd(full)
    np.testing.assert_array_equal(kspace, raw.kspace[0])
    assert attrs["recon_size"] == (32, 32, 1) and attrs["encoding_size"] == (32, 32, 1) and mask is None
    rss = ifft2c(torch.from_numpy(raw.kspace[0])).abs().pow(2).sum(0).sqrt().numpy()
    np.testing.assert_allclose(target, rss, rtol=1e-5)
    # accelerated with separate calibration lines: one file per repetition, mask = lines + calibration
    acc = tmp_path / "acc.h5"
    run_tool(ismrmrd_tools["generate_cartesian_shepp_logan"], "-m", "32", "-c", "4", "-a", "2", "-w", "8",
             "-o", acc, cwd=tmp_path)
    out2 = tmp_path / "fm2"
    assert cli(capsys, "prep", "convert", acc, out2 / "acc.h5")[0] == 0
    assert sorted(p.name for p in out2.iterdir()) == ["acc_repetition0.h5", "acc_repetition1.h5"]
    kspace, mask, target, attrs, fname, _ = SliceDataset(out2, challenge="multicoil")[1]
    lines = np.arange(32)
    expect = ((lines % 2 == 1) | ((lines >= 12) & (lines <= 19))).astype(np.float32)
    np.testing.assert_array_equal(mask, expect)
    assert target is None
    ours = FastMRISliceDataset(out2, cache=False)[1]
    np.testing.assert_array_equal(ours.mask.reshape(-1).numpy(), expect)


def test_prep_maps_resumable(capsys: pytest.CaptureFixture[str], tiny_demo: Path, tmp_path: Path,
                             monkeypatch: pytest.MonkeyPatch) -> None:
    import mrirecon.data.prep as prep

    maps = tmp_path / "maps"
    maps.mkdir()
    (maps / ".val_axial_00.h5.abc.tmp").write_bytes(b"left by a killed run")
    calls: list[int] = []
    orig = prep.maps_for_volume

    def interrupted(k, method, **kw):  # type: ignore[no-untyped-def]
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return orig(k, method, **kw)

    monkeypatch.setattr(prep, "maps_for_volume", interrupted)
    assert main(["prep", "espirit", str(tiny_demo / "val"), "-o", str(maps), "--method", "rss"]) == 130
    names = sorted(p.name for p in maps.iterdir() if not p.name.startswith(".mrirecon"))
    assert len(names) == 1 and not names[0].startswith(".")      # one done, no half-written file, no stale temp
    monkeypatch.setattr(prep, "maps_for_volume", orig)
    capsys.readouterr()
    rc, out, _ = cli(capsys, "prep", "espirit", tiny_demo / "val", "-o", maps, "--method", "rss")
    n = len(list((tiny_demo / "val").glob("*.h5")))
    assert rc == 0 and f"{n - 1} computed, 1 already done, 0 failed" in out
    from mrirecon.data.fastmri import FastMRISliceDataset

    s = FastMRISliceDataset(tiny_demo / "val", maps_dir=maps, cache=False)[0]
    assert s.maps.shape == s.kspace.shape
    torch.testing.assert_close(s.maps.abs().pow(2).sum(0), torch.ones(40, 32), atol=1e-4, rtol=1e-4)


@pytest.mark.slow
def test_prep_espirit_when_available(capsys: pytest.CaptureFixture[str], tiny_demo: Path, tmp_path: Path) -> None:
    pytest.importorskip("mrirecon.operators.espirit")
    rc, out, err = cli(capsys, "prep", "espirit", tiny_demo / "test", "-o", tmp_path / "m")
    assert rc == 0, out + err


@pytest.mark.slow
def test_prep_demo_and_scripts(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    rc, out, _ = cli(capsys, "prep", "demo", "--tiny", "--root", tmp_path / "d")
    assert rc == 0 and "slices" in out and (tmp_path / "d" / "demo.json").exists()
    for script in ("convert_ismrmrd.py", "espirit_maps.py", "build_demo.py"):
        res = subprocess.run([sys.executable, str(REPO / "data_prep" / script), "--help"], capture_output=True,
                             text=True)
        assert res.returncode == 0 and "usage: mrirecon prep" in res.stdout, script


# ---------------------------------------------------------------------------------------------
# demo
# ---------------------------------------------------------------------------------------------
def test_demo_command(capsys: pytest.CaptureFixture[str], tiny_demo: Path, tmp_path: Path) -> None:
    from mrirecon.methods import method_names

    rc, out, err = cli(capsys, "demo", "--data", tiny_demo, "-o", tmp_path / "demo", "--maps", "rss",
                       "--center-fraction", "0.2")
    table = (tmp_path / "demo" / "metrics.md").read_text()
    assert rc == 0, out + err
    for name in method_names():
        assert f"| {name} |" in table
    assert (tmp_path / "demo" / "demo.png").read_bytes()[:4] == b"\x89PNG"
    zf = next(line for line in table.splitlines() if line.startswith("| zf |"))
    assert 10 < float(zf.split("|")[2]) < 40


def test_recon_with_espirit_maps(capsys: pytest.CaptureFixture[str], tiny_demo: Path, tmp_path: Path,
                                 adjoint_method: str) -> None:
    """--maps espirit (the default): the coil combination with ESPIRiT maps recovers the demo's ground truth."""
    pytest.importorskip("mrirecon.operators.espirit")
    f = sorted((tiny_demo / "val").glob("*.h5"))[0]
    rc, _, err = cli(capsys, "recon", f, "-o", tmp_path / "e.npy", "--method", adjoint_method, "--slices", "0")
    assert rc == 0, err
    x = np.abs(np.load(tmp_path / "e.npy")[0])
    with h5py.File(f, "r") as h:
        gt = np.abs(h["image"][0])
    brain = gt > 0.2 * gt.max()
    assert np.linalg.norm((x - gt)[brain]) / np.linalg.norm(gt[brain]) < 0.1


@pytest.mark.parametrize("method", ["sense", "cs-wavelet", "cs-tv"])
def test_recon_classical_methods_through_the_cli_equal_the_library(capsys: pytest.CaptureFixture[str], knee: Path,
                                                                   tmp_path: Path, method: str) -> None:
    """``recon --method sense|cs-wavelet|cs-tv --lam --iters`` runs the registered method on what it read: the same
    images as :func:`mrirecon.methods.reconstruct` on the same k-space, mask and maps (given as files)."""
    from mrirecon.data.sample import KSpaceSample
    from mrirecon.methods import reconstruct
    from mrirecon.operators.masks import MaskSpec

    m = MaskSpec("equispaced", 2, 0.3).make((24, 19), 0).numpy()
    np.save(tmp_path / "mask.npy", m)
    g = np.random.default_rng(0)
    maps = (g.standard_normal((4, 24, 19)) + 1j * g.standard_normal((4, 24, 19))).astype(np.complex64)
    maps /= np.sqrt((np.abs(maps) ** 2).sum(0, keepdims=True))
    np.save(tmp_path / "maps.npy", maps)
    rc, _, err = cli(capsys, "recon", knee, "-o", tmp_path / "r.npy", "--method", method, "--maps", "file",
                     "--maps-file", tmp_path / "maps.npy", "--mask", tmp_path / "mask.npy", "--no-crop",
                     "--slices", "1:2", "--lam", "0.01", "--iters", "7")
    assert rc == 0, err
    got = np.load(tmp_path / "r.npy")
    with h5py.File(knee, "r") as f:
        k = torch.from_numpy(f["kspace"][1]) * torch.from_numpy(m)
    sample = KSpaceSample(kspace=k.to(torch.complex64), mask=torch.from_numpy(m), maps=torch.from_numpy(maps))
    ref = reconstruct(sample, method, lam=0.01, iters=7).image.numpy()
    assert got.shape == (1, *ref.shape[-2:])
    np.testing.assert_allclose(got[0], ref.reshape(got.shape[1:]), rtol=1e-4, atol=1e-5 * np.abs(ref).max())


@pytest.mark.bart
@pytest.mark.slow
def test_recon_cli_reproduces_bart_ecalib_and_pics(capsys: pytest.CaptureFixture[str], bart: str,
                                                   bart_brain: Path, tmp_path: Path) -> None:
    """``--maps espirit-bart -O transform=bart`` is ``bart ecalib -m1`` + ``bart pics -R W`` on real data."""
    write_cfl(tmp_path / "ksp", read_cfl(bart_brain / "ksp").reshape(180, 230, 1, 8))
    run_tool(bart, "ecalib", "-m1", tmp_path / "ksp", tmp_path / "maps")
    run_tool(bart, "pics", "-S", "-R", "W:7:0:0.005", "-i", "100", tmp_path / "ksp", tmp_path / "maps",
             tmp_path / "theirs")
    rc, _, err = cli(capsys, "recon", tmp_path / "ksp.cfl", "--method", "cs-wavelet", "--lam", "0.005",
                     "--iters", "100", "--maps", "espirit-bart", "-O", "transform=bart", "-o", tmp_path / "ours.cfl")
    assert rc == 0, err
    ours = np.abs(read_cfl(tmp_path / "ours")).reshape(180, 230)
    theirs = np.abs(read_cfl(tmp_path / "theirs")).reshape(180, 230)
    assert np.linalg.norm(ours - theirs) / np.linalg.norm(theirs) < 1e-4  # measured 4.2e-6


def test_recon_espirit_on_a_centre_narrower_than_bart_kernel(capsys: pytest.CaptureFixture[str], tiny_demo: Path,
                                                            tmp_path: Path) -> None:
    """8x with 10 % centre lines on 32 columns leaves a 2-line fully sampled centre: BART's 6x6 ESPIRiT kernel
    cannot calibrate it (ecalib stops with an assertion, espirit_maps' default raises); `recon` uses the kernel
    that fits (auto_kernel: 2) and gives the SENSE image with those maps. A 1-line centre is an error that says so."""
    from mrirecon.data.fastmri import FastMRISliceDataset
    from mrirecon.data.inputs import undersample
    from mrirecon.errors import DataError
    from mrirecon.methods import reconstruct
    from mrirecon.operators.espirit import calib_region, espirit_maps, sampling_pattern
    from mrirecon.operators.masks import MaskSpec

    src = sorted((tiny_demo / "val").glob("*.h5"))[0]
    full = FastMRISliceDataset([src], cache=False)[0]
    s = undersample(full, MaskSpec("equispaced", 8, center_fraction=0.1), (0, 0), full.meta.extra.get("padding"))
    assert calib_region(sampling_pattern(s.kspace))[1] == 2
    with pytest.raises(DataError, match="smaller than the 6x6 kernel"):
        espirit_maps(s.kspace)
    rc, out, err = cli(capsys, "recon", src, "-o", tmp_path / "r.npy", "--method", "sense", "--slices", "0",
                       "--accel", "8", "--center-fraction", "0.1", "--mask", "equispaced", "--no-crop")
    assert rc == 0, err
    ref = reconstruct(s.replace(maps=espirit_maps(s.kspace, kernel=2)), "sense").image.numpy()
    np.testing.assert_allclose(np.load(tmp_path / "r.npy")[0], ref, rtol=1e-4, atol=1e-5 * np.abs(ref).max())
    rc, _, err = cli(capsys, "recon", src, "-o", tmp_path / "q.npy", "--method", "sense", "--slices", "0",
                     "--accel", "8", "--center-fraction", "0.04", "--mask", "equispaced", "--no-crop")
    assert rc == 2 and f"{src}: " in err and "smaller than the 2x2 kernel" in err and "--maps rss" in err

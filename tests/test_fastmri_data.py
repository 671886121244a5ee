"""fastMRI io and datasets, checked against fastmri.data.SliceDataset in both directions."""
from __future__ import annotations

import os
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
from _files import write_fastmri_style

from mrirecon.data.fastmri import (EpochSampler, FastMRISliceDataset, FastMRIVolumeDataset, FileMeta, MetadataCache,
                                   mask_seed)
from mrirecon.data.transforms import center_crop_or_pad, collate_samples
from mrirecon.errors import ConfigError, DataError, NonFiniteError, ShapeError
from mrirecon.io.fastmri import (inspect_fastmri, make_ismrmrd_header, parse_ismrmrd_header, read_submission,
                                 write_fastmri, write_maps_sidecar, write_submission)
from mrirecon.operators import ifft2c

masks = pytest.importorskip("mrirecon.operators.masks")
MaskSpec = masks.MaskSpec


@pytest.fixture
def knee_dir(tmp_path: Path) -> Path:
    d = tmp_path / "knee"
    write_fastmri_style(d / "file1000.h5", slices=3, seed=1)
    write_fastmri_style(d / "file1001.h5", slices=2, seed=2)
    return d


def _fm_dataset(root: Path, challenge: str = "multicoil", transform: object = None) -> object:
    from fastmri.data import SliceDataset

    return SliceDataset(root, challenge=challenge, transform=transform)


# ---------------------------------------------------------------------------------------------
# header and file io
# ---------------------------------------------------------------------------------------------
def test_header_roundtrip_and_fastmri_metadata(tmp_path: Path) -> None:
    hdr = make_ismrmrd_header((24, 19, 1), (12, 12, 1), (280, 140, 4.5), (140, 140, 3), coils=4,
                              ky_limits=(0, 15, 8))
    enc = parse_ismrmrd_header(hdr)
    assert enc.encoded_size == (24, 19, 1) and enc.recon_size == (12, 12, 1) and enc.coils == 4
    assert enc.ky_limits == (0, 15, 8) and enc.padding == (1, 17)
    k = np.zeros((2, 4, 24, 19), np.complex64)
    write_fastmri(tmp_path / "d" / "a.h5", k, hdr, reconstruction_rss=np.zeros((2, 12, 12), np.float32),
                  attrs={"max": 1.0, "norm": 1.0, "acquisition": "X", "patient_id": "p"})
    ds = _fm_dataset(tmp_path / "d")
    meta, _ = ds._retrieve_metadata(tmp_path / "d" / "a.h5")
    assert meta["encoding_size"] == (24, 19, 1) and meta["recon_size"] == (12, 12, 1)
    assert (meta["padding_left"], meta["padding_right"]) == enc.padding


def test_our_parser_agrees_with_fastmri_on_handwritten_file(knee_dir: Path) -> None:
    ds = _fm_dataset(knee_dir)
    for f in sorted(knee_dir.iterdir()):
        meta, n = ds._retrieve_metadata(f)
        info = inspect_fastmri(f)
        assert info.num_slices == n and info.encoding.encoded_size == meta["encoding_size"]
        assert info.encoding.recon_size == meta["recon_size"]
        assert info.encoding.padding == (meta["padding_left"], meta["padding_right"])


def test_we_read_what_fastmri_reads(knee_dir: Path) -> None:
    """Direction 1: hand-written fastMRI-style files, fully sampled, read by both loaders."""
    ours = FastMRISliceDataset(knee_dir, cache=False)
    theirs = _fm_dataset(knee_dir)
    assert len(ours) == len(theirs) == 5
    for i in range(len(ours)):
        kspace, mask, target, attrs, fname, sl = theirs[i]
        s = ours[i]
        assert (s.meta.file, s.meta.slice) == (fname, sl)
        np.testing.assert_array_equal(s.kspace.numpy(), kspace)
        np.testing.assert_array_equal(s.target.numpy(), target)
        assert s.meta.recon_size == tuple(attrs["recon_size"][:2]) and s.meta.max_value == attrs["max"]
        assert s.meta.extra["padding"] == (attrs["padding_left"], attrs["padding_right"])
        assert torch.all(s.mask == 1) and s.maps is None


@pytest.mark.parametrize("kind,fm_name", [("random", "RandomMaskFunc"), ("equispaced", "EquispacedMaskFractionFunc")])
def test_fixed_masks_match_fastmri_validation_masks(knee_dir: Path, kind: str, fm_name: str) -> None:
    """``mask_per_volume`` validation masks = fastMRI's ``use_seed=True`` masks, incl. the padding columns."""
    from fastmri.data import subsample
    from fastmri.data.transforms import VarNetDataTransform, tensor_to_complex_np

    func = getattr(subsample, fm_name)([0.08], [4])
    theirs = _fm_dataset(knee_dir, transform=VarNetDataTransform(func, use_seed=True))
    ours = FastMRISliceDataset(knee_dir, mask=MaskSpec(kind, 4, 0.08), fixed_masks=True, mask_per_volume=True,
                               cache=False)
    for i in range(len(ours)):
        t, s = theirs[i], ours[i]
        np.testing.assert_array_equal(s.mask.reshape(-1).numpy(), t.mask.reshape(-1).float().numpy())
        np.testing.assert_array_equal(s.kspace.numpy(), tensor_to_complex_np(t.masked_kspace))
        assert (s.mask.reshape(-1)[:1] == 0).all()  # padding_left = 1 is never sampled


def test_fixed_masks_per_slice_and_training_masks(knee_dir: Path) -> None:
    spec = MaskSpec("random", 4, 0.08)
    val = FastMRISliceDataset(knee_dir, mask=spec, fixed_masks=True, cache=False)
    val2 = FastMRISliceDataset(knee_dir, mask=spec, fixed_masks=True, cache=False)
    val2.set_epoch(7)
    assert all(torch.equal(val[i].mask, val2[i].mask) for i in range(len(val)))
    assert not torch.equal(val[0].mask, val[1].mask)  # seeded per slice
    expect = spec.make((24, 19), mask_seed("file1000.h5", 1)).reshape(1, 1, -1)
    expect[..., :1] = 0
    expect[..., 17:] = 0
    assert torch.equal(val[1].mask, expect)
    train = FastMRISliceDataset(knee_dir, mask=spec, seed=3, cache=False)
    m0 = [train[i].mask for i in range(len(train))]
    train.set_epoch(1)
    m1 = [train[i].mask for i in range(len(train))]
    assert any(not torch.equal(a, b) for a, b in zip(m0, m1))
    assert all(torch.equal(train[(i, 0)].mask, m0[i]) for i in range(len(train)))  # the epoch travels with the index


@pytest.mark.slow
def test_training_masks_independent_of_workers(knee_dir: Path) -> None:
    ds = FastMRISliceDataset(knee_dir, mask=MaskSpec("random", 4, 0.08), seed=5, cache=False)
    out = {}
    for workers in (0, 2):
        sampler = EpochSampler(len(ds), shuffle=True, seed=1)
        dl = torch.utils.data.DataLoader(ds, batch_size=2, sampler=sampler, collate_fn=collate_samples,
                                         num_workers=workers, persistent_workers=workers > 0)
        masks_ = []
        for epoch in range(2):
            sampler.set_epoch(epoch)
            for b in dl:
                masks_.append((tuple((m.file, m.slice) for m in b.meta), b.mask.clone()))
        out[workers] = masks_
    assert len(out[0]) == len(out[2])
    for (ka, ma), (kb, mb) in zip(out[0], out[2]):
        assert ka == kb and torch.equal(ma, mb)


def test_singlecoil(tmp_path: Path) -> None:
    d = tmp_path / "sc"
    write_fastmri_style(d / "file2000.h5", slices=2, singlecoil=True)
    ours = FastMRISliceDataset(d, cache=False)
    assert ours.challenge == "singlecoil"
    theirs = _fm_dataset(d, challenge="singlecoil")
    kspace, _, target, *_ = theirs[1]
    s = ours[1]
    assert s.kspace.shape == (1, 24, 19)
    np.testing.assert_array_equal(s.kspace[0].numpy(), kspace)
    np.testing.assert_array_equal(s.target.numpy(), target)


def test_fastmri_reads_what_we_write(tmp_path: Path, tiny_demo: Path) -> None:
    """Direction 2: files from our writer (and the demo dataset) read by fastMRI's SliceDataset and evaluator."""
    import argparse

    from fastmri.evaluate import evaluate

    rng = np.random.default_rng(0)
    k = (rng.standard_normal((2, 3, 16, 13)) + 1j * rng.standard_normal((2, 3, 16, 13))).astype(np.complex64)
    tgt = center_crop_or_pad(ifft2c(torch.from_numpy(k)).abs().pow(2).sum(1).sqrt(), (8, 8)).numpy()
    hdr = make_ismrmrd_header((16, 13, 1), (8, 8, 1), (200, 160, 5), (100, 100, 5), coils=3)
    write_fastmri(tmp_path / "t" / "vol.h5", k, hdr, reconstruction_rss=tgt,
                  attrs={"max": float(tgt.max()), "norm": 1.0, "acquisition": "AXT2", "patient_id": "x"})
    kspace, mask, target, attrs, fname, sl = _fm_dataset(tmp_path / "t")[1]
    np.testing.assert_array_equal(kspace, k[1])
    np.testing.assert_array_equal(target, tgt[1])
    # a submission written by us (1 % too bright), scored by fastmri.evaluate against the target: NMSE = 1e-4
    write_submission(tmp_path / "pred" / "vol.h5", 1.01 * tgt)
    np.testing.assert_array_equal(read_submission(tmp_path / "pred" / "vol.h5"), (1.01 * tgt).astype(np.float32))
    metrics = evaluate(argparse.Namespace(target_path=tmp_path / "t", predictions_path=tmp_path / "pred",
                                          acquisition=None, acceleration=None), "reconstruction_rss")
    assert metrics.means()["NMSE"] == pytest.approx(1e-4, rel=1e-3)
    # the demo dataset: our dataset and fastMRI's agree slice by slice
    ours = FastMRISliceDataset(tiny_demo / "val", cache=False)
    theirs = _fm_dataset(tiny_demo / "val")
    for i in range(len(ours)):
        kspace, _, target, _, fname, sl = theirs[i]
        np.testing.assert_array_equal(ours[i].kspace.numpy(), kspace)
        np.testing.assert_array_equal(ours[i].target.numpy(), target)


def test_volume_dataset(knee_dir: Path) -> None:
    spec = MaskSpec("equispaced", 4, 0.08)
    vol = FastMRIVolumeDataset(knee_dir, mask=spec, fixed_masks=True, cache=False)
    sl = FastMRISliceDataset(knee_dir, mask=spec, fixed_masks=True, cache=False)
    assert len(vol) == 2
    v = vol[0]
    assert v.kspace.shape == (3, 4, 24, 19) and v.mask.shape == (3, 1, 1, 19) and v.target.shape == (3, 12, 12)
    for i in range(3):
        assert torch.equal(v.kspace[i], sl[i].kspace) and torch.equal(v.mask[i], sl[i].mask)
    assert v.meta.slice == -1


# ---------------------------------------------------------------------------------------------
# batching different sizes, maps sidecars, cache, handles
# ---------------------------------------------------------------------------------------------
def test_batching_different_sizes(tmp_path: Path) -> None:
    d = tmp_path / "mixed"
    write_fastmri_style(d / "a.h5", slices=2, shape=(24, 19), recon=(12, 12), limits=None)
    write_fastmri_style(d / "b.h5", slices=2, shape=(20, 16), recon=(10, 10), limits=None)
    ds = FastMRISliceDataset(d, cache=False)
    with pytest.raises(ShapeError, match="size=\\(H, W\\)"):
        collate_samples([ds[0], ds[2]])
    ds = FastMRISliceDataset(d, size=(22, 18), target_size=(12, 12), mask=MaskSpec("random", 2, 0.2), cache=False)
    batch = collate_samples([ds[i] for i in range(len(ds))])
    assert batch.kspace.shape == (4, 4, 22, 18) and batch.mask.shape == (4, 1, 1, 18)
    assert batch.target.shape == (4, 12, 12) and [m.file for m in batch.meta] == ["a.h5", "a.h5", "b.h5", "b.h5"]
    # the resized k-space has the original coil images, cropped/padded (same pixel size)
    full = FastMRISliceDataset(d, size=(22, 18), cache=False)[2]
    with h5py.File(d / "b.h5", "r") as f:
        orig = torch.from_numpy(f["kspace"][0])
    torch.testing.assert_close(ifft2c(full.kspace), center_crop_or_pad(ifft2c(orig), (22, 18)), atol=1e-6, rtol=1e-5)


def test_maps_sidecar(knee_dir: Path, tmp_path: Path) -> None:
    maps_dir = tmp_path / "maps"
    rng = np.random.default_rng(0)
    for f in sorted(knee_dir.iterdir()):
        info = inspect_fastmri(f)
        shape = (info.num_slices, info.coils, *info.matrix)
        write_maps_sidecar(maps_dir / f.name, (rng.standard_normal(shape) + 0j).astype(np.complex64), shape,
                           {"method": "test"})
    ds = FastMRISliceDataset(knee_dir, maps_dir=maps_dir, cache=False)
    with h5py.File(maps_dir / "file1001.h5", "r") as g:
        np.testing.assert_array_equal(ds[4].maps.numpy(), g["maps"][1])
    bad = tmp_path / "badmaps"
    for f in sorted(knee_dir.iterdir()):
        info = inspect_fastmri(f)
        shape = (info.num_slices, info.coils + 1, *info.matrix)
        write_maps_sidecar(bad / f.name, np.ones(shape, np.complex64), shape)
    with pytest.raises(ShapeError, match="recompute the maps"):
        FastMRISliceDataset(knee_dir, maps_dir=bad, cache=False)[0]


def test_metadata_cache(knee_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cache = tmp_path / "meta.json"
    FastMRISliceDataset(knee_dir, cache=cache)
    calls: list[Path] = []
    orig = FileMeta.from_file

    def counting(path: Path) -> FileMeta:
        calls.append(path)
        return orig(path)

    monkeypatch.setattr(FileMeta, "from_file", staticmethod(counting))
    ds = FastMRISliceDataset(knee_dir, cache=cache)
    assert calls == [] and len(ds) == 5
    write_fastmri_style(knee_dir / "file1001.h5", slices=4, seed=9)   # changed file: re-read
    os.utime(knee_dir / "file1001.h5", ns=(1, 10**18))
    ds = FastMRISliceDataset(knee_dir, cache=cache)
    assert [p.name for p in calls] == ["file1001.h5"] and len(ds) == 7
    assert MetadataCache(cache).get(knee_dir / "file1000.h5").num_slices == 3


def test_handles_stay_bounded(tiny_demo: Path) -> None:
    fd_dir = Path("/proc/self/fd")
    if not fd_dir.exists():
        pytest.skip("no /proc")
    ds = FastMRISliceDataset(tiny_demo / "train", handle_cache=3, cache=False)
    counts = []
    for _ in range(3):
        for i in range(len(ds)):
            ds[i]
        counts.append(len(list(fd_dir.iterdir())))
        assert len(ds._handles) <= 3
    assert counts[0] == counts[1] == counts[2]
    ds.close()
    assert len(ds._handles) == 0


def test_sampling_rates_are_seeded(tiny_demo: Path) -> None:
    a = FastMRISliceDataset(tiny_demo / "train", sample_rate=0.5, seed=1, cache=False)
    b = FastMRISliceDataset(tiny_demo / "train", sample_rate=0.5, seed=1, cache=False)
    c = FastMRISliceDataset(tiny_demo / "train", volume_sample_rate=0.5, seed=1, cache=False)
    assert a.records == b.records and 0 < len(a) < len(FastMRISliceDataset(tiny_demo / "train", cache=False))
    assert len(c.files) == round(len(FastMRISliceDataset(tiny_demo / "train", cache=False).files) * 0.5)


# ---------------------------------------------------------------------------------------------
# bad input
# ---------------------------------------------------------------------------------------------
def test_bad_folders_and_files(tmp_path: Path, knee_dir: Path) -> None:
    with pytest.raises(DataError, match="no such file or folder"):
        FastMRISliceDataset(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no .h5 files"):
        FastMRISliceDataset(tmp_path / "empty")
    data = (knee_dir / "file1000.h5").read_bytes()
    (knee_dir / "file1002.h5").write_bytes(data[: len(data) // 2])
    with pytest.raises(DataError, match="file1002.h5.*truncated or corrupt"):
        FastMRISliceDataset(knee_dir, cache=False)


def test_bad_fields(tmp_path: Path) -> None:
    p = write_fastmri_style(tmp_path / "x" / "a.h5")
    with h5py.File(p, "a") as f:
        k = f["kspace"][()]
        k[1, 0, 3, 4] = np.nan
        f["kspace"][...] = k
    ds = FastMRISliceDataset(tmp_path / "x", cache=False)
    ds[0]
    with pytest.raises(NonFiniteError, match=r"a.h5: field 'kspace\[1\]' holds 1 NaN/Inf.*\(0, 3, 4\)"):
        ds[1]
    ds.close()
    with h5py.File(p, "a") as f:
        del f["kspace"]
        f["kspace"] = np.zeros((3, 0, 24, 19), np.complex64)
    with pytest.raises(ShapeError, match="zero coils"):
        inspect_fastmri(p)
    with h5py.File(p, "a") as f:
        del f["kspace"]
        f["kspace"] = np.zeros((3, 4, 24, 19), np.float32)
    with pytest.raises(Exception, match="field 'kspace' has dtype float32, expected complex64"):
        inspect_fastmri(p)
    with h5py.File(p, "a") as f:
        del f["kspace"]
    with pytest.raises(DataError, match="field 'kspace' is missing"):
        inspect_fastmri(p)
    q = write_fastmri_style(tmp_path / "y" / "b.h5")
    with h5py.File(q, "a") as f:
        del f["ismrmrd_header"]
    with pytest.raises(DataError, match="b.h5: field 'ismrmrd_header' is missing"):
        inspect_fastmri(q)
    r = write_fastmri_style(tmp_path / "z" / "c.h5", limits=(18, 3))   # lines would fall outside the matrix
    with pytest.raises(DataError, match="kspace_encoding_step_1.*inconsistent"):
        inspect_fastmri(r)


def test_undersampled_test_set_file(tmp_path: Path) -> None:
    p = write_fastmri_style(tmp_path / "t" / "file3000.h5", with_mask=True)
    ds = FastMRISliceDataset(tmp_path / "t", cache=False)
    s = ds[0]
    assert s.target is None
    with h5py.File(p, "r") as f:
        np.testing.assert_array_equal(s.mask.reshape(-1).numpy(), f["mask"][()])
    with pytest.raises(ConfigError, match="already undersampled"):
        FastMRISliceDataset(tmp_path / "t", mask=MaskSpec("random", 4, 0.08), cache=False)
    with pytest.raises(ConfigError, match="phase-encoding size"):
        FastMRISliceDataset(tmp_path / "t", size=(24, 20), cache=False)[0]


def test_writers_leave_nothing_on_failure(tmp_path: Path) -> None:
    k = np.zeros((2, 3, 8, 8), np.complex64)
    hdr = make_ismrmrd_header((8, 8, 1), (8, 8, 1), (1, 1, 1), (1, 1, 1), 3)
    with pytest.raises(ShapeError):
        write_fastmri(tmp_path / "o" / "a.h5", k, hdr, reconstruction_rss=np.zeros((3, 8, 8)))
    with pytest.raises(NonFiniteError):
        write_submission(tmp_path / "o" / "b.h5", np.full((1, 4, 4), np.inf))
    assert list((tmp_path / "o").iterdir()) == []

"""The embedded demo dataset: format, consistency, determinism, splits, concurrent builds."""
from __future__ import annotations

import hashlib
import json
import multiprocessing as mp
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

from mrirecon.data.demo import (DEMO_VERSION, ORIENTATIONS, SPLITS, DemoConfig, build_demo, demo_files, demo_root,
                                plan_volumes, load_template)
from mrirecon.errors import DataError
from mrirecon.io.fastmri import inspect_fastmri


def _digest(root: Path) -> str:
    h = hashlib.sha256()
    for f in sorted(root.glob("*/*.h5")):
        with h5py.File(f, "r") as hf:
            for key in ("kspace", "image", "reconstruction_rss"):
                h.update(np.ascontiguousarray(hf[key][()]).tobytes())
    return h.hexdigest()


def test_layout_and_format(tiny_demo: Path) -> None:
    manifest = json.loads((tiny_demo / "demo.json").read_text())
    assert manifest["version"] == DEMO_VERSION
    for split in SPLITS:
        files = demo_files(tiny_demo, split)
        assert files, split
        assert manifest["slices"][split] == sum(inspect_fastmri(f).num_slices for f in files)
        for f in files:
            info = inspect_fastmri(f)
            assert info.challenge == "multicoil" and info.coils == 8 and info.matrix == (40, 32)
            assert info.recon_size == (40, 32) and info.target_shape == (40, 32)
            assert {"kspace", "ismrmrd_header", "reconstruction_rss", "image"} <= set(info.datasets)
            assert {"max", "norm", "acquisition", "patient_id"} <= set(info.attrs)
            with h5py.File(f, "r") as hf:
                assert hf["kspace"].dtype == np.complex64 and hf["image"].dtype == np.complex64
                assert hf["reconstruction_rss"].dtype == np.float32
                assert hf["image"].shape == (info.num_slices, 40, 32)


def test_targets_computed_like_fastmri(tiny_demo: Path) -> None:
    """``reconstruction_rss`` = fastmri.rss(fastmri.ifft2c(kspace)); attrs max/norm from it."""
    import fastmri
    from fastmri.data import transforms as T

    f = demo_files(tiny_demo, "val")[0]
    with h5py.File(f, "r") as hf:
        k, rss, img = hf["kspace"][()], hf["reconstruction_rss"][()], hf["image"][()]
        attrs = dict(hf.attrs)
    ref = fastmri.rss(fastmri.complex_abs(fastmri.ifft2c(T.to_tensor(k))), dim=1).numpy()
    np.testing.assert_allclose(rss, ref, rtol=1e-4, atol=1e-6 * rss.max())
    assert attrs["max"] == pytest.approx(float(rss.max()), rel=1e-6)
    assert attrs["norm"] == pytest.approx(float(np.linalg.norm(rss)), rel=1e-5)
    # the ground truth agrees with the noisy RSS image inside the head, up to the simulated noise
    brain = np.abs(img) > 0.2 * np.abs(img).max()
    rel = np.linalg.norm((rss - np.abs(img))[brain]) / np.linalg.norm(np.abs(img)[brain])
    assert rel < 0.08
    # and the noise level in attrs is what the background shows (RSS of 8 coils of complex noise)
    background = np.abs(img) < 1e-3 * np.abs(img).max()
    sigma_bg = np.sqrt(np.mean(rss[background] ** 2) / 8)
    assert sigma_bg == pytest.approx(attrs["noise_std"], rel=0.2)


def test_kspace_is_coil_weighted_image_plus_white_noise(tiny_demo: Path) -> None:
    """With normalised maps (Σ|S_c|² = 1) and noise of std σ: E[RSS²] = |image|² + C·σ² pixel by pixel."""
    from mrirecon.operators import ifft2c

    f = demo_files(tiny_demo, "train")[3]
    with h5py.File(f, "r") as hf:
        k, img, sigma = torch.from_numpy(hf["kspace"][()]), torch.from_numpy(hf["image"][()]), hf.attrs["noise_std"]
    rss2 = ifft2c(k).abs().pow(2).sum(1).double()
    excess = (rss2 - img.abs().pow(2).double()) / (8 * sigma ** 2)   # ≈ 1 on average, everywhere
    assert float(excess.mean()) == pytest.approx(1.0, abs=0.05)
    brain = img.abs() > 0.3 * img.abs().max()
    assert float(excess[brain].mean()) == pytest.approx(1.0, abs=0.25)


def test_splits_do_not_share_anatomy() -> None:
    cfg = DemoConfig()
    plans = plan_volumes(load_template(), cfg)
    for ori in ORIENTATIONS:
        pos = {sp: [p for pl in plans if pl.orientation is ori and pl.split == sp for p in pl.positions]
               for sp in SPLITS}
        for a in SPLITS:
            assert pos[a], (ori.name, a)
            for b in SPLITS:
                if a < b:
                    gap = min(abs(x - y) for x in pos[a] for y in pos[b])
                    assert gap >= cfg.gap_mm, (ori.name, a, b, gap)
        if ori.half:  # one hemisphere only: no mirrored duplicates of the symmetric template
            mid = (load_template().shape[ori.normal] - 1) / 2
            assert min(p for ps in pos.values() for p in ps) > mid
    total = sum(len(p.positions) for p in plans)
    assert 200 <= total <= 300
    names = [p.name for p in plans]
    assert len(set(names)) == len(names)


def test_deterministic(tmp_path: Path, tiny_demo: Path) -> None:
    again = build_demo(tmp_path / "again", DemoConfig.tiny())
    assert _digest(again) == _digest(tiny_demo)
    other = build_demo(tmp_path / "other", DemoConfig.tiny(seed=1))
    assert _digest(other) != _digest(tiny_demo)


def _build(root: str) -> str:
    return str(build_demo(root, DemoConfig.tiny()))


@pytest.mark.slow
def test_concurrent_builds_and_stale_tmp(tmp_path: Path, tiny_demo: Path) -> None:
    root = tmp_path / "shared"
    stale = tmp_path / ".shared.tmp-killed"
    (stale / "val").mkdir(parents=True)
    (stale / "val" / "half.h5").write_bytes(b"partial")
    ctx = mp.get_context("spawn")
    with ctx.Pool(2) as pool:
        out = pool.map(_build, [str(root)] * 2)
    assert out == [str(root)] * 2
    assert _digest(root) == _digest(tiny_demo)
    assert not list(tmp_path.glob(".shared.tmp-*"))


def test_demo_root_without_build(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MRIRECON_DATA", str(tmp_path))
    with pytest.raises(DataError, match="mrirecon prep demo"):
        demo_root(build=False)
    (tmp_path / f"demo-v{DEMO_VERSION}").mkdir()
    with pytest.raises(DataError, match="not a complete demo dataset"):
        build_demo(tmp_path / f"demo-v{DEMO_VERSION}", DemoConfig.tiny())


def test_fastmri_slice_dataset_reads_demo(tiny_demo: Path) -> None:
    from fastmri.data import SliceDataset

    ds = SliceDataset(tiny_demo / "val", challenge="multicoil")
    assert len(ds) == json.loads((tiny_demo / "demo.json").read_text())["slices"]["val"]
    kspace, mask, target, attrs, fname, dataslice = ds[0]
    with h5py.File(tiny_demo / "val" / fname, "r") as hf:
        np.testing.assert_array_equal(kspace, hf["kspace"][dataslice])
        np.testing.assert_array_equal(target, hf["reconstruction_rss"][dataslice])
    assert mask is None
    assert attrs["recon_size"] == (40, 32, 1) and attrs["encoding_size"] == (40, 32, 1)
    assert (attrs["padding_left"], attrs["padding_right"]) == (0, 32)


def test_default_configuration_size_and_one_volume() -> None:
    """The default dataset: ~236 slices split about 70/15/15, under 400 MB; one default volume simulated."""
    from mrirecon.data.demo import simulate_volume, slab_profile

    cfg = DemoConfig()
    vol = load_template()
    plans = plan_volumes(vol, cfg)
    n = {sp: sum(len(p.positions) for p in plans if p.split == sp) for sp in SPLITS}
    assert 200 <= sum(n.values()) <= 300 and n["val"] >= 25 and n["test"] >= 25
    h, w = cfg.matrix
    per_slice = cfg.coils * h * w * 8 + h * w * 8 + h * w * 4     # kspace + image (complex64) + rss (float32)
    assert sum(n.values()) * per_slice < 400e6
    plan = next(p for p in plans if p.split == "val")
    sim = simulate_volume(slab_profile(vol, plan.orientation, cfg), plan, cfg, 0)
    assert sim["kspace"].shape == (len(plan.positions), 8, 160, 128) and sim["kspace"].dtype == np.complex64
    assert 1e-4 <= sim["attrs"]["max"] <= 1e-3

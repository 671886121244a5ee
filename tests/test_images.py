"""Image datasets for denoiser training: reading, scaling, determinism, errors."""
from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
from denoiser_helpers import write_image_h5

from mrirecon.data.images import ImageSlices, NoisyImages, NoisyPatches, list_h5_files
from mrirecon.errors import DataError


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    write_image_h5(tmp_path / "a.h5", n=3, seed=1)
    write_image_h5(tmp_path / "b.h5", n=2, seed=2, shape=(21, 25))
    return tmp_path


@pytest.mark.parametrize("cache", [True, False])
def test_slices_are_complex_and_scaled_to_unit_maximum(folder: Path, cache: bool) -> None:
    ds = ImageSlices(folder, "image", cache=cache)
    assert len(ds) == 5
    for i in range(len(ds)):
        x = ds[i]
        assert x.dtype == torch.complex64
        assert float(x.abs().max()) == pytest.approx(1.0, rel=1e-6)
    with h5py.File(folder / "a.h5") as f:
        raw = f["image"][1]
    np.testing.assert_allclose(ds[1].numpy(), raw / np.abs(raw).max(), rtol=1e-5, atol=1e-7)
    rss = ImageSlices(folder, "reconstruction_rss", cache=cache)
    assert float(rss[0].imag.abs().max()) == 0.0


def test_empty_slices_are_skipped_and_max_slices_is_even(tmp_path: Path) -> None:
    write_image_h5(tmp_path / "a.h5", n=4, seed=1)
    with h5py.File(tmp_path / "a.h5", "r+") as f:
        img = f["image"][()]
        img[0] = 0
        img[2] *= 1e-3
        del f["image"]
        f["image"] = img
    assert len(ImageSlices(tmp_path)) == 2
    assert len(ImageSlices(tmp_path, min_max=0)) == 4
    assert ImageSlices(tmp_path, min_max=0, max_slices=2).index == [(0, 0), (0, 3)]


def test_bad_data_names_the_file_and_field(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="does not exist"):
        list_h5_files(tmp_path / "missing")
    with pytest.raises(DataError, match="no .h5 file"):
        list_h5_files(tmp_path)
    write_image_h5(tmp_path / "a.h5")
    with pytest.raises(DataError, match=r"a.h5: no dataset 'kspace'; it has \['image', 'reconstruction_rss'\]"):
        ImageSlices(tmp_path, "kspace")
    (tmp_path / "b.h5").write_bytes(b"junk")
    with pytest.raises(DataError, match="b.h5: cannot be read as HDF5"):
        ImageSlices(tmp_path)
    (tmp_path / "b.h5").unlink()
    with h5py.File(tmp_path / "c.h5", "w") as f:
        f["image"] = np.zeros((3, 4), np.complex64)
    with pytest.raises(DataError, match=r"c.h5: dataset 'image' must be \[slices, H, W\]"):
        ImageSlices(tmp_path)


def test_patches_are_a_pure_function_of_seed_and_index(folder: Path) -> None:
    ds = ImageSlices(folder)
    a = NoisyPatches(ds, 8, (0.01, 0.1), length=100, seed=3)
    b = NoisyPatches(ds, 8, (0.01, 0.1), length=100, seed=3)
    for i in (0, 7, 99, 12345):  # any index is valid; the same index gives the same sample
        pa, pb = a[i], b[i]
        assert torch.equal(pa["noisy"], pb["noisy"]) and torch.equal(pa["clean"], pb["clean"])
        assert 0.01 <= float(pa["sigma"]) <= 0.1
        assert pa["clean"].shape == (8, 8) and pa["noisy"].dtype == torch.complex64
    assert not torch.equal(a[0]["noisy"], a[1]["noisy"])
    c = NoisyPatches(ds, 8, (0.01, 0.1), length=100, seed=4)
    assert not torch.equal(a[0]["noisy"], c[0]["noisy"])


def test_patch_noise_has_the_drawn_standard_deviation(folder: Path) -> None:
    ds = ImageSlices(folder)
    p = NoisyPatches(ds, 20, (0.05, 0.05), length=50, seed=0, augment=False)
    res = torch.cat([(p[i]["noisy"] - p[i]["clean"]).flatten() for i in range(50)])
    assert float(res.real.std()) == pytest.approx(0.05, rel=0.03)
    assert float(res.imag.std()) == pytest.approx(0.05, rel=0.03)


def test_validation_items_are_fixed(folder: Path) -> None:
    ds = ImageSlices(folder)
    v1, v2 = NoisyImages(ds, (0.02, 0.1), seed=1), NoisyImages(ds, (0.02, 0.1), seed=1)
    assert len(v1) == 10
    assert torch.equal(v1[3]["noisy"], v2[3]["noisy"])
    assert float(v1[3]["sigma"]) == pytest.approx(0.1)
    assert torch.equal(v1[3]["clean"], ds[1])

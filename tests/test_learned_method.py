"""The ``pdnet`` method: shipped weights by name, any weights file, the recon command, and the shipped quality."""
from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

from mrirecon.cli import main
from mrirecon.data.sample import KSpaceSample
from mrirecon.methods import get_method, method_names, reconstruct
from mrirecon.models import PDNet, load_recon_model
from mrirecon.models.base import shipped_path


def test_pdnet_is_registered_without_maps() -> None:
    assert "pdnet" in method_names()
    spec = get_method("pdnet")
    assert not spec.needs_maps and spec.options().weights == "pdnet-demo"


@pytest.mark.parametrize(("name", "target"), [("pdnet-demo", "image"), ("pdnet-demo-rss", "reconstruction_rss")])
def test_shipped_weights_load_by_name_with_their_config(name: str, target: str) -> None:
    import json

    path = shipped_path(name)
    assert path.stat().st_size < 4 * 2 ** 20  # a few MB at most
    info = json.loads(path.with_suffix(".json").read_text())
    net = load_recon_model(name)
    assert isinstance(net, PDNet) and not net.training
    assert info["model"]["name"] == "pdnet" and info["recipe"]["task"] == "recon"
    assert net.iterations == info["model"]["config"]["iterations"]
    assert info["recipe"]["data"]["target"] == target  # the record says what the weights were trained against


def test_method_and_recon_command(tiny_demo: Path, tmp_path: Path) -> None:
    """reconstruct(sample, 'pdnet') on an unbatched slice, and `mrirecon recon --method pdnet` on a fastMRI file."""
    f = sorted((tiny_demo / "val").glob("*.h5"))[0]
    with h5py.File(f, "r") as h:
        k = torch.from_numpy(h["kspace"][0])
    m = torch.zeros(1, 1, k.shape[-1])
    m[..., ::3] = 1
    m[..., k.shape[-1] // 2 - 3: k.shape[-1] // 2 + 3] = 1
    res = reconstruct(KSpaceSample(kspace=k * m, mask=m), "pdnet", device="cpu")
    assert res.image.shape == k.shape[-2:] and res.image.is_complex() and torch.isfinite(res.image).all()
    assert res.info["network"] == "PDNet"
    out = tmp_path / "r.h5"
    assert main(["recon", str(f), "-o", str(out), "--method", "pdnet", "--accel", "4"]) == 0
    with h5py.File(out, "r") as h, h5py.File(f, "r") as src:
        assert h["reconstruction"].shape == src["reconstruction_rss"].shape


@pytest.mark.slow
@pytest.mark.parametrize(("name", "margin"), [("pdnet-demo", 0.8), ("pdnet-demo-rss", 1.5)])
def test_shipped_pdnet_beats_zero_filled_on_the_demo_test_split(name: str, margin: float) -> None:
    """A regression guard for the shipped weights: one demo test volume at 4x, fastMRI metrics.

    Measured on this volume against the noisy ``reconstruction_rss``, zero-filled 21.79 dB / SSIM 0.606:
    ``pdnet-demo`` (trained against the noise-free image) 24.17 dB / 0.657, ``pdnet-demo-rss`` (trained
    against ``reconstruction_rss``) 25.11 dB / 0.747. The margins guard against a broken or swapped weights
    file, not a quality goal.
    """
    from mrirecon.data.demo import demo_root
    from mrirecon.training.evaluation import (mask_spec, method_reconstructor, network_reconstructor,
                                              reconstruct_volumes, volume_metrics)

    root = demo_root(build=True)
    spec = mask_spec("random", 4)
    zf = next(reconstruct_volumes(method_reconstructor("zf")[0], root / "test", spec, limit=1, progress=False))
    pd = next(reconstruct_volumes(network_reconstructor(name, "cpu")[0], root / "test", spec, limit=1,
                                  progress=False))
    m_zf, m_pd = volume_metrics(zf), volume_metrics(pd)
    assert m_pd.psnr > m_zf.psnr + margin, (m_pd, m_zf)
    assert m_pd.ssim > m_zf.ssim
    assert np.isfinite(pd.recon).all()

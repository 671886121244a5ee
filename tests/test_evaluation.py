"""``mrirecon evaluate`` / ``predict``: fastMRI submission files, and metrics equal to ``fastmri.evaluate``."""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

from mrirecon.cli import main
from tests._files import write_fastmri_style


@pytest.fixture(scope="module")
def tiny_net(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small PD-net weights file with non-zero updates (so it is not plain PDHG)."""
    import mrirecon.models  # noqa: F401  (registers pdnet)
    from mrirecon.denoisers.registry import build_model
    from mrirecon.denoisers.zoo import save_weights

    net = build_model("pdnet", {"iterations": 2, "primal_channels": 2, "dual_channels": 2, "width": 4,
                                "dual_width": 4, "depth": 2, "dual_depth": 2, "sens_width": 2, "sens_levels": 1},
                      seed=0)
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in net.parameters():
            if p.ndim > 1:
                p.add_(0.02 * torch.randn(p.shape, generator=gen))
    return save_weights(net, tmp_path_factory.mktemp("net") / "tiny.pt", {})


def _fastmri_evaluate(target: Path, predictions: Path) -> object:
    from fastmri.evaluate import evaluate

    args = argparse.Namespace(target_path=target, predictions_path=predictions, acquisition=None, acceleration=None)
    return evaluate(args, "reconstruction_rss")


def test_predict_is_read_by_fastmri_evaluate_and_evaluate_agrees(tiny_demo: Path, tiny_net: Path, tmp_path: Path,
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    """predict writes the submission format; fastmri.evaluate scores it; our evaluate gives the same numbers (from the
    network directly, and from the prediction folder)."""
    data = tiny_demo / "val"
    out = tmp_path / "pred"
    assert main(["predict", "--checkpoint", str(tiny_net), "--data", str(data), "-o", str(out), "--accel", "4",
                 "--device", "cpu"]) == 0
    for f in sorted(data.glob("*.h5")):
        with h5py.File(out / f.name, "r") as p, h5py.File(f, "r") as t:
            rec = p["reconstruction"]
            assert list(p.keys()) == ["reconstruction"] and rec.dtype == np.float32
            assert rec.shape == t["reconstruction_rss"].shape  # [slices, recon h, recon w]
            assert np.isfinite(rec[()]).all() and rec[()].max() > 0
    ref = _fastmri_evaluate(data, out)
    means, stds = ref.means(), ref.stddevs()

    capsys.readouterr()
    assert main(["evaluate", "--checkpoint", str(tiny_net), "--data", str(data), "--accel", "4", "--device", "cpu",
                 "-o", str(tmp_path / "ev")]) == 0
    assert "mean ± std" in capsys.readouterr().out
    ours = json.loads((tmp_path / "ev" / "metrics.json").read_text())
    assert main(["evaluate", "--predictions", str(out), "--data", str(data), "-o", str(tmp_path / "ev2")]) == 0
    ours2 = json.loads((tmp_path / "ev2" / "metrics.json").read_text())
    for rep in (ours, ours2):
        agg = rep["aggregate"]
        assert agg["psnr"]["volumes"] == len(list(data.glob("*.h5")))
        for ours_key, key in (("nmse", "NMSE"), ("psnr", "PSNR"), ("ssim", "SSIM")):
            assert agg[ours_key]["mean"] == pytest.approx(np.ravel(means[key])[0], rel=1e-5), key
            assert agg[ours_key]["std"] == pytest.approx(np.ravel(stds[key])[0], rel=1e-4, abs=1e-7), key
    assert (tmp_path / "ev" / "metrics.csv").read_text().startswith("file,slices,acquisition,nmse,psnr,ssim")


def test_evaluate_method_uses_fixed_masks_and_crops(tiny_demo: Path, tmp_path: Path) -> None:
    """A registered method through the same code; fixed per-volume masks (same numbers twice); square vs recon crop."""
    from mrirecon.training.evaluation import (EvalReport, mask_spec, method_reconstructor, reconstruct_volumes,
                                              volume_metrics)

    recon, desc = method_reconstructor("zf")
    spec = mask_spec("random", 4)
    assert spec.center_fraction == 0.08 and mask_spec("random", 8).center_fraction == 0.04
    vols = list(reconstruct_volumes(recon, tiny_demo / "val", spec, batch_size=3, progress=False))
    again = list(reconstruct_volumes(recon, tiny_demo / "val", spec, batch_size=5, progress=False))
    for a, b in zip(vols, again):
        np.testing.assert_array_equal(a.recon, b.recon)
        assert a.recon.shape == a.target.shape == (a.recon.shape[0], 40, 32)
    sq = EvalReport([volume_metrics(v, "square") for v in vols])
    full = EvalReport([volume_metrics(v, "recon") for v in vols])
    assert sq.aggregate()["psnr"]["mean"] != full.aggregate()["psnr"]["mean"]
    # the zero-filled RSS is what fastMRI's own baseline computes: check one volume by hand
    from fastmri.data.subsample import RandomMaskFunc

    v = vols[0]
    with h5py.File(tiny_demo / "val" / v.file, "r") as f:
        k = f["kspace"][()]
    m = RandomMaskFunc([0.08], [4])((1, 1, k.shape[-1], 1), seed=tuple(map(ord, v.file)))[0].numpy().reshape(-1)
    zf = np.sqrt((np.abs(np.fft.fftshift(np.fft.ifft2(np.fft.ifftshift(k * m, axes=(-2, -1)), norm="ortho"),
                                         axes=(-2, -1))) ** 2).sum(1))
    np.testing.assert_allclose(v.recon, zf, rtol=1e-4, atol=1e-4 * zf.max())


def test_test_set_files_use_their_own_mask(tmp_path: Path, tiny_net: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Undersampled files with a 'mask' (fastMRI test sets): predict uses it; evaluate refuses (no target)."""
    data = tmp_path / "test"
    write_fastmri_style(data / "file_t0.h5", slices=2, with_mask=True)
    out = tmp_path / "pred"
    assert main(["predict", "--checkpoint", str(tiny_net), "--data", str(data), "-o", str(out), "--device", "cpu"]) == 0
    assert "file's own mask" in capsys.readouterr().out
    with h5py.File(out / "file_t0.h5", "r") as f:
        assert f["reconstruction"].shape == (2, 12, 12)
    assert main(["evaluate", "--checkpoint", str(tiny_net), "--data", str(data), "--device", "cpu"]) == 2
    assert "no target" in capsys.readouterr().err


def test_bad_inputs_are_one_line_errors(tmp_path: Path, tiny_demo: Path, tiny_net: Path,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["evaluate", "--checkpoint", str(tiny_net), "--data", str(tiny_demo / "val")]) == 2
    assert "--accel" in capsys.readouterr().err
    assert main(["evaluate", "--checkpoint", str(tmp_path / "nope.pt"), "--data", str(tiny_demo / "val"),
                 "--accel", "4"]) == 2
    assert "no reconstruction network" in capsys.readouterr().err
    assert main(["evaluate", "--method", "zf", "--data", str(tmp_path / "missing"), "--accel", "4"]) == 2
    assert "no such file or folder" in capsys.readouterr().err


@pytest.mark.parametrize("centre", ["8 lines", "1 line"])
def test_method_maps_use_the_auto_espirit_kernel_and_acs_ratio_maps_on_a_single_line(tiny_demo: Path,
                                                                                     centre: str) -> None:
    """A narrow fully sampled centre gets ESPIRiT with the kernel ``auto_kernel`` picks (8 lines of the 32-column
    tiny demo: 5); a single centre line cannot calibrate ESPIRiT and gets the ACS-ratio maps."""
    from mrirecon.data.fastmri import FastMRISliceDataset
    from mrirecon.data.sample import KSpaceSample
    from mrirecon.methods import reconstruct
    from mrirecon.operators.coils import acs_size, lowres_maps
    from mrirecon.operators.espirit import auto_kernel, calib_region, espirit_maps, sampling_pattern
    from mrirecon.operators.masks import MaskSpec
    from mrirecon.training.evaluation import method_reconstructor

    files = sorted((tiny_demo / "val").glob("*.h5"))
    s = FastMRISliceDataset(files[:1], mask=MaskSpec("equispaced", 4, center_fraction=0.25), fixed_masks=True,
                            cache=False)[0]
    if centre == "1 line":  # every 4th column, the centre one included: no two adjacent lines
        w = s.kspace.shape[-1]
        mask = torch.zeros(1, w)
        mask[:, w // 2 % 4::4] = 1
        s = s.replace(kspace=s.kspace * mask, mask=mask)
    region = calib_region(sampling_pattern(s.kspace))
    if centre == "8 lines":
        assert min(region) == 8 and auto_kernel(region) == 5
        maps = espirit_maps(s.kspace, kernel=5)
    else:
        assert min(region) == 1
        maps = lowres_maps(s.kspace, acs_size(s.mask, s.kspace.shape[-2:]))
    recon, _ = method_reconstructor("sense", iters=5)
    batch = KSpaceSample(kspace=s.kspace[None], mask=s.mask[None], meta=[s.meta])
    got = recon(batch)[0]
    ref = reconstruct(s.replace(maps=maps), "sense", iters=5).magnitude().float()
    assert torch.isfinite(got).all()
    torch.testing.assert_close(got, ref, rtol=1e-4, atol=1e-5 * float(ref.abs().max()))

"""Metrics against fastmri.evaluate and fastmri.losses.SSIMLoss."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from fastmri import evaluate
from fastmri.losses import SSIMLoss as FastmriSSIMLoss

from mrirecon.errors import DTypeError, NonFiniteError, ShapeError
from mrirecon.metrics import SSIMLoss, batch_psnr, batch_ssim, nmse, psnr, ssim


def _pair(shape: tuple[int, ...], dtype: type = np.float64, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    # a smooth positive "image" plus structure, and a noisy blurred prediction
    gt = rng.random(shape)
    gt = np.abs(np.cumsum(np.cumsum(gt - 0.5, axis=-1), axis=-2)) + 0.1 * rng.random(shape)
    pred = gt + 0.3 * gt.std() * rng.standard_normal(shape)
    return gt.astype(dtype), np.abs(pred).astype(dtype)


SHAPES = [(3, 64, 48), (2, 17, 11), (1, 320, 320), (4, 7, 7)]


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_metrics_equal_fastmri(shape: tuple[int, ...], dtype: type) -> None:
    gt, pred = _pair(shape, dtype)
    assert abs(nmse(gt, pred) - float(evaluate.nmse(gt, pred))) <= 1e-6 * float(evaluate.nmse(gt, pred))
    assert abs(psnr(gt, pred) - float(evaluate.psnr(gt, pred))) <= 1e-6 * abs(float(evaluate.psnr(gt, pred)))
    # fastMRI (scikit-image) computes SSIM of float32 volumes in float32; we compute in float64
    tol = 1e-6 if dtype == np.float64 else 1e-5
    ref = float(evaluate.ssim(gt, pred)[0]) if np.ndim(evaluate.ssim(gt, pred)) else float(evaluate.ssim(gt, pred))
    assert abs(ssim(gt, pred) - ref) <= tol
    assert abs(psnr(gt, pred, maxval=3.0) - float(evaluate.psnr(gt, pred, maxval=3.0))) < 1e-6
    ref3 = evaluate.ssim(gt, pred, maxval=3.0)
    assert abs(ssim(gt, pred, maxval=3.0) - float(np.asarray(ref3).reshape(-1)[0])) <= tol


def test_metric_identities() -> None:
    gt, pred = _pair((2, 32, 32))
    assert nmse(gt, gt) == 0 and psnr(gt, gt) == float("inf") and abs(ssim(gt, gt) - 1) < 1e-12
    assert ssim(gt[0], pred[0]) == pytest.approx(float(evaluate.ssim(gt[:1], pred[:1]).reshape(-1)[0]), abs=1e-9)
    # torch tensors are accepted
    assert ssim(torch.from_numpy(gt), torch.from_numpy(pred)) == ssim(gt, pred)
    # nmse of complex arrays (e.g. complex images)
    z = gt + 1j * pred
    assert nmse(z, 0.5 * z) == pytest.approx(0.25)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_ssim_loss_equals_fastmri(dtype: torch.dtype) -> None:
    gt, pred = _pair((3, 40, 33))
    x = torch.from_numpy(pred).to(dtype).unsqueeze(1)
    y = torch.from_numpy(gt).to(dtype).unsqueeze(1)
    rng = torch.tensor([float(g.max()) for g in gt], dtype=dtype)
    ref = FastmriSSIMLoss().to(dtype)(x, y, rng)
    ours = SSIMLoss()(x, y, rng)
    # fastMRI keeps its 1/49 window in float32 even for float64 input (~1e-7); ours is exact in float64
    assert abs(float(ours) - float(ref)) <= 1e-6
    # per item, with the per-item maximum as data range, equals the numpy ssim of each slice
    xd, yd = x[:, 0].double(), y[:, 0].double()
    per_item = batch_ssim(xd, yd)
    for i in range(3):
        assert abs(float(per_item[i]) - ssim(yd[i].numpy(), xd[i].numpy())) < 1e-9


def test_ssim_loss_is_differentiable() -> None:
    gt, pred = _pair((2, 24, 20))
    x = torch.from_numpy(pred).requires_grad_(True)
    loss = SSIMLoss()(x, torch.from_numpy(gt))
    (g,) = torch.autograd.grad(loss, x)
    assert g.shape == x.shape and torch.isfinite(g).all() and g.abs().sum() > 0
    # a gradient step lowers the loss
    with torch.no_grad():
        x2 = x - 1e-2 * g / g.abs().max()
    assert float(SSIMLoss()(x2, torch.from_numpy(gt))) < float(loss.detach())


def test_batch_psnr() -> None:
    gt, pred = _pair((3, 20, 20))
    ours = batch_psnr(torch.from_numpy(pred), torch.from_numpy(gt))
    for i in range(3):
        assert abs(float(ours[i]) - float(evaluate.psnr(gt[i], pred[i]))) < 1e-9
    assert torch.allclose(batch_psnr(torch.from_numpy(pred), torch.from_numpy(gt), 2.0),
                          torch.tensor([float(evaluate.psnr(gt[i], pred[i], 2.0)) for i in range(3)], dtype=torch.float64))


def test_metric_bad_inputs() -> None:
    gt, pred = _pair((2, 16, 16))
    with pytest.raises(ShapeError, match=r"ssim: gt has shape \[2, 16, 16\] but pred has shape \[2, 16, 15\]"):
        ssim(gt, pred[..., :15])
    bad = pred.copy()
    bad[0, 3, 3] = np.nan
    with pytest.raises(NonFiniteError, match=r"psnr: pred of shape \[2, 16, 16\] contains NaN"):
        psnr(gt, bad)
    with pytest.raises(NonFiniteError, match="nmse: gt"):
        nmse(bad, gt)
    with pytest.raises(DTypeError, match="ssim: gt must be real"):
        ssim(gt + 0j, pred + 0j)
    with pytest.raises(ShapeError, match=r"at least 7x7, got \[2, 16, 5\]"):
        ssim(gt[..., :5], pred[..., :5])
    with pytest.raises(ShapeError, match=r"expected a volume \[S, H, W\]"):
        ssim(gt[None], pred[None])
    with pytest.raises(ValueError, match="data range"):
        psnr(-gt, pred)
    with pytest.raises(ValueError, match="all zeros"):
        nmse(0 * gt, pred)
    with pytest.raises(DTypeError, match="must be a numpy array or torch tensor, got list"):
        nmse([1.0], [1.0])
    with pytest.raises(ShapeError, match=r"SSIMLoss: X has shape \[2, 16, 16\] but Y has shape \[2, 16, 15\]"):
        SSIMLoss()(torch.from_numpy(pred), torch.from_numpy(gt[..., :15]))
    with pytest.raises(DTypeError, match="SSIMLoss: X must be a real floating tensor"):
        SSIMLoss()(torch.from_numpy(pred + 0j), torch.from_numpy(gt + 0j))
    with pytest.raises(ShapeError, match="one value per item"):
        SSIMLoss()(torch.from_numpy(pred), torch.from_numpy(gt), torch.ones(3))


def test_benchmark_volume_scores_are_fastmri_per_volume_means() -> None:
    """The result benchmarks' scorer groups slices by volume, crops predictions to the target's matrix and
    averages fastMRI's per-volume PSNR/SSIM (data range: each volume's maximum)."""
    from benchmarks._common import VolumeScores

    rng = np.random.default_rng(3)
    vols = {f: _pair((n, 24, 20), np.float32, seed=i) for i, (f, n) in enumerate([("a.h5", 3), ("b.h5", 2)])}
    vols["b.h5"] = (vols["b.h5"][0] * 7.0, vols["b.h5"][1] * 7.0)  # a different scale per volume
    scores = VolumeScores()
    for f, (gt, pred) in vols.items():
        for s in range(gt.shape[0]):  # predictions padded by 4 rows / 6 columns around the target's matrix
            padded = rng.random((32, 32)).astype(np.float32)
            padded[4:28, 6:26] = pred[s]
            scores.add(f, padded, gt[s])
    assert len(scores) == 2
    ref_psnr = [float(evaluate.psnr(gt, pred)) for gt, pred in vols.values()]
    ref_ssim = [float(np.asarray(evaluate.ssim(gt, pred)).reshape(-1)[0]) for gt, pred in vols.values()]
    np.testing.assert_allclose(scores.per_volume("psnr"), ref_psnr, rtol=1e-6)
    np.testing.assert_allclose(scores.per_volume("ssim"), ref_ssim, atol=1e-5)
    assert scores.mean("psnr") == pytest.approx(np.mean(ref_psnr), rel=1e-6)
    # pooling all slices into one volume is a different number: the grouping matters
    pooled = float(evaluate.psnr(np.concatenate([v[0] for v in vols.values()]),
                                 np.concatenate([v[1] for v in vols.values()])))
    assert abs(pooled - scores.mean("psnr")) > 0.1

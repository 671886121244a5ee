"""The registered PnP methods: scaling, convergence report, certificates, divergence, equivariance, history IO."""
from __future__ import annotations

import itertools
import json
import math
import warnings
from pathlib import Path

import pytest
import torch

from mrirecon.data.sample import KSpaceSample, SampleMeta
from mrirecon.denoisers import DnCNN, GSDRUNet, save_weights
from mrirecon.denoisers.spectral import converge_spectral_norms, spectral_certificate
from mrirecon.errors import ConfigError, DivergenceError
from mrirecon.methods import reconstruct
from mrirecon.methods.history import history_dict, load_history, plot_history, save_history
from mrirecon.methods.pnp import estimate_noise
from mrirecon.operators import Sense, dense_matrix, equispaced_mask
from mrirecon.solvers import contraction_bound
from mrirecon.solvers.scaling import robust_max

H, W, C = 24, 20, 8

pytestmark = pytest.mark.usefixtures("one_thread")  # tiny problems: one intra-op thread


def _phantom(g: torch.Generator) -> torch.Tensor:
    """A smooth complex phantom (little energy at the k-space edge, where the noise is estimated)."""
    yy, xx = torch.meshgrid(torch.linspace(-1, 1, H), torch.linspace(-1, 1, W), indexing="ij")
    img = 0.7 * torch.exp(-((yy / 0.6) ** 2 + (xx / 0.5) ** 2) ** 2) + 0.3 * torch.exp(-((yy - 0.2) ** 2 + xx ** 2) / 0.05)
    return (img * torch.exp(1j * 0.5 * yy)).to(torch.complex64)


@pytest.fixture(scope="module")
def sample() -> KSpaceSample:
    """A phantom with 8 random coil maps (normalised, Σ|S|² = 1) at acceleration 2: ``A^H A`` is positive definite."""
    g = torch.Generator().manual_seed(0)
    maps = torch.randn(C, H, W, generator=g, dtype=torch.complex64)
    maps = maps / maps.abs().pow(2).sum(0).sqrt()
    mask = equispaced_mask(W, 2, 0.2, seed=0).reshape(1, 1, W)
    x = _phantom(g)
    k = Sense(maps, mask)(x) + 0.01 * torch.randn(C, H, W, generator=g, dtype=torch.complex64) * mask
    return KSpaceSample(kspace=k, mask=mask, maps=maps, target=x.abs(), meta=SampleMeta(file="phantom"))


@pytest.fixture(scope="module")
def smooth_sample() -> KSpaceSample:
    """The phantom with smooth coil maps (8 Gaussian coils around the FOV): the k-space edge holds mostly noise."""
    g = torch.Generator().manual_seed(0)
    yy, xx = torch.meshgrid(torch.linspace(-1, 1, H), torch.linspace(-1, 1, W), indexing="ij")
    angles = torch.arange(C) * (2 * torch.pi / C)
    maps = torch.stack([torch.exp(-((yy - 1.2 * torch.sin(a)) ** 2 + (xx - 1.2 * torch.cos(a)) ** 2) / 1.5)
                        * torch.exp(1j * 0.3 * (yy + xx)) for a in angles]).to(torch.complex64)
    maps = maps / maps.abs().pow(2).sum(0).sqrt()
    mask = equispaced_mask(W, 2, 0.2, seed=0).reshape(1, 1, W)
    k = Sense(maps, mask)(_phantom(g)) + 0.01 * torch.randn(C, H, W, generator=g, dtype=torch.complex64) * mask
    return KSpaceSample(kspace=k, mask=mask, maps=maps, meta=SampleMeta(file="smooth phantom"))


@pytest.fixture(scope="module")
def weights(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Tiny denoisers with fixed random weights as weights files (the real-SN one with a certificate JSON)."""
    d = tmp_path_factory.mktemp("weights")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    with torch.random.fork_rng():
        torch.manual_seed(0)
        sn = DnCNN(depth=3, width=8, lipschitz=0.1, sn_size=16)
        plain = DnCNN(depth=3, width=8)
        gs = GSDRUNet(widths=(4, 8), blocks=1)
    converge_spectral_norms(sn, 200)
    sn.eval()
    eps = spectral_certificate(sn, grid=128)["product"]  # frequency-domain bound, valid at every image size
    torch.set_num_threads(threads)
    cert = {"stats": {"D": {"max": 1.2}, "I-D": {"max": eps}, "2D-I": {"max": 1.3}}, "bound": eps}
    with torch.no_grad():
        plain.net[-1].weight.mul_(60.0)  # strongly expansive: PnP with it diverges
    return {"sn": save_weights(sn, d / "sn.pt", {"certificate": cert}),
            "plain": save_weights(plain, d / "plain.pt"), "gs": save_weights(gs, d / "gs.pt")}


def test_robust_max_ignores_a_spike_and_handles_batches() -> None:
    x = torch.ones(2, 9, 7, dtype=torch.complex64)
    x[1] *= 3
    x[0, 4, 4] = 100.0  # an isolated spike
    m = robust_max(x, 2)
    assert m.shape == (2,) and torch.allclose(m, torch.tensor([1.0, 3.0]))
    assert robust_max(x[0], 2).shape == ()
    assert float(robust_max(torch.ones(2, 9, 7, dtype=torch.complex64), 3)) == 1.0  # multi-set: one scale
    sparse = torch.zeros(9, 7, dtype=torch.complex64)
    sparse[::3, ::3] = 1e-3  # isolated values only: the median filter vanishes, the plain maximum is kept
    assert float(robust_max(sparse, 2)) == pytest.approx(1e-3)
    assert float(robust_max(torch.zeros(9, 7), 2)) == 1.0


def test_noise_estimate_from_the_kspace_edge() -> None:
    """Pure complex noise of std 0.3 per part, plus strong signal in the centre: the edge median finds 0.3."""
    g = torch.Generator().manual_seed(3)
    n = torch.randn(2, 4, 64, 48, generator=g, dtype=torch.float64)
    k = 0.3 * torch.complex(n[0], n[1])
    k[:, 24:40, 16:32] += 50.0
    mask = torch.ones(1, 1, 48)
    mask[..., ::2] = 0
    est = estimate_noise(torch.stack([k, 2 * k]), mask)
    assert est.shape == (2,)
    assert est[0] == pytest.approx(0.3, rel=0.08) and est[1] == pytest.approx(0.6, rel=0.08)
    assert torch.isnan(estimate_noise(k, torch.zeros(1, 1, 48)))


def test_noise_estimate_bands_per_batch_element() -> None:
    """Each batch element picks its own band: the 10 % band where it has 64 samples, else the 30 % band; nan if
    none. Checked against the median of the selected magnitudes computed element by element."""
    g = torch.Generator().manual_seed(4)
    n = torch.randn(2, 3, 2, 32, 40, generator=g, dtype=torch.float64)
    k = torch.complex(n[0], n[1])
    mask = torch.zeros(3, 1, 32, 40)
    mask[0] = 1.0                    # everything: the 10 % band holds plenty
    mask[1, :, 3:29, 9:31] = 1.0     # a centre block reaching into the 30 % band only: falls back to it
    est = estimate_noise(k * mask, mask)
    ky = (torch.arange(32) - 16).abs() / 16
    kx = (torch.arange(40) - 20).abs() / 20
    radius = torch.maximum(ky[:, None], kx[None, :])
    for b, width in ((0, 0.1), (1, 0.3)):
        sel = (mask[b] != 0).expand(2, 32, 40) & (radius >= 1 - width)
        if width == 0.3:
            assert int(((mask[b] != 0).expand(2, 32, 40) & (radius >= 0.9)).sum()) < 64
        assert float(est[b]) == pytest.approx(float(k[b][sel].abs().median()) / math.sqrt(2 * math.log(2)))
    assert torch.isnan(est[2])


def test_default_balance_follows_the_estimated_noise(smooth_sample, weights) -> None:
    """alpha = (σ/σ_n)² for PnP-ADMM and lam = (σ_n/σ)² for GS-PnP, with σ_n estimated in normalised units."""
    a = reconstruct(smooth_sample, "pnp-admm", weights=str(weights["sn"]), iters=1, sigma=0.05)
    noise = a.info["noise"]
    scale = a.info["scale"]
    assert noise * scale == pytest.approx(0.01 / 2 ** 0.5, rel=0.3)  # randn complex: 0.01/sqrt(2) per part
    assert a.info["alpha"] == pytest.approx((0.05 / noise) ** 2)
    extra = torch.randn(smooth_sample.kspace.shape, dtype=torch.complex64, generator=torch.Generator().manual_seed(1))
    noisier = smooth_sample.replace(kspace=smooth_sample.kspace + 0.02 * extra * smooth_sample.mask)
    b = reconstruct(noisier, "pnp-admm", weights=str(weights["sn"]), iters=1, sigma=0.05)
    assert b.info["noise"] > 2 * noise and b.info["alpha"] < a.info["alpha"] / 4  # noisier data: more prior
    g = reconstruct(smooth_sample, "gs-pnp", weights=str(weights["gs"]), iters=1, sigma=0.05, certificate=False)
    assert g.info["lam"] == pytest.approx((g.info["noise"] / 0.05) ** 2)
    assert reconstruct(smooth_sample, "pnp-admm", weights=str(weights["sn"]), iters=1, alpha=3.0).info["alpha"] == 3.0


def test_pnp_admm_converges_and_reports(sample, weights) -> None:
    """With μ = λ_min(A^H A) > 0 and ε = Lip(I − D) ≤ 0.1 the PnP-ADMM map is a contraction (Ryu's setting)."""
    A = Sense(sample.maps.to(torch.complex128), sample.mask.double())
    ev = torch.linalg.eigvalsh(dense_matrix(A).conj().T @ dense_matrix(A))
    mu, L = float(ev[0]), float(ev[-1])
    eps = json.loads(weights["sn"].with_suffix(".json").read_text())["certificate"]["bound"]
    assert contraction_bound("admm", 1.0, mu, L, eps) < 0.95 and contraction_bound("fbs", 1.0, mu, L, eps) < 0.95
    res = reconstruct(sample, "pnp-admm", weights=str(weights["sn"]), alpha=1.0, iters=300, tol=1e-5)
    hist, info = res.history, res.info
    assert res.image.shape == (H, W) and res.image.dtype == torch.complex64
    assert info["converged"] and info["stop_reason"] == "tol" and hist.residual[-1] <= 1e-5
    assert len(hist.residual) == len(hist.step_size) == hist.iterations == info["iterations"]
    assert info["data_step"] == "cg"
    cert = info["certificate"]
    assert cert["source"].startswith("file") and cert["bound_I_minus_D"] < 1
    assert "Lip(I-D)" in info["guarantee"]
    # the scale is the image maximum: the reconstruction is close to the truth in its units
    err = float((res.image.abs() - sample.target).norm() / sample.target.norm())
    assert err < 0.3


def test_pnp_is_scale_invariant(sample, weights) -> None:
    """Data in other units give the same image in those units (the data are normalised, then scaled back)."""
    opts = {"weights": str(weights["sn"]), "iters": 30, "tol": 0.0}  # the default alpha is scale-free too
    a = reconstruct(sample, "pnp-admm", **opts).image
    b = reconstruct(sample.replace(kspace=sample.kspace * 1e4), "pnp-admm", **opts).image
    assert torch.allclose(b / 1e4, a, rtol=1e-3, atol=1e-4 * float(a.abs().max()))


def test_pnp_fbs_and_batch(sample, weights) -> None:
    batch = sample.replace(kspace=torch.stack([sample.kspace, 2 * sample.kspace]), mask=sample.mask,
                           maps=torch.stack([sample.maps, sample.maps]))
    res = reconstruct(batch, "pnp-fbs", weights=str(weights["sn"]), iters=200, tol=1e-5)
    assert res.image.shape == (2, H, W) and res.info["converged"]
    assert torch.allclose(res.image[1], 2 * res.image[0], rtol=1e-3, atol=1e-3 * float(res.image.abs().max()))
    assert res.info["alpha"] == pytest.approx(1.0, rel=1e-3)  # 1/‖A‖² with normalised maps


def test_gs_pnp_monotone_objective_and_computed_certificate(sample, weights) -> None:
    res = reconstruct(sample, "gs-pnp", weights=str(weights["gs"]), iters=15, tol=0.0, lam=0.5)
    F = res.history.objective
    assert len(F) == 15
    assert all(b <= a + 1e-5 * abs(a) for a, b in itertools.pairwise(F))  # float32 objective values
    assert res.info["certificate"]["source"].startswith("computed")


def test_gs_pnp_refuses_a_plain_denoiser(sample, weights) -> None:
    with pytest.raises(ConfigError, match="not a gradient-step denoiser"):
        reconstruct(sample, "gs-pnp", weights=str(weights["sn"]), iters=2)


def test_divergence_is_reported_not_nan(sample, weights) -> None:
    with pytest.raises(DivergenceError, match="pnp-fbs.*diverged at iteration"):
        reconstruct(sample, "pnp-fbs", weights=str(weights["plain"]), alpha=1.9, iters=300, tol=0.0,
                    certificate=False)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        res = reconstruct(sample, "pnp-admm", weights=str(weights["plain"]), alpha=50.0, iters=300, tol=0.0,
                          certificate=False, divergence="stop")
    assert res.info["stop_reason"] == "diverged" and not res.info["converged"]
    assert any("diverged" in str(w.message) for w in caught)
    assert torch.isfinite(torch.view_as_real(res.image)).all()


def test_equivariant_is_seeded(sample, weights) -> None:
    opts = {"weights": str(weights["sn"]), "alpha": 1.0, "iters": 10, "tol": 0.0, "certificate": False}
    a = reconstruct(sample, "pnp-admm-equivariant", seed=1, **opts)
    b = reconstruct(sample, "pnp-admm-equivariant", seed=1, **opts)
    c = reconstruct(sample, "pnp-admm-equivariant", seed=2, **opts)
    plain = reconstruct(sample, "pnp-admm", **opts)
    assert a.info["equivariant"] == "random" and plain.info["equivariant"] == "none"
    assert torch.equal(a.image, b.image)
    assert not torch.equal(a.image, c.image) and not torch.equal(a.image, plain.image)


def test_bad_options(sample, weights) -> None:
    with pytest.raises(ConfigError, match="no denoiser 'nope'"):
        reconstruct(sample, "pnp-admm", weights="nope")
    with pytest.raises(ConfigError, match="unknown option"):
        reconstruct(sample, "pnp-admm", lam=1.0)
    with pytest.raises(ConfigError, match="alpha"):
        reconstruct(sample, "pnp-admm", weights=str(weights["sn"]), alpha=-1.0)
    with pytest.raises(ConfigError, match="sigma"):
        reconstruct(sample, "gs-pnp", weights=str(weights["gs"]), sigma=0.0)
    with pytest.raises(ConfigError, match="needs coil sensitivity maps"):
        reconstruct(sample.replace(maps=None), "pnp-admm", weights=str(weights["sn"]))


def test_history_json_and_plot(sample, weights, tmp_path: Path) -> None:
    res = reconstruct(sample, "gs-pnp", weights=str(weights["gs"]), iters=5, tol=0.0, lam=0.5)
    out = tmp_path / "recon.npy"
    path = save_history([res], out, method="gs-pnp", slices=[3])
    assert path == tmp_path / "recon.npy.history.json"
    doc = json.loads(path.read_text())
    assert doc["method"] == "gs-pnp" and doc["slices"][0]["slice"] == 3
    h = doc["slices"][0]["history"]
    assert len(h["residual"]) == len(h["objective"]) == len(h["step_size"]) == 5
    assert doc["slices"][0]["info"]["certificate"]["source"].startswith("computed")
    assert load_history(path)["slices"][0]["history"]["residual"] == h["residual"]
    png = plot_history(doc, out)
    assert png == tmp_path / "recon.npy.history.png" and png.stat().st_size > 1000
    assert history_dict(res.history)["iterations"] == 5
    assert not list(tmp_path.glob("*.tmp"))
    assert math.isfinite(doc["slices"][0]["info"]["time_s"])


def test_deq_admm_at_step_zero_is_pnp_admm(smooth_sample: KSpaceSample) -> None:
    """DEQ-ADMM with the noise-adaptive alpha (a = 1, the same sigma), no support restriction and the shipped
    denoiser as its network has the fixed point of ``pnp-admm`` (the start of recipes/deq_admm_demo.yaml)."""
    import dataclasses

    import mrirecon.models  # noqa: F401  (registers deq)
    from mrirecon.denoisers.registry import build_model
    from mrirecon.denoisers.zoo import load_denoiser

    smooth_sample = dataclasses.replace(smooth_sample, kspace=smooth_sample.kspace.to(torch.complex128),
                                        maps=smooth_sample.maps.to(torch.complex128),
                                        mask=smooth_sample.mask.double())  # float64: both reach 1e-6
    ref = reconstruct(smooth_sample, "pnp-admm", weights="dncnn-jac", sigma=0.1, iters=400, tol=1e-6)
    assert ref.info["converged"]
    den = load_denoiser("dncnn-jac")
    model = build_model("deq", {"iteration": "admm", "network": "dncnn", "network_options": {"depth": 10, "width": 32},
                                "sigma": 0.1, "alpha": 1.0, "support": False, "cg_iters": 30, "max_iter": 400,
                                "tol": 1e-6, "anderson": True}, seed=0).double()
    model.net.load_state_dict(den.state_dict())
    A = Sense(smooth_sample.maps, smooth_sample.mask)
    with torch.no_grad():
        x = model.forward_op(smooth_sample.kspace.unsqueeze(0), A)[0]
    rep = model.last_report
    assert rep is not None and bool(rep.forward.converged.all())
    assert float(model.admm_alpha(model.prepare(smooth_sample.kspace.unsqueeze(0), A).noise, 2).detach()) == \
        pytest.approx(ref.info["alpha"], rel=1e-4)
    err = float((x - ref.image).norm() / ref.image.norm())
    assert err < 1e-3, err
    assert int(rep.forward.iterations.max()) < ref.info["iterations"]  # Anderson: fewer iterations to the same point

"""The ``equilibrium`` training task (recipes train and resume), its losses, and the deq/red/unrolled-admm methods."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import REPO, run_tool
from mrirecon.denoisers.registry import build_model
from mrirecon.denoisers.zoo import save_weights
from mrirecon.errors import ConfigError
from mrirecon.training.equilibrium import bound_factor, jacobian_norm, target_support
from mrirecon.training.run import load_recipe, train

pytestmark = pytest.mark.usefixtures("one_thread")  # tiny problems: one intra-op thread


RECIPES = ["deq_demo", "rerg_demo", "unrolled_admm_demo", "deq_sn_demo", "deq_admm_demo"]


def tiny_overrides(root: Path, out: Path, name: str, steps: int) -> list[str]:
    ov = [f"data.source=files", f"data.root={root}", "data.crop=[16, 16]", "data.val_slices=1", "data.calib=8", "data.maps=lowres",
          f"trainer.max_steps={steps}", "trainer.val_every=2", f"trainer.out={out}", f"trainer.name={name}",
          "trainer.progress_bar=false", "trainer.batch_size=2", "trainer.log_every=1", "model.network_options={depth: 2, width: 4}",
          "model.init_iters=2", "model.cg_iters=2"]
    return ov


@pytest.mark.slow
@pytest.mark.parametrize("recipe", RECIPES)
def test_recipe_trains_a_few_steps_and_resumes(recipe: str, tiny_demo: Path, tmp_path: Path) -> None:
    extra = [] if recipe.startswith("unrolled") else ["model.max_iter=3", "model.backward_max_iter=3"]
    if recipe.startswith("unrolled"):
        extra = ["model.iterations=2"]
    if recipe == "deq_admm_demo":  # its init.network (the shipped 10x32 dncnn-jac) does not fit the tiny network,
        extra += ["init.network=", "data.calib_widths=[]"]  # and its calib_widths need ESPIRiT maps (tiny: lowres)
    if recipe == "deq_sn_demo":  # keep the certified structure at the tiny size
        extra += ["model.network_options={depth: 2, width: 4, residual: false, lipschitz: 0.98, activation: maxmin, "
                  "sn_size: 32}"]
    rec, path = load_recipe(recipe, tiny_overrides(tiny_demo, tmp_path, recipe, 2) + extra)
    res = train(rec, path, echo=lambda s: None)
    assert res.step == 2 and res.checkpoint.exists()
    metrics = (res.run_dir / "logs" / "csv" / "metrics.csv").read_text()
    assert "train/loss" in metrics and "val/psnr" in metrics
    if not recipe.startswith("unrolled"):
        assert "train/fwd/iters" in metrics and "train/bwd/iters" in metrics
    if recipe.startswith("rerg"):
        assert "train/loss_bound" in metrics and "train/lipschitz" in metrics
    rec2, _ = load_recipe(recipe, tiny_overrides(tiny_demo, tmp_path, recipe, 4) + extra)
    res2 = train(rec2, path, resume=True, echo=lambda s: None)
    assert res2.step == 4
    assert (res2.run_dir / "model.pt").exists() and (res2.run_dir / "model.json").exists()
    from mrirecon.training import load_model

    model = load_model(res2.run_dir / "model.pt")
    assert type(model).__name__ in ("DEQRecon", "UnrolledADMM")
    # N_theta alone, as a denoiser weights file: the same weights, and usable wherever a denoiser is
    from mrirecon.denoisers.zoo import load_denoiser

    net = load_denoiser(res2.run_dir / "net.pt")
    assert all(torch.equal(v, model.net.state_dict()[k]) for k, v in net.state_dict().items())
    assert set(net.state_dict()) == set(model.net.state_dict())
    net_info = json.loads((res2.run_dir / "net.json").read_text())
    assert net_info["steps"] == 4 and net_info["recipe"]["model"]["network"] == "dncnn"
    if recipe == "deq_sn_demo":  # the learned step stayed in (0, 2): the certified contraction survives training
        assert 0 < float(model.value("step")) < 2
        bound = model.contraction_bound()
        assert bound is not None and bound < 1


def test_recipes_resolve_and_reject_bad_combinations() -> None:
    for r in RECIPES + ["deq_knee", "rerg_knee", "unrolled_admm_knee"]:
        rec, _ = load_recipe(r, [])
        assert rec.task == "equilibrium"
    with pytest.raises(ConfigError, match="unknown key"):
        load_recipe("deq_demo", ["loss.bogus=1"])
    with pytest.raises(ConfigError, match="mask kind"):
        load_recipe("deq_demo", ["forward.masks=[no-such-mask]"])
    from mrirecon.training.equilibrium import EquilibriumModule

    rec, _ = load_recipe("unrolled_admm_demo", ["loss.mode=rerg"])
    with pytest.raises(ConfigError, match="needs a DEQ"):
        EquilibriumModule(rec)
    rec, _ = load_recipe("deq_demo", ["loss.mode=rerg", "model.iteration=admm"])
    with pytest.raises(ConfigError, match="iteration: gd"):
        EquilibriumModule(rec)
    with pytest.raises(ConfigError, match="link_denoiser"):
        load_recipe("deq_demo", ["loss.link=1.0"])


def test_init_network_copies_a_trained_denoiser_and_refuses_a_mismatch(tmp_path: Path) -> None:
    from mrirecon.training.equilibrium import EquilibriumModule

    den = build_model("dncnn", {"depth": 2, "width": 4}, seed=5)
    path = save_weights(den, tmp_path / "den.pt", {})
    tiny = ["model.network_options={depth: 2, width: 4}"]
    rec, _ = load_recipe("deq_admm_demo", tiny + [f"init.network={path}"])
    module = EquilibriumModule(rec)
    theirs = den.state_dict()
    for k, v in module.model.net.state_dict().items():
        assert torch.equal(v, theirs[k]), k
    rec, _ = load_recipe("deq_admm_demo", tiny + ["init.network="])  # empty: the seeded random initialisation
    assert not torch.equal(next(iter(EquilibriumModule(rec).model.net.state_dict().values())),
                           next(iter(theirs.values())))
    rec, _ = load_recipe("deq_admm_demo", ["model.network_options={depth: 3, width: 4}", f"init.network={path}"])
    with pytest.raises(ConfigError, match="does not match"):
        EquilibriumModule(rec)
    rec, _ = load_recipe("deq_admm_demo", tiny + ["init.network=no-such-denoiser"])
    with pytest.raises(ConfigError, match="init.network"):
        EquilibriumModule(rec)
    # init.widen embeds the narrower network: the wider N_theta computes the same map at step 0
    wide = ["model.network_options={depth: 2, width: 7}", f"init.network={path}"]
    rec, _ = load_recipe("deq_admm_demo", wide)
    with pytest.raises(ConfigError, match="does not match"):
        EquilibriumModule(rec)
    rec, _ = load_recipe("deq_admm_demo", [*wide, "init.widen=true"])
    net = EquilibriumModule(rec).model.net
    assert net.config.width == 7
    x = torch.randn(1, 1, 9, 8, dtype=torch.complex64, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(net(x), den(x), rtol=0, atol=1e-6)


def test_shipped_deq_admm_recipe_starts_from_the_shipped_dncnn_jac() -> None:
    from mrirecon.denoisers.zoo import load_denoiser
    from mrirecon.training.equilibrium import EquilibriumModule

    rec, _ = load_recipe("deq_admm_demo", [])
    net = EquilibriumModule(rec).model.net
    ref = load_denoiser("dncnn-jac").state_dict()
    assert all(torch.equal(v, ref[k]) for k, v in net.state_dict().items())


def test_bound_factor_is_continuous_and_increasing() -> None:
    eps = 0.1
    L = torch.linspace(0.0, 1.5, 301, dtype=torch.float64, requires_grad=True)
    phi = bound_factor(L, eps)
    (g,) = torch.autograd.grad(phi.sum(), L)
    assert bool((g > 0).all())
    assert float(bound_factor(torch.tensor(0.5, dtype=torch.float64), eps)) == pytest.approx(4.0)
    edge = torch.tensor([1 - eps - 1e-9, 1 - eps + 1e-9], dtype=torch.float64)
    v = bound_factor(edge, eps)
    assert float(v[0]) == pytest.approx(float(v[1]), rel=1e-6)


def test_jacobian_norm_of_a_linear_complex_map_is_its_spectral_norm() -> None:
    g = torch.Generator().manual_seed(0)
    M = torch.complex(torch.randn(6, 6, generator=g, dtype=torch.float64), torch.randn(6, 6, generator=g,
                                                                                      dtype=torch.float64))
    T = lambda x: (x.reshape(x.shape[0], -1) @ M.T).reshape(x.shape)  # noqa: E731
    x = torch.zeros(2, 2, 3, dtype=torch.complex128)
    est = jacobian_norm(T, x, iters=300, generator=g)
    true = torch.linalg.matrix_norm(M, 2)
    assert torch.allclose(est, true.expand(2), rtol=1e-6)


# ---------------------------------------------------------------------------------------------
# methods
# ---------------------------------------------------------------------------------------------
def tiny_sample(seed: int = 0) -> object:
    from mrirecon.data.sample import KSpaceSample
    from mrirecon.operators.fft import fft2c

    g = torch.Generator().manual_seed(seed)
    c, h, w = 4, 17, 11
    maps = torch.complex(torch.randn(c, h, w, generator=g), torch.randn(c, h, w, generator=g))
    maps = maps / maps.abs().pow(2).sum(0, keepdim=True).sqrt()
    x = torch.complex(torch.randn(h, w, generator=g), torch.randn(h, w, generator=g))
    mask = torch.zeros(1, 1, w)
    mask[..., ::2] = 1
    k = fft2c(maps * x) * mask
    return KSpaceSample(kspace=k.to(torch.complex64), mask=mask, maps=maps.to(torch.complex64))


@pytest.fixture
def weights(tmp_path: Path) -> dict[str, Path]:
    out = {}
    small = {"network_options": {"depth": 2, "width": 4}, "init_iters": 3, "cg_iters": 3}
    out["deq"] = save_weights(build_model("deq", {"iteration": "gd", **small}), tmp_path / "deq.pt", {})
    out["unrolled"] = save_weights(build_model("unrolled-admm", {"iterations": 3, **small}), tmp_path / "ua.pt", {})
    out["den"] = save_weights(build_model("dncnn", {"depth": 2, "width": 4}), tmp_path / "den.pt", {})
    return out


def test_methods_run_and_report(weights: dict[str, Path]) -> None:
    from mrirecon.methods import method_names, reconstruct

    assert {"deq", "red", "unrolled-admm"} <= set(method_names())
    s = tiny_sample()
    r = reconstruct(s, "deq", weights=str(weights["deq"]), iters=30, tol=1e-5)
    assert r.image.shape == (17, 11) and r.image.is_complex()
    assert r.info["iterations"] <= 30 and len(r.history.residual) == r.info["iterations"]
    for w in (weights["deq"], weights["den"]):
        r = reconstruct(s, "red", weights=str(w), iters=20)
        assert r.image.shape == (17, 11) and bool(torch.isfinite(torch.view_as_real(r.image)).all())
        assert r.info["lam"] > 0 and r.info["step"] > 0
    r = reconstruct(s, "unrolled-admm", weights=str(weights["unrolled"]))
    assert r.info["iterations"] == 3
    r = reconstruct(s, "unrolled-admm", weights=str(weights["unrolled"]), iters=5)
    assert r.info["iterations"] == 5
    with pytest.raises(ConfigError, match="not a file and not a shipped"):
        reconstruct(s, "deq", weights="no-such-model")
    with pytest.raises(ConfigError, match="expected DEQRecon"):
        reconstruct(s, "deq", weights=str(weights["unrolled"]))
    with pytest.raises(ConfigError, match="needs coil sensitivity maps"):
        reconstruct(s.replace(maps=None), "deq", weights=str(weights["deq"]))


def test_divergence_option_of_the_methods(weights: dict[str, Path]) -> None:
    from mrirecon.errors import DivergenceError
    from mrirecon.methods import reconstruct

    s = tiny_sample(1)
    with pytest.warns(RuntimeWarning, match="divergence guard"):
        r = reconstruct(s, "red", weights=str(weights["den"]), step=50.0, lam=50.0, iters=50)
    assert r.info["diverged"] and bool(torch.isfinite(torch.view_as_real(r.image)).all())
    with pytest.raises(DivergenceError):
        reconstruct(s, "red", weights=str(weights["den"]), step=50.0, lam=50.0, iters=50, divergence="raise")


@pytest.mark.slow
def test_cli_recon_with_deq_weights(weights: dict[str, Path], tiny_demo: Path, tmp_path: Path) -> None:
    f = sorted((tiny_demo / "val").glob("*.h5"))[0]
    out = tmp_path / "rec.npy"
    text = run_tool(sys.executable, "-m", "mrirecon", "recon", str(f), "-o", str(out), "--method", "deq",
                    "--weights", str(weights["deq"]), "--iters", "10", "--accel", "4", "--maps", "rss",
                    "--slices", "0", cwd=REPO)
    import numpy as np

    img = np.load(out)
    assert img.shape[0] == 1 and np.isfinite(img).all(), text


@pytest.mark.slow
def test_shipped_certified_deq_is_a_contraction_on_a_real_slice(tiny_demo: Path) -> None:
    """``deq-sn-demo``: its certificate is below 1 for its learned step, the measured one-step ratios on a demo slice
    stay below it, and the method converges to the tolerance and reports the bound for the slice's operator."""
    import h5py

    from mrirecon.data.sample import KSpaceSample
    from mrirecon.methods import reconstruct
    from mrirecon.models.model_based import load_model_based, sense_operator
    from mrirecon.operators.coils import lowres_maps

    model = load_model_based("deq-sn-demo")
    assert model.iteration == "fbs" and not model.net.residual
    assert 0 < float(model.value("step")) < 2
    bound = model.contraction_bound()
    assert bound is not None and bound < 1
    f = sorted((tiny_demo / "val").glob("*.h5"))[0]
    with h5py.File(f, "r") as h:
        k = torch.from_numpy(h["kspace"][0])
    mask = torch.zeros(1, 1, k.shape[-1])
    mask[..., ::4] = 1
    mask[..., k.shape[-1] // 2 - 2: k.shape[-1] // 2 + 2] = 1
    sample = KSpaceSample(kspace=k * mask, mask=mask, maps=lowres_maps(k, 8))
    res = reconstruct(sample, "deq", weights="deq-sn-demo", iters=100, tol=1e-4, anderson=False)
    assert res.info["converged"] and res.info["contraction_bound"] < 1
    with torch.no_grad():
        y, A, _ = sense_operator(sample)
        p = model.prepare(y, A)
        T = model.iteration_map(p.data)
        g = torch.Generator().manual_seed(0)
        for _ in range(3):
            u = p.x0 + 0.1 * torch.randn(p.x0.shape, dtype=p.x0.dtype, generator=g)
            v = p.x0 + 0.1 * torch.randn(p.x0.shape, dtype=p.x0.dtype, generator=g)
            ratio = float((T(u) - T(v)).abs().pow(2).sum().sqrt() / (u - v).abs().pow(2).sum().sqrt())
            assert ratio <= res.info["contraction_bound"] * (1 + 1e-5)


def test_image_loss_counts_only_the_pixels_some_coil_sees() -> None:
    """The target is zero where the maps are (not a measurement): the loss mask is the maps' support."""
    from mrirecon.operators.imaging import Blur, gaussian_kernel
    from mrirecon.operators.sense import Sense

    g = torch.Generator().manual_seed(0)
    maps = torch.randn(2, 3, 8, 6, dtype=torch.complex64, generator=g)
    A = Sense(maps, torch.ones(1, 1, 6))
    like = torch.zeros(2, 8, 6, dtype=torch.complex64)
    assert target_support(A, like) == 1.0                     # every pixel seen: no mask
    maps[0, :, :2, :] = 0
    m = target_support(Sense(maps, torch.ones(1, 1, 6)), like)
    assert isinstance(m, torch.Tensor) and m.shape == (2, 8, 6) and m.dtype == torch.float32
    assert float(m[0, :2].sum()) == 0 and float(m[0, 2:].min()) == 1 and float(m[1].min()) == 1
    assert target_support(Blur(gaussian_kernel(1.0, 3), (8, 6)), like) == 1.0


def test_shipped_deq_admm_keeps_its_noise_adaptive_setup_and_converges_on_a_real_slice(tiny_demo: Path) -> None:
    """``deq-admm-demo`` loads with the settings its recipe trained (noise-adaptive alpha, no support restriction,
    exact data prox, budget 40), reaches its tolerance on a demo slice and improves on zero-filling."""
    import h5py

    from mrirecon.data.sample import KSpaceSample
    from mrirecon.methods import reconstruct
    from mrirecon.metrics import psnr
    from mrirecon.models.model_based import load_model_based
    from mrirecon.operators.espirit import espirit_maps

    model = load_model_based("deq-admm-demo")
    assert model.iteration == "admm" and model.sigma == 0.1 and model.support is False and model.cg_iters == 30
    assert model.layer.forward.max_iter == 40 and 0.5 < float(model.value("alpha")) < 2
    f = sorted((tiny_demo / "val").glob("*.h5"))[0]
    with h5py.File(f, "r") as h:
        k = torch.from_numpy(h["kspace"][h["kspace"].shape[0] // 2])
        truth = np.abs(h["image"][h["kspace"].shape[0] // 2])
    mask = torch.zeros(1, 1, k.shape[-1])
    mask[..., ::4] = 1
    mask[..., k.shape[-1] // 2 - 5: k.shape[-1] // 2 + 5] = 1
    sample = KSpaceSample(kspace=k * mask, mask=mask, maps=espirit_maps(k, calib=24))
    res = reconstruct(sample, "deq", weights="deq-admm-demo")
    zf = reconstruct(sample, "zf")
    assert res.info["converged"] and res.info["iterations"] <= 40
    assert psnr(truth, res.magnitude().numpy()) > psnr(truth, zf.magnitude().numpy()) + 1.0


def test_calib_widths_draw_the_maps_calibration_per_training_item(tiny_demo: Path) -> None:
    """``data.calib_widths``: each training item's ESPIRiT maps come from a centre box of one of the listed
    phase-encoding widths (seeded by the item, cached per slice and width); validation keeps ``calib``."""
    from mrirecon.training.equilibrium_data import EquilibriumDataConfig, SliceTargets, slice_maps

    with pytest.raises(ConfigError, match="calib_widths"):
        EquilibriumDataConfig(calib_widths=(4,))
    with pytest.raises(ConfigError, match="calib_widths"):
        EquilibriumDataConfig(maps="lowres", calib_widths=(8,))
    cfg = EquilibriumDataConfig(source="files", root=str(tiny_demo), calib=16, calib_widths=(6, 16),
                                phase_augment=False)
    train = SliceTargets(tiny_demo / "train", cfg, "", slices=1, seed=0, crop=None)
    items = [train[k] for k in range(6)]
    kspace = train.ds[train.index[0]].kspace
    narrow, wide = slice_maps(kspace, cfg, 6), slice_maps(kspace, cfg)
    assert not torch.allclose(narrow, wide)
    kinds = {"narrow" if torch.equal(it["maps"], narrow) else "wide" if torch.equal(it["maps"], wide) else "?"
             for it in items}
    assert kinds == {"narrow", "wide"}                      # both widths drawn, nothing else
    assert set(train._maps) == {(train.index[0], 6), (train.index[0], 16)}
    again = SliceTargets(tiny_demo / "train", cfg, "", slices=1, seed=0, crop=None)
    assert all(torch.equal(again[k]["maps"], items[k]["maps"]) for k in range(6))  # seeded by the item
    val = SliceTargets(tiny_demo / "val", cfg, "", slices=1, seed=None, crop=None)
    vk = val.ds[val.index[0]].kspace
    assert torch.equal(val[0]["maps"], slice_maps(vk, cfg))


def test_fne_penalty_term_on_the_network_of_a_deq() -> None:
    """``loss.fne``: λ·max(‖J_{2N−I}‖², 1 − ε) on the DEQ's network between the target and a noisy target; a
    near-identity network sits at ‖J‖ ≈ 1 (penalty ≈ λ), an expanded one above, with gradients to its weights."""
    from mrirecon.training.equilibrium import EquilibriumLossConfig, fne_term

    with pytest.raises(ConfigError, match="fne"):
        EquilibriumLossConfig(fne=-1.0)
    with pytest.raises(ConfigError, match="fne"):
        EquilibriumLossConfig(fne=0.1, fne_sigma=(0.2, 0.1))
    cfg = EquilibriumLossConfig(fne=0.5, fne_iters=30)
    model = build_model("deq", {"iteration": "admm", "network_options": {"depth": 3, "width": 4}}, seed=0).double()
    g = torch.Generator().manual_seed(0)
    target = torch.randn(2, 12, 10, dtype=torch.complex128, generator=g)
    with torch.no_grad():
        for p in model.net.parameters():
            p.mul_(1e-3)                                     # residual DnCNN: N(x) ≈ x, J_{2N−I} ≈ I
    pen, norms = fne_term(model, target, cfg, torch.Generator().manual_seed(1))
    assert norms.shape == (2,) and torch.allclose(norms, torch.ones(2, dtype=torch.float64), atol=1e-2)
    assert float(pen.detach()) == pytest.approx(0.5 * float(norms.square().clamp_min(0.9).mean()), rel=1e-6)
    with torch.no_grad():
        for p in model.net.parameters():
            p.mul_(3e3)                                      # weights x3: an expansive residual
    pen, norms = fne_term(model, target, cfg, torch.Generator().manual_seed(1))
    assert float(norms.max()) > 1.05 and float(pen.detach()) > 0.5
    pen.backward()
    grads = [p.grad for p in model.net.parameters() if p.grad is not None]
    assert grads and all(bool(torch.isfinite(q).all()) for q in grads) and any(float(q.abs().max()) > 0 for q in grads)

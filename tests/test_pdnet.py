"""PD-net and the VarNet wrapper: reduction to PDHG, learned maps, scale equivariance, operator contract, I/O."""
from __future__ import annotations

import pytest
import torch

from mrirecon.data.sample import KSpaceSample
from mrirecon.errors import ConfigError, DataError, ShapeError
from mrirecon.models import PDNet, VarNet, acs_box, load_recon_model
from mrirecon.models.base import channels_to_complex, complex_to_channels, zero_filled_scale
from mrirecon.operators.coils import acs_size, lowres_maps
from mrirecon.operators.sense import Sense
from mrirecon.solvers import PDHG, L2Data, run


def _randc(gen: torch.Generator, *shape: int, dtype: torch.dtype = torch.complex64) -> torch.Tensor:
    return torch.randn(*shape, generator=gen, dtype=dtype)


def _line_mask(w: int, accel: int = 3, center: int = 3) -> torch.Tensor:
    m = torch.zeros(1, 1, w)
    m[..., ::accel] = 1
    m[..., w // 2 - center // 2: w // 2 - center // 2 + center] = 1
    return m


def _sample(gen: torch.Generator, b: int = 2, c: int = 3, h: int = 17, w: int = 11, maps: bool = False) -> KSpaceSample:
    """A random undersampled multicoil sample on an odd grid (17x11): k-space of a smooth object."""
    m = _line_mask(w).expand(b, 1, 1, w).clone()
    x = torch.nn.functional.avg_pool2d(torch.randn(b, 2, h, w, generator=gen), 3, 1, 1)
    s = _randc(gen, b, c, h, w)
    s = s / s.abs().pow(2).sum(1, keepdim=True).sqrt()
    y = Sense(s, m)(torch.complex(x[:, 0], x[:, 1]))
    return KSpaceSample(kspace=y, mask=m, maps=s if maps else None)


def _perturb(model: torch.nn.Module, seed: int, scale: float = 0.05) -> None:
    """Non-zero weights everywhere (a fresh network's last layers are zero)."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            if p.ndim > 1:
                p.add_(scale * torch.randn(p.shape, generator=gen))


def test_channels_roundtrip_and_layout() -> None:
    gen = torch.Generator().manual_seed(0)
    x = _randc(gen, 2, 3, 5, 7)
    z = complex_to_channels(x)
    assert z.shape == (2, 6, 5, 7) and z.is_contiguous(memory_format=torch.channels_last)
    assert torch.equal(z[:, 2], x[:, 1].real) and torch.equal(z[:, 5], x[:, 2].imag)
    assert torch.equal(channels_to_complex(z), x)
    assert channels_to_complex(z.to(torch.bfloat16)).dtype == torch.complex64


@pytest.mark.parametrize(("init", "primal_net"), [("adjoint", "cnn"), ("zero", "cnn"), ("adjoint", "unet")])
def test_fresh_pdnet_is_pdhg(init: str, primal_net: str) -> None:
    """Zero-initialised CNN updates: the unrolled network is exactly PDHG on ½‖Ex − y‖² (mrirecon.solvers.PDHG)."""
    gen = torch.Generator().manual_seed(1)
    s = _sample(gen, b=1, maps=True)
    net = PDNet(iterations=6, primal_channels=3, dual_channels=2, width=4, dual_width=4, maps="given", sigma=0.7,
                tau=0.8, theta=1.0, init=init, primal_net=primal_net, primal_levels=2)
    A = Sense(s.maps[0], s.mask[0])
    y = s.kspace[0]
    out = net.unroll(y[None], Sense(s.maps, s.mask))[0]
    solver = PDHG([L2Data(A, y)], sigma=0.7, tau=0.8, theta=1.0, max_iter=6)
    x0 = A.adjoint(y) if init == "adjoint" else torch.zeros_like(A.adjoint(y))
    ref, hist = run(solver, x0)
    assert hist.iterations == 6
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-6)
    # and through forward (scaling is exact for a linear iteration)
    torch.testing.assert_close(net(s)[0], ref, rtol=1e-5, atol=1e-6)


def test_purely_learned_updates_start_at_identity() -> None:
    """classical_steps=False (Adler & Öktem's updates): a fresh network returns its start x0 = E^H y."""
    gen = torch.Generator().manual_seed(2)
    s = _sample(gen, maps=True)
    net = PDNet(iterations=3, width=4, dual_width=4, maps="given", classical_steps=False)
    torch.testing.assert_close(net(s), Sense(s.maps, s.mask).adjoint(s.kspace), rtol=1e-5, atol=1e-6)


def test_fresh_learned_maps_are_acs_ratio_maps() -> None:
    """The fresh sensitivity estimator returns lowres_maps(y, acs_size(mask), window='box')."""
    gen = torch.Generator().manual_seed(3)
    s = _sample(gen, b=2)
    net = PDNet(iterations=1, width=4, dual_width=4, maps="learned", sens_width=2, sens_levels=1)
    maps = net.sensitivity(s.kspace, s.mask, None)
    ref = lowres_maps(s.kspace, acs_size(s.mask[0], (17, 11)), window="box")
    torch.testing.assert_close(maps, ref, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(maps.abs().pow(2).sum(1), torch.ones(2, 17, 11), rtol=1e-4, atol=1e-4)


def test_acs_box_per_item_and_missing_centre() -> None:
    m = torch.zeros(2, 1, 1, 11)
    m[0, ..., 4:7] = 1                      # 3 central lines (DC at 5)
    m[1, ..., 3:8] = 1                      # 5 central lines
    m[..., 0] = 1
    box = acs_box(m, (17, 11))
    assert box[0].sum() == 17 * 3 and box[1].sum() == 17 * 5
    bad = torch.zeros(1, 1, 1, 11)
    bad[..., ::2] = 1
    bad[..., 5] = 0
    with pytest.raises(DataError, match="centre"):
        acs_box(bad, (17, 11))


@pytest.mark.parametrize("maps", ["learned", "given", "refine"])
def test_scale_equivariance_and_no_mutation(maps: str) -> None:
    """model(α y) = α model(y) (k-space units do not matter); the sample is not modified."""
    gen = torch.Generator().manual_seed(4)
    s = _sample(gen, maps=maps != "learned")
    net = PDNet(iterations=2, primal_channels=2, dual_channels=2, width=4, dual_width=4, maps=maps,
                sens_width=2, sens_levels=1)
    _perturb(net, 0)
    before = [t.clone() for t in (s.kspace, s.mask) + ((s.maps,) if s.maps is not None else ())]
    with torch.no_grad():
        x = net(s)
        x2 = net(s.replace(kspace=s.kspace * 1e-5))
    after = [s.kspace, s.mask] + ([s.maps] if s.maps is not None else [])
    assert all(torch.equal(a, b) for a, b in zip(before, after))
    assert x.shape == (2, 17, 11) and x.dtype == torch.complex64
    torch.testing.assert_close(x2, x * 1e-5, rtol=1e-4, atol=1e-4 * float(x.abs().max()) * 1e-5)


def test_batch_items_are_independent_and_unbatched_input() -> None:
    gen = torch.Generator().manual_seed(5)
    s = _sample(gen, b=2)
    s = s.replace(mask=torch.stack([_line_mask(11, 2, 3), _line_mask(11, 3, 5)]),
                  kspace=s.kspace * torch.stack([_line_mask(11, 2, 3), _line_mask(11, 3, 5)]))
    net = PDNet(iterations=2, primal_channels=2, dual_channels=2, width=4, dual_width=4, sens_width=2, sens_levels=1)
    _perturb(net, 1)
    with torch.no_grad():
        both = net(s)
        one = net(KSpaceSample(kspace=s.kspace[1], mask=s.mask[1]))
    assert one.shape == (17, 11)
    torch.testing.assert_close(both[1], one, rtol=1e-4, atol=1e-6)


def test_weight_sharing_and_gradients_reach_every_parameter() -> None:
    gen = torch.Generator().manual_seed(6)
    s = _sample(gen)
    shared = PDNet(iterations=4, width=4, dual_width=4, share_weights=True, sens_width=2, sens_levels=1)
    separate = PDNet(iterations=4, width=4, dual_width=4, share_weights=False, sens_width=2, sens_levels=1)
    assert len(shared.primal_nets) == 1 and len(separate.primal_nets) == 4
    _perturb(shared, 2)
    shared(s).abs().sum().backward()
    for name, p in shared.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
        assert p.grad.abs().sum() > 0, name


def test_grad_checkpoint_matches() -> None:
    gen = torch.Generator().manual_seed(7)
    s = _sample(gen)
    a = PDNet(iterations=3, width=4, dual_width=4, sens_width=2, sens_levels=1)
    _perturb(a, 3)
    b = PDNet(iterations=3, width=4, dual_width=4, sens_width=2, sens_levels=1, grad_checkpoint=True)
    b.load_state_dict(a.state_dict())
    xa, xb = a(s), b(s)
    torch.testing.assert_close(xa, xb)
    xa.abs().sum().backward()
    xb.abs().sum().backward()
    for (n, pa), pb in zip(a.named_parameters(), b.parameters()):
        torch.testing.assert_close(pa.grad, pb.grad, rtol=1e-4, atol=1e-6, msg=n)


def test_bf16_autocast_runs_and_stays_close() -> None:
    """Mixed precision: CNNs in bf16, operators in complex64; the output stays complex64 and close."""
    gen = torch.Generator().manual_seed(8)
    s = _sample(gen)
    net = PDNet(iterations=2, width=4, dual_width=4, sens_width=2, sens_levels=1)
    _perturb(net, 4, 0.02)
    with torch.no_grad():
        ref = net(s)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out = net(s)
    assert out.dtype == torch.complex64
    assert float((out - ref).abs().max() / ref.abs().max()) < 0.05


def test_errors_name_the_problem() -> None:
    gen = torch.Generator().manual_seed(9)
    s = _sample(gen)
    with pytest.raises(DataError, match="maps"):
        PDNet(iterations=1, width=2, dual_width=2, maps="given")(s)
    with pytest.raises(ShapeError, match="maps of shape"):
        PDNet(iterations=1, width=2, dual_width=2, maps="given")(s.replace(maps=s.kspace[:, :2]))
    with pytest.raises(ShapeError, match="mask"):
        PDNet(iterations=1, width=2, dual_width=2)(s.replace(mask=torch.ones(1, 1, 1, 5)))
    with pytest.raises(ConfigError, match="iterations"):
        PDNet(iterations=0)
    with pytest.raises(ShapeError, match="operator"):
        PDNet(iterations=1, width=2, dual_width=2).unroll(s.kspace, Sense(s.kspace[:, :, :5], None))
    from mrirecon.denoisers.registry import build_model

    with pytest.raises(ConfigError, match="unknown key"):
        build_model("pdnet", {"iteration": 3})


def test_registry_roundtrip(tmp_path) -> None:
    """save_weights -> load_recon_model rebuilds the same network from the stored config."""
    from mrirecon.denoisers.registry import build_model
    from mrirecon.denoisers.zoo import save_weights

    gen = torch.Generator().manual_seed(10)
    s = _sample(gen)
    net = build_model("pdnet", {"iterations": 2, "width": 4, "dual_width": 4, "sens_width": 2, "sens_levels": 1})
    _perturb(net, 5)
    save_weights(net, tmp_path / "m.pt", {"note": "test"})
    back = load_recon_model(tmp_path / "m.pt")
    with torch.no_grad():
        torch.testing.assert_close(back(s), net.eval()(s))
    with pytest.raises(KeyError, match="no reconstruction network"):
        load_recon_model("no-such-network")


def test_varnet_wrapper_equals_fastmri_varnet() -> None:
    """Our VarNet(sample) == fastmri.models.VarNet on fastMRI's real layout (scaled in and out)."""
    gen = torch.Generator().manual_seed(11)
    s = _sample(gen, b=2, c=3, h=16, w=12)
    torch.manual_seed(0)  # fastMRI's modules initialise from the global RNG; the test copies the weights anyway
    net = VarNet(num_cascades=2, sens_chans=2, sens_pools=1, chans=4, pools=1).eval()
    ours = net(s)
    assert ours.dtype == torch.complex64 and torch.all(ours.imag == 0)
    scale = zero_filled_scale(s.kspace).reshape(-1, 1, 1, 1)
    with torch.no_grad():
        ref = net.net(torch.view_as_real(s.kspace / scale), (s.mask != 0).unsqueeze(-1)) * scale[:, 0]
    torch.testing.assert_close(ours.real.detach(), ref, rtol=1e-5, atol=1e-7)

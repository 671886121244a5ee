"""Denoiser architectures: complex API, odd sizes, noise maps, registry and configs."""
from __future__ import annotations

import dataclasses
import inspect

import pytest
import torch
from torch import nn

from mrirecon.denoisers import DnCNN, DRUNetLight, GSDRUNet, UNet, build_model, register, widen_dncnn
from mrirecon.denoisers.base import from_channels, parameter_count, to_channels
from mrirecon.denoisers.registry import MODELS, model_config_dict
from mrirecon.denoisers.spectral import fold_batchnorm
from mrirecon.errors import ConfigError, DTypeError, ShapeError

TINY = {
    "dncnn": dict(depth=3, width=4),
    "unet": dict(width=4, levels=3),
    "drunet": dict(widths=(4, 8, 8), blocks=1),
    "gs-drunet": dict(widths=(4, 8), blocks=1),
}


@pytest.mark.parametrize("name", sorted(TINY))
@pytest.mark.parametrize("shape", [(17, 11), (2, 3, 13, 20), (8, 8)])
def test_complex_in_out_any_size(name: str, shape: tuple[int, ...]) -> None:
    model = build_model(name, TINY[name]).eval()
    x = torch.randn(shape, dtype=torch.complex64)
    y = model(x)
    assert y.shape == x.shape and y.dtype == torch.complex64
    assert torch.isfinite(torch.view_as_real(y)).all()
    # leading dims are a batch: denoising the flattened batch gives the same
    flat = model(x.reshape(-1, *shape[-2:]))
    torch.testing.assert_close(flat.reshape(shape), y, rtol=1e-4, atol=1e-5)


def test_complex128_input_uses_network_dtype_and_returns_input_dtype() -> None:
    model = DnCNN(depth=3, width=4).eval()
    x = torch.randn(9, 7, dtype=torch.complex128)
    assert model(x).dtype == torch.complex128
    model = model.double()
    ref = x - from_channels(model.net(to_channels(x[None])))[0]
    torch.testing.assert_close(model(x), ref)


def test_channels_are_an_isometry() -> None:
    x = torch.randn(3, 5, 7, dtype=torch.complex128)
    z = to_channels(x)
    assert z.shape == (3, 2, 5, 7)
    assert torch.allclose(z.norm(), x.norm())
    torch.testing.assert_close(from_channels(z), x)


def test_parameter_count_counts_every_scalar() -> None:
    assert parameter_count(nn.Sequential(nn.Conv2d(2, 4, 3), nn.Linear(5, 3, bias=False))) == 2 * 4 * 9 + 4 + 15
    # a 10-layer, 32-channel DnCNN with biases: 2->32, eight 32->32 and 32->2 convolutions of 3x3
    expected = (2 * 32 * 9 + 32) + 8 * (32 * 32 * 9 + 32) + (32 * 2 * 9 + 2)
    assert parameter_count(DnCNN(depth=10, width=32)) == expected == 75170


def test_noise_map_is_used_and_required() -> None:
    model = DnCNN(depth=3, width=4, noise_map=True).eval()
    x = torch.randn(2, 9, 7, dtype=torch.complex64)
    with pytest.raises(ConfigError, match="noise-level map"):
        model(x)
    a, b = model(x, sigma=0.01), model(x, sigma=0.2)
    assert not torch.allclose(a, b)
    per_item = model(x, sigma=torch.tensor([0.01, 0.2]))
    torch.testing.assert_close(per_item[0], a[0])
    torch.testing.assert_close(per_item[1], b[1])
    with pytest.raises(ShapeError, match="sigma"):
        model(x, sigma=torch.ones(3))


def test_bad_inputs_name_the_network() -> None:
    model = UNet(width=4, levels=2)
    with pytest.raises(DTypeError, match="UNet.*complex"):
        model(torch.randn(9, 9))
    with pytest.raises(ShapeError, match="UNet"):
        model(torch.randn(9, dtype=torch.complex64))


def test_dncnn_rejects_batchnorm_with_spectral_normalisation() -> None:
    with pytest.raises(ConfigError, match="batchnorm"):
        DnCNN(depth=3, width=4, batchnorm=True, lipschitz=0.9)


def test_config_dataclass_mirrors_constructor_defaults() -> None:
    for name in MODELS.names():
        spec = MODELS.get(name)
        sig = inspect.signature(spec.cls.__init__)
        fields = {f.name: f.default for f in dataclasses.fields(spec.config)}
        params = {k: p.default for k, p in sig.parameters.items() if k != "self"}
        assert fields == params, name


def test_registered_constructor_records_its_config() -> None:
    m = DRUNetLight(widths=(4, 8), blocks=1, activation="elu")
    name, cfg = model_config_dict(m)
    assert name == "drunet" and cfg["widths"] == [4, 8] and cfg["activation"] == "elu"
    rebuilt = build_model(name, cfg)
    assert rebuilt.config == m.config
    gs = GSDRUNet(widths=(4,), blocks=0)
    assert model_config_dict(gs)[0] == "gs-drunet"


def test_build_model_checks_keys_and_types() -> None:
    with pytest.raises(ConfigError, match="unknown key 'widht'"):
        build_model("dncnn", {"widht": 3})
    with pytest.raises(ConfigError, match="depth: expected int"):
        build_model("dncnn", {"depth": "many"})
    with pytest.raises(ConfigError, match="activation: expected one of"):
        build_model("unet", {"activation": "tanh"})
    with pytest.raises(KeyError, match="known: "):
        build_model("nope")


def test_build_model_initialisation_is_seeded_and_leaves_global_rng() -> None:
    state = torch.get_rng_state()
    a, b = build_model("dncnn", TINY["dncnn"], seed=3), build_model("dncnn", TINY["dncnn"], seed=3)
    assert torch.equal(torch.get_rng_state(), state)
    for pa, pb in zip(a.parameters(), b.parameters()):
        assert torch.equal(pa, pb)


def test_register_rejects_duplicates_and_untyped_parameters() -> None:
    with pytest.raises(ValueError, match="already registered"):
        register("dncnn")(type("Other", (nn.Module,), {"__init__": lambda self, depth: None}))

    class NoHint(nn.Module):
        def __init__(self, depth=3) -> None:  # type: ignore[no-untyped-def]
            super().__init__()

    with pytest.raises(TypeError, match="type hint"):
        register("no-hint-test")(NoHint)


def test_fold_batchnorm_is_exact_in_eval_mode() -> None:
    torch.manual_seed(0)
    model = DnCNN(depth=4, width=6, batchnorm=True)
    model.train()
    for _ in range(3):  # populate running statistics
        model(torch.randn(4, 12, 10, dtype=torch.complex64))
    model.eval()
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.weight.data.uniform_(0.5, 2.0)
            m.bias.data.normal_()
    x = torch.randn(2, 12, 10, dtype=torch.complex64)
    ref = model(x)
    fold_batchnorm(model)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in model.modules())
    torch.testing.assert_close(model(x), ref, rtol=1e-4, atol=1e-5)


def test_widen_dncnn_preserves_the_map_and_then_trains_the_new_channels() -> None:
    small = build_model("dncnn", {"depth": 4, "width": 6}, seed=1).double()
    wide = build_model("dncnn", {"depth": 4, "width": 10}, seed=2).double()
    fresh = wide.net[2].weight.detach().clone()
    widen_dncnn(small, wide)
    x = torch.randn(2, 1, 12, 10, dtype=torch.complex128, generator=torch.Generator().manual_seed(3))
    assert (small(x) - x).abs().max() > 1e-3  # a non-trivial map
    torch.testing.assert_close(wide(x), small(x), rtol=0, atol=1e-12)
    torch.testing.assert_close(wide.net[2].weight[:6, :6], small.net[2].weight)
    assert torch.all(wide.net[2].weight[:, 6:] == 0) and torch.all(wide.net[6].weight[:, 6:] == 0)
    torch.testing.assert_close(wide.net[2].weight[6:, :6], 0.1 * fresh[6:, :6])  # new incoming: scaled init
    # the new channels are live: a gradient step moves their outgoing weights
    (wide(x).abs() ** 2).sum().backward()
    assert wide.net[6].weight.grad[:, 6:].abs().max() > 0


@pytest.mark.parametrize("small, wide, match", [
    ({"depth": 4, "width": 6}, {"depth": 5, "width": 10}, "more than the width"),
    ({"depth": 4, "width": 10}, {"depth": 4, "width": 6}, "narrower"),
    ({"depth": 4, "width": 6, "activation": "maxmin"}, {"depth": 4, "width": 10, "activation": "maxmin"}, "maxmin"),
    ({"depth": 4, "width": 6, "lipschitz": 0.9}, {"depth": 4, "width": 10, "lipschitz": 0.9}, "spectral"),
    ({"depth": 4, "width": 6, "batchnorm": True}, {"depth": 4, "width": 10, "batchnorm": True}, "batch norm"),
])
def test_widen_dncnn_refuses_what_it_cannot_preserve(small: dict, wide: dict, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        widen_dncnn(build_model("dncnn", small, seed=0), build_model("dncnn", wide, seed=0))

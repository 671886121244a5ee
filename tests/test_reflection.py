"""ReflectionScaled: D' = ½(I + (2D − I)/L) has reflection (2D − I)/L, so Lip(2D' − I) = Lip(2D − I)/L."""
from __future__ import annotations

import json
import math

import pytest
import torch
from denoiser_helpers import write_image_h5

from mrirecon.denoisers import DnCNN, ReflectionScaled, build_model, lipschitz_certificate, load_denoiser, save_weights
from mrirecon.errors import ConfigError


def _images(n: int = 3, shape: tuple[int, int] = (20, 18)) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    return [torch.randn(shape, dtype=torch.complex64, generator=g) * 0.3 for _ in range(n)]


def _expansive_dncnn() -> DnCNN:
    """A small residual DnCNN whose reflection is clearly expansive (weights scaled up)."""
    model = build_model("dncnn", {"depth": 3, "width": 6}, seed=0).eval()  # seeded, not the global RNG
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(3.0)
    return model


def test_matches_the_formula_and_round_trips(tmp_path) -> None:
    den = _expansive_dncnn()
    before = {k: v.clone() for k, v in den.state_dict().items()}
    wrapped = ReflectionScaled.wrap(den, 1.3)
    x = torch.randn(2, 13, 11, dtype=torch.complex64)
    with torch.no_grad():
        torch.testing.assert_close(wrapped(x), 0.5 * (x + (2 * den(x) - x) / 1.3))
        # the wrapped copy does not share or change the original's weights
        for k, v in den.state_dict().items():
            assert torch.equal(v, before[k])
        path = save_weights(wrapped, tmp_path / "w.pt", {"note": "test"})
        back = load_denoiser(path)
        assert isinstance(back, ReflectionScaled) and back.bound == 1.3
        torch.testing.assert_close(back(x), wrapped(x))
    # bound 1 leaves D unchanged
    with torch.no_grad():
        torch.testing.assert_close(ReflectionScaled.wrap(den, 1.0)(x), den(x))


def test_reflection_is_divided_at_every_input() -> None:
    # 2D' − I = (2D − I)/L as maps, so also their Jacobians and Lipschitz constants (in float64, to rounding)
    den = _expansive_dncnn()
    wrapped = ReflectionScaled.wrap(den, 2.0)
    x = torch.randn(1, 9, 9, dtype=torch.complex128)
    with torch.no_grad():
        d, dw = den.double()(x), wrapped.double()(x)
    torch.testing.assert_close(2 * dw - x, (2 * d - x) / 2.0)


def test_divides_the_estimated_reflection_constant_by_the_bound() -> None:
    den = _expansive_dncnn()
    opts = dict(n_points=4, iters=300, crop=None, tol=1e-9, seed=3)
    cert = lipschitz_certificate(den, _images(), **opts)
    lip = cert.stats["2D-I"].max
    assert lip > 1.2, "the test network must be clearly expansive for the check to mean anything"
    wrapped = ReflectionScaled.wrap(den, lip)
    cert_w = lipschitz_certificate(wrapped, _images(), **opts)
    # same points and start vectors: every per-point estimate is divided by L, so the largest becomes 1
    ref = torch.tensor(cert.per_point["2D-I"]) / lip
    torch.testing.assert_close(torch.tensor(cert_w.per_point["2D-I"]), ref, rtol=2e-3, atol=0)
    assert cert_w.stats["2D-I"].max == pytest.approx(1.0, abs=2e-3)


@pytest.mark.parametrize("bound", [0.5, -1.0, math.nan, math.inf])
def test_bad_bound_is_a_config_error(bound: float) -> None:
    with pytest.raises(ConfigError, match="bound must be a finite number >= 1"):
        ReflectionScaled("dncnn", {"depth": 3, "width": 4}, bound)


def test_lipschitz_command_writes_the_rescaled_network(tmp_path, capsys: pytest.CaptureFixture[str]) -> None:
    from mrirecon.cli import main

    data = write_image_h5(tmp_path / "img.h5", n=2, shape=(24, 24))
    src = save_weights(_expansive_dncnn(), tmp_path / "den.pt", {})
    out = tmp_path / "fne.pt"
    common = ["lipschitz", "--data", str(data), "--slices", "2", "--points", "4", "--iters", "30", "--crop", "16"]
    assert main([*common, "--weights", str(src), "--rescale-reflection", str(out)]) == 0
    info = json.loads(out.with_suffix(".json").read_text())
    lip = info["source_certificate"]["stats"]["2D-I"]["max"]
    assert lip > 1.2 and info["model"]["config"]["bound"] == pytest.approx(lip)
    assert isinstance(load_denoiser(out), ReflectionScaled)
    capsys.readouterr()
    # certified again at other points, the rescaled network's estimate is about 1 (the source's is > 1.2)
    assert main([*common, "--weights", str(out), "--seed", "1", "--json", str(tmp_path / "c.json")]) == 0
    again = json.loads((tmp_path / "c.json").read_text())["stats"]["2D-I"]["max"]
    assert again < 1.05
    with pytest.raises(ConfigError, match="cannot be combined with --equivariant"):
        main([*common, "--weights", str(src), "--rescale-reflection", str(out), "--equivariant", "average",
              "--debug"])

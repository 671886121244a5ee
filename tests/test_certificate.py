"""The Lipschitz certificate against maps whose Lipschitz constants are known exactly."""
from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from mrirecon.denoisers import Denoiser, DnCNN, lipschitz_certificate
from mrirecon.denoisers.certificate import LipschitzCertificate


class Scale(Denoiser):
    """D(x) = a·x: Lip(D) = |a|, Lip(I − D) = |1 − a|, Lip(2D − I) = |2a − 1|."""

    def __init__(self, a: float) -> None:
        super().__init__()
        self.a = nn.Parameter(torch.tensor(a))

    def forward_channels(self, z: torch.Tensor, sigma: torch.Tensor | None = None) -> torch.Tensor:
        return self.a * z


class Blur(Denoiser):
    """A fixed linear low-pass filter: its Jacobian is the filter everywhere."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(2, 2, 3, padding=1, bias=False)
        with torch.no_grad():
            k = torch.tensor([[1.0, 2.0, 1.0], [2.0, 4.0, 2.0], [1.0, 2.0, 1.0]]) / 16
            self.conv.weight.zero_()
            self.conv.weight[0, 0] = k
            self.conv.weight[1, 1] = k

    def forward_channels(self, z: torch.Tensor, sigma: torch.Tensor | None = None) -> torch.Tensor:
        return self.conv(z)


def _images(n: int = 3, shape: tuple[int, int] = (20, 17)) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return [torch.randn(shape, dtype=torch.complex64, generator=g) for _ in range(n)]


@pytest.mark.parametrize("a", [0.3, 0.8, -0.5])
def test_certificate_of_a_scaling_is_exact(a: float) -> None:
    cert = lipschitz_certificate(Scale(a), _images(), n_points=5, iters=5, crop=12)
    assert cert.stats["D"].max == pytest.approx(abs(a), rel=1e-5)
    assert cert.stats["I-D"].max == pytest.approx(abs(1 - a), rel=1e-5)
    assert cert.stats["2D-I"].max == pytest.approx(abs(2 * a - 1), rel=1e-5)
    assert cert.stats["D"].std == pytest.approx(0.0, abs=1e-6)
    assert cert.stats["D"].n == 5


def test_certificate_of_a_linear_filter_matches_its_dense_matrix() -> None:
    den = Blur().double()
    crop = 6
    n = 2 * crop * crop
    eye = torch.eye(n, dtype=torch.float64).reshape(n, 2, crop, crop)
    J = den.forward_channels(eye).reshape(n, n).T
    refs = {"D": J, "I-D": torch.eye(n, dtype=torch.float64) - J, "2D-I": 2 * J - torch.eye(n, dtype=torch.float64)}
    cert = lipschitz_certificate(den, _images(2, (9, 9)), n_points=2, iters=300, crop=crop, tol=1e-9)
    for name, M in refs.items():
        assert cert.stats[name].max == pytest.approx(float(torch.linalg.matrix_norm(M, 2)), rel=2e-3), name


def test_certificate_restores_training_mode_and_serialises(tmp_path) -> None:  # type: ignore[no-untyped-def]
    model = DnCNN(depth=3, width=4, lipschitz=0.9, sn_size=8)
    model.train()
    cert = lipschitz_certificate(model, _images(2, (15, 13)) + _images(1, (11, 19)), n_points=4, iters=10, crop=None)
    assert model.training
    assert cert.bound == pytest.approx(0.9)
    assert cert.stats["I-D"].max < 1.0
    path = tmp_path / "c.json"
    path.write_text(json.dumps(cert.to_dict()))
    back = LipschitzCertificate.from_dict(json.loads(path.read_text()))
    assert back.stats["2D-I"].max == cert.stats["2D-I"].max
    assert "Lip(I-D)" in back.table()


def test_certificate_rejects_bad_arguments() -> None:
    from mrirecon.errors import ConfigError, DTypeError

    with pytest.raises(ConfigError):
        lipschitz_certificate(Scale(0.5), _images(), n_points=0)
    with pytest.raises(DTypeError):
        lipschitz_certificate(Scale(0.5), [torch.randn(5, 5)])

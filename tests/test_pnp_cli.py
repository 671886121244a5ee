"""``mrirecon recon`` with PnP methods: history JSON beside the output, ``--plot``, ``-O`` method options."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from _files import write_fastmri_style

from mrirecon.cli import main
from mrirecon.denoisers import DnCNN, save_weights

pytestmark = pytest.mark.usefixtures("one_thread")  # tiny problems: one intra-op thread


def cli(capsys: pytest.CaptureFixture[str], *argv: object) -> tuple[int, str, str]:
    rc = main([str(a) for a in argv])
    out = capsys.readouterr()
    return rc, out.out, out.err


@pytest.fixture
def knee(tmp_path: Path) -> Path:
    return write_fastmri_style(tmp_path / "in" / "file1000.h5", slices=2, shape=(24, 19), recon=(12, 12))


@pytest.fixture
def tiny_weights(tmp_path: Path) -> Path:
    with torch.random.fork_rng():
        torch.manual_seed(0)
        den = DnCNN(depth=3, width=4, lipschitz=0.5, sn_size=16).eval()
    return save_weights(den, tmp_path / "tiny.pt")


def test_recon_pnp_writes_history_and_plot(capsys: pytest.CaptureFixture[str], knee: Path, tmp_path: Path,
                                           tiny_weights: Path) -> None:
    out = tmp_path / "out" / "r.npy"
    rc, text, err = cli(capsys, "recon", knee, "-o", out, "--method", "pnp-admm", "--weights", tiny_weights,
                        "--accel", "2", "--center-fraction", "0.3", "--maps", "rss", "--iters", "4", "--tol", "0",
                        "-O", "alpha=1.5", "-O", "certificate=false", "--plot")
    assert rc == 0, err
    doc = json.loads((tmp_path / "out" / "r.npy.history.json").read_text())
    assert doc["method"] == "pnp-admm" and [e["slice"] for e in doc["slices"]] == [0, 1]
    for e in doc["slices"]:
        assert len(e["history"]["residual"]) == 4 and e["info"]["alpha"] == 1.5
    assert (tmp_path / "out" / "r.npy.history.png").stat().st_size > 1000
    assert "history:" in text and "convergence plot:" in text
    assert not list((tmp_path / "out").glob(".*tmp*"))


def test_recon_history_options(capsys: pytest.CaptureFixture[str], knee: Path, tmp_path: Path,
                               tiny_weights: Path) -> None:
    rc, text, err = cli(capsys, "recon", knee, "-o", tmp_path / "z.npy", "--method", "zf", "--plot")
    assert rc == 0, err
    assert "not iterative" in text and not (tmp_path / "z.npy.history.json").exists()
    rc, text, err = cli(capsys, "recon", knee, "-o", tmp_path / "p.npy", "--method", "pnp-fbs", "--weights",
                        tiny_weights, "--accel", "2", "--center-fraction", "0.3", "--maps", "rss", "--iters", "2",
                        "--no-history", "-O", "certificate=false")
    assert rc == 0, err
    assert not (tmp_path / "p.npy.history.json").exists()


def test_recon_bad_method_option_is_one_line(capsys: pytest.CaptureFixture[str], knee: Path, tmp_path: Path) -> None:
    rc, _, err = cli(capsys, "recon", knee, "-o", tmp_path / "x.npy", "--method", "pnp-admm", "-O", "rho=2")
    assert rc == 2 and "no option 'rho'" in err and len(err.strip().splitlines()) == 1
    rc, _, err = cli(capsys, "recon", knee, "-o", tmp_path / "x.npy", "--method", "pnp-admm", "-O", "alpha")
    assert rc == 2 and "KEY=VALUE" in err
    assert not (tmp_path / "x.npy").exists()

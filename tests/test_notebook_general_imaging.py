"""The general-imaging notebook executes (jupytext source -> notebook -> nbclient), with tiny untrained denoisers.

The shipped denoisers make the notebook's figures meaningful; here tiny networks with fixed random weights
keep the run short and independent of which weights are shipped: the test checks that every cell runs
(all three problems, all solvers, the convergence figure and the GS-PnP monotonicity assertion inside it),
and that the committed ``.ipynb`` holds the same code as the ``.py`` source.
"""
from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from tests.conftest import REPO

SOURCE = REPO / "notebooks" / "general_imaging.py"
NOTEBOOK = REPO / "notebooks" / "general_imaging.ipynb"


@pytest.mark.slow
def test_general_imaging_notebook_executes(tmp_path: Path) -> None:
    jupytext = pytest.importorskip("jupytext")
    nbclient = pytest.importorskip("nbclient")
    from mrirecon.denoisers import DnCNN, GSDRUNet, save_weights

    with torch.random.fork_rng():
        torch.manual_seed(0)
        den = DnCNN(depth=3, width=8, lipschitz=0.5, sn_size=16)
        gs = GSDRUNet(widths=(4, 8), blocks=1, noise_map=True)
    w1 = save_weights(den.eval(), tmp_path / "sn.pt")
    w2 = save_weights(gs.eval(), tmp_path / "gs.pt")
    nb = jupytext.read(SOURCE)
    env = {"MRIRECON_NB_WEIGHTS": str(w1), "MRIRECON_NB_GS_WEIGHTS": str(w2), "MRIRECON_NB_SIZE": "32",
           "MRIRECON_NB_ITERS": "8", "MRIRECON_NB_THREADS": "1", "MPLBACKEND": "Agg"}
    old = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        client = nbclient.NotebookClient(nb, timeout=300, kernel_name="python3",
                                         resources={"metadata": {"path": str(REPO)}})
        client.execute()
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    outputs = "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []))
    for name in ("deblurring", "inpainting", "super-resolution x2"):
        assert name in outputs
    assert "data step: circulant" in outputs and "data step: diagonal" in outputs and "data step: cg" in outputs


def test_committed_notebook_matches_source() -> None:
    jupytext = pytest.importorskip("jupytext")
    if not NOTEBOOK.exists():
        pytest.fail(f"{NOTEBOOK} is missing; run `jupytext --to ipynb {SOURCE}` (and execute it)")
    src = [c.source for c in jupytext.read(SOURCE).cells]
    ipynb = [c.source for c in jupytext.read(NOTEBOOK).cells]
    assert src == ipynb, "notebooks/general_imaging.ipynb is out of date with general_imaging.py (jupytext --sync)"

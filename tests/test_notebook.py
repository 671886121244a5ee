"""The comparison notebook runs end to end (fast mode: small sizes, few iterations)."""
from __future__ import annotations

import os

import pytest

from tests.conftest import REPO

NOTEBOOK = REPO / "notebooks" / "compare_baselines.py"


@pytest.mark.slow
def test_compare_baselines_notebook_executes(tmp_path) -> None:
    jupytext = pytest.importorskip("jupytext")
    nbclient = pytest.importorskip("nbclient")
    nb = jupytext.read(NOTEBOOK)
    env = dict(os.environ, MRIRECON_NOTEBOOK_FAST="1", MPLBACKEND="Agg")
    old = dict(os.environ)
    os.environ.update(env)  # the kernel inherits the environment
    try:
        client = nbclient.NotebookClient(nb, timeout=600, kernel_name="python3",
                                         resources={"metadata": {"path": str(NOTEBOOK.parent)}})
        client.execute()
    finally:
        os.environ.clear()
        os.environ.update(old)
    outputs = "\n".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []))
    assert "| cs-wavelet |" in outputs and "| cs-tv |" in outputs
    errors = [o for c in nb.cells for o in c.get("outputs", []) if o.get("output_type") == "error"]
    assert not errors

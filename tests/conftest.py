"""Shared fixtures and helpers: external reference tools, the shared data folder, seeds."""
from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import torch

torch.set_num_threads(2)

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"


def run_tool(*cmd: str, cwd: Path | None = None) -> str:
    """Run an external reference tool; fail the test with its stderr if it fails."""
    res = subprocess.run([str(c) for c in cmd], cwd=cwd, capture_output=True, text=True)
    if res.returncode != 0:
        pytest.fail(f"{' '.join(map(str, cmd))} failed ({res.returncode}): {res.stderr[-2000:]}")
    return res.stdout


@pytest.fixture
def bart() -> str:
    """Path of the BART executable (the test is skipped when BART is not installed; CI installs it)."""
    exe = shutil.which("bart")
    if exe is None:
        pytest.skip("BART is not installed (apt-get install bart)")
    return exe


@pytest.fixture
def bart_brain() -> Path:
    """The shared real 8-coil brain k-space folder (skipped when ../shared is absent)."""
    folder = SHARED_DATA / "bart_brain"
    if not (folder / "ksp.cfl").exists():
        pytest.skip(f"{folder} is not present")
    return folder

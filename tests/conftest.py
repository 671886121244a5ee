"""Shared fixtures and helpers: external reference tools, the shared data folder, seeds."""
from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
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


@pytest.fixture(scope="session")
def tiny_demo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny demo dataset (``DemoConfig.tiny()``: 40×32, 8 coils, ~50 slices), built once per session."""
    from mrirecon.data.demo import DemoConfig, build_demo

    return build_demo(tmp_path_factory.mktemp("demo") / "demo-tiny", DemoConfig.tiny())


@pytest.fixture
def ismrmrd_tools() -> dict[str, str]:
    """Paths of the ISMRMRD reference tools (skipped when ismrmrd-tools is not installed; CI installs it)."""
    names = ("ismrmrd_generate_cartesian_shepp_logan", "ismrmrd_recon_cartesian_2d", "ismrmrd_info")
    tools = {n: shutil.which(n) for n in names}
    missing = [n for n, p in tools.items() if p is None]
    if missing:
        pytest.skip(f"ISMRMRD tools not installed ({', '.join(missing)}; apt-get install ismrmrd-tools)")
    return {n.removeprefix("ismrmrd_"): p for n, p in tools.items()}  # type: ignore[misc]


@pytest.fixture(scope="module")
def one_thread() -> Iterator[None]:
    """One intra-op thread for a module of tiny problems (more threads only add synchronisation latency)."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)

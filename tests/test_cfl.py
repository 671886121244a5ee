"""BART cfl files: round trip, and every broken file is a DataError that names the file and what is wrong."""
from __future__ import annotations

import numpy as np
import pytest

from mrirecon.errors import DataError
from mrirecon.io.cfl import read_cfl, write_cfl


def test_round_trip_keeps_shape_and_values(tmp_path) -> None:  # type: ignore[no-untyped-def]
    x = (np.arange(60).reshape(3, 4, 5) * (1 + 2j)).astype(np.complex64)
    write_cfl(tmp_path / "x", x)
    np.testing.assert_array_equal(read_cfl(tmp_path / "x"), x)


def test_broken_files_name_the_file_and_the_problem(tmp_path) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(DataError, match=r"nope\.hdr: BART header file not found"):
        read_cfl(tmp_path / "nope")
    write_cfl(tmp_path / "x", np.ones((4, 3), np.complex64))
    (tmp_path / "x.cfl").write_bytes((tmp_path / "x.cfl").read_bytes()[:40])           # truncated data
    with pytest.raises(DataError, match=r"x\.cfl: expected 96 bytes"):
        read_cfl(tmp_path / "x")
    (tmp_path / "x.cfl").unlink()
    with pytest.raises(DataError, match=r"x\.cfl: BART data file not found"):
        read_cfl(tmp_path / "x")
    (tmp_path / "y.hdr").write_text("# Dimensions\nfour three\n")
    (tmp_path / "y.cfl").write_bytes(b"")
    with pytest.raises(DataError, match=r"y\.hdr: field '# Dimensions'"):
        read_cfl(tmp_path / "y")

"""BART ``.cfl``/``.hdr`` files: complex64, column-major (Fortran) order.

``name`` may be given with or without the ``.cfl``/``.hdr`` extension.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from mrirecon.atomic import atomic_write_bytes, atomic_write_text
from mrirecon.errors import DataError


def _base(name: str | os.PathLike[str]) -> Path:
    p = Path(name)
    return p.with_suffix("") if p.suffix in (".cfl", ".hdr") else p


def read_cfl(name: str | os.PathLike[str]) -> np.ndarray:
    """Read a BART cfl file pair into a complex64 array (BART's dimension order, trailing 1s dropped).

    Raises:
        DataError: the header is missing or malformed, or the data file is truncated.
    """
    base = _base(name)
    hdr, cfl = base.with_suffix(".hdr"), base.with_suffix(".cfl")
    try:
        lines = [ln.strip() for ln in hdr.read_text().splitlines()]
    except FileNotFoundError:
        raise DataError(f"{hdr}: BART header file not found") from None
    try:
        i = lines.index("# Dimensions")
        dims = [int(v) for v in lines[i + 1].split()]
    except (ValueError, IndexError):
        raise DataError(f"{hdr}: field '# Dimensions': expected a line of integers after it") from None
    while len(dims) > 1 and dims[-1] == 1:
        dims.pop()
    count = int(np.prod(dims))
    if not cfl.exists():
        raise DataError(f"{cfl}: BART data file not found (header {hdr} exists)")
    size = cfl.stat().st_size
    if size != 8 * count:
        raise DataError(f"{cfl}: expected {8 * count} bytes for dimensions {dims} (complex64), "
                        f"found {size} (truncated or wrong header)")
    data = np.fromfile(cfl, dtype=np.complex64, count=count)
    return data.reshape(dims, order="F")


def write_cfl(name: str | os.PathLike[str], array: np.ndarray) -> None:
    """Write ``array`` as a BART cfl file pair (complex64). Both files are written atomically."""
    base = _base(name)
    arr = np.asarray(array)
    dims = list(arr.shape) or [1]
    header = "# Dimensions\n" + " ".join(str(d) for d in dims + [1] * max(0, 5 - len(dims))) + "\n"
    atomic_write_bytes(base.with_suffix(".cfl"), np.asfortranarray(arr.astype(np.complex64)).tobytes(order="F"))
    atomic_write_text(base.with_suffix(".hdr"), header)

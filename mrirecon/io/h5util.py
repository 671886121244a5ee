"""Small HDF5 helpers shared by the file-format modules: safe opening and atomic writing."""
from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

import h5py

from mrirecon.atomic import atomic_path
from mrirecon.errors import DataError

PathLike = str | os.PathLike[str]


def open_h5(path: PathLike, what: str = "HDF5 file") -> h5py.File:
    """Open ``path`` read-only; a missing, truncated or non-HDF5 file is a one-line :class:`DataError`.

    Raises:
        DataError: the file does not exist or is not a readable HDF5 file (message names the file).
    """
    p = Path(path)
    if not p.exists():
        raise DataError(f"{p}: file not found")
    if p.is_dir():
        raise DataError(f"{p}: is a folder, expected an {what}")
    try:
        return h5py.File(p, "r")
    except OSError as exc:
        reason = str(exc).split("(", 1)[-1].rstrip(")") if "(" in str(exc) else str(exc)
        raise DataError(f"{p}: not a readable {what} (truncated or corrupt: {reason})") from None


def read_dataset(f: h5py.File, name: str, index: object = (), source: str = "") -> object:
    """``f[name][index]`` with read errors of a damaged file turned into a :class:`DataError`."""
    try:
        return f[name][index]
    except (OSError, RuntimeError) as exc:
        raise DataError(f"{source or f.filename}: field {name!r}: cannot read the data "
                        f"(truncated or corrupt file: {exc})") from None


@contextlib.contextmanager
def atomic_h5(path: PathLike, mode: str = "w") -> Iterator[h5py.File]:
    """Write an HDF5 file atomically: into a temporary file next to ``path``, renamed on success.

    A failure (or an interrupt) inside the ``with`` block removes the temporary file, so no
    half-written file is ever left at ``path``.
    """
    with atomic_path(path) as tmp:
        with h5py.File(tmp, mode) as f:
            yield f

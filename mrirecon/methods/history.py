"""Convergence histories of reconstructions: ``OUTPUT.history.json`` and the plot ``OUTPUT.history.png``.

:func:`save_history` writes, beside a reconstruction ``OUTPUT``, one JSON document for all its slices::

    {"method": "pnp-admm", "format": "mrirecon-history", "version": 1,
     "slices": [{"slice": 0, "history": {"residual": [...], "objective": [...], "step_size": [...],
                                          "time": [...], "iterations", "converged", "stop_reason", "init_time"},
                 "info": {... the method's info: scale, certificate, guarantee ...}}, ...]}

(NaN/inf become ``null``: the file is strict JSON). :func:`plot_history` draws the fixed-point residual per
iteration (log scale, one line per slice, the tolerance as a dashed line when known), the objective where
the method defines one, and the step sizes. Files are written atomically (temporary file, then ``os.replace``).
"""
from __future__ import annotations

import dataclasses
import json
import math
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from mrirecon.atomic import atomic_path, atomic_write_text
from mrirecon.errors import DataError

FORMAT = "mrirecon-history"
VERSION = 1


def _jsonable(v: Any) -> Any:
    """Plain JSON values: NaN/inf -> None, tensors/arrays -> lists, tuples -> lists, other objects -> str."""
    if isinstance(v, bool) or v is None or isinstance(v, str):
        return v
    if isinstance(v, int):
        return v
    if isinstance(v, float):
        return v if math.isfinite(v) else None
    if isinstance(v, dict):
        return {str(k): _jsonable(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_jsonable(x) for x in v]
    if dataclasses.is_dataclass(v) and not isinstance(v, type):
        return _jsonable(dataclasses.asdict(v))
    tolist = getattr(v, "tolist", None)
    if callable(tolist):
        return _jsonable(tolist())
    return str(v)


def history_dict(history: Any) -> dict[str, Any]:
    """A :class:`~mrirecon.solvers.base.History` as a plain dict (``None`` -> ``{}``)."""
    if history is None:
        return {}
    if dataclasses.is_dataclass(history):
        return _jsonable(dataclasses.asdict(history))
    if isinstance(history, dict):
        return _jsonable(history)
    raise DataError(f"history: expected a History dataclass or a dict, got {type(history).__name__}")


def run_info(hist: Any, t0: float) -> dict[str, Any]:
    """The entries every iterative method's ``info`` holds: wall time since ``t0`` (``time.perf_counter()``),
    iterations, convergence, stop reason and time per iteration of a :class:`~mrirecon.solvers.History`."""
    return {"time_s": time.perf_counter() - t0, "iterations": hist.iterations, "converged": hist.converged,
            "stop_reason": hist.stop_reason, "time_per_iter_s": hist.time_per_iteration()}


def history_path(output: str | os.PathLike[str], suffix: str = ".history.json") -> Path:
    """``OUTPUT.history.json`` (the suffix appended to the full output name, e.g. ``recon.h5.history.json``)."""
    p = Path(output)
    return p.with_name(p.name + suffix)


def history_document(results: Sequence[Any], method: str, slices: Sequence[int] | None = None) -> dict[str, Any]:
    """The JSON document of :func:`save_history` (``results``: :class:`~mrirecon.methods.ReconResult` per slice)."""
    idx = list(range(len(results))) if slices is None else list(slices)
    if len(idx) != len(results):
        raise DataError(f"history: {len(results)} results but {len(idx)} slice indices")
    return {"format": FORMAT, "version": VERSION, "method": method,
            "slices": [{"slice": int(i), "history": history_dict(getattr(r, "history", None)),
                        "info": _jsonable(getattr(r, "info", {}))} for i, r in zip(idx, results)]}


def save_history(results: Sequence[Any], output: str | os.PathLike[str], method: str,
                 slices: Sequence[int] | None = None) -> Path:
    """Write the histories of a reconstruction's slices to ``OUTPUT.history.json`` (atomically).

    Args:
        results: one :class:`~mrirecon.methods.ReconResult` per slice.
        output: the reconstruction's output path (the history goes beside it).
        method: the method name.
        slices: the slice index of each result (default ``0..n-1``).

    Returns:
        the JSON path.
    """
    path = history_path(output)
    text = json.dumps(history_document(results, method, slices), indent=1, allow_nan=False) + "\n"
    atomic_write_text(path, text)
    return path


def load_history(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read a history JSON written by :func:`save_history`.

    Raises:
        DataError: missing file, invalid JSON, or not a history document.
    """
    p = Path(path)
    try:
        doc = json.loads(p.read_text())
    except FileNotFoundError:
        raise DataError(f"history file {p} does not exist") from None
    except (OSError, ValueError) as exc:
        raise DataError(f"history file {p}: not valid JSON ({exc})") from None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT or not isinstance(doc.get("slices"), list):
        raise DataError(f"history file {p}: not an mrirecon history (expected format {FORMAT!r} with 'slices')")
    return doc


def plot_history(doc_or_results: dict[str, Any] | Sequence[Any], output: str | os.PathLike[str],
                 method: str | None = None) -> Path:
    """Draw the convergence plot ``OUTPUT.history.png`` (atomically) and return its path.

    Args:
        doc_or_results: a document from :func:`history_document`/:func:`load_history`, or a list of results.
        output: the reconstruction's output path (the plot goes beside it).
        method: the method name (when results are given).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    doc = doc_or_results if isinstance(doc_or_results, dict) else \
        history_document(list(doc_or_results), method or "?")
    entries = doc["slices"]
    has_obj = any(e["history"].get("objective") for e in entries)
    ncols = 3 if has_obj else 2
    fig, axes = plt.subplots(1, ncols, figsize=(4.2 * ncols, 3.4), squeeze=False)
    ax_res, ax_step = axes[0][0], axes[0][-1]
    tol = None
    for e in entries:
        h, info = e["history"], e.get("info", {})
        res = [r if r is not None and r > 0 else float("nan") for r in h.get("residual", [])]
        label = f"slice {e['slice']}" + (f" ({h.get('stop_reason')})" if h.get("stop_reason") else "")
        ax_res.semilogy(range(1, len(res) + 1), res, lw=1, label=label)
        steps = [s if s is not None else float("nan") for s in h.get("step_size", [])]
        ax_step.plot(range(1, len(steps) + 1), steps, lw=1)
        if has_obj and h.get("objective"):
            obj = [o if o is not None else float("nan") for o in h["objective"]]
            axes[0][1].plot(range(1, len(obj) + 1), obj, lw=1)
        tol = info.get("tol", tol)
    if tol:
        ax_res.axhline(tol, ls="--", c="k", lw=0.8, label=f"tol {tol:g}")
    ax_res.set(xlabel="iteration", ylabel="‖x_{k+1} − x_k‖ / ‖x_0‖", title=f"{doc.get('method', '')}: residual")
    if len(entries) <= 8:
        ax_res.legend(fontsize=7)
    if has_obj:
        axes[0][1].set(xlabel="iteration", ylabel="F(x_k)", title="objective")
    ax_step.set(xlabel="iteration", ylabel="step", title="step size")
    fig.tight_layout()
    path = history_path(output, ".history.png")
    with atomic_path(path, suffix=".tmp.png", fsync=False) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)
    return path


__all__ = ["history_dict", "history_document", "history_path", "load_history", "plot_history", "run_info",
           "save_history"]

"""``mrirecon info FILE``: what a raw data file holds (format, matrix, coils, slices, sampling, acceleration)."""
from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

HELP = "describe a fastMRI .h5, ISMRMRD .h5/.mrd or BART .cfl file: matrix, coils, slices, sampling pattern"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("file", type=Path, help="the raw data file")
    p.add_argument("--json", action="store_true", help="print the description as JSON")


def _plain(v: Any) -> Any:
    if isinstance(v, dict):
        return {str(k): _plain(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_plain(x) for x in v]
    if hasattr(v, "item") and getattr(v, "ndim", 1) == 0:
        return v.item()
    if hasattr(v, "tolist"):
        return v.tolist()
    return v


def describe(path: Path) -> dict[str, Any]:
    """The description that ``mrirecon info`` prints (a dict of plain values)."""
    from mrirecon.data.inputs import load_input

    loaded = load_input(path)
    s0 = loaded.samples[0]
    c, h, w = s0.kspace.shape[-3:]
    out: dict[str, Any] = {
        "file": str(path), "format": {"fastmri": "fastMRI HDF5", "ismrmrd": "ISMRMRD raw",
                                      "cfl": "BART cfl"}[loaded.format],
        "matrix (H readout, W phase)": [h, w], "coils": c, "slices": len(loaded.samples),
        "sampling": str(loaded.sampling), "acceleration": round(loaded.sampling.acceleration, 3),
        "recon size": list(loaded.recon_size) if loaded.recon_size else None,
    }
    if loaded.voxel_mm:
        out["voxel (mm)"] = [round(v, 4) for v in loaded.voxel_mm]
    others = {str(s.meta.slice): str(_sampling(s)) for s in loaded.samples[1:]
              if str(_sampling(s)) != str(loaded.sampling)}
    if others:
        out["slices sampled differently"] = others
    out.update({k: v for k, v in loaded.description.items() if k not in out and k not in ("matrix", "slices", "coils")})
    return _plain(out)


def _sampling(sample: Any) -> Any:
    from mrirecon.data.inputs import describe_sampling

    h, w = sample.kspace.shape[-2:]
    return describe_sampling(sample.mask.expand(1, h, w), sample.meta.extra.get("padding"))


def run(args: argparse.Namespace) -> int:
    d = describe(args.file)
    if args.json:
        print(json.dumps(d, indent=1))
        return 0
    width = max(len(k) for k in d)
    for k, v in d.items():
        if isinstance(v, dict):
            v = ", ".join(f"{a}={b}" for a, b in v.items())
        elif isinstance(v, list) and len(v) > 12:
            v = f"{v[:6]} ... ({len(v)} entries)"
        print(f"{k:<{width}}  {v}")
    return 0

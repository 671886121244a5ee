"""``mrirecon prep``: data preparation (``convert`` ISMRMRD → fastMRI, ``espirit`` map sidecars, ``demo`` dataset).

The same commands are the scripts in ``data_prep/`` (``python data_prep/convert_ismrmrd.py --help``).
"""
from __future__ import annotations

import argparse
from pathlib import Path

HELP = "prepare data: convert ISMRMRD raw to fastMRI .h5, precompute coil maps, build the demo dataset"


def add_convert_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("input", type=Path, help="ISMRMRD raw file (.h5/.mrd)")
    p.add_argument("output", type=Path, help="fastMRI-style .h5 (several groups: <stem>_<group>.h5)")
    p.add_argument("--no-prewhiten", action="store_true", help="do not prewhiten with the noise scans")
    p.add_argument("--combine-averages", action="store_true", help="average repeated acquisitions")


def _kernel(text: str) -> int | str:
    """``--kernel``: a positive integer or ``auto``."""
    if text == "auto":
        return text
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer or 'auto', got {text!r}") from None


def add_espirit_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("root", type=Path, help="folder of fastMRI .h5 files")
    p.add_argument("-o", "--out", type=Path, help="sidecar folder (default: <root>_maps next to the data folder)")
    p.add_argument("--method", choices=("espirit", "rss"), default="espirit", help="map estimator (default espirit)")
    p.add_argument("--calib", type=int, help="ESPIRiT calibration region (default: detected, at most 24)")
    p.add_argument("--kernel", type=_kernel, help="ESPIRiT kernel size (default 6, BART's) or 'auto' (6 from a "
                   "10-line calibration region up, smaller for narrower ones)")
    p.add_argument("--thresh", type=float, help="ESPIRiT singular-value threshold (BART -t)")
    p.add_argument("--crop", type=float, help="ESPIRiT eigenvalue crop (BART -c)")
    p.add_argument("--sets", type=int, help="number of ESPIRiT map sets (default 1)")
    p.add_argument("--overwrite", action="store_true", help="recompute existing sidecars")


def add_demo_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--root", type=Path, help="where to build (default: $MRIRECON_DATA or ~/.cache/mrirecon, "
                                             "folder demo-v<version>)")
    p.add_argument("--tiny", action="store_true", help="the tiny variant used by the tests (40x32, ~50 slices)")
    p.add_argument("--seed", type=int, default=0, help="seed (default 0; other seeds need --root)")


def run_convert(args: argparse.Namespace) -> int:
    from mrirecon.data.prep import convert_ismrmrd

    out = convert_ismrmrd(args.input, args.output, prewhiten=not args.no_prewhiten,
                          combine_averages=args.combine_averages)
    for p in out:
        print(f"wrote {p}")
    return 0


def run_espirit(args: argparse.Namespace) -> int:
    from mrirecon.data.prep import precompute_maps

    out = args.out or args.root.with_name(args.root.name.rstrip("/") + "_maps")
    kw = {k: getattr(args, k) for k in ("calib", "kernel", "thresh", "crop", "sets")
          if getattr(args, k) is not None}
    if args.method == "rss":
        kw = {k: v for k, v in kw.items() if k == "calib"}
    rep = precompute_maps(args.root, out, method=args.method, overwrite=args.overwrite, **kw)
    print(f"{out}: {len(rep.done)} computed, {len(rep.skipped)} already done, {len(rep.failed)} failed "
          f"({rep.seconds:.1f} s)")
    for name, why in rep.failed.items():
        print(f"  failed {name}: {why}")
    return 1 if rep.failed else 0


def run_demo(args: argparse.Namespace) -> int:
    from mrirecon.data.demo import DemoConfig, build_demo, demo_root

    if args.root is None and not args.tiny and args.seed == 0:
        root = demo_root(build=True)
    else:
        from mrirecon.errors import ConfigError

        if args.root is None:
            raise ConfigError("--tiny and --seed build a non-default dataset: give --root DIR")
        cfg = DemoConfig.tiny(seed=args.seed) if args.tiny else DemoConfig(seed=args.seed)
        root = build_demo(args.root, cfg, progress=True)
    import json

    m = json.loads((root / "demo.json").read_text())
    print(f"{root}: {m['slices']} slices in {len(m['files'])} files (built in {m['build_seconds']} s)")
    return 0


SUBCOMMANDS = {
    "convert": ("convert an ISMRMRD raw file into fastMRI-style .h5 (loadable by fastmri.data.SliceDataset)",
                add_convert_arguments, run_convert),
    "espirit": ("precompute coil maps for a fastMRI folder into sidecar files (resumable)",
                add_espirit_arguments, run_espirit),
    "demo": ("build the embedded demo dataset from the MNI152 template", add_demo_arguments, run_demo),
}


def add_arguments(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="prep_command", metavar="STEP", required=True)
    for name, (help_, add, fn) in SUBCOMMANDS.items():
        q = sub.add_parser(name, help=help_, description=help_)
        add(q)
        q.set_defaults(_prep=fn)


def run(args: argparse.Namespace) -> int:
    return int(args._prep(args))

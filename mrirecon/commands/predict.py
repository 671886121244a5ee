"""``mrirecon predict``: reconstruct a folder of fastMRI files into the fastMRI submission format."""
from __future__ import annotations

import argparse
from pathlib import Path

HELP = ("reconstruct every file of a fastMRI folder with a network (or method) and write one .h5 per volume "
        "(dataset 'reconstruction', float32 [slices, h, w] at the recon size: the fastMRI submission format)")


def add_arguments(p: argparse.ArgumentParser) -> None:
    from mrirecon.commands.evaluate import add_source_arguments

    add_source_arguments(p, predictions=False)
    p.add_argument("-o", "--out", type=Path, required=True, help="output folder (one .h5 per input file)")


def run(args: argparse.Namespace) -> int:
    from mrirecon.commands.evaluate import mask_from_args, reconstructor
    from mrirecon.io.fastmri import write_submission
    from mrirecon.training.evaluation import reconstruct_volumes

    recon, desc = reconstructor(args)
    n = 0
    mask = ""
    for vol in reconstruct_volumes(recon, args.data, mask_from_args(args), args.batch_size, args.limit,
                                   maps_dir=args.maps_dir):
        write_submission(args.out / vol.file, vol.recon)
        n += 1
        mask = vol.mask
        print(f"{vol.file}: {vol.recon.shape[0]} slices {vol.recon.shape[1]}x{vol.recon.shape[2]} in "
              f"{vol.seconds:.1f} s", flush=True)
    print(f"{desc}; mask: {mask}; wrote {n} reconstructions to {args.out}")
    return 0

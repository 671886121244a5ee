"""Benchmark: training and inference throughput of a reconstruction network (slices per second).

Builds the network of a recipe (default ``pdnet_demo``), draws training items exactly as the ``recon`` task does
(:class:`mrirecon.training.recon.StepSlices`, undersampled on the fly, data loading included in a separate
column), and times optimiser steps (forward, SSIM+L1 loss, backward, Adam with gradient clipping) and
no-grad forward passes. Medians over ``--steps`` after ``--warmup`` steps. Recipe overrides are accepted as
``key=value`` (e.g. ``trainer.batch_size=4`` or ``model.iterations=10``); ``--device cuda`` with
``--precision bf16`` times a GPU under autocast.

Usage::

    python benchmarks/recon_training.py                                   # pdnet_demo on the demo data, CPU
    python benchmarks/recon_training.py pdnet_knee_4x data.root=/data/fastmri/knee --device cuda --precision bf16
"""
from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("recipe", nargs="?", default="pdnet_demo")
    p.add_argument("overrides", nargs="*", metavar="key=value")
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--device", default="cpu")
    p.add_argument("--precision", choices=("32", "bf16", "16"), default="32")
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    args = p.parse_args()

    import torch

    from mrirecon.data.transforms import collate_samples
    from mrirecon.training import load_recipe
    from mrirecon.training.recon import ReconDataModule, ReconModule

    if args.threads:
        torch.set_num_threads(args.threads)
    recipe, _ = load_recipe(args.recipe, args.overrides)
    dm = ReconDataModule(recipe)
    dm.setup()
    module = ReconModule(recipe).to(args.device)
    opt = module.configure_optimizers()["optimizer"]
    b = recipe.trainer.batch_size
    dtype = {"bf16": torch.bfloat16, "16": torch.float16}.get(args.precision)
    load_t, step_t, infer_t = [], [], []
    k = 0
    for i in range(args.warmup + args.steps):
        t0 = time.perf_counter()
        batch = collate_samples([dm.train_set[k + j] for j in range(b)]).to(args.device)  # type: ignore[index]
        k += b
        t1 = time.perf_counter()
        with torch.autocast(args.device.split(":")[0], dtype=dtype, enabled=dtype is not None):
            out, target, rng = module._outputs(batch)
            loss = module._loss(out, target, rng)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(module.parameters(), recipe.optim.grad_clip or float("inf"))
        opt.step()
        if args.device.startswith("cuda"):
            torch.cuda.synchronize()
        t2 = time.perf_counter()
        with torch.no_grad(), torch.autocast(args.device.split(":")[0], dtype=dtype, enabled=dtype is not None):
            module.model(batch)
        if args.device.startswith("cuda"):
            torch.cuda.synchronize()
        t3 = time.perf_counter()
        if i >= args.warmup:
            load_t.append(t1 - t0)
            step_t.append(t2 - t1)
            infer_t.append(t3 - t2)
    med = {name: statistics.median(v) for name, v in (("load", load_t), ("train", step_t), ("infer", infer_t))}
    res = {"recipe": args.recipe, "overrides": args.overrides, "device": args.device, "precision": args.precision,
           "threads": torch.get_num_threads(), "batch": b, "matrix": list(batch.kspace.shape[1:]),
           "parameters": sum(p.numel() for p in module.model.parameters()),
           "median_s": {k: round(v, 4) for k, v in med.items()},
           "train_slices_per_s": round(b / med["train"], 3), "infer_slices_per_s": round(b / med["infer"], 3),
           "machine": f"{platform.processor() or platform.machine()}, {platform.system()}",
           "torch": torch.__version__}
    print(json.dumps(res, indent=2))


if __name__ == "__main__":
    main()

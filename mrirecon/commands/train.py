"""``mrirecon train RECIPE [key=value ...]``: train a network from a recipe (YAML + overrides)."""
from __future__ import annotations

import argparse

HELP = "train a network from a recipe (recipes/*.yaml) with key=value overrides; --resume continues a run"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("recipe", help="recipe file, or a name in recipes/ (e.g. denoiser_dncnn); RUN/config.yaml reruns "
                                  "a run")
    p.add_argument("overrides", nargs="*", metavar="key=value",
                   help="overrides of recipe values, e.g. trainer.max_steps=100 model.width=16 (unknown keys are "
                        "errors)")
    p.add_argument("--resume", nargs="?", const=True, default=False, metavar="CKPT",
                   help="continue the run from its checkpoints/last.ckpt (or from CKPT)")
    p.add_argument("--print", dest="print_only", action="store_true",
                   help="print the resolved recipe and exit without training")


def run(args: argparse.Namespace) -> int:
    from mrirecon.training.config import dump_yaml
    from mrirecon.training.run import load_recipe, train

    recipe, path = load_recipe(args.recipe, args.overrides)
    if args.print_only:
        print(dump_yaml(recipe), end="")
        return 0
    train(recipe, path, resume=args.resume)
    return 0

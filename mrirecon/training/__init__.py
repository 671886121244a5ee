"""Configs, Lightning modules, losses and checkpoints: the training stack shared by every task.

* recipes: dataclass sections (:mod:`.recipes`), YAML + ``key=value`` overrides (:mod:`.config`);
* ``@register("name")`` (the network registry, defined in :mod:`mrirecon.denoisers.registry` so that lower
  layers can register) and :func:`load_model` (rebuild a network from a checkpoint's stored config);
* atomic, self-describing checkpoints read with ``weights_only=True`` (:mod:`.checkpoint`);
* :func:`train` (Lightning loop, CSV + TensorBoard logs, resume) and the ``denoiser`` task.

``mrirecon train RECIPE [key=value ...]`` is the command line.
"""
from mrirecon.denoisers.registry import MODELS, build_model, register
from mrirecon.training.checkpoint import load_model
from mrirecon.training.run import RunResult, load_recipe, train

__all__ = ["MODELS", "RunResult", "build_model", "load_model", "load_recipe", "register", "train"]

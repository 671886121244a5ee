"""Recipe sections shared by every training task, and the registry of tasks.

A task (``denoiser`` here; DEQ and unrolled reconstruction later) registers a :class:`TaskSpec`: its
recipe dataclass (which has at least the sections ``model``, ``optim`` and ``trainer`` defined here)
and functions that build its Lightning module, data module, callbacks and final export. A recipe
file selects its task with ``task: NAME`` (default ``denoiser``).
"""
from __future__ import annotations

import dataclasses
import importlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from mrirecon.denoisers._config import dataclass_from_dict, to_plain
from mrirecon.denoisers.registry import model_spec
from mrirecon.errors import ConfigError
from mrirecon.registry import Registry

# Modules whose import registers networks (``@register``) or tasks; models/ adds DEQ/unrolled networks.
MODEL_MODULES: list[str] = ["mrirecon.denoisers", "mrirecon.models"]
TASK_MODULES: list[str] = ["mrirecon.training.denoiser", "mrirecon.training.recon", "mrirecon.training.equilibrium"]


def import_registering_modules() -> None:
    """Import the modules that register networks and tasks (missing optional ones are skipped)."""
    for mod in MODEL_MODULES + TASK_MODULES:
        importlib.import_module(mod)


@dataclass
class ModelSection:
    """``model:`` — the registered network ``name`` and its constructor arguments (all other keys).

    In YAML: ``model: {name: dncnn, depth: 10, width: 32}``. The keys other than ``name`` are checked against
    the network's config dataclass (generated from its constructor), so defaults live in the constructor only.
    """

    name: str = "dncnn"
    options: Any = None

    def __post_init__(self) -> None:
        if self.options is None:
            self.options = _spec(self.name, "model").config()

    @classmethod
    def _from_config_dict(cls, data: Any, where: str) -> ModelSection:
        if data is None:
            data = {}
        if not isinstance(data, dict):
            raise ConfigError(f"{where}: expected a mapping with 'name' and the network's arguments, got {data!r}")
        d = dict(data)
        name = d.pop("name", cls.name)
        if not isinstance(name, str):
            raise ConfigError(f"{where}.name: expected a registered model name, got {name!r}")
        spec = _spec(str(name), where)
        return cls(str(name), dataclass_from_dict(spec.config, d, where))

    def _to_config_dict(self) -> dict[str, Any]:
        return {"name": self.name, **to_plain(self.options)}

    def config_dict(self) -> dict[str, Any]:
        """The constructor arguments as a plain dict."""
        return to_plain(self.options)


def _spec(name: str, where: str) -> Any:
    try:
        return model_spec(name)
    except KeyError as exc:
        raise ConfigError(f"{where + '.' if where else ''}name: {exc.args[0]}") from None


@dataclass
class OptimConfig:
    """``optim:`` — optimiser and learning-rate schedule (per optimiser step).

    ``schedule``: ``cosine`` (from ``lr`` to ``lr·min_factor`` over the run), ``step`` (×``gamma`` at each
    milestone, given as fractions of ``trainer.max_steps``) or ``constant``; ``warmup_steps`` of linear warm-up
    first. ``grad_clip`` > 0 clips the gradient norm.
    """

    name: Literal["adam", "adamw"] = "adam"
    lr: float = 1e-3
    betas: tuple[float, float] = (0.9, 0.999)
    weight_decay: float = 0.0
    schedule: Literal["cosine", "step", "constant"] = "cosine"
    warmup_steps: int = 0
    min_factor: float = 0.01
    milestones: tuple[float, ...] = (0.5, 0.75)
    gamma: float = 0.1
    grad_clip: float = 0.0


@dataclass
class TrainerConfig:
    """``trainer:`` — the run: steps, batches, devices, logging, checkpoints, where it is written.

    The run folder is ``out/name`` (``name`` defaults to the recipe file's stem). Every ``val_every`` steps the
    run validates, computes what the task's callbacks compute and writes ``checkpoints/last.ckpt`` (and keeps
    the last ``keep`` step checkpoints); ``max_steps`` must be a multiple of ``val_every``.

    ``devices`` per node and ``num_nodes`` (multi-GPU/multi-node with ``strategy: ddp``; under ``torchrun`` or
    SLURM's ``srun`` Lightning reads ranks from the launcher's environment). ``precision: auto`` is
    ``bf16-mixed`` on a GPU that supports bf16, ``16-mixed`` on other GPUs and ``32-true`` on CPUs.
    """

    max_steps: int = 2000
    val_every: int = 500
    batch_size: int = 16
    num_workers: int = 0
    seed: int = 0
    accelerator: str = "auto"
    devices: int = 1
    num_nodes: int = 1
    strategy: str = "auto"
    precision: str = "32-true"
    threads: int = 0
    log_every: int = 20
    keep: int = 1
    progress_bar: bool = True
    out: str = "runs"
    name: str = ""

    def __post_init__(self) -> None:
        for key in ("max_steps", "val_every", "batch_size", "devices", "num_nodes", "log_every"):
            if getattr(self, key) < 1:
                raise ConfigError(f"{key} must be >= 1, got {getattr(self, key)}")
        if self.max_steps % self.val_every:
            raise ConfigError(f"max_steps ({self.max_steps}) must be a multiple of val_every ({self.val_every}): "
                              f"checkpoints and validation happen every val_every steps")

    def run_dir(self, recipe_path: str | Path | None) -> Path:
        """``out/name`` (``name`` or the recipe file's stem)."""
        name = self.name or (Path(recipe_path).stem if recipe_path else "run")
        return Path(self.out).expanduser() / name

    def resolved_precision(self) -> str:
        """``precision``, with ``auto`` resolved for the hardware (see the class docstring)."""
        if self.precision != "auto":
            return self.precision
        import torch  # noqa: PLC0415

        if self.accelerator in ("auto", "gpu", "cuda") and torch.cuda.is_available():
            return "bf16-mixed" if torch.cuda.is_bf16_supported() else "16-mixed"
        return "32-true"


# Keys that may differ between a checkpoint's recipe and the recipe used to resume it.
RESUME_MUTABLE = {"trainer.max_steps", "trainer.progress_bar", "trainer.num_workers", "trainer.log_every",
                  "trainer.threads", "trainer.accelerator", "trainer.devices", "trainer.num_nodes", "trainer.strategy",
                  "trainer.precision", "trainer.keep",
                  "trainer.out", "trainer.name"}


@dataclass(frozen=True)
class TaskSpec:
    """A training task: its recipe dataclass and the builders the runner calls.

    Attributes:
        recipe: the recipe dataclass (fields ``task``, ``model``, ``optim``, ``trainer`` at least).
        module: ``recipe -> LightningModule``.
        datamodule: ``recipe -> LightningDataModule``.
        callbacks: ``(recipe, datamodule) -> list of callbacks`` (e.g. the Lipschitz certificate).
        export: ``(recipe, module, datamodule, run_dir) -> dict`` of final metrics, after training.
    """

    name: str
    recipe: type
    module: Callable[[Any], Any]
    datamodule: Callable[[Any], Any]
    callbacks: Callable[[Any, Any], list[Any]] = field(default=lambda recipe, dm: [])
    export: Callable[[Any, Any, Any, Path], dict[str, Any]] | None = None


TASKS: Registry[TaskSpec] = Registry("training task")


def register_task(spec: TaskSpec) -> TaskSpec:
    """Add a task (a duplicate name is an error)."""
    if not dataclasses.is_dataclass(spec.recipe):
        raise TypeError(f"task {spec.name!r}: recipe must be a dataclass")
    TASKS.add(spec.name, spec)
    return spec


def task_spec(name: str) -> TaskSpec:
    """The task registered under ``name``.

    Raises:
        ConfigError: unknown task (lists the known ones).
    """
    import_registering_modules()
    if name not in TASKS:
        raise ConfigError(f"recipe: unknown task {name!r}; known tasks: {', '.join(TASKS.names())}")
    return TASKS.get(name)


def resolve_recipe(doc: dict[str, Any], where: str) -> Any:
    """The recipe dataclass of ``doc['task']`` (default ``denoiser``) built from ``doc``.

    Raises:
        ConfigError: unknown task, key or ill-typed value; the message starts with ``where`` (e.g. the file name).
    """
    task = doc.get("task", "denoiser")
    try:
        if not isinstance(task, str):
            raise ConfigError(f"task: expected a task name, got {task!r}")
        spec = task_spec(str(task))
        return dataclass_from_dict(spec.recipe, doc, "")
    except ConfigError as exc:
        raise ConfigError(f"{where}: {exc}") from None


def diff_recipes(a: dict[str, Any], b: dict[str, Any], prefix: str = "") -> list[str]:
    """Dotted keys whose values differ between two plain recipe dicts."""
    out = []
    for k in sorted(set(a) | set(b), key=str):
        key = f"{prefix}{k}"
        va, vb = a.get(k), b.get(k)
        if isinstance(va, dict) and isinstance(vb, dict):
            out += diff_recipes(va, vb, key + ".")
        elif va != vb:
            out.append(key)
    return out

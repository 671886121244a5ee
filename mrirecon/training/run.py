"""Run a recipe: resolve it, prepare the run folder, train with Lightning, resume, export.

Run folder ``trainer.out/trainer.name`` (name defaults to the recipe file's stem)::

    config.yaml              the resolved recipe (every value; `mrirecon train RUN/config.yaml` reruns it)
    checkpoints/last.ckpt    the latest checkpoint (and step*.ckpt), written atomically
    logs/csv/metrics.csv     CSV log;  logs/tensorboard/  TensorBoard log
    model.pt, model.json     the exported network and its metrics (task-specific)
"""
from __future__ import annotations

import logging
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from mrirecon.denoisers._config import to_plain
from mrirecon.errors import ConfigError
from mrirecon.training.checkpoint import AtomicCheckpointIO, check_checkpoint, safe_load
from mrirecon.training.config import apply_overrides, dump_yaml, find_recipe, load_yaml, save_yaml
from mrirecon.training.recipes import RESUME_MUTABLE, diff_recipes, resolve_recipe, task_spec


@dataclass
class RunResult:
    """What a run produced: its folder, last checkpoint, final global step, wall time and exported metrics."""

    run_dir: Path
    checkpoint: Path
    step: int
    seconds: float
    final: dict[str, Any] = field(default_factory=dict)


def load_recipe(recipe: str | Path, overrides: Sequence[str] = ()) -> tuple[Any, Path]:
    """Resolve a recipe file (path or name in ``recipes/``) with ``key=value`` overrides.

    Returns:
        ``(recipe dataclass, recipe path)``.

    Raises:
        ConfigError: missing recipe, unknown key, ill-typed value.  DataError: unreadable YAML.
    """
    path = find_recipe(recipe)
    doc = apply_overrides(load_yaml(path), overrides)
    return resolve_recipe(doc, f"recipe {path}"), path


class _NoTips(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return "Tip:" not in record.getMessage()


def _quiet_lightning(verbose: bool) -> None:
    """Lightning's info lines (devices, model summary) only when ``verbose``; its advertising tips never."""
    for name in ("lightning.pytorch.utilities.rank_zero", "lightning.fabric.utilities.rank_zero"):
        log = logging.getLogger(name)
        log.setLevel(logging.INFO if verbose else logging.WARNING)
        if not any(isinstance(f, _NoTips) for f in log.filters):
            log.addFilter(_NoTips())


def _check_resume(ckpt_path: Path, recipe: Any) -> None:
    meta = check_checkpoint(safe_load(ckpt_path), ckpt_path)
    diff = [k for k in diff_recipes(meta["recipe"], to_plain(recipe)) if k not in RESUME_MUTABLE]
    if diff:
        raise ConfigError(f"resume {ckpt_path}: the recipe differs from the checkpoint's in {', '.join(diff)}; "
                          f"only {', '.join(sorted(RESUME_MUTABLE))} may change when resuming")


def train(recipe: Any, recipe_path: str | Path | None = None, resume: bool | str | Path = False,
          echo: Callable[[str], None] = print, callbacks: Sequence[Any] = ()) -> RunResult:
    """Train a resolved recipe with Lightning.

    Args:
        recipe: a recipe dataclass (:func:`load_recipe`).
        recipe_path: the file it came from (names the run folder when ``trainer.name`` is empty).
        resume: False (a new run; refused if the run folder already holds a checkpoint), True (continue from the run
            folder's ``checkpoints/last.ckpt``) or a checkpoint path.
        echo: where the resolved recipe and messages are printed.
        callbacks: extra Lightning callbacks.

    Returns:
        :class:`RunResult`.

    Raises:
        ConfigError: resuming with a changed recipe, or starting over an existing run.  DataError: unreadable
            checkpoint or data.
    """
    import lightning as L  # noqa: PLC0415 (heavy import, only when training)
    from lightning.pytorch.callbacks import ModelCheckpoint  # noqa: PLC0415
    from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger  # noqa: PLC0415

    spec = task_spec(recipe.task)
    t = recipe.trainer
    run_dir = t.run_dir(recipe_path)
    ckpt_dir = run_dir / "checkpoints"
    last = ckpt_dir / "last.ckpt"
    ckpt_path: Path | None = None
    if resume:
        ckpt_path = last if resume is True else Path(resume)
        _check_resume(ckpt_path, recipe)
    elif last.exists():
        raise ConfigError(f"run folder {run_dir} already holds {last}; resume it (mrirecon train ... --resume) "
                          f"or start a new run with trainer.name=NEW_NAME")
    echo(f"# resolved recipe ({recipe_path or 'in memory'})\n{dump_yaml(recipe)}")
    save_yaml(recipe, run_dir / "config.yaml")
    if t.threads > 0:
        torch.set_num_threads(t.threads)

    module = spec.module(recipe)
    dm = spec.datamodule(recipe)
    all_callbacks: list[Any] = [ModelCheckpoint(dirpath=ckpt_dir, filename="step{step:07d}", monitor="step", mode="max",
                                            save_top_k=t.keep, save_last=True, every_n_epochs=1,
                                            save_on_train_epoch_end=True, auto_insert_metric_name=False)]
    all_callbacks += [*spec.callbacks(recipe, dm), *callbacks]
    _quiet_lightning(verbose=t.progress_bar)
    resumed_step = int(safe_load(ckpt_path).get("global_step", 0)) if ckpt_path else 0
    csv_version = f"csv-from-step{resumed_step}" if ckpt_path else "csv"  # a resumed run keeps the earlier log
    loggers = [CSVLogger(run_dir, name="logs", version=csv_version),
               TensorBoardLogger(run_dir, name="logs", version="tensorboard", default_hp_metric=False)]
    trainer = L.Trainer(max_steps=t.max_steps, max_epochs=-1, accelerator=t.accelerator, devices=t.devices,
                        num_nodes=t.num_nodes, strategy=t.strategy, precision=t.resolved_precision(), logger=loggers, callbacks=all_callbacks,
                        plugins=[AtomicCheckpointIO()], log_every_n_steps=t.log_every,
                        enable_progress_bar=t.progress_bar, num_sanity_val_steps=0, inference_mode=False,
                        default_root_dir=run_dir, gradient_clip_val=recipe.optim.grad_clip or None,
                        use_distributed_sampler=False, enable_model_summary=t.progress_bar,
                        check_val_every_n_epoch=1)
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*does not have many workers.*")
        warnings.filterwarnings("ignore", message=".*smaller than the logging interval.*")
        trainer.fit(module, datamodule=dm, ckpt_path=str(ckpt_path) if ckpt_path else None)
    seconds = time.perf_counter() - start
    final: dict[str, Any] = {}
    if trainer.global_step < t.max_steps:
        echo(f"stopped at step {trainer.global_step} of {t.max_steps}; continue with --resume "
             f"(last checkpoint {last})")
    elif spec.export is not None and trainer.is_global_zero:
        final = spec.export(recipe, module, dm, run_dir)
    echo(f"trained to step {trainer.global_step} in {seconds:.1f} s; run folder {run_dir}")
    return RunResult(run_dir, last, int(trainer.global_step), seconds, final)

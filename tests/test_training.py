"""The training stack: recipes and overrides, end-to-end runs, checkpoints, resume, load_model, CLI."""
from __future__ import annotations

import shutil
from pathlib import Path

import lightning as L
import pytest
import torch
import yaml
from denoiser_helpers import tiny_dataset

from mrirecon.cli import main
from mrirecon.denoisers import load_denoiser
from mrirecon.errors import ConfigError, DataError
from mrirecon.training import load_model, load_recipe, train
from mrirecon.training.checkpoint import safe_load
from mrirecon.training.config import RECIPES_DIR, apply_overrides
from mrirecon.training.recipes import resolve_recipe

REPO = Path(__file__).resolve().parents[1]


def tiny_overrides(data: tuple[Path, Path], out: Path, name: str, steps: int = 4, every: int = 2) -> list[str]:
    train_dir, val_dir = data
    return [f"data.source=files", f"data.train={train_dir}", f"data.val={val_dir}", "data.patch=16",
            "data.val_slices=2", f"trainer.max_steps={steps}", f"trainer.val_every={every}", "trainer.batch_size=2",
            "trainer.progress_bar=false", "trainer.threads=0", f"trainer.out={out}", f"trainer.name={name}",
            "lipschitz.points=1", "lipschitz.iters=2", "lipschitz.crop=12", "lipschitz.final_points=2",
            "lipschitz.final_iters=3", "lipschitz.final_crop=12", "noise.val_sigmas=[0.058823529411764705]"]


SMALL_MODEL = {"dncnn": ["model.depth=3", "model.width=4"], "drunet": ["model.widths=[4, 8]", "model.blocks=1"],
               "gs-drunet": ["model.widths=[4, 8]", "model.blocks=1"], "unet": ["model.width=4", "model.levels=2"]}


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return tiny_dataset(tmp_path_factory.mktemp("images"))


class StopAfterFirstCheckpoint(L.Callback):
    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        trainer.should_stop = True


# -- recipes and overrides ---------------------------------------------------------------------------------------

def test_unknown_keys_are_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"unknown key 'trainer.max_stepz' \(did you mean 'trainer.max_steps'"):
        load_recipe("denoiser_dncnn", ["trainer.max_stepz=3"])
    with pytest.raises(ConfigError, match="unknown key 'model.widht'"):
        load_recipe("denoiser_dncnn", ["model.widht=3"])
    bad = tmp_path / "bad.yaml"
    bad.write_text("optim: {lr: 0.1, momentum: 0.9}\n")
    with pytest.raises(ConfigError, match=r"bad.yaml.*unknown key 'optim.momentum'"):
        load_recipe(bad)
    bad.write_text("colour: blue\n")
    with pytest.raises(ConfigError, match="unknown key 'colour'"):
        load_recipe(bad)


def test_override_values_are_type_checked() -> None:
    with pytest.raises(ConfigError, match="model.width: expected int, got 3.5"):
        load_recipe("denoiser_dncnn", ["model.width=3.5"])
    with pytest.raises(ConfigError, match="trainer.progress_bar: expected bool"):
        load_recipe("denoiser_dncnn", ["trainer.progress_bar=maybe"])
    with pytest.raises(ConfigError, match="loss: expected one of 'l1', 'l2'"):
        load_recipe("denoiser_dncnn", ["loss=l3"])
    with pytest.raises(ConfigError, match="model.name: unknown model 'nope'"):
        load_recipe("denoiser_dncnn", ["model.name=nope"])
    with pytest.raises(ConfigError, match="key=value"):
        load_recipe("denoiser_dncnn", ["trainer.max_steps"])
    with pytest.raises(ConfigError, match="is a value"):
        load_recipe("denoiser_dncnn", ["loss.kind=l1"])
    with pytest.raises(ConfigError, match="multiple of val_every"):
        load_recipe("denoiser_dncnn", ["trainer.max_steps=7", "trainer.val_every=2"])


def test_overrides_take_effect_with_the_field_types() -> None:
    recipe, _ = load_recipe("denoiser_dncnn", ["optim.lr=1e-4", "trainer.name=007", "model.lipschitz=0.9",
                                               "noise.val_sigmas=[0.1, 0.2]"])
    assert recipe.optim.lr == 1e-4 and isinstance(recipe.optim.lr, float)
    assert recipe.trainer.name == "007"
    assert recipe.model.options.lipschitz == 0.9
    assert recipe.noise.val_sigmas == (0.1, 0.2)
    # switching the model switches the schema of its section: unet has levels (and width), not depth
    doc = apply_overrides({"model": {"name": "dncnn", "width": 8}}, ["model.name=unet", "model.levels=2"])
    unet = resolve_recipe(doc, "doc").model
    assert unet.name == "unet" and unet.options.levels == 2 and unet.options.width == 8
    with pytest.raises(ConfigError, match="unknown key 'model.depth'"):
        load_recipe("denoiser_dncnn", ["model.name=unet"])


def test_each_default_is_defined_once_and_yaml_only_overrides() -> None:
    """A recipe with no keys is the dataclass defaults; the model's defaults are its constructor's."""
    recipe = resolve_recipe({}, "empty")
    from mrirecon.denoisers import DnCNN

    assert recipe.model.name == "dncnn"
    assert recipe.model.options == DnCNN.Config()
    doc = apply_overrides({}, ["model.depth=5"])
    assert resolve_recipe(doc, "x").model.options.depth == 5


@pytest.mark.parametrize("path", sorted(RECIPES_DIR.glob("denoiser_*.yaml")), ids=lambda p: p.stem)
def test_shipped_recipes_resolve(path: Path) -> None:
    recipe, _ = load_recipe(path)
    assert recipe.task == "denoiser"
    assert recipe.description


# -- end to end --------------------------------------------------------------------------------------------------

@pytest.mark.slow
@pytest.mark.parametrize("path", sorted(RECIPES_DIR.glob("denoiser_*.yaml")), ids=lambda p: p.stem)
def test_recipes_run_end_to_end(path: Path, data: tuple[Path, Path], tmp_path: Path) -> None:
    recipe, _ = load_recipe(path)
    small = SMALL_MODEL[recipe.model.name]
    extra = ["lipschitz.power_iters=2", "lipschitz.penalty_batch=1"] if recipe.lipschitz.penalty > 0 else []
    recipe, p = load_recipe(path, tiny_overrides(data, tmp_path, "run", steps=2, every=1) + small + extra)
    res = train(recipe, p, echo=lambda s: None)
    assert res.step == 2
    assert (res.run_dir / "config.yaml").is_file() and (res.run_dir / "checkpoints" / "last.ckpt").is_file()
    assert (res.run_dir / "logs" / "csv" / "metrics.csv").is_file()
    assert any((res.run_dir / "logs" / "tensorboard").iterdir())
    den = load_denoiser(res.run_dir / "model.pt")
    x = torch.randn(1, 13, 9, dtype=torch.complex64)
    assert den(x, sigma=0.05).shape == x.shape  # (noise-map networks need sigma; blind ones ignore it)
    assert set(res.final["val_psnr_db"]) == {"15"}  # sigma = 15/255


@pytest.fixture(scope="module")
def run(data: tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    """One straight 4-step run with a real-SN model, for the checkpoint/resume tests."""
    out = tmp_path_factory.mktemp("runs")
    ov = tiny_overrides(data, out, "straight") + ["model.depth=3", "model.width=4", "model.lipschitz=0.9",
                                                    "model.sn_size=8"]
    recipe, p = load_recipe("denoiser_dncnn", ov)
    res = train(recipe, p, echo=lambda s: None)
    return {"result": res, "out": out, "overrides": ov}


@pytest.mark.slow
def test_resume_continues_from_the_same_step(run: dict[str, object]) -> None:
    ov = [o for o in run["overrides"] if not o.startswith("trainer.name")] + ["trainer.name=resumed"]  # type: ignore
    recipe, p = load_recipe("denoiser_dncnn", ov)
    first = train(recipe, p, echo=lambda s: None, callbacks=[StopAfterFirstCheckpoint()])
    assert first.step == 2
    ck = safe_load(first.checkpoint)
    assert ck["global_step"] == 2
    with pytest.raises(ConfigError, match="already holds"):
        train(recipe, p, echo=lambda s: None)
    changed, _ = load_recipe("denoiser_dncnn", ov + ["optim.lr=0.5"])
    with pytest.raises(ConfigError, match="optim.lr"):
        train(changed, p, resume=True, echo=lambda s: None)
    second = train(recipe, p, resume=True, echo=lambda s: None)
    assert second.step == 4
    a = safe_load(run["result"].checkpoint)  # type: ignore[union-attr]
    b = safe_load(second.checkpoint)
    assert a["global_step"] == b["global_step"] == 4
    for key, value in a["state_dict"].items():  # bit-identical to the run that went straight through
        assert torch.equal(value, b["state_dict"][key]), key
    assert a["optimizer_states"][0]["state"].keys() == b["optimizer_states"][0]["state"].keys()


@pytest.mark.slow
def test_checkpoint_is_self_describing_and_rebuilds_the_model(run: dict[str, object]) -> None:
    res = run["result"]
    ck = safe_load(res.checkpoint)  # type: ignore[union-attr]
    meta = ck["mrirecon"]
    assert meta["format"] == "mrirecon-checkpoint" and meta["mrirecon_version"]
    assert meta["model"]["name"] == "dncnn" and meta["model"]["config"]["lipschitz"] == 0.9
    assert meta["recipe"]["trainer"]["max_steps"] == 4
    assert isinstance(meta["rng"]["torch"], torch.Tensor)
    for key in ("optimizer_states", "lr_schedulers", "global_step", "state_dict", "loops"):
        assert key in ck
    saved = yaml.safe_load((res.run_dir / "config.yaml").read_text())  # type: ignore[union-attr]
    assert saved == meta["recipe"]
    from_ckpt = load_model(res.checkpoint)  # type: ignore[union-attr]
    from_weights = load_model(res.run_dir / "model.pt")  # type: ignore[union-attr]
    x = torch.randn(2, 11, 9, dtype=torch.complex64)
    with torch.no_grad():
        torch.testing.assert_close(from_ckpt(x), from_weights(x))


@pytest.mark.slow
def test_corrupted_or_partial_checkpoints_give_clear_errors(run: dict[str, object], tmp_path: Path) -> None:
    src = run["result"].checkpoint  # type: ignore[union-attr]
    truncated = tmp_path / "truncated.ckpt"
    truncated.write_bytes(src.read_bytes()[: src.stat().st_size // 2])
    with pytest.raises(DataError, match=r"truncated.ckpt cannot be read.*truncated or corrupted"):
        load_model(truncated)
    garbage = tmp_path / "garbage.ckpt"
    garbage.write_bytes(b"not a checkpoint at all")
    with pytest.raises(DataError, match="garbage.ckpt"):
        load_model(garbage)
    partial = tmp_path / "partial.ckpt"
    ck = safe_load(src)
    del ck["optimizer_states"]
    torch.save(ck, partial)
    with pytest.raises(DataError, match="partial.ckpt.*optimizer_states"):
        recipe, p = load_recipe("denoiser_dncnn", run["overrides"])  # type: ignore[arg-type]
        train(recipe, p, resume=partial, echo=lambda s: None)
    with pytest.raises(DataError, match="does not exist"):
        load_model(tmp_path / "missing.ckpt")
    # the command line prints one line and exits with status 2
    assert main(["train", "denoiser_dncnn", *run["overrides"], "--resume", str(truncated)]) == 2  # type: ignore


@pytest.mark.slow
def test_command_line_train_and_lipschitz(data: tuple[Path, Path], tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    ov = tiny_overrides(data, tmp_path, "cli", steps=2, every=2) + ["model.depth=3", "model.width=4"]
    assert main(["train", "denoiser_dncnn", *ov]) == 0
    out = capsys.readouterr().out
    assert "# resolved recipe" in out and "max_steps: 2" in out
    run_dir = tmp_path / "cli"
    shutil.copy(run_dir / "config.yaml", tmp_path / "again.yaml")
    again, _ = load_recipe(tmp_path / "again.yaml")
    assert again.trainer.max_steps == 2 and again.model.options.width == 4
    assert main(["lipschitz", "--weights", str(run_dir / "model.pt"), "--data", str(data[1]), "--points", "2",
                 "--iters", "3", "--crop", "12", "--json", str(tmp_path / "cert.json")]) == 0
    out = capsys.readouterr().out
    assert "Lip(I-D)" in out and "Lip(2D-I)" in out
    assert (tmp_path / "cert.json").is_file()
    assert main(["train", "denoiser_dncnn", "trainer.nope=1"]) == 2
    assert "unknown key 'trainer.nope'" in capsys.readouterr().err

"""The ``recon`` training task: recipes, step-indexed data, 2-process DDP (gloo) = 1 process, kill and resume."""
from __future__ import annotations

import csv
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml

from tests._files import write_fastmri_style
from tests.conftest import REPO

TINY_MODEL = {"name": "pdnet", "iterations": 2, "primal_channels": 2, "dual_channels": 2, "width": 4, "depth": 2,
              "dual_width": 4, "dual_depth": 2, "sens_width": 2, "sens_levels": 1}


@pytest.fixture(scope="module")
def fastmri_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """fastMRI-format train/ (2 volumes x 3 slices) and val/ (1 volume x 2 slices): 4 coils, 24x19, recon 12x12."""
    root = tmp_path_factory.mktemp("fastmri")
    for i in range(2):
        write_fastmri_style(root / "train" / f"file_tr{i}.h5", slices=3, seed=10 + i)
    write_fastmri_style(root / "val" / "file_val0.h5", slices=2, seed=20)
    return root


def _recipe(tmp: Path, root: Path, **trainer: object) -> Path:
    doc = {"task": "recon", "model": TINY_MODEL,
           "data": {"source": "files", "root": str(root), "accelerations": [4], "center_fractions": [0.2]},
           "loss": {"ssim": 1.0, "l1": 1.0}, "optim": {"lr": 0.01, "grad_clip": 1.0},
           "trainer": {"max_steps": 4, "val_every": 2, "batch_size": 2, "accelerator": "cpu", "log_every": 1,
                       "progress_bar": False, "out": str(tmp / "runs"), "threads": 1, **trainer}}
    path = tmp / "tiny.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


def _env(tmp: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["MRIRECON_DATA"] = str(tmp / "cache")      # metadata caches stay in the test folder
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    env.setdefault("OMP_NUM_THREADS", "1")
    return env


def _losses(run: Path, key: str = "train/loss") -> dict[int, float]:
    rows = {}
    for f in sorted((run / "logs").glob("csv*/metrics.csv")):
        with open(f) as fh:
            for r in csv.DictReader(fh):
                if r.get(key):
                    rows[int(r["step"])] = float(r[key])
    return rows


def _weights(path: Path) -> dict[str, torch.Tensor]:
    return torch.load(path, map_location="cpu", weights_only=True)["state_dict"]


def test_recipes_resolve_and_unknown_keys_fail() -> None:
    from mrirecon.errors import ConfigError
    from mrirecon.training import load_recipe

    for name in ("pdnet_demo", "pdnet_knee_4x", "pdnet_knee_8x", "pdnet_brain_4x", "varnet_knee_4x"):
        recipe, path = load_recipe(name)
        assert recipe.task == "recon" and path.name == f"{name}.yaml"
    r, _ = load_recipe("pdnet_knee_8x", ["data.root=/somewhere", "trainer.devices=8", "trainer.num_nodes=2"])
    assert r.data.root == "/somewhere" and r.data.accelerations == (8.0,) and r.trainer.num_nodes == 2
    assert r.model.options.iterations == 10  # the constructor's default, written once
    with pytest.raises(ConfigError, match="did you mean 'model.iterations'"):
        load_recipe("pdnet_knee_4x", ["model.iteration=3"])
    with pytest.raises(ConfigError, match="center_fractions"):
        load_recipe("pdnet_knee_4x", ["data.accelerations=[4,8]"])
    from mrirecon.training.recipes import resolve_recipe
    from mrirecon.training.recon import ReconModule

    with pytest.raises(ConfigError, match="not a reconstruction network"):
        ReconModule(resolve_recipe({"task": "recon", "model": {"name": "dncnn"}}, "test"))


def test_step_indexed_items_are_pure_functions_of_k(fastmri_folder: Path, tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """Item k depends only on (seed, k): a fresh dataset gives the same slice and mask; passes cover every slice."""
    monkeypatch.setenv("MRIRECON_DATA", str(tmp_path))
    from mrirecon.training import load_recipe
    from mrirecon.training.recon import ReconDataModule

    recipe, _ = load_recipe(_recipe(tmp_path, fastmri_folder), ["data.accelerations=[4,8]",
                                                                "data.center_fractions=[0.2,0.1]"])
    a, b = ReconDataModule(recipe), ReconDataModule(recipe)
    a.setup()
    b.setup()
    assert a.train_set is not None and b.train_set is not None
    n = a.train_set.n
    assert n == 6
    assert sorted(a.train_set.record(k) for k in range(n)) == list(range(n))
    for k in (0, 5, 17):
        sa, sb = a.train_set[k], b.train_set[k]
        assert torch.equal(sa.kspace, sb.kspace) and torch.equal(sa.mask, sb.mask)
        assert (sa.meta.file, sa.meta.slice) == (sb.meta.file, sb.meta.slice)
    accels = {a.train_set[k].meta.acceleration for k in range(12)}
    assert accels == {4.0, 8.0}
    masks = {a.train_set[k].mask.numpy().tobytes() for k in range(12)}
    assert len(masks) > 6  # a new mask per item


@pytest.mark.slow
def test_ddp_two_processes_equal_one_process(fastmri_folder: Path, tmp_path: Path) -> None:
    """torchrun, 2 CPU processes (gloo), batch 1 each == 1 process, batch 2: same losses and weights."""
    recipe = _recipe(tmp_path, fastmri_folder)
    env = _env(tmp_path)
    one = subprocess.run([sys.executable, "-m", "mrirecon", "train", str(recipe), "trainer.name=one"],
                         cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert one.returncode == 0, one.stderr[-3000:]
    two = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                          "-m", "mrirecon", "train", str(recipe), "trainer.name=two", "trainer.devices=2",
                          "trainer.strategy=ddp", "trainer.batch_size=1"],
                         cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert two.returncode == 0, two.stderr[-3000:]
    la, lb = _losses(tmp_path / "runs" / "one"), _losses(tmp_path / "runs" / "two")
    assert sorted(la) == sorted(lb) == [0, 1, 2, 3]
    for step in la:
        assert la[step] == pytest.approx(lb[step], rel=1e-5, abs=1e-6), (step, la, lb)
    assert len(set(la.values())) > 1  # the loss moved
    for key in ("val/ssim", "val/psnr", "val/loss"):  # validation sharded over the 2 processes, then reduced
        va, vb = _losses(tmp_path / "runs" / "one", key), _losses(tmp_path / "runs" / "two", key)
        assert sorted(va) == sorted(vb) and len(va) == 2, key
        for step in va:
            assert va[step] == pytest.approx(vb[step], rel=1e-4), (key, va, vb)
    wa, wb = _weights(tmp_path / "runs" / "one" / "model.pt"), _weights(tmp_path / "runs" / "two" / "model.pt")
    for k in wa:  # float32 round-off of the gradient all-reduce, relative to each tensor's scale
        scale = float(wa[k].abs().max()) if wa[k].is_floating_point() else 0.0
        torch.testing.assert_close(wa[k], wb[k], rtol=0, atol=1e-4 * scale + 1e-7, msg=k)


@pytest.mark.slow
def test_sigkill_then_resume_continues_exactly(fastmri_folder: Path, tmp_path: Path) -> None:
    """SIGKILL mid-run: the last checkpoint is intact; --resume continues from its step to the same weights as an
    uninterrupted run; load_model rebuilds the network from the checkpoint."""
    from mrirecon.training import load_model
    from mrirecon.training.checkpoint import check_checkpoint, safe_load

    steps = 30
    recipe = _recipe(tmp_path, fastmri_folder, max_steps=steps, val_every=3)
    env = _env(tmp_path)
    cmd = [sys.executable, "-m", "mrirecon", "train", str(recipe)]
    ref = subprocess.run(cmd + ["trainer.name=straight"], cwd=REPO, env=env, capture_output=True, text=True,
                         timeout=600)
    assert ref.returncode == 0, ref.stderr[-3000:]

    run = tmp_path / "runs" / "killed"
    last = run / "checkpoints" / "last.ckpt"
    proc = subprocess.Popen(cmd + ["trainer.name=killed"], cwd=REPO, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    deadline = time.monotonic() + 300
    while not last.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL, "the run ended before it could be killed"
    ckpt = safe_load(last)
    check_checkpoint(ckpt, last)
    saved = int(ckpt["global_step"])
    assert 0 < saved < steps and saved % 3 == 0
    assert (run / "config.yaml").exists()
    assert ckpt["mrirecon"]["recipe"]["model"]["iterations"] == 2  # the resolved recipe travels with it

    res = subprocess.run(cmd + ["trainer.name=killed", "--resume"], cwd=REPO, env=env, capture_output=True,
                         text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    assert int(safe_load(last)["global_step"]) == steps
    # the resumed run trains steps saved..steps-1 exactly as the uninterrupted run did (same losses, in order;
    # Lightning labels the rows of a run resumed from an end-of-epoch checkpoint one step late)
    straight = _losses(tmp_path / "runs" / "straight")
    resumed = []
    for f in (run / "logs").glob("csv-from-step*/metrics.csv"):
        with open(f) as fh:
            resumed += [float(r["train/loss"]) for r in csv.DictReader(fh) if r.get("train/loss")]
    assert resumed == pytest.approx([straight[s] for s in range(saved, steps)], rel=1e-6)
    wa, wb = _weights(tmp_path / "runs" / "straight" / "model.pt"), _weights(run / "model.pt")
    for k in wa:
        torch.testing.assert_close(wa[k], wb[k], rtol=1e-5, atol=1e-7, msg=k)
    net = load_model(last)
    assert type(net).__name__ == "PDNet"
    for k, v in net.state_dict().items():
        torch.testing.assert_close(v, wb[k], msg=k)


def test_image_targets(tiny_demo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """data.target=image: the target is |image| of the slice, the data range the volume maximum of |image|."""
    import h5py
    import numpy as np

    monkeypatch.setenv("MRIRECON_DATA", str(tmp_path))
    from mrirecon.training import load_recipe
    from mrirecon.training.recon import ReconDataModule

    recipe, _ = load_recipe("pdnet_demo", [f"data.root={tiny_demo}", "data.target=image", "data.val_slices=0"])
    dm = ReconDataModule(recipe)
    dm.setup()
    for s in (dm.train_set[5], dm.val_set[1]):  # type: ignore[index]
        with h5py.File(next(tiny_demo.rglob(s.meta.file)), "r") as f:
            img = np.abs(f["image"][()])
        np.testing.assert_array_equal(s.target.numpy(), img[s.meta.slice].astype(np.float32))
        assert s.meta.max_value == pytest.approx(float(img.max()))
    with pytest.raises(Exception, match="image"):
        load_recipe("pdnet_demo", ["data.target=images"])

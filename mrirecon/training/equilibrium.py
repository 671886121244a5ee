"""The ``equilibrium`` training task: DEQ and unrolled-ADMM reconstruction networks trained end to end.

Data and forward models: :mod:`mrirecon.training.equilibrium_data` (fully sampled slices with coil maps and
the complex SENSE-combined target ``x``; a forward model drawn per batch from a step-seeded generator:
mask kind and acceleration, or a general imaging operator). Every loss is computed in the network's
normalised units (the data divided by the scale ``s`` of :mod:`mrirecon.models.model_based`; the target
is ``x / s``), as a mean over pixels and batch. The image term ``ms(x* − x)`` counts only the pixels inside the
coil maps' support (SENSE forward models): the target there is ``Σ_c conj(S_c)·(coil image)``, zero by
construction where no coil sees, not a measurement; a network that leaves those pixels to its prior
(``model.support: false``) is not taught to zero them (zeros cost 0.2–0.4 dB against ``reconstruction_rss``,
whose background is noise, on the demo test split). For networks restricted to the support the term is unchanged
(both are zero there).

``loss.mode`` selects what is minimised (``x*`` the network's output, ``T`` its iteration,
``ms(v) = mean_j |v_j|²`` per image):

* ``end-to-end`` — ``ms(x* − x)`` (any network: unrolled ADMM backpropagates through its ``T`` iterations,
  a DEQ through its fixed point, implicitly or Jacobian-free);
* ``deq-gd`` — the same for a DEQ with ``iteration: gd``: Willingham et al.'s DEQ-GD;
* ``rg1`` — the one-step upper bound, no fixed point is computed. If ``T`` is ``L``-Lipschitz with
  ``L < 1``, ``‖x* − x‖ ≤ ‖T(x) − x‖ / (1 − L)``; the loss is ``ms(T(x) − x) · φ(L̂)`` with ``L̂`` the
  spectral norm of ``J_T(x)`` at the target (``loss.power_iters`` power iterations, the last one
  differentiable) and ``φ(L) = 1/(1 − L)²`` for ``1 − L ≥ ε``, continued linearly (C¹) beyond, so that the
  loss keeps pushing ``L̂`` down where the bound is vacuous (``ε`` = ``loss.bound_eps``). For the
  gradient iteration ``T(x) − x = −η(∇f(x) + λσ²G_θ(x))``;
* ``rerg`` — DEQ-GD regularised by the bound: ``ms(x* − x) + μ · [rg1 loss]`` (``μ`` = ``loss.bound_weight``).

We could not consult the text of Willingham et al. (2024); the three losses above are this package's
reading of its RG1 / DEQ-GD / RERG and are exactly what the code computes.

Optional **link loss** (Fermanian et al.'s PnP-ReG), for the gradient iteration: with a frozen reference
denoiser ``D`` (``loss.link_denoiser``: a shipped name or a weights file) and ``z = x + σn`` (complex
white noise, ``σ`` = ``loss.link_sigma``), ``loss.link · ms(σ²G_θ(D(z)) − (z − D(z)))`` ties ``σ²G_θ`` to
the proximal residual of ``D`` (``D = prox_{σ²r}`` ⟺ ``z − D(z) = σ²∇r(D(z))``).

Optional **firm-non-expansiveness penalty** (``loss.fne`` = λ > 0; :func:`fne_term`): the denoisers'
``λ·max(‖J_{2N−I}(x̃)‖², 1 − ε)`` on the network ``N_θ`` at points between the target and a noisy target.

Logged per batch (Lightning logger): the loss terms, the drawn forward model, and for DEQs the forward
report (``train/fwd/iters``, ``.../iters_max``, ``.../residual``, ``.../nonconverged``, ``.../diverged``) and,
after ``backward()``, the adjoint solve's (``train/bwd/...``). Validation: PSNR/SSIM of ``|x*|`` against
``|x|`` per acceleration and the forward iterations. After the last step the run writes ``RUN/model.pt``
and ``RUN/model.json``, and for a model with a denoiser network ``N_θ`` (DEQ, unrolled ADMM) also ``RUN/net.pt``
and ``RUN/net.json``: ``N_θ`` alone as a denoiser weights file (certify it with ``mrirecon lipschitz``, run it in
``pnp-admm --weights``, or start another run from it with ``init.network``).
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import lightning as L
import torch
from torch.utils.data import DataLoader

from mrirecon.denoisers._config import to_plain
from mrirecon.denoisers.base import Denoiser, parameter_count
from mrirecon.denoisers.zoo import save_weights
from mrirecon.errors import ConfigError, DivergenceError
from mrirecon.models.equilibrium import DEQRecon
from mrirecon.models.model_based import ModelBased
from mrirecon.training.data import StepSampler
from mrirecon.training.equilibrium_data import (EquilibriumDataConfig, ForwardModelConfig, SliceTargets, ValidationSet,
                                                draw_forward_model)
from mrirecon.training.module import RecipeModule
from mrirecon.training.recipes import ModelSection, OptimConfig, TaskSpec, TrainerConfig, register_task

Mode = Literal["end-to-end", "deq-gd", "rg1", "rerg"]


@dataclass
class EquilibriumModelSection(ModelSection):
    """``model:`` — ``deq`` or ``unrolled-admm`` and its constructor arguments."""

    name: str = "deq"


@dataclass
class EquilibriumLossConfig:
    """``loss:`` — the training mode and its weights (see the module docstring for the exact losses)."""

    mode: Mode = "end-to-end"
    bound_weight: float = 0.1
    power_iters: int = 4
    bound_eps: float = 0.1
    link: float = 0.0
    link_denoiser: str = ""
    link_sigma: float = 0.05
    fne: float = 0.0
    fne_eps: float = 0.1
    fne_iters: int = 8
    fne_sigma: tuple[float, float] = (0.02, 0.1)

    def __post_init__(self) -> None:
        if self.bound_weight < 0 or self.link < 0 or self.link_sigma <= 0:
            raise ConfigError(f"loss: bound_weight and link must be >= 0 and link_sigma > 0, got {self.bound_weight}, "
                              f"{self.link}, {self.link_sigma}")
        if self.power_iters < 1 or not 0 < self.bound_eps < 1:
            raise ConfigError(f"loss: need power_iters >= 1 and 0 < bound_eps < 1, got {self.power_iters}, "
                              f"{self.bound_eps}")
        if self.link > 0 and not self.link_denoiser:
            raise ConfigError("loss.link > 0 needs loss.link_denoiser (a shipped denoiser name or a weights file)")
        lo, hi = self.fne_sigma
        if self.fne < 0 or not 0 < self.fne_eps < 1 or self.fne_iters < 1 or not 0 <= lo <= hi:
            raise ConfigError(f"loss: need fne >= 0, 0 < fne_eps < 1, fne_iters >= 1 and 0 <= fne_sigma[0] <= "
                              f"fne_sigma[1], got {self.fne}, {self.fne_eps}, {self.fne_iters}, {list(self.fne_sigma)}")


@dataclass
class EquilibriumInitConfig:
    """``init:`` — start from trained weights instead of a random initialisation.

    ``network``: a shipped denoiser name (``mrirecon denoisers``) or a denoiser weights file whose network is
    copied into the DEQ's / unrolled ADMM's ``N_θ`` before the first step (Gilton et al. 2021 start their
    DEQs from a pretrained denoiser). The architectures must match exactly (same registered network and
    options); a mismatch is an error that names both. Empty: random initialisation. Resuming a run restores
    its own weights, which replace these. ``widen: true`` also accepts a plain DnCNN that is narrower than the
    model's (otherwise identical): it is embedded function-preservingly
    (:func:`~mrirecon.denoisers.architectures.widen_dncnn`), so step 0 computes the source's map and the new
    channels start with zero outgoing weights.
    """

    network: str = ""
    widen: bool = False


@dataclass
class EquilibriumRecipe:
    """A recipe of the ``equilibrium`` task: every section with its defaults."""

    task: Literal["equilibrium"] = "equilibrium"
    description: str = ""
    model: EquilibriumModelSection = field(default_factory=EquilibriumModelSection)
    init: EquilibriumInitConfig = field(default_factory=EquilibriumInitConfig)
    data: EquilibriumDataConfig = field(default_factory=EquilibriumDataConfig)
    forward: ForwardModelConfig = field(default_factory=ForwardModelConfig)
    loss: EquilibriumLossConfig = field(default_factory=EquilibriumLossConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)


# ----------------------------------------------------------------------------------------------
# data module
# ----------------------------------------------------------------------------------------------
class EquilibriumDataModule(L.LightningDataModule):
    """Step-indexed training slices (random crops) and fixed-mask validation slices."""

    def __init__(self, recipe: EquilibriumRecipe) -> None:
        super().__init__()
        self.recipe = recipe
        self.train_set: SliceTargets | None = None
        self.val_set: ValidationSet | None = None

    def setup(self, stage: str | None = None) -> None:
        if self.val_set is not None:
            return
        d, t = self.recipe.data, self.recipe.trainer
        train, val = d.paths()
        train_maps, val_maps = d.maps_paths()
        self.train_set = SliceTargets(train, d, train_maps, d.max_train_slices, seed=t.seed, crop=d.crop)
        self.val_set = ValidationSet(SliceTargets(val, d, val_maps, d.val_slices, seed=None, crop=None),
                                     self.recipe.forward)

    def train_dataloader(self) -> DataLoader:
        t = self.recipe.trainer
        assert self.train_set is not None
        if self.recipe.data.crop is None and t.batch_size > 1:
            shapes = {tuple(m.matrix) for m in self.train_set.ds.files}
            if len(shapes) > 1:
                raise ConfigError(f"data: the training files have different matrix sizes {sorted(shapes)}; set "
                                  f"data.crop=[h, w] (random crops) or trainer.batch_size=1")
        sampler = StepSampler(t.val_every, t.batch_size, lambda: self.trainer.global_step if self.trainer else 0)
        return DataLoader(self.train_set, batch_size=t.batch_size, sampler=sampler, num_workers=t.num_workers,
                          drop_last=True)

    def val_dataloader(self) -> DataLoader:
        assert self.val_set is not None
        return DataLoader(self.val_set, batch_size=1, shuffle=False, num_workers=0)


# ----------------------------------------------------------------------------------------------
# losses
# ----------------------------------------------------------------------------------------------
def mean_square(v: torch.Tensor) -> torch.Tensor:
    """``mean_j |v_j|²`` per batch element ``[B]``."""
    return v.abs().square().reshape(v.shape[0], -1).mean(dim=1)


def bound_factor(lip: torch.Tensor, eps: float) -> torch.Tensor:
    """``φ(L) = 1/(1 − L)²`` for ``1 − L ≥ ε``, continued linearly with a matching slope for ``1 − L < ε``."""
    a = 1.0 - lip
    inside = 1.0 / a.clamp_min(eps).square()
    outside = 1.0 / eps ** 2 + (2.0 / eps ** 3) * (eps - a)
    return torch.where(a >= eps, inside, outside)


def real_channels(f: Any) -> Any:
    """``f`` on complex images as a map on their real views ``[..., 2]`` (for the Jacobian power iterations)."""

    def real_map(z: torch.Tensor) -> torch.Tensor:
        return torch.view_as_real(f(torch.view_as_complex(z.contiguous())))

    return real_map


def jacobian_norm(T: Any, x: torch.Tensor, iters: int, generator: torch.Generator) -> torch.Tensor:
    """Spectral norm of ``J_T(x)`` per element (power iteration; the last step differentiable in ``T``'s parameters)."""
    from mrirecon.denoisers.jacobian import jacobian_spectral_norm  # noqa: PLC0415

    return jacobian_spectral_norm(real_channels(T), torch.view_as_real(x).detach(), iters=iters, generator=generator,
                                  create_graph=True)


def target_support(A: Any, like: torch.Tensor) -> torch.Tensor | float:
    """The weight of the image loss: ``1`` inside a SENSE operator's coil support (:meth:`Sense.coil_support
    <mrirecon.operators.sense.Sense.coil_support>`, in ``like``'s real dtype), ``1.0`` where every pixel is seen or
    the operator is not SENSE."""
    from mrirecon.operators.sense import Sense  # noqa: PLC0415

    inside = A.coil_support() if isinstance(A, Sense) else None
    return 1.0 if inside is None else inside.to(like.real.dtype)


def rg1_loss(model: DEQRecon, x: torch.Tensor, data: Any, cfg: EquilibriumLossConfig, generator: torch.Generator
             ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The one-step bound ``ms(T(x) − x)·φ(L̂)`` (mean over the batch), and ``ms(T(x) − x)``, ``L̂`` per element."""
    T = model.iteration_map(data)
    if not T.image_state:
        raise ConfigError(f"loss.mode rg1/rerg needs a DEQ whose state is the image (iteration gd or fbs), "
                          f"got iteration {model.iteration!r}")
    r = mean_square(T(x) - x)
    lip = jacobian_norm(T, x, cfg.power_iters, generator)
    return (r * bound_factor(lip, cfg.bound_eps)).mean(), r.detach(), lip.detach()


def fne_term(model: ModelBased, target: torch.Tensor, cfg: EquilibriumLossConfig, generator: torch.Generator
             ) -> tuple[torch.Tensor, torch.Tensor]:
    """``loss.fne``: the firm-non-expansiveness penalty of the denoiser training on the model's network ``N_θ``.

    :func:`~mrirecon.denoisers.jacobian.fne_penalty` (``λ·max(‖J_{2N−I}(x̃)‖², 1 − ε)``) at points between the
    (normalised) target and the target plus complex white noise of a level uniform in ``loss.fne_sigma``, so
    that a network started from a firmly non-expansive denoiser (``dncnn-jac``) stays one while it is trained
    through the fixed point. Returns the penalty and the per-point norms (detached).
    """
    from mrirecon.denoisers.jacobian import fne_penalty  # noqa: PLC0415

    net = getattr(model, "net", None)
    if net is None:
        raise ConfigError(f"loss.fne needs a model with a network, got {type(model).__name__}")
    clean = target.detach()
    b = clean.shape[0]
    lo, hi = cfg.fne_sigma
    level = (lo + (hi - lo) * torch.rand(b, generator=generator, dtype=clean.real.dtype)).to(clean.device)
    noise = torch.randn(clean.shape, generator=generator, dtype=clean.dtype).to(clean.device)
    noisy = clean + level.reshape(-1, *([1] * (clean.ndim - 1))).to(clean.dtype) * noise
    res = fne_penalty(real_channels(net), torch.view_as_real(clean), torch.view_as_real(noisy), lam=cfg.fne, eps=cfg.fne_eps,
                      iters=cfg.fne_iters, generator=generator)
    return res.penalty, res.norms


def init_network(model: ModelBased, source: str, widen: bool = False) -> None:
    """Copy the network of the denoiser ``source`` (shipped name or file) into ``model.net`` (``init.network``);
    with ``widen``, a narrower plain DnCNN is embedded function-preservingly (``init.widen``).

    Raises:
        ConfigError: unknown source, or a network whose architecture differs from ``model.net``'s (beyond a
            width that ``widen`` can bridge).
    """
    from mrirecon.denoisers.architectures import DnCNN, widen_dncnn  # noqa: PLC0415
    from mrirecon.denoisers.zoo import load_denoiser  # noqa: PLC0415

    try:
        den = load_denoiser(source)
    except KeyError as exc:
        raise ConfigError(f"init.network: {exc.args[0]}") from None
    net = getattr(model, "net", None)
    if net is None:
        raise ConfigError(f"init.network: {type(model).__name__} has no network to initialise")
    if type(den) is not type(net):
        raise ConfigError(f"init.network: {source!r} is a {type(den).__name__}, the model's network a "
                          f"{type(net).__name__}; they must be the same architecture")
    if widen and isinstance(den, DnCNN) and isinstance(net, DnCNN) and den.config.width != net.config.width:
        try:
            widen_dncnn(den, net)
        except ConfigError as exc:
            raise ConfigError(f"init.network {source!r} with init.widen: {exc}") from None
        return
    theirs, ours = den.state_dict(), net.state_dict()
    if set(theirs) != set(ours) or any(theirs[k].shape != ours[k].shape for k in ours):
        diff = sorted(k for k in set(theirs) | set(ours)
                      if k not in theirs or k not in ours or theirs[k].shape != ours[k].shape)
        raise ConfigError(f"init.network: {source!r} does not match the model's network (model.network_options); "
                          f"differing entries: {diff[:6]}{' ...' if len(diff) > 6 else ''}")
    net.load_state_dict(theirs)


# ----------------------------------------------------------------------------------------------
# module
# ----------------------------------------------------------------------------------------------
class EquilibriumModule(RecipeModule):
    """Lightning module of the ``equilibrium`` task (see the module docstring)."""

    # A second line of defence: a finite loss with a non-finite gradient was seen once (a crop of background left
    # unnormalised, whose CG backward underflowed; the scale estimate now normalises it).
    skip_nonfinite_grads = True

    def __init__(self, recipe: EquilibriumRecipe) -> None:
        super().__init__(recipe)
        mode = recipe.loss.mode
        if not isinstance(self.model, ModelBased):
            raise ConfigError(f"model.name: {recipe.model.name!r} is not a model-based network (deq, unrolled-admm)")
        if mode in ("deq-gd", "rg1", "rerg") and not (isinstance(self.model, DEQRecon) and
                                                      (mode == "rg1" or self.model.iteration == "gd")):
            need = "a DEQ (model.name: deq)" if mode == "rg1" else "a DEQ with model.iteration: gd"
            raise ConfigError(f"loss.mode {mode!r} needs {need}; got model {recipe.model.name!r}"
                              + (f" with iteration {self.model.iteration!r}" if isinstance(self.model, DEQRecon) else ""))
        if recipe.loss.link > 0 and not (isinstance(self.model, DEQRecon) and self.model.iteration == "gd"):
            raise ConfigError("loss.link (the PnP-ReG link loss) needs a DEQ with model.iteration: gd")
        self._link_denoiser: Any = None
        self._report: Any = None
        self._val: dict[str, list[float]] = {}
        if recipe.init.network:
            init_network(self.model, recipe.init.network, recipe.init.widen)

    # -- helpers --------------------------------------------------------------------------------
    def link_denoiser(self) -> Any:
        if self._link_denoiser is None:
            from mrirecon.denoisers.zoo import load_denoiser  # noqa: PLC0415

            try:
                den = load_denoiser(self.recipe.loss.link_denoiser)
            except KeyError as exc:
                raise ConfigError(f"loss.link_denoiser: {exc.args[0]}") from None
            for p in den.parameters():
                p.requires_grad_(False)
            self._link_denoiser = den.to(self.device)
        return self._link_denoiser

    def _log_dict(self, values: dict[str, float], prefix: str, batch_size: int) -> None:
        for k, v in values.items():
            self.log(f"{prefix}{k}", float(v), batch_size=batch_size, prog_bar=k in ("fwd/iters",))

    # -- training -------------------------------------------------------------------------------
    def training_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
        cfg = self.recipe.loss
        draw = draw_forward_model(batch, self.recipe.forward, self.step_generator(11))
        model: ModelBased = self.model  # type: ignore[assignment]
        p = model.prepare(draw.y, draw.A)
        target = batch["target"] / p.scale.reshape(-1, *([1] * (batch["target"].ndim - 1))).to(batch["target"].dtype)
        b = target.shape[0]
        terms: dict[str, torch.Tensor] = {}
        self._report = None
        if cfg.mode in ("end-to-end", "deq-gd", "rerg"):
            out = model.solve(p)
            terms["image"] = mean_square((out - target) * target_support(draw.A, out)).mean()
            if isinstance(model, DEQRecon):
                self._report = model.last_report
        if cfg.mode in ("rg1", "rerg"):
            assert isinstance(model, DEQRecon)
            bound, r, lip = rg1_loss(model, target, p.data, cfg, self.step_generator(12))
            terms["bound"] = bound * (cfg.bound_weight if cfg.mode == "rerg" else 1.0)
            self._log_dict({"step_residual": float(r.mean()), "lipschitz": float(lip.max())}, "train/", b)
        if cfg.fne > 0:
            terms["fne"], lip = fne_term(model, target, cfg, self.step_generator(14))
            self._log_dict({"jac_2N-I": float(lip.max())}, "train/", b)
        if cfg.link > 0:
            assert isinstance(model, DEQRecon)
            den = self.link_denoiser()
            gen = self.step_generator(13)
            noise = torch.randn(target.shape, generator=gen, dtype=target.dtype).to(target.device)
            z = target.detach() + cfg.link_sigma * noise
            with torch.no_grad():
                dz = den(z)
            terms["link"] = cfg.link * mean_square(model.reg(dz) - (z - dz)).mean()
        loss = sum(terms.values())
        assert isinstance(loss, torch.Tensor)
        if not torch.isfinite(loss):
            raise DivergenceError(f"equilibrium training: the loss is {float(loss)} at step {self.global_step}; lower "
                                  f"optim.lr, set optim.grad_clip, or lower the model's step/bound")
        self.log("train/loss", loss, prog_bar=True, batch_size=b)
        self._log_dict({f"loss_{k}": float(v.detach()) for k, v in terms.items()}, "train/", b)
        self._log_dict({"acceleration": draw.acceleration}, "train/", b)
        if self._report is not None:
            self._log_dict(self._report.forward.summary("fwd/"), "train/", b)
        for name in ("step", "lam", "alpha"):
            if isinstance(model, DEQRecon) and name in model.params:
                self.log(f"param/{name}", float(model.value(name).detach()), batch_size=b)
        return loss

    def on_after_backward(self) -> None:
        super().on_after_backward()  # skips non-finite updates (skip_nonfinite_grads)
        rep = self._report
        if rep is not None and rep.backward is not None:
            self._log_dict(rep.backward.summary("bwd/"), "train/", 1)

    # -- validation -----------------------------------------------------------------------------
    def on_validation_epoch_start(self) -> None:
        self._val = {}

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        metrics = evaluate_item(self.model, batch)  # type: ignore[arg-type]
        tag = f"{float(batch['acceleration'][0]):g}x"
        for k, v in metrics.items():
            self._val.setdefault(k, []).append(v)
            self._val.setdefault(f"{k}_{tag}", []).append(v)

    def on_validation_epoch_end(self) -> None:
        if not self._val:
            return
        means = {k: sum(v) / len(v) for k, v in self._val.items()}
        for k, v in means.items():
            self.log(f"val/{k}", v, prog_bar=k in ("psnr", "ssim"))
        self.last_val = means


def evaluate_item(model: ModelBased, batch: dict[str, Any]) -> dict[str, float]:
    """PSNR/SSIM of ``|x*|`` against ``|x|`` (data range ``max|x|``) and, for DEQs, the forward iterations."""
    from mrirecon.metrics import batch_psnr, batch_ssim  # noqa: PLC0415
    from mrirecon.operators.sense import Sense  # noqa: PLC0415

    mask = batch["mask"].to(batch["kspace"].real.dtype)
    A = Sense(batch["maps"], mask)
    with torch.no_grad():
        x = model.forward_op(batch["kspace"] * mask, A)
    mag, ref = x.abs().float(), batch["target"].abs().float()
    rng = ref.flatten(1).amax(dim=1).clamp_min(torch.finfo(ref.dtype).tiny)
    out = {"psnr": float(batch_psnr(mag, ref, rng).mean()), "ssim": float(batch_ssim(mag, ref, rng).mean())}
    rep = getattr(model, "last_report", None)
    if isinstance(model, DEQRecon) and rep is not None:
        out["iters"] = float(rep.forward.iterations.double().mean())
        out["converged"] = float(rep.forward.converged.double().mean())
    return out


def export(recipe: EquilibriumRecipe, module: EquilibriumModule, dm: EquilibriumDataModule, run_dir: Path
           ) -> dict[str, Any]:
    """Write ``run_dir/model.pt`` and ``model.json`` (recipe, steps, final validation metrics per acceleration)."""
    dm.setup()
    assert dm.val_set is not None
    model = module.model.cpu().eval()
    t0 = time.perf_counter()
    sums: dict[str, list[float]] = {}
    for i in range(len(dm.val_set)):
        item = dm.val_set[i]
        batch = {k: (v.unsqueeze(0) if isinstance(v, torch.Tensor) else [v]) for k, v in item.items()}
        m = evaluate_item(model, batch)  # type: ignore[arg-type]
        tag = f"{item['acceleration']:g}x"
        for k, v in m.items():
            sums.setdefault(f"{k}_{tag}", []).append(v)
    val = {k: sum(v) / len(v) for k, v in sums.items()}
    learned = {n: float(model.value(n).detach()) for n in ("step", "lam", "alpha")
               if isinstance(model, DEQRecon) and n in model.params}
    info = {"description": recipe.description, "steps": int(module.global_step),
            "parameters": parameter_count(model),
            "learned": learned, "val": val, "val_slices": len(dm.val_set.slices),
            "val_target": "|SENSE combination of the fully sampled coil images| (data range: its maximum)",
            "eval_seconds": round(time.perf_counter() - t0, 1), "recipe": to_plain(recipe)}
    model_path = save_weights(model, run_dir / "model.pt", info)
    print("validation: " + ", ".join(f"{k} {v:.4g}" for k, v in sorted(val.items())))
    print(f"wrote {model_path} and {model_path.with_suffix('.json')}")
    out: dict[str, Any] = {"val": val, "model": model_path}
    if isinstance(getattr(model, "net", None), Denoiser):
        net_info = {"description": f"N_theta of {recipe.description}", "source": str(model_path),
                    "steps": info["steps"], "parameters": parameter_count(model.net),
                    "learned": learned, "recipe": info["recipe"]}
        out["net"] = save_weights(model.net, run_dir / "net.pt", net_info)
        print(f"wrote {out['net']} and {out['net'].with_suffix('.json')} (N_theta alone, a denoiser: "
              f"mrirecon lipschitz --weights {out['net']}, or init.network= of another run)")
    return out


TASK = register_task(TaskSpec(name="equilibrium", recipe=EquilibriumRecipe, module=EquilibriumModule,
                              datamodule=EquilibriumDataModule, export=export))

__all__ = ["EquilibriumDataModule", "EquilibriumLossConfig", "EquilibriumModelSection", "EquilibriumModule",
           "EquilibriumRecipe", "bound_factor", "evaluate_item", "jacobian_norm", "mean_square", "rg1_loss",
           "fne_term", "target_support"]

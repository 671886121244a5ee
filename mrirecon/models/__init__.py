"""Unrolled and equilibrium reconstruction networks built from solvers and denoisers.

* :class:`ReconModel` — the interface: ``model(sample) -> complex image`` (the network builds its SENSE
  operator from the sample on every call and never modifies it);
* :class:`PDNet` — learned primal-dual (unrolled PDHG with CNN primal/dual updates), registered ``pdnet``;
* :class:`VarNet` — E2E-VarNet (``fastmri.models.VarNet`` wrapped), registered ``varnet``;
* :func:`load_recon_model` — a shipped network by name (``pdnet-demo``), a weights file or a checkpoint;
* :class:`DEQRecon` (registered ``deq``) — deep equilibrium networks: gradient descent with a learned
  regularising gradient, PnP-FBS or PnP-ADMM, solved by Anderson acceleration, differentiated implicitly
  or Jacobian-free (:mod:`mrirecon.models.equilibrium`);
* :class:`UnrolledADMM` (registered ``unrolled-admm``) — differentiable unrolled PnP-ADMM with tied weights
  (:mod:`mrirecon.models.unrolled_admm`).
"""
from mrirecon.models.base import ReconModel, load_recon_model
from mrirecon.models.equilibrium import DEQRecon
from mrirecon.models.model_based import ModelBased
from mrirecon.models.pdnet import PDNet
from mrirecon.models.sensitivity import SensitivityNet, acs_box
from mrirecon.models.unrolled_admm import UnrolledADMM
from mrirecon.models.varnet import VarNet

__all__ = ["DEQRecon", "ModelBased", "PDNet", "ReconModel", "SensitivityNet", "UnrolledADMM", "VarNet", "acs_box",
           "load_recon_model"]

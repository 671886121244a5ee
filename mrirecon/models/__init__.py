"""Unrolled and equilibrium reconstruction networks built from solvers and denoisers.

* :class:`DEQRecon` (registered ``deq``) — deep equilibrium networks: gradient descent with a learned
  regularising gradient, PnP-FBS or PnP-ADMM, solved by Anderson acceleration, differentiated implicitly
  or Jacobian-free (:mod:`mrirecon.models.equilibrium`);
* :class:`UnrolledADMM` (registered ``unrolled-admm``) — differentiable unrolled PnP-ADMM with tied weights
  (:mod:`mrirecon.models.unrolled_admm`).
"""
from mrirecon.models.equilibrium import DEQRecon
from mrirecon.models.model_based import ModelBased
from mrirecon.models.unrolled_admm import UnrolledADMM

__all__ = ["DEQRecon", "ModelBased", "UnrolledADMM"]

"""Iterative solvers: the run loop, CG, FISTA, ADMM, PDHG (plug-and-play and DEQ fixed points build on them).

Every solver is a :class:`~mrirecon.solvers.base.Solver` (``init``/``step``/``done``) driven by
:func:`~mrirecon.solvers.base.run`, which returns the solution and a
:class:`~mrirecon.solvers.base.History`. Objective terms with exact proxes live in
:mod:`mrirecon.solvers.terms`. Plug-and-play solvers (PnP-ADMM, PnP-FBS, gradient-step PnP) are in
:mod:`mrirecon.solvers.pnp`, their data-consistency proxes (exact where the operator allows, else CG) in
:mod:`mrirecon.solvers.dataprox`.
"""
from mrirecon.solvers.base import History, Solver, State, run, with_state
from mrirecon.solvers.cg import CGState, ConjugateGradient
from mrirecon.solvers.dataprox import CartesianProx, CGProx, CirculantProx, DataProx, DiagonalProx, data_prox
from mrirecon.solvers.pnp import (
                                  DenoiserFn,
                                  GradientStepPnP,
                                  GradientStepPrior,
                                  GSPnPState,
                                  PnPADMM,
                                  PnPADMMState,
                                  PnPFBS,
                                  PnPFBSState,
                                  contraction_bound,
)
from mrirecon.solvers.power import power_iteration
from mrirecon.solvers.proximal import FISTA, FISTAState
from mrirecon.solvers.splitting import ADMM, PDHG, ADMMState, PDHGState
from mrirecon.solvers.terms import (
                                  L1,
                                  L1Wavelet,
                                  L2Data,
                                  Term,
                                  Tikhonov,
                                  TotalVariation,
                                  group_soft_threshold,
                                  operator_norm_bound,
                                  soft_threshold,
)

__all__ = [
                                  "ADMM",
                                  "FISTA",
                                  "L1",
                                  "PDHG",
                                  "ADMMState",
                                  # plug-and-play
                                  "CGProx",
                                  "CGState",
                                  "CartesianProx",
                                  "CirculantProx",
                                  "ConjugateGradient",
                                  "DataProx",
                                  "DenoiserFn",
                                  "DiagonalProx",
                                  "FISTAState",
                                  "GSPnPState",
                                  "GradientStepPnP",
                                  "GradientStepPrior",
                                  "History",
                                  "L1Wavelet",
                                  "L2Data",
                                  "PDHGState",
                                  "PnPADMM",
                                  "PnPADMMState",
                                  "PnPFBS",
                                  "PnPFBSState",
                                  "Solver",
                                  "State",
                                  "Term",
                                  "Tikhonov",
                                  "TotalVariation",
                                  "contraction_bound",
                                  "data_prox",
                                  "group_soft_threshold",
                                  "operator_norm_bound",
                                  "power_iteration",
                                  "run",
                                  "soft_threshold",
                                  "with_state",
]

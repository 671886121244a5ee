"""Iterative solvers: the run loop, CG, FISTA, ADMM, PDHG, plug-and-play and DEQ fixed points."""

"""Unrolled and equilibrium reconstruction networks built from solvers and denoisers."""

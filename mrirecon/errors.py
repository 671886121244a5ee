"""Exception types of mrirecon.

Every error raised by the library for bad input derives from :class:`MriReconError` and
names the object (operator, file, field), what was expected and what arrived. The command
line turns these into a one-line message and a non-zero exit status; the library itself
never exits.
"""
from __future__ import annotations


class MriReconError(Exception):
    """Base class of all errors that mrirecon raises for bad input or failed runs."""


class ShapeError(MriReconError, ValueError):
    """A tensor or array has the wrong shape for the object that received it."""


class DTypeError(MriReconError, TypeError):
    """A tensor or array has the wrong dtype (e.g. real where complex is required)."""


class NonFiniteError(MriReconError, ValueError):
    """A tensor or array holds NaN or Inf where finite values are required."""


class DataError(MriReconError, ValueError):
    """A file is missing a field, is truncated, or holds values that cannot be used."""


class ConfigError(MriReconError, ValueError):
    """A configuration (recipe, CLI option) has an unknown key or an invalid value."""


class MissingWeightsError(ConfigError):
    """A method's network weights (a shipped name or a file) are not available in this installation."""


class DivergenceError(MriReconError, RuntimeError):
    """An iterative method stopped because its iterates blew up."""

"""Exception types raised by bayes_pmf.

Every error a user can trigger with bad input derives from :class:`BayesPMFError`,
so callers (and the CLI) can catch the package's own problems apart from bugs.
Messages name the column or argument, how many rows are affected and one example.
"""

from __future__ import annotations


class BayesPMFError(Exception):
    """Base class of every error bayes_pmf raises on purpose.

    ``setting`` names the argument or setting concerned (e.g. ``"n_factors"``, or a tuple
    of names), so that a front end can point at its own name for it (the CLI's
    ``--factors``): library messages never name command-line flags, and advise a value in
    Python's words (``invalid='drop'``), which a front end may rewrite as its own."""

    def __init__(self, *args, setting: str | tuple[str, ...] | None = None) -> None:
        super().__init__(*args)
        self.setting = setting

    def __reduce__(self):  # the setting survives pickling (an error raised on a Dask worker)
        return _remade, (type(self), self.args, self.__dict__)


def _remade(cls, args: tuple, state: dict) -> BayesPMFError:
    error = cls(*args)
    error.__dict__.update(state)
    return error


class Terminated(KeyboardInterrupt):
    """SIGTERM (``kill PID``, a batch scheduler's or a container's stop) as the command
    line receives it: a KeyboardInterrupt, so that it stops a run as Ctrl-C does (chain
    processes and Dask tasks stopped, no run folder half written), and the command
    exits with SIGTERM's status, 143."""


class RatingsDataError(BayesPMFError, ValueError):
    """The ratings table is malformed: missing columns, NaN, off-scale, duplicates, empty."""


class RatingsFileError(BayesPMFError, ValueError):
    """A ratings file cannot be read or its layout cannot be recognised."""


class ConfigError(BayesPMFError, ValueError):
    """An argument or setting is outside its valid range (d <= 0, lambda < 0, ...); its
    ``setting`` names it (see :class:`BayesPMFError`)."""


class UnknownIdError(BayesPMFError, LookupError):
    """Prediction was asked for a user or item the model never saw in training."""

    def __str__(self) -> str:  # LookupError would quote the message like a key
        return str(self.args[0]) if self.args else ""


class NumericalError(BayesPMFError, ArithmeticError):
    """A solver met a singular system or produced a non-finite value."""


class DistributedError(BayesPMFError, RuntimeError):
    """A distributed fit lost what it could not recompute (its workers)."""


class ResultFileError(BayesPMFError, ValueError):
    """A saved result cannot be loaded: truncated, incompatible, or not a bayes_pmf file."""


class ConvergenceWarning(UserWarning):
    """An iterative fit stopped at its iteration cap before its convergence criterion
    was met (the result is usable, but not the optimum the method promises)."""


def check_count(name: str, value, minimum: int = 1) -> None:
    """A ConfigError naming ``name`` unless ``value`` is an integer >= ``minimum`` (the
    one check every count setting gets: draws, chains, sweeps, ...)."""
    import numbers

    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        wanted = "a positive integer" if minimum == 1 else f"an integer >= {minimum}"
        raise ConfigError(f"{name} must be {wanted}, got {value!r}", setting=name)


def check_seed(value, name: str = "rng") -> None:
    """A ConfigError unless ``value`` can seed a run reproducibly and be recorded with
    its results: None, a numpy Generator, or an integer in [0, 2**63)."""
    import numbers

    import numpy as np

    if value is None or isinstance(value, np.random.Generator):
        return
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) \
            or not 0 <= value < 2**63:
        raise ConfigError(f"{name} must be an integer from 0 to 2**63 - 1 (or a numpy "
                          f"Generator), got {value!r}",
                          setting=name)


def plain_scalar(value):
    """The plain Python value of a numpy scalar (np.int64(1) prints as 1): every message
    that quotes a value shows it so."""
    import numpy as np

    return value.item() if isinstance(value, np.generic) else value


def warn_caller(message: str, category: type[Warning] = UserWarning, *,
                setting: str | None = None) -> None:
    """``warnings.warn`` attributed to the first caller outside this package (the
    user's line in a script or notebook), however deep inside it the warning arose.
    ``setting``: the setting the message advises (as :class:`BayesPMFError`'s), kept on
    the warning as its ``setting`` attribute."""
    import sys
    import warnings
    from pathlib import Path

    package = str(Path(__file__).parent)
    # stacklevel 1 is this function's own line; 2 its caller's, and so on outwards
    level, frame = 2, sys._getframe(1)
    while frame is not None and frame.f_code.co_filename.startswith(package):
        level, frame = level + 1, frame.f_back
    warning = category(message)
    warning.setting = setting
    warnings.warn(warning, stacklevel=level)

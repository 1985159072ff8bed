"""Inference engines, each returning a PMFResult: ALS (exact or CG), the baselines, the
NumPy Gibbs sampler, constrained PMF (L-BFGS), and the PyMC engines (MAP, NUTS, ADVI;
imported on first use, as PyMC is slow to import). Row blocks and chains run through the
executor seam of :mod:`bayes_pmf.engines.parallel`: on this machine (LocalExecutor)
or on a Dask cluster (DaskExecutor, the optional ``dask`` extra)."""

from .als import (
    als_result,
    fit_als,
    fit_bias_baseline,
    fit_global_mean,
    fit_item_mean,
    fit_user_mean,
    objective_trace_of,
)
from .constrained import fit_constrained
from .dask_executor import DaskExecutor
from .gibbs import sample_gibbs
from .parallel import Executor, LocalExecutor

_PYMC = ("fit_map", "sample_nuts", "fit_advi", "available_nuts_sampler")


def __getattr__(name: str):
    if name in _PYMC:
        from . import pymc_fit

        return getattr(pymc_fit, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "DaskExecutor", "Executor", "LocalExecutor", "als_result", "fit_als", "fit_bias_baseline",
    "fit_constrained", "fit_global_mean", "fit_item_mean", "fit_user_mean",
    "objective_trace_of", "sample_gibbs",
]

"""bayes_pmf: Bayesian Probabilistic Matrix Factorization of explicit ratings.

Data flows one way through the package's wings (docs/architecture.md):

    data (RatingsData, files, MovieLens, splits) -> model (PMFSpec, FactorParams, the PyMC
    model, synthetic data) -> engines (ALS, Gibbs, PyMC MAP/NUTS/ADVI, constrained PMF,
    baselines) -> result (PMFResult around ArviZ InferenceData, held-out predictions)
    -> analysis (metrics, diagnostics, ranking, recommendations) and plots -> workflows
    (the main job, run folders, reports) -> cli

Everything a user needs is importable from here, e.g. ``bayes_pmf.fit_als``; the PyMC
engines (``fit_map``, ``sample_nuts``, ``fit_advi``) import PyMC on first use.
"""

from . import _startup

if _startup.is_the_command():  # Ctrl-C while the command imports: no traceback
    _startup.quiet_interrupt()

from . import provenance  # noqa: E402
from .analysis import (
    CalibrationResult,
    convergence_summary,
    fold_in_feedback,
    fold_in_user,
    heldout_log_predictive_density,
    identifiable_draws,
    loo,
    mae,
    predict_folded,
    recommend,
    recommend_many,
    recommend_new_user,
    recommend_with_feedback,
    rmse,
    rmse_by_activity,
    rmse_by_activity_table,
    score,
    score_matrix,
    select_hyperparameters,
    select_model,
    similar_items,
    similar_users,
    simulation_based_calibration,
)
from .data import (
    IngestReport,
    RatingScale,
    RatingsData,
    Split,
    kfold,
    load_item_info,
    load_movielens,
    load_ratings,
    load_split,
    load_user_info,
    per_user_split,
    random_split,
    temporal_split,
)
from .engines import (
    DaskExecutor,
    Executor,
    LocalExecutor,
    als_result,
    fit_als,
    fit_bias_baseline,
    fit_constrained,
    fit_global_mean,
    fit_item_mean,
    fit_user_mean,
    objective_trace_of,
    sample_gibbs,
)
from .errors import (
    BayesPMFError,
    ConfigError,
    ConvergenceWarning,
    DistributedError,
    NumericalError,
    RatingsDataError,
    RatingsFileError,
    ResultFileError,
    UnknownIdError,
)
from .model import (
    FactorParams,
    PMFSpec,
    SyntheticRatings,
    draw_from_prior,
    make_synthetic,
    objective,
)
from .result import (
    PMFResult,
    held_out_predictions,
    interval_coverage,
    load_result,
    predictive_draws,
    predictive_summary,
    save_result,
)

__version__ = "0.1.0"

_PYMC = ("fit_map", "sample_nuts", "fit_advi")


def __getattr__(name: str):
    """The PyMC engines, imported on first use (PyMC takes seconds to import)."""
    if name in _PYMC:
        from .engines import pymc_fit

        return getattr(pymc_fit, name)
    raise AttributeError(f"module 'bayes_pmf' has no attribute {name!r}")


__all__ = [
    "BayesPMFError", "CalibrationResult", "ConfigError", "ConvergenceWarning", "DaskExecutor",
    "DistributedError", "Executor",
    "FactorParams",
    "IngestReport", "LocalExecutor", "NumericalError", "PMFResult", "PMFSpec", "RatingScale",
    "RatingsData", "RatingsDataError", "RatingsFileError", "ResultFileError", "Split",
    "SyntheticRatings", "UnknownIdError", "als_result", "convergence_summary", "fit_advi",
    "fit_als", "fit_bias_baseline", "fit_constrained", "fit_global_mean", "fit_item_mean",
    "fit_map", "fit_user_mean", "fold_in_feedback", "fold_in_user", "held_out_predictions",
    "heldout_log_predictive_density", "identifiable_draws", "interval_coverage", "kfold", "loo",
    "load_item_info", "load_user_info", "load_movielens", "load_ratings", "load_result",
    "load_split", "draw_from_prior", "mae",
    "make_synthetic",
    "objective",
    "objective_trace_of", "per_user_split", "predict_folded", "predictive_draws",
    "predictive_summary", "provenance", "random_split", "recommend", "recommend_many",
    "recommend_new_user", "recommend_with_feedback", "rmse", "rmse_by_activity",
    "rmse_by_activity_table", "sample_gibbs",
    "sample_nuts", "save_result", "score", "score_matrix", "select_hyperparameters", "select_model",
    "similar_items", "similar_users", "simulation_based_calibration", "temporal_split",
]

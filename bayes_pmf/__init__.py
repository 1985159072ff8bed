"""bayes_pmf: Bayesian Probabilistic Matrix Factorization of explicit ratings.

Data flows one way: ratings table -> :class:`RatingsData` -> split -> solver (ALS,
PyMC MAP/NUTS/ADVI, Gibbs) -> :class:`PMFResult` (ArviZ InferenceData) -> metrics,
plots, reports.
"""

from .als import als_result, fit_als, objective_trace_of
from .baselines import fit_bias_baseline, fit_global_mean, fit_item_mean, fit_user_mean
from .data import IngestReport, RatingScale, RatingsData
from .datasets import load_movielens, load_ratings, make_synthetic
from .errors import (
    BayesPMFError,
    ConfigError,
    NumericalError,
    RatingsDataError,
    RatingsFileError,
    ResultFileError,
    UnknownIdError,
)
from .evaluation import score
from .metrics import mae, rmse, rmse_by_activity
from .objective import FactorParams, objective
from .priors import PMFSpec
from .results import PMFResult, load_result, save_result
from . import provenance
from .split import kfold, per_user_split, random_split, temporal_split

__version__ = "0.1.0"

__all__ = [
    "BayesPMFError", "ConfigError", "FactorParams", "IngestReport", "NumericalError",
    "PMFResult", "PMFSpec", "RatingScale", "RatingsData", "RatingsDataError",
    "RatingsFileError", "ResultFileError", "UnknownIdError", "als_result", "fit_als",
    "fit_bias_baseline", "fit_global_mean", "fit_item_mean", "fit_user_mean", "kfold",
    "load_movielens", "load_ratings", "load_result", "mae", "make_synthetic", "objective",
    "objective_trace_of", "per_user_split", "random_split", "rmse", "rmse_by_activity",
    "save_result", "score", "temporal_split",
]

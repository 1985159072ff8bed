"""What a fitted model tells: accuracy (metrics), ranking quality, convergence
diagnostics, the MAP-vs-ALS cross-check (``analysis.crosscheck``, imports PyMC),
hyperparameter selection by cross-validation, recommendations with uncertainty, and
simulation-based calibration of the Gibbs sampler."""

from .calibration import CalibrationResult, simulation_based_calibration
from .diagnostics import (
    convergence_summary,
    heldout_log_predictive_density,
    identifiable_draws,
    loo,
)
from .metrics import mae, rmse, rmse_by_activity, rmse_by_activity_table, score
from .recommend import (
                        fold_in_feedback,
                        fold_in_user,
                        predict_folded,
                        recommend,
                        recommend_many,
                        recommend_new_user,
                        recommend_with_feedback,
                        score_matrix,
                        similar_items,
                        similar_users,
)
from .selection import ModelSelection, Selection, select_hyperparameters, select_model

__all__ = [
    "CalibrationResult", "ModelSelection", "Selection", "convergence_summary",
    "fold_in_feedback", "fold_in_user", "heldout_log_predictive_density",
    "identifiable_draws", "loo", "mae", "predict_folded", "recommend", "recommend_many",
    "recommend_with_feedback",
    "recommend_new_user", "rmse", "rmse_by_activity", "rmse_by_activity_table", "score",
    "score_matrix", "select_hyperparameters", "select_model", "similar_items", "similar_users",
    "simulation_based_calibration",
]

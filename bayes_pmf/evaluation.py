"""Scoring a fitted model on held-out ratings, cold-start pairs included.

Held-out pairs whose user or item has no training rating are scored with the model's
explicit cold-start fallback (``unknown="prior"``) and counted, never dropped, so
numbers stay comparable with peers that score every test rating.
"""

from __future__ import annotations

from typing import Protocol

import numpy as np
import pandas as pd

from .data import RatingsData
from .metrics import mae, rmse, rmse_by_activity


class Predictor(Protocol):
    def predict(self, users, items, *, unknown: str = "error") -> np.ndarray: ...


def train_counts_of_test_users(train: RatingsData, test: RatingsData) -> np.ndarray:
    users, _ = test.id_pairs()
    idx = train.encode_users(users)
    return np.where(idx >= 0, train.user_counts[np.maximum(idx, 0)], 0)


def score(model: Predictor, train: RatingsData, test: RatingsData,
          *, clip: bool = True) -> dict:
    """RMSE / MAE on every held-out rating (clipped to the rating scale by default, as
    peers do), the same on warm and cold-start pairs, and RMSE by user activity."""
    users, items = test.id_pairs()
    predicted = model.predict(users, items, unknown="prior")
    if clip and train.scale.bounded:
        predicted = train.scale.clip(predicted)
    cold = (train.encode_users(users) < 0) | (train.encode_items(items) < 0)
    by_activity = rmse_by_activity(test.rating, predicted,
                                   train_counts_of_test_users(train, test))
    return {
        "rmse": rmse(test.rating, predicted),
        "mae": mae(test.rating, predicted),
        "n_test": int(len(predicted)),
        "n_cold_scored": int(cold.sum()),
        "rmse_warm": rmse(test.rating[~cold], predicted[~cold]) if (~cold).any() else None,
        "rmse_cold": rmse(test.rating[cold], predicted[cold]) if cold.any() else None,
        "rmse_by_activity": by_activity.to_dict(orient="records"),
        **_coverage(model, users, items, test.rating),
    }


def _coverage(model, users, items, actual) -> dict:
    """Predictive interval coverage, for models with a predictive distribution."""
    from .predictive import interval_coverage, predictive_summary
    from .results import PMFResult

    if not isinstance(model, PMFResult):
        return {}
    summary = predictive_summary(model, users, items, actual=actual)
    return interval_coverage(summary)


TABLE_COLUMNS = ("method", "rmse", "mae", "coverage_50", "coverage_90", "fit_seconds")


def results_table(results: list[dict]) -> pd.DataFrame:
    """One row per method; coverage is NaN for baselines without a predictive."""
    return pd.DataFrame([{k: r.get(k, np.nan) for k in TABLE_COLUMNS} for r in results])

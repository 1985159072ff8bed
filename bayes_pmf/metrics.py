"""Accuracy metrics of predicted ratings against held-out ratings.

``rmse_by_activity`` breaks the error down by how many training ratings each test
user has, in the buckets the PMF paper uses to show where models fail.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from .errors import ConfigError

# Upper bounds (inclusive) of the user-activity buckets; the last bucket is open.
ACTIVITY_EDGES = (5, 10, 20, 40, 80, 160)


def _check(actual: np.ndarray, predicted: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    actual = np.asarray(actual, dtype=float)
    predicted = np.asarray(predicted, dtype=float)
    if actual.shape != predicted.shape:
        raise ConfigError(f"actual {actual.shape} and predicted {predicted.shape} differ in shape")
    if len(actual) == 0:
        raise ConfigError("no ratings to score")
    if not np.all(np.isfinite(predicted)):
        bad = int(np.sum(~np.isfinite(predicted)))
        raise ConfigError(f"{bad} predictions are NaN/inf; score only finite predictions")
    return actual, predicted


def rmse(actual, predicted) -> float:
    actual, predicted = _check(actual, predicted)
    return float(np.sqrt(np.mean((actual - predicted) ** 2)))


def mae(actual, predicted) -> float:
    actual, predicted = _check(actual, predicted)
    return float(np.mean(np.abs(actual - predicted)))


def activity_labels(edges: tuple[int, ...] = ACTIVITY_EDGES) -> list[str]:
    labels, lower = [], 1
    for upper in edges:
        labels.append(f"{lower}-{upper}")
        lower = upper + 1
    labels.append(f">{edges[-1]}")
    return labels


def activity_bucket(train_counts: np.ndarray, edges: tuple[int, ...] = ACTIVITY_EDGES) -> np.ndarray:
    """Bucket index of each count (0 training ratings falls in bucket -1: cold users)."""
    counts = np.asarray(train_counts)
    bucket = np.searchsorted(np.asarray(edges), counts, side="left")
    return np.where(counts <= 0, -1, bucket)


def rmse_by_activity(actual, predicted, train_counts,
                     edges: tuple[int, ...] = ACTIVITY_EDGES) -> pd.DataFrame:
    """RMSE of test ratings grouped by their user's number of training ratings.

    ``train_counts`` gives, per test rating, its user's training-rating count (0 for a
    cold user, reported in its own row '0 (cold)').
    """
    actual, predicted = _check(actual, predicted)
    bucket = activity_bucket(train_counts, edges)
    labels = activity_labels(edges)
    rows = []
    for index, label in [(-1, "0 (cold)")] + list(enumerate(labels)):
        mask = bucket == index
        if index == -1 and not mask.any():
            continue
        n = int(mask.sum())
        rows.append({
            "bucket": label,
            "n_test": n,
            "rmse": float(np.sqrt(np.mean((actual[mask] - predicted[mask]) ** 2))) if n else np.nan,
        })
    return pd.DataFrame(rows)

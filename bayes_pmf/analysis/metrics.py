"""Accuracy of predicted ratings against held-out ratings, and the scoring of a fitted
model on a held-out set.

:func:`score` reads the model's stored held-out predictions (computed once by
:func:`~bayes_pmf.result.predictive.held_out_predictions`; computed first if absent) and
scores every held-out rating: pairs whose user or item has no training rating get the
model's explicit cold-start fallback (``unknown="prior"``) and are counted, never
dropped, so numbers stay comparable with peers that score every test rating.
``rmse_by_activity`` breaks the error down by how many training ratings each test user
has, in the buckets the PMF paper uses to show where models fail.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..errors import ConfigError
from ..result.predictive import COVERAGE_LEVELS, interval_coverage, stored_predictions

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
    """Root mean squared error of ``predicted`` against ``actual``: arrays of one shape,
    not empty, finite predictions (ConfigError otherwise)."""
    actual, predicted = _check(actual, predicted)
    return float(np.sqrt(np.mean((actual - predicted) ** 2)))


def mae(actual, predicted) -> float:
    """Mean absolute error of ``predicted`` against ``actual``: arrays of one shape, not
    empty, finite predictions (ConfigError otherwise)."""
    actual, predicted = _check(actual, predicted)
    return float(np.mean(np.abs(actual - predicted)))


def activity_labels(edges: tuple[int, ...] = ACTIVITY_EDGES) -> list[str]:
    labels, lower = [], 1
    for upper in edges:
        labels.append(f"{lower}-{upper}")
        lower = upper + 1
    labels.append(f">{edges[-1]}")
    return labels


def activity_bucket(train_counts: np.ndarray,
                    edges: tuple[int, ...] = ACTIVITY_EDGES) -> np.ndarray:
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


def train_counts_of_test_users(train, test) -> np.ndarray:
    """Per held-out rating, its user's number of training ratings (0: a cold user)."""
    users, _ = test.id_pairs()
    idx = train.encode_users(users)
    return np.where(idx >= 0, train.user_counts[np.maximum(idx, 0)], 0)


def rmse_by_activity_table(predictions: dict[str, np.ndarray], train, test,
                           edges: tuple[int, ...] = ACTIVITY_EDGES) -> pd.DataFrame:
    """Long table (method, bucket, n_test, rmse) of :func:`rmse_by_activity` for several
    methods' predictions of the held-out ratings ``test`` (in its order), users with
    training ratings only: the data of the RMSE-by-activity figure."""
    counts = train_counts_of_test_users(train, test)
    frames = []
    for method, predicted in predictions.items():
        table = rmse_by_activity(test.rating, predicted, counts, edges)
        frames.append(table[table["bucket"] != "0 (cold)"].assign(method=method))
    return pd.concat(frames, ignore_index=True)[["method", "bucket", "n_test", "rmse"]]


def score(result, train, test, *, clip: bool = True, round: bool = False) -> dict:
    """RMSE / MAE on every held-out rating of ``test`` (predictions clipped to the rating
    scale by default, as peers do; with ``round``, also snapped to the rating grid, the
    PMF paper's "map back and round"), the same on warm and cold-start pairs, RMSE by
    user activity and, for models with a predictive distribution, the coverage of their
    central 50% and 90% predictive intervals (continuous and snapped to the grid)."""
    _, table = stored_predictions(result, test)
    predicted = table["mean"].to_numpy()
    if round and train.scale.bounded:
        predicted = train.scale.round(predicted)
    elif clip and train.scale.bounded:
        predicted = train.scale.clip(predicted)
    cold = (table["cold_user"] | table["cold_item"]).to_numpy()
    by_activity = rmse_by_activity(test.rating, predicted,
                                   train_counts_of_test_users(train, test))
    scores = {
        "rmse": rmse(test.rating, predicted),
        "mae": mae(test.rating, predicted),
        "n_test": int(len(predicted)),
        "n_cold_scored": int(cold.sum()),
        "rmse_warm": rmse(test.rating[~cold], predicted[~cold]) if (~cold).any() else None,
        "rmse_cold": rmse(test.rating[cold], predicted[cold]) if cold.any() else None,
        "rmse_by_activity": by_activity.to_dict(orient="records"),
    }
    if "lower_50" in table:
        scores.update(interval_coverage(table, COVERAGE_LEVELS, "held_out_rating"))
    scores.update(grid_scores(table))
    return scores


PIT_BINS = 10


def grid_scores(table: pd.DataFrame, rng=0) -> dict:
    """Proper scoring rules of the predictive probabilities of the rating levels (the
    ``prob_<rating>`` columns of the stored predictions; none for the mean baselines or a
    scale without a grid):

    * ``log_score``: mean log P(observed level), higher is better;
    * ``rps``: ranked probability score, mean over ratings of sum_k (F_k - 1[r <= v_k])^2
      over the K - 1 lower levels (F: the predictive cdf on the grid), lower is better;
    * ``pit_histogram``: shares of the randomised PIT values F(r-) + U P(r), U ~ U(0, 1)
      seeded by ``rng``, in 10 equal bins (uniform for a calibrated model: 0.1 each),
      and ``pit_max_deviation``, the largest distance of a share from 0.1."""
    columns = [name for name in table.columns if name.startswith("prob_")]
    if not columns:
        return {}
    values = np.array([float(name[len("prob_"):]) for name in columns])
    probabilities = table[columns].to_numpy()
    actual = table["held_out_rating"].to_numpy()
    level = np.argmin(np.abs(actual[:, None] - values[None, :]), axis=1)
    if not np.allclose(values[level], actual):
        return {}  # ratings off the grid: no level to score
    rows = np.arange(len(actual))
    cdf = np.cumsum(probabilities, axis=1)
    observed_cdf = (np.arange(len(values))[None, :] >= level[:, None]).astype(float)
    below = cdf[rows, level] - probabilities[rows, level]
    pit = below + np.random.default_rng(rng).random(len(actual)) * probabilities[rows, level]
    shares = np.histogram(np.clip(pit, 0.0, 1.0), bins=PIT_BINS, range=(0.0, 1.0))[0] / len(pit)
    return {
        "log_score": float(np.mean(np.log(np.maximum(probabilities[rows, level], 1e-300)))),
        "rps": float(np.mean(np.sum((cdf[:, :-1] - observed_cdf[:, :-1]) ** 2, axis=1))),
        "pit_histogram": [float(share) for share in shares],
        "pit_max_deviation": float(np.max(np.abs(shares - 1.0 / PIT_BINS))),
    }

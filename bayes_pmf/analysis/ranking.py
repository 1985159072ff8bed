"""Ranking metrics of top-k recommendations on held-out ratings.

For every test user with at least one relevant held-out rating (rating >= threshold),
the model ranks every training item the user has not rated in training; with R the
user's relevant held-out items and T the top k:

    precision@k = |T & R| / k          recall@k = |T & R| / |R|
    hit rate    = 1 if T & R else 0    AP@k = sum_{r <= k, item_r in R} precision@r / min(|R|, k)
    NDCG@k      = sum_{r: item_r in R} 1/log2(r + 1)  /  sum_{r <= min(|R|, k)} 1/log2(r + 1)

averaged over those users; catalog coverage = distinct recommended items / training items.
Held-out items unknown to the model cannot be ranked and count as misses.
"""

from __future__ import annotations

from typing import Callable

import numpy as np
import pandas as pd

from ..errors import ConfigError


def _user_metrics(top: np.ndarray, relevant: set, k: int) -> dict:
    hits = np.array([item in relevant for item in top], dtype=float)
    discounts = 1.0 / np.log2(np.arange(2, k + 2))
    ideal = discounts[: min(len(relevant), k)].sum()
    precision_at = np.cumsum(hits) / np.arange(1, len(hits) + 1)
    return {
        "precision": hits.sum() / k,
        "recall": hits.sum() / len(relevant),
        "hit_rate": float(hits.any()),
        "map": float((precision_at * hits).sum() / min(len(relevant), k)),
        "ndcg": float((hits * discounts[: len(hits)]).sum() / ideal),
    }


def ranking_metrics(score_items: Callable[[object], np.ndarray], train,
                    test, *, k: int = 10, threshold: float = 4.0) -> dict:
    """Averages of the metrics above; ``score_items(user_id)`` returns one score per
    training item (aligned with ``train.item_ids``), higher is better."""
    if not isinstance(k, (int, np.integer)) or k < 1:
        raise ConfigError(f"k must be a positive integer, got {k!r}")
    frame = test.to_frame()
    relevant = frame[frame["rating"] >= threshold].groupby("user")["item"].agg(set)
    by_user = train.by_user
    rows, recommended = [], set()
    for user, items in relevant.items():
        scores = np.asarray(score_items(user), dtype=float).copy()
        position = train.user_ids.get_indexer([user])[0]
        if position >= 0:
            seen = by_user.indices[by_user.indptr[position]:by_user.indptr[position + 1]]
            scores[seen] = -np.inf
        order = np.argsort(-scores, kind="stable")[:k]
        order = order[np.isfinite(scores[order])]
        top = train.item_ids[order]
        recommended.update(top)
        rows.append(_user_metrics(np.asarray(top), items, k))
    if not rows:
        raise ConfigError(f"no test user has a rating >= {threshold}; lower the threshold")
    means = pd.DataFrame(rows).mean().to_dict()
    return {f"{name}@{k}" if name != "hit_rate" else f"hit_rate@{k}": float(value)
            for name, value in means.items()} | {
        "catalog_coverage": len(recommended) / train.n_items,
        "n_users": len(rows), "k": k, "threshold": threshold}


def popularity_scores(train) -> Callable[[object], np.ndarray]:
    """The popularity baseline: every user gets items ranked by training rating count."""
    counts = train.item_counts.astype(float)
    return lambda user: counts


def model_scores(result, train, *, score: str = "mean",
                 threshold: float = 4.0, rng=0) -> Callable[[object], np.ndarray]:
    """A model's scores (see :mod:`bayes_pmf.recommend`; default the posterior-mean
    rating) of every training item, computed for all training users in one vectorised
    pass; users unknown to the model get their prior-mean ranking."""
    from .recommend import score_matrix

    if not result.item_ids.equals(train.item_ids):
        raise ConfigError("the result was fitted on other items than this training data")
    options = dict(score=score, threshold=threshold, rng=rng)
    known = score_matrix(result, train.user_ids, **options)
    positions = result.user_ids.get_indexer(train.user_ids)

    def score_user(user) -> np.ndarray:
        row = train.user_ids.get_indexer([user])[0]
        if row >= 0 and positions[row] >= 0:
            return known[row]
        return score_matrix(result, [user], **options)[0]

    return score_user

"""Baselines every PMF number is compared with.

* global mean: r_hat = mu;
* user mean / item mean: the user's (item's) average training rating;
* bias baseline: r_hat = mu + b_i + c_j with ridge penalties, which is PMF with d = 0
  and biases, so it is fitted by the same ALS (no second implementation).

All share ``predict(users, items, unknown=...)``; the mean baselines fall back to the
global mean for ids without training ratings when ``unknown="prior"``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import pandas as pd

from .als import als_result, fit_als
from .data import RatingsData
from .errors import ConfigError
from .priors import PMFSpec
from .results import PMFResult, UnknownPolicy, encode_pairs


@dataclass(frozen=True)
class MeanBaseline:
    """Predicts a (user's, item's or global) mean training rating."""

    method: str
    by: Literal["global", "user", "item"]
    mu: float
    user_ids: pd.Index
    item_ids: pd.Index
    means: np.ndarray  # per user or per item; empty for the global mean

    def predict(self, users, items, *, unknown: UnknownPolicy = "error") -> np.ndarray:
        users, items = np.asarray(users), np.asarray(items)
        if len(users) != len(items):
            raise ConfigError(f"got {len(users)} users but {len(items)} items; one per pair")
        if self.by == "global":
            return np.full(len(users), self.mu)
        # Only the side the baseline uses can be unknown to it.
        everyone_u = self.user_ids if self.by == "user" else pd.Index(pd.unique(users))
        everyone_i = self.item_ids if self.by == "item" else pd.Index(pd.unique(items))
        user_idx, item_idx = encode_pairs(everyone_u, everyone_i, users, items, unknown)
        idx = user_idx if self.by == "user" else item_idx
        prediction = np.where(idx >= 0, self.means[np.maximum(idx, 0)], self.mu)
        if unknown == "nan":
            prediction[idx < 0] = np.nan
        return prediction


def fit_global_mean(train: RatingsData) -> MeanBaseline:
    return MeanBaseline("global-mean", "global", train.mean_rating, train.user_ids,
                        train.item_ids, np.empty(0))


def fit_user_mean(train: RatingsData) -> MeanBaseline:
    sums = np.bincount(train.user_idx, weights=train.rating, minlength=train.n_users)
    return MeanBaseline("user-mean", "user", train.mean_rating, train.user_ids,
                        train.item_ids, sums / train.user_counts)


def fit_item_mean(train: RatingsData) -> MeanBaseline:
    sums = np.bincount(train.item_idx, weights=train.rating, minlength=train.n_items)
    return MeanBaseline("item-mean", "item", train.mean_rating, train.user_ids,
                        train.item_ids, sums / train.item_counts)


def fit_bias_baseline(
    train: RatingsData,
    lambda_user_bias: float = 5.0,
    lambda_item_bias: float = 5.0,
    *,
    progress: bool = False,
) -> PMFResult:
    """mu + b_i + c_j minimising squared error + ridge penalties (PMF with d = 0)."""
    spec = PMFSpec.from_lambdas(0, 1.0, sigma=1.0, biases=True,
                                lambda_user_bias=lambda_user_bias,
                                lambda_item_bias=lambda_item_bias)
    fit = fit_als(train, spec, max_sweeps=200, tol=1e-10, rng=0, progress=progress)
    return als_result(fit, train, method="bias-baseline")

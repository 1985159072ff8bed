"""Posterior predictive distribution of ratings for held-out (or any) pairs.

A draw of a rating is a draw of its expected value (from the posterior of mu, biases
and factors) plus Gaussian noise with that draw's sigma. For point estimates (ALS, MAP)
there is one parameter draw, so the predictive is the plug-in N(r_hat, sigma^2) with the
spec's sigma: it ignores parameter uncertainty, which is why it is over-confident for
rarely rated users and items.

Ratings are discrete (e.g. half stars) while the model is continuous: coverage is
reported both for continuous central intervals and for intervals of draws snapped to
the rating grid (``scale.round``), whose discrete endpoints make them a little wider.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import xarray as xr

from .data import RatingsData
from .results import PMFResult, UnknownPolicy

with warnings.catch_warnings():
    warnings.filterwarnings("ignore", category=FutureWarning)
    import arviz as az

DEFAULT_LEVELS = (0.5, 0.9)
MAX_PREDICTIVE_SAMPLES = 1000


def _noise_sd(result: PMFResult, samples: np.ndarray | None) -> np.ndarray:
    sigma = result.sigma_draws
    return sigma if samples is None else sigma[samples]


def _subsample(result: PMFResult, max_samples: int, rng) -> np.ndarray | None:
    if result.n_samples == 1:  # a point estimate: many noise draws around one mean
        return np.zeros(max_samples, dtype=np.int64)
    if result.n_samples <= max_samples:
        return None
    return np.sort(rng.choice(result.n_samples, max_samples, replace=False))


def predictive_draws(result: PMFResult, users, items, *, rng=0,
                     unknown: UnknownPolicy = "prior",
                     max_samples: int = MAX_PREDICTIVE_SAMPLES) -> np.ndarray:
    """(samples x pairs) draws of ratings (on the rating scale, before any rounding)."""
    generator = np.random.default_rng(rng)
    samples = _subsample(result, max_samples, generator)
    means = result.mean_draws(users, items, unknown=unknown, samples=samples)
    noise = _noise_sd(result, samples)
    if result.spec.link == "logistic":
        # The likelihood lives on [0, 1]; its noise maps back by the scale's width.
        noise = noise * result.scale.width
    return means + noise[:, None] * generator.standard_normal(means.shape)


def predictive_summary(result: PMFResult, users, items, *, actual=None, rng=0,
                       levels=DEFAULT_LEVELS, unknown: UnknownPolicy = "prior") -> pd.DataFrame:
    """Per pair, with the original ids: predictive mean and sd, central intervals at each
    level (continuous and snapped to the rating grid), cold-start flags, and the actual
    rating when given."""
    draws = predictive_draws(result, users, items, rng=rng, unknown=unknown)
    frame = pd.DataFrame({"user": np.asarray(users), "item": np.asarray(items),
                          "mean": draws.mean(axis=0), "sd": draws.std(axis=0)})
    snapped = result.scale.round(draws) if result.scale.bounded else draws
    for level in levels:
        tail = (1 - level) / 2
        tag = int(round(level * 100))
        frame[f"lower_{tag}"], frame[f"upper_{tag}"] = np.quantile(draws, [tail, 1 - tail], axis=0)
        frame[f"grid_lower_{tag}"], frame[f"grid_upper_{tag}"] = np.quantile(
            snapped, [tail, 1 - tail], axis=0, method="inverted_cdf")
    frame["cold_user"] = result.user_ids.get_indexer(pd.Index(users)) < 0
    frame["cold_item"] = result.item_ids.get_indexer(pd.Index(items)) < 0
    if actual is not None:
        frame["rating"] = np.asarray(actual, dtype=float)
    return frame


def interval_coverage(summary: pd.DataFrame, levels=DEFAULT_LEVELS) -> dict:
    """Share of actual ratings inside each central interval (needs the 'rating' column)."""
    actual = summary["rating"].to_numpy()
    coverage = {}
    for level in levels:
        tag = int(round(level * 100))
        inside = (actual >= summary[f"lower_{tag}"]) & (actual <= summary[f"upper_{tag}"])
        inside_grid = ((actual >= summary[f"grid_lower_{tag}"])
                       & (actual <= summary[f"grid_upper_{tag}"]))
        coverage[f"coverage_{tag}"] = float(np.mean(inside))
        coverage[f"coverage_{tag}_grid"] = float(np.mean(inside_grid))
    return coverage


def with_predictions(result: PMFResult, test: RatingsData, *, rng=0) -> az.InferenceData:
    """A copy of the result's InferenceData with a ``predictions`` group (rating draws for
    the held-out pairs, dims chain=1 x draw x pair) and ``predictions_constant_data``
    (the pairs' original ids and the held-out ratings)."""
    users, items = test.id_pairs()
    draws = predictive_draws(result, users, items, rng=rng)
    pair = np.arange(len(users))
    predictions = xr.Dataset({"rating": (("chain", "draw", "pair"), draws[None])},
                             coords={"chain": [0], "draw": np.arange(draws.shape[0]),
                                     "pair": pair})
    constant = xr.Dataset({"user": ("pair", np.asarray(users)),
                           "item": ("pair", np.asarray(items)),
                           "held_out_rating": ("pair", test.rating)}, coords={"pair": pair})
    idata = result.idata.copy()
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=UserWarning)
        idata.add_groups(predictions=predictions, predictions_constant_data=constant)
    return idata

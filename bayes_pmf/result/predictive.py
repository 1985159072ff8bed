"""The posterior predictive for held-out pairs, computed once per model and stored in the
result (:func:`held_out_predictions`); metrics, plots and diagnostics read it from there.

A draw of a rating is a draw of its expected value (from the posterior of mu, biases and
factors) plus Gaussian noise with that draw's sigma. For point estimates (ALS, MAP)
there is one parameter draw, so the predictive is the plug-in N(r_hat, sigma^2) with the
spec's sigma: it ignores parameter uncertainty, which is why it is over-confident for
rarely rated users and items. Mean baselines define no noise model: they get point
predictions only.

Ratings are discrete (e.g. half stars) while the model is continuous: intervals are
reported both as continuous central intervals and as intervals of draws snapped to the
rating grid (``scale.round``), whose discrete endpoints make them a little wider.

What :func:`held_out_predictions` stores (see :mod:`bayes_pmf.result.idata`):

* ``predictions.rating`` (draw x pair): predictive draws from up to 1,000 posterior draws
  chosen at random (or 1,000 noise draws around a point estimate);
* per pair, in ``predictions_constant_data``: ``user``, ``item``, ``held_out_rating``,
  ``cold_user``, ``cold_item``, ``mean`` (the posterior mean of the expected rating over
  ALL draws: the point prediction scored by RMSE), ``pred_mean``, ``pred_sd``, the
  central intervals ``lower_L``/``upper_L`` and their grid versions for L = 10, ..., 90
  percent, and ``lpd`` (log of the posterior-averaged predictive density, from up to
  400 random draws);
* in the posterior, ``predicted_rating`` (chain, draw, pair): the expected rating of 50
  seeded held-out pairs in every draw, which the convergence diagnostics follow.

Functions take a :class:`~bayes_pmf.result.result.PMFResult` (``result``) and read it
through its methods.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.special import logsumexp

from . import idata as idata_io

MAX_PREDICTIVE_SAMPLES = 1000
LPD_SAMPLES = 400
MONITORED_PAIRS = 50
CALIBRATION_LEVELS = tuple(float(level) for level in np.round(np.arange(0.1, 1.0, 0.1), 2))
COVERAGE_LEVELS = (0.5, 0.9)
_MEAN_BUDGET = 1 << 25  # samples x pairs values of expected ratings held at once


def level_tag(level: float) -> int:
    """The percent tag of a central-interval level in column and metric names."""
    return int(round(level * 100))


def _subsample(result, max_samples: int, generator) -> np.ndarray | None:
    if result.n_samples == 1:  # a point estimate: many noise draws around one mean
        return np.zeros(max_samples, dtype=np.int64)
    if result.n_samples <= max_samples:
        return None
    return np.sort(generator.choice(result.n_samples, max_samples, replace=False))


def _noise_sd(result, samples: np.ndarray | None) -> np.ndarray:
    sigma = result.sigma_draws
    return sigma if samples is None else sigma[samples]


def predictive_draws(result, users, items, *, rng=0,
                     unknown: str = "prior",
                     max_samples: int = MAX_PREDICTIVE_SAMPLES) -> np.ndarray:
    """(samples x pairs) draws of ratings for any pairs (on the rating scale, before any
    rounding)."""
    generator = np.random.default_rng(rng)
    samples = _subsample(result, max_samples, generator)
    means = result.mean_draws(users, items, unknown=unknown, samples=samples)
    noise = _noise_sd(result, samples)
    if result.spec.link == "logistic":
        # The likelihood lives on [0, 1]; its noise maps back by the scale's width.
        noise = noise * result.scale.width
    return means + noise[:, None] * generator.standard_normal(means.shape)


def _interval_columns(draws: np.ndarray, scale, levels) -> dict[str, np.ndarray]:
    snapped = scale.round(draws) if scale.bounded else draws
    columns = {}
    for level in levels:
        tail, tag = (1 - level) / 2, level_tag(level)
        columns[f"lower_{tag}"], columns[f"upper_{tag}"] = np.quantile(
            draws, [tail, 1 - tail], axis=0)
        columns[f"grid_lower_{tag}"], columns[f"grid_upper_{tag}"] = np.quantile(
            snapped, [tail, 1 - tail], axis=0, method="inverted_cdf")
    return columns


def predictive_summary(result, users, items, *, actual=None, rng=0,
                       levels=COVERAGE_LEVELS, unknown: str = "prior") -> pd.DataFrame:
    """Per pair, for any pairs, with the original ids: predictive mean and sd, central
    intervals at each level (continuous and snapped to the rating grid), cold-start
    flags, and the actual rating when given."""
    draws = predictive_draws(result, users, items, rng=rng, unknown=unknown)
    frame = pd.DataFrame({"user": np.asarray(users), "item": np.asarray(items),
                          "mean": draws.mean(axis=0), "sd": draws.std(axis=0)})
    for name, values in _interval_columns(draws, result.scale, levels).items():
        frame[name] = values
    frame["cold_user"] = result.user_ids.get_indexer(pd.Index(users)) < 0
    frame["cold_item"] = result.item_ids.get_indexer(pd.Index(items)) < 0
    if actual is not None:
        frame["rating"] = np.asarray(actual, dtype=float)
    return frame


def interval_coverage(table: pd.DataFrame, levels=COVERAGE_LEVELS,
                      actual_column: str = "rating") -> dict[str, float]:
    """Share of actual ratings inside each central interval of ``table`` (continuous and
    on the grid): ``coverage_50``, ``coverage_50_grid``, ..."""
    actual = table[actual_column].to_numpy()
    coverage = {}
    for level in levels:
        tag = level_tag(level)
        inside = (actual >= table[f"lower_{tag}"]) & (actual <= table[f"upper_{tag}"])
        inside_grid = ((actual >= table[f"grid_lower_{tag}"])
                       & (actual <= table[f"grid_upper_{tag}"]))
        coverage[f"coverage_{tag}"] = float(np.mean(inside))
        coverage[f"coverage_{tag}_grid"] = float(np.mean(inside_grid))
    return coverage


def _posterior_mean(result, users, items) -> np.ndarray:
    """The posterior mean of the expected rating over all draws, in blocks of pairs."""
    block = max(1, _MEAN_BUDGET // max(1, result.n_samples))
    return np.concatenate([
        result.mean_draws(users[start:start + block], items[start:start + block],
                          unknown="prior").mean(axis=0)
        for start in range(0, len(users), block)]) if len(users) else np.empty(0)


def _pointwise_lpd(result, users, items, actual, max_samples: int, rng) -> np.ndarray:
    """log (1/S) sum_s p(r | draw s) for each pair, on the likelihood's scale."""
    generator = np.random.default_rng(rng)
    samples = _subsample(result, max_samples, generator) if result.n_samples > 1 else None
    means = result.mean_draws(users, items, unknown="prior", samples=samples)
    sigma = _noise_sd(result, samples)
    if result.spec.link == "logistic":
        means, actual = result.scale.to_unit(means), result.scale.to_unit(actual)
    z = (actual[None, :] - means) / sigma[:, None]
    log_density = -0.5 * z**2 - np.log(sigma)[:, None] - 0.5 * np.log(2 * np.pi)
    return logsumexp(log_density, axis=0) - np.log(log_density.shape[0])


def choose_monitored(n_pairs: int, rng=0, count: int = MONITORED_PAIRS):
    """The held-out pairs whose predicted ratings the diagnostics follow (sorted
    positions), and the generator after choosing them (the diagnostics draw their
    random (user, item) pairs from it next)."""
    generator = np.random.default_rng(rng)
    chosen = np.sort(generator.choice(n_pairs, min(count, n_pairs), replace=False))
    return chosen, generator


def held_out_predictions(result, test, *, rng=0,
                         max_samples: int = MAX_PREDICTIVE_SAMPLES,
                         levels=CALIBRATION_LEVELS, lpd_samples: int = LPD_SAMPLES
                         ):
    """The result with its predictions for the held-out ratings ``test`` (a RatingsData)
    stored (see the module docstring): the one place they are computed."""
    users, items = test.id_pairs()
    actual = test.rating
    per_pair = {
        "user": users, "item": items, "held_out_rating": actual,
        "cold_user": result.user_ids.get_indexer(pd.Index(users)) < 0,
        "cold_item": result.item_ids.get_indexer(pd.Index(items)) < 0,
        "mean": _posterior_mean(result, users, items),
    }
    if result.has_predictive:
        draws = predictive_draws(result, users, items, rng=rng, max_samples=max_samples)
        per_pair.update(pred_mean=draws.mean(axis=0), pred_sd=draws.std(axis=0))
        per_pair.update(_interval_columns(draws, result.scale, levels))
        per_pair["lpd"] = _pointwise_lpd(result, users, items, actual, lpd_samples, rng)
    else:
        draws = np.repeat(per_pair["mean"][None], 1, axis=0)
    monitored = monitored_draws = None
    if result.n_samples > 1:
        monitored, _ = choose_monitored(len(users), rng)
        chains, per_chain = idata_io.chains_and_draws(result.idata)
        means = result.mean_draws(users[monitored], items[monitored], unknown="prior")
        monitored_draws = means.reshape(chains, per_chain, len(monitored))
    return result.with_idata(idata_io.add_predictions(result.idata, draws, per_pair,
                                                      monitored, monitored_draws))


def _same_pairs(table: pd.DataFrame, test) -> bool:
    users, items = test.id_pairs()
    return (len(table) == len(users)
            and np.array_equal(table["user"].to_numpy(), users)
            and np.array_equal(table["item"].to_numpy(), items)
            and np.array_equal(table["held_out_rating"].to_numpy(), test.rating))


def stored_predictions(result, test=None) -> tuple[np.ndarray, pd.DataFrame]:
    """(predictive draws, per-pair table) of ``result``'s held-out predictions for the
    ratings ``test``: the stored ones when they are for exactly these pairs, else
    computed now (and not stored). Without ``test``, the stored ones."""
    held_out = result.held_out
    if held_out is not None and (test is None or _same_pairs(held_out[1], test)):
        return held_out
    if test is None:
        return result.require_held_out()
    return held_out_predictions(result, test).held_out

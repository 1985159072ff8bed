"""The posterior predictive for held-out pairs, computed once per model and stored in the
result (:func:`held_out_predictions`); metrics, plots and diagnostics read it from there.

A draw of a rating is a draw of its expected value (from the posterior of mu, biases and
factors) plus Gaussian noise with that draw's sigma; under the ordinal likelihood it is
the grid level whose cut-point interval holds eta plus that noise. For point estimates (ALS, MAP)
there is one parameter draw, so the predictive is the plug-in N(r_hat, sigma^2) with the
spec's sigma: it ignores parameter uncertainty, which is why it is over-confident for
rarely rated users and items. Mean baselines define no noise model: they get point
predictions only.

Ratings are discrete (e.g. half stars) while the model is continuous: intervals are
reported both as continuous central intervals and as intervals of draws snapped to the
rating grid (``scale.round``), whose discrete endpoints make them a little wider.

What :func:`held_out_predictions` stores (see :mod:`bayes_pmf.result.idata`):

* ``predictions.rating`` (draw x pair): predictive draws from up to 1,000 posterior draws
  chosen at random (100 noise draws around a point estimate; fewer when the held-out set
  is so large that they would pass 128 MB);
* per pair, in ``predictions_constant_data``: ``user``, ``item``, ``held_out_rating``,
  ``cold_user``, ``cold_item``, ``mean`` (the posterior mean of the expected rating over
  ALL draws: the point prediction scored by RMSE), ``pred_mean``, ``pred_sd``, the
  central intervals ``lower_L``/``upper_L`` and their grid versions for L = 10, ..., 90
  percent (for a Gaussian point estimate computed exactly from its normal predictive,
  otherwise from the draws, in blocks of pairs of bounded memory), ``lpd`` (log of the
  posterior-averaged predictive density, or probability of the level for the ordinal
  model, from up to 400 random draws) and, on a rating grid, ``prob_<rating>``: the
  predictive probability of each level (the ordinal model's own; a Gaussian model's mass
  on the level's bin between the grid's midpoints), from the same draws;
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


def level_tag(level: float) -> int:
    """The percent tag of a central-interval level in column and metric names."""
    return int(round(level * 100))


def interval_column_names(levels=CALIBRATION_LEVELS) -> list[str]:
    """The per-pair columns of the central intervals at ``levels`` in stored held-out
    predictions: ``lower_<tag>``, ``upper_<tag>`` (continuous) and ``grid_lower_<tag>``,
    ``grid_upper_<tag>`` (snapped to the rating grid), level by level."""
    return [f"{side}_{level_tag(level)}" for level in levels
            for side in ("lower", "upper", "grid_lower", "grid_upper")]


def _subsample(result, max_samples: int, generator) -> np.ndarray | None:
    if result.n_samples == 1:  # a point estimate: many noise draws around one mean
        return np.zeros(max_samples, dtype=np.int64)
    if result.n_samples <= max_samples:
        return None
    return np.sort(generator.choice(result.n_samples, max_samples, replace=False))


def predictive_draws(result, users, items, *, rng=0,
                     unknown: str = "prior",
                     max_samples: int = MAX_PREDICTIVE_SAMPLES) -> np.ndarray:
    """(samples x pairs) draws of ratings for any pairs (on the rating scale, before any
    rounding)."""
    generator = np.random.default_rng(rng)
    samples = _subsample(result, max_samples, generator)
    n_samples = result.n_samples if samples is None else len(samples)
    return result.rating_draws(users, items, generator.standard_normal((n_samples, len(users))),
                               samples=samples, unknown=unknown)


def _order_statistic_quantiles(ordered: np.ndarray, q: float) -> tuple[np.ndarray, np.ndarray]:
    """np.quantile's "linear" and "inverted_cdf" quantiles q along axis 0 of ``ordered``
    (sorted along axis 0), by indexing instead of sorting again."""
    n = len(ordered)
    virtual = (n - 1) * q
    below = int(np.floor(virtual))
    above = min(below + 1, n - 1)
    linear = ordered[below] + (virtual - below) * (ordered[above] - ordered[below])
    step = int(max(np.ceil(n * q) - 1, 0))
    return linear, ordered[min(step, n - 1)]


def _interval_columns(draws: np.ndarray, scale, levels) -> dict[str, np.ndarray]:
    """Central intervals of the draws (axis 0) at each level, continuous (np.quantile's
    linear interpolation) and of the draws snapped to the rating grid (its inverted
    cdf). One sort serves every level, and snapping is monotone, so the snapped draws'
    order statistics are the snapped order statistics: no second sort and no snapped
    copy of the draws."""
    ordered = np.sort(draws, axis=0)
    snap = scale.round if scale.bounded else (lambda values: values)
    columns = {}
    for level in levels:
        tail, tag = (1 - level) / 2, level_tag(level)
        (lower, lower_step), (upper, upper_step) = (
            _order_statistic_quantiles(ordered, q) for q in (tail, 1 - tail))
        columns[f"lower_{tag}"], columns[f"upper_{tag}"] = lower, upper
        columns[f"grid_lower_{tag}"], columns[f"grid_upper_{tag}"] = (
            snap(lower_step), snap(upper_step))
    return columns


def _gaussian_interval_columns(mean: np.ndarray, sd: np.ndarray, scale, levels
                               ) -> dict[str, np.ndarray]:
    """:func:`_interval_columns` of N(mean, sd^2) exactly, without draws: the central
    intervals mean -/+ z sd, and the same quantiles (inverted cdf, as for draws) of the
    normal snapped to the rating grid, whose cdf at grid value g is Phi((g + step/2 -
    mean) / sd) below the top value and 1 at it."""
    from scipy.special import ndtr, ndtri

    columns = {}
    grid = scale.values() if scale.bounded and scale.step else None
    if grid is not None:
        cdf = ndtr((grid[None, :] + scale.step / 2 - mean[:, None]) / sd[:, None])
        cdf[:, -1] = 1.0
    for level in levels:
        tail, tag = (1 - level) / 2, level_tag(level)
        lower, upper = mean + ndtri(tail) * sd, mean + ndtri(1 - tail) * sd
        columns[f"lower_{tag}"], columns[f"upper_{tag}"] = lower, upper
        if grid is None:
            snapped = (scale.clip(lower), scale.clip(upper)) if scale.bounded else (lower, upper)
            columns[f"grid_lower_{tag}"], columns[f"grid_upper_{tag}"] = snapped
        else:
            columns[f"grid_lower_{tag}"] = grid[np.argmax(cdf >= tail, axis=1)]
            columns[f"grid_upper_{tag}"] = grid[np.argmax(cdf >= 1 - tail, axis=1)]
    return columns


# Predictive draws are summarised in one pass when samples x pairs is at most
# _SUMMARY_BUDGET (128 MB, a few times that while summarised; the embedded MovieLens'
# 10^4 held-out ratings x 1,000 draws), else in blocks of pairs of at most _BLOCK_BUDGET
# values (32 MB), each with its own random stream (10^6 held-out ratings x 1,000 draws
# would be 8 GB at once; blocks of 2^24 values made a 10^7-rating run's summaries peak
# 1.7 GB above what it held). At most _STORED_BUDGET of them are kept in the result's
# predictions group.
_SUMMARY_BUDGET = 1 << 24
_BLOCK_BUDGET = 1 << 22
_STORED_BUDGET = 1 << 24


def _sampled_summaries(result, users, items, rng, max_samples: int, levels):
    """Per-pair predictive mean, sd and intervals from posterior draws (+ noise), and the
    draws kept for the predictions group; in blocks of pairs above the budget."""
    generator = np.random.default_rng(rng)
    samples = _subsample(result, max_samples, generator)
    n_samples = result.n_samples if samples is None else len(samples)
    kept = max(1, min(n_samples, _STORED_BUDGET // max(1, len(users))))
    if n_samples * len(users) <= _SUMMARY_BUDGET:
        blocks = [(slice(None), generator)]
    else:
        size = max(1, _BLOCK_BUDGET // n_samples)
        starts = range(0, len(users), size)
        blocks = list(zip((slice(s, s + size) for s in starts), generator.spawn(len(starts))))
    parts, stored = [], []
    for pairs, stream in blocks:
        count = len(users[pairs])
        draws = result.rating_draws(users[pairs], items[pairs],
                                    stream.standard_normal((n_samples, count)), samples=samples)
        parts.append({"pred_mean": draws.mean(axis=0), "pred_sd": draws.std(axis=0),
                      **_interval_columns(draws, result.scale, levels)})
        stored.append(draws[:kept])
    columns = {name: np.concatenate([part[name] for part in parts]) for name in parts[0]}
    return columns, np.concatenate(stored, axis=1)


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


def _lpd_samples(result, max_samples: int, rng):
    generator = np.random.default_rng(rng)
    samples = _subsample(result, max_samples, generator) if result.n_samples > 1 else None
    return samples, result.n_samples if samples is None else len(samples)


def _pointwise_lpd(result, users, items, actual, max_samples: int, rng) -> np.ndarray:
    """log (1/S) sum_s p(r | draw s) for each pair, on the likelihood's scale, in blocks
    of pairs within the block budget."""
    samples, n_samples = _lpd_samples(result, max_samples, rng)
    size = max(1, _BLOCK_BUDGET // n_samples)
    out = np.empty(len(users))
    for start in range(0, len(users), size):
        pairs = slice(start, start + size)
        log_density = result.log_likelihood_draws(users[pairs], items[pairs], actual[pairs],
                                                  samples=samples)
        out[pairs] = logsumexp(log_density, axis=0) - np.log(log_density.shape[0])
    return out


def level_column(value: float) -> str:
    """The per-pair column holding the predictive probability of rating ``value``."""
    return f"prob_{value:g}"


def _level_probability_columns(result, users, items, max_samples: int, rng
                               ) -> dict[str, np.ndarray]:
    """Per pair, the posterior predictive probability of every level of the rating grid
    (``prob_<rating>``), from the same draws as the lpd, in blocks of pairs."""
    samples, n_samples = _lpd_samples(result, max_samples, rng)
    grid = result.grid
    size = max(1, _BLOCK_BUDGET // (n_samples * len(grid)))
    probabilities = np.empty((len(users), len(grid)))
    for start in range(0, len(users), size):
        pairs = slice(start, start + size)
        probabilities[pairs] = result.level_probabilities(users[pairs], items[pairs],
                                                          samples=samples)
    return {level_column(value): probabilities[:, k] for k, value in enumerate(grid)}


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
    stored (see the module docstring): the one place they are computed. A model with
    item features predicts the test's cold items from their tags in ``test.item_info``
    (:meth:`~bayes_pmf.result.result.PMFResult.describing_items`), one with user
    features the cold users from ``test.user_info`` likewise."""
    result = result.describing_items(getattr(test, "item_info", None)).describing_users(
        getattr(test, "user_info", None))
    users, items = test.id_pairs()
    actual = test.rating
    per_pair = {
        "user": users, "item": items, "held_out_rating": actual,
        "cold_user": result.user_ids.get_indexer(pd.Index(users)) < 0,
        "cold_item": result.item_ids.get_indexer(pd.Index(items)) < 0,
        "mean": result.mean_prediction(users, items, unknown="prior"),
    }
    if result.has_predictive and result.n_samples == 1 and not result.spec.ordinal:
        # a Gaussian point estimate's predictive is N(r_hat, sd^2): summarised exactly, a
        # few draws kept for plots (an ordinal one's is summarised from its draws below)
        sd = np.full(len(users), result.rating_noise_sd_draws()[0])
        per_pair.update(pred_mean=per_pair["mean"], pred_sd=sd)
        per_pair.update(_gaussian_interval_columns(per_pair["mean"], sd, result.scale, levels))
        kept = max(1, min(100, _STORED_BUDGET // max(1, len(users))))
        draws = per_pair["mean"] + sd * np.random.default_rng(rng).standard_normal(
            (kept, len(users)))
    elif result.has_predictive:
        columns, draws = _sampled_summaries(result, users, items, rng, max_samples, levels)
        per_pair.update(columns)
    else:
        draws = np.repeat(per_pair["mean"][None], 1, axis=0)
    if result.has_predictive:
        per_pair["lpd"] = _pointwise_lpd(result, users, items, actual, lpd_samples, rng)
        if result.scale.bounded and result.scale.step:
            per_pair.update(_level_probability_columns(result, users, items, lpd_samples, rng))
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


def stored_predictions(result, test=None, columns=None) -> tuple[np.ndarray, pd.DataFrame]:
    """(predictive draws, per-pair table) of ``result``'s held-out predictions for the
    ratings ``test``: the stored ones when they are for exactly these pairs, else
    computed now (and not stored). Without ``test``, the stored ones. ``columns``: the
    table's columns the caller reads (all when None)."""
    if columns is not None:
        columns = list(dict.fromkeys([*columns, *(_PAIR_COLUMNS if test is not None else ())]))
    held_out = idata_io.predictions_of(result.idata, columns)
    if held_out is not None and (test is None or _same_pairs(held_out[1], test)):
        return held_out
    if test is None:
        result.require_held_out()
    draws, table = held_out_predictions(result, test).held_out
    return draws, table if columns is None else table[columns]


_PAIR_COLUMNS = ("user", "item", "held_out_rating")  # what _same_pairs compares

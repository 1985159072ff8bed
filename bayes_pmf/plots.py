"""Pictures of a fit. Each ``plot_*`` has a ``*_data`` companion returning the numbers
behind it; plot functions take data first, return the Figure, and never show or save.

The held-out pictures read the predictions stored in the result
(:func:`~bayes_pmf.result.predictive.held_out_predictions`); given ``test`` ratings
instead, they are computed for them first.
"""

from __future__ import annotations

# No matplotlib.use() here: choosing the backend is the application's business (a
# notebook's inline backend must survive importing bayes_pmf; headless runs fall back
# to Agg by themselves).
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from .result import idata as idata_io
from .result.predictive import (
    CALIBRATION_LEVELS,
    interval_column_names,
    level_tag,
    stored_predictions,
)

STARS = "rating (stars)"


def _figure(width=7.0, height=4.5):
    return plt.subplots(figsize=(width, height), layout="constrained")


# -- posterior predictive vs held-out rating distribution ---------------------------------

def ppc_ratings_data(result, test=None, *, n_draws: int = 200,
                     band=(0.05, 0.95), ratings: str = "held_out") -> pd.DataFrame:
    """Per rating value: observed share of the ratings, and the mean and band of that
    share over (the first ``n_draws``) posterior predictive draws snapped to the rating
    grid. ``ratings="held_out"``: the held-out ratings (``test``, or the stored
    predictions' pairs); ``"training"``: the training ratings, from the result's
    ``posterior_predictive`` group (what ``az.plot_ppc`` reads)."""
    if ratings == "training":
        stored = idata_io.training_predictive_of(result.idata)
        if stored is None:
            raise ValueError(f"{result.method} has no posterior predictive of its training "
                             "ratings (point estimates have none)")
        draws, actual = stored
    elif ratings == "held_out":
        draws, table = stored_predictions(result, test, columns=["held_out_rating"])
        actual = table["held_out_rating"].to_numpy()
    else:
        raise ValueError(f"ratings must be 'held_out' or 'training', got {ratings!r}")
    draws = draws[:n_draws]
    scale = result.scale
    grid = scale.values()
    shares = np.empty((len(draws), len(grid)))
    # a draw at a time: snapping a million pairs' 200 draws at once takes gigabytes
    for k, row in enumerate(draws):
        position = np.rint((scale.round(row) - scale.min) / scale.step).astype(int)
        shares[k] = np.bincount(position, minlength=len(grid)) / len(actual)
    observed = np.bincount(np.rint((actual - scale.min) / scale.step).astype(int),
                           minlength=len(grid)) / len(actual)
    lower, upper = np.quantile(shares, band, axis=0)
    return pd.DataFrame({"rating": grid, "observed": observed, "predicted": shares.mean(0),
                         "lower": lower, "upper": upper})


def plot_ppc_ratings(data: pd.DataFrame, *,
                     title: str = "Held-out ratings vs posterior predictive",
                     observed: str = "held-out ratings"):
    """Bars of each rating level's share among the observed ratings (``observed`` names
    them: "training ratings" for ``ppc_ratings_data(..., ratings="training")``) beside
    the posterior predictive's (mean and 90% band over draws), from
    :func:`ppc_ratings_data`."""
    fig, ax = _figure()
    width = 0.4 * (data["rating"].iloc[1] - data["rating"].iloc[0]) if len(data) > 1 else 0.4
    ax.bar(data["rating"] - width / 2, data["observed"], width, label=observed,
           color="#4C72B0")
    ax.bar(data["rating"] + width / 2, data["predicted"], width, color="#DD8452",
           label="posterior predictive (mean, 90% band)",
           yerr=[data["predicted"] - data["lower"], data["upper"] - data["predicted"]],
           capsize=3, ecolor="#333333")
    ax.set_xlabel(STARS)
    ax.set_ylabel(f"share of {observed}")
    ax.set_xticks(data["rating"])
    ax.set_title(title)
    ax.legend(frameon=False)
    return fig


# -- predicted vs actual ------------------------------------------------------------------

def predicted_vs_actual_data(result, test=None) -> pd.DataFrame:
    """Per held-out pair: ids, actual rating, predictive mean and sd, 50%/90% intervals."""
    columns = {"user": "user", "item": "item", "held_out_rating": "rating",
               "pred_mean": "mean", "pred_sd": "sd"}
    columns.update((name, name) for name in interval_column_names((0.5, 0.9)))
    _, table = stored_predictions(result, test, columns=list(columns))
    return table[list(columns)].rename(columns=columns)


# the most pairs a scatter draws (a million faint points say no more than 20,000, and
# make a slow figure)
SCATTER_POINTS = 20_000


def plot_predicted_vs_actual(data: pd.DataFrame, *,
                             title: str = "Predicted vs actual held-out ratings",
                             rng=0):
    """Thousands of pairs stay readable: jittered faint points (a random
    ``SCATTER_POINTS`` of them when there are more, said in the legend), and per actual
    rating the median predicted mean with the average 50% and 90% predictive intervals
    (of every pair)."""
    fig, ax = _figure()
    generator = np.random.default_rng(rng)
    values = np.sort(data["rating"].unique())
    step = np.min(np.diff(values)) if len(values) > 1 else 1.0
    points, label = data, "predictive mean of one pair"
    if len(data) > SCATTER_POINTS:
        points = data.iloc[np.sort(generator.choice(len(data), SCATTER_POINTS, replace=False))]
        label += f" ({SCATTER_POINTS:,} of {len(data):,} pairs, at random)"
    jitter = generator.uniform(-0.3, 0.3, len(points)) * step
    ax.scatter(points["rating"] + jitter, points["mean"], s=3, alpha=0.08, color="#4C72B0",
               rasterized=True, label=label)
    grouped = data.groupby("rating")
    summary = grouped.agg(median=("mean", "median"), lo90=("lower_90", "mean"),
                          hi90=("upper_90", "mean"), lo50=("lower_50", "mean"),
                          hi50=("upper_50", "mean"))
    ax.vlines(summary.index, summary["lo90"], summary["hi90"], color="#DD8452", lw=2,
              label="average 90% predictive interval")
    ax.vlines(summary.index, summary["lo50"], summary["hi50"], color="#C44E52", lw=5,
              label="average 50% predictive interval")
    ax.plot(summary.index, summary["median"], "o", color="black", ms=5,
            label="median predictive mean")
    low, high = values.min(), values.max()
    ax.plot([low, high], [low, high], ls="--", color="grey", lw=1, label="perfect prediction")
    ax.set_xlabel(f"actual held-out {STARS}")
    ax.set_ylabel(f"predicted {STARS}")
    ax.set_title(title)
    ax.legend(frameon=False, fontsize=8, loc="upper left")
    return fig


# -- calibration ----------------------------------------------------------------------------

def calibration_data(result, test=None, *,
                     levels=CALIBRATION_LEVELS) -> pd.DataFrame:
    """Nominal vs empirical coverage of central predictive intervals on held-out ratings,
    for continuous intervals and for intervals snapped to the rating grid."""
    from .result.predictive import interval_coverage

    read = ["held_out_rating", *interval_column_names(levels)]
    _, table = stored_predictions(result, test, columns=read)
    coverage = interval_coverage(table, levels, "held_out_rating")
    return pd.DataFrame({
        "nominal": list(levels),
        "empirical": [coverage[f"coverage_{level_tag(lv)}"] for lv in levels],
        "empirical_grid": [coverage[f"coverage_{level_tag(lv)}_grid"] for lv in levels],
    })


def plot_calibration(data: pd.DataFrame | dict[str, pd.DataFrame], *,
                     title: str = "Calibration of predictive intervals (held-out ratings)"):
    """One line per method (pass a dict of method -> calibration_data frames)."""
    frames = data if isinstance(data, dict) else {"model": data}
    fig, ax = _figure(6, 5)
    ax.plot([0, 1], [0, 1], ls="--", color="grey", lw=1, label="perfect calibration")
    for name, frame in frames.items():
        line, = ax.plot(frame["nominal"], frame["empirical"], "o-", label=f"{name}: continuous")
        ax.plot(frame["nominal"], frame["empirical_grid"], "s:", color=line.get_color(),
                alpha=0.7, label=f"{name}: snapped to rating grid")
    ax.set_xlabel("nominal coverage of central interval")
    ax.set_ylabel("share of held-out ratings inside")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_title(title)
    ax.legend(frameon=False, fontsize=8)
    return fig


def plot_pit(histograms: dict[str, list[float]], *,
             title: str = "Randomised PIT of held-out ratings (flat = calibrated)"):
    """Bars of each method's randomised-PIT shares (``pit_histogram`` of
    :func:`bayes_pmf.analysis.metrics.grid_scores`) against the uniform share: the
    calibration check for discrete ratings, which central intervals (whose end points
    count as inside) overstate."""
    fig, ax = _figure(7, 4)
    width = 0.8 / max(1, len(histograms))
    for k, (name, shares) in enumerate(histograms.items()):
        x = np.arange(len(shares))
        ax.bar(x + (k - (len(histograms) - 1) / 2) * width, shares, width, label=name)
    bins = len(next(iter(histograms.values())))
    ax.axhline(1.0 / bins, ls="--", color="grey", lw=1, label="uniform")
    ax.set_xticks(np.arange(bins))
    ax.set_xticklabels([f"{k / bins:.1f}-{(k + 1) / bins:.1f}" for k in range(bins)],
                       fontsize=7)
    ax.set_xlabel("PIT value")
    ax.set_ylabel("share of held-out ratings")
    ax.set_title(title)
    # headroom above the bars, so that the legend never covers them
    tallest = max(max(shares) for shares in histograms.values())
    ax.set_ylim(0, 1.3 * max(tallest, 1.0 / bins))
    ax.legend(frameon=False, fontsize=8, loc="upper center", ncols=len(histograms) + 1)
    return fig


# -- RMSE by user activity ------------------------------------------------------------------

def plot_rmse_by_activity(data: pd.DataFrame, *,
                          title: str = "Test RMSE by number of training ratings of the user"):
    """Grouped bars of test RMSE per activity bucket, one bar per method, the bucket's
    held-out count under its label; ``data`` as from
    :func:`bayes_pmf.analysis.metrics.rmse_by_activity_table`."""
    fig, ax = _figure(8, 4.5)
    methods = list(dict.fromkeys(data["method"]))
    buckets = list(dict.fromkeys(data["bucket"]))
    width = 0.8 / len(methods)
    x = np.arange(len(buckets))
    for k, method in enumerate(methods):
        frame = data[data["method"] == method].set_index("bucket").reindex(buckets)
        ax.bar(x + (k - (len(methods) - 1) / 2) * width, frame["rmse"], width, label=method)
    counts = data[data["method"] == methods[0]].set_index("bucket").reindex(buckets)["n_test"]
    ax.set_xticks(x, [f"{b}\n(n={int(n)})" for b, n in zip(buckets, counts)])
    ax.set_xlabel("training ratings of the user (held-out ratings in the bucket)")
    ax.set_ylabel("test RMSE (stars)")
    finite = data["rmse"][np.isfinite(data["rmse"])]
    if len(finite):
        ax.set_ylim(0.9 * finite.min(), 1.05 * finite.max())
    ax.set_title(title)
    ax.legend(frameon=False, fontsize=8, ncols=2)
    return fig


# -- running RMSE / objective trace -------------------------------------------------------

def running_rmse_data(result) -> pd.DataFrame:
    """Per chain and kept draw: RMSE of the running posterior-mean prediction on the
    held-out set recorded while sampling (Gibbs with ``held_out=``)."""
    values = idata_io.sample_stat(result.idata, "running_test_rmse")
    if values is None:
        raise ValueError("this result recorded no running test RMSE (sample with held_out=)")
    return pd.DataFrame([{"chain": c, "samples": d + 1, "rmse": values[c, d]}
                         for c in range(values.shape[0]) for d in range(values.shape[1])])


def plot_running_rmse(data: pd.DataFrame, *, reference: dict[str, float] | None = None,
                      title: str = "Test RMSE of the running posterior mean"):
    """One line per chain: held-out RMSE of the posterior mean of the first n draws,
    against n (from :func:`running_rmse_data`); ``reference`` adds dashed lines, e.g.
    ``{"pmf-als": 0.87}``."""
    fig, ax = _figure()
    for chain, frame in data.groupby("chain"):
        ax.plot(frame["samples"], frame["rmse"], lw=1.2, label=f"chain {chain}")
    for name, value in (reference or {}).items():
        ax.axhline(value, ls="--", lw=1, color="grey")
        ax.annotate(name, (data["samples"].max(), value), ha="right", va="bottom", fontsize=8)
    ax.set_xlabel("posterior samples averaged (after burn-in)")
    ax.set_ylabel("test RMSE (stars)")
    ax.set_title(title)
    ax.legend(frameon=False, fontsize=8)
    return fig


def objective_trace_data(result) -> pd.DataFrame:
    """The ALS objective E after every sweep (sweep 0: the starting point) of an ALS
    result: columns sweep, objective."""
    trace = result.attrs["settings"].get("objective_trace")
    if not trace:
        raise ValueError("this result recorded no objective trace (ALS results do)")
    return pd.DataFrame({"sweep": np.arange(len(trace)), "objective": trace})


def plot_objective_trace(data: pd.DataFrame, *, title: str = "ALS: MAP objective E per sweep"):
    """The ALS objective per sweep on a log scale (from :func:`objective_trace_data`): it
    never increases; where it flattens the fit has converged."""
    fig, ax = _figure()
    ax.plot(data["sweep"], data["objective"], "o-", ms=3)
    ax.set_yscale("log")
    ax.set_xlabel("ALS sweep (0 = initial point)")
    ax.set_ylabel("objective E (squared stars, log scale)")
    ax.set_title(title)
    return fig


# -- method comparison ------------------------------------------------------------------------

def method_comparison_data(results: list[dict]) -> pd.DataFrame:
    """From metrics.json's ``results``: method, rmse, mae."""
    return pd.DataFrame([{"method": r["method"], "rmse": r["rmse"], "mae": r["mae"]}
                         for r in results])


def plot_method_comparison(data: pd.DataFrame, *, title: str = "Held-out error by method"):
    """Horizontal bars of held-out RMSE and MAE per method, values printed at the bar
    ends (from :func:`method_comparison_data`)."""
    fig, ax = _figure(8, 0.45 * len(data) + 1.6)
    y = np.arange(len(data))
    ax.barh(y - 0.2, data["rmse"], 0.4, label="RMSE")
    ax.barh(y + 0.2, data["mae"], 0.4, label="MAE")
    for k, (rmse, mae) in enumerate(zip(data["rmse"], data["mae"])):
        ax.text(rmse, k - 0.2, f" {rmse:.4f}", va="center", fontsize=8)
        ax.text(mae, k + 0.2, f" {mae:.4f}", va="center", fontsize=8)
    ax.set_yticks(y, data["method"])
    ax.invert_yaxis()
    ax.set_xlabel("held-out error (stars)")
    ax.set_ylabel("method")
    ax.set_xlim(0.6 * data["mae"].min(), 1.08 * data["rmse"].max())
    ax.set_title(title)
    ax.legend(frameon=False, loc="lower right")
    return fig


# -- traces of identifiable quantities -----------------------------------------------------

def plot_rank_identifiable(dataset, *, var_names=None,
                           title="Rank plots of identifiable quantities"):
    """ArviZ rank plots (uniform bars = chains agree) of :func:`identifiable_draws` output."""
    names = var_names or [v for v in ("sigma", "predicted_rating", "expected_rating")
                          if v in dataset]
    if any(dataset[n].ndim > 2 for n in names):
        dataset = dataset.isel({dim: [0] for n in names for dim in dataset[n].dims
                                if dim not in ("chain", "draw")})
    columns = min(2, len(names))
    rows = (len(names) + columns - 1) // columns
    fig, axes = plt.subplots(rows, columns, figsize=(9, 3.2 * rows), layout="constrained",
                             squeeze=False)
    for ax in axes.ravel()[len(names):]:
        ax.remove()
    idata_io.plot_rank(dataset, names, axes.ravel()[: len(names)])
    for name, ax in zip(names, axes.ravel()):
        ax.set_title(_rank_title(dataset, name))
        ax.title.set_fontsize(10)
        ax.xaxis.label.set_fontsize(9)
        ax.yaxis.label.set_fontsize(9)
    fig.suptitle(title + " (flat bars: chains agree)")
    return fig


def _rank_title(dataset, name: str) -> str:
    """Which quantity a rank-plot panel shows, in words: the pair's user and item ids."""
    values = dataset[name]
    if name == "sigma":
        return "sigma (noise sd)"
    for user, item, what in (("pair_user", "pair_item", "held-out pair"),
                             ("uv_user", "uv_item", "random pair")):
        if user in values.coords:
            return (f"{name.replace('_', ' ')}: user {values[user].values.ravel()[0]}, "
                    f"item {values[item].values.ravel()[0]} ({what})")
    return name


# -- the PMF paper's pictures ---------------------------------------------------------------

def plot_overfitting(curves: pd.DataFrame, *,
                     title: str = "Unregularised MF overfits, PMF does not"):
    """Test RMSE (solid) and train RMSE (dashed) per ALS sweep for each model in
    ``curves`` (columns model, sweep, train_rmse, test_rmse)."""
    fig, ax = _figure(7, 4.2)
    for k, (model, frame) in enumerate(curves.groupby("model", sort=False)):
        color = f"C{k}"
        ax.plot(frame["sweep"], frame["test_rmse"], color=color, marker="o", markersize=3,
                label=f"{model}: test")
        ax.plot(frame["sweep"], frame["train_rmse"], color=color, linestyle="--",
                label=f"{model}: train")
    ax.set_xlabel("ALS sweep")
    ax.set_ylabel("RMSE (stars)")
    ax.set_title(title)
    ax.legend(frameon=False, fontsize=8)
    return fig


def plot_rmse_versus_d(table: pd.DataFrame, *,
                       title: str = "Test RMSE against the latent dimension d"):
    """MAP and posterior-mean test RMSE (columns d, map_rmse, posterior_rmse)."""
    fig, ax = _figure(6, 4.0)
    ax.plot(table["d"], table["map_rmse"], marker="o", label="MAP (ALS)")
    ax.plot(table["d"], table["posterior_rmse"], marker="s", label="posterior mean (Gibbs)")
    ax.set_xscale("log", base=2)
    ax.set_xticks(table["d"], [str(d) for d in table["d"]])
    ax.set_xlabel("latent dimension d (log scale)")
    ax.set_ylabel("test RMSE (stars)")
    ax.set_title(title)
    ax.legend(frameon=False)
    return fig


def plot_model_rmse(table: pd.DataFrame, *, title: str = "Test RMSE by model"):
    """Horizontal bars of test RMSE (columns model, test_rmse), best at the top."""
    ordered = table.sort_values("test_rmse", ascending=False)
    fig, ax = _figure(8, 0.45 * len(ordered) + 1.2)
    ax.barh(ordered["model"], ordered["test_rmse"], color="C0")
    for y, value in enumerate(ordered["test_rmse"]):
        ax.text(value, y, f" {value:.4f}", va="center", fontsize=8)
    low, high = ordered["test_rmse"].min(), ordered["test_rmse"].max()
    ax.set_xlim(low - 0.3 * (high - low) - 0.01, high + 0.25 * (high - low) + 0.01)
    ax.set_xlabel("test RMSE (stars)")
    ax.set_title(title)
    return fig

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest

import bayes_pmf as bp
from bayes_pmf import plots
from bayes_pmf.analysis.diagnostics import (
    convergence_summary,
    heldout_log_predictive_density,
    identifiable_draws,
    loo,
    raw_factor_rhat,
)
from bayes_pmf.analysis.metrics import rmse_by_activity_table
from bayes_pmf.engines.gibbs import sample_gibbs

SPEC = bp.PMFSpec(n_factors=2, sigma=0.5, sigma_u=0.8, sigma_v=0.8, biases=True,
                  sigma_user_bias=0.4, sigma_item_bias=0.4)


@pytest.fixture(scope="module")
def problem():
    synthetic = bp.make_synthetic(60, 40, 1200, SPEC, rng=4)
    split = bp.random_split(synthetic.data, 0.2, rng=0)
    return synthetic, split


@pytest.fixture(scope="module")
def long_run(problem):
    _, split = problem
    return sample_gibbs(split.train, SPEC.with_(prior="fixed", noise="learned"), draws=1500,
                        tune=300, chains=4, held_out=split.test, rng=1, progress=False)


@pytest.fixture(scope="module")
def rated():
    """Half-star ratings on a bounded scale, for the rating-distribution plots."""
    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"user": np.repeat(np.arange(40), 10), "item": np.tile(np.arange(10), 40)})
    frame["rating"] = np.clip(np.round(rng.normal(3.5, 1, len(frame)) * 2) / 2, 0.5, 5)
    data = bp.RatingsData.from_frame(frame, scale=(0.5, 5, 0.5))
    split = bp.random_split(data, 0.25, rng=0)
    spec = SPEC.with_(sigma=0.9)
    result = sample_gibbs(split.train, spec.with_(prior="fixed", noise="learned"), draws=50,
                          tune=20, chains=2, held_out=split.test, progress=False)
    return split, result


def test_long_chains_pass_short_chains_fail(problem, long_run):
    _, split = problem
    assert convergence_summary(long_run, split.test).converged
    short = sample_gibbs(split.train, SPEC.with_(prior="fixed", noise="learned"), draws=8, tune=0,
                         chains=4, init="random", rng=1, progress=False)
    report = convergence_summary(short, split.test)
    assert not report.converged
    assert any("R-hat" in reason or "ess" in reason for reason in report.reasons)
    assert "NOT converged" in str(report)


def test_point_estimates_have_no_convergence_summary(problem):
    _, split = problem
    als = bp.als_result(bp.fit_als(split.train, SPEC, progress=False), split.train)
    with pytest.raises(bp.ConfigError, match="need posterior samples"):
        convergence_summary(als, split.test)


def test_raw_factors_look_unconverged_while_predictions_converge(problem):
    """Rotation: chains started apart settle on different factor orientations."""
    _, split = problem
    result = sample_gibbs(split.train, SPEC.with_(prior="fixed", noise="learned"), draws=300,
                          tune=200, chains=4, init="random", rng=7, progress=False)
    summary = convergence_summary(result, split.test).summary
    predicted = summary.loc[summary.index.str.startswith("predicted_rating"), "r_hat"]
    assert np.median(raw_factor_rhat(result)) > 1.1
    assert np.median(predicted) < 1.05


def test_identifiable_draws_hold_predictions(problem, long_run):
    _, split = problem
    dataset = identifiable_draws(long_run, split.test, n_pairs=5)
    assert dataset["predicted_rating"].dims == ("chain", "draw", "pair")
    assert "U" not in dataset and "mu" not in dataset
    # With biases U_i.V_j trades with the item biases (shift moves): not identified.
    assert "UVt" not in dataset and "expected_rating" in dataset


def test_uvt_entries_are_checked_when_the_model_has_no_biases(problem):
    _, split = problem
    spec = SPEC.with_(biases=False, global_mean=False)
    result = sample_gibbs(split.train, spec.with_(prior="fixed", noise="learned"), draws=20,
                          tune=10, chains=2, rng=1, progress=False)
    dataset = identifiable_draws(result, split.test, n_pairs=5)
    assert dataset["UVt"].dims == ("chain", "draw", "uv_pair")


def test_heldout_lpd_prefers_the_truthful_model(problem, long_run):
    _, split = problem
    good = heldout_log_predictive_density(long_run, split.test)
    flat = bp.fit_bias_baseline(split.train)  # point estimate with a spec sigma of 1.0
    worse = heldout_log_predictive_density(flat, split.test)
    assert good["lpd"] > worse["lpd"]


def test_loo_on_gibbs(problem, long_run):
    _, split = problem
    result = loo(long_run, split.train)
    assert result.elpd_loo < 0 and len(result.pareto_k) == split.train.n_ratings


# -- companions on hand-checkable data -------------------------------------------------

def test_rmse_by_activity_data_by_hand(small_frame):
    train = bp.RatingsData.from_frame(small_frame)
    test = bp.RatingsData.from_arrays(["a", "c"], [3, 1], [2.0, 5.0])
    data = rmse_by_activity_table({"m": np.array([3.0, 4.0])}, train, test)
    row = data.set_index("bucket").loc["1-5"]
    assert row["n_test"] == 2
    assert row["rmse"] == pytest.approx(1.0)


def test_method_comparison_data():
    data = plots.method_comparison_data([{"method": "a", "rmse": 1.0, "mae": 0.8, "x": 1}])
    assert list(data.columns) == ["method", "rmse", "mae"]


def test_ppc_data_shares_sum_to_one(rated):
    split, result = rated
    data = plots.ppc_ratings_data(result, split.test, n_draws=50)
    assert len(data) == 10
    assert data["observed"].sum() == pytest.approx(1.0)
    assert data["predicted"].sum() == pytest.approx(1.0)
    counts = np.bincount(((split.test.rating - 0.5) / 0.5).astype(int), minlength=10)
    np.testing.assert_allclose(data["observed"], counts / split.test.n_ratings)


def test_calibration_data_is_monotone(rated):
    split, result = rated
    data = plots.calibration_data(result, split.test)
    assert np.all(np.diff(data["empirical"]) >= 0)
    assert np.all(data["empirical_grid"] >= data["empirical"] - 1e-12)


def test_running_rmse_and_objective_data(problem, long_run):
    _, split = problem
    data = plots.running_rmse_data(long_run)
    assert set(data["chain"]) == {0, 1, 2, 3}
    als = bp.als_result(bp.fit_als(split.train, SPEC, progress=False), split.train)
    trace = plots.objective_trace_data(als)
    assert trace["objective"].is_monotonic_decreasing
    with pytest.raises(ValueError, match="no running test RMSE"):
        plots.running_rmse_data(als)


# -- the figures themselves ------------------------------------------------------------

def _labels(fig):
    ax = fig.axes[0]
    return ax.get_xlabel(), ax.get_ylabel(), ax.get_title()


def test_every_plot_returns_a_labelled_figure(rated, problem, long_run):
    split, result = rated
    _, synth_split = problem
    figures = {
        "ppc": plots.plot_ppc_ratings(plots.ppc_ratings_data(result, split.test)),
        "pva": plots.plot_predicted_vs_actual(plots.predicted_vs_actual_data(result, split.test)),
        "cal": plots.plot_calibration(plots.calibration_data(result, split.test)),
        "act": plots.plot_rmse_by_activity(rmse_by_activity_table(
            {"gibbs": result.predict(*split.test.id_pairs(), unknown="prior")},
            split.train, split.test)),
        "run": plots.plot_running_rmse(plots.running_rmse_data(result), reference={"x": 1.0}),
        "cmp": plots.plot_method_comparison(pd.DataFrame(
            {"method": ["a", "b"], "rmse": [1.0, 0.9], "mae": [0.8, 0.7]})),
        "rank": plots.plot_rank_identifiable(identifiable_draws(long_run, synth_split.test)),
    }
    for name, fig in figures.items():
        xlabel, ylabel, title = _labels(fig)
        assert xlabel and ylabel, name
        assert title, name
        if name != "rank":
            assert fig.axes[0].get_legend() is not None, name
        plt.close(fig)
    # rank-plot panels say which pair they show, by its ids
    panels = [ax.get_title() for ax in figures["rank"].axes]
    assert any("held-out pair" in t and "user" in t and "item" in t for t in panels), panels
    assert "stars" in _labels(figures["ppc"])[0]
    assert "stars" in _labels(figures["pva"])[1]
    assert not plt.get_fignums()


def test_predicted_vs_actual_draws_at_most_its_scatter_budget_of_points():
    """A million held-out pairs: the scatter draws a random SCATTER_POINTS of them (said
    in the legend) while the per-rating summaries use every pair; below the budget every
    pair is drawn."""
    rng = np.random.default_rng(0)
    n = plots.SCATTER_POINTS + 5_000
    rating = rng.integers(1, 6, n).astype(float)
    data = pd.DataFrame({"rating": rating, "mean": rating + rng.normal(0, 0.5, n)})
    for side in ("lower", "upper"):
        for level in (50, 90):
            data[f"{side}_{level}"] = data["mean"] + (1 if side == "upper" else -1) * level / 100
    data.loc[data["rating"] == 5, "mean"] = 100.0  # every 5-star pair's mean moved
    figure = plots.plot_predicted_vs_actual(data)
    axis = figure.axes[0]
    assert len(axis.collections[0].get_offsets()) == plots.SCATTER_POINTS
    assert f"{plots.SCATTER_POINTS:,} of {n:,} pairs" in axis.get_legend().get_texts()[0].get_text()
    medians = [line for line in axis.get_lines() if line.get_marker() == "o"][0]
    assert medians.get_ydata()[-1] == 100.0  # summaries from all pairs
    plt.close(figure)
    small = plots.plot_predicted_vs_actual(data.iloc[:1000])
    assert len(small.axes[0].collections[0].get_offsets()) == 1000
    plt.close(small)

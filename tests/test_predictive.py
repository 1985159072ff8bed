import json

import numpy as np
import pandas as pd
import pytest

import bayes_pmf as bp
from bayes_pmf.engines.gibbs import sample_gibbs
from bayes_pmf.result.predictive import (
    held_out_predictions,
    interval_coverage,
    predictive_draws,
    predictive_summary,
)


@pytest.fixture(scope="module")
def fitted(synthetic):
    split = bp.random_split(synthetic.data, 0.2, rng=0)
    als = bp.als_result(bp.fit_als(split.train, synthetic.spec, progress=False), split.train)
    gibbs = sample_gibbs(split.train, synthetic.spec.with_(prior="fixed", noise="learned"),
                         draws=100, tune=50, chains=2, progress=False)
    return split, als, gibbs


def test_coverage_by_hand():
    summary = pd.DataFrame({
        "rating": [3.0, 4.0, 1.0, 5.0],
        "lower_50": [2.5, 4.5, 0.0, 4.0], "upper_50": [3.5, 5.0, 2.0, 4.9],
        "grid_lower_50": [3.0, 4.0, 1.0, 4.0], "grid_upper_50": [3.0, 5.0, 1.0, 5.0],
    })
    coverage = interval_coverage(summary, levels=(0.5,))
    assert coverage == {"coverage_50": 0.5, "coverage_50_grid": 1.0}


def test_point_estimate_predictive_is_plug_in_gaussian(fitted):
    split, als, _ = fitted
    users, items = split.test.id_pairs()
    draws = predictive_draws(als, users[:5], items[:5], rng=1, max_samples=4000)
    assert draws.shape == (4000, 5)
    np.testing.assert_allclose(draws.mean(0), als.predict(users[:5], items[:5]), atol=0.05)
    # sd of 4000 Gaussian draws is within ~3% of sigma.
    np.testing.assert_allclose(draws.std(0), als.spec.sigma, rtol=0.06)


def test_posterior_predictive_is_wider_than_noise_alone(fitted):
    split, _, gibbs = fitted
    users, items = split.test.id_pairs()
    summary = predictive_summary(gibbs, users, items, actual=split.test.rating, rng=0)
    sigma = gibbs.idata.posterior["sigma"].to_numpy()
    # Var(rating) = Var(mean) + E[sigma^2] > E[sigma]^2: parameter uncertainty adds width.
    assert np.median(summary["sd"]) > sigma.mean()
    assert (summary["lower_90"] <= summary["lower_50"]).all()
    assert (summary["upper_50"] <= summary["upper_90"]).all()
    coverage = interval_coverage(summary)
    # Data drawn from the model: 800 held-out ratings, binomial sd ~1.1-1.8 points.
    assert abs(coverage["coverage_90"] - 0.9) < 0.05
    assert abs(coverage["coverage_50"] - 0.5) < 0.07


def test_predictions_group(fitted):
    split, _, gibbs = fitted
    stored = held_out_predictions(gibbs, split.test, rng=0)
    idata = stored.idata
    assert "predictions" in idata.groups() and "predictions_constant_data" in idata.groups()
    assert idata.predictions["rating"].dims == ("chain", "draw", "pair")
    np.testing.assert_array_equal(idata.predictions_constant_data["held_out_rating"],
                                  split.test.rating)
    users, items = split.test.id_pairs()
    # the pairs' ids are coordinates of the pair dim
    np.testing.assert_array_equal(idata.predictions["pair_user"].to_numpy(), users)
    np.testing.assert_array_equal(idata.predictions["pair_item"].to_numpy(), items)
    assert "predictions" not in gibbs.idata.groups()  # the caller's result is untouched
    # what is stored equals what the predictive functions compute for the same pairs
    draws, table = stored.held_out
    np.testing.assert_array_equal(table["mean"], gibbs.predict(users, items))
    np.testing.assert_array_equal(draws, predictive_draws(gibbs, users, items, rng=0))
    direct = predictive_summary(gibbs, users, items, actual=split.test.rating, rng=0)
    for column in ("lower_50", "upper_90", "grid_lower_90"):
        np.testing.assert_array_equal(table[column], direct[column])
    # the diagnostics' monitored pairs: expected ratings in every draw, by chain
    monitored = idata.posterior["predicted_rating"]
    assert monitored.dims == ("chain", "draw", "pair") and monitored.sizes["pair"] == 50
    position = int(monitored["pair"][0])
    expected = gibbs.mean_draws(users[[position]], items[[position]])[:, 0]
    np.testing.assert_array_equal(monitored.isel(pair=0).to_numpy().ravel(), expected)


def test_scoring_reads_the_stored_predictions_and_refuses_stale_ones(fitted):
    """score() uses the stored predictions when they are for the same pairs, and
    computes fresh ones for another test set instead of scoring the wrong pairs."""
    split, als, _ = fitted
    stored = held_out_predictions(als, split.test)
    def same(a, b):
        return json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True)  # NaN == NaN

    assert same(bp.score(stored, split.train, split.test), bp.score(als, split.train, split.test))
    other = bp.random_split(split.test, 0.5, rng=1).test
    assert bp.score(stored, split.train, other)["n_test"] == other.n_ratings


def test_score_reports_coverage_for_pmf_results(fitted):
    split, als, gibbs = fitted
    scored = bp.score(gibbs, split.train, split.test)
    assert {"coverage_50", "coverage_90", "coverage_90_grid"} <= set(scored)
    assert "coverage_50" not in bp.score(bp.fit_global_mean(split.train), split.train, split.test)


def test_readers_of_a_few_columns_get_the_stored_ones_or_fresh_ones(fitted):
    """held_out_table / stored_predictions(columns=...) read only the asked columns (the
    whole table is 0.44 GB at 10^6 pairs) with the values of the whole table, and for
    another test set compute fresh predictions instead of the stored pairs' columns."""
    from bayes_pmf.result.predictive import stored_predictions

    split, _, gibbs = fitted
    stored = held_out_predictions(gibbs, split.test, rng=0)
    whole = stored.held_out[1]
    assert len(whole.columns) > 20
    part = stored.held_out_table(["mean", "upper_90"])
    assert list(part.columns) == ["mean", "upper_90"]
    pd.testing.assert_frame_equal(part, whole[["mean", "upper_90"]])
    draws, table = stored_predictions(stored, split.test, columns=["lower_50"])
    np.testing.assert_array_equal(draws, stored.held_out[0])
    np.testing.assert_array_equal(table["lower_50"], whole["lower_50"])
    other = bp.random_split(split.test, 0.5, rng=1).test
    _, fresh = stored_predictions(stored, other, columns=["mean"])
    users, items = other.id_pairs()
    assert len(fresh) == other.n_ratings
    np.testing.assert_array_equal(fresh["mean"], gibbs.predict(users, items))
    assert gibbs.held_out_table(["mean"]) is None  # nothing stored on the unscored result

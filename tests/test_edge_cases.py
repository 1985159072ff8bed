"""Numerical edge cases: single ratings, d above a user's rating count, extreme and
integer scales, constant ratings. Every result is finite or the call fails clearly."""

import numpy as np
import pandas as pd
import pytest

import bayes_pmf as bp
from bayes_pmf.engines.gibbs import sample_gibbs


def _fits(data, spec, draws=20):
    als = bp.als_result(bp.fit_als(data, spec, progress=False), data)
    gibbs = sample_gibbs(data, spec.with_(prior="normal-wishart", noise="learned"), draws=draws,
                         tune=20, chains=2, progress=False)
    return {"als": als, "gibbs": gibbs}


def _all_finite(result) -> bool:
    return all(np.isfinite(v).all() for v in result.draws.values())


def test_users_and_items_with_one_rating_and_d_above_their_counts():
    frame = pd.DataFrame({"user": ["solo", "a", "a", "a", "b", "b", "c"],
                          "item": ["x", "y", "z", "w", "y", "lonely", "z"],
                          "rating": [5.0, 4.0, 3.0, 2.0, 4.5, 1.0, 3.5]})
    data = bp.RatingsData.from_frame(frame)
    spec = bp.PMFSpec(n_factors=8, biases=True)  # d = 8 > every user's 1-3 ratings
    # Gibbs: the solo user's expected rating has posterior mean ~4.78 and sd ~1.1 here, so
    # 2 x 400 draws put its Monte Carlo error near 0.04, five of them inside the bound
    for name, result in _fits(data, spec, draws=400).items():
        assert _all_finite(result), name
        predictions = result.predict(frame["user"], frame["item"])
        assert np.isfinite(predictions).all(), name
        # the penalty keeps a one-rating user's prediction between the global mean and
        # their rating instead of interpolating it exactly
        solo = result.predict(["solo"], ["x"])[0]
        assert data.rating.mean() - 0.5 < solo < 5.0, name


@pytest.mark.parametrize("low, high, step", [(0, 100, 1), (-10, 10, 0.5), (1, 5, 1)])
def test_extreme_and_integer_scales(low, high, step):
    truth = bp.make_synthetic(80, 60, 2500, bp.PMFSpec(n_factors=2, sigma=0.4, biases=True),
                              rng=1)
    unit = (truth.data.rating - truth.data.rating.min()) / np.ptp(truth.data.rating)
    ratings = np.round((low + unit * (high - low)) / step) * step
    frame = truth.data.to_frame().assign(rating=ratings)
    data = bp.RatingsData.from_frame(frame, scale=(low, high, step))
    split = bp.random_split(data, 0.2, rng=0)
    sigma = 0.15 * (high - low) / 4  # priors in the units of this scale
    spec = bp.PMFSpec(n_factors=2, sigma=sigma, sigma_u=np.sqrt(sigma), sigma_v=np.sqrt(sigma),
                      biases=True, sigma_user_bias=sigma, sigma_item_bias=sigma)
    users, items = split.test.id_pairs()
    mean_rmse = bp.rmse(split.test.rating, np.full(len(users), split.train.rating.mean()))
    for name, result in _fits(split.train, spec).items():
        predicted = result.predict(users, items, unknown="prior")
        assert np.isfinite(predicted).all(), name
        assert bp.rmse(split.test.rating, predicted) < mean_rmse, name
        clipped = result.predict(users, items, unknown="prior", round=True)
        assert clipped.min() >= low and clipped.max() <= high, name
        assert np.allclose(np.round((clipped - low) / step), (clipped - low) / step), name


def test_constant_ratings_predict_the_constant():
    frame = pd.DataFrame({"user": np.repeat(np.arange(10), 3),
                          "item": np.tile(np.arange(3), 10), "rating": 4.0})
    data = bp.RatingsData.from_frame(frame, scale=(1, 5, 1))
    # ALS converges onto the constant; 40 Gibbs draws after 20 burn-in sweeps carry Monte
    # Carlo error of a few hundredths (measured max 0.08), so 0.15 for the sampler.
    tolerance = {"als": 1e-3, "gibbs": 0.15}
    for name, result in _fits(data, bp.PMFSpec(n_factors=2, biases=True)).items():
        assert _all_finite(result), name
        np.testing.assert_allclose(result.predict(frame["user"], frame["item"]), 4.0,
                                   atol=tolerance[name], err_msg=name)


def test_constant_ratings_without_a_declared_scale_are_understood():
    frame = pd.DataFrame({"user": [1, 2, 3], "item": [1, 1, 2], "rating": [3.0, 3.0, 3.0]})
    data = bp.RatingsData.from_frame(frame)
    assert np.isfinite(bp.fit_als(data, bp.PMFSpec(n_factors=1), progress=False)
                       .point_params().user_factors).all()

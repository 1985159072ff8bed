"""The PyMC model is the same model as the NumPy objective, and its MAP is ALS's optimum."""

import numpy as np
import pytest

import bayes_pmf as bp
from bayes_pmf.analysis.crosscheck import crosscheck_map
from bayes_pmf.engines.pymc_fit import fit_map, jittered_params
from bayes_pmf.model.pymc_model import build_model, point_from_params

SPEC = bp.PMFSpec(n_factors=2, sigma=0.4, sigma_u=0.8, sigma_v=0.8, biases=True,
                  sigma_user_bias=0.5, sigma_item_bias=0.5)


@pytest.fixture(scope="module")
def small():
    return bp.make_synthetic(60, 40, 900, SPEC, rng=11)


@pytest.fixture(scope="module")
def small_split(small):
    return bp.random_split(small.data, 0.15, rng=0)


@pytest.mark.parametrize("spec", [
    SPEC,
    SPEC.with_(biases=False),
    SPEC.with_(global_mean=False, n_factors=3),
])
def test_log_posterior_is_minus_objective_over_sigma_squared(small, spec):
    model = build_model(small.data, spec)
    logp = model.compile_logp()
    points = [jittered_params(small.data, spec, seed, scale=0.6) for seed in range(3)]
    points = [bp.FactorParams(p.user_factors, p.item_factors,
                              (3.0 + 0.1 * k) * spec.global_mean,
                              None if not spec.biases else np.full(small.data.n_users, 0.1 * k),
                              None if not spec.biases else np.full(small.data.n_items, -0.05 * k))
              for k, p in enumerate(points)]
    values = [float(logp(point_from_params(model, p, spec))) for p in points]
    energies = [bp.objective(small.data, p, spec) for p in points]
    for k in (1, 2):
        expected = -(energies[k] - energies[0]) / spec.sigma**2
        # Same function up to a constant; differences agree to float rounding.
        assert values[k] - values[0] == pytest.approx(expected, rel=1e-8)


def test_model_dims_coords_and_no_dense_matrix(small):
    model = build_model(small.data, SPEC)
    dims = model.named_vars_to_dims
    assert dims["U"] == ("user", "latent")
    assert dims["V"] == ("item", "latent")
    assert dims["rating"] == ("obs",)
    np.testing.assert_array_equal(model.coords["user"], small.data.user_ids)
    # Every variable is at most one row per user/item/rating: no users x items tensor.
    sizes = [np.size(v) for v in model.initial_point().values()]
    assert max(sizes) < small.data.n_users * small.data.n_items


def test_map_from_als_agrees_with_als(small_split):
    report = crosscheck_map(small_split.train, small_split.test, SPEC, rng=0, cold=True)
    assert abs(report["objective_rel_diff"]) <= 1e-6
    assert report["pred_max_abs_diff"] <= 1e-3
    assert report["grad_norm_at_als"] < 1e-2
    # A cold (jittered) start reaches the same optimum value, or a better one.
    assert report["cold_objective_rel_diff"] <= 1e-4


def test_map_result_shape_and_attrs(small_split):
    result = fit_map(small_split.train, SPEC, rng=3, progress=False)
    assert result.method == "map"
    assert result.idata.posterior.sizes["draw"] == 1
    assert result.attrs["settings"]["start"] == "als"
    assert result.attrs["seed"] == 3
    assert {"posterior", "observed_data", "constant_data"} <= set(result.idata.groups())


def _logistic_truth(n=80, m=60, d=2, n_ratings=2400, noise=0.05, seed=0):
    """Ratings on [1, 5] from the PMF paper's logistic model with known parameters:
    r = 1 + 4 (sigmoid(b_i + c_j + U_i.V_j) + noise), clipped to the scale."""
    rng = np.random.default_rng(seed)
    U, V = rng.normal(0, 1, (n, d)), rng.normal(0, 1, (m, d))
    b, c = rng.normal(0, 0.5, n), rng.normal(0, 0.5, m)
    cells = rng.choice(n * m, n_ratings, replace=False)
    users, items = cells // m, cells % m

    def expected(u, i):
        return 1 + 4 / (1 + np.exp(-(b[u] + c[i] + (U[u] * V[i]).sum(1))))

    ratings = np.clip(expected(users, items) + 4 * noise * rng.standard_normal(n_ratings), 1, 5)
    return bp.RatingsData.from_arrays(users, items, ratings, scale=(1, 5, None)), expected


def test_logistic_link_recovers_a_known_truth():
    """MAP with the logistic link on data drawn from it: held-out predictions, mapped
    back to the rating scale, are close to the true expected ratings (0.11 stars RMSE
    measured; the mean rating is 1.06 off, the identity link's ALS 0.25)."""
    data, expected = _logistic_truth()
    split = bp.random_split(data, 0.2, rng=0)
    spec = bp.PMFSpec(n_factors=2, sigma=0.05, sigma_u=1.0, sigma_v=1.0, sigma_user_bias=0.5,
                      sigma_item_bias=0.5, global_mean=False, link="logistic")
    result = fit_map(split.train, spec, rng=0, progress=False)
    assert result.attrs["settings"]["start"] == "jitter"  # no ALS for the logistic link
    users, items = split.test.id_pairs()
    predicted, truth = result.predict(users, items), expected(users, items)
    assert np.all((predicted > 1) & (predicted < 5))
    error = np.sqrt(np.mean((predicted - truth) ** 2))
    baseline = np.sqrt(np.mean((split.train.rating.mean() - truth) ** 2))
    assert error < 0.15 and error < 0.2 * baseline, (error, baseline)


def test_start_must_be_known(small):
    with pytest.raises(bp.ConfigError, match="start must be"):
        fit_map(small.data, SPEC, start="zeros", progress=False)


@pytest.mark.slow
def test_map_agrees_with_als_on_movielens(movielens_split):
    spec = bp.PMFSpec.from_lambdas(10, 15.0, biases=True, lambda_user_bias=5.0,
                                   lambda_item_bias=5.0)
    report = crosscheck_map(movielens_split.train, movielens_split.test, spec, rng=0,
                            cold=False)
    assert abs(report["objective_rel_diff"]) <= 1e-6
    assert report["pred_max_abs_diff"] <= 1e-3


def test_adaptive_priors_learn_the_noise_scale(small):
    """MAP with learned scales recovers sigma of data drawn with sigma = 0.4 (spec starts
    the scales elsewhere, at 0.9) and uses the learned sigma for predictive intervals."""
    spec = SPEC.with_(sigma=0.9, prior="spherical", noise="learned")
    result = fit_map(small.data, spec, rng=0, method="map-adaptive", progress=False)
    assert result.method == "map-adaptive"
    learned = result.attrs["settings"]["learned_scales"]
    # MAP of sigma with ~900 ratings and a few hundred parameters: within 25% of truth.
    assert 0.3 < learned["sigma"] < 0.5
    assert result.idata.posterior["sigma"].item() == pytest.approx(learned["sigma"])


@pytest.mark.slow
def test_adaptive_diagonal_map_switches_off_the_weak_dimension():
    """MAP with one learned prior precision per latent dimension (the paper's adaptive
    diagonal prior, with the Gibbs sampler's Gamma(1, 1) hyperprior): the strong
    dimension's scale is recovered (prior sd of U_ik V_jk: truth 1.44, measured 1.46),
    the weak one (truth 0.0225) is shrunk far below it (measured 0.09: the Gamma(1, 1)
    prior on the precision, whose mode is 0, holds the scale up a little)."""
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).parent))
    from test_gibbs import _unequal_scales_data

    data, scales = _unequal_scales_data()
    result = fit_map(data, bp.PMFSpec(n_factors=2, sigma=0.3, sigma_u=0.5, sigma_v=0.5,
                                      prior="diagonal", noise="learned"), progress=False)
    product = np.sort(result.draws["sigma_u_latent"][0] * result.draws["sigma_v_latent"][0])
    assert product[1] > 10 * product[0]
    assert 0.7 < product[1] / scales[0] ** 2 < 1.3
    assert result.spec.prior == "diagonal"

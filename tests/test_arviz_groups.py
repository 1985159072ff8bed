"""ArviZ that just works (#22 item 4): a sampled result carries the posterior predictive
and the pointwise log-likelihood of its training ratings, so ``az.plot_ppc``, ``az.loo``
and ``az.loo_pit`` work on ``result.idata`` as on a PyMC trace, and the numbers in those
groups are the model's."""

from __future__ import annotations

import warnings

import arviz as az
import matplotlib
import matplotlib.pyplot as plt
import numpy as np
import pytest
from scipy import stats

import bayes_pmf as bp
from bayes_pmf import plots
from bayes_pmf.engines.gibbs import sample_gibbs
from bayes_pmf.result.result import with_training_predictive

matplotlib.use("Agg")


@pytest.fixture(scope="module")
def gaussian():
    truth = bp.make_synthetic(60, 40, 1500, bp.PMFSpec(n_factors=2), rng=0)
    return sample_gibbs(truth.data, bp.PMFSpec(n_factors=2).with_(noise="learned"),
                        draws=60, tune=20, chains=2, rng=3, progress=False)


@pytest.fixture(scope="module")
def ordinal():
    spec = bp.PMFSpec(n_factors=2, biases=True)
    truth = bp.make_synthetic(60, 40, 1500, spec, rng=1)
    data = truth.data
    half_stars = np.clip(np.round(data.rating * 2) / 2, 0.5, 5.0)
    data = bp.RatingsData.from_arrays(data.user_ids[data.user_idx],
                                      data.item_ids[data.item_idx], half_stars)
    return sample_gibbs(data, spec.with_(likelihood="ordinal"), draws=40, tune=20,
                        chains=2, rng=4, progress=False)


def _samples(result):
    """The stacked sample index of each posterior_predictive draw."""
    pp = result.idata.posterior_predictive
    draws = result.idata.posterior.sizes["draw"]
    return (pp["chain"].to_numpy()[:, None] * draws + pp["draw"].to_numpy()[None, :]).ravel()


def test_groups_are_shaped_as_arviz_expects(gaussian):
    idata = gaussian.idata
    assert {"posterior_predictive", "log_likelihood", "observed_data"} <= set(idata.groups())
    pp, ll = idata.posterior_predictive["rating"], idata.log_likelihood["rating"]
    assert pp.dims == ll.dims == ("chain", "draw", "obs")
    assert pp.sizes["obs"] == idata.observed_data.sizes["obs"]
    users, items = gaussian.training_pairs()
    np.testing.assert_array_equal(pp["user_id"], gaussian.user_ids[users])
    np.testing.assert_array_equal(pp["item_id"], gaussian.item_ids[items])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        axes = az.plot_ppc(idata, num_pp_samples=10)
        plt.close(np.ravel(axes)[0].figure)
        loo = az.loo(idata)
        pit = az.loo_pit(idata, y="rating")
    assert np.isfinite(loo.elpd_loo) and loo.n_data_points == pp.sizes["obs"]
    assert pit.shape == (pp.sizes["obs"],) and np.all((pit >= 0) & (pit <= 1))


def test_log_likelihood_is_the_models_and_draws_follow_its_predictive(gaussian):
    """The stored log-likelihood equals the result's own for the same draws; the stored
    ratings, standardised by their draw's mean and sigma, are standard normal (KS). With
    the draws misaligned by one chain the same test fails: it can see a wrong pairing."""
    samples = _samples(gaussian)
    users, items = gaussian.training_pairs()
    uid, iid = gaussian.user_ids[users], gaussian.item_ids[items]
    actual = gaussian.idata.observed_data["rating"].to_numpy()
    stored_ll = gaussian.idata.log_likelihood["rating"].to_numpy().reshape(len(samples), -1)
    # float32 storage: 1e-6 relative
    np.testing.assert_allclose(stored_ll, gaussian.log_likelihood_draws(
        uid, iid, actual, samples=samples), rtol=2e-6, atol=1e-5)
    stored = gaussian.idata.posterior_predictive["rating"].to_numpy().reshape(len(samples), -1)

    def ks_p(which):
        means = gaussian.mean_draws(uid, iid, samples=which)
        z = (stored - means) / gaussian.sigma_draws[which][:, None]
        return stats.kstest(z.ravel(), "norm").pvalue  # independent N(0, 1) given draws

    assert ks_p(samples) > 1e-3
    shifted = (samples + gaussian.idata.posterior.sizes["draw"]) % gaussian.n_samples
    assert ks_p(shifted) < 1e-6


def test_ordinal_draws_are_grid_levels_with_the_models_probabilities(ordinal):
    stored = ordinal.idata.posterior_predictive["rating"].to_numpy()
    grid = ordinal.grid
    assert np.isin(stored, grid).all()
    samples = _samples(ordinal)
    users, items = ordinal.training_pairs()
    probabilities = ordinal.level_probabilities(ordinal.user_ids[users], ordinal.item_ids[items],
                                                samples=samples)  # pairs x K, over draws
    expected = probabilities.sum(0) * len(samples)
    observed = np.array([(stored == level).sum() for level in grid])
    keep = expected > 5
    chi2 = np.sum((observed[keep] - expected[keep]) ** 2 / expected[keep])
    # draws within a pair share the pair's eta draws only, so levels are independent
    # given the draws: chi-square with (levels - 1) degrees of freedom
    assert stats.chi2.sf(chi2, keep.sum() - 1) > 1e-4


def test_budget_keeps_evenly_spaced_draws_of_every_chain(gaussian):
    n = gaussian.idata.observed_data.sizes["obs"]
    small = with_training_predictive(gaussian, max_values=2 * n * 5)
    pp = small.idata.posterior_predictive
    assert pp.sizes["chain"] == 2 and pp.sizes["draw"] == 5
    np.testing.assert_array_equal(pp["draw"], np.linspace(0, 59, 5).round().astype(int))
    tiny = with_training_predictive(gaussian, max_values=1)
    assert tiny.idata.posterior_predictive.sizes["draw"] == 1  # at least one per chain
    # same seed, same draws
    again = with_training_predictive(gaussian, max_values=2 * n * 5)
    np.testing.assert_array_equal(again.idata.posterior_predictive["rating"], pp["rating"])


def test_point_results_have_no_predictive_group_and_saving_keeps_it(gaussian, tmp_path):
    truth = bp.make_synthetic(30, 20, 400, bp.PMFSpec(n_factors=2), rng=0)
    als = bp.fit_als(truth.data, bp.PMFSpec(n_factors=2), progress=False)
    assert "posterior_predictive" not in als.idata.groups()
    loaded = bp.load_result(bp.save_result(gaussian, tmp_path / "g.nc"))
    np.testing.assert_array_equal(loaded.idata.posterior_predictive["rating"],
                                  gaussian.idata.posterior_predictive["rating"])
    np.testing.assert_array_equal(loaded.idata.posterior_predictive["user_id"],
                                  gaussian.idata.posterior_predictive["user_id"])


def test_the_packages_ppc_plot_reads_the_training_group(ordinal):
    data = plots.ppc_ratings_data(ordinal, ratings="training")
    actual = ordinal.idata.observed_data["rating"].to_numpy()
    np.testing.assert_allclose(data["observed"],
                               [np.mean(actual == level) for level in data["rating"]])
    assert abs(data["predicted"].sum() - 1) < 1e-9
    figure = plots.plot_ppc_ratings(data, title="Training ratings", observed="training ratings")
    assert "training ratings" in [t.get_text() for t in figure.axes[0].get_legend().get_texts()]
    assert figure.axes[0].get_ylabel() == "share of training ratings"
    plt.close(figure)
    with pytest.raises(ValueError, match="ratings must be"):
        plots.ppc_ratings_data(ordinal, ratings="both")


@pytest.mark.parametrize("which", ["gaussian", "ordinal"])
def test_pairs_by_row_position_give_what_pairs_by_id_give(which, request):
    """The groups are built from row positions (by_index=True), not ids turned back into
    positions; both entries give the same numbers, and out-of-range positions are
    refused with the range expected."""
    result = request.getfixturevalue(which)
    user_idx, item_idx = result.training_pairs()
    users, items = result.user_ids[user_idx], result.item_ids[item_idx]
    actual = result.idata.observed_data["rating"].to_numpy()
    normal = np.random.default_rng(0).standard_normal((3, len(actual)))
    by_id = result.rating_draws(users, items, normal, samples=[0, 5, 9])
    by_row = result.rating_draws(user_idx, item_idx, normal, samples=[0, 5, 9], by_index=True)
    np.testing.assert_array_equal(by_row, by_id)
    np.testing.assert_array_equal(
        result.log_likelihood_draws(user_idx, item_idx, actual, by_index=True),
        result.log_likelihood_draws(users, items, actual))
    with pytest.raises(bp.ConfigError, match=r"users: by_index=True takes row positions 0\.\."):
        result.mean_draws([len(result.user_ids)], [0], by_index=True)
    with pytest.raises(bp.ConfigError, match="items"):
        result.mean_draws([0], [-1], by_index=True)

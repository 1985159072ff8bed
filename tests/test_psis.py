"""The vectorised PSIS-LOO (bayes_pmf.result.psis) gives ArviZ's numbers: the mean's
effective sample size, the smoothed weights and Pareto k, and the whole ``az.loo``
output, on inputs chosen to reach every branch of ArviZ's loops (negative and strong
autocorrelation, constant quantities, chains of 4-7 draws, tied and short tails, heavy
tails that push k above 0.7). Tolerance 1e-9 relative: the same formulas summed in
another order differ in the last bits, a wrong branch differs in the first digits."""

import warnings

import numpy as np
import pytest

import bayes_pmf as bp
from bayes_pmf.result import psis
from bayes_pmf.result.result import PMFResult

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    import arviz as az
    from arviz.stats.diagnostics import _ess_mean

RTOL = 1e-9


def _ar1(rng, phi, chains, draws, quantities):
    x = np.empty((quantities, chains, draws))
    x[..., 0] = rng.normal(size=(quantities, chains))
    for t in range(1, draws):
        x[..., t] = phi * x[..., t - 1] + rng.normal(size=(quantities, chains))
    return x


@pytest.mark.parametrize("phi", [-0.7, -0.2, 0.0, 0.5, 0.95, 0.999])
@pytest.mark.parametrize("chains,draws", [(4, 200), (1, 101), (3, 4), (2, 5), (2, 7)])
def test_ess_mean_is_arviz_quantity_by_quantity(phi, chains, draws):
    rng = np.random.default_rng(int(1000 * (phi + 1)) + draws)
    x = _ar1(rng, phi, chains, draws, 40)
    x[0] = 3.0                                        # a constant quantity
    x[1, 0] += 5.0                                    # one chain elsewhere (R-hat large)
    expected = np.array([_ess_mean(q) for q in x])
    np.testing.assert_allclose(psis.ess_mean(x), expected, rtol=RTOL)


@pytest.mark.parametrize("chains,draws", [(1, 10), (2, 12), (4, 16), (2, 20)])
def test_ess_mean_is_arviz_on_short_wandering_chains(chains, draws):
    """Random walks with an alternating offset on short chains: Geyer's sequence runs to
    the last lag pair allowed while the lag after it is negative, a branch the AR(1)
    chains above never reach (leaving that lag out fails here only)."""
    rng = np.random.default_rng(draws)
    x = np.cumsum(rng.normal(size=(500, chains, draws)), axis=2)
    x *= rng.uniform(0, 1, size=(500, 1, 1))
    x += rng.normal(size=x.shape)
    x[..., ::2] += rng.normal(size=(500, 1, 1))
    expected = np.array([_ess_mean(q) for q in x])
    np.testing.assert_allclose(psis.ess_mean(x), expected, rtol=RTOL)


def test_ess_mean_is_nan_where_arviz_cannot_estimate_it():
    x = np.random.default_rng(0).normal(size=(3, 2, 50))
    x[2, 1, 7] = np.nan
    got = psis.ess_mean(x)
    assert np.isfinite(got[:2]).all() and np.isnan(got[2])
    assert np.isnan(psis.ess_mean(x[:, :, :3])).all()  # fewer than 4 draws


@pytest.mark.parametrize("reff", [1.0, 0.3])
@pytest.mark.parametrize("samples", [20, 120, 1000])
def test_smoothed_weights_and_pareto_k_are_arviz(reff, samples):
    rng = np.random.default_rng(samples)
    heavy = rng.standard_t(2, size=(60, samples)) * rng.uniform(0.1, 3, size=(60, 1))
    ties = np.round(rng.normal(size=(20, samples)), 1)   # tied values in the tails
    log_ratios = np.vstack([heavy, ties])
    weights, k = psis.pareto_smoothed_log_weights(log_ratios, reff)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        expected_w, expected_k = az.psislw(log_ratios, reff)
    np.testing.assert_allclose(k, expected_k, rtol=RTOL)
    # tied ratios may swap their smoothed values: compare each row's multiset
    np.testing.assert_allclose(np.sort(weights, axis=1), np.sort(expected_w, axis=1),
                               rtol=RTOL, atol=1e-12)
    if samples == 20:
        assert np.isinf(k).all()                      # 4 tail values: no fit, as ArviZ
    else:
        assert (k > 0.7).any() and (k < 0.5).any()    # both sides of the warning


@pytest.fixture(scope="module")
def sampled():
    spec = bp.PMFSpec(n_factors=2, prior="wishart", noise="learned")
    drawn = bp.make_synthetic(40, 30, 500, spec, rng=3)
    split = bp.random_split(drawn.data, 0.1, rng=0)
    result = bp.sample_gibbs(split.train, spec, draws=60, tune=30, chains=3, rng=1,
                             held_out=split.test, progress=False)
    return result, split.train


def test_loo_is_arvizs_and_az_compare_reads_it(sampled):
    from bayes_pmf.result.idata import loo

    result, _ = sampled
    # the stored log-likelihood is float32: ArviZ does part of its arithmetic in float32
    # (1e-6 relative apart), this module in float64; compare on a float64 copy
    idata = result.idata.copy()
    idata.log_likelihood["rating"] = idata.log_likelihood["rating"].astype(float)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert bp.loo(result).elpd_loo == pytest.approx(az.loo(result.idata).elpd_loo,
                                                         rel=1e-6)
        expected = az.loo(idata, pointwise=True)
        ours = loo(idata)
        table = az.compare({"ours": ours, "arviz": expected})
    for key in ("elpd_loo", "se", "p_loo"):
        assert ours[key] == pytest.approx(expected[key], rel=RTOL), key
    assert isinstance(ours.elpd_loo, np.floating)   # .round(1) works, as on az.loo's
    for key in ("n_samples", "n_data_points", "scale", "good_k", "warning"):
        assert ours[key] == expected[key], key
    np.testing.assert_allclose(ours.loo_i.values, expected.loo_i.values, rtol=RTOL)
    np.testing.assert_allclose(ours.pareto_k.values, expected.pareto_k.values, rtol=RTOL)
    assert ours.loo_i.dims == expected.loo_i.dims
    assert table.loc["ours", "elpd_diff"] == pytest.approx(0, abs=1e-9)


def test_loo_of_a_result_adds_the_log_likelihood_when_missing(sampled):
    from bayes_pmf.analysis.diagnostics import loo

    result, train = sampled
    stored = bp.loo(result)
    stripped = result.idata.copy()
    del stripped.log_likelihood
    bare = PMFResult(stripped)
    with pytest.raises(ValueError, match="train="):
        loo(bare)
    direct = loo(bare, train)
    assert direct.n_data_points == train.n_ratings == stored.n_data_points
    # recomputed in float64 against the group stored in float32 (7 significant digits)
    np.testing.assert_allclose(direct.loo_i.values, stored.loo_i.values, rtol=1e-6)

"""The ordered logit (#18, ``ordinal_link="logit"``): the logistic cdf in the place of the
normal's, in the arithmetic every engine shares, in PyMC's twin (OrderedLogistic), in
predictions and on the command line; the Gibbs sampler, whose data augmentation is the
probit's, refuses it by name.

Statistical tests state their tolerances; the power tests show that the wrong link fails
them."""

from __future__ import annotations

import json

import numpy as np
import pytest
from scipy import stats
from test_ordinal import PYMC_LCDF_ERROR, _twin_differences

import bayes_pmf as bp
from bayes_pmf.errors import ConfigError
from bayes_pmf.model.params import (
    binned_probabilities,
    cutpoint_centres,
    log_interval_probability,
    ordinal_draws,
    ordinal_expected_rating,
    standard_latent,
)
from bayes_pmf.model.spec import LOGIT_SIGMA
from bayes_pmf.result.predictive import held_out_predictions, level_column
from bayes_pmf.workflows.config import FitJobConfig

GRID = np.arange(1, 11) / 2.0


def logit_spec(**changes):
    return bp.PMFSpec(n_factors=2, sigma=0.4, likelihood="ordinal", ordinal_link="logit",
                      **changes)


# -- arithmetic -------------------------------------------------------------------------

def test_interval_log_probability_is_the_logistic_cdfs_and_stays_finite_in_the_tails():
    eta = np.array([0.0, 3.0, 2.0, -80.0, 80.0])
    lower = np.array([-np.inf, 1.0, 1.5, 2.0, -np.inf])
    upper = np.array([1.0, np.inf, 2.5, 3.0, 30.0])
    law = stats.logistic(scale=0.7)
    direct = np.log(law.cdf(upper - eta) - law.cdf(lower - eta))
    ours = log_interval_probability(lower, upper, eta, 0.7, "logit")
    np.testing.assert_allclose(ours[:3], direct[:3], rtol=1e-12)
    # far out the direct formula is -inf; the logistic's tails are exponential: log P is
    # -(distance / scale) + log(1 - e^(-width / scale)) to rounding
    assert np.all(np.isfinite(ours[3:]))
    assert ours[3] == pytest.approx(-82.0 / 0.7 + np.log1p(-np.exp(-1 / 0.7)), rel=1e-12)
    assert ours[4] == pytest.approx(-50.0 / 0.7, rel=1e-12)
    # power: the probit's value is not the logit's
    assert not np.allclose(log_interval_probability(lower, upper, eta, 0.7)[:3], direct[:3],
                           rtol=1e-3)


def test_level_probabilities_expected_rating_and_draws_follow_the_logistic():
    eta = np.array([[0.3, 2.9, 4.8]])
    cut = cutpoint_centres(GRID) + np.r_[0.0, 0.1 * np.arange(1, 9) % 0.3]
    cdf = stats.logistic.cdf((cut[None, :] - eta[0][:, None]) / 0.5)
    probabilities = np.diff(np.c_[np.zeros(3), cdf, np.ones(3)], axis=1)
    np.testing.assert_allclose(binned_probabilities(eta, cut[None], np.array([0.5]),
                                                    "logit"), probabilities, atol=1e-14)
    np.testing.assert_allclose(
        ordinal_expected_rating(eta, cut[None], np.array([0.5]), GRID, "logit")[0],
        probabilities @ GRID, rtol=1e-12)
    # draws: 200,000 per pair; each level's frequency within 5 binomial sd of its
    # probability (a false alarm somewhere in the 30 cells has probability < 2e-5)
    n = 200_000
    normal = np.random.default_rng(0).standard_normal((n, 3))
    drawn = ordinal_draws(np.repeat(eta, n, axis=0), cut[None], np.array([0.5]), GRID,
                          normal, "logit")
    for pair in range(3):
        counts = np.array([np.sum(drawn[:, pair] == v) for v in GRID])
        sd = np.sqrt(n * probabilities[pair] * (1 - probabilities[pair]))
        assert np.all(np.abs(counts - n * probabilities[pair]) <= 5 * sd + 1)
    # the transform is the logistic's quantile of the normal's cdf, exact in the tails
    x = np.array([-30.0, -2.0, 0.0, 1.5, 30.0])
    np.testing.assert_allclose(standard_latent(x[:4], "logit"),
                               stats.logistic.ppf(stats.norm.cdf(x[:4])), rtol=1e-10)
    assert standard_latent(x, "logit")[-1] == pytest.approx(-stats.norm.logsf(30.0), rel=1e-12)
    # power: the probit's draws put other shares in the end levels (the logistic's
    # tails are heavier)
    probit = ordinal_draws(np.repeat(eta, n, axis=0), cut[None], np.array([0.5]), GRID,
                           normal)
    assert abs(np.mean(probit[:, 1] == GRID[0]) - probabilities[1, 0]) > 0.005


# -- the spec and the engines ---------------------------------------------------------

def test_the_spec_takes_the_logit_for_the_ordinal_likelihood_only():
    assert logit_spec().ordinal_link == "logit"
    assert bp.PMFSpec.from_dict(logit_spec().as_dict()) == logit_spec()
    with pytest.raises(ConfigError, match="likelihood='ordinal'") as caught:
        bp.PMFSpec(ordinal_link="logit")
    assert caught.value.setting == "ordinal_link"
    with pytest.raises(ConfigError, match="ordinal_link must be one of"):
        bp.PMFSpec(likelihood="ordinal", ordinal_link="cauchit")
    # a spec saved before the setting existed reads as the probit
    old = {k: v for k, v in bp.PMFSpec(likelihood="ordinal").as_dict().items()
           if k != "ordinal_link"}
    assert bp.PMFSpec.from_dict(old).ordinal_link == "probit"


@pytest.fixture(scope="module")
def tiny():
    return bp.draw_from_prior(logit_spec(mu_prior=(3.0, 0.5)), 14, 11, 90, rng=5).data


def test_the_gibbs_sampler_refuses_the_logit_naming_the_engines_that_fit_it(tiny):
    with pytest.raises(ConfigError, match="sample_nuts or fit_advi") as caught:
        bp.sample_gibbs(tiny, logit_spec(), draws=2, tune=0, chains=1, progress=False)
    assert caught.value.setting == "ordinal_link"


@pytest.mark.parametrize("prior", ["fixed", "spherical"])
def test_the_pymc_twin_is_the_numpy_density_of_the_ordered_logit(tiny, prior):
    """PyMC's OrderedLogistic model minus gibbs.joint_log_density (the NumPy density every
    cross-check uses) is one constant at random points; with per-user thresholds too."""
    for changes in ({}, {"thresholds": "user"}):
        spec = logit_spec(prior=prior, mu_prior=(3.0, 0.5), **changes)
        differences = _twin_differences(tiny, spec, spec)
        # PyMC forms each level's probability as a difference of sigmoids (rounding
        # ~1e-16 relative), below the probit's log-cdf error
        assert np.ptp(differences) < 2 * PYMC_LCDF_ERROR * tiny.n_ratings
        # power: the NumPy density of the probit is off by far more
        wrong = _twin_differences(tiny, spec, spec.with_(ordinal_link="probit"))
        assert np.ptp(wrong) > 100 * 2 * PYMC_LCDF_ERROR * tiny.n_ratings


def test_map_of_the_ordered_logit_predicts_with_the_logistic(tiny):
    from bayes_pmf.analysis.recommend import fold_in_user, predict_folded, score_matrix
    from bayes_pmf.engines.pymc_fit import fit_map

    spec = logit_spec(mu_prior=(3.0, 0.5))
    result = fit_map(tiny, spec, rng=0, progress=False)
    assert result.spec.ordinal_link == "logit"
    users, items = tiny.id_pairs()
    eta = result.eta_draws(users, items)[0]
    edges = np.r_[-np.inf, result.draws["cutpoints"][0], np.inf]
    expected = np.diff(stats.logistic.cdf((edges[None, :] - eta[:, None]) / spec.sigma),
                       axis=1)
    np.testing.assert_allclose(result.level_probabilities(users, items), expected,
                               atol=1e-12)
    # held-out predictions (computed once, stored in the InferenceData) are the same
    table = held_out_predictions(result, tiny).held_out[1]
    np.testing.assert_allclose(table[level_column(3.0)], expected[:, 5], atol=1e-12)
    # P(r >= 4) for the recommender: the logistic's upper tail above the cut point
    prob = score_matrix(result, [users[0]], score="prob", threshold=4.0)
    position = list(result.item_ids).index(items[0])
    assert prob[0, position] == pytest.approx(expected[0, GRID >= 4.0].sum(), rel=1e-10)
    # a new user is folded in by the logit's own posterior: one who gave the item 5 stars
    # is predicted higher on it than one who gave it half a star
    high, low = (predict_folded(result, fold_in_user(result, [items[0]], [r]), [items[0]])
                 for r in (5.0, 0.5))
    assert high[0] > low[0] + 0.1


# -- the main job -----------------------------------------------------------------------

def test_the_job_config_gives_the_logit_the_probits_latent_sd_and_keeps_the_priors():
    probit = FitJobConfig(methods=("als", "map"))
    logit = FitJobConfig(methods=("als", "map"), ordinal_link="logit")
    assert logit.pmf_spec == probit.pmf_spec.with_(ordinal_link="logit", sigma=LOGIT_SIGMA)
    # the logistic's sd pi/sqrt(3) s equals the probit's sigma
    assert stats.logistic(scale=logit.pmf_spec.sigma).std() == pytest.approx(
        probit.pmf_spec.sigma, rel=1e-12)
    assert logit.method_name("pmf-map") == "pmf-map-ordinal-logit"
    assert logit.posterior_spec.ordinal_link == "logit"
    with pytest.raises(ConfigError, match="Gibbs sampler") as caught:
        FitJobConfig(ordinal_link="logit")  # the default methods include gibbs
    assert caught.value.setting == "methods"
    with pytest.raises(ConfigError, match="ordinal likelihood"):
        FitJobConfig(methods=("map",), likelihood="gaussian", ordinal_link="logit")


def test_fit_ordinal_link_logit_from_the_command_line(tmp_path, capsys):
    from bayes_pmf.cli.main import main

    drawn = bp.make_synthetic(60, 40, 1500, logit_spec(), rng=4)
    path = tmp_path / "ratings.csv"
    drawn.data.to_frame().to_csv(path, index=False)
    out = tmp_path / "run"
    # without --method: ALS and MAP (the Gibbs sampler does not fit the logit)
    assert main(["fit", "--data", str(path), "--ordinal-link", "logit", "--factors", "2",
                 "--no-figures", "--out", str(out), "--no-progress"]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["settings"]["ordinal_link"] == "logit"
    row = next(r for r in metrics["results"] if r["method"] == "pmf-map-ordinal-logit")
    assert {"log_score", "rps"} <= set(row) and row["log_score"] < 0
    capsys.readouterr()
    assert main(["fit", "--data", str(path), "--ordinal-link", "logit", "--method", "gibbs",
                 "--out", str(tmp_path / "bad"), "--no-progress"]) == 2
    assert "--method als map advi" in capsys.readouterr().err
    assert not (tmp_path / "bad").exists()


# -- a new user under the ordered logit ---------------------------------------------------

def _fold_in_problem(copies: int):
    """One small fold-in problem (3 ratings, w of size 2: a factor and a bias), repeated
    ``copies`` times as if for that many posterior draws."""
    design = np.array([[0.8, 1.0], [-0.5, 1.0], [1.5, 1.0]])
    offset = np.array([3.1, 3.6, 2.4])
    lower, upper = np.array([3.75, 2.75, 4.25]), np.array([4.25, 3.25, np.inf])
    prior = np.array([[2.0, 0.3], [0.3, 4.0]])
    tile = lambda a: np.broadcast_to(a, (copies,) + a.shape).copy()
    return tile(design), tile(offset), tile(prior), np.full(copies, 0.5), tile(lower), \
        tile(upper)


def _grid_moments():
    """The target's mode, mean and covariance by quadrature on a fine grid."""
    design, offset, prior, sigma, lower, upper = _fold_in_problem(1)
    axis = np.linspace(-4.0, 4.0, 801)
    w = np.stack(np.meshgrid(axis, axis, indexing="ij"), axis=-1).reshape(-1, 2)
    eta = offset[0][None, :] + w @ design[0].T
    log_density = log_interval_probability(lower[0], upper[0], eta, 0.5, "logit").sum(axis=1)
    log_density -= 0.5 * np.einsum("np,pq,nq->n", w, prior[0], w)
    weight = np.exp(log_density - log_density.max())
    weight /= weight.sum()
    mean = weight @ w
    centred = w - mean
    return w[np.argmax(log_density)], mean, (weight[:, None] * centred).T @ centred


def test_a_new_user_folds_into_the_ordered_logit_by_exact_draws():
    """Fold-in under the logit: Newton's mode is the density's maximum (to the 0.01 grid),
    and 8,000 independent Metropolis chains of 40 steps reproduce the posterior's mean
    (within 4 standard errors) and variances (within 8%: 4 standard errors of a variance
    at n = 8,000 is 6%); the proposal alone (the Laplace approximation widened 1.2x, no
    Metropolis correction) fails the variance check."""
    from bayes_pmf.analysis.recommend import fold_in_logit

    mode_grid, mean, covariance = _grid_moments()
    problem = _fold_in_problem(8000)
    mode = fold_in_logit(*problem, sample=False, rng=np.random.default_rng(0))
    np.testing.assert_allclose(mode[0], mode_grid, atol=0.01)
    draws = fold_in_logit(*problem, sample=True, rng=np.random.default_rng(1))
    sd = np.sqrt(np.diag(covariance))
    assert np.all(np.abs(draws.mean(axis=0) - mean) < 4 * sd / np.sqrt(len(draws)))
    ratio = draws.var(axis=0) / np.diag(covariance)
    assert np.all(np.abs(ratio - 1) < 0.08), ratio
    # power: the proposal without the Metropolis step is too wide
    design, offset, prior, sigma, lower, upper = _fold_in_problem(1)
    eta = offset[0] + design[0] @ mode[0]
    from bayes_pmf.analysis.recommend import _logit_level_terms

    second = _logit_level_terms(eta, lower[0], upper[0], 0.5)[1]
    hessian = prior[0] - np.einsum("jp,jq,j->pq", design[0], design[0], second)
    proposal = np.random.default_rng(2).multivariate_normal(
        mode[0], 1.2**2 * np.linalg.inv(hessian), size=8000)
    assert np.any(np.abs(proposal.var(axis=0) / np.diag(covariance) - 1) > 0.08)

"""Per-user thresholds (#18, ``thresholds="user"``): each user's own cut points, shrunk
towards the global ones. Their arithmetic, the one model in PyMC and in the Gibbs
sampler, what they buy on data that has them, predictions and the command line.

Statistical tests state their tolerances; the power tests show that a deliberately wrong
model fails them."""

from __future__ import annotations

import json

import numpy as np
import pytest
from scipy import integrate
from test_ordinal import PYMC_LCDF_ERROR, _twin_differences

import bayes_pmf as bp
from bayes_pmf.analysis.metrics import score
from bayes_pmf.errors import ConfigError
from bayes_pmf.model.params import (
    UserGaps,
    binned_probabilities,
    cutpoint_centres,
    gap_log_density,
    log_gap_offsets,
    user_cutpoints,
    user_threshold_log_density,
)
from bayes_pmf.result.predictive import held_out_predictions

GRID = np.arange(1, 11) / 2.0


def user_spec(**changes):
    return bp.PMFSpec(n_factors=2, sigma=0.6, likelihood="ordinal",
                      **{"thresholds": "user", **changes})


# -- arithmetic and the spec -------------------------------------------------------------

def test_user_cut_points_are_the_global_gaps_stretched_and_their_prior_is_a_density():
    rng = np.random.default_rng(0)
    theta = cutpoint_centres(GRID) + np.r_[0.0, rng.normal(0, 0.05, 8)]
    offsets = rng.normal(0, 0.3, (5, 8))
    cut = user_cutpoints(theta, offsets)
    assert np.all(cut[:, 0] == theta[0]) and np.all(np.diff(cut, axis=1) > 0)
    np.testing.assert_allclose(log_gap_offsets(cut, theta), offsets, atol=1e-12)
    np.testing.assert_allclose(user_cutpoints(theta, np.zeros((2, 8))), [theta, theta])
    # a density of the user's gap (the cut point), not of its log offset: it integrates
    # to 1 over the gap (quad's error ~1e-9); without the 1/width Jacobian it would not
    for gap, tau in ((0.5, 0.3), (0.2, 0.8)):
        mass = integrate.quad(lambda w: np.exp(gap_log_density(0.0, w, gap, tau)), 0, np.inf)[0]
        assert abs(mass - 1) < 1e-6
        wrong = integrate.quad(lambda w: np.exp(gap_log_density(0.0, w, gap, tau)) * w,
                               0, np.inf)[0]
        assert abs(wrong - 1) > 0.05
    assert gap_log_density(1.0, 1.0, 0.5, 0.3) == -np.inf


def test_the_users_gaps_read_once_give_their_prior_for_any_global_cut_points():
    """UserGaps (the sampler's global cut-point moves read the users' gaps once) gives
    exactly the sum of gap_log_density over users and gaps, for any global cut points;
    a user whose cut points are out of order has probability 0 (-inf)."""
    rng = np.random.default_rng(1)
    theta = cutpoint_centres(GRID)
    cut = user_cutpoints(theta, rng.normal(0, 0.3, (6, 8)))
    gaps = UserGaps(cut)
    for trial in range(5):
        moved = theta + np.r_[0.0, np.cumsum(rng.uniform(-0.02, 0.02, 8))]
        direct = float(np.sum(gap_log_density(cut[:, :-1], cut[:, 1:], np.diff(moved),
                                              0.4)))
        assert gaps.log_density(moved, 0.4) == direct
        assert user_threshold_log_density(cut, moved, 0.4) == direct
    disordered = cut.copy()
    disordered[2, 4] = disordered[2, 3] - 0.1
    assert UserGaps(disordered).log_density(theta, 0.4) == -np.inf


def test_pairs_read_their_users_cut_points_one_at_a_time():
    """UserCutpoints (what predictions pass around instead of a samples x pairs x K-1
    array) gives the same bounds, expected ratings, level probabilities and draws as
    that array, for known users, a user the model has not seen (-1: the global cut
    points) and the lowest and top levels."""
    from bayes_pmf.model.params import (
        UserCutpoints,
        ordinal_draws,
        ordinal_expected_rating,
        pair_bounds,
    )

    rng = np.random.default_rng(1)
    theta = np.sort(rng.uniform(0.5, 5, (6, 9)), axis=1)  # 6 stored draws
    table = user_cutpoints(theta, rng.normal(0, 0.4, (6, 4, 8)))  # 4 users
    rows, samples = np.array([0, 3, -1, 2, 3]), np.array([5, 1, 2])
    full = table[samples][:, np.maximum(rows, 0)]
    full[:, rows < 0] = theta[samples][:, None]
    lazy = UserCutpoints(table, samples, rows, theta)
    levels = np.array([0, 9, 4, 9, 1])
    for got, want in zip(pair_bounds(lazy, levels), pair_bounds(full, levels)):
        np.testing.assert_array_equal(got, want)
    eta, sigma = rng.normal(3, 1, (3, 5)), np.array([0.6, 0.7, 0.8])
    np.testing.assert_allclose(ordinal_expected_rating(eta, lazy, sigma, GRID),
                               ordinal_expected_rating(eta, full, sigma, GRID), atol=1e-14)
    np.testing.assert_allclose(binned_probabilities(eta, lazy, sigma),
                               binned_probabilities(eta, full, sigma), atol=1e-14)
    normal = rng.standard_normal((3, 5))
    np.testing.assert_array_equal(ordinal_draws(eta, lazy, sigma, GRID, normal),
                                  ordinal_draws(eta, full, sigma, GRID, normal))


def test_user_thresholds_belong_to_the_ordinal_model_and_a_grid_with_gaps_to_stretch():
    with pytest.raises(ConfigError) as error:
        bp.PMFSpec(n_factors=2, thresholds="user")
    assert error.value.setting == "thresholds"
    with pytest.raises(ConfigError) as error:
        user_spec(thresholds="person")
    assert error.value.setting == "thresholds"
    with pytest.raises(ConfigError) as error:
        user_spec(threshold_sd=0.0)
    assert error.value.setting == "threshold_sd"
    two_levels = bp.draw_from_prior(user_spec(thresholds="global", mu_prior=(1.5, 0.5)),
                                    10, 8, 60, rng=0, grid=[1.0, 2.0]).data
    with pytest.raises(ConfigError, match="at least three"):
        bp.sample_gibbs(two_levels, user_spec(), draws=2, tune=0, chains=1, progress=False)


# -- one model: PyMC and the sampler -------------------------------------------------------

@pytest.fixture(scope="module")
def tiny():
    return bp.draw_from_prior(user_spec(mu_prior=(3.0, 0.5)), 14, 11, 90, rng=5).data




@pytest.mark.parametrize("prior", ["fixed", "spherical"])
def test_the_pymc_twin_has_the_samplers_density_with_user_thresholds(tiny, prior):
    spec = user_spec(prior=prior, mu_prior=(3.0, 0.5))
    differences = _twin_differences(tiny, spec, spec)
    assert np.ptp(differences) < 2 * PYMC_LCDF_ERROR * tiny.n_ratings
    # power: the sampler's density with another spread of the users' gaps (or its
    # hyperprior) is off by more
    wrong = _twin_differences(tiny, spec, spec.with_(threshold_sd=0.4, threshold_prior=(2, 1)))
    assert np.ptp(wrong) > 100 * 2 * PYMC_LCDF_ERROR * tiny.n_ratings


@pytest.fixture(scope="module")
def heterogeneous():
    """Users who use the scale very differently (tau 0.71), 80 ratings on average, and
    both threshold models (tau learned) fitted to 90 % of them."""
    spec = user_spec(prior="wishart", mu_prior=(3.0, 0.5))
    # tau held near 0.7 by a sharp hyperprior for the draw; the fits learn it
    drawn = bp.draw_from_prior(spec.with_(threshold_prior=(400.0, 196.0)), 80, 120, 6400,
                               rng=3)
    split = bp.random_split(drawn.data, 0.1, rng=0)
    fits = {name: bp.sample_gibbs(split.train, spec.with_(thresholds=name), draws=150,
                                  tune=150, chains=2, rng=1, progress=False)
            for name in ("user", "global")}
    return drawn, split, fits


def test_gibbs_recovers_each_users_cut_points(heterogeneous):
    """The posterior mean of the users' log gap offsets follows the truth (correlation
    above 0.6 over the 107 gaps that carry ratings on both sides in the training part;
    measured 0.74), and the learned tau (measured 0.79 +- 0.07) holds the truth (0.71)."""
    drawn, split, fits = heterogeneous
    draws = fits["user"].draws
    estimate = log_gap_offsets(draws["user_cutpoints"], draws["cutpoints"]).mean(axis=0)
    truth = log_gap_offsets(drawn.hyper["user_cutpoints"], drawn.hyper["cutpoints"])
    levels = np.searchsorted(cutpoint_centres(GRID), split.train.rating)
    counts = np.zeros((drawn.data.n_users, len(GRID)))
    np.add.at(counts, (split.train.user_idx, levels), 1)
    informed = (counts[:, 1:-1] > 2) & (counts[:, 2:] > 2)  # both sides of gap k
    assert informed.sum() > 50
    correlation = np.corrcoef(estimate[informed], truth[informed])[0, 1]
    assert correlation > 0.6, correlation
    # the learned spread: the truth within 3 posterior sd (+ 0.01 for Monte Carlo error)
    spread = draws["threshold_sd"]
    assert abs(spread.mean() - drawn.hyper["threshold_sd"]) < 3 * spread.std() + 0.01, (
        spread.mean(), spread.std(), drawn.hyper["threshold_sd"])


def test_user_thresholds_predict_held_out_ratings_of_such_users_better(heterogeneous):
    """On the held-out 10 % (640 ratings): the mean log predictive probability is higher
    with per-user thresholds than with global ones by more than 2 standard errors of the
    paired difference (measured -0.538 against -0.671: 0.133 +- 0.020), and RPS and
    RMSE are lower (0.260 against 0.331; 0.414 against 0.469)."""
    _, split, fits = heterogeneous
    users, items = split.test.id_pairs()
    pointwise = {}
    for name, result in fits.items():
        log_p = result.log_likelihood_draws(users, items, split.test.rating)
        top = log_p.max(axis=0)
        pointwise[name] = top + np.log(np.exp(log_p - top).mean(axis=0))
    gain = pointwise["user"] - pointwise["global"]
    assert gain.mean() > 2 * gain.std() / np.sqrt(len(gain)), (gain.mean(), gain.std())
    scores = {name: score(held_out_predictions(result, split.test), split.train, split.test)
              for name, result in fits.items()}
    assert scores["user"]["log_score"] == pytest.approx(pointwise["user"].mean(), abs=1e-9)
    assert scores["user"]["rps"] < scores["global"]["rps"]
    assert scores["user"]["rmse"] < scores["global"]["rmse"]


@pytest.mark.slow
def test_simulation_based_calibration_of_the_user_threshold_moves():
    """SBC (60 replicates of the ordinal model with per-user thresholds, Wishart priors,
    20 users, 120 ratings each, the ordinal SBC's sampler settings): every quantity's
    ranks uniform (chi-square, Bonferroni, alpha 0.01), the global cut points and two
    users' own low, middle and top cut points and the learned tau among them. Power: the
    same check with the users' pCN step's shrink dropped fails 19 of 25 quantities
    (benchmarks/README.md, "Per-user thresholds")."""
    spec = user_spec(prior="wishart", mu_prior=(3.0, 0.5))
    table = bp.simulation_based_calibration(spec, n_reps=60, draws=99, thin=6, tune=300,
                                            rng=2, processes=2).uniformity()
    assert {"cutpoint_4", "threshold_sd", "user_0_cutpoint_4",
            "user_1_cutpoint_8"} <= set(table["quantity"])
    assert table["passed"].all(), table[["quantity", "adjusted_p"]]


# -- predictions -------------------------------------------------------------------------

def test_predictions_read_each_users_own_cut_points(heterogeneous):
    """A known user's level probabilities are those of their own cut points, draw by
    draw; a user the model has not seen gets the global ones; P(r >= 4) for
    recommendations likewise."""
    from bayes_pmf.analysis.recommend import score_matrix

    _, split, fits = heterogeneous
    result = fits["user"]
    user, item = result.user_ids[3], result.item_ids[5]
    eta = result.eta_draws([user], [item])
    own = result.draws["user_cutpoints"][:, 3]
    expected = binned_probabilities(eta, own, result.sigma_draws)
    np.testing.assert_allclose(result.level_probabilities([user], [item]), expected,
                               atol=1e-12)
    other = binned_probabilities(eta, result.draws["cutpoints"], result.sigma_draws)
    assert np.abs(other - expected).max() > 0.01  # this user's cut points do matter
    stranger = result.eta_draws(["nobody"], [item], unknown="prior")
    np.testing.assert_allclose(
        result.level_probabilities(["nobody"], [item]),
        binned_probabilities(stranger, result.draws["cutpoints"], result.sigma_draws),
        atol=1e-12)
    above = score_matrix(result, [user], score="prob", threshold=4.0)[0, 5]
    assert abs(above - expected[0, GRID >= 4].sum()) < 1e-9
    mean = score_matrix(result, [user], score="mean")[0, 5]
    assert abs(mean - result.predict([user], [item])[0]) < 1e-9


# -- the main job ------------------------------------------------------------------------

def test_fit_thresholds_user_from_the_command_line(tmp_path, capsys):
    from bayes_pmf.cli.main import main

    drawn = bp.draw_from_prior(user_spec(threshold_sd=0.5, mu_prior=(3.0, 0.5)), 60, 40,
                               1500, rng=4)
    path = tmp_path / "ratings.csv"
    drawn.data.to_frame().to_csv(path, index=False)
    out = tmp_path / "run"
    assert main(["fit", "--data", str(path), "--thresholds", "user", "--method", "gibbs",
                 "--draws", "40", "--tune", "20", "--chains", "2", "--factors", "2",
                 "--out", str(out), "--no-progress"]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["settings"]["thresholds"] == "user"
    row = next(r for r in metrics["results"] if r["method"] == "bpmf-gibbs-ordinal")
    assert np.isfinite(row["log_score"])
    capsys.readouterr()
    # the saved posterior keeps every user's cut points, and recommendations read them
    assert main(["recommend", "--run", str(out), "--user", str(drawn.data.user_ids[0]),
                 "--score", "prob", "--n", "3"]) == 0
    assert capsys.readouterr().out.strip()
    assert main(["fit", "--data", str(path), "--thresholds", "user", "--likelihood",
                 "gaussian", "--out", str(tmp_path / "bad"), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "--thresholds" in err and "ordinal" in err
    assert not (tmp_path / "bad").exists()


def test_select_posterior_compares_threshold_models(tmp_path, capsys):
    """`select --posterior --thresholds global user`: the ordinal model once with each,
    the Gaussian model once (it has no cut points), and the choice printed with its
    flags."""
    from bayes_pmf.cli.main import main
    from bayes_pmf.workflows.config import FitJobConfig
    from bayes_pmf.workflows.report import posterior_variants

    names = posterior_variants(FitJobConfig(), ["gaussian", "ordinal"], ["none"], [2],
                               thresholds=["global", "user"])
    assert list(names) == ["gaussian, implicit none, d=2", "ordinal, implicit none, d=2",
                           "ordinal (user thresholds), implicit none, d=2"]
    drawn = bp.draw_from_prior(user_spec(threshold_sd=0.8, mu_prior=(3.0, 0.5)), 40, 60,
                               1600, rng=2)
    path = tmp_path / "ratings.csv"
    drawn.data.to_frame().to_csv(path, index=False)
    args = ["select", "--posterior", "--data", str(path), "--likelihoods", "ordinal",
            "--thresholds", "global", "user", "--implicit", "none", "--dims", "2",
            "--folds", "2", "--draws", "30", "--tune", "30", "--chains", "1", "--no-progress"]
    assert main([*args, "--json"]) == 0
    chosen = json.loads(capsys.readouterr().out)
    assert {row["model"] for row in chosen["table"]} == {
        "ordinal, implicit none, d=2", "ordinal (user thresholds), implicit none, d=2"}
    assert main(args) == 0
    printed = capsys.readouterr().out
    flags = ("--likelihood ordinal --thresholds user" if "user" in chosen["chosen"]
             else "--likelihood ordinal --implicit")
    assert f"chosen: {flags}" in printed

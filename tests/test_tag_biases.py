"""Tag biases (#19 item 2, "and as bias regressors"): the item and user features' tags give
the biases their prior means, c_j ~ N(g_j . beta_item, sigma_c^2) and b_i ~ N(h_i .
beta_user, sigma_b^2), beta ~ N(0, sigma_tag_bias^2), on every engine that fits the
features, with the same proofs: the twin's density, SBC with a power check, cold rows'
predictions, the command line."""

from __future__ import annotations

import json

import numpy as np
import pytest
from test_twins import _random_points

import bayes_pmf as bp
from bayes_pmf.engines.gibbs import joint_log_density
from bayes_pmf.errors import ConfigError
from bayes_pmf.model.params import item_tag_sets, tag_bias_matrix, tag_matrix
from bayes_pmf.model.synthetic import draw_from_prior


def _both_sides(**changes) -> bp.PMFSpec:
    """Tag biases on both sides: the items' genres and the users' job."""
    settings = dict(n_factors=2, item_features="genres", user_features="job",
                    tag_biases=True, mu_prior=(3.0, 0.5))
    return bp.PMFSpec(**{**settings, **changes})


def test_the_spec_needs_biases_and_features():
    for changes, named in (({"item_features": None, "user_features": None}, "features"),
                           ({"biases": False}, "biases=True")):
        with pytest.raises(ConfigError, match=named) as caught:
            _both_sides(**changes)
        assert caught.value.setting == "tag_biases"
    with pytest.raises(ConfigError, match="sigma_tag_bias"):
        _both_sides(sigma_tag_bias=0.0)
    spec = _both_sides(user_features=None)
    assert spec.item_tag_biases and not spec.user_tag_biases
    with pytest.raises(ConfigError, match="item_features"):  # ALS has no tags at all
        bp.fit_als(draw_from_prior(spec, 20, 10, 80, rng=0).data, spec)


@pytest.mark.parametrize("family, likelihood", [
    ("fixed", "gaussian"), ("wishart", "gaussian"), ("spherical", "gaussian"),
    ("wishart", "ordinal"), ("normal-wishart", "gaussian")])
def test_the_twin_has_the_samplers_joint_density(family, likelihood):
    """b and c with their tags' prior means and beta's prior: the PyMC twin's density is
    the sampler's up to a constant at random points. Power: the sampler's density of
    the same point without the tags' means (beta's prior left out) is not."""
    spec = _both_sides(prior=family, likelihood=likelihood,
                       noise="learned" if likelihood == "gaussian" else "fixed")
    data = draw_from_prior(spec, n_users=14, n_items=11, n_ratings=90, rng=5).data
    differences, without, scale = [], [], []
    for theirs, state, jacobian in _random_points(data, spec, 6, rng=2):
        assert state["item_tag_bias"].shape == (tag_bias_matrix(data, spec, "item").shape[1],)
        differences.append(theirs - joint_log_density(data, spec, state) - jacobian)
        without.append(theirs - joint_log_density(data, spec.with_(tag_biases=False), state))
        scale.append(abs(theirs))
    # PyMC's normal log-cdf is accurate to ~2e-6 per term (tests/test_ordinal.py)
    tolerance = (2 * 2e-6 * data.n_ratings if likelihood == "ordinal"
                 else 1e-8 * max(scale))
    assert np.ptp(differences) <= tolerance, (family, likelihood, differences)
    assert np.ptp(without) > 1e-3


# SBC on problems where the tags carry the biases (own biases' sd ~0.2 against the tags'
# 1.0: a Gamma(4, 0.16) prior on their precision), 30 users x 30 items, 300 ratings.
SBC_SPEC = dict(prior="wishart", noise="learned", sigma=0.6, gamma_prior=(4.0, 0.16),
                sigma_tag_bias=1.0)
SBC_SIZES = dict(n_users=30, n_items=30, n_ratings=300, draws=99, thin=4, tune=200)


@pytest.mark.slow
def test_sbc_of_the_tag_biases():
    """SBC (40 replicates): two tags' beta on each side, the first user's and item's
    bias, the bias scales and the rest of the model's quantities rank uniformly
    (chi-square on 5 bins, Bonferroni, alpha 0.01)."""
    result = bp.simulation_based_calibration(_both_sides(**SBC_SPEC), n_reps=40, rng=3,
                                             processes=2, **SBC_SIZES)
    table = result.uniformity(bins=5)
    assert {"item_tag_bias_0", "item_tag_bias_1", "user_tag_bias_0", "item_bias_0",
            "user_bias_0", "sigma_item_bias"} <= set(table["quantity"])
    assert table["passed"].all(), table[["quantity", "adjusted_p", "counts"]]


@pytest.mark.slow
def test_sbc_catches_a_tag_step_that_leaves_the_biases_behind(monkeypatch):
    """Power: a non-centred step that moves beta but not the biases with it (the own
    biases then drift) fails the check, through both bias scales (measured adjusted p
    0.0008 and 0.0002 in 30 replicates)."""
    from bayes_pmf.engines import gibbs

    step = gibbs._TagBias.noncentred

    def broken(self, sums, tau, rng):
        step(self, sums, tau, rng)
        return np.zeros(self.tags.shape[0])

    monkeypatch.setattr(gibbs._TagBias, "noncentred", broken)
    result = bp.simulation_based_calibration(_both_sides(**SBC_SPEC), n_reps=30, rng=3,
                                             processes=2, **SBC_SIZES)
    table = result.uniformity(bins=5).set_index("quantity")
    assert not table["passed"].all()
    assert min(table.loc["sigma_item_bias", "adjusted_p"],
               table.loc["sigma_user_bias", "adjusted_p"]) < 0.01


@pytest.fixture(scope="module")
def bias_driven():
    """Data whose biases are mostly their tags' (own biases' sd 0.1, the tags' 1.0), and
    a split that holds out every rating of 40 of its 200 items: cold items."""
    spec = bp.PMFSpec(n_factors=2, item_features="genres", tag_biases=True, prior="fixed",
                      sigma=0.5, sigma_item_bias=0.1, sigma_tag_bias=1.0,
                      mu_prior=(3.0, 0.3))
    data = draw_from_prior(spec, n_users=150, n_items=200, n_ratings=4000, rng=4).data
    cold = np.isin(data.item_idx, np.arange(40))
    return spec, data.take(~cold), data.take(cold)


def test_cold_items_are_predicted_with_their_tags_bias(bias_driven):
    """A cold item described by its tags: per draw, eta = mu + b_i + U_i . (G_j Phi) +
    G_j beta_item, the last term the tag biases' own; on data whose biases are mostly
    their tags' the cold items' RMSE falls well below the same model's without them."""
    spec, train, test = bias_driven
    users, items = test.user_ids[test.user_idx], test.item_ids[test.item_idx]
    rmse = {}
    for on in (True, False):
        result = bp.sample_gibbs(train, spec.with_(prior="wishart", tag_biases=on),
                                 draws=100, tune=100, chains=1, rng=0, progress=False)
        told = result.describing_items(test.item_info)
        predicted = told.predict(users, items, unknown="prior")
        rmse[on] = float(np.sqrt(np.mean((predicted - test.rating) ** 2)))
        if on:  # the formula, per draw, for the first five held-out pairs
            draws, pairs = result.draws, slice(0, 5)
            vocabulary = result.idata.posterior["item_tag_bias"].coords["item_tag"].to_numpy()
            G = tag_matrix(item_tag_sets(items[pairs], test.item_info, "genres"), vocabulary,
                           spec.implicit_norm).toarray()
            rows = train.user_ids.get_indexer(users[pairs])
            assert (rows >= 0).all() and (train.item_ids.get_indexer(items[pairs]) < 0).all()
            expected = (draws["mu"][:, None] + draws["user_bias"][:, rows]
                        + np.einsum("spd,std,pt->sp", draws["U"][:, rows].astype(float),
                                    draws["Phi"].astype(float), G)
                        + draws["item_tag_bias"] @ G.T)
            np.testing.assert_allclose(told.eta_draws(users[pairs], items[pairs], unknown="prior"),
                                       expected,
                                       rtol=1e-6, atol=1e-6)  # float32 factor draws
    assert rmse[True] < 0.8 * rmse[False], rmse  # measured 0.53 against 0.82


def test_a_map_fit_keeps_the_tag_biases(bias_driven):
    """PyMC's MAP of the same model keeps beta, near the Gibbs posterior mean's sign
    and size for the tags most items carry."""
    spec, train, _ = bias_driven
    fit = bp.fit_map(train, spec, progress=False)
    beta = fit.draws["item_tag_bias"][0]
    truth_free = bp.sample_gibbs(train, spec, draws=100, tune=100, chains=1, rng=1,
                                 progress=False).draws["item_tag_bias"].mean(axis=0)
    assert beta.shape == truth_free.shape
    np.testing.assert_allclose(beta, truth_free, atol=0.15)


def test_the_command_line_fits_and_compares_tag_biases(tmp_path, capsys):
    """fit --tag-biases records the setting and the spec; without features it exits 2
    naming the flag, before any folder is made; select --tag-biases off on compares the
    two by cross-validation and prints the winner's flags."""
    from bayes_pmf.cli.main import main

    spec = _both_sides(user_features=None, prior="fixed", sigma=0.5, sigma_item_bias=0.1,
                       sigma_tag_bias=1.0, mu_prior=(3.0, 0.3))
    data = draw_from_prior(spec, n_users=80, n_items=60, n_ratings=1600, rng=7).data
    data.to_frame().to_csv(tmp_path / "ratings.csv", index=False)
    data.item_info.rename_axis("item").to_csv(tmp_path / "items.csv")
    common = ["--data", str(tmp_path / "ratings.csv"), "--likelihood", "gaussian",
              "--implicit", "none", "--factors", "2", "--no-progress"]
    run = tmp_path / "run"
    assert main(["fit", *common, "--items", str(tmp_path / "items.csv"), "--tag-biases",
                 "--method", "gibbs", "--draws", "30", "--tune", "20", "--chains", "1",
                 "--no-figures", "--out", str(run)]) == 0
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["settings"]["tag_biases"] is True
    from bayes_pmf.workflows.report import _sampling_blocks  # what a report says

    said = " ".join(text for kind, text in _sampling_blocks(metrics) if kind == "p")
    assert "tag biases" in said and "genres" in said
    assert (run / "models").is_dir()
    capsys.readouterr()
    assert main(["fit", *common, "--tag-biases", "--method", "gibbs",
                 "--out", str(tmp_path / "none")]) == 2
    assert "--tag-biases" in capsys.readouterr().err
    assert not (tmp_path / "none").exists()
    assert main(["select", "--posterior", *common[:2], "--items", str(tmp_path / "items.csv"),
                 "--likelihoods", "gaussian", "--implicit", "none", "--dims", "2",
                 "--tag-biases", "off", "on", "--draws", "60", "--tune", "40", "--chains",
                 "1", "--no-progress"]) == 0
    printed = capsys.readouterr().out
    assert "tag biases on" in printed and "tag biases off" in printed
    assert printed.rstrip().splitlines()[-1].endswith("--tag-biases")


def test_a_new_user_is_folded_in_with_their_tags_bias():
    """fold_in_user(..., user_info={...}) gives the new user's bias the prior mean
    h . beta_user: on data whose user biases are mostly their job's, one rating and the
    job predict a cold user's other ratings with RMSE 0.53; the same fold-in with beta
    zeroed in the draws (the bias's prior mean 0, all else equal) 1.08."""
    from bayes_pmf.analysis.recommend import fold_in_user, predict_folded

    spec = bp.PMFSpec(n_factors=2, user_features="job", tag_biases=True, prior="fixed",
                      sigma=0.5, sigma_user_bias=0.1, sigma_tag_bias=1.0, sigma_u=0.2,
                      sigma_v=0.5, mu_prior=(3.0, 0.3))
    data = draw_from_prior(spec, n_users=200, n_items=60, n_ratings=4000, rng=11).data
    cold = np.isin(data.user_idx, np.arange(30))
    train, test = data.take(~cold), data.take(cold)
    result = bp.sample_gibbs(train, spec, draws=100, tune=100, chains=1, rng=0,
                             progress=False)
    blind = bp.PMFResult(result.idata)  # the same draws, beta_user zeroed
    blind.__dict__["draws"] = dict(result.draws, user_tag_bias=np.zeros_like(
        result.draws["user_tag_bias"]))
    errors = {"beta": [], "zero": []}
    for user in test.user_ids:
        mine = test.user_ids[test.user_idx] == user
        items, ratings = test.item_ids[test.item_idx[mine]], test.rating[mine]
        job = test.user_info.loc[user, "job"]
        if len(items) < 4 or not isinstance(job, str):
            continue
        for key, fitted in (("beta", result), ("zero", blind)):
            folded = fold_in_user(fitted, items[:1], ratings[:1], user_info={"job": job},
                                  rng=0)
            errors[key].append(predict_folded(fitted, folded, items[1:]) - ratings[1:])
    rmse = {key: float(np.sqrt(np.mean(np.concatenate(e) ** 2))) for key, e in errors.items()}
    assert len(errors["beta"]) >= 20
    assert rmse["beta"] < 0.7 * rmse["zero"], rmse

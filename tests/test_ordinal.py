"""The ordinal likelihood (#18): its arithmetic, the one model in PyMC and in the Gibbs
sampler, its predictive distribution on the grid, the scores, and the main job.

Statistical tests state their tolerances; the power tests show that a deliberately wrong
model or move fails them."""

from __future__ import annotations

import json

import numpy as np
import pytest
from scipy import stats

import bayes_pmf as bp
from bayes_pmf.analysis.metrics import grid_scores, score
from bayes_pmf.engines.gibbs import joint_log_density
from bayes_pmf.errors import ConfigError
from bayes_pmf.model.params import (
    cutpoint_centres,
    log_interval_probability,
    ordinal_expected_rating,
    truncated_normal,
)
from bayes_pmf.result.predictive import held_out_predictions, level_column

GRID = np.arange(1, 11) / 2.0


def ordinal_spec(**changes):
    return bp.PMFSpec(n_factors=2, sigma=0.6, likelihood="ordinal", **changes)


# -- arithmetic -------------------------------------------------------------------------

def test_interval_log_probability_matches_the_normal_cdf_and_stays_finite_in_the_tails():
    eta = np.array([0.0, 3.0, 2.0, -40.0, 40.0])
    lower = np.array([-np.inf, 1.0, 1.5, 2.0, -np.inf])
    upper = np.array([1.0, np.inf, 2.5, 3.0, 30.0])
    direct = np.log(stats.norm.cdf(upper, eta, 0.7) - stats.norm.cdf(lower, eta, 0.7))
    ours = log_interval_probability(lower, upper, eta, 0.7)
    # where the direct formula is representable, ours is it to rounding
    np.testing.assert_allclose(ours[:3], direct[:3], rtol=1e-12)
    # 60 and 14 sd out: the direct formula underflows to -inf, ours is the tail's value
    assert np.all(np.isfinite(ours[3:]))
    assert ours[3] == pytest.approx(stats.norm.logsf(42.0 / 0.7), rel=1e-6)
    assert ours[4] == pytest.approx(stats.norm.logcdf(-10.0 / 0.7), rel=1e-6)


def test_interval_log_probability_with_scalar_bounds_in_the_far_tail():
    """Scalar bounds broadcast against many eta, no value in the upper tail (nothing
    mirrored) and every one past double precision's plain difference: each gets the far
    tail's value, and a scalar call gives the same number."""
    eta = np.zeros(4)
    ours = log_interval_probability(-np.inf, -40.0, eta, 1.0)
    assert ours.shape == (4,)
    np.testing.assert_allclose(ours, stats.norm.logcdf(-40.0), rtol=1e-12)
    assert log_interval_probability(-np.inf, -40.0, 0.0, 1.0) == ours[0]
    mirrored = log_interval_probability(40.0, np.inf, eta, 1.0)  # every value mirrored
    np.testing.assert_allclose(mirrored, stats.norm.logsf(40.0), rtol=1e-12)


def test_truncated_normal_draws_have_the_truncated_distribution():
    generator = np.random.default_rng(3)
    n = 20_000
    for lower, upper, eta in ((1.0, 1.5, 0.3), (-np.inf, -2.0, 0.0), (3.0, np.inf, -1.0)):
        draws = truncated_normal(np.full(n, eta), np.full(n, lower), np.full(n, upper), 0.8,
                                 generator.random(n))
        assert np.all((draws > lower) & (draws <= upper))
        law = stats.truncnorm((lower - eta) / 0.8, (upper - eta) / 0.8, loc=eta, scale=0.8)
        # KS at n = 20,000: a correct sampler has p >= 1e-4 with probability 0.9999
        assert stats.kstest(draws, law.cdf).pvalue > 1e-4
        # power: the untruncated normal moved inside the interval fails the same test
        assert stats.kstest(np.clip(eta + 0.8 * generator.standard_normal(n), lower, upper),
                            law.cdf).pvalue < 1e-4


def test_expected_rating_is_the_mean_of_the_level_probabilities():
    eta = np.array([[0.3, 2.9, 4.8]])
    cut = cutpoint_centres(GRID) + np.r_[0.0, 0.1 * np.arange(1, 9) % 0.3]
    expected = ordinal_expected_rating(eta, cut[None], np.array([0.6]), GRID)[0]
    cdf = stats.norm.cdf((cut[None, :] - eta[0][:, None]) / 0.6)
    probabilities = np.diff(np.c_[np.zeros(3), cdf, np.ones(3)], axis=1)
    np.testing.assert_allclose(expected, probabilities @ GRID, rtol=1e-12)


# -- the spec ---------------------------------------------------------------------------

@pytest.mark.parametrize("changes, setting", [
    ({"link": "logistic"}, "link"), ({"noise": "learned"}, "noise"),
    ({"global_mean": False}, "global_mean"), ({"cutpoint_sd": 0.0}, "cutpoint_sd"),
])
def test_an_ordinal_spec_refuses_what_it_cannot_identify(changes, setting):
    with pytest.raises(ConfigError) as error:
        ordinal_spec(**changes)
    assert error.value.setting == setting


def test_als_refuses_the_ordinal_model_and_names_the_engines_that_fit_it():
    data = bp.make_synthetic(20, 15, 150, ordinal_spec(), rng=0).data
    with pytest.raises(ConfigError, match="fit_map or sample_gibbs"):
        bp.fit_als(data, ordinal_spec(), progress=False)


def test_ordinal_needs_ratings_on_a_grid():
    data = bp.make_synthetic(20, 15, 150, bp.PMFSpec(n_factors=2), rng=0).data  # continuous
    with pytest.raises(ConfigError, match="bounded grid"):
        bp.sample_gibbs(data, ordinal_spec(), draws=2, tune=0, chains=1, progress=False)


# -- one model: PyMC and the sampler ----------------------------------------------------

@pytest.fixture(scope="module")
def tiny():
    return bp.draw_from_prior(ordinal_spec(mu_prior=(3.0, 0.5)), 14, 11, 90, rng=5).data


def _twin_differences(data, spec, sampler_spec, n=6, rng=0):
    """logp of the PyMC twin minus the sampler's joint density at random points: constant
    if the two are one model. With per-user thresholds the twin's variables are the
    users' log gap offsets and the sampler's their cut points: the Jacobian between the
    two, sum log gaps, is taken off (tests/test_user_thresholds.py)."""
    from bayes_pmf.model.pymc_model import build_model

    model = build_model(data, spec)
    logp = model.compile_logp(jacobian=False)
    names = [v.name for v in model.free_RVs + model.deterministics]
    values_of = model.compile_fn(model.replace_rvs_by_values([model[n] for n in names]),
                                 inputs=model.value_vars, point_fn=True,
                                 on_unused_input="ignore")
    generator = np.random.default_rng(rng)
    start = model.initial_point()
    differences = []
    for _ in range(n):
        # cut points moved less, so that they stay above the fixed first one
        point = {k: v + generator.normal(0.0, 0.1 if "cutpoints" in k else 0.4, np.shape(v))
                 for k, v in start.items()}
        values = dict(zip(names, values_of(point)))
        state = {k: values[k] for k in ("U", "V", "mu", "user_bias", "item_bias",
                                        "cutpoints", "user_cutpoints") if k in values}
        for side, short in (("user", "u"), ("item", "v")):
            if spec.prior == "spherical":
                state[f"{side}_precision"] = values[f"sigma_{short}_precision"]
                state[f"{side}_bias_precision"] = values[f"sigma_{side}_bias_precision"]
        jacobian = 0.0
        if spec.user_thresholds:
            jacobian = float(np.sum(np.log(np.diff(values["user_cutpoints"], axis=1))))
            if spec.learned_thresholds:
                state["threshold_precision"] = values["threshold_precision"]
        differences.append(float(logp(point)) - joint_log_density(data, sampler_spec, state)
                           - jacobian)
    return np.array(differences)


# PyMC's normal log-cdf is accurate to ~2e-6 per term (against 40-digit arithmetic; ours
# to 1e-14), so two points may differ by up to 2 x 2e-6 per rating.
PYMC_LCDF_ERROR = 2e-6


@pytest.mark.parametrize("prior", ["fixed", "spherical"])
def test_the_pymc_twin_has_the_samplers_ordinal_joint_density(tiny, prior):
    spec = ordinal_spec(prior=prior, mu_prior=(3.0, 0.5))
    differences = _twin_differences(tiny, spec, spec)
    assert np.ptp(differences) < 2 * PYMC_LCDF_ERROR * tiny.n_ratings
    # power: the sampler's density with another latent sd is off by far more
    wrong = _twin_differences(tiny, spec, spec.with_(sigma=0.66))
    assert np.ptp(wrong) > 100 * 2 * PYMC_LCDF_ERROR * tiny.n_ratings


def test_gibbs_recovers_cut_points_away_from_the_midpoints():
    """Ratings from cut points drawn from the prior (not the midpoints): the posterior
    mean of each well-populated free cut point lies within 4 posterior sd (+ 0.01 for
    Monte Carlo error of 2 x 300 draws) of the truth; a sampler that left the cut points
    at their midpoints (no cut-point moves) misses them."""
    spec = ordinal_spec(mu_prior=(3.0, 0.5))
    drawn = bp.draw_from_prior(spec, 300, 150, 15_000, rng=11)
    result = bp.sample_gibbs(drawn.data, spec, draws=300, tune=150, chains=2, rng=1,
                             progress=False)
    cut = result.draws["cutpoints"]
    truth = drawn.hyper["cutpoints"]
    counts = np.bincount(np.searchsorted(cutpoint_centres(GRID), drawn.data.rating), minlength=10)
    populated = [k for k in range(1, 9) if counts[k] > 200 and counts[k + 1] > 200]
    assert len(populated) >= 4
    z = np.abs(cut.mean(axis=0) - truth)[populated] / (cut.std(axis=0)[populated] + 0.01 / 4)
    assert np.all(z < 4), z
    far = np.abs(cutpoint_centres(GRID) - truth)[populated] / cut.std(axis=0)[populated]
    assert np.any(far > 4), "the truth must be far from the midpoints for this test to bite"
    assert result.draws["mu"].std() > 0


@pytest.mark.slow
def test_simulation_based_calibration_of_the_ordinal_sampler():
    """SBC (60 replicates of the ordinal model, Wishart priors, 120 ratings each): every
    quantity's ranks uniform (chi-square, Bonferroni, alpha 0.01). The chains need 300+
    burn-in sweeps from the Gaussian ALS start (with 100, mu and the top cut point still
    lean towards the start: adjusted p 0.002-0.003), and kept draws 6 sweeps apart: at 3,
    the linear predictors' autocorrelation shows as a U in their ranks at 200 replicates
    (uniform at 10 apart: benchmarks/README.md, "Ordinal likelihood"). Power: the same
    check with the cut points' prior left out of the sampler fails 15 of 18 quantities
    (same section)."""
    spec = ordinal_spec(prior="wishart", mu_prior=(3.0, 0.5))
    table = bp.simulation_based_calibration(spec, n_reps=60, draws=99, thin=6, tune=300,
                                            rng=2, processes=2).uniformity()
    assert {"mu", "cutpoint_4"} <= set(table["quantity"])
    assert table["passed"].all(), table[["quantity", "adjusted_p"]]


# -- the predictive on the grid, scores --------------------------------------------------

@pytest.fixture(scope="module")
def fitted():
    spec = ordinal_spec(prior="wishart")
    drawn = bp.make_synthetic(200, 120, 6000, spec, rng=2)
    split = bp.random_split(drawn.data, 0.1, rng=0)
    result = bp.sample_gibbs(split.train, spec, draws=100, tune=60, chains=2, rng=0,
                             progress=False)
    return split, held_out_predictions(result, split.test)


def test_predictions_are_on_the_grid_with_level_probabilities(fitted):
    split, result = fitted
    draws, table = result.held_out
    assert set(np.unique(draws)) <= set(GRID)
    probabilities = table[[level_column(v) for v in GRID]].to_numpy()
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, atol=1e-12)
    # the point prediction is the predictive mean: sum_k v_k P(v_k), from 400 of 200 draws
    np.testing.assert_allclose(probabilities @ GRID, table["mean"], atol=1e-9)
    users, items = split.test.id_pairs()
    np.testing.assert_allclose(result.predict(users, items), table["mean"])


def test_scores_include_proper_scoring_rules(fitted):
    split, result = fitted
    scores = score(result, split.train, split.test)
    _, table = result.held_out
    level = np.rint((split.test.rating - 0.5) / 0.5).astype(int)
    probabilities = table[[level_column(v) for v in GRID]].to_numpy()
    rows = np.arange(len(level))
    assert scores["log_score"] == pytest.approx(np.mean(np.log(probabilities[rows, level])))
    cdf = np.cumsum(probabilities, axis=1)[:, :-1]
    observed = (np.arange(9)[None, :] >= level[:, None]).astype(float)
    assert scores["rps"] == pytest.approx(np.mean(np.sum((cdf - observed) ** 2, axis=1)))
    assert sum(scores["pit_histogram"]) == pytest.approx(1.0)
    # a model that puts all its mass one level too high scores worse on both rules
    shifted = table.copy()
    for k, value in enumerate(GRID):
        shifted[level_column(value)] = probabilities[:, k - 1] if k else 0.0
    shifted[level_column(GRID[-1])] += probabilities[:, -1]
    worse = grid_scores(shifted)
    assert worse["log_score"] < scores["log_score"] and worse["rps"] > scores["rps"]


def test_gaussian_models_get_the_same_scores_from_their_mass_on_each_grid_bin(fitted):
    split, _ = fitted
    gaussian = bp.als_result(bp.fit_als(split.train, bp.PMFSpec(n_factors=2, sigma=0.6),
                                        progress=False), split.train)
    gaussian = held_out_predictions(gaussian, split.test)
    _, table = gaussian.held_out
    row = table.iloc[0]
    edges = np.r_[-np.inf, cutpoint_centres(GRID), np.inf]
    mass = np.diff(stats.norm.cdf(edges, row["mean"], 0.6))
    np.testing.assert_allclose([row[level_column(v)] for v in GRID], mass, atol=1e-12)
    assert "log_score" in score(gaussian, split.train, split.test)


def test_probability_score_of_the_ordinal_model_is_its_upper_tail(fitted):
    split, result = fitted
    user = result.user_ids[0]
    table = bp.recommend(result, user, n=5, score="prob", threshold=4.0)
    items = table["item"].to_numpy()
    levels = [level_column(v) for v in GRID if v >= 4.0]
    probabilities = result.level_probabilities(np.repeat(user, len(items)), items)
    np.testing.assert_allclose(table["score"], probabilities[:, 7:].sum(axis=1), rtol=1e-9)
    assert len(levels) == 3


def test_a_new_user_folds_into_the_ordinal_posterior(fitted):
    """recommend_new_user on an ordinal posterior: one draw of the new user per posterior
    draw, and a user who gave the top rating to items gets higher predictions for them
    than one who gave the lowest (the fold-in reads the levels through the cut points)."""
    from bayes_pmf.analysis.recommend import fold_in_user, predict_folded

    _, result = fitted
    items = list(result.item_ids[:6])
    fans = fold_in_user(result, items, [5.0] * 6, rng=0)
    critics = fold_in_user(result, items, [0.5] * 6, rng=0)
    assert fans.shape == (result.n_samples, 3) and np.isfinite(fans).all()
    assert (predict_folded(result, fans, items) > predict_folded(result, critics, items)).all()
    table = bp.recommend_new_user(result, items, [5.0, 4.5, 4.0, 1.0, 0.5, 3.0], n=4)
    assert len(table) == 4 and not set(items) & set(table["item"])


# -- the main job -----------------------------------------------------------------------

def test_fit_likelihood_ordinal_from_the_command_line(tmp_path, capsys):
    from bayes_pmf.cli.main import main

    drawn = bp.make_synthetic(60, 40, 1500, ordinal_spec(), rng=4)
    path = tmp_path / "ratings.csv"
    drawn.data.to_frame().to_csv(path, index=False)
    out = tmp_path / "run"
    code = main(["fit", "--data", str(path), "--likelihood", "ordinal", "--method", "gibbs",
                 "--draws", "40", "--tune", "20", "--chains", "2", "--factors", "2",
                 "--out", str(out), "--no-progress"])
    assert code == 0
    metrics = json.loads((out / "metrics.json").read_text())
    row = next(r for r in metrics["results"] if r["method"] == "bpmf-gibbs-ordinal")
    assert {"log_score", "rps", "pit_max_deviation"} <= set(row)
    assert metrics["settings"]["likelihood"] == "ordinal"
    assert main(["fit", "--data", str(path), "--likelihood", "ordinal", "--link", "logistic",
                 "--out", str(tmp_path / "bad"), "--no-progress"]) != 0
    assert "ordinal --likelihood has its own link" in capsys.readouterr().err
    # the default is ordinal: --link logistic alone means the Gaussian model
    assert main(["fit", "--data", str(path), "--link", "logistic", "--factors", "2",
                 "--json", "--out", str(tmp_path / "logistic")]) == 0
    assert json.loads(capsys.readouterr().out)["settings"]["likelihood"] == "gaussian"


def test_the_default_ordinal_model_names_the_way_out_for_continuous_ratings(tmp_path, capsys):
    """Continuous ratings have no grid: the default model refuses them before any work,
    naming the setting that fits them."""
    from bayes_pmf.cli.main import main

    drawn = bp.make_synthetic(30, 20, 300, bp.PMFSpec(n_factors=2), rng=0)
    path = tmp_path / "continuous.csv"
    drawn.data.to_frame().to_csv(path, index=False)
    assert main(["fit", "--data", str(path), "--out", str(tmp_path / "run"),
                 "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "error: --likelihood ordinal (the main job's default) needs ratings on a " \
        "bounded grid" in err and "choose --likelihood gaussian for continuous" in err
    assert not (tmp_path / "run").exists()
    assert main(["fit", "--data", str(path), "--likelihood", "gaussian", "--method", "als",
                 "--no-figures", "--out", str(tmp_path / "run"), "--no-progress"]) == 0


@pytest.mark.parametrize("link", ["probit", "logit"])
def test_pymc_map_of_the_ordinal_model_is_the_optimum_of_the_samplers_density(tiny, link):
    """PyMC's MAP (L-BFGS on the twin: OrderedProbit, or OrderedLogistic for the ordered
    logit) checked on the NumPy joint density (gibbs.joint_log_density): its gradient
    there, by central differences, is below 0.02 in every coordinate (measured 0.004:
    PyMC stops at a small gradient of its own density, whose log-cdf differs from ours by
    ~1e-6 per rating), while the cut points moved by 0.05 give gradients above 1; no
    nearby point (N(0, 0.01) in every coordinate, 50 of them) has a higher density; and
    the result predicts the level probabilities of its own parameters (the link's cdf)."""
    from bayes_pmf.engines.pymc_fit import fit_map

    spec = ordinal_spec(mu_prior=(3.0, 0.5), ordinal_link=link)
    pymc = fit_map(tiny, spec, rng=0, progress=False)
    n, m, d = tiny.n_users, tiny.n_items, spec.n_factors
    sizes = {"U": n * d, "V": m * d, "mu": 1, "user_bias": n, "item_bias": m, "free": 8}

    def density(x):
        parts, start = {}, 0
        for name, size in sizes.items():
            parts[name], start = x[start:start + size], start + size
        return joint_log_density(tiny, spec, {
            "U": parts["U"].reshape(n, d), "V": parts["V"].reshape(m, d),
            "mu": parts["mu"][0], "user_bias": parts["user_bias"],
            "item_bias": parts["item_bias"],
            "cutpoints": np.r_[cutpoint_centres(GRID)[0], parts["free"]]})

    def gradient(x, h=1e-5):
        return np.array([(density(x + h * e) - density(x - h * e)) / (2 * h)
                         for e in np.eye(len(x))])

    draws = pymc.draws
    x = np.r_[draws["U"][0].ravel(), draws["V"][0].ravel(), draws["mu"][0],
              draws["user_bias"][0], draws["item_bias"][0], draws["cutpoints"][0][1:]]
    assert np.abs(gradient(x)).max() < 0.02
    moved = x.copy()
    moved[-8:] += 0.05
    assert np.abs(gradient(moved)).max() > 1.0
    generator = np.random.default_rng(0)
    assert all(density(x + generator.normal(0.0, 0.01, len(x))) < density(x)
               for _ in range(50))
    users, items = tiny.id_pairs()
    eta = pymc.eta_draws(users, items)[0]
    edges = np.r_[-np.inf, draws["cutpoints"][0], np.inf]
    law = stats.norm if link == "probit" else stats.logistic
    expected = np.diff(law.cdf((edges[None, :] - eta[:, None]) / spec.sigma), axis=1)
    np.testing.assert_allclose(pymc.level_probabilities(users, items), expected, atol=1e-12)
    # a point estimate's predictive is its own ordinal one: ratings on the grid
    predictive, table = held_out_predictions(pymc, tiny).held_out
    assert set(np.unique(predictive)) <= set(GRID)
    np.testing.assert_allclose(table[level_column(3.0)], expected[:, 5], atol=1e-12)


def test_a_chains_latent_ratings_share_the_ratings_structure():
    """The ordinal chain's matrices of z hold only their own data: the sparsity (column
    indices, row pointers) and every rating's row are the training matrices' and the
    chain's own (32 bytes a rating at 10^7 ratings, 320 MB, were held twice), and a draw
    of z leaves the training ratings untouched."""
    import scipy.sparse as sp

    from bayes_pmf.engines.gibbs import _OrdinalLatent
    from bayes_pmf.engines.parallel import rating_rows

    spec = ordinal_spec()
    train = bp.make_synthetic(40, 15, 300, spec, rng=0).data
    rows = rating_rows(train.by_user)
    ratings = train.by_user.data.copy()
    latent = _OrdinalLatent(train, spec, 0, rows)
    assert latent.rows is rows
    for own, shared in ((latent.by_user, train.by_user), (latent.by_item, train.by_item)):
        assert isinstance(own, sp.csr_matrix)
        assert np.shares_memory(own.indices, shared.indices)
        assert np.shares_memory(own.indptr, shared.indptr)
    latent.by_user.data = latent.by_user.data + 1.0  # what a draw of z does
    np.testing.assert_array_equal(train.by_user.data, ratings)

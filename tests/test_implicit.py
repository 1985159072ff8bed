"""Implicit feedback (#19): the exact draw of the implicit factors, and the model on every
engine that fits it. The Gibbs sampler's joint density against PyMC's is in
tests/test_twins.py and its SBC in tests/test_calibration.py."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

import bayes_pmf as bp
from bayes_pmf.engines.implicit import ImplicitFeedback


def _problem(n, m, d, rng):
    pattern = (rng.random((n, m)) < 0.5).astype(float)
    pattern[:, 0] = 1.0
    matrix = sp.csr_matrix(pattern / np.sqrt(pattern.sum(axis=1, keepdims=True)))

    def spd():
        x = rng.standard_normal((d, d))
        return x @ x.T + d * np.eye(d)

    return matrix, spd(), spd()


def _dense_posterior(matrix, user_precision, implicit_precision, U, mean):
    """W's posterior in row-major vec form: precision I (x) Lambda_W + M^T M (x) Lambda_U."""
    m = matrix.shape[1]
    gram = (matrix.T @ matrix).toarray()
    precision = np.kron(np.eye(m), implicit_precision) + np.kron(gram, user_precision)
    linear = (matrix.T @ ((U - mean) @ user_precision)).ravel()
    return np.linalg.solve(precision, linear), np.linalg.inv(precision), precision


@pytest.mark.parametrize("shape", [(5, 8), (9, 4)])  # both ways of factorising M^T M
def test_the_loadings_are_m_times_an_orthonormal_row_basis(shape):
    rng = np.random.default_rng(0)
    matrix, _, _ = _problem(*shape, 3, rng)
    feedback = ImplicitFeedback(matrix)
    basis = feedback._lift(np.eye(feedback.rank))
    np.testing.assert_allclose(basis.T @ basis, np.eye(feedback.rank), atol=1e-12)
    np.testing.assert_allclose(matrix @ basis, feedback.loadings, atol=1e-12)
    # the rest of W is invisible to M
    other = rng.standard_normal((shape[1], 3))
    np.testing.assert_allclose(matrix @ (other - basis @ (basis.T @ other)), 0, atol=1e-12)


@pytest.mark.parametrize("shape", [(5, 8), (9, 4)])
def test_implicit_draws_have_the_posteriors_mean_and_covariance(shape):
    """20,000 draws of W | U (C drawn, the rest of W from its prior: ``full``): every
    mean within 4.5 standard errors of the exact one (24-32 entries: a family-wise
    bound), every covariance within 5 of its standard error (sqrt((C_kk C_ll + C_kl^2)
    / N) for Gaussian draws). Draws with W's prior precision doubled in the C step (a
    wrong conditional) fail the same checks."""
    rng = np.random.default_rng(1)
    matrix, user_precision, implicit_precision = _problem(*shape, 3, rng)
    feedback = ImplicitFeedback(matrix)
    U, mean = rng.standard_normal((shape[0], 3)), rng.standard_normal(3)
    exact_mean, exact_cov, _ = _dense_posterior(matrix, user_precision, implicit_precision,
                                                U, mean)
    sd = np.sqrt(np.diag(exact_cov))

    def deviations(precision, n_draws=20_000):
        draws = np.array([feedback.full(feedback.draw(U, mean, user_precision, precision,
                                                      rng), implicit_precision, rng).ravel()
                          for _ in range(n_draws)])
        error = np.sqrt((np.outer(sd**2, sd**2) + exact_cov**2) / n_draws)
        return (np.max(np.abs(draws.mean(axis=0) - exact_mean) / (sd / np.sqrt(n_draws))),
                np.max(np.abs(np.cov(draws.T) - exact_cov) / error))

    mean_z, cov_z = deviations(implicit_precision)
    assert mean_z < 4.5 and cov_z < 5.0, (mean_z, cov_z)
    mean_z, cov_z = deviations(2.0 * implicit_precision)
    assert mean_z > 4.5 or cov_z > 5.0, (mean_z, cov_z)


def test_implicit_feedback_beats_plain_bpmf_where_it_carries_information():
    """Ratings drawn from a model whose item factors are mostly who rated them (Z's
    scale 20x the own factors'), 400 items with 7.5 ratings each: items are predicted
    from their raters, which plain BPMF cannot do. Held-out RMSE, same chains: the
    implicit model must be ahead by more than 5% (measured on truth seeds 4 / 5 / 6: 0.95
    / 0.84 / 0.70 of plain's RMSE; seed 5 is the test's)."""
    truth_spec = bp.PMFSpec(n_factors=3, sigma=0.3, sigma_u=0.5, sigma_v=0.15,
                            sigma_w=3.0, implicit_items=True, implicit_norm="sqrt",
                            biases=False, global_mean=False)
    drawn = bp.draw_from_prior(truth_spec, 150, 400, 3000, rng=5)
    split = bp.random_split(drawn.data, 0.2, rng=0)
    users, items = split.test.id_pairs()
    plain = bp.PMFSpec.hierarchical(n_factors=3)
    scores = {}
    for name, spec in (("plain", plain),
                       ("implicit", plain.with_(implicit_items=True, implicit_norm="sqrt"))):
        result = bp.sample_gibbs(split.train, spec, chains=1, tune=150, draws=150, rng=0,
                                 progress=False, cores=1)
        prediction = result.predict(users, items, unknown="prior")
        scores[name] = float(np.sqrt(np.mean((prediction - split.test.rating) ** 2)))
    assert scores["implicit"] < 0.95 * scores["plain"], scores


def test_implicit_gibbs_keeps_the_effective_factors_and_the_implicit_ones():
    """A result stores U = Y + M W and V = X + M' Z (what predictions use) and the draws
    of W and Z with their prior scales; the same seed gives the same draws."""
    data = bp.make_synthetic(20, 15, 150, bp.PMFSpec(n_factors=2), rng=1).data
    spec = bp.PMFSpec.hierarchical(n_factors=2, constrained=True, implicit_items=True,
                                   implicit_norm="sqrt")
    first = bp.sample_gibbs(data, spec, chains=2, tune=5, draws=6, rng=3, progress=False,
                            cores=1)
    again = bp.sample_gibbs(data, spec, chains=2, tune=5, draws=6, rng=3, progress=False,
                            cores=1)
    draws = first.draws
    assert draws["W"].shape[1:] == (15, 2) and draws["Z"].shape[1:] == (20, 2)
    assert {"sigma_w", "sigma_z"} <= set(draws)
    np.testing.assert_array_equal(draws["U"], again.draws["U"])
    np.testing.assert_array_equal(draws["Z"], again.draws["Z"])
    assert first.spec.implicit_items and first.spec.constrained


def test_pymc_results_keep_the_implicit_factors_prior_scales():
    """PyMC results (NUTS, ADVI) of the default implicit-feedback model keep sigma_w and
    sigma_z, one value per draw, as the Gibbs sampler's do: the default model's NUTS
    agreement test compares them (they were dropped before)."""
    from bayes_pmf.engines.pymc_fit import fit_advi

    data = bp.make_synthetic(12, 9, 60, bp.PMFSpec(n_factors=2), rng=1).data
    spec = bp.PMFSpec.hierarchical(n_factors=2, constrained=True, implicit_items=True,
                                   implicit_norm="sqrt")
    assert spec.prior == "wishart"
    result = fit_advi(data, spec, iterations=20, draws=7, rng=0, progress=False)
    draws = result.draws
    assert draws["sigma_w"].shape == draws["sigma_z"].shape == (7,)
    assert np.all(draws["sigma_w"] > 0) and draws["sigma_w"].std() > 0
    assert not np.allclose(draws["sigma_w"], draws["sigma_z"])
    assert {"sigma_w", "sigma_z"} <= set(result.idata.posterior)


@pytest.mark.slow
def test_noncentered_nuts_starts_at_the_map_and_keeps_the_factors():
    """sample_nuts(parameterization="noncentered") with PyMC's own NUTS: it starts from
    the MAP given through the noncentered variables (tests/test_twins.py checks the
    conversion), and its result holds the factors (U, V, Y, W, X, Z) and scales under the
    usual names, so every analysis reads it as a centred run's."""
    from bayes_pmf.engines.pymc_fit import sample_nuts

    data = bp.make_synthetic(12, 9, 60, bp.PMFSpec(n_factors=2), rng=1).data
    spec = bp.PMFSpec.hierarchical(n_factors=2, constrained=True, implicit_items=True,
                                   implicit_norm="sqrt")
    result = sample_nuts(data, spec, draws=15, tune=15, chains=1, sampler="pymc", rng=2,
                         progress=False, parameterization="noncentered")
    assert result.settings["parameterization"] == "noncentered"
    draws = result.draws
    assert draws["U"].shape == (15, data.n_users, 2) and draws["Z"].shape == (15, data.n_users, 2)
    assert draws["sigma_u"].shape == (15,) and np.all(draws["sigma_u"] > 0)
    assert not any(name.endswith("_raw") for name in result.idata.posterior)
    predicted = result.predict(*data.id_pairs())
    assert np.all(np.isfinite(predicted))
    assert np.sqrt(np.mean((predicted - data.rating) ** 2)) < np.std(data.rating)


def test_feedback_only_fold_in_uses_what_a_user_rated_since():
    """Ratings drawn from a model whose user factors are mostly which items the user
    rated (W's scale 20x the own factors'); 20% held out. Folding each test user's
    held-out items in as feedback only (which items, not the ratings) must cut the
    held-out RMSE of those very pairs by more than 10%: measured 0.618 against 0.802.
    Keeping each draw's Y and only adding the new items' W (no redraw given the user's
    ratings) measured 1.074, worse than no fold-in: this test fails on it."""
    from bayes_pmf.analysis.recommend import fold_in_feedback, predict_folded

    truth = bp.PMFSpec(n_factors=3, sigma=0.3, sigma_u=0.15, sigma_v=0.5, sigma_w=3.0,
                       constrained=True, implicit_norm="sqrt", biases=False,
                       global_mean=False)
    drawn = bp.draw_from_prior(truth, 400, 150, 3000, rng=5)
    split = bp.random_split(drawn.data, 0.2, rng=0)
    spec = bp.PMFSpec.hierarchical(n_factors=3).with_(constrained=True, implicit_norm="sqrt")
    result = bp.sample_gibbs(split.train, spec, chains=1, tune=150, draws=150, rng=0,
                             progress=False, cores=1)
    users, items = split.test.id_pairs()
    known = (result.user_ids.get_indexer(users) >= 0) & (result.item_ids.get_indexer(items)
                                                         >= 0)
    folded, plain, actual = [], [], []
    for user in np.unique(users[known]):
        mine = known & (users == user)
        draws = fold_in_feedback(result, user, items[mine], rng=0)
        folded.append(predict_folded(result, draws, items[mine]))
        plain.append(result.predict(users[mine], items[mine]))
        actual.append(split.test.rating[mine])
    folded, plain, actual = map(np.concatenate, (folded, plain, actual))
    assert len(actual) > 500
    error = {name: float(np.sqrt(np.mean((values - actual) ** 2)))
             for name, values in (("folded", folded), ("plain", plain))}
    print(f"\nfeedback-only fold-in: held-out RMSE {error['folded']:.3f} against "
          f"{error['plain']:.3f}")
    assert error["folded"] < 0.9 * error["plain"], error


def test_feedback_only_fold_in_refuses_what_it_cannot_do():
    data = bp.make_synthetic(20, 15, 150, bp.PMFSpec(n_factors=2), rng=1).data
    plain = bp.fit_als(data, bp.PMFSpec(n_factors=2), progress=False)
    with pytest.raises(bp.ConfigError, match="no user-side feedback term"):
        bp.fold_in_feedback(plain, data.user_ids[0], [data.item_ids[0]])
    spec = bp.PMFSpec.hierarchical(n_factors=2, constrained=True, implicit_norm="sqrt")
    result = bp.sample_gibbs(data, spec, chains=1, tune=5, draws=5, rng=3, progress=False,
                             cores=1)
    with pytest.raises(bp.UnknownIdError, match="fold a new user in with fold_in_user"):
        bp.fold_in_feedback(result, "nobody", [data.item_ids[0]])
    with pytest.raises(bp.ConfigError, match="'nothing' has no training ratings"):
        bp.fold_in_feedback(result, data.user_ids[0], ["nothing"])

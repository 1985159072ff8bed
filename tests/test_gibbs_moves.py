"""The moves that speed the Gibbs sampler up leave its target distribution invariant:
overrelaxed row, Gamma and shift updates, the balance moves over invertible matrices,
and the Bartlett Wishart draw."""

import numpy as np
import pytest
import scipy.sparse as sp
from scipy import stats

from bayes_pmf.engines import gibbs
from bayes_pmf.engines.gibbs import _balance_moves, overrelaxed_gamma, wishart_draw
from bayes_pmf.engines.linalg import (
    WhitenedDesign,
    _sample_rows_lapack,
    sample_rows,
    sample_short_rows,
)


def _one_row_problem(p: int, n_ratings: int, rng):
    m, tau = 30, 2.0
    design = rng.standard_normal((m, p))
    columns = np.sort(rng.choice(m, n_ratings, replace=False))
    targets = rng.standard_normal(n_ratings)
    block = sp.csr_matrix((targets, columns, [0, n_ratings]), shape=(1, m))
    root = rng.standard_normal((p, p))
    precision = root @ root.T + np.eye(p)
    prior_mean = rng.standard_normal(p)
    x = design[columns]
    conditional_precision = precision + tau * x.T @ x
    mean = np.linalg.solve(conditional_precision, precision @ prior_mean + tau * x.T @ targets)
    return block, design, precision, prior_mean, tau, mean, np.linalg.inv(conditional_precision)


@pytest.mark.parametrize("path, p, n_ratings", [
    ("batch-last", 4, 6), ("lapack", 4, 6), ("short-rows", 5, 3)])
def test_overrelaxed_row_updates_keep_the_conditional(path, p, n_ratings):
    """Iterating the overrelaxed update (a = -0.8) from far away, 20,000 times, gives
    the exact conditional's mean and covariance. The chain is antithetic (lag-1
    correlation about -0.8), so its Monte-Carlo error is below that of independent
    draws; the bounds are 6 independent-draw standard errors. Leaving out the
    sqrt(1 - a^2) on the fresh noise would shrink the covariance to 0.36 of the truth."""
    rng = np.random.default_rng(11)
    block, design, precision, prior_mean, tau, mean, covariance = _one_row_problem(
        p, n_ratings, rng)
    whitened = WhitenedDesign.build(design, precision, prior_mean)
    current = np.full((1, p), 5.0)
    draws = []
    for _ in range(20_000):
        noise = rng.standard_normal((1, p))
        if path == "batch-last":
            out = sample_rows(block, design, precision, prior_mean, tau, noise, current, -0.8)
        elif path == "lapack":
            out = _sample_rows_lapack(block, design, precision, prior_mean, tau, noise,
                                      current, -0.8)
        else:
            out = sample_short_rows(block, whitened, tau, noise,
                                    rng.standard_normal(n_ratings), current, -0.8)
        current = out[:, :p]
        draws.append(current[0])
    draws = np.array(draws[200:])
    n = len(draws)
    scale = np.sqrt(np.diag(covariance).max())
    np.testing.assert_allclose(draws.mean(axis=0), mean, rtol=0, atol=6 * scale / np.sqrt(n))
    np.testing.assert_allclose(np.cov(draws.T), covariance, rtol=0,
                               atol=6 * scale**2 * np.sqrt(2 / n))
    lag_one = np.corrcoef(draws[:-1, 0], draws[1:, 0])[0, 1]
    assert lag_one < -0.3  # the update does overrelax


def test_overrelaxed_gamma_keeps_the_gamma_distribution():
    """20,000 iterations of the overrelaxed Gamma update: KS test against the Gamma at
    level 0.001 on every 10th value (nearly independent), and lag-1 correlation near
    a = -0.8 (the normal-score update is exactly a there)."""
    rng = np.random.default_rng(3)
    for shape, rate in [(3.0, 2.0), (45_000.0, 30_000.0)]:
        value, values = 1.0, []
        for _ in range(20_000):
            value = overrelaxed_gamma(shape, rate, value, -0.8, rng)
            values.append(value)
        values = np.array(values[100:])
        assert stats.kstest(values[::10], stats.gamma(shape, scale=1 / rate).cdf).pvalue > 1e-3
        assert np.corrcoef(values[:-1], values[1:])[0, 1] < -0.6


def test_plain_gamma_update_is_a_plain_draw():
    rng_a, rng_b = np.random.default_rng(5), np.random.default_rng(5)
    assert overrelaxed_gamma(4.0, 2.0, 1.0, 0.0, rng_a) == rng_b.gamma(4.0, 0.5)


def test_bartlett_wishart_draws_match_scipy():
    """Mean df S within 2% and the (0, 1) entry's and the determinant's distributions
    equal to scipy's (two-sample KS, level 0.001), 20,000 draws each."""
    rng = np.random.default_rng(0)
    root = rng.standard_normal((3, 3))
    scale = root @ root.T + np.eye(3)
    draws = np.array([wishart_draw(7.0, np.linalg.inv(scale), rng) for _ in range(20_000)])
    reference = stats.wishart.rvs(df=7.0, scale=scale, size=20_000, random_state=1)
    np.testing.assert_allclose(draws.mean(axis=0), 7.0 * scale, rtol=0,
                               atol=0.02 * np.abs(7.0 * scale).max())
    assert stats.ks_2samp(draws[:, 0, 1], reference[:, 0, 1]).pvalue > 1e-3
    assert stats.ks_2samp(np.linalg.det(draws), np.linalg.det(reference)).pvalue > 1e-3


def _matrix_t_prior_draw(n: int, m: int, d: int, rng):
    """(U, V) from the zero-mean Wishart model's prior: Lambda ~ Wishart(d, I), rows of
    U ~ N(0, Lambda^-1), likewise V."""
    def side(rows):
        precision = wishart_draw(d, np.eye(d), rng)
        return rng.standard_normal((rows, d)) @ np.linalg.inv(np.linalg.cholesky(precision)).T
    return side(n), side(m)


def test_balance_moves_leave_predictions_unchanged():
    rng = np.random.default_rng(2)
    U, V = rng.standard_normal((20, 3)), rng.standard_normal((35, 3))
    (moved_u,), (moved_v,), acceptance = _balance_moves([U], [V], rng, steps=20,
                                                        step_size=0.2)
    assert acceptance > 0 and not np.allclose(moved_u, U)
    np.testing.assert_allclose(moved_u @ moved_v.T, U @ V.T, rtol=0, atol=1e-10)


def test_balance_moves_keep_the_prior_of_the_factors():
    """With no data the posterior is the prior, so balance moves applied to prior draws
    must give prior draws again. 4,000 draws with n = 4 users and m = 12 items (so
    the Jacobian |det A|^(n - m) weighs in), d = 2: the distributions of the balance
    log(|U|^2 / |V|^2) and of log|U^T U| before and after agree (two-sample KS, level
    0.001). A move accepted without its Jacobian shifts the balance towards V."""
    rng = np.random.default_rng(8)
    before, after = [], []
    for _ in range(4_000):
        U, V = _matrix_t_prior_draw(4, 12, 2, rng)
        (moved_u,), (moved_v,), _ = _balance_moves([U], [V], rng, steps=15, step_size=0.6)

        def statistics(u, v):
            return np.log((u**2).sum() / (v**2).sum()), np.linalg.slogdet(u.T @ u)[1]

        before.append(statistics(U, V))
        after.append(statistics(moved_u, moved_v))
    before, after = np.array(before), np.array(after)
    moved = np.mean(np.abs(before[:, 0] - after[:, 0]) > 1e-9)
    assert moved > 0.5  # most draws did move
    for column in range(2):
        assert stats.ks_2samp(before[:, column], after[:, column]).pvalue > 1e-3


def _ridge_prior_draws(n: int, r: int, d: int, rng, loadings: np.ndarray):
    """(U, O, C) with Y and C drawn from the zero-mean Wishart model's prior (each with
    its own precision), O = L C and U = Y + O: implicit feedback with no ratings."""
    Y, C = _matrix_t_prior_draw(n, r, d, rng)
    offsets = loadings @ C
    return Y + offsets, offsets, C


def test_ridge_moves_leave_the_effective_factors_unchanged():
    rng = np.random.default_rng(4)
    loadings = rng.standard_normal((15, 6))
    U, offsets, C = _ridge_prior_draws(15, 6, 3, rng, loadings)
    moved, acceptance = gibbs._ridge_moves(U, offsets, C, rng, steps=20, step_size=0.05)
    assert acceptance > 0 and not np.allclose(moved, np.eye(3))
    # the sampler's side keeps C A, O A and own = U - O A: U = own + M F as before
    side = gibbs._ImplicitSide.__new__(gibbs._ImplicitSide)
    side.factors, side.offsets, side.own = C, offsets, U - offsets
    side.move_along_ridge(U, moved)
    np.testing.assert_allclose(side.factors, C @ moved)
    np.testing.assert_allclose(side.offsets, loadings @ side.factors, atol=1e-10)
    np.testing.assert_allclose(side.own + side.offsets, U, atol=1e-10)


def _ridge_statistics(n_draws: int, rng):
    """Statistics of (Y, C) from the prior before and after ridge moves: log(|Y|^2/|C|^2)
    (the split of U between Y and the implicit part) and log|C^T C|. n = 5 users, r = 9
    rows of C, d = 2, so the Jacobian |det A|^r weighs in."""
    loadings = rng.standard_normal((5, 9)) / 3.0
    before, after = [], []
    for _ in range(n_draws):
        U, offsets, C = _ridge_prior_draws(5, 9, 2, rng, loadings)
        moved, _ = gibbs._ridge_moves(U, offsets, C, rng, steps=15, step_size=0.6)
        moved = np.eye(2) if moved is None else moved
        for out, (c, o) in ((before, (C, offsets)), (after, (C @ moved, offsets @ moved))):
            out.append((np.log(((U - o) ** 2).sum() / (c**2).sum()),
                        np.linalg.slogdet(c.T @ c)[1]))
    return np.array(before), np.array(after)


def test_ridge_moves_keep_the_prior_of_the_own_and_implicit_factors():
    """With no data the posterior is the prior, so ridge moves applied to prior draws of
    (Y, C) give prior draws again: 4,000 draws, two-sample KS at level 0.001 on both
    statistics of ``_ridge_statistics``."""
    before, after = _ridge_statistics(4_000, np.random.default_rng(8))
    assert np.mean(np.abs(before[:, 1] - after[:, 1]) > 1e-9) > 0.5  # most draws moved
    for column in range(2):
        assert stats.ks_2samp(before[:, column], after[:, column]).pvalue > 1e-3


def test_ridge_moves_with_a_wrong_target_change_the_prior(monkeypatch):
    """The check has power: ridge moves that leave C's own prior out of their target (the
    collapsed density of the first matrix only) inflate C, and the same KS test fails."""
    density = gibbs._collapsed_wishart_log_density
    monkeypatch.setattr(gibbs, "_collapsed_wishart_log_density",
                        lambda grams, downs, log_det, rows, rows_down:
                        density(grams[:1], downs, log_det, rows[:1], rows_down))
    before, after = _ridge_statistics(1_000, np.random.default_rng(8))
    assert stats.ks_2samp(before[:, 1], after[:, 1]).pvalue < 1e-6


@pytest.mark.parametrize("overrelax", [-1.0, 0.3, float("nan")])
def test_overrelaxation_outside_its_range_is_refused(overrelax):
    import bayes_pmf as bp
    from bayes_pmf.engines.gibbs import sample_gibbs

    data = bp.RatingsData.from_arrays(["a", "b", "a"], [1, 1, 2], [3.0, 4.0, 5.0])
    with pytest.raises(bp.ConfigError, match=r"overrelax must be in \(-1, 0\]"):
        sample_gibbs(data, bp.PMFSpec().with_(prior="normal-wishart", noise="learned"), draws=5,
                     tune=0, chains=1, overrelax=overrelax, progress=False)


def _bias_prior_after_moves(gamma_prior, move_prior, n_draws=4_000, seed=11):
    """log tau_c of prior draws (tau_c ~ Gamma, 6 biases ~ N(0, 1/tau_c)) before and
    after 10 bias scale moves with no data (so the target is the prior)."""
    from bayes_pmf.engines.gibbs import _bias_scale_move

    rng = np.random.default_rng(seed)
    a0, b0 = gamma_prior
    before, after = [], []
    for _ in range(n_draws):
        precision = rng.gamma(a0, 1.0 / b0)
        bias = rng.standard_normal(6) / np.sqrt(precision)
        before.append(np.log(precision))
        for _ in range(10):
            bias, precision, change, _ = _bias_scale_move(
                bias, precision, np.zeros(0), np.zeros(0, dtype=int), 1.0, move_prior, 0.8,
                rng)
            assert change == 0.0
        after.append(np.log(precision))
    return np.array(before), np.array(after)


def test_bias_scale_moves_keep_the_prior_of_biases_and_their_precision():
    """With no data the posterior is the prior: 4,000 prior draws of (c, tau_c) moved 10
    times each keep tau_c's distribution (two-sample KS, level 0.001). The same moves
    targeting another hyperprior (Gamma(3, 1) instead of Gamma(1, 1)) shift it."""
    from scipy import stats

    before, after = _bias_prior_after_moves((1.0, 1.0), (1.0, 1.0))
    assert stats.ks_2samp(before, after).pvalue > 1e-3
    assert np.mean(before != after) > 0.5  # the moves do move
    before, after = _bias_prior_after_moves((1.0, 1.0), (3.0, 1.0))
    assert stats.ks_2samp(before, after).pvalue < 1e-6


def test_bias_scale_move_tracks_the_sum_of_squares():
    """The change it reports is the change of the residual sum of squares."""
    from bayes_pmf.engines.gibbs import _bias_scale_move

    rng = np.random.default_rng(3)
    bias, index = rng.standard_normal(4), rng.integers(0, 4, 30)
    residual = rng.standard_normal(30)
    moved, _, change, accepted = _bias_scale_move(bias, 1.0, residual, index, 1e-9,
                                                  (1.0, 1.0), 0.5, rng)
    assert accepted  # tau ~ 0: the data barely weigh in
    new_residual = residual - (moved - bias)[index]
    np.testing.assert_allclose(change, new_residual @ new_residual - residual @ residual,
                               rtol=1e-10)

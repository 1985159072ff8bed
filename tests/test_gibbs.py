"""The Gibbs sampler samples the right posterior: agreement with NUTS, simulation-based
calibration, and coverage of the truth on data drawn from the model."""

import hashlib
import multiprocessing
import threading

import numpy as np
import pytest
from scipy import stats
from threadpoolctl import ThreadpoolController

import bayes_pmf as bp
from bayes_pmf.engines.gibbs import sample_gibbs
from bayes_pmf.engines.parallel import LocalExecutor, single_threaded_blas

SPEC = bp.PMFSpec(n_factors=2, sigma=0.5, sigma_u=0.8, sigma_v=0.8, biases=True,
                  sigma_user_bias=0.4, sigma_item_bias=0.4)


@pytest.fixture(scope="module")
def tiny():
    synthetic = bp.make_synthetic(40, 30, 500, SPEC, rng=2)
    return synthetic, bp.random_split(synthetic.data, 0.2, rng=0)


def _pairs(test):
    return test.user_ids[test.user_idx], test.item_ids[test.item_idx]


def test_result_shape_matches_other_methods_and_is_seeded(tiny):
    _, split = tiny
    first = sample_gibbs(split.train, SPEC.with_(prior="normal-wishart", noise="learned"), draws=30,
                         tune=10, chains=2, held_out=split.test, rng=5, progress=False)
    again = sample_gibbs(split.train, SPEC.with_(prior="normal-wishart", noise="learned"), draws=30,
                         tune=10, chains=2, held_out=split.test, rng=5, progress=False)
    post = first.idata.posterior
    assert post["U"].dims == ("chain", "draw", "user", "latent")
    assert (post.sizes["chain"], post.sizes["draw"]) == (2, 30)
    assert {"sigma", "mu", "user_bias", "item_bias"} <= set(post.data_vars)
    np.testing.assert_array_equal(post["U"].to_numpy(), again.idata.posterior["U"].to_numpy())
    running = first.idata.sample_stats["running_test_rmse"]
    assert running.dims == ("chain", "draw")
    # The last running-mean RMSE equals the RMSE of that chain's posterior-mean prediction.
    users, items = _pairs(split.test)
    chain0 = first.mean_draws(users, items, unknown="prior")[:30].mean(axis=0)
    # (the draws are stored in float32, 7 digits: the chain's own running mean is float64)
    assert float(running[0, -1]) == pytest.approx(bp.rmse(split.test.rating, chain0), rel=1e-7)


def test_draws_do_not_depend_on_processes_or_blocks(tiny):
    """Chains in 2 processes, and half-steps cut into blocks of 7 rows, give bit-identical
    draws to one process with one block: parallelism never changes the numbers."""
    _, split = tiny
    args = dict(draws=15, tune=5, chains=3, held_out=split.test, rng=11, progress=False)
    spec = SPEC.with_(prior="wishart", noise="learned")
    serial = sample_gibbs(split.train, spec, cores=1, **args)
    parallel = sample_gibbs(split.train, spec, cores=2, block_rows=7, **args)
    assert parallel.attrs["settings"]["cores"] == 2
    for name, values in serial.idata.posterior.data_vars.items():
        np.testing.assert_array_equal(values.to_numpy(),
                                      parallel.idata.posterior[name].to_numpy(), err_msg=name)
    np.testing.assert_array_equal(serial.idata.sample_stats["running_test_rmse"].to_numpy(),
                                  parallel.idata.sample_stats["running_test_rmse"].to_numpy())


@pytest.mark.parametrize("n_factors", [10, 15, 16, 24])
def test_draws_do_not_depend_on_blocks_or_threads(n_factors):
    """Each row's draw must not depend on the rows beside it in its block. Up to 16
    unknowns per row the draws are batch-last, whose kernels took another path for a
    block of one row (failed at d = 10 and 15 with 299-row blocks of 300 users); from 17,
    rows with fewer ratings than unknowns take the short-row identity and the rest
    per-matrix LAPACK, where BLAS's matrix product of the block's rows summed a row's
    terms in an order that depends on how many rows it got (failed at d = 16: blocks of
    64 and of 300 parted after a few sweeps; found when a Dask test ran its own layout)."""
    spec = bp.PMFSpec.hierarchical().with_(n_factors=n_factors)
    data = bp.make_synthetic(300, 200, 6000, spec, rng=3).data
    counts = np.diff(data.by_item.indptr)
    if n_factors >= 16:
        assert 0 < np.sum(counts <= n_factors) < len(counts)  # short and long rows
    settings = dict(draws=12, tune=0, chains=1, rng=1, progress=False)
    digests = set()
    # 299 rows per block leave the 300 users' last block one row
    for threads, block_rows in ((1, 4096), (3, 4096), (1, 64), (2, 37), (1, 299)):
        result = sample_gibbs(data, spec, block_rows=block_rows,
                              executor=LocalExecutor(threads=threads, processes=1),
                              **settings)
        digest = hashlib.sha256()
        for name in sorted(result.idata.posterior.data_vars):
            digest.update(np.ascontiguousarray(result.idata.posterior[name]).tobytes())
        digests.add(digest.hexdigest()[:12])
    assert len(digests) == 1


@pytest.mark.parametrize("p", [3, 11, 16, 24])
def test_a_rows_draw_and_squared_error_do_not_depend_on_its_block(p):
    """The row kernel itself, every column of its output: the draw and the last column,
    sum_j (t_ij - w.x_j)^2 - sum_j t_ij^2, which a learned noise reads. 700 rows drawn as
    one block and cut into blocks of 2 to 699 rows must agree bit for bit. The last
    column's w^T P w took BLAS's product P @ draws over the block: at p = 16 (d = 15 with
    biases) it differed for blocks of 2, 3, 5, 17, 33, 100, 129 and 350 rows, so a learned
    noise, and with it the chain, depended on the rows per block."""
    import scipy.sparse as sp

    from bayes_pmf.engines.linalg import sample_rows

    rng = np.random.default_rng(0)
    n_rows, n_cols = 700, 300
    block = sp.random(n_rows, n_cols, density=0.05, format="csr", random_state=1)
    block.data = rng.normal(size=block.nnz)
    design = rng.normal(size=(n_cols, p))
    root = rng.normal(size=(p, p))
    precision = root @ root.T + p * np.eye(p)
    mean, noise = rng.normal(size=p), rng.normal(size=(n_rows, p))
    whole = sample_rows(block, design, precision, mean, 2.0, noise)
    for size in (1, 2, 3, 5, 17, 33, 64, 100, 129, 350, 699):
        parts = np.vstack([sample_rows(block[s:s + size], design, precision, mean, 2.0,
                                       noise[s:s + size]) for s in range(0, n_rows, size)])
        np.testing.assert_array_equal(parts, whole, err_msg=f"blocks of {size} rows")


def test_blas_stays_single_threaded_until_the_last_chain_thread_leaves():
    """Chains running as threads of one process (a Dask client's chains, a worker's
    tasks) each hold BLAS to one thread; the limit is the process's. Chain A leaves while
    chain B is still sweeping: B must keep one BLAS thread (two sum a long dot product
    in another order, so B's draws would depend on which chain ended first; seen as
    Dask draws that differed from the in-process ones now and then). Failed when each
    context restored the old limit on its own exit."""
    controller = ThreadpoolController()

    def blas_threads() -> int:
        return max(pool["num_threads"] for pool in controller.info()
                   if pool["user_api"] == "blas")

    a_inside, b_inside, a_left = threading.Event(), threading.Event(), threading.Event()
    seen = []

    def chain_a() -> None:  # enters first, leaves while B is inside
        with single_threaded_blas():
            a_inside.set()
            b_inside.wait(timeout=30)
        a_left.set()

    def chain_b() -> None:
        a_inside.wait(timeout=30)
        with single_threaded_blas():
            seen.append(blas_threads())
            b_inside.set()
            a_left.wait(timeout=30)
            seen.append(blas_threads())  # A has left, B still inside
        seen.append(blas_threads())

    with controller.limit(limits=2, user_api="blas"):  # the machine's own, say
        threads = [threading.Thread(target=chain_a), threading.Thread(target=chain_b)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=30)
        assert seen == [1, 1, 2]  # one thread while any chain is inside, then restored


def test_an_error_inside_a_chain_process_reaches_the_caller(tiny):
    _, split = tiny
    # Ratings of 1e200 overflow the Gram matrices inside the chain processes.
    data = split.train
    huge = bp.RatingsData(data.user_idx, data.item_idx, data.rating * 1e200, data.user_ids,
                          data.item_ids, bp.RatingScale.unbounded())
    with pytest.raises(bp.NumericalError):
        sample_gibbs(huge, SPEC.with_(prior="normal-wishart", noise="learned"), draws=5, tune=0,
                     chains=2, cores=2, init="random", progress=False)


@pytest.mark.parametrize("cores", [0, -1, 1.5])
def test_bad_cores_are_refused(tiny, cores):
    _, split = tiny
    with pytest.raises(bp.ConfigError, match="cores"):
        sample_gibbs(split.train, SPEC.with_(prior="normal-wishart", noise="learned"), draws=5,
                     tune=0, chains=2, cores=cores, progress=False)


@pytest.mark.parametrize("overrelax", [0.0, -0.8], ids=["plain", "overrelaxed"])
@pytest.mark.parametrize("p, path", [(3, "long"), (25, "long"), (25, "short")],
                         ids=["sparse-gram-batch-last", "blas-gram-lapack", "short-rows"])
def test_row_draw_reports_its_squared_residuals(p, path, overrelax):
    """The draws' last column, sum_j (t_ij - w_i.x_j)^2 - sum_j t_ij^2 (from the normal
    equations for sample_rows, from the fitted values for sample_short_rows), equals the
    sum taken directly over the row's ratings."""
    import scipy.sparse as sp

    from bayes_pmf.engines.linalg import WhitenedDesign, sample_rows, sample_short_rows

    rng = np.random.default_rng(4)
    n_rows, m, tau = 12, 60, 2.5
    mask = rng.random((n_rows, m)) < 0.4
    targets = np.where(mask, rng.normal(size=(n_rows, m)), 0.0)
    block = sp.csr_matrix((targets[mask], np.nonzero(mask)[1], np.r_[0, np.cumsum(mask.sum(1))]),
                          shape=(n_rows, m))
    design = rng.normal(size=(m, p))
    root = rng.normal(size=(p, p))
    precision = root @ root.T + np.eye(p)
    prior_mean = rng.normal(size=p)
    noise = rng.standard_normal((n_rows, p))
    previous = rng.normal(size=(n_rows, p))
    if path == "long":
        out = sample_rows(block, design, precision, prior_mean, tau, noise, previous,
                          overrelax)
    else:
        out = sample_short_rows(block, WhitenedDesign.build(design, precision, prior_mean),
                                tau, noise, rng.standard_normal(block.nnz), previous,
                                overrelax)
    draws, change = out[:, :p], out[:, p]
    residuals = np.where(mask, targets - draws @ design.T, 0.0)
    expected = (residuals**2).sum(axis=1) - (targets**2).sum(axis=1)
    # Sums of ~25 O(1) terms, one of them formed through a Cholesky solve: 1e-9 absolute.
    np.testing.assert_allclose(change, expected, rtol=0, atol=1e-9)


@pytest.mark.parametrize("n_ratings", [0, 3])
def test_short_row_draws_have_the_exact_conditional_distribution(n_ratings):
    """sample_short_rows' draws of one row's w | rest, repeated 20,000 times, have the
    conditional's mean P^-1 h and covariance P^-1 computed densely (the prior itself for
    a row without ratings). Tolerances: 5 Monte Carlo standard errors for the mean (an
    entry's sd / sqrt(20,000)); for the covariance, 5 x sqrt(2 / 20,000) x the largest
    variance, a bound on the sd of a sample covariance entry."""
    import scipy.sparse as sp

    from bayes_pmf.engines.linalg import WhitenedDesign, sample_short_rows

    rng = np.random.default_rng(11)
    p, m, tau, draws = 6, 40, 2.5, 20_000
    design = rng.normal(size=(m, p))
    root = rng.normal(size=(p, p))
    precision = root @ root.T + np.eye(p)
    prior_mean = rng.normal(size=p)
    columns, targets = np.array([3, 7, 11])[:n_ratings], rng.normal(size=3)[:n_ratings]
    block = sp.csr_matrix((np.tile(targets, draws), np.tile(columns, draws),
                           np.arange(draws + 1) * n_ratings), shape=(draws, m))
    out = sample_short_rows(block, WhitenedDesign.build(design, precision, prior_mean), tau,
                            rng.standard_normal((draws, p)), rng.standard_normal(block.nnz))
    X = design[columns]
    posterior_precision = precision + tau * X.T @ X
    mean = np.linalg.solve(posterior_precision, precision @ prior_mean + tau * X.T @ targets)
    covariance = np.linalg.inv(posterior_precision)
    sd = np.sqrt(np.diag(covariance))
    assert np.all(np.abs(out[:, :p].mean(axis=0) - mean) < 5 * sd / np.sqrt(draws))
    bound = 5 * np.sqrt(2 / draws) * np.diag(covariance).max()
    np.testing.assert_allclose(np.cov(out[:, :p].T), covariance, rtol=0, atol=bound)


def test_shift_moves_change_parameters_but_no_prediction():
    from bayes_pmf.engines.gibbs import _shift_moves, _SideHyper

    rng = np.random.default_rng(6)
    n, m, d = 30, 20, 3
    U, V = rng.normal(size=(n, d)), rng.normal(size=(m, d))
    b, c, mu = rng.normal(size=n), rng.normal(size=m), 3.0
    user = _SideHyper(rng.normal(size=d), np.diag([1.0, 2.0, 3.0]), 4.0)
    item = _SideHyper(np.zeros(d), np.eye(d), 2.0)

    def predictions(U, V, b, c, mu):
        return mu + b[:, None] + c[None, :] + U @ V.T

    moved = _shift_moves(U, V, b, c, mu, user, item, True, rng)
    np.testing.assert_allclose(predictions(*moved), predictions(U, V, b, c, mu),
                               rtol=0, atol=1e-12)
    assert moved[4] != mu and not np.allclose(moved[0], U) and not np.allclose(moved[3], c)


def test_chains_differ_but_agree(tiny):
    _, split = tiny
    result = sample_gibbs(split.train, SPEC.with_(prior="normal-wishart", noise="learned"),
                          draws=200, tune=50, chains=2, progress=False)
    sigma = result.idata.posterior["sigma"].to_numpy()
    assert not np.array_equal(sigma[0], sigma[1])
    # the chains' means differ by Monte Carlo error only: each mean's standard error is
    # sd / sqrt(ESS) (sigma's posterior sd is ~0.02 here, so 0.05 would let anything pass)
    import arviz as az

    errors = [chain.std() / np.sqrt(float(az.ess(chain[None, :]))) for chain in sigma]
    assert abs(sigma[0].mean() - sigma[1].mean()) < 4 * np.hypot(*errors)


@pytest.mark.slow
def test_gibbs_and_nuts_sample_the_same_posterior(tiny):
    """Same model (fixed factor priors, Gamma(1, 1) noise precision): posterior means of
    held-out expected ratings agree within Monte-Carlo error, and so do their sds."""
    import arviz as az

    from bayes_pmf.engines.pymc_fit import sample_nuts

    _, split = tiny
    gibbs = sample_gibbs(split.train, SPEC.with_(prior="fixed", noise="learned"), draws=1000,
                         tune=200, chains=2, progress=False, rng=1)
    nuts = sample_nuts(split.train, SPEC.with_(noise="learned"), draws=1000, tune=1000,
                       chains=2, progress=False,
                       rng=1, sampler="pymc")
    users, items = _pairs(split.test)

    def summary(result):
        draws = result.mean_draws(users, items, unknown="prior")
        chains = result.idata.posterior.sizes["chain"]
        by_chain = draws.reshape(chains, -1, draws.shape[1])
        ess = np.array([az.ess(by_chain[:, :, k]) for k in range(draws.shape[1])])
        return draws.mean(0), draws.std(0), draws.std(0) / np.sqrt(ess)

    g_mean, g_sd, g_se = summary(gibbs)
    n_mean, n_sd, n_se = summary(nuts)
    z = np.abs(g_mean - n_mean) / np.sqrt(g_se**2 + n_se**2)
    # |z| < 3 for 99.7% of pairs if both are right; allow a few of ~100 pairs beyond.
    assert np.mean(z < 3) >= 0.95
    ratio = g_sd / n_sd
    # sd estimates from ~1000 correlated draws carry ~5-10% error each.
    assert 0.85 < np.median(ratio) < 1.15
    g_sigma = gibbs.idata.posterior["sigma"].to_numpy().ravel()
    n_sigma = nuts.idata.posterior["sigma"].to_numpy().ravel()
    assert abs(g_sigma.mean() - n_sigma.mean()) < 4 * np.hypot(g_sigma.std() / np.sqrt(300),
                                                                n_sigma.std() / np.sqrt(300))


@pytest.mark.slow
def test_simulation_based_calibration_of_gibbs():
    """Talts et al. (2018): for data drawn from the prior, the rank of the true value
    among posterior draws is uniform. 100 replications, 10 rank bins, chi-square test
    at level 0.001 per quantity (σ and three expected ratings). The replicates' seeds are
    drawn first, in order, then the replicates share two processes."""
    from concurrent.futures import ProcessPoolExecutor

    rng = np.random.default_rng(2024)
    n_reps, n_bins = 100, 10
    seeds = []
    for _ in range(n_reps):
        tau = rng.gamma(_SBC_NOISE_PRIOR[0], 1 / _SBC_NOISE_PRIOR[1])
        seeds.append((float(tau), int(rng.integers(2**31)), int(rng.integers(2**31))))
    with ProcessPoolExecutor(2, mp_context=multiprocessing.get_context("fork")) as pool:
        ranks = np.array(list(pool.map(_sbc_replicate, seeds, chunksize=10)))
    for column in range(4):
        counts = np.bincount(ranks[:, column] * n_bins // (_SBC_KEPT + 1), minlength=n_bins)
        assert stats.chisquare(counts).pvalue > 0.001, (column, counts)


_SBC_NOISE_PRIOR = (20.0, 5.0)  # tau ~ Gamma(20, rate 5): sigma around 0.5
_SBC_KEPT = 99


def _sbc_replicate(seeds: tuple[float, int, int]) -> list[int]:
    """One replicate of the calibration above: the ranks of sigma and of three expected
    ratings among 99 draws (thinned by 3) of a chain on data drawn from the prior."""
    tau, data_seed, chain_seed = seeds
    base = bp.PMFSpec(n_factors=2, sigma=0.5, sigma_u=0.7, sigma_v=0.7, global_mean=False,
                      biases=True, sigma_user_bias=0.5, sigma_item_bias=0.5)
    spec = base.with_(sigma=float(1 / np.sqrt(tau)))
    synthetic = bp.make_synthetic(16, 12, 100, spec, rng=data_seed)
    result = sample_gibbs(synthetic.data,
                          spec.with_(prior="fixed", noise="learned", noise_prior=_SBC_NOISE_PRIOR),
                          draws=_SBC_KEPT, tune=100, thin=3, chains=1, init="random",
                          rng=chain_seed, progress=False)
    probe_users, probe_items = np.array([0, 3, 7]), np.array([1, 5, 2])
    sigma_draws = result.idata.posterior["sigma"].to_numpy().ravel()
    truth = synthetic.true_mean(probe_users, probe_items)
    means = result.mean_draws(probe_users, probe_items)
    return [int(np.sum(sigma_draws < spec.sigma)), *np.sum(means < truth, axis=0).tolist()]


@pytest.mark.slow
def test_truth_falls_in_90_percent_intervals_about_90_percent_of_the_time():
    spec = bp.PMFSpec(n_factors=3, sigma=0.5, sigma_u=0.8, sigma_v=0.8, biases=True,
                      sigma_user_bias=0.4, sigma_item_bias=0.4)
    synthetic = bp.make_synthetic(150, 100, 5000, spec, rng=9)
    split = bp.random_split(synthetic.data, 0.2, rng=1)
    result = sample_gibbs(split.train, spec.with_(prior="fixed", noise="learned"), draws=300,
                          tune=100, chains=2, progress=False, rng=2)
    users, items = _pairs(split.test)
    draws = result.mean_draws(users, items, unknown="prior")
    lower, upper = np.quantile(draws, [0.05, 0.95], axis=0)
    truth = synthetic.true_mean(np.asarray(users), np.asarray(items))
    coverage = np.mean((truth >= lower) & (truth <= upper))
    # 1000 pairs: binomial sd of a 90% rate is ~1%; pairs share parameters, so allow ±5%.
    assert 0.85 <= coverage <= 0.95


@pytest.mark.slow
def test_gibbs_beats_map_on_movielens(movielens_split):
    spec = bp.PMFSpec.from_lambdas(10, 15.0, biases=True, lambda_user_bias=5.0,
                                   lambda_item_bias=5.0)
    train, test = movielens_split.train, movielens_split.test
    als = bp.als_result(bp.fit_als(train, spec, progress=False, tol=1e-6), train)
    gibbs = sample_gibbs(train, spec.with_(prior="normal-wishart", noise="learned"), draws=100,
                         tune=50, chains=1, progress=False)
    assert bp.score(gibbs, train, test)["rmse"] < bp.score(als, train, test)["rmse"] - 0.005


def _unequal_scales_data():
    """PMF data whose two latent dimensions have prior sd 1.2 and 0.15."""
    spec = bp.PMFSpec(n_factors=2, sigma=0.3, biases=False)
    truth = bp.make_synthetic(150, 120, 6000, spec, rng=5)
    params = truth.truth
    scales = np.array([1.2, 0.15])
    rng = np.random.default_rng(1)
    U = rng.standard_normal(params.user_factors.shape) * scales
    V = rng.standard_normal(params.item_factors.shape) * scales
    data = truth.data
    mean = params.mu + np.einsum("kd,kd->k", U[data.user_idx], V[data.item_idx])
    rating = mean + 0.3 * rng.standard_normal(data.n_ratings)
    frame = data.to_frame().assign(rating=rating)
    return bp.RatingsData.from_frame(frame), scales


@pytest.mark.slow
def test_adaptive_diagonal_prior_learns_one_scale_per_dimension():
    """The PMF paper's adaptive diagonal prior, sampled: the learned per-dimension prior
    sd separate the strong dimension from the weak one (up to which is which), while the
    spherical prior can only report their average."""
    data, scales = _unequal_scales_data()
    spec = bp.PMFSpec(n_factors=2, sigma=0.3)
    diagonal = sample_gibbs(data, spec.with_(prior="diagonal", noise="learned"), draws=150,
                            tune=150, chains=2, progress=False, rng=0)
    spherical = sample_gibbs(data, spec.with_(prior="spherical", noise="learned"), draws=150,
                             tune=150, chains=2, progress=False, rng=0)
    per_dim = np.sort(diagonal.draws["sigma_u_latent"].mean(axis=0)
                      * diagonal.draws["sigma_v_latent"].mean(axis=0))
    # prior sd of U_ik V_jk per dimension: truth 1.44 and 0.0225; a balanced split of
    # scale between U and V leaves the product identified
    assert per_dim[1] > 10 * per_dim[0]
    assert 0.7 < per_dim[1] / scales[0] ** 2 < 1.4
    assert "sigma_u_latent" not in spherical.draws
    assert spherical.draws["sigma_u"].std() > 0  # learned, not fixed
    users, items = data.id_pairs()
    for result in (diagonal, spherical):
        assert bp.rmse(data.rating, result.predict(users, items)) < 0.4  # noise sd 0.3


@pytest.mark.slow
def test_adaptive_diagonal_prior_predicts_held_out_ratings_better_than_plain_pmf():
    """On data whose latent dimensions have unequal scales, learning one scale per
    dimension beats plain PMF with the spec's fixed prior, both as MAP (ALS) and as a
    posterior. Measured RMSE (noise sd 0.3): ALS 0.3277, fixed-prior Gibbs 0.3197,
    diagonal adaptive 0.3143 — seeded, so the order is a regression check."""
    data, _ = _unequal_scales_data()
    split = bp.random_split(data, 0.2, rng=0)
    users, items = split.test.id_pairs()
    spec = bp.PMFSpec(n_factors=2, sigma=0.3)  # sigma_u = sigma_v = 0.3: lambda = 1
    score = lambda result: bp.rmse(split.test.rating,
                                   result.predict(users, items, unknown="prior"))
    plain_map = score(bp.als_result(bp.fit_als(split.train, spec, progress=False,
                                               max_sweeps=300), split.train))
    settings = dict(draws=150, tune=150, chains=2, progress=False, rng=0)
    plain_posterior = score(sample_gibbs(split.train, spec.with_(prior="fixed", noise="learned"),
                                         **settings))
    adaptive = score(sample_gibbs(split.train, spec.with_(prior="diagonal", noise="learned"),
                                  **settings))
    assert adaptive < plain_posterior - 0.003 and adaptive < plain_map - 0.01


@pytest.mark.parametrize("short_rows", [False, True], ids=["whole rows", "short rows"])
def test_a_half_steps_squared_error_is_its_residuals_after_the_draw(short_rows,
                                                                     monkeypatch):
    """The squared error the item half-step returns (the noise precision's draw reads it)
    is sum (t_ij - w_i.x_j)^2 over the side's ratings after the draw: each row's summed in
    its block (on a cluster, by the worker holding it), equal to the direct sum over
    ratings (rtol 1e-10: each row's is its targets' squares plus the draw's change, which
    cancel to at most two digits here), for rows drawn whole and by the short-row
    identity, and the same bits for every block size."""
    from bayes_pmf.engines import gibbs
    from bayes_pmf.engines.parallel import LocalExecutor, Targets

    if short_rows:  # every row short enough for the short-row identity
        monkeypatch.setattr(gibbs, "BATCH_LAST_MAX_WIDTH", 0)
        monkeypatch.setattr(gibbs, "SHORT_ROW_FRACTION", 1e6)
    data = bp.make_synthetic(60, 25, 700, bp.PMFSpec(n_factors=3), rng=4).data
    rng = np.random.default_rng(0)
    user_factors, user_bias = rng.normal(size=(data.n_users, 3)), rng.normal(size=data.n_users)
    targets = Targets(None, 3.0, user_bias)
    hyper = gibbs._SideHyper(np.zeros(3), np.eye(3), 2.0)
    errors = set()
    for block_rows in (1, 4096):
        draws, error = gibbs._sample_side(data.by_item, targets, user_factors, hyper, 3, True,
                                          4.0, np.random.default_rng(1), block_rows,
                                          LocalExecutor(1))
        errors.add(error)
    matrix = data.by_item
    items = np.repeat(np.arange(matrix.shape[0]), np.diff(matrix.indptr))
    design = np.hstack([user_factors, np.ones((data.n_users, 1))])
    residual = targets.full(matrix) - np.sum(draws[items] * design[matrix.indices], axis=1)
    assert len(errors) == 1
    assert errors.pop() == pytest.approx(float(residual @ residual), rel=1e-10)

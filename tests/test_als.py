import itertools

import numpy as np
import pytest
import scipy.sparse as sp

from bayes_pmf import (
    ConfigError,
    FactorParams,
    NumericalError,
    PMFSpec,
    fit_als,
    make_synthetic,
    objective,
    random_split,
)
from bayes_pmf.engines import linalg as als
from bayes_pmf.engines.linalg import (
    BLAS_GRAM_MIN_WIDTH,
    normal_equations,
    padded_lengths,
    refine_rows,
    solve_rows,
)
from bayes_pmf.engines.parallel import LocalExecutor, block_size
from bayes_pmf.engines.ridge import (
    blockwise_objective,
    initial_params,
    observed_sum_without_mu,
    sweep,
)


def _ridge_lstsq(design, targets, penalty):
    """Independent ridge solution: least squares on [X; sqrt(diag(penalty))]."""
    stacked = np.vstack([design, np.diag(np.sqrt(penalty))])
    rhs = np.r_[targets, np.zeros(len(penalty))]
    return np.linalg.lstsq(stacked, rhs, rcond=None)[0]


@pytest.mark.parametrize("p", [6, BLAS_GRAM_MIN_WIDTH + 12], ids=["sparse-gram", "blas-gram"])
def test_row_update_equals_closed_form_ridge(p):
    rng = np.random.default_rng(0)
    n_rows, m = 25, 80
    # Row densities from 2% to 90%: rows of many lengths, so the BLAS path pads
    # rows to several different lengths.
    mask = rng.random((n_rows, m)) < np.linspace(0.02, 0.9, n_rows)[:, None]
    mask[:, 0] = True  # every row has at least one rating
    targets = np.where(mask, rng.normal(3, 1, (n_rows, m)), 0.0)
    block = sp.csr_matrix(targets * mask)
    block = sp.csr_matrix((targets[mask], np.nonzero(mask)[1],
                           np.r_[0, np.cumsum(mask.sum(1))]), shape=(n_rows, m))
    design = rng.normal(size=(m, p))
    penalty = rng.uniform(0.5, 3.0, p)
    solved = solve_rows(block, design, penalty)
    for row in range(n_rows):
        cols = np.flatnonzero(mask[row])
        expected = _ridge_lstsq(design[cols], targets[row, cols], penalty)
        # Both are backward-stable solves of a well-conditioned (cond < 1e3) system.
        np.testing.assert_allclose(solved[row], expected, rtol=0, atol=1e-10)


@pytest.mark.parametrize("p, table_bytes", [(5, None), (5, 0), (BLAS_GRAM_MIN_WIDTH, None),
                                            (40, None)],
                         ids=["narrow-sparse", "narrow-blas", "blas-threshold", "wide-blas"])
def test_normal_equations_equal_dense_products(p, table_bytes, monkeypatch):
    """Gram matrices and right-hand sides equal X^T diag(I_i) X and X^T (I_i * t_i) taken
    densely, on rows of every length including empty ones, on either path (a zero limit
    on the outer-product table sends narrow designs down the BLAS path too)."""
    if table_bytes is not None:
        monkeypatch.setattr(als, "OUTER_TABLE_MAX_BYTES", table_bytes)
    rng = np.random.default_rng(3)
    n_rows, m = 30, 300
    mask = rng.random((n_rows, m)) < rng.choice([0.0, 0.01, 0.1, 0.5, 1.0], n_rows)[:, None]
    assert (mask.sum(1) == 0).any() and (mask.sum(1) == m).any()
    targets = np.where(mask, rng.normal(size=(n_rows, m)), 0.0)
    block = sp.csr_matrix((targets[mask], np.nonzero(mask)[1],
                           np.r_[0, np.cumsum(mask.sum(1))]), shape=(n_rows, m))
    design = rng.normal(size=(m, p))
    prepared = als.prepare_design(design)
    assert (prepared.outer is None) == (p >= BLAS_GRAM_MIN_WIDTH or table_bytes == 0)
    gram, rhs = normal_equations(block, prepared)
    expected_gram = np.einsum("ij,jp,jq->ipq", mask.astype(float), design, design)
    # Sums of <= 300 products of O(1) numbers, summed in different orders: 1e-11 absolute.
    np.testing.assert_allclose(gram, expected_gram, rtol=0, atol=1e-11)
    np.testing.assert_allclose(rhs, targets @ design, rtol=0, atol=1e-11)


def test_the_padded_layout_reads_the_design_itself_and_zeroes_the_padding():
    """The BLAS path gathers from the design as given, with no padded copy of it (on a
    Dask worker that copy was the whole other side's design once more): every group
    holds each row's design rows and targets in its order, then zeros where the padding
    gathered the first design row, and the design is left as it was. In float32 (the CG
    solver's option) the rows are a copy, as they must be."""
    rng = np.random.default_rng(4)
    design = rng.normal(size=(50, 20)) + 5.0  # no zero row for a padding gather to hit
    kept = design.copy()
    prepared = als.prepare_design(design, padded=True)
    assert prepared.rows is design
    single = als.prepare_design(design, padded=True, dtype=np.float32)
    assert single.rows.dtype == np.float32 and not np.shares_memory(single.rows, design)
    counts = np.array([0, 1, 2, 3, 5, 7, 9, 13, 50, 4, 0, 11])
    columns = [np.sort(rng.choice(50, n, replace=False)) for n in counts]
    block = sp.csr_matrix((rng.normal(size=counts.sum()), np.concatenate(columns),
                           np.r_[0, np.cumsum(counts)]), shape=(len(counts), 50))
    seen = []
    # chunks of 200 floats: groups split into several chunks, the buffer reused
    for rows, padded, targets in als.padded_groups(block, prepared.rows, chunk_floats=200):
        for k, row in enumerate(rows):
            n, lo = counts[row], block.indptr[row]
            np.testing.assert_array_equal(padded[k, :n], design[columns[row]])
            np.testing.assert_array_equal(targets[k, :n], block.data[lo:lo + n])
            assert not padded[k, n:].any() and not targets[k, n:].any()
            seen.append(int(row))
    assert sorted(seen) == list(np.flatnonzero(counts))
    grid = padded_lengths(50)
    assert (grid[np.searchsorted(grid, counts)] > counts).any()  # some rows were padded
    np.testing.assert_array_equal(design, kept)


def test_padded_lengths_cover_every_row_length_with_bounded_waste():
    lengths = padded_lengths(100_000)
    assert lengths[0] == 1 and lengths[-1] >= 100_000
    assert np.all(np.diff(lengths) >= 1)
    # A row of length n is padded to the first length >= n: at most 25% waste beyond
    # the small lengths, where the grid steps by one.
    counts = np.arange(1, 100_001)
    padded = lengths[np.searchsorted(lengths, counts)]
    assert np.all(padded >= counts) and np.all(padded <= np.maximum(counts * 1.25 + 1, counts + 1))


def test_sweep_with_biases_matches_per_user_loop(synthetic):
    """The vectorised half-steps with the augmented bias column equal a plain loop."""
    data, spec = synthetic.data, synthetic.spec.with_(n_factors=3)
    start = initial_params(data, spec, rng=1)
    start = FactorParams(start.user_factors, start.item_factors, 3.4,
                         np.zeros(data.n_users), np.linspace(-0.3, 0.3, data.n_items))
    updated = sweep(data, start, spec)
    user = 5
    rows = np.flatnonzero(data.user_idx == user)
    items = data.item_idx[rows]
    design = np.hstack([start.item_factors[items], np.ones((len(rows), 1))])
    targets = data.rating[rows] - start.mu - start.item_bias[items]
    penalty = np.r_[np.full(3, spec.lambda_u), spec.lambda_user_bias]
    expected = _ridge_lstsq(design, targets, penalty)
    np.testing.assert_allclose(updated.user_factors[user], expected[:3], atol=1e-10)
    assert updated.user_bias[user] == pytest.approx(expected[3], abs=1e-10)


@pytest.mark.parametrize("biases", [False, True])
def test_objective_never_increases(synthetic, biases):
    spec = synthetic.spec.with_(biases=biases)
    fit = fit_als(synthetic.data, spec, max_sweeps=30, tol=0, progress=False)
    trace = np.array(fit.settings["objective_trace"])
    increases = np.diff(trace)
    # Exact block minimisation: only floating-point noise may go upward.
    assert np.all(increases <= 1e-10 * trace[:-1])
    assert trace[-1] < 0.5 * trace[0]
    assert fit.settings["objective_trace"][-1] == pytest.approx(
        objective(synthetic.data, fit.point_params(), spec))


@pytest.mark.parametrize("spec", [PMFSpec(n_factors=3), PMFSpec(n_factors=3, biases=False),
                                  PMFSpec(n_factors=0, mu_prior=(3.0, 1.0))],
                         ids=["biases", "no-biases", "d=0, mu prior"])
def test_the_objective_summed_in_row_blocks_is_the_objective(spec):
    """What ALS records per sweep (each user's squared errors summed in the row blocks, on
    a cluster by the workers) is E, and the global mean's update sees the sum of the
    predictions without mu, both equal to the direct sum over ratings up to rounding
    (rtol 1e-12: a few thousand terms, each off by a unit in the last place at most), and
    the same bits for every block size and thread count, as the Dask test needs."""
    from bayes_pmf import make_synthetic

    data = make_synthetic(120, 40, 1500, spec, rng=3).data
    params = initial_params(data, spec, np.random.default_rng(1), 0.7)
    expected = objective(data, params, spec)
    values = {blockwise_objective(data, params, spec, block_rows, LocalExecutor(threads))
              for block_rows in (1, 7, 4096) for threads in (1, 2)}
    assert len(values) == 1
    assert values.pop() == pytest.approx(expected, rel=1e-12, abs=0)
    # the global mean's sum over ratings of b_i + c_j + U_i.V_j, also taken by blocks
    direct = float(np.sum(params.user_bias[data.user_idx] + params.item_bias[data.item_idx]
                          + np.sum(params.user_factors[data.user_idx]
                                   * params.item_factors[data.item_idx], axis=1)))
    sums = {observed_sum_without_mu(data, params, block_rows, LocalExecutor(threads))
            for block_rows in (1, 7, 4096) for threads in (1, 2)}
    assert len(sums) == 1
    # abs: the sum of terms of size ~1 may nearly cancel; rounding leaves ~1e-13 of 1,500
    assert sums.pop() == pytest.approx(direct, rel=1e-12, abs=1e-9)
    fit = fit_als(data, spec, max_sweeps=3, tol=0, progress=False)
    trace = fit.settings["objective_trace"]
    assert trace[-1] == pytest.approx(objective(data, fit.point_params(), spec), rel=1e-12)


def _random_rows(rng, n_rows, m, p):
    """A CSR block of rows of many lengths (one of them empty) and a design (m x p)."""
    mask = rng.random((n_rows, m)) < np.linspace(0.0, 0.6, n_rows)[:, None]
    mask[0] = False
    mask[1:, 0] = True
    targets = np.where(mask, rng.normal(0, 1, (n_rows, m)), 0.0)
    block = sp.csr_matrix((targets[mask], np.nonzero(mask)[1],
                           np.r_[0, np.cumsum(mask.sum(1))]), shape=(n_rows, m))
    return block, rng.normal(size=(m, p))


def _row_quadratic(block, design, penalty, rows):
    """Each row's ridge objective 1/2 w^T (diag(penalty) + X^T X) w - (X^T t).w, dense."""
    dense = block.toarray()
    mask = np.zeros(dense.shape, bool)
    mask[np.repeat(np.arange(block.shape[0]), np.diff(block.indptr)), block.indices] = True
    gram = np.einsum("ij,jp,jq->ipq", mask.astype(float), design, design) + np.diag(penalty)
    rhs = dense @ design
    return 0.5 * np.einsum("ip,ipq,iq->i", rows, gram, rows) - np.einsum("ip,ip->i", rhs, rows)


def test_conjugate_gradient_rows_reach_the_exact_solution():
    """In exact arithmetic CG solves a p x p system in p steps; with 3p steps on these
    well-conditioned (cond < 1e3) systems it agrees with the Cholesky solve to 1e-9."""
    rng = np.random.default_rng(5)
    p = 7
    block, design = _random_rows(rng, 30, 60, p)
    penalty = rng.uniform(0.5, 2.0, p)
    start = rng.normal(size=(30, p))
    refined = refine_rows(block, design, penalty, start, steps=3 * p)
    np.testing.assert_allclose(refined, solve_rows(block, design, penalty), rtol=0, atol=1e-9)
    assert np.all(refined[0] == 0)  # no ratings: the exact minimiser, 0


def _cg_problem(seed, n_rows=40, m=80, p=12):
    """Rows of many lengths, a design, a unit ridge and a random start for CG tests."""
    rng = np.random.default_rng(seed)
    block, design = _random_rows(rng, n_rows, m, p)
    return block, design, np.full(p, 1.0), rng.normal(size=(n_rows, p))


def test_conjugate_gradient_steps_never_increase_a_rows_objective():
    block, design, penalty, start = _cg_problem(6)
    before = _row_quadratic(block, design, penalty, start)
    previous = before
    for steps in (1, 2, 3):
        after = _row_quadratic(block, design, penalty,
                               refine_rows(block, design, penalty, start, steps=steps))
        # Each extra step minimises over a larger subspace: never worse (1e-9: rounding).
        assert np.all(after <= previous + 1e-9)
        previous = after
    optimum = _row_quadratic(block, design, penalty, solve_rows(block, design, penalty))
    assert np.all(previous >= optimum - 1e-9)
    # Three steps from a random start already close most of the gap to the optimum.
    assert np.median((previous - optimum) / (before - optimum)) < 0.2


def test_cg_solver_descends_and_ends_at_the_exact_optimum(synthetic):
    spec = synthetic.spec
    cg = fit_als(synthetic.data, spec, max_sweeps=2000, tol=1e-8, solver="cg", progress=False)
    exact = fit_als(synthetic.data, spec, max_sweeps=2000, tol=1e-8, progress=False)
    trace = np.array(cg.settings["objective_trace"])
    assert np.all(np.diff(trace) <= 1e-10 * trace[:-1])
    settings = cg.settings
    assert settings["converged"] and settings["solver"] == "cg" and settings["cg_steps"] == 3
    # Both stop where E changes by < 1e-8 per sweep (~300 sweeps here), at the same
    # optimum from the same start: equal to 1e-6 relative, predictions to 1e-4 (2.9e-6 seen).
    assert cg.settings["objective_trace"][-1] == pytest.approx(
        exact.settings["objective_trace"][-1], rel=1e-6)
    from bayes_pmf import als_result

    users, items = synthetic.data.id_pairs()
    np.testing.assert_allclose(als_result(cg, synthetic.data).predict(users, items),
                               als_result(exact, synthetic.data).predict(users, items),
                               rtol=0, atol=1e-4)


def test_single_precision_cg_tracks_double_precision(synthetic):
    """float32 CG steps differ from float64 ones by rounding only (~1e-6 relative here,
    bounded at 1e-4), and the fit's final exact float64 sweep lands on the same optimum."""
    from bayes_pmf.engines.linalg import prepare_design

    block, design, penalty, start = _cg_problem(7)
    double = refine_rows(block, design, penalty, start)
    single = refine_rows(block, prepare_design(design, padded=True, dtype=np.float32),
                         penalty, start)
    assert single.dtype == np.float64
    np.testing.assert_allclose(single, double, rtol=0, atol=1e-4 * np.abs(double).max())
    assert not np.array_equal(single, double)  # it did compute in float32

    spec = synthetic.spec
    fit = fit_als(synthetic.data, spec, max_sweeps=2000, tol=1e-8, solver="cg",
                  cg_precision="float32", progress=False)
    exact = fit_als(synthetic.data, spec, max_sweeps=2000, tol=1e-8, progress=False)
    assert fit.settings["cg_precision"] == "float32"
    assert fit.settings["objective_trace"][-1] == pytest.approx(
        exact.settings["objective_trace"][-1], rel=1e-5)


@pytest.mark.parametrize("kwargs, message", [({"solver": "lbfgs"}, "solver must be one of"),
                                             ({"solver": "cg", "cg_steps": 0}, "cg_steps"),
                                             ({"solver": "cg", "cg_precision": "half"},
                                              "cg_precision must be one of")])
def test_bad_solver_settings_fail_clearly(synthetic, kwargs, message):
    with pytest.raises(ConfigError, match=message):
        fit_als(synthetic.data, synthetic.spec, progress=False, **kwargs)


def test_recovers_true_mean_ratings(synthetic):
    split = random_split(synthetic.data, 0.2, rng=0)
    fit = fit_als(split.train, synthetic.spec, progress=False)
    from bayes_pmf import als_result

    result = als_result(fit, split.train)
    test = split.test
    users, items = test.user_ids[test.user_idx], test.item_ids[test.item_idx]
    predicted = result.predict(users, items, unknown="prior")
    truth = synthetic.true_mean(np.asarray(users), np.asarray(items))
    error = np.sqrt(np.mean((predicted - truth) ** 2))
    sigma = synthetic.spec.sigma
    # Well below the noise: the fit estimates E[r], it does not memorise noise.
    assert error < 0.6 * sigma
    # And it beats predicting every rating by the truth's global mean by far.
    assert error < 0.3 * np.std(truth)


@pytest.mark.parametrize("n_factors", [3, 16, 24])
@pytest.mark.parametrize("solver", ["exact", "cg"])
def test_blocks_and_threads_do_not_change_a_bit(n_factors, solver):
    """Every row's solve is computed alone, so neither the rows per block nor the number
    of threads (which cuts small data into smaller blocks: 1 block of 300 rows on one
    thread, 3 of 100 on three; 13-row blocks leave a block of one row) moves the result
    by a bit. From p = 17 unknowns per row the normal equations come from padded batches
    of rows; the batched Gram product once chose its route by the batch's size
    (np.einsum with optimize=True), and then d = 16 and 24 failed here."""
    spec = PMFSpec(n_factors=n_factors, sigma=0.8, sigma_u=0.5, sigma_v=0.5, biases=True)
    data = make_synthetic(300, 200, 6000, spec, rng=3).data
    fits = [fit_als(data, spec, max_sweeps=4, tol=0, progress=False, solver=solver,
                    executor=LocalExecutor(threads), block_rows=block_rows).point_params()
            for threads, block_rows in ((1, 4096), (3, 4096), (2, 7), (1, 64), (1, 13))]
    for other in fits[1:]:
        np.testing.assert_array_equal(other.user_factors, fits[0].user_factors)
        np.testing.assert_array_equal(other.item_factors, fits[0].item_factors)


def test_blocks_come_in_a_multiple_of_the_workers():
    """Rows per block: at most block_rows, in as many blocks as a multiple of the workers,
    so that each worker (or thread) gets as many. Before, 10,000 rows at 4,096 per block
    were 4,096 + 4,096 + 1,808 for two workers: on dask_scaling's 10^7 ratings one worker
    had 59 % of every item half-step (benchmarks/README.md, "Blocks in a multiple of the
    workers"). The count can fall short of the multiple only for sides of fewer rows
    than its square (6 rows for 4 workers: blocks of 2, 3 of them)."""
    assert block_size(10_000, 4096, 2) == 2500  # 4 blocks
    assert block_size(66_667, 4096, 2) == 3704  # 18 blocks
    assert block_size(300, 4096, 3) == 100 and block_size(300, 4096, 1) == 300
    assert block_size(300, 13, 1) == 13  # 23 blocks of 13 and one of 1
    for n_rows, block_rows, workers in itertools.product(range(1, 3000, 7), (7, 64, 4096),
                                                         (1, 2, 3, 8)):
        size = block_size(n_rows, block_rows, workers)
        blocks = -(-n_rows // size)
        target = -(-max(-(-n_rows // block_rows), workers) // workers) * workers
        assert 1 <= size <= block_rows
        assert blocks % workers == 0 or n_rows < target**2, (n_rows, block_rows, workers)


def test_same_seed_same_numbers_other_seed_other_start(synthetic):
    a = fit_als(synthetic.data, synthetic.spec, max_sweeps=3, tol=0, rng=4, progress=False)
    b = fit_als(synthetic.data, synthetic.spec, max_sweeps=3, tol=0, rng=4, progress=False)
    c = fit_als(synthetic.data, synthetic.spec, max_sweeps=3, tol=0, rng=5, progress=False)
    np.testing.assert_array_equal(a.point_params().user_factors, b.point_params().user_factors)
    assert not np.array_equal(a.point_params().user_factors, c.point_params().user_factors)


def test_singular_system_fails_clearly():
    block = sp.csr_matrix(np.array([[4.0, 0.0, 0.0]]))
    design = np.ones((3, 2))
    with pytest.raises(NumericalError, match="not positive definite"):
        solve_rows(block, design, np.zeros(2))


def test_logistic_link_is_not_fitted_by_als(synthetic):
    with pytest.raises(ConfigError, match="identity link"):
        fit_als(synthetic.data, PMFSpec(link="logistic"), progress=False)


@pytest.mark.parametrize("kwargs, message", [
    ({"n_factors": -1}, "n_factors"),
    ({"sigma": 0.0}, "sigma must be"),
    ({"sigma_u": -2.0}, "sigma_u must be"),
])
def test_spec_validation(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        PMFSpec(**kwargs)


def test_lambda_sigma_correspondence():
    spec = PMFSpec.from_lambdas(5, 12.0, 3.0, sigma=0.8)
    assert spec.lambda_u == pytest.approx(12.0)
    assert spec.lambda_v == pytest.approx(3.0)
    assert spec.sigma_u == pytest.approx(0.8 / np.sqrt(12.0))
    with pytest.raises(ConfigError, match="lambda_u"):
        PMFSpec.from_lambdas(5, -1.0)


def test_a_targets_recipe_gives_each_block_the_whole_matrixs_numbers():
    """Targets (ratings minus mu, the other side's bias and an implicit offset) computed
    block by block, as a distributed executor does where the blocks are, equal the
    whole-matrix computation bit for bit; a recipe that forgot a term would not."""
    from bayes_pmf.engines.parallel import Targets

    rng = np.random.default_rng(0)
    matrix = sp.random(50, 40, density=0.2, format="csr", random_state=1)
    matrix.data = rng.uniform(0.5, 5.0, matrix.nnz)
    recipe = Targets(None, 3.5, rng.normal(size=40), rng.normal(size=(50, 4)),
                     rng.normal(size=(40, 4)))
    whole = recipe.full(matrix)
    for start, stop in ((0, 7), (7, 31), (31, 50)):
        lo, hi = matrix.indptr[start], matrix.indptr[stop]
        np.testing.assert_array_equal(recipe.without_data().of_block(matrix[start:stop], start),
                                      whole[lo:hi])
    # the terms are really there: without the offsets the numbers differ
    plain = Targets(None, 3.5, recipe.column_shift).full(matrix)
    assert not np.allclose(plain, whole)
    np.testing.assert_array_equal(plain, matrix.data - 3.5 - recipe.column_shift[matrix.indices])

"""NumPy alternating least squares for the PMF MAP objective: the reference solver.

Each half-step minimises E exactly over one side's parameters with the other side fixed.
For user i, with design rows x_j = [V_j, 1] (the 1 carries the user bias when present)
and targets t_ij = r_ij - mu - c_j, the minimiser is the ridge solution

    w_i = (diag(lambda) + sum_j I_ij x_j x_j^T)^-1  sum_j I_ij t_ij x_j,

with the UNWEIGHTED penalty diag(lambda) = (lambda_u, ..., lambda_u, lambda_user_bias)
that PMF's Gaussian prior gives (not ALS-WR's lambda * n_i), so its optimum is the
PyMC MAP's. The global mean then takes its closed-form value (flat prior). Every step
is an exact block minimisation, so E never increases.

Vectorisation: the Gram matrices of a block of rows are built without a Python loop
over rows, in one of two ways chosen by the width p of x_j (see :func:`normal_equations`):
for small p, one sparse product of the block's indicator matrix with the stacked upper
triangles of x_j x_j^T; for large p, rows of similar length are padded to a common
length and their Gram matrices taken by batched BLAS products. One batched Cholesky
solve follows. :func:`solve_rows` is a pure function of (block of rows, other
side's design, penalties), so it can be mapped over row partitions elsewhere.
This module imports no PyMC.
"""

from __future__ import annotations

import logging
import os
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp
from threadpoolctl import ThreadpoolController

from .data import RatingsData
from .errors import ConfigError, NumericalError
from .objective import FactorParams, objective
from .priors import PMFSpec
from .progress import sweep_progress

log = logging.getLogger(__name__)
_BLAS_THREADS = ThreadpoolController()

DEFAULT_BLOCK_ROWS = 4096
# Threads pay off once a half-step has real work: ratings x p^2 above this (measured:
# 1.7x at 10^5 ratings, p = 33, for the user half-step; no gain on the 90,000 MovieLens
# ratings at p = 11).
THREADING_MIN_WORK = 50_000_000


def outer_upper(design: np.ndarray) -> np.ndarray:
    """Upper triangles of x_j x_j^T for every row j of ``design``: shape (m, p(p+1)/2)."""
    rows, cols = np.triu_indices(design.shape[1])
    return design[:, rows] * design[:, cols]


def solve_lower(chol: np.ndarray, rhs: np.ndarray) -> np.ndarray:
    """Solve L y = b for a batch of lower-triangular L (B x p x p) and b (B x p).

    Vectorised over the batch; the Python loop runs over the p latent coordinates only
    (numpy has no batched triangular solve, and a general batched solve would redo an
    LU factorisation of each L).
    """
    out = np.empty_like(rhs)
    for k in range(chol.shape[-1]):
        partial = np.einsum("bj,bj->b", chol[:, k, :k], out[:, :k])
        out[:, k] = (rhs[:, k] - partial) / chol[:, k, k]
    return out


def solve_lower_transpose(chol: np.ndarray, rhs: np.ndarray) -> np.ndarray:
    """Solve L^T x = y for a batch of lower-triangular L (back substitution)."""
    p = chol.shape[-1]
    out = np.empty_like(rhs)
    for k in range(p - 1, -1, -1):
        partial = np.einsum("bj,bj->b", chol[:, k + 1:, k], out[:, k + 1:])
        out[:, k] = (rhs[:, k] - partial) / chol[:, k, k]
    return out


def cholesky_solve(chol: np.ndarray, rhs: np.ndarray) -> np.ndarray:
    """Solve L L^T x = b for a batch (see :func:`solve_lower`)."""
    return solve_lower_transpose(chol, solve_lower(chol, rhs))


def batched_cholesky(matrices: np.ndarray, what: str) -> np.ndarray:
    """Cholesky factors of a stack of SPD matrices; NumericalError naming the first bad
    one instead of NaN factors."""
    try:
        chol = np.linalg.cholesky(matrices)
    except np.linalg.LinAlgError as exc:
        bad = _first_not_positive_definite(matrices)
        raise NumericalError(
            f"{what} not positive definite{bad} (a row with fewer ratings than latent "
            "factors and a zero/tiny penalty lambda, or non-finite inputs); use a larger "
            "positive lambda"
        ) from exc
    if not np.isfinite(chol).all():
        raise NumericalError(f"{what}: non-finite Cholesky factor (overflow); the ratings or "
                             "factors are too large for float64, or lambda is too small")
    return chol


def _first_not_positive_definite(matrices: np.ndarray) -> str:
    if matrices.ndim == 2:
        return ""
    for position, matrix in enumerate(matrices):
        try:
            np.linalg.cholesky(matrix)
        except np.linalg.LinAlgError:
            return f" (block row {position}, diagonal {np.round(np.diag(matrix), 6).tolist()[:6]})"
    return ""


# Above this width of x_j the Gram matrices come from padded batched BLAS products;
# below it the sparse product with the stacked outer products is faster (measured at
# 10^6 ratings: crossover between p = 17 and p = 25; at p = 33 BLAS is 1.8-2.4x faster).
BLAS_GRAM_MIN_WIDTH = 21
# Rows are grouped by length on a geometric grid (padding wastes < 25% of the work)
# and padded in chunks of at most this many floats (16 MB).
PADDING_GROWTH = 1.25
PADDED_CHUNK_FLOATS = 1 << 21


def normal_equations(
    block: sp.csr_matrix, design: np.ndarray, design_outer: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """For every row i of ``block``: the Gram matrix sum_j x_j x_j^T over its observed
    columns (B x p x p) and sum_j t_ij x_j (B x p).

    ``design_outer`` may pass :func:`outer_upper` (design) precomputed; it is used only
    below ``BLAS_GRAM_MIN_WIDTH``.
    """
    if design.shape[1] >= BLAS_GRAM_MIN_WIDTH:
        return _padded_normal_equations(block, design)
    n_rows, p = block.shape[0], design.shape[1]
    if design_outer is None:
        design_outer = outer_upper(design)
    pattern = sp.csr_matrix(
        (np.ones_like(block.data), block.indices, block.indptr), shape=block.shape
    )
    upper = np.asarray(pattern @ design_outer)
    gram = upper[:, _upper_position(p)].reshape(n_rows, p, p)
    return gram, np.asarray(block @ design)


def _upper_position(p: int) -> np.ndarray:
    """For each entry (k, l) of a p x p matrix, in row-major order, its column in
    :func:`outer_upper`'s output: one gather rebuilds the full symmetric matrices."""
    position = np.empty((p, p), dtype=np.intp)
    rows, cols = np.triu_indices(p)
    position[rows, cols] = position[cols, rows] = np.arange(len(rows))
    return position.ravel()


def reusable_outer(design: np.ndarray) -> np.ndarray | None:
    """:func:`outer_upper` (design) when :func:`normal_equations` will use it (narrow
    designs), else None: computed once per half-step, shared by all its row blocks."""
    return outer_upper(design) if design.shape[1] < BLAS_GRAM_MIN_WIDTH else None


def padded_lengths(max_length: int) -> np.ndarray:
    """The lengths rows are padded to: 1, 2, ... growing by ``PADDING_GROWTH``, covering
    ``max_length``."""
    lengths = [1]
    while lengths[-1] < max_length:
        lengths.append(max(lengths[-1] + 1, int(np.ceil(lengths[-1] * PADDING_GROWTH))))
    return np.array(lengths)


def _padded_normal_equations(block: sp.csr_matrix, design: np.ndarray):
    """:func:`normal_equations` by BLAS: the rows whose length pads to the same L are
    gathered into a (rows x L x p) array of their x_j (zeros past each row's end), whose
    batched X^T X and X^T t are the Gram matrices and right-hand sides. The flops stay
    O(nnz p^2) but run at BLAS speed instead of the sparse product's one-axpy-per-rating."""
    n_rows, p = block.shape[0], design.shape[1]
    gram = np.zeros((n_rows, p, p))
    rhs = np.zeros((n_rows, p))
    counts = np.diff(block.indptr)
    lengths = padded_lengths(max(int(counts.max(initial=0)), 1))
    slot = np.searchsorted(lengths, counts)
    order = np.argsort(slot, kind="stable")
    bounds = np.searchsorted(slot[order], np.arange(len(lengths) + 1))
    for k, length in enumerate(lengths):
        same_length = order[bounds[k]:bounds[k + 1]]
        same_length = same_length[counts[same_length] > 0]
        offsets = np.arange(length)
        per_chunk = max(1, PADDED_CHUNK_FLOATS // (int(length) * p))
        for start in range(0, len(same_length), per_chunk):
            rows = same_length[start:start + per_chunk]
            inside = offsets < counts[rows][:, None]
            positions = np.where(inside, block.indptr[rows][:, None] + offsets, 0)
            padded = design[block.indices[positions]]
            padded *= inside[:, :, None]
            targets = np.where(inside, block.data[positions], 0.0)
            gram[rows] = np.einsum("kjp,kjq->kpq", padded, padded, optimize=True)
            rhs[rows] = np.einsum("kjp,kj->kp", padded, targets, optimize=True)
    return gram, rhs


def solve_rows(
    block: sp.csr_matrix,
    design: np.ndarray,
    penalty: np.ndarray,
    design_outer: np.ndarray | None = None,
) -> np.ndarray:
    """Ridge solutions for every row of ``block`` at once.

    ``block`` (rows x m, CSR) holds the targets t_ij of the observed entries; ``design``
    (m x p) the other side's rows x_j; ``penalty`` (p,) the diagonal ridge. Returns the
    (rows x p) array of w_i = (diag(penalty) + sum_j x_j x_j^T)^-1 sum_j t_ij x_j.
    ``design_outer`` may pass :func:`outer_upper` (design) precomputed.
    """
    gram, rhs = normal_equations(block, design, design_outer)
    p = design.shape[1]
    gram[:, np.arange(p), np.arange(p)] += penalty
    # Cholesky: the systems are symmetric positive definite whenever penalty > 0;
    # a failure means a (near-)singular system, which we report instead of NaNs.
    solution = cholesky_solve(batched_cholesky(gram, "ALS normal equations"), rhs)
    if not np.all(np.isfinite(solution)):
        raise NumericalError("ALS half-step produced non-finite factors; increase lambda")
    return solution


def map_row_blocks(
    matrix: sp.csr_matrix,
    targets: np.ndarray,
    solve_block,
    width: int,
    block_rows: int = DEFAULT_BLOCK_ROWS,
    workers: int | None = None,
) -> np.ndarray:
    """Apply ``solve_block(block, rows)`` to each block of consecutive rows of ``matrix``
    holding new data ``targets`` (in the matrix's CSR order); ``rows`` is the block's
    slice of row positions, and each call returns (rows x width). Blocks run on
    ``workers`` threads (default: up to 2, the cores here; the sparse products and
    batched LAPACK calls release the GIL), with BLAS itself held to one thread meanwhile. Results do not depend on the thread schedule.
    Memory stays O(workers * block_rows * width^2)."""
    indptr = matrix.indptr
    n_rows = matrix.shape[0]
    workers = _workers(matrix.nnz, width, workers)
    size = _block_size(n_rows, block_rows, workers)
    starts = list(range(0, n_rows, size))
    out = np.empty((n_rows, width))

    def run(k: int) -> None:
        start, stop = starts[k], min(starts[k] + size, n_rows)
        lo, hi = indptr[start], indptr[stop]
        block = sp.csr_matrix(
            (targets[lo:hi], matrix.indices[lo:hi], indptr[start:stop + 1] - lo),
            shape=(stop - start, matrix.shape[1]),
        )
        out[start:stop] = solve_block(block, slice(start, stop))

    with single_threaded_blas():
        if workers == 1 or len(starts) == 1:
            for k in range(len(starts)):
                run(k)
        else:
            with ThreadPoolExecutor(workers) as pool:
                list(pool.map(run, range(len(starts))))
    return out


def single_threaded_blas():
    """Context holding BLAS to one thread. The batched LAPACK/BLAS calls here act on many
    small matrices, where BLAS's own threads only add contention (Cholesky of 6,666 33x33
    systems: 3x slower with 2 BLAS threads), and OpenBLAS's idle threads spin: a Gibbs
    chain on MovieLens used 170% CPU for the speed of 100%, halving a second chain's
    speed beside it. The parallelism is ours: across row blocks, or chains."""
    return _BLAS_THREADS.limit(limits=1, user_api="blas")


def _workers(nnz: int, width: int, workers: int | None) -> int:
    if workers:
        return workers
    return min(2, os.cpu_count() or 1) if nnz * width**2 >= THREADING_MIN_WORK else 1


def _block_size(n_rows: int, block_rows: int, workers: int) -> int:
    """Enough blocks to keep every worker busy, never more than block_rows rows each."""
    return max(1, min(block_rows, -(-n_rows // workers)))


def half_step(
    matrix: sp.csr_matrix,
    targets: np.ndarray,
    design: np.ndarray,
    penalty: np.ndarray,
    block_rows: int = DEFAULT_BLOCK_ROWS,
) -> np.ndarray:
    """:func:`solve_rows` over all rows of ``matrix`` with data ``targets``, block by block."""
    if design.shape[1] == 0:
        return np.zeros((matrix.shape[0], 0))
    design_outer = reusable_outer(design)
    return map_row_blocks(
        matrix, targets, lambda block, _: solve_rows(block, design, penalty, design_outer),
        design.shape[1], block_rows)


@dataclass(frozen=True)
class ALSFit:
    """Learned state of one ALS run, apart from the settings that produced it."""

    params: FactorParams
    spec: PMFSpec
    objective_trace: list[float]
    converged: bool
    seconds: float
    seed: int | None
    settings: dict = field(default_factory=dict)

    @property
    def n_sweeps(self) -> int:
        return len(self.objective_trace) - 1


def initial_params(data: RatingsData, spec: PMFSpec, rng, init_scale: float = 0.1) -> FactorParams:
    """Seeded small random factors, zero biases, mu at the mean rating."""
    rng = np.random.default_rng(rng)
    d = spec.n_factors
    return FactorParams(
        user_factors=init_scale * rng.standard_normal((data.n_users, d)),
        item_factors=init_scale * rng.standard_normal((data.n_items, d)),
        mu=data.mean_rating if spec.global_mean else 0.0,
    )


def _with_ones(factors: np.ndarray, biases: bool) -> np.ndarray:
    if not biases:
        return factors
    return np.hstack([factors, np.ones((len(factors), 1))])


def sweep(data: RatingsData, params: FactorParams, spec: PMFSpec,
          block_rows: int = DEFAULT_BLOCK_ROWS) -> FactorParams:
    """One ALS sweep: users given items, items given users, then mu."""
    d, biases = spec.n_factors, spec.biases
    by_user, by_item = data.by_user, data.by_item

    user_penalty = np.r_[np.full(d, spec.lambda_u), [spec.lambda_user_bias] * biases]
    targets = by_user.data - params.mu - params.item_bias[by_user.indices]
    solved = half_step(by_user, targets, _with_ones(params.item_factors, biases),
                       user_penalty, block_rows)
    user_factors = solved[:, :d]
    user_bias = solved[:, d] if biases else params.user_bias

    item_penalty = np.r_[np.full(d, spec.lambda_v), [spec.lambda_item_bias] * biases]
    targets = by_item.data - params.mu - user_bias[by_item.indices]
    solved = half_step(by_item, targets, _with_ones(user_factors, biases),
                       item_penalty, block_rows)
    item_factors = solved[:, :d]
    item_bias = solved[:, d] if biases else params.item_bias

    updated = FactorParams(user_factors, item_factors, params.mu, user_bias, item_bias)
    if spec.global_mean:
        mu = data.mean_rating - observed_sum_without_mu(data, updated) / data.n_ratings
        updated = FactorParams(user_factors, item_factors, float(mu), user_bias, item_bias)
    return updated


def observed_sum_without_mu(data: RatingsData, params: FactorParams) -> float:
    """Sum over the observed pairs of b_i + c_j + U_i.V_j.

    Sum_ij U_i.V_j = Sum_i U_i.(Sum_j V_j) over each user's items: one sparse product with
    the rating pattern instead of gathering U and V for every rating (at 10^7 ratings the
    gather took 0.8 s, more than a half-step)."""
    by_user = data.by_user
    pattern = sp.csr_matrix((np.ones(by_user.nnz), by_user.indices, by_user.indptr),
                            shape=by_user.shape)
    item_sums = pattern @ params.item_factors
    return float(np.einsum("ij,ij->", params.user_factors, item_sums)
                 + data.user_counts @ params.user_bias + data.item_counts @ params.item_bias)


def fit_als(
    data: RatingsData,
    spec: PMFSpec | None = None,
    *,
    max_sweeps: int = 100,
    tol: float = 1e-7,
    rng: int | np.random.Generator | None = 0,
    init_scale: float = 0.1,
    init: FactorParams | None = None,
    block_rows: int = DEFAULT_BLOCK_ROWS,
    progress: bool = True,
) -> ALSFit:
    """Minimise the PMF MAP objective by ALS.

    Stops when the relative decrease of E over a sweep falls below ``tol`` or after
    ``max_sweeps``. ``rng`` seeds the random initial factors (ignored when ``init`` is
    given). The objective after every sweep is kept in ``objective_trace`` (entry 0 is
    the initial point).
    """
    spec = spec or PMFSpec()
    if spec.link != "identity":
        raise ConfigError(
            "ALS has closed-form updates only for the identity link; fit the logistic "
            "link with bayes_pmf.inference.fit_map"
        )
    if max_sweeps < 1:
        raise ConfigError(f"max_sweeps must be >= 1, got {max_sweeps}")
    if not tol >= 0:
        raise ConfigError(f"tol must be >= 0, got {tol}")
    seed = rng if isinstance(rng, (int, np.integer)) else None
    start_time = time.perf_counter()
    params = init if init is not None else initial_params(data, spec, rng, init_scale)
    trace = [objective(data, params, spec)]
    converged = False
    with sweep_progress(max_sweeps, "ALS sweeps", progress) as bar:
        for _ in range(max_sweeps):
            params = sweep(data, params, spec, block_rows)
            trace.append(objective(data, params, spec))
            change = (trace[-2] - trace[-1]) / max(abs(trace[-2]), 1e-300)
            bar.advance(f"E={trace[-1]:.6g}")
            if change < tol:
                converged = True
                break
    seconds = time.perf_counter() - start_time
    log.info("ALS: %d sweeps, E=%.6g, converged=%s, %.2fs", len(trace) - 1, trace[-1],
             converged, seconds)
    return ALSFit(
        params=params, spec=spec, objective_trace=trace, converged=converged,
        seconds=seconds, seed=None if seed is None else int(seed),
        settings={"max_sweeps": max_sweeps, "tol": tol, "init_scale": init_scale,
                  "block_rows": block_rows, "warm_start": init is not None},
    )


def als_result(fit: ALSFit, train: RatingsData, method: str = "als"):
    """The ALS point estimate as a :class:`~bayes_pmf.results.PMFResult` (chain=1, draw=1);
    the objective per sweep is kept in its settings attrs."""
    from .results import point_result

    settings = dict(fit.settings, objective_trace=fit.objective_trace, converged=fit.converged,
                    n_sweeps=fit.n_sweeps, fit_seconds=fit.seconds)
    return point_result(fit.params, fit.spec, train, method=method, seed=fit.seed,
                        settings=settings)


def objective_trace_of(result) -> list[float]:
    """The objective E after each sweep recorded in an ALS result (entry 0: the start)."""
    return list(result.attrs["settings"].get("objective_trace", []))

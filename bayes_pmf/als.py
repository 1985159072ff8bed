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
over rows, in one of two ways (see :func:`prepare_design`): for small p and a small
other side, one sparse product of the block's indicator matrix with the stacked upper
triangles of x_j x_j^T; otherwise rows of similar length are padded to a common
length and their Gram matrices taken by batched BLAS products. One batched Cholesky
solve follows. :func:`solve_rows` is a pure function of (block of rows, other
side's design, penalties), so it can be mapped over row partitions elsewhere.

``solver="cg"`` swaps the exact solve for a few warm-started conjugate-gradient steps
per row (:func:`refine_rows`, likewise a pure function of the block, the design, the
penalties and the block's current rows): O(nnz p) per step instead of O(nnz p^2), and
still a descent step, so E never increases either.
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
    return np.take(design, rows, axis=1) * np.take(design, cols, axis=1)


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


# The Gram matrices come from the sparse product with the stacked outer products of the
# other side's rows below this width of x_j, and while that table of outer products
# stays small enough to be read from cache; otherwise from padded batched BLAS products.
# Measured (one thread): at 10^6 ratings the two break even at p = 17-21; at 10^7, p = 11,
# the sparse product took 0.24 s against 0.37 s when the table was 5 MB (10,000 items),
# 0.78 s against 0.58 s when it was 35 MB (66,666 users).
BLAS_GRAM_MIN_WIDTH = 17
OUTER_TABLE_MAX_BYTES = 8 << 20
# Rows are grouped by length on a geometric grid (padding wastes < 25% of the work)
# and padded in chunks of at most this many floats (16 MB).
PADDING_GROWTH = 1.25
PADDED_CHUNK_FLOATS = 1 << 21


@dataclass(frozen=True)
class PreparedDesign:
    """The other side's design rows x_j as :func:`normal_equations` reads them, built once
    per half-step and shared by all its row blocks: for narrow designs with few rows
    (see ``BLAS_GRAM_MIN_WIDTH``) the stacked upper triangles of x_j x_j^T
    (:func:`outer_upper`) for the sparse product; otherwise the rows with one zero row
    appended, at which padding positions point."""

    design: np.ndarray
    outer: np.ndarray | None
    padded_rows: np.ndarray | None

    @property
    def width(self) -> int:
        return self.design.shape[1]


def prepare_design(design: np.ndarray, padded: bool = False,
                   dtype: type = np.float64) -> PreparedDesign:
    """Precompute what :func:`normal_equations` needs from ``design`` (m x p);
    ``padded=True`` forces the padded layout (the only one :func:`refine_rows` reads),
    with its rows in ``dtype``."""
    design = np.ascontiguousarray(design, dtype=float)
    m, p = design.shape
    if (not padded and p < BLAS_GRAM_MIN_WIDTH
            and m * p * (p + 1) // 2 * 8 <= OUTER_TABLE_MAX_BYTES):
        return PreparedDesign(design, outer_upper(design), None)
    rows = np.zeros((m + 1, p), dtype=dtype)
    rows[:m] = design
    return PreparedDesign(design, None, rows)


def normal_equations(
    block: sp.csr_matrix, design: np.ndarray | PreparedDesign
) -> tuple[np.ndarray, np.ndarray]:
    """For every row i of ``block``: the Gram matrix sum_j x_j x_j^T over its observed
    columns (B x p x p) and sum_j t_ij x_j (B x p). ``design`` is the (m x p) array of
    x_j, or :func:`prepare_design` of it when several blocks share it."""
    if not isinstance(design, PreparedDesign):
        design = prepare_design(design)
    if design.outer is None:
        return _padded_normal_equations(block, design.padded_rows)
    n_rows, p = block.shape[0], design.width
    upper, rhs = _sparse_normal_equations(block, design)
    return np.take(upper, _upper_position(p), axis=1).reshape(n_rows, p, p), rhs


def normal_equations_last(
    block: sp.csr_matrix, design: np.ndarray | PreparedDesign
) -> tuple[np.ndarray, np.ndarray]:
    """:func:`normal_equations` with the Gram matrices batch-last, (p, p, B), for the
    solvers of :mod:`bayes_pmf.batched`; the right-hand sides stay (B, p)."""
    if not isinstance(design, PreparedDesign):
        design = prepare_design(design)
    if design.outer is None:
        gram, rhs = _padded_normal_equations(block, design.padded_rows)
        return np.ascontiguousarray(gram.transpose(1, 2, 0)), rhs
    n_rows, p = block.shape[0], design.width
    upper, rhs = _sparse_normal_equations(block, design)
    upper = np.ascontiguousarray(upper.T)
    return np.take(upper, _upper_position(p), axis=0).reshape(p, p, n_rows), rhs


def _sparse_normal_equations(block: sp.csr_matrix, design: PreparedDesign):
    """Upper triangles of the Gram matrices (B x p(p+1)/2) and the right-hand sides, by
    one sparse product each."""
    pattern = sp.csr_matrix(
        (np.ones_like(block.data), block.indices, block.indptr), shape=block.shape
    )
    return np.asarray(pattern @ design.outer), np.asarray(block @ design.design)


def _upper_position(p: int) -> np.ndarray:
    """For each entry (k, l) of a p x p matrix, in row-major order, its column in
    :func:`outer_upper`'s output: one gather rebuilds the full symmetric matrices."""
    position = np.empty((p, p), dtype=np.intp)
    rows, cols = np.triu_indices(p)
    position[rows, cols] = position[cols, rows] = np.arange(len(rows))
    return position.ravel()


def padded_lengths(max_length: int) -> np.ndarray:
    """The lengths rows are padded to: 1, 2, ... growing by ``PADDING_GROWTH``, covering
    ``max_length``."""
    lengths = [1]
    while lengths[-1] < max_length:
        lengths.append(max(lengths[-1] + 1, int(np.ceil(lengths[-1] * PADDING_GROWTH))))
    return np.array(lengths)


def padded_groups(block: sp.csr_matrix, padded_rows: np.ndarray,
                  chunk_floats: int = PADDED_CHUNK_FLOATS, extra: np.ndarray | None = None):
    """Yield (rows, X, t) for groups of non-empty rows of ``block`` whose lengths pad to
    the same L: X (rows x L x p) holds each row's design rows x_j, t (rows x L) its
    targets, both zero past the row's end (padding positions point at the zero row that
    ends ``padded_rows``, and at a zero target). X is a view of a buffer reused by the
    next group: consume it before asking for the next. Given ``extra`` (one value per
    entry of ``block``, in its order), yield (rows, X, t, e) with e padded like t.

    Gathers use np.take: numpy's fancy indexing of rows was 6-10x slower here."""
    p = padded_rows.shape[1]
    zero_row = len(padded_rows) - 1
    counts = np.diff(block.indptr)
    columns = np.append(block.indices, zero_row)
    values = np.append(block.data, 0.0).astype(padded_rows.dtype, copy=False)
    extra_values = None if extra is None else np.append(extra, 0.0)
    lengths = padded_lengths(max(int(counts.max(initial=0)), 1))
    slot = np.searchsorted(lengths, counts)
    order = np.argsort(slot, kind="stable")
    bounds = np.searchsorted(slot[order], np.arange(len(lengths) + 1))
    buffer = np.empty(chunk_floats + int(lengths[-1]) * p, dtype=padded_rows.dtype)
    for k, length in enumerate(lengths):
        same_length = order[bounds[k]:bounds[k + 1]]
        same_length = same_length[counts[same_length] > 0]
        offsets = np.arange(length)
        per_chunk = max(1, chunk_floats // (int(length) * p))
        for start in range(0, len(same_length), per_chunk):
            rows = same_length[start:start + per_chunk]
            positions = block.indptr[rows][:, None] + offsets
            positions = np.where(offsets < counts[rows][:, None], positions, block.nnz)
            padded = buffer[:positions.size * p].reshape(len(rows), int(length), p)
            # mode="clip": the positions are valid by construction, and np.take with the
            # default mode="raise" copies through a temporary before filling ``out``.
            np.take(padded_rows, np.take(columns, positions), axis=0, out=padded, mode="clip")
            if extra_values is None:
                yield rows, padded, np.take(values, positions)
            else:
                yield rows, padded, np.take(values, positions), np.take(extra_values, positions)


def _padded_normal_equations(block: sp.csr_matrix, padded_rows: np.ndarray):
    """:func:`normal_equations` by BLAS: batched X^T X and X^T t over the groups of
    :func:`padded_groups`. The flops stay O(nnz p^2) but run at BLAS speed instead of
    the sparse product's one axpy per rating."""
    n_rows, p = block.shape[0], padded_rows.shape[1]
    gram = np.zeros((n_rows, p, p))
    rhs = np.zeros((n_rows, p))
    for rows, padded, targets in padded_groups(block, padded_rows):
        gram[rows] = _batched_gram(padded)
        rhs[rows] = stacked_transpose_times(padded, targets)
    return gram, rhs


def stacked_transpose_times(padded: np.ndarray, vectors: np.ndarray) -> np.ndarray:
    """X_k^T y_k for a stack of (L x p) matrices X_k and L-vectors y_k."""
    return np.matmul(vectors[:, None, :], padded)[:, 0, :]


# Measured on 33 columns: np.matmul(X^T, X) ran at 1 GFlop/s on 8-row matrices, where
# einsum's route ran at 12; from 33 rows on, matmul is 10-15% faster (26-41 GFlop/s).
SHORT_PADDED_LENGTH = 24


def _batched_gram(padded: np.ndarray) -> np.ndarray:
    """X_k^T X_k for a stack of (L x p) matrices X_k."""
    if padded.shape[1] < SHORT_PADDED_LENGTH:
        return np.einsum("kjp,kjq->kpq", padded, padded, optimize=True)
    return np.matmul(padded.transpose(0, 2, 1), padded)


def solve_rows(
    block: sp.csr_matrix,
    design: np.ndarray | PreparedDesign,
    penalty: np.ndarray,
) -> np.ndarray:
    """Ridge solutions for every row of ``block`` at once.

    ``block`` (rows x m, CSR) holds the targets t_ij of the observed entries; ``design``
    (m x p) the other side's rows x_j; ``penalty`` (p,) the diagonal ridge. Returns the
    (rows x p) array of w_i = (diag(penalty) + sum_j x_j x_j^T)^-1 sum_j t_ij x_j.
    ``design`` may be :func:`prepare_design` of it, precomputed.
    """
    gram, rhs = normal_equations(block, design)
    p = len(penalty)
    gram[:, np.arange(p), np.arange(p)] += penalty
    # Cholesky: the systems are symmetric positive definite whenever penalty > 0;
    # a failure means a (near-)singular system, which we report instead of NaNs.
    solution = cholesky_solve(batched_cholesky(gram, "ALS normal equations"), rhs)
    if not np.all(np.isfinite(solution)):
        raise NumericalError("ALS half-step produced non-finite factors; increase lambda")
    return solution


DEFAULT_CG_STEPS = 3
# Conjugate gradients pass over each group of padded rows 2 x steps + 2 times. Groups of
# 8 MB: at 10^7 ratings, d = 32, a sweep took 1.40 s against 2.28 s with 1 MB groups
# (Python overhead per group) and 1.60 s with 16 MB (fewer cache hits between passes).
CG_CHUNK_FLOATS = 1 << 20


def refine_rows(
    block: sp.csr_matrix,
    design: np.ndarray | PreparedDesign,
    penalty: np.ndarray,
    start: np.ndarray,
    steps: int = DEFAULT_CG_STEPS,
) -> np.ndarray:
    """``steps`` conjugate-gradient iterations on every row's ridge system (the one
    :func:`solve_rows` solves exactly), from ``start`` (rows x p): an inexact half-step
    costing O(nnz p) per step instead of O(nnz p^2) for the Gram matrices plus a
    Cholesky solve per row.

    Each matrix-vector product lambda d + X^T (X d) reads the row's padded design X;
    no Gram matrix is formed. From any start, k CG steps minimise the row's quadratic
    over start + a Krylov subspace containing the steepest-descent direction, so the
    objective never increases. Rows without ratings go to their exact solution, 0.
    The iterations run in the dtype of the prepared design's padded rows (float32 halves
    the memory traffic); the result is returned in float64."""
    if not isinstance(design, PreparedDesign) or design.padded_rows is None:
        design = prepare_design(design.design if isinstance(design, PreparedDesign) else design,
                                padded=True)
    dtype = design.padded_rows.dtype
    penalty = np.asarray(penalty, dtype=dtype)
    out = np.array(start, dtype=float)
    out[np.diff(block.indptr) == 0] = 0.0
    for rows, padded, targets in padded_groups(block, design.padded_rows, CG_CHUNK_FLOATS):
        x = out[rows].astype(dtype)
        residual = (stacked_transpose_times(padded, targets - stacked_times(padded, x))
                    - penalty * x)
        direction = residual.copy()
        norm = np.einsum("kp,kp->k", residual, residual)
        for step in range(steps):
            product = (penalty * direction
                       + stacked_transpose_times(padded, stacked_times(padded, direction)))
            curvature = np.einsum("kp,kp->k", direction, product)
            # A zero residual (already optimal) gives 0/0: stay put.
            alpha = np.divide(norm, curvature, out=np.zeros_like(norm), where=curvature > 0)
            x += alpha[:, None] * direction
            if step == steps - 1:
                break
            residual -= alpha[:, None] * product
            new_norm = np.einsum("kp,kp->k", residual, residual)
            beta = np.divide(new_norm, norm, out=np.zeros_like(norm), where=norm > 0)
            direction = residual + beta[:, None] * direction
            norm = new_norm
        out[rows] = x
    if not np.all(np.isfinite(out)):
        raise NumericalError("ALS conjugate-gradient half-step produced non-finite factors; "
                             "increase lambda")
    return out


def stacked_times(padded: np.ndarray, vectors: np.ndarray) -> np.ndarray:
    """X_k y_k for a stack of (L x p) matrices X_k and p-vectors y_k."""
    return np.matmul(padded, vectors[:, :, None])[:, :, 0]


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
    batched LAPACK calls release the GIL), with BLAS itself held to one thread meanwhile.
    Results do not depend on the thread schedule.
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


SOLVERS = ("exact", "cg")
CG_PRECISIONS = {"float64": np.float64, "float32": np.float32}


def half_step(
    matrix: sp.csr_matrix,
    targets: np.ndarray,
    design: np.ndarray,
    penalty: np.ndarray,
    block_rows: int = DEFAULT_BLOCK_ROWS,
    start: np.ndarray | None = None,
    cg_steps: int | None = None,
    cg_dtype: type = np.float64,
) -> np.ndarray:
    """:func:`solve_rows` over all rows of ``matrix`` with data ``targets``, block by
    block; or, given ``cg_steps``, :func:`refine_rows` from the rows ``start``, computing
    in ``cg_dtype``."""
    if design.shape[1] == 0:
        return np.zeros((matrix.shape[0], 0))
    if cg_steps is None:
        prepared = prepare_design(design)

        def solve_block(block, _):
            return solve_rows(block, prepared, penalty)
    else:
        prepared = prepare_design(design, padded=True, dtype=cg_dtype)

        def solve_block(block, rows):
            return refine_rows(block, prepared, penalty, start[rows], cg_steps)
    return map_row_blocks(matrix, targets, solve_block, design.shape[1], block_rows)


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
    return _with_column(factors, np.ones(len(factors)), biases)


def sweep(data: RatingsData, params: FactorParams, spec: PMFSpec,
          block_rows: int = DEFAULT_BLOCK_ROWS, cg_steps: int | None = None,
          cg_dtype: type = np.float64) -> FactorParams:
    """One ALS sweep: users given items, items given users, then mu. Each half-step is
    exact, or ``cg_steps`` conjugate-gradient steps from the current factors."""
    d, biases = spec.n_factors, spec.biases
    by_user, by_item = data.by_user, data.by_item

    def current(factors, bias):
        return None if cg_steps is None else _with_column(factors, bias, biases)

    user_penalty = np.r_[np.full(d, spec.lambda_u), [spec.lambda_user_bias] * biases]
    targets = by_user.data - params.mu - np.take(params.item_bias, by_user.indices)
    solved = half_step(by_user, targets, _with_ones(params.item_factors, biases),
                       user_penalty, block_rows,
                       current(params.user_factors, params.user_bias), cg_steps, cg_dtype)
    user_factors = solved[:, :d]
    user_bias = solved[:, d] if biases else params.user_bias

    item_penalty = np.r_[np.full(d, spec.lambda_v), [spec.lambda_item_bias] * biases]
    targets = by_item.data - params.mu - np.take(user_bias, by_item.indices)
    solved = half_step(by_item, targets, _with_ones(user_factors, biases),
                       item_penalty, block_rows,
                       current(params.item_factors, params.item_bias), cg_steps, cg_dtype)
    item_factors = solved[:, :d]
    item_bias = solved[:, d] if biases else params.item_bias

    updated = FactorParams(user_factors, item_factors, params.mu, user_bias, item_bias)
    if spec.global_mean:
        mu = data.mean_rating - observed_sum_without_mu(data, updated) / data.n_ratings
        updated = FactorParams(user_factors, item_factors, float(mu), user_bias, item_bias)
    return updated


def _with_column(factors: np.ndarray, column: np.ndarray, biases: bool) -> np.ndarray:
    return np.hstack([factors, column[:, None]]) if biases else factors


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
    solver: str = "exact",
    cg_steps: int = DEFAULT_CG_STEPS,
    cg_precision: str = "float64",
    progress: bool = True,
) -> ALSFit:
    """Minimise the PMF MAP objective by ALS.

    Stops when the relative decrease of E over a sweep falls below ``tol`` or after
    ``max_sweeps``. ``rng`` seeds the random initial factors (ignored when ``init`` is
    given). The objective after every sweep is kept in ``objective_trace`` (entry 0 is
    the initial point).

    ``solver="exact"`` (default) solves every row's ridge system exactly: the reference
    that PyMC's MAP is checked against. ``solver="cg"`` takes ``cg_steps`` warm-started
    conjugate-gradient steps per row instead (as cmfrec's default does), cheaper per
    sweep at large d, and ends with one exact sweep (within ``max_sweeps``) so that the
    result is the exact block optimum given the last item factors.
    ``cg_precision="float32"`` runs the CG steps in single precision (as cmfrec does by
    default): ~1.7x faster at 10^7 ratings, d = 32, with rounding far below the error
    the truncated iterations leave; the final exact sweep is always float64.
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
    if solver not in SOLVERS:
        raise ConfigError(f"solver must be one of {SOLVERS}, got {solver!r}")
    if solver == "cg" and (not isinstance(cg_steps, (int, np.integer)) or cg_steps < 1):
        raise ConfigError(f"cg_steps must be a positive integer, got {cg_steps!r}")
    if cg_precision not in CG_PRECISIONS:
        raise ConfigError(f"cg_precision must be one of {tuple(CG_PRECISIONS)}, "
                          f"got {cg_precision!r}")
    seed = rng if isinstance(rng, (int, np.integer)) else None
    start_time = time.perf_counter()
    params = init if init is not None else initial_params(data, spec, rng, init_scale)
    trace = [objective(data, params, spec)]
    converged = False
    inexact_sweeps = max_sweeps - 1 if solver == "cg" else 0
    with sweep_progress(max_sweeps, "ALS sweeps", progress) as bar:
        for number in range(max_sweeps):
            inexact = number < inexact_sweeps and not converged
            params = sweep(data, params, spec, block_rows, cg_steps if inexact else None,
                           CG_PRECISIONS[cg_precision])
            trace.append(objective(data, params, spec))
            change = (trace[-2] - trace[-1]) / max(abs(trace[-2]), 1e-300)
            bar.advance(f"E={trace[-1]:.6g}")
            if converged:
                break  # the final exact sweep after converged CG sweeps
            if change < tol:
                converged = True
                if solver == "exact":
                    break
    seconds = time.perf_counter() - start_time
    log.info("ALS: %d sweeps, E=%.6g, converged=%s, %.2fs", len(trace) - 1, trace[-1],
             converged, seconds)
    return ALSFit(
        params=params, spec=spec, objective_trace=trace, converged=converged,
        seconds=seconds, seed=None if seed is None else int(seed),
        settings={"max_sweeps": max_sweeps, "tol": tol, "init_scale": init_scale,
                  "block_rows": block_rows, "warm_start": init is not None,
                  "solver": solver,
                  **({"cg_steps": cg_steps, "cg_precision": cg_precision}
                     if solver == "cg" else {})},
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

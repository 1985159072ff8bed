"""Linear algebra of the row-wise solves every engine shares: the normal equations of a
block of rows (Gram matrices and right-hand sides, by sparse products or padded batched
BLAS), batched Cholesky factorisations and triangular solves in two layouts, and the
per-row kernels built on them: the exact ridge solve (:func:`solve_rows`, ALS), a few
warm-started conjugate-gradient steps (:func:`refine_rows`) and the Gaussian draw
(:func:`gaussian_draw`, the Gibbs sampler and fold-in).

Two layouts of a stack of B small p x p matrices:

* batch-first (B, p, p): numpy's batched LAPACK (:func:`batched_cholesky`,
  :func:`cholesky_solve`) for wide systems;
* batch-last (p, p, B): the loops run over the p columns and every step is one
  vectorised operation over the whole batch, contiguous along B. numpy's batched
  ``linalg.cholesky`` calls LAPACK once per matrix, and for the 11 x 11 systems of a
  d = 10 Gibbs sweep that per-call cost dominates (9,066 item matrices: 3.7 ms); here
  2.1 ms for the same factorisation, and 0.7 ms against 4.3 ms for the two triangular
  solves. The work per step grows with p^2, so this pays only for narrow systems
  (``BATCH_LAST_MAX_WIDTH`` in the Gibbs sampler).

Everything here is a pure function of its arrays, so it can be mapped over row blocks
by any executor (:mod:`bayes_pmf.engines.parallel`). No PyMC, no results.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import scipy.sparse as sp

from ..errors import NumericalError
from .gather import aligned, take_rows


@lru_cache(maxsize=None)
def _triu(p: int) -> tuple[np.ndarray, np.ndarray]:
    """``np.triu_indices(p)``, read-only, computed once per p: a row kernel asks for them
    at every block, and on small problems building them was 2% of a sweep."""
    rows, cols = np.triu_indices(p)
    rows.flags.writeable = cols.flags.writeable = False
    return rows, cols


def outer_upper(design: np.ndarray) -> np.ndarray:
    """Upper triangles of x_j x_j^T for every row j of ``design``: shape (m, p(p+1)/2)."""
    rows, cols = _triu(design.shape[1])
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
    (:func:`outer_upper`) for the sparse product; otherwise the rows :func:`padded_groups`
    gathers from: the design itself (no copy: on a Dask worker the design as sent), or a
    copy in the dtype asked for."""

    design: np.ndarray
    outer: np.ndarray | None
    rows: np.ndarray | None

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
        design = aligned(design)  # read whole (the outer products, a sparse product)
        return PreparedDesign(design, outer_upper(design), None)
    # the padded layout reads its rows by take_rows only: a misaligned design as it is
    rows = design if np.dtype(dtype) == design.dtype else design.astype(dtype)
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
        return _padded_normal_equations(block, design.rows)
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
        gram, rhs = _padded_normal_equations(block, design.rows)
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


@lru_cache(maxsize=None)
def _upper_position(p: int) -> np.ndarray:
    """For each entry (k, l) of a p x p matrix, in row-major order, its column in
    :func:`outer_upper`'s output: one gather rebuilds the full symmetric matrices
    (read-only, computed once per p)."""
    position = np.empty((p, p), dtype=np.intp)
    rows, cols = _triu(p)
    position[rows, cols] = position[cols, rows] = np.arange(len(rows))
    position = position.ravel()
    position.flags.writeable = False
    return position


def padded_lengths(max_length: int) -> np.ndarray:
    """The lengths rows are padded to: 1, 2, ... growing by ``PADDING_GROWTH``, covering
    ``max_length``."""
    lengths = [1]
    while lengths[-1] < max_length:
        lengths.append(max(lengths[-1] + 1, int(np.ceil(lengths[-1] * PADDING_GROWTH))))
    return np.array(lengths)


def padded_groups(block: sp.csr_matrix, design_rows: np.ndarray,
                  chunk_floats: int = PADDED_CHUNK_FLOATS, extra: np.ndarray | None = None):
    """Yield (rows, X, t) for groups of non-empty rows of ``block`` whose lengths pad to
    the same L: X (rows x L x p) holds each row's design rows x_j (gathered from
    ``design_rows``, one per column of ``block``), t (rows x L) its targets, both zero
    past the row's end (padding positions gather the first design row and are then
    zeroed: no padded copy of the design is made, which on a Dask worker is the whole
    other side's). X is a view of a buffer reused by the next group: consume it before
    asking for the next. Given ``extra`` (one value per entry of ``block``, in its
    order), yield (rows, X, t, e) with e padded like t.

    Gathers use np.take: numpy's fancy indexing of rows was 6-10x slower here."""
    p = design_rows.shape[1]
    counts = np.diff(block.indptr)
    columns = np.append(block.indices, 0)
    values = np.append(block.data, 0.0).astype(design_rows.dtype, copy=False)
    extra_values = None if extra is None else np.append(extra, 0.0)
    lengths = padded_lengths(max(int(counts.max(initial=0)), 1))
    slot = np.searchsorted(lengths, counts)
    order = np.argsort(slot, kind="stable")
    bounds = np.searchsorted(slot[order], np.arange(len(lengths) + 1))
    buffer = np.empty(chunk_floats + int(lengths[-1]) * p, dtype=design_rows.dtype)
    for k, length in enumerate(lengths):
        same_length = order[bounds[k]:bounds[k + 1]]
        same_length = same_length[counts[same_length] > 0]
        offsets = np.arange(length)
        per_chunk = max(1, chunk_floats // (int(length) * p))
        for start in range(0, len(same_length), per_chunk):
            rows = same_length[start:start + per_chunk]
            positions = block.indptr[rows][:, None] + offsets
            padding = offsets >= counts[rows][:, None]
            positions = np.where(padding, block.nnz, positions)
            padded = buffer[:positions.size * p].reshape(len(rows), int(length), p)
            # mode="clip": the positions are valid by construction, and np.take with the
            # default mode="raise" copies through a temporary before filling ``out``.
            take_rows(design_rows, np.take(columns, positions), out=padded, mode="clip")
            padded[padding] = 0.0
            if extra_values is None:
                yield rows, padded, np.take(values, positions)
            else:
                yield rows, padded, np.take(values, positions), np.take(extra_values, positions)


def _padded_normal_equations(block: sp.csr_matrix, design_rows: np.ndarray):
    """:func:`normal_equations` by BLAS: batched X^T X and X^T t over the groups of
    :func:`padded_groups`. The flops stay O(nnz p^2) but run at BLAS speed instead of
    the sparse product's one axpy per rating."""
    n_rows, p = block.shape[0], design_rows.shape[1]
    gram = np.zeros((n_rows, p, p))
    rhs = np.zeros((n_rows, p))
    for rows, padded, targets in padded_groups(block, design_rows):
        gram[rows] = _batched_gram(padded)
        rhs[rows] = stacked_transpose_times(padded, targets)
    return gram, rhs


def stacked_transpose_times(padded: np.ndarray, vectors: np.ndarray) -> np.ndarray:
    """X_k^T y_k for a stack of (L x p) matrices X_k and L-vectors y_k."""
    return np.matmul(vectors[:, None, :], padded)[:, 0, :]


def _batched_gram(padded: np.ndarray) -> np.ndarray:
    """X_k^T X_k for a stack of (L x p) matrices X_k, each product computed alone: a row's
    Gram matrix has the same bits whichever rows share its stack, so the results do not
    depend on how the rows were cut into blocks (np.einsum with optimize=True chose its
    route by the stack's size, and from p = 17 a row's Gram matrix moved in the last bits
    with the block layout, hence with the number of threads or Dask workers). Measured
    (numpy 2.4, 8,000 rows, p = 11 and 21, L = 1 to 23): np.matmul as fast as that
    einsum or faster at every L (up to 2.9x at L = 12, p = 21)."""
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
    The iterations run in the dtype of the rows the groups gather from (float32 halves
    the memory traffic); the result is returned in float64."""
    if not isinstance(design, PreparedDesign) or design.rows is None:
        design = prepare_design(design.design if isinstance(design, PreparedDesign) else design,
                                padded=True)
    dtype = design.rows.dtype
    penalty = np.asarray(penalty, dtype=dtype)
    out = np.array(start, dtype=float)
    out[np.diff(block.indptr) == 0] = 0.0
    for rows, padded, targets in padded_groups(block, design.rows, CG_CHUNK_FLOATS):
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


def rows_times(rows: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    """``rows @ matrix`` (B x p times p x q) with each row's product computed alone, as a
    stack of (1 x p) @ (p x q): BLAS's matrix product sums a row's terms in an order that
    depends on how many rows it is given (OpenBLAS, p = 17 and 33: most sizes differ in
    the last bits), and a row of a block must come out the same whichever rows share the
    block. About 1.5-4x BLAS's time, under a millisecond for 4,096 rows at p = 33."""
    return np.matmul(rows[:, None, :], matrix)[:, 0, :]


def stacked_times(padded: np.ndarray, vectors: np.ndarray) -> np.ndarray:
    """X_k y_k for a stack of (L x p) matrices X_k and p-vectors y_k."""
    return np.matmul(padded, vectors[:, :, None])[:, :, 0]


# -- batch-last layout --------------------------------------------------------------------

def cholesky_last(matrices: np.ndarray, what: str) -> np.ndarray:
    """Lower Cholesky factors L (p, p, B) of SPD ``matrices`` (p, p, B), column by
    column (L_kk = sqrt(A_kk - sum_j<k L_kj^2), then the column below it). A matrix that
    is not positive definite raises NumericalError naming its batch position."""
    p = matrices.shape[0]
    chol = np.zeros_like(matrices)
    for k in range(p):
        row = chol[k, :k]
        pivot = matrices[k, k] - np.einsum("jb,jb->b", row, row)
        if not np.all(pivot > 0) or not np.all(np.isfinite(pivot)):
            bad = int(np.flatnonzero(~(pivot > 0) | ~np.isfinite(pivot))[0])
            raise NumericalError(
                f"{what} not positive definite (block row {bad}, diagonal "
                f"{np.round(np.diagonal(matrices[:, :, bad]), 6).tolist()[:6]}): a row with "
                "fewer ratings than latent factors and a zero/tiny penalty, or non-finite "
                "inputs")
        root = np.sqrt(pivot)
        chol[k, k] = root
        if k + 1 < p:
            column = matrices[k + 1:, k] - np.einsum("ijb,jb->ib", chol[k + 1:, :k], row)
            chol[k + 1:, k] = column / root
    return chol


def solve_lower_last(chol: np.ndarray, rhs: np.ndarray) -> np.ndarray:
    """y with L y = b for L (p, p, B) lower triangular and b (p, B): forward substitution."""
    out = np.empty_like(rhs)
    for k in range(chol.shape[0]):
        partial = np.einsum("jb,jb->b", chol[k, :k], out[:k])
        out[k] = (rhs[k] - partial) / chol[k, k]
    return out


def solve_lower_transpose_last(chol: np.ndarray, rhs: np.ndarray) -> np.ndarray:
    """x with L^T x = y (back substitution), L and y as for :func:`solve_lower_last`."""
    p = chol.shape[0]
    out = np.empty_like(rhs)
    for k in range(p - 1, -1, -1):
        partial = np.einsum("jb,jb->b", chol[k + 1:, k], out[k + 1:])
        out[k] = (rhs[k] - partial) / chol[k, k]
    return out


def cholesky_solve_last(chol: np.ndarray, rhs: np.ndarray) -> np.ndarray:
    """x with L L^T x = b for every matrix of the batch."""
    return solve_lower_transpose_last(chol, solve_lower_last(chol, rhs))


def times_last(matrices: np.ndarray, vectors: np.ndarray) -> np.ndarray:
    """M_b v_b for matrices (p, q, B) and vectors (q, B): shape (p, B)."""
    return np.einsum("ijb,jb->ib", matrices, vectors)


# -- the per-row Gaussian draw (Gibbs rows, fold-in) -------------------------------------

def sample_rows(block, design, precision, prior_mean, tau, noise, previous=None,
                overrelax: float = 0.0) -> np.ndarray:
    """One draw of w_i | rest for every row of ``block`` (the Gibbs sampler's row
    conditional N(P^-1 h, P^-1), P = prior precision + tau X^T X, h = prior precision
    prior mean + tau X^T t; :mod:`bayes_pmf.engines.gibbs`), given
    standard normal ``noise`` (rows x p); plus, in a last column, each row's
    sum_j (t_ij - w_i.x_j)^2 - sum_j t_ij^2, from which the sampler gets the sum of squared
    residuals without predicting every rating again.

    With ``overrelax`` = a in (-1, 0) and the rows' current values ``previous``, the draw
    is Adler's overrelaxed one, m + a (previous - m) + sqrt(1 - a^2) (draw - m) (m the
    conditional mean): it leaves the conditional invariant (see ``overrelaxed``)."""
    p = len(prior_mean)
    if block.shape[0] == 1 and p <= BATCH_LAST_MAX_WIDTH:
        # a block of one row drawn as a block of two (the row twice): the batch-last
        # kernels take another path for a batch of one, and the row would get other bits
        # than among other rows
        twice = sp.vstack([block, block], format="csr")
        return sample_rows(twice, design, precision, prior_mean, tau,
                           np.vstack([noise, noise]),
                           None if previous is None else np.vstack([previous, previous]),
                           overrelax)[:1]
    if p > BATCH_LAST_MAX_WIDTH:
        return _sample_rows_lapack(block, design, precision, prior_mean, tau, noise,
                                   previous, overrelax)
    gram, rhs = normal_equations_last(block, design)
    gram *= tau
    gram += precision[:, :, None]
    shift = (tau * rhs + precision @ prior_mean).T
    chol = cholesky_last(gram, "Gibbs conditional precision")
    # P^-1 (h + L e) with e ~ N(0, I) has mean P^-1 h and covariance P^-1 L L^T P^-1 = P^-1:
    # one draw for the price of two triangular solves. Overrelaxed, the draw solves
    # P w = (1 - a) h + a P w_prev + sqrt(1 - a^2) L e.
    perturbed = _draw_target(shift, times_last(chol, noise.T),
                             times_last(gram, previous.T) if overrelax else None, overrelax)
    draw = cholesky_solve_last(chol, perturbed)
    # sum_j (t_ij - w.x_j)^2 = sum_j t_ij^2 - 2 w.rhs + w^T G w with G = (P - Lambda)/tau,
    # and P w = perturbed by construction, so w^T P w costs a dot product. P w is formed
    # row by row: BLAS's P @ draws over the block summed a row's terms in an order that
    # depended on the block's size (p = 16), and a learned noise with it.
    quadratic = np.einsum("ib,ib->b", draw, perturbed - rows_times(draw.T, precision.T).T)
    change = quadratic / tau - 2.0 * np.einsum("ib,bi->b", draw, rhs)
    return np.vstack([draw, change]).T


def _draw_target(shift, chol_noise, gram_previous, overrelax: float):
    """The right-hand side b of P w = b whose solution is the draw: h + L e, or,
    overrelaxed, (1 - a) h + a P w_prev + sqrt(1 - a^2) L e (any layout)."""
    if not overrelax:
        return shift + chol_noise
    target = chol_noise * np.sqrt(1.0 - overrelax**2)
    target += (1.0 - overrelax) * shift + overrelax * gram_previous
    return target


def gaussian_rows(precision: np.ndarray, shift: np.ndarray, noise: np.ndarray | None = None,
                  previous: np.ndarray | None = None, overrelax: float = 0.0,
                  what: str = "Gaussian conditional precision"):
    """For a stack of Gaussians N(P^-1 h, P^-1) given by precisions P (B x p x p) and
    shifts h (B x p): the means P^-1 h (``noise`` None), or one draw each,
    P^-1 (h + L e) with P = L L^T and standard normal ``noise`` e (its covariance is
    P^-1 L L^T P^-1 = P^-1: a draw for the price of two triangular solves), overrelaxed
    about ``previous`` by ``overrelax`` (see :func:`_draw_target`). Returns (values,
    right-hand side b with P values = b)."""
    chol = batched_cholesky(precision, what)
    if noise is None:
        return cholesky_solve(chol, shift), shift
    target = _draw_target(shift, stacked_times(chol, noise),
                          stacked_times(precision, previous) if overrelax else None, overrelax)
    return cholesky_solve(chol, target), target


def _sample_rows_lapack(block, design, precision, prior_mean, tau, noise, previous,
                        overrelax) -> np.ndarray:
    """:func:`sample_rows` with numpy's batched LAPACK Cholesky, for wide systems."""
    gram, rhs = normal_equations(block, design)
    gram *= tau
    gram += precision
    shift = tau * rhs + precision @ prior_mean
    draw, perturbed = gaussian_rows(gram, shift, noise, previous, overrelax,
                                    "Gibbs conditional precision")
    quadratic = np.einsum("bi,bi->b", draw, perturbed - rows_times(draw, precision))
    change = quadratic / tau - 2.0 * np.einsum("bi,bi->b", draw, rhs)
    return np.hstack([draw, change[:, None]])


# sample_rows factorises systems up to this width p with the batch-last solvers of
# bayes_pmf.batched, wider ones with numpy's per-matrix LAPACK calls. The limit is the
# sparse-Gram path's (p < 17), whose Gram matrices come out batch-last for free; wider
# ones come batch-first from BLAS, and at d = 32 most MovieLens rows are short rows
# anyway. Factorisation and solves alone are faster batch-last up to p = 33 at least
# (9,066 systems: p = 11 3.1 against 7.8 ms, p = 21 16 against 31, p = 33 64 against 107).
BATCH_LAST_MAX_WIDTH = 16


@dataclass(frozen=True)
class WhitenedDesign:
    """The other side's design in the prior's whitened coordinates, for
    :func:`sample_short_rows`: rows [x_j S, x_j.m], where S S^T = Lambda^-1 is the prior
    covariance and m the prior mean."""

    rows: np.ndarray
    cov_root: np.ndarray
    prior_mean: np.ndarray
    precision_root: np.ndarray  # L with L L^T = Lambda: offsets of a value w are (w - m) L

    @classmethod
    def build(cls, design: np.ndarray, precision: np.ndarray, prior_mean: np.ndarray):
        design = aligned(design)  # read whole by BLAS: as Dask may deliver it, copied
        m, p = design.shape
        # precision = L L^T gives Lambda^-1 = L^-T L^-1: S = L^-T.
        precision_root = batched_cholesky(precision, "prior precision")
        cov_root = np.linalg.inv(precision_root).T
        rows = np.empty((m, p + 1))
        rows[:, :p] = design @ cov_root
        rows[:, p] = design @ prior_mean
        return cls(rows, cov_root, prior_mean, precision_root)


def sample_short_rows(block, whitened: WhitenedDesign, tau, noise, rating_noise,
                      previous=None, overrelax: float = 0.0) -> np.ndarray:
    """The draws of :func:`sample_rows` (same distribution, same last column) for rows with
    few ratings L < p, by the data-augmentation identity of Bhattacharya, Chakraborty and
    Mallick (2016): with u = m + S z a prior draw (z ~ N(0, I_p)) and
    v = X u + e / sqrt(tau) (e ~ N(0, I_L): ``rating_noise``, one per rating of ``block``),

        w = u + S Z^T (Z Z^T + I / tau)^-1 (t - v),   Z = X S,

    is an exact draw from N(P^-1 h, P^-1). It solves one L x L system per row instead of
    forming and factorising the p x p precision, the dominant cost for the many items
    rated a handful of times when d is large. Rows without ratings get their prior draw.
    ``previous``, ``overrelax``: as for :func:`sample_rows`; the conditional mean is the
    same formula with z = 0, e = 0, solved beside the draw."""
    p = whitened.cov_root.shape[0]
    spread = np.sqrt(1.0 - overrelax**2)
    if overrelax:
        previous_offsets = rows_times(previous - whitened.prior_mean,
                                      whitened.precision_root)
        # rows without ratings: the conditional is the prior, its mean offset 0
        offsets = overrelax * previous_offsets + spread * noise
    else:
        offsets = noise.copy()  # z, replaced by z + Z^T a for rows with ratings
    change = np.zeros(block.shape[0])
    scale = 1.0 / np.sqrt(tau)
    for rows, padded, targets, errors in padded_groups(block, whitened.rows,
                                                       extra=rating_noise):
        whitened_rows, prior_fit = padded[:, :, :p], padded[:, :, p]
        z = noise[rows]
        # Padding positions have zero rows, zero targets and zero noise: their entries of
        # the solution do not reach the draw.
        kernel = np.matmul(whitened_rows, whitened_rows.transpose(0, 2, 1))
        kernel += np.eye(padded.shape[1]) / tau
        residual = targets - prior_fit
        perturbed = residual - stacked_times(whitened_rows, z) - scale * errors
        if overrelax:
            solved = np.linalg.solve(kernel, np.stack([perturbed, residual], axis=2))
            moved = np.matmul(solved.transpose(0, 2, 1), whitened_rows)
            mean = moved[:, 1]
            offset = mean + overrelax * (previous_offsets[rows] - mean) \
                + spread * (z + moved[:, 0] - mean)
        else:
            solved = np.linalg.solve(kernel, perturbed[:, :, None])[:, :, 0]
            offset = z + np.matmul(solved[:, None, :], whitened_rows)[:, 0, :]
        fitted = prior_fit + stacked_times(whitened_rows, offset)
        offsets[rows] = offset
        change[rows] = np.einsum("kl,kl->k", targets - fitted, targets - fitted) \
            - np.einsum("kl,kl->k", targets, targets)
    # row by row: a row's draw does not depend on the rows beside it in the block
    draws = whitened.prior_mean + rows_times(offsets, whitened.cov_root.T)
    return np.hstack([draws, change[:, None]])

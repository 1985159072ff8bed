"""Batch-last Cholesky and triangular solves against numpy's LAPACK ones."""

import numpy as np
import pytest

import bayes_pmf as bp
from bayes_pmf.engines.linalg import cholesky_last, cholesky_solve_last, times_last


def _spd_stack(p: int, batch: int, rng) -> np.ndarray:
    roots = rng.standard_normal((batch, p, p + 3))
    return roots @ roots.transpose(0, 2, 1) + 0.1 * np.eye(p)


@pytest.mark.parametrize("p", [1, 2, 11])
def test_factor_and_solve_match_lapack(p):
    """Entries O(1-10), condition numbers up to ~1e3: agreement to 1e-10 absolute."""
    rng = np.random.default_rng(p)
    matrices = _spd_stack(p, 50, rng)
    rhs = rng.standard_normal((50, p))
    chol = cholesky_last(np.ascontiguousarray(matrices.transpose(1, 2, 0)), "test")
    np.testing.assert_allclose(chol.transpose(2, 0, 1), np.linalg.cholesky(matrices),
                               rtol=0, atol=1e-10)
    solved = cholesky_solve_last(chol, np.ascontiguousarray(rhs.T)).T
    np.testing.assert_allclose(solved, np.linalg.solve(matrices, rhs[:, :, None])[:, :, 0],
                               rtol=0, atol=1e-10)
    np.testing.assert_allclose(times_last(chol, rhs.T).T,
                               np.einsum("bij,bj->bi", chol.transpose(2, 0, 1), rhs),
                               rtol=0, atol=1e-12)


def test_a_matrix_that_is_not_positive_definite_is_named():
    rng = np.random.default_rng(0)
    matrices = _spd_stack(3, 6, rng)
    matrices[4] = -np.eye(3)
    with pytest.raises(bp.NumericalError, match=r"block row 4, diagonal \[-1.0, -1.0, -1.0\]"):
        cholesky_last(np.ascontiguousarray(matrices.transpose(1, 2, 0)), "Gibbs precision")

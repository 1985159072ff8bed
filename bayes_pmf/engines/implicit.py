"""The implicit-feedback block of the Gibbs sampler: an exact draw of W in constrained PMF
(``PMFSpec(constrained=True)``), U_i = Y_i + sum_k M_ik W_k with M the normalised
rated-items indicator (:func:`bayes_pmf.model.params.rated_items_matrix`).

The sampler works in the coordinates (U, W): U = Y + M W is the user's effective factor
vector, the only thing the ratings see. Given U, the ratings say nothing more about W; W
is then a Bayesian linear regression of the users' offsets on what they rated,

    U_i - mu_U = (M W)_i + e_i,   e_i ~ N(0, Lambda_U^-1),   W_k ~ N(0, Lambda_W^-1),

whose posterior precision, acting on W, is X -> X Lambda_W + M^T M X Lambda_U (a d x d
Kronecker sum: m d unknowns, coupled through every user). The draw is exact:

* perturbation: the draw solves the posterior's normal equations with the right-hand
  side M^T (U - mu_U) Lambda_U plus M^T E_1 C_U^T + E_2 C_W^T (E standard normal,
  C C^T = Lambda), whose covariance is the posterior precision (Papandreou & Yuille
  2010), so the solution has the posterior's mean and covariance;
* the solve: with Q from the generalised eigenproblem Q^T Lambda_W Q = I,
  Q^T Lambda_U Q = diag(g), W = Z Q^T turns the equations into d independent systems
  (I + g_f M^T M) z_f = x_f; with M^T M = B diag(s) B^T (B: m x r orthonormal, r = the
  rank, at most min(users, items)), (I + g_f M^T M)^-1 x = x - B ((g_f s / (1 + g_f s))
  * (B^T x)).

B and s come once per fit from the eigendecomposition of the smaller of M M^T and
M^T M. Each sweep then costs two products with B for the draw and its mean (through the
sparse M when M has fewer rows than columns: O(nnz d + r^2 d), else 4 m r d flops),
the sparse products and O(d^3) for the eigenproblem. The eigenvectors take r^2 doubles
of memory: :data:`MAX_RANK` bounds r.
"""

from __future__ import annotations

import numpy as np
import scipy.linalg

from ..errors import ConfigError

# r = min(users, items) above this would make B (m x r) and its one-off
# eigendecomposition too large for one machine (10,000: 0.8 GB for 10,000 items).
MAX_RANK = 10_000


class ImplicitFeedback:
    """M (``matrix``, users x items CSR) and the spectral factors of M^T M."""

    def __init__(self, matrix) -> None:
        n, m = matrix.shape
        if min(n, m) > MAX_RANK:
            raise ConfigError(
                f"the implicit-feedback (constrained) Gibbs sampler draws W exactly through "
                f"a basis of min(users, items) = {min(n, m):,} vectors, above its limit of "
                f"{MAX_RANK:,}; fit this data without constrained=True / --implicit",
                setting="constrained")
        self.matrix = matrix.tocsr()
        self.matrix_t = self.matrix.T.tocsr()
        # With fewer rows than columns, B = M^T P s^-1/2 from M M^T = P diag(s) P^T is
        # never formed: products with B go through the sparse M (O(nnz + n r) per column
        # instead of O(m r)).
        self.through_rows = n <= m
        gram = self.matrix @ self.matrix_t if self.through_rows else self.matrix_t @ self.matrix
        values, vectors = np.linalg.eigh(gram.toarray())
        keep = values > 1e-10 * max(values.max(initial=0.0), 1e-300)
        self.spectrum = values[keep]
        self.vectors = np.ascontiguousarray(
            vectors[:, keep] / np.sqrt(self.spectrum) if self.through_rows else vectors[:, keep])

    def _project(self, x: np.ndarray) -> np.ndarray:
        """B^T x."""
        if self.through_rows:
            return self.vectors.T @ (self.matrix @ x)
        return self.vectors.T @ x

    def _lift(self, y: np.ndarray) -> np.ndarray:
        """B y."""
        if self.through_rows:
            return np.asarray(self.matrix_t @ (self.vectors @ y))
        return self.vectors @ y

    def offsets(self, W: np.ndarray) -> np.ndarray:
        """M W: each user's implicit part of U."""
        return np.asarray(self.matrix @ W)

    def solve(self, rhs: np.ndarray, user_precision: np.ndarray,
              implicit_precision: np.ndarray) -> np.ndarray:
        """X with X Lambda_W + M^T M X Lambda_U = rhs (rhs: items x k d, k stacked
        right-hand sides of d columns each)."""
        d = len(user_precision)
        gains, Q = scipy.linalg.eigh(user_precision, implicit_precision)
        k = rhs.shape[1] // d
        projected = np.hstack([rhs[:, j * d:(j + 1) * d] @ Q for j in range(k)])
        shrink = np.tile(gains, k)[None, :] * self.spectrum[:, None]
        shrink /= 1.0 + shrink
        solved = projected - self._lift(shrink * self._project(projected))
        return np.hstack([solved[:, j * d:(j + 1) * d] @ Q.T for j in range(k)])

    def draw(self, U: np.ndarray, user_mean: np.ndarray, user_precision: np.ndarray,
             implicit_precision: np.ndarray, rng, previous: np.ndarray | None = None,
             overrelax: float = 0.0) -> np.ndarray:
        """W ~ p(W | U, mu_U, Lambda_U, Lambda_W) (see the module docstring), or its
        overrelaxed update from ``previous`` (``overrelax`` in (-1, 0])."""
        n, d = U.shape
        m = self.matrix.shape[1]
        user_root = np.linalg.cholesky(user_precision)
        implicit_root = np.linalg.cholesky(implicit_precision)
        mean_rhs = self.matrix_t @ ((U - user_mean) @ user_precision)
        noise_rhs = (self.matrix_t @ (rng.standard_normal((n, d)) @ user_root.T)
                     + rng.standard_normal((m, d)) @ implicit_root.T)
        solved = self.solve(np.hstack([mean_rhs, noise_rhs]), user_precision,
                            implicit_precision)
        mean, spread = solved[:, :d], solved[:, d:]
        if not overrelax or previous is None:
            return mean + spread
        return mean + overrelax * (previous - mean) + np.sqrt(1.0 - overrelax**2) * spread

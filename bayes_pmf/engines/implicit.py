"""The implicit-feedback block of the Gibbs sampler: exact draws of W in constrained PMF
(``PMFSpec(constrained=True)``), U_i = Y_i + sum_k M_ik W_k with M the normalised
rated-items indicator (:func:`bayes_pmf.model.params.rated_items_matrix`), and of Z on
the item side (``implicit_items=True``: V = X + M' Z), by the same code.

The sampler works in the coordinates (U, W): U = Y + M W is the user's effective factor
vector, the only thing the ratings see. Given U, the ratings say nothing more about W; W
is then a Bayesian linear regression of the users' offsets on what they rated,

    U_i - mu_U = (M W)_i + e_i,   e_i ~ N(0, Lambda_U^-1),   W_k ~ N(0, Lambda_W^-1).

Only W's component in the row space of M reaches U. With M^T M = B diag(s) B^T (B: m x r
orthonormal, r the rank, at most min(users, items)), W = B C + W_perp, where the r x d
coefficients C = B^T W have rows iid N(0, Lambda_W^-1) like W's, and W_perp, the
component M cannot see, is independent of everything but Lambda_W. The sampler keeps C
(``ImplicitFeedback.draw``) and integrates W_perp out: Lambda_W is drawn from C's r rows
(a collapsed Gibbs step), not from W's m rows, most of which would be prior draws
pinning Lambda_W to its last value (on MovieLens 9,724 items against 610 users: a
hierarchical funnel that left predictions unconverged after 2,600 sweeps). W_perp is
drawn from its prior only where a W is stored (``full``).

With M B = P diag(s)^1/2 (P: orthonormal columns, from M M^T = P diag(s) P^T) the
regression decouples by row of C:

    C_k | U ~ N(A_k^-1 sqrt(s_k) Lambda_U (P^T (U - mu_U))_k, A_k^-1),
    A_k = Lambda_W + s_k Lambda_U,

drawn for all k at once through the generalised eigenproblem Q^T Lambda_W Q = I,
Q^T Lambda_U Q = diag(g): A_k^-1 = Q diag(1 / (1 + s_k g)) Q^T. Each sweep costs O(n r d)
for the projection and O(r d^2) for the draw; B, P and s come once per fit from the
eigendecomposition of the smaller of M M^T and M^T M, whose r^2 doubles of memory
:data:`MAX_RANK` bounds.
"""

from __future__ import annotations

import numpy as np
import scipy.linalg

from ..errors import ConfigError

# r = min(users, items) above this would make the one-off eigendecomposition (r^2 values,
# O(r^3) time) too large for one machine (10,000: 0.8 GB).
MAX_RANK = 10_000


def implicit_bases_bytes(n_users: int, n_items: int) -> int:
    """About how many bytes one chain's implicit-feedback step holds for its bases: per
    side a dense r x r Gram matrix, its eigenvectors and the basis kept, about 5 r^2
    doubles for both sides (r = min(users, items))."""
    return 5 * min(n_users, n_items) ** 2 * 8


class ImplicitFeedback:
    """M (``matrix``, rows x columns CSR: users x items for W, items x users for Z), the
    orthonormal basis B of its row space (through ``_lift``) and the loadings M B."""

    def __init__(self, matrix) -> None:
        n, m = matrix.shape
        if min(n, m) > MAX_RANK:
            raise ConfigError(
                f"the implicit-feedback Gibbs sampler draws W exactly through a basis of "
                f"min(users, items) = {min(n, m):,} vectors, above its limit of "
                f"{MAX_RANK:,}; fit this data without implicit feedback (constrained=False, "
                "implicit_items=False; --implicit none)", setting="constrained")
        self.matrix = matrix.tocsr()
        self.matrix_t = self.matrix.T.tocsr()
        # With fewer rows than columns, B = M^T P s^-1/2 from M M^T = P diag(s) P^T is
        # never formed: products with B go through the sparse M.
        self.through_rows = n <= m
        gram = self.matrix @ self.matrix_t if self.through_rows else self.matrix_t @ self.matrix
        values, vectors = np.linalg.eigh(gram.toarray())
        keep = values > 1e-10 * max(values.max(initial=0.0), 1e-300)
        self.spectrum = values[keep]
        # M B: dense P diag(s)^1/2 (rows x r) when the rows are the smaller side; else
        # applied through the sparse M (a dense rows x r matrix would cost rows r d flops
        # per product: 9,724 x 610 x 10 on MovieLens' item side)
        if self.through_rows:
            self.vectors = np.ascontiguousarray(vectors[:, keep] / np.sqrt(self.spectrum))
            self._loadings = np.ascontiguousarray(vectors[:, keep] * np.sqrt(self.spectrum))
        else:
            self.vectors = np.ascontiguousarray(vectors[:, keep])
            self._loadings = None

    @property
    def rank(self) -> int:
        """r: the rows of C."""
        return len(self.spectrum)

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

    @property
    def loadings(self) -> np.ndarray:
        """M B (rows x r), formed (for tests and small problems)."""
        return self._loadings if self._loadings is not None else np.asarray(
            self.matrix @ self.vectors)

    def offsets(self, C: np.ndarray) -> np.ndarray:
        """M W = (M B) C: each row's implicit part."""
        if self._loadings is not None:
            return self._loadings @ C
        return np.asarray(self.matrix @ (self.vectors @ C))

    def _loadings_t(self, x: np.ndarray) -> np.ndarray:
        """(M B)^T x."""
        if self._loadings is not None:
            return self._loadings.T @ x
        return self.vectors.T @ np.asarray(self.matrix_t @ x)

    def draw(self, U: np.ndarray, user_mean: np.ndarray, user_precision: np.ndarray,
             implicit_precision: np.ndarray, rng, previous: np.ndarray | None = None,
             overrelax: float = 0.0) -> np.ndarray:
        """C ~ p(C | U, mu_U, Lambda_U, Lambda_W) (see the module docstring), or its
        overrelaxed update from ``previous`` (``overrelax`` in (-1, 0])."""
        d = U.shape[1]
        gains, Q = scipy.linalg.eigh(user_precision, implicit_precision)
        linear = self._loadings_t((U - user_mean) @ user_precision)  # r x d
        inverse = 1.0 / (1.0 + self.spectrum[:, None] * gains[None, :])  # r x d
        mean = ((linear @ Q) * inverse) @ Q.T
        spread = (rng.standard_normal((self.rank, d)) * np.sqrt(inverse)) @ Q.T
        if not overrelax or previous is None:
            return mean + spread
        return mean + overrelax * (previous - mean) + np.sqrt(1.0 - overrelax**2) * spread

    def full(self, C: np.ndarray, implicit_precision: np.ndarray, rng) -> np.ndarray:
        """W = B C + W_perp, with W_perp the projection off B's span of a draw from W's
        prior N(0, Lambda_W^-1) per row: a draw of W given C and Lambda_W."""
        m, d = self.matrix.shape[1], C.shape[1]
        root = np.linalg.inv(np.linalg.cholesky(implicit_precision)).T
        prior = rng.standard_normal((m, d)) @ root.T
        return self._lift(C - self._project(prior)) + prior

"""Constrained PMF (Salakhutdinov & Mnih 2007, section 4) by a NumPy/SciPy solver.

    U_i = Y_i + sum_k I_ik W_k / sum_k I_ik

I is the training indicator (which items user i rated, not the ratings), so a user's
factors are pulled towards the average "profile" W of what they chose to rate; users
with few ratings borrow strength from users who rated similar sets of items. The MAP
objective adds ridge terms on Y (lambda_u = sigma^2/sigma_u^2) and W (lambda_w =
sigma^2/sigma_w^2) to PMF's:

    E = 1/2 sum_obs (r_ij - mu - b_i - c_j - U_i.V_j)^2 + lambda_u/2 |Y|^2
        + lambda_w/2 |W|^2 + lambda_v/2 |V|^2 + lambda_b/2 |b|^2 + lambda_c/2 |c|^2.

No closed-form update exists for W (every user's rating of every item depends on it),
so this module minimises E with L-BFGS-B on an exact, vectorised gradient (sparse
products only, no dense users x items array), started from the ALS solution of plain
PMF (Y = U_als, W = 0). The PyMC model (``build_model(..., constrained=True)``) holds the
same posterior for MAP with PyMC and for NUTS; the tests check the two MAPs agree. The
model is a spec with ``constrained=True`` (its ``sigma_w`` sets lambda_w).
"""

from __future__ import annotations

import time
import warnings
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
from scipy.optimize import minimize

from ..errors import ConfigError, ConvergenceWarning, NumericalError
from ..model.params import FactorParams, rated_items_matrix
from ..result.result import PMFResult, point_result
from .parallel import sweep_progress
from .ridge import checked_spec, minimise


@dataclass(frozen=True)
class ConstrainedParams:
    Y: np.ndarray  # (users, d)
    W: np.ndarray  # (items, d)
    V: np.ndarray  # (items, d)
    mu: float
    user_bias: np.ndarray
    item_bias: np.ndarray

    def effective(self, indicator: sp.csr_matrix) -> FactorParams:
        """The plain-PMF parameters these imply: U = Y + N W."""
        return FactorParams(self.Y + indicator @ self.W, self.V, self.mu, self.user_bias,
                            self.item_bias)


class _Layout:
    """Packs ConstrainedParams into the flat vector L-BFGS works on, and back."""

    def __init__(self, n: int, m: int, d: int, biases: bool, global_mean: bool) -> None:
        self.sizes = {"Y": n * d, "W": m * d, "V": m * d, "b": n * biases,
                      "c": m * biases, "mu": int(global_mean)}
        self.n, self.m, self.d = n, m, d

    def pack(self, p: ConstrainedParams) -> np.ndarray:
        parts = [p.Y.ravel(), p.W.ravel(), p.V.ravel()]
        if self.sizes["b"]:
            parts += [p.user_bias, p.item_bias]
        if self.sizes["mu"]:
            parts.append([p.mu])
        return np.concatenate(parts)

    def unpack(self, x: np.ndarray) -> ConstrainedParams:
        n, m, d = self.n, self.m, self.d
        offsets = np.cumsum([0, *self.sizes.values()])
        take = dict(zip(self.sizes, (x[a:b] for a, b in zip(offsets[:-1], offsets[1:]))))
        return ConstrainedParams(
            take["Y"].reshape(n, d), take["W"].reshape(m, d), take["V"].reshape(m, d),
            float(take["mu"][0]) if self.sizes["mu"] else 0.0,
            take["b"] if self.sizes["b"] else np.zeros(n),
            take["c"] if self.sizes["c"] else np.zeros(m))


def _penalties(spec) -> dict[str, float]:
    return {"Y": spec.lambda_u, "W": spec.lambda_w, "V": spec.lambda_v,
            "b": spec.lambda_user_bias, "c": spec.lambda_item_bias}


def constrained_objective(train, params: ConstrainedParams, spec,
                          indicator: sp.csr_matrix | None = None
                          ) -> tuple[float, ConstrainedParams]:
    """E and its gradient (as ConstrainedParams) at ``params``."""
    indicator = (rated_items_matrix(train, norm=spec.implicit_norm) if indicator is None
                 else indicator)
    lam = _penalties(spec)
    users, items = train.user_idx, train.item_idx
    effective = params.effective(indicator)
    U = effective.user_factors
    error = train.rating - effective.linear_predictor(users, items)
    # dE/d(prediction) = -error, scattered to a sparse users x items matrix
    slope = sp.csr_matrix((-error, (users, items)), shape=(train.n_users, train.n_items))
    grad_u = slope @ params.V
    value = 0.5 * float(error @ error) + 0.5 * (
        lam["Y"] * np.sum(params.Y**2) + lam["W"] * np.sum(params.W**2)
        + lam["V"] * np.sum(params.V**2))
    grad = ConstrainedParams(
        Y=grad_u + lam["Y"] * params.Y,
        W=indicator.T @ grad_u + lam["W"] * params.W,
        V=slope.T @ U + lam["V"] * params.V,
        mu=float(-error.sum()) if spec.global_mean else 0.0,
        user_bias=np.zeros(train.n_users), item_bias=np.zeros(train.n_items))
    if spec.biases:
        value += 0.5 * (lam["b"] * np.sum(params.user_bias**2)
                        + lam["c"] * np.sum(params.item_bias**2))
        grad = ConstrainedParams(
            grad.Y, grad.W, grad.V, grad.mu,
            np.asarray(slope.sum(axis=1)).ravel() + lam["b"] * params.user_bias,
            np.asarray(slope.sum(axis=0)).ravel() + lam["c"] * params.item_bias)
    return value, grad


def fit_constrained(train, spec, *, max_iter: int = 3000,
                    tol: float = 1e-10, rng: int | None = 0, method: str = "constrained-map",
                    progress: bool = True) -> PMFResult:
    """MAP of constrained PMF (``spec``: a PMFSpec with ``constrained=True``, e.g.
    ``PMFSpec(constrained=True)``) by L-BFGS-B from the plain-PMF ALS solution.

    Returns a PMFResult named ``method`` whose posterior holds the effective U = Y + N W
    (so it predicts like any PMF result) and Y, W themselves."""
    spec = checked_spec(spec, "fit_constrained")
    if not spec.constrained:
        raise ConfigError("fit_constrained fits constrained PMF; pass "
                          "spec.with_(constrained=True)", setting="constrained")
    spec.require_fixed("fit_constrained")
    if spec.item_additive or spec.user_features is not None:
        raise ConfigError("fit_constrained fits the user side's implicit feedback only; "
                          "sample implicit_items=True, item_features or user_features with "
                          "sample_gibbs (or fit_map)",
                          setting="implicit_items" if spec.item_additive else "user_features")
    if spec.link != "identity":
        raise ConfigError("constrained PMF here needs the identity link", setting="link")
    if spec.mu_prior is not None:
        raise ConfigError("fit_constrained fits a flat-prior mu; use mu_prior=None",
                          setting="mu_prior")
    began = time.perf_counter()
    # The start only needs to be near the plain-PMF optimum; L-BFGS does the rest.
    plain = minimise(train, spec, rng=rng, tol=1e-7, max_sweeps=300, progress=False).params
    indicator = rated_items_matrix(train, norm=spec.implicit_norm)
    layout = _Layout(train.n_users, train.n_items, spec.n_factors, spec.biases,
                     spec.global_mean)
    start = ConstrainedParams(plain.user_factors, np.zeros_like(plain.item_factors),
                              plain.item_factors, plain.mu, plain.user_bias, plain.item_bias)
    trace = []

    def value_and_gradient(x):
        value, grad = constrained_objective(train, layout.unpack(x), spec, indicator)
        return value, layout.pack(grad)

    with sweep_progress(max_iter, "constrained PMF (L-BFGS)", progress) as bar:
        def record(x):
            trace.append(value_and_gradient(x)[0])
            bar.advance(f"E={trace[-1]:.6g}")

        outcome = minimize(value_and_gradient, layout.pack(start), jac=True, method="L-BFGS-B",
                           callback=record,
                           options={"maxiter": max_iter, "ftol": tol, "gtol": 1e-8,
                                    "maxcor": 20})
    if not np.all(np.isfinite(outcome.x)):
        raise NumericalError("constrained PMF optimisation produced non-finite values")
    fitted = layout.unpack(outcome.x)
    effective = fitted.effective(indicator)
    seconds = time.perf_counter() - began
    settings = {"lambda_w": spec.lambda_w,
                "optimizer": "L-BFGS-B", "iterations": int(outcome.nit),
                "converged": bool(outcome.success), "message": str(outcome.message),
                "objective": float(outcome.fun), "objective_trace": trace, "seconds": seconds}
    if not outcome.success:
        warnings.warn(f"constrained PMF: L-BFGS-B stopped before converging "
                      f"({outcome.message}); raise max_iter", ConvergenceWarning, stacklevel=2)
    return point_result(effective, spec, train, method=method, seed=rng,
                        settings=settings, extra_arrays={"Y": fitted.Y, "W": fitted.W})

"""The ALS engine: the MAP of a fixed-prior PMF model by alternating least squares, the
reference the PyMC MAP is checked against; and the baselines every PMF number is
compared with, each a PMFResult like every other method:

* global mean: r_hat = mu;
* user mean / item mean: the user's (item's) average training rating, stored as
  mu + b_i (mu + c_j) with mu the global mean, so an unknown user (item) gets mu;
* bias baseline: r_hat = mu + b_i + c_j with ridge penalties, which is PMF with d = 0
  and biases: its exact minimiser of the same objective E, solved by conjugate
  gradients (:func:`~bayes_pmf.engines.ridge.solve_biases`), because alternating
  sweeps crawl along the direction that trades the users' mean bias for the items'
  (on the embedded MovieLens they stopped after 187 sweeps, 1.3 s, with E 1.4e-9
  above its minimum and biases off by up to 2e-4; CG: 26 iterations, 0.04 s; at 10^6
  ratings 200 sweeps, 8.9 s, against 17 iterations, 0.3 s).

The mean baselines define no noise model (``has_predictive`` is False: no intervals,
no coverage).

:func:`fit_als` runs the exact block-coordinate sweeps of :mod:`bayes_pmf.engines.ridge`
to convergence and returns a :class:`~bayes_pmf.result.result.PMFResult` (chain=1,
draw=1) whose settings keep the objective after every sweep
(:func:`objective_trace_of`). A fit that stops at ``max_sweeps`` before the relative
change of E falls below ``tol`` says so: ``converged`` False in its settings and a
:class:`~bayes_pmf.errors.ConvergenceWarning`.

This module imports no PyMC.
"""

from __future__ import annotations

import warnings

import numpy as np

from ..errors import ConfigError, ConvergenceWarning
from ..model.params import FactorParams
from ..model.spec import DEFAULT_LAMBDA_BIAS, PMFSpec
from ..result.result import PMFResult, point_result
from .ridge import ALSFit, checked_spec, minimise, solve_biases


def fit_als(
    data,
    spec,
    *,
    max_sweeps: int = 100,
    tol: float = 1e-7,
    rng: int | np.random.Generator | None = 0,
    init_scale: float = 0.1,
    init: FactorParams | None = None,
    block_rows: int | None = None,
    solver: str = "exact",
    cg_steps: int | None = None,
    cg_precision: str = "float64",
    executor=None,
    method: str = "als",
    progress: bool = True,
) -> PMFResult:
    """The MAP of ``spec`` (a PMFSpec with fixed priors and noise, e.g. ``PMFSpec()``,
    the default model) on the ratings ``data`` (a RatingsData) by ALS.

    Stops when the relative decrease of E over a sweep falls below ``tol`` or after
    ``max_sweeps`` (then warns). ``rng`` seeds the random initial factors (ignored when
    ``init`` is given). ``solver="exact"`` (default) solves every row's ridge system
    exactly; ``solver="cg"`` takes ``cg_steps`` warm-started conjugate-gradient steps per
    row (as cmfrec does), cheaper per sweep at large d, and ends with one exact sweep;
    ``cg_precision="float32"`` runs those steps in single precision (~1.7x faster at 10^7
    ratings, d = 32). ``block_rows`` (rows per block, default 4096) and ``executor`` (an
    Executor) decide how and where row blocks run (:mod:`bayes_pmf.engines.parallel`);
    ``cg_steps`` defaults to 3. Returns a PMFResult named ``method`` whose settings hold
    the objective trace, ``converged`` and ``n_sweeps``.
    """
    spec = checked_spec(spec, "fit_als")
    spec.require_fixed("ALS")
    if spec.user_additive or spec.item_additive:
        raise ConfigError("ALS fits plain PMF; this spec has implicit feedback or side "
                          "features (constrained / implicit_items / item_features / "
                          "user_features). Sample "
                          "it with sample_gibbs, or "
                          "fit the user side's MAP with fit_constrained",
                          setting="constrained")
    options = {name: value for name, value in (("block_rows", block_rows),
                                               ("cg_steps", cg_steps)) if value is not None}
    fit = minimise(data, spec, max_sweeps=max_sweeps, tol=tol, rng=rng,
                   init_scale=init_scale, init=init, solver=solver,
                   cg_precision=cg_precision, executor=executor, progress=progress,
                   **options)
    if not fit.converged:
        warnings.warn(
            f"ALS stopped at max_sweeps={max_sweeps} before the relative change of the "
            f"objective fell below tol={tol:g} (last change "
            f"{_last_change(fit):.2g}); raise max_sweeps for the converged MAP",
            ConvergenceWarning, stacklevel=2)
    return als_result(fit, data, method=method)


def _last_change(fit: ALSFit) -> float:
    trace = fit.objective_trace
    return (trace[-2] - trace[-1]) / max(abs(trace[-2]), 1e-300) if len(trace) > 1 else 0.0


def als_result(fit, train, method: str = "als") -> PMFResult:
    """An :class:`~bayes_pmf.engines.ridge.ALSFit` (from ``ridge.minimise``) as a
    PMFResult (chain=1, draw=1) named ``method``; the objective per sweep is kept in its
    settings. A PMFResult (what :func:`fit_als` returns) is returned under ``method``:
    code written when fit_als returned an ALSFit keeps working."""
    if isinstance(fit, PMFResult):
        return fit if fit.method == method else fit.with_method(method)
    return point_result(fit.params, fit.spec, train, method=method, seed=fit.seed,
                        settings=fit.result_settings())


def objective_trace_of(result: PMFResult) -> list[float]:
    """The objective E after each sweep recorded in an ALS result (entry 0: the start);
    empty for results of other engines."""
    return list(result.attrs["settings"].get("objective_trace", []))


# -- baselines ------------------------------------------------------------------------------

def _offsets(mu: float, means: np.ndarray) -> np.ndarray:
    """Offsets b with mu + b equal to ``means`` in floating point, so a mean baseline
    predicts each mean exactly. m - mu is exact when m is within a factor 2 of mu
    (Sterbenz); further away, mu + (m - mu) can miss m by a unit in the last place, and
    such entries are nudged one representable step at a time until it does not."""
    offsets = means - mu
    for _ in range(10_000):
        wrong = np.flatnonzero(mu + offsets != means)
        if not len(wrong):
            break
        direction = np.where(mu + offsets[wrong] < means[wrong], np.inf, -np.inf)
        offsets[wrong] = np.nextafter(offsets[wrong], direction)
    return offsets


def _mean_baseline(train, method: str, user_means=None, item_means=None) -> PMFResult:
    mu = train.mean_rating
    spec = PMFSpec(n_factors=0, biases=user_means is not None or item_means is not None)
    params = FactorParams(np.zeros((train.n_users, 0)), np.zeros((train.n_items, 0)), mu,
                          None if user_means is None else _offsets(mu, user_means),
                          None if item_means is None else _offsets(mu, item_means))
    # the sides whose ids the baseline knows: only those can be "unknown" to it
    sides = ["user"] * (user_means is not None) + ["item"] * (item_means is not None)
    return point_result(params, spec, train, method=method, seed=None,
                        settings={"predictive": False, "baseline": method, "sides": sides})


def fit_global_mean(train) -> PMFResult:
    """The mean training rating for every pair."""
    return _mean_baseline(train, "global-mean")


def fit_user_mean(train) -> PMFResult:
    """Each user's mean training rating (the global mean for users without ratings)."""
    sums = np.bincount(train.user_idx, weights=train.rating, minlength=train.n_users)
    return _mean_baseline(train, "user-mean", user_means=sums / train.user_counts)


def fit_item_mean(train) -> PMFResult:
    """Each item's mean training rating (the global mean for items without ratings)."""
    sums = np.bincount(train.item_idx, weights=train.rating, minlength=train.n_items)
    return _mean_baseline(train, "item-mean", item_means=sums / train.item_counts)


def fit_bias_baseline(
    train,
    lambda_user_bias: float = DEFAULT_LAMBDA_BIAS,
    lambda_item_bias: float = DEFAULT_LAMBDA_BIAS,
    *,
    progress: bool = False,
) -> PMFResult:
    """mu + b_i + c_j minimising squared error + ridge penalties (PMF with d = 0),
    with the plug-in predictive N(r_hat, 1) of the spec's sigma = 1. The solve is
    exact and takes seconds even at 10^7 ratings, so ``progress`` shows nothing (kept
    for the fit functions' common signature)."""
    spec = PMFSpec.from_lambdas(0, 1.0, sigma=1.0, biases=True,
                                lambda_user_bias=lambda_user_bias,
                                lambda_item_bias=lambda_item_bias)
    fit = solve_biases(train, spec)
    return point_result(fit.params, fit.spec, train, method="bias-baseline", seed=fit.seed,
                        settings=fit.result_settings())

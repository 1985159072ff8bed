"""The ALS sweep: exact block-coordinate minimisation of the MAP objective E, shared by the
ALS engine (:mod:`bayes_pmf.engines.als`), the Gibbs sampler's start and the PyMC MAP's
start.

Each half-step minimises E exactly over one side's parameters with the other side fixed.
For user i, with design rows x_j = [V_j, 1] (the 1 carries the user bias when present)
and targets t_ij = r_ij - mu - c_j, the minimiser is the ridge solution

    w_i = (diag(lambda) + sum_j I_ij x_j x_j^T)^-1  sum_j I_ij t_ij x_j,

with the UNWEIGHTED penalty diag(lambda) = (lambda_u, ..., lambda_u, lambda_user_bias)
that PMF's Gaussian prior gives (not ALS-WR's lambda * n_i), so its optimum is the
PyMC MAP's. The global mean then takes its closed-form value (flat prior). Every step
is an exact block minimisation, so E never increases.

The rows of a half-step are solved block by block through the executor seam
(:func:`~bayes_pmf.engines.parallel.map_row_blocks`), each block by the row kernels of
:mod:`bayes_pmf.engines.linalg`. ``cg_steps`` swaps the exact solve for a few
warm-started conjugate-gradient steps per row (O(nnz p) per step instead of
O(nnz p^2)), still a descent step, so E never increases either.

The penalties are the spec's fixed-prior ones (lambda = sigma^2 / sigma_prior^2), read
as they are: this module minimises E for any spec; :func:`~bayes_pmf.engines.als.fit_als`
checks that the spec's model is the one whose MAP E is.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial

import numpy as np
import scipy.sparse as sp

from ..errors import ConfigError, check_count, check_seed
from ..model.params import FactorParams, objective, objective_penalty
from .linalg import DEFAULT_CG_STEPS, prepare_design, refine_rows, solve_rows
from .parallel import (
    DEFAULT_BLOCK_ROWS,
    Executor,
    Prepared,
    Targets,
    map_row_blocks,
    rating_rows,
    row_sums,
    sweep_progress,
)

log = logging.getLogger(__name__)


def checked_spec(spec, engine: str):
    """``spec`` if it is a model spec (a PMFSpec: every engine reads the whole model from
    it), else a ConfigError naming the engine and what it got."""
    if not all(hasattr(spec, name) for name in ("prior", "noise", "link", "require_fixed")):
        raise ConfigError(f"{engine} needs the model as a PMFSpec (e.g. bayes_pmf.PMFSpec() for "
                          f"the default model), got {type(spec).__name__}", setting="spec")
    return spec


SOLVERS = ("exact", "cg")
CG_PRECISIONS = {"float64": np.float64, "float32": np.float32}


def _solve_block(block, *, prepared, penalty) -> np.ndarray:
    return solve_rows(block, prepared, penalty)


def _refine_block(block, *, prepared, penalty, start, cg_steps) -> np.ndarray:
    return refine_rows(block, prepared, penalty, start, cg_steps)


def half_step(
    matrix: sp.csr_matrix,
    targets: Targets | np.ndarray,
    design: np.ndarray,
    penalty: np.ndarray,
    block_rows: int = DEFAULT_BLOCK_ROWS,
    start: np.ndarray | None = None,
    cg_steps: int | None = None,
    cg_dtype: type = np.float64,
    executor: Executor | None = None,
) -> np.ndarray:
    """:func:`solve_rows` over all rows of ``matrix`` with data ``targets`` (an array or
    a :class:`~bayes_pmf.engines.parallel.Targets` recipe), block by block; or, given
    ``cg_steps``, :func:`refine_rows` from the rows ``start``, computing in
    ``cg_dtype``."""
    if design.shape[1] == 0:
        return np.zeros((matrix.shape[0], 0))
    if cg_steps is None:
        return map_row_blocks(matrix, targets, _solve_block, design.shape[1], block_rows,
                              executor, shared={"prepared": Prepared(prepare_design, (design,)),
                                                "penalty": penalty})
    prepare = partial(prepare_design, padded=True, dtype=cg_dtype)
    return map_row_blocks(matrix, targets, _refine_block, design.shape[1], block_rows,
                          executor, shared={"prepared": Prepared(prepare, (design,)),
                                            "penalty": penalty, "cg_steps": cg_steps},
                          per_row={"start": start})


@dataclass(frozen=True)
class ALSFit:
    """Learned state of one run of :func:`minimise`, apart from the settings that
    produced it."""

    params: FactorParams
    spec: object  # the PMFSpec whose E was minimised
    objective_trace: list[float]
    converged: bool
    seconds: float
    seed: int | None
    settings: dict = field(default_factory=dict)

    @property
    def n_sweeps(self) -> int:
        return len(self.objective_trace) - 1

    def result_settings(self) -> dict:
        """What a PMFResult of this fit records: its settings, the objective per sweep
        (entry 0: the start), whether it converged, its sweeps and seconds."""
        return dict(self.settings, objective_trace=self.objective_trace,
                    converged=self.converged, n_sweeps=self.n_sweeps, fit_seconds=self.seconds)


# The bias-only solve's stopping rule: the preconditioned residual relative to the
# right-hand side's. 1e-12 leaves the gradient of E at ~1e-9 (E at its minimum to
# rounding); the cap is far above the 17-26 iterations measured on the embedded
# MovieLens and at 10^6 ratings.
BIAS_RTOL, BIAS_MAX_ITERATIONS = 1e-12, 2000


def solve_biases(data, spec) -> ALSFit:
    """The exact minimiser of E for ``spec``, PMF with d = 0 and biases (mu + b_i + c_j,
    flat prior on mu, ridge penalties on the biases), by conjugate gradients on the normal equations
    (X'X + diag(0, lambda_b, lambda_c)) x = X'r with x = (mu, b, c) and a Jacobi
    preconditioner. Each iteration costs two gathers and three bincounts over the
    ratings, and CG converges in tens of iterations where alternating bias updates
    crawl along the direction that trades the users' mean bias for the items'."""
    start_time = time.perf_counter()
    users, items = data.user_idx, data.item_idx
    n, m = data.n_users, data.n_items
    if spec.n_factors or not spec.biases or not spec.global_mean or spec.mu_prior is not None:
        raise ConfigError("solve_biases fits mu + b_i + c_j only: a spec with n_factors=0, "
                          "biases and a flat prior on mu", setting="spec")
    ridge = np.r_[0.0, np.full(n, spec.lambda_user_bias), np.full(m, spec.lambda_item_bias)]
    diagonal = np.r_[float(len(data.rating)), data.user_counts, data.item_counts] + ridge
    if np.any(diagonal <= 0):
        raise ConfigError("the bias baseline needs positive bias penalties for users or items "
                          "without ratings", setting=("lambda_user_bias", "lambda_item_bias"))

    def spread(x):  # X x: each rating's mu + b_i + c_j
        return x[0] + x[1:n + 1][users] + x[n + 1:][items]

    def gather(values):  # X' values
        return np.r_[values.sum(), np.bincount(users, values, n), np.bincount(items, values, m)]

    def normal(x):
        return gather(spread(x)) + ridge * x

    x = np.r_[data.mean_rating, np.zeros(n + m)]
    rhs = gather(np.asarray(data.rating, dtype=float))
    residual = rhs - normal(x)
    z = residual / diagonal
    direction = z.copy()
    rz = residual @ z
    target = BIAS_RTOL**2 * float(rhs @ (rhs / diagonal))
    iterations, converged = 0, rz <= target
    while not converged and iterations < BIAS_MAX_ITERATIONS:
        product = normal(direction)
        step = rz / (direction @ product)
        x += step * direction
        residual -= step * product
        z = residual / diagonal
        rz, previous = residual @ z, rz
        direction = z + (rz / previous) * direction
        iterations += 1
        converged = rz <= target
    params = FactorParams(user_factors=np.zeros((n, 0)), item_factors=np.zeros((m, 0)),
                          mu=float(x[0]), user_bias=x[1:n + 1].copy(),
                          item_bias=x[n + 1:].copy())
    start = FactorParams(user_factors=np.zeros((n, 0)), item_factors=np.zeros((m, 0)),
                         mu=float(data.mean_rating))
    return ALSFit(
        params=params, spec=spec,
        objective_trace=[objective(data, start, spec), objective(data, params, spec)],
        converged=bool(converged), seconds=time.perf_counter() - start_time, seed=None,
        settings={"solver": "conjugate gradients (biases only)", "rtol": BIAS_RTOL,
                  "cg_iterations": iterations})


def initial_params(data, spec, rng, init_scale: float = 0.1) -> FactorParams:
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


def sweep(data, params: FactorParams, spec,
          block_rows: int = DEFAULT_BLOCK_ROWS, cg_steps: int | None = None,
          cg_dtype: type = np.float64, executor: Executor | None = None) -> FactorParams:
    """One ALS sweep: users given items, items given users, then mu. Each half-step is
    exact, or ``cg_steps`` conjugate-gradient steps from the current factors."""
    d, biases = spec.n_factors, spec.biases
    by_user, by_item = data.by_user, data.by_item

    def current(factors, bias):
        return None if cg_steps is None else _with_column(factors, bias, biases)

    user_penalty = np.r_[np.full(d, spec.lambda_u), [spec.lambda_user_bias] * biases]
    targets = Targets(None, params.mu, params.item_bias)
    solved = half_step(by_user, targets, _with_ones(params.item_factors, biases),
                       user_penalty, block_rows,
                       current(params.user_factors, params.user_bias), cg_steps, cg_dtype,
                       executor)
    user_factors = solved[:, :d]
    user_bias = solved[:, d] if biases else params.user_bias

    item_penalty = np.r_[np.full(d, spec.lambda_v), [spec.lambda_item_bias] * biases]
    targets = Targets(None, params.mu, user_bias)
    solved = half_step(by_item, targets, _with_ones(user_factors, biases),
                       item_penalty, block_rows,
                       current(params.item_factors, params.item_bias), cg_steps, cg_dtype,
                       executor)
    item_factors = solved[:, :d]
    item_bias = solved[:, d] if biases else params.item_bias

    updated = FactorParams(user_factors, item_factors, params.mu, user_bias, item_bias)
    if spec.global_mean:
        residual_sum = data.n_ratings * data.mean_rating - observed_sum_without_mu(
            data, updated, block_rows, executor)
        if spec.mu_prior is None:
            mu = residual_sum / data.n_ratings
        else:  # mu ~ N(m0, s0^2): the penalty sigma^2/s0^2 (mu - m0)^2 / 2
            m0, s0 = spec.mu_prior
            penalty = spec.sigma**2 / s0**2
            mu = (residual_sum + penalty * m0) / (data.n_ratings + penalty)
        updated = FactorParams(user_factors, item_factors, float(mu), user_bias, item_bias)
    return updated


def _squared_residuals(block, *, item_factors, user_factors, user_bias) -> np.ndarray:
    """Each row's sum of squared residuals (a column): ``block`` holds the users' targets
    r_ij - mu - c_j, ``user_factors`` and ``user_bias`` their rows of U and b. Every
    rating's residual and every row's sum are computed alone, so the sums do not depend
    on how the rows were cut into blocks."""
    rows = rating_rows(block)
    residual = (block.data - np.einsum("kl,kl->k", user_factors[rows],
                                       np.take(item_factors, block.indices, axis=0))
                - user_bias[rows])
    return row_sums(block, residual * residual, rows)[:, None]


def blockwise_objective(data, params: FactorParams, spec,
                        block_rows: int = DEFAULT_BLOCK_ROWS,
                        executor: Executor | None = None) -> float:
    """The objective E (:func:`~bayes_pmf.model.params.objective`, identity link) with its
    squared errors summed where the rating blocks are: each user's sum in the row blocks
    of a half-step, through the executor (on a Dask cluster, by the workers holding the
    blocks, so the client adds n_users numbers instead of gathering U and V for every
    rating). Equal to ``objective`` up to rounding; the same on every executor and block
    size, bit for bit."""
    squared = map_row_blocks(data.by_user, Targets(None, params.mu, params.item_bias),
                             _squared_residuals, 1, block_rows, executor,
                             shared={"item_factors": params.item_factors},
                             per_row={"user_factors": params.user_factors,
                                      "user_bias": params.user_bias})
    return 0.5 * float(np.sum(squared)) + objective_penalty(params, spec)


def _with_column(factors: np.ndarray, column: np.ndarray, biases: bool) -> np.ndarray:
    return np.hstack([factors, column[:, None]]) if biases else factors


def _item_sums(block, *, item_factors) -> np.ndarray:
    """Each row's sum of the item factors V_j of its ratings: its row of (pattern @ V),
    with the same arithmetic, row by row, as the whole matrix's product."""
    pattern = sp.csr_matrix((np.ones(block.nnz), block.indices, block.indptr),
                            shape=block.shape)
    return pattern @ item_factors


def observed_sum_without_mu(data, params: FactorParams, block_rows: int = DEFAULT_BLOCK_ROWS,
                            executor: Executor | None = None) -> float:
    """Sum over the observed pairs of b_i + c_j + U_i.V_j.

    Sum_ij U_i.V_j = Sum_i U_i.(Sum_j V_j) over each user's items: the sums of V_j are
    taken in the user row blocks, through the executor (on a Dask cluster by the workers
    holding the blocks, so only V travels there and n_users rows come back), instead of
    gathering U and V for every rating (at 10^7 ratings the gather took 0.8 s, more than
    a half-step). Each row's sum does not depend on the blocks, so the result has the
    same bits on every executor and block size."""
    by_user, d = data.by_user, params.item_factors.shape[1]
    item_sums = np.zeros((by_user.shape[0], 0)) if d == 0 else map_row_blocks(
        by_user, Targets(), _item_sums, d, block_rows, executor,
        shared={"item_factors": params.item_factors})
    return float(np.einsum("ij,ij->", params.user_factors, item_sums)
                 + data.user_counts @ params.user_bias + data.item_counts @ params.item_bias)


def minimise(
    data,
    spec,
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
    executor: Executor | None = None,
    progress: bool = True,
    on_sweep: Callable[[], None] | None = None,
) -> ALSFit:
    """Minimise the PMF MAP objective E of ``spec``'s fixed-prior penalties by ALS sweeps.

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
    ``on_sweep`` is called after every sweep (a Gibbs chain's start: it raises to stop
    the chain when the run is stopped).
    """
    spec = checked_spec(spec, "ALS")
    if spec.link != "identity":
        raise ConfigError(
            "ALS has closed-form updates only for the identity link; fit the logistic "
            "link with bayes_pmf.fit_map", setting="link")
    check_count("max_sweeps", max_sweeps)
    if not tol >= 0:
        raise ConfigError(f"tol must be >= 0, got {tol!r}", setting="tol")
    if solver not in SOLVERS:
        raise ConfigError(f"solver must be one of {SOLVERS}, got {solver!r}", setting="solver")
    if solver == "cg" and (not isinstance(cg_steps, (int, np.integer)) or cg_steps < 1):
        raise ConfigError(f"cg_steps must be a positive integer, got {cg_steps!r}",
                          setting="cg_steps")
    if cg_precision not in CG_PRECISIONS:
        raise ConfigError(f"cg_precision must be one of {tuple(CG_PRECISIONS)}, "
                          f"got {cg_precision!r}", setting="cg_precision")
    check_seed(rng)
    seed = rng if isinstance(rng, (int, np.integer)) else None
    start_time = time.perf_counter()
    params = init if init is not None else initial_params(data, spec, rng, init_scale)
    def value(params):
        return blockwise_objective(data, params, spec, block_rows, executor)

    trace = [value(params)]
    converged = False
    inexact_sweeps = max_sweeps - 1 if solver == "cg" else 0
    with sweep_progress(max_sweeps, "ALS sweeps", progress) as bar:
        for number in range(max_sweeps):
            inexact = number < inexact_sweeps and not converged
            params = sweep(data, params, spec, block_rows, cg_steps if inexact else None,
                           CG_PRECISIONS[cg_precision], executor)
            trace.append(value(params))
            change = (trace[-2] - trace[-1]) / max(abs(trace[-2]), 1e-300)
            bar.advance(f"E={trace[-1]:.6g}")
            if on_sweep is not None:
                on_sweep()
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

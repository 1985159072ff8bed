"""A Gibbs sampler in NumPy for conjugate (Bayesian) PMF; imports no PyMC.

Model (tau = 1/sigma^2; w_i = [U_i, b_i] stacks a user's factors and bias, likewise
z_j = [V_j, c_j] for items):

    r_ij ~ N(mu + b_i + c_j + U_i.V_j, 1/tau)
    U_i ~ N(mu_U, Lambda_U^-1),   V_j ~ N(mu_V, Lambda_V^-1)
    b_i ~ N(0, 1/tau_b),          c_j ~ N(0, 1/tau_c),        mu flat or N(m0, s0^2)
    tau ~ Gamma(spec.noise_prior)                   (spec.noise="learned"; else fixed)
and the spec's prior family (``spec.prior``, :mod:`bayes_pmf.model.spec`):
    "normal-wishart": (mu_U, Lambda_U) ~ Normal-Wishart(mu0=0, beta0, W0=I, nu0=d), same
                   for V, tau_b, tau_c ~ Gamma(a0, b0)    (Salakhutdinov & Mnih, 2008)
    "wishart":     as "normal-wishart" with mu_U = mu_V = 0 fixed: Lambda_U ~
                   Wishart(W0=I, nu0=d). Zero-mean factors cannot trade a constant offset
                   mu_U.mu_V with mu, which removes BPMF's slowest-mixing direction
    "spherical":   mu_U = 0, Lambda_U = lambda_U I, lambda_U ~ Gamma(a0, b0): the PMF
                   paper's adaptive spherical prior, sampled instead of maximised
    "diagonal":    mu_U = 0, Lambda_U = diag(lambda_U1..d), each ~ Gamma(a0, b0): the
                   paper's adaptive diagonal prior (one learned scale per latent dimension)
    "fixed":       mu_U = 0, Lambda_U = I/sigma_u^2, tau_b = 1/sigma_user_bias^2 (the spec's)

Full conditionals, all conjugate:

* w_i | rest ~ N(P_i^-1 h_i, P_i^-1) with x_j = [V_j, 1], t_ij = r_ij - mu - c_j,
  P_i = blockdiag(Lambda_U, tau_b) + tau sum_j I_ij x_j x_j^T,
  h_i = blockdiag(Lambda_U, tau_b) [mu_U, 0] + tau sum_j I_ij t_ij x_j.
  Sampled for all users at once: Gram matrices as in ALS (shared code),
  one batched Cholesky P_i = L L^T, then w_i = P_i^-1 h_i + L^-T e with e ~ N(0, I).
  Items likewise. Rows with fewer ratings than p are drawn instead through an L x L
  system in the prior's whitened coordinates (see ``sample_short_rows``): same
  distribution, a fraction of the cost when d is large.
* mu | rest ~ N(mean_ij(r_ij - b_i - c_j - U_i.V_j), 1/(tau N)) under the flat prior;
  with mu ~ N(m0, s0^2), precision tau N + 1/s0^2 and mean
  (tau sum_ij(r_ij - b_i - c_j - U_i.V_j) + m0/s0^2) / (tau N + 1/s0^2).
* tau | rest ~ Gamma(a0 + N/2, b0 + SSE/2). SSE comes from the item half-step's own
  normal equations, sum_j [sum_i t_ij^2 - 2 z_j.h_j + z_j^T G_j z_j] (G_j, h_j: its Gram
  matrix and right-hand side, z_j the new draw), then shifted for the new mu: no second
  pass predicting every rating.
* (mu_U, Lambda_U) | U ~ Normal-Wishart(mu*, beta0 + n, W*, nu0 + n), with
  mu* = (beta0 mu0 + n Ubar)/(beta0 + n),
  W*^-1 = W0^-1 + n S + beta0 n/(beta0 + n) (Ubar - mu0)(Ubar - mu0)^T.
* tau_b | b ~ Gamma(a0 + n/2, b0 + sum b_i^2 / 2).
* spherical: lambda_U | U ~ Gamma(a0 + n d/2, b0 + sum_ik U_ik^2 / 2); diagonal:
  lambda_Uk | U ~ Gamma(a0 + n/2, b0 + sum_i U_ik^2 / 2).

Moves beyond plain Gibbs, each leaving the posterior invariant (tests/test_gibbs_moves.py):

* overrelaxation (``overrelax`` = a, default -0.8): every Gaussian conditional above, and
  tau's Gamma, is updated as m + a (current - m) + sqrt(1 - a^2) (draw - m) (Adler
  1981; for tau in normal scores of its cdf) instead of drawn afresh. Consecutive draws
  are then anti-correlated, which on MovieLens doubled the median ESS of predicted
  ratings per draw (so keep every draw: thinning throws the gain away);
* exact draws along the directions the likelihood cannot see: the scale of U against V,
  the global mean against the biases, the factors against the other side's biases;
* for hierarchical priors, a Metropolis move of each side's biases with their precision,
  (c, tau_c) -> (s c, tau_c / s^2) (``_bias_scale_move``): with most items barely rated
  the biases and their precision otherwise pin each other (a hierarchical funnel);
* for the "wishart" prior, Metropolis moves (U, V) -> (U A, V A^-T) over invertible A with
  both Wishart precisions integrated out (``_balance_moves``): the balance of U against V
  latent direction by latent direction, which plain Gibbs walked with autocorrelation
  times of 1,000+ sweeps; with implicit feedback, also Metropolis moves along its ridge
  (Y, W) -> (U - M W A, W A) with U fixed and both precisions integrated out
  (``_ridge_moves``): how much of U is the user's own Y and how much M W, which the
  ratings cannot tell and the two priors' precisions otherwise pin between them.

The ordinal likelihood (``spec.likelihood="ordinal"``) is sampled by data augmentation:
each sweep draws the cut points and latent ratings z (``_OrdinalLatent``), and the
conditionals above then run on z with the fixed sigma.

Implicit feedback (``spec.constrained``: U = Y + M W; ``spec.implicit_items``: V = X + M' Z)
runs in the coordinates of the effective U and V: the user step draws Y with the ratings'
targets shifted by (M W)_i.V_j, and W is then drawn given U with Y = U - M W moving along
(:mod:`bayes_pmf.engines.implicit`, whose row-space coordinates the chain keeps); the
items likewise. The balance, scale, shift and ordinal stretch moves act on Y and W (X
and Z) together. Item features (``spec.item_features``: V = X + M' Z + G Phi, the items'
normalised tags G) are more columns of the item side's M and more rows of its Z: one
additive block [M' | G] [Z; Phi] under one prior, drawn by the same step; non-centred
steps for each tag's factors with X held (``_tag_moves``, ``tag_moves=False`` turns them
off) interweave with it, since a tag's factors and its rarely rated items' factors pin
each other under the centred step alone. User features (``spec.user_features``: U = Y +
M W + H Psi) are the same on the user side: [M | H] [W; Psi], with the same tag steps.

Chains are independent and seeded from one seed; the executor
(:mod:`bayes_pmf.engines.parallel`) runs them in parallel processes when there are cores
to spare, and the row blocks of each half-step on threads. The output is the same
InferenceData shape as every other method.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from typing import Literal

import numpy as np
import scipy.linalg
import scipy.sparse as sp
from scipy import special, stats

from ..errors import ConfigError, NumericalError, check_count, check_seed
from ..model.params import (
    FactorParams,
    UserGaps,
    cutpoint_centres,
    gap_log_density,
    item_additive_matrix,
    item_tag_vocabulary,
    level_bounds,
    linear_predictor,
    log_gap_offsets,
    log_interval_probability,
    ordinal_expected_rating,
    pair_bounds,
    rating_grid,
    rating_levels,
    sum_log_interval_probability,
    tag_bias_matrix,
    truncated_normal,
    user_additive_matrix,
    user_cutpoints,
    user_tag_vocabulary,
    user_threshold_log_density,
)
from ..model.synthetic import wishart_draw
from ..result.result import PMFResult, posterior_result
from .implicit import ImplicitFeedback, implicit_bases_bytes
from .linalg import (
    BATCH_LAST_MAX_WIDTH,
    WhitenedDesign,
    prepare_design,
    sample_rows,
    sample_short_rows,
)
from .parallel import (
    DEFAULT_BLOCK_ROWS,
    Executor,
    Prepared,
    Targets,
    map_row_blocks,
    rating_rows,
    resolve,
    row_sums,
    shared_empty,
    single_threaded_blas,
    sweep_progress,
)
from .ridge import checked_spec, minimise, observed_sum_without_mu

# Overrelaxation of every Gaussian and Gamma conditional (see ``overrelaxed``). Measured
# on MovieLens, 4 chains x 1,000 draws, 2 seeds: median bulk ESS of the monitored
# predictions 2,500-3,100 at 0, 5,700-6,300 at -0.7 to -0.9; at -0.95 sigma stalls
# (ESS 25), as overrelaxation nearly conserves the posterior density, which sigma tracks.
DEFAULT_OVERRELAX = -0.8


@dataclass
class _SideHyper:
    """Prior of one side's stacked rows [factors, bias]: mean and precision."""

    factor_mean: np.ndarray  # (d,)
    factor_precision: np.ndarray  # (d, d)
    bias_precision: float

    def blocks(self, d: int, biases: bool) -> tuple[np.ndarray, np.ndarray]:
        p = d + biases
        precision = np.zeros((p, p))
        precision[:d, :d] = self.factor_precision
        if biases:
            precision[d, d] = self.bias_precision
        mean = np.r_[self.factor_mean, [0.0] * biases]
        return precision, mean

    @property
    def factor_scale(self) -> float:
        """sqrt(trace(Lambda^-1)/d): the prior sd of a factor entry, rotation-invariant."""
        d = len(self.factor_mean)
        return float(np.sqrt(np.trace(np.linalg.inv(self.factor_precision)) / d)) if d else 0.0


# When p = d (+ 1 for the bias) exceeds BATCH_LAST_MAX_WIDTH, rows with fewer ratings
# than this fraction of p are drawn by sample_short_rows. Measured on MovieLens, one
# chain (items: median 3 ratings): d = 32, 10.2 sweeps/s with none, 18.0 below p/2,
# 20.3 below p, 16.1 below 1.5 p. At d = 10 the batch-last dense draw of every row is
# faster: 45.9 sweeps/s against 40.4 with short rows apart (one chain), and 81-86
# against 70-75 for 4 chains in 2 processes.
SHORT_ROW_FRACTION = 1.0


def _sample_block(block, *, short, noise, rating_noise, previous, prepared, whitened,
                  precision, prior_mean, tau, overrelax) -> np.ndarray:
    """sample_rows for a block's long rows, sample_short_rows for its ``short`` ones
    (``short``, ``noise``, ``previous``: the block's rows; ``rating_noise``: its short
    rows' ratings, row after row). The last column is each row's squared error after its draw, sum_j
    (t_ij - w_i.x_j)^2: summed where the block is, so the client adds one number per
    row instead of passing over every rating."""
    p = len(prior_mean)
    previous = previous if overrelax else None
    if not short.any():
        out = sample_rows(block, prepared, precision, prior_mean, tau, noise, previous,
                          overrelax)
        out[:, -1] += _row_squares(block)
        return out
    out = np.empty((block.shape[0], p + 1))
    long_rows = np.flatnonzero(~short)
    if len(long_rows):
        out[long_rows] = sample_rows(block[long_rows], prepared, precision, prior_mean, tau,
                                     noise[long_rows],
                                     previous[long_rows] if overrelax else None, overrelax)
    short_rows = np.flatnonzero(short)
    short_block = block[short_rows]  # its data in the order of rating_noise
    out[short_rows] = sample_short_rows(short_block, whitened, tau, noise[short_rows],
                                        rating_noise,
                                        previous[short_rows] if overrelax else None,
                                        overrelax)
    out[:, -1] += _row_squares(block)
    return out


def _row_squares(block) -> np.ndarray:
    """Each row's sum of its squared targets: with the row's change, its squared error."""
    return row_sums(block, block.data * block.data)


def _sample_side(matrix, targets: Targets, other, hyper: _SideHyper, d, biases, tau,
                 rng, block_rows, executor: Executor, previous=None,
                 overrelax: float = 0.0, squared_error: bool = True
                 ) -> tuple[np.ndarray, float | None]:
    """Draw every row of one side on the data ``targets`` (a recipe); return the draws
    and, if asked, the sum of squared residuals sum (t_ij - w_i.x_j)^2 over the side's
    ratings after the draw."""
    # in this process the targets are computed once, here; a remote executor computes
    # each block's where the block is
    design = np.hstack([other, np.ones((len(other), 1))]) if biases else other
    if design.shape[1] == 0:
        values = targets.full(matrix)
        return np.zeros((matrix.shape[0], 0)), float(values @ values)
    precision, prior_mean = hyper.blocks(d, biases)
    p = design.shape[1]
    short = np.diff(matrix.indptr) < (SHORT_ROW_FRACTION * p if p > BATCH_LAST_MAX_WIDTH
                                      else 0)
    whitened = (Prepared(WhitenedDesign.build, (design, precision, prior_mean))
                if short.any() else None)
    # All noise drawn up front: the draws depend neither on how the rows are cut into
    # blocks nor on which thread runs which block. Short rows also take one normal per
    # rating (drawing them for every rating cost 2 ms of a 25 ms MovieLens sweep), kept
    # for their ratings only, row after row: the bytes a block is sent are its short
    # rows' ratings', not one per rating of the block.
    noise = rng.standard_normal((matrix.shape[0], p))
    offsets = np.concatenate([[0], np.cumsum(np.where(short, np.diff(matrix.indptr), 0))])
    rating_noise = rng.standard_normal(int(offsets[-1]))
    def run(data) -> np.ndarray:
        return map_row_blocks(
            matrix, data, _sample_block, p + 1, block_rows, executor,
            shared={"prepared": Prepared(prepare_design, (design,)), "whitened": whitened,
                    "precision": precision, "prior_mean": prior_mean, "tau": tau,
                    "overrelax": overrelax},
            per_row={"short": short, "noise": noise,
                     "previous": previous if overrelax else None},
            per_entry={"rating_noise": (rating_noise, offsets) if short.any() else None})

    solved = run(targets if getattr(executor, "remote", False) else targets.full(matrix))
    error = float(solved[:, -1].sum()) if squared_error else None
    return solved[:, :-1], error


# -- the joint density the sampler targets -------------------------------------------------

def _gamma_log_density(value, shape: float, rate: float) -> float:
    value = np.asarray(value, dtype=float)
    return float(np.sum((shape - 1.0) * np.log(value) - rate * value))


def _factor_prior_log_density(factors: np.ndarray, precision, mean, prior: str) -> float:
    """log N(U_i | mean, Lambda^-1) summed over rows, with Lambda given natively: a
    scalar (spherical), a vector (diagonal) or a matrix (Wishart families)."""
    n, d = factors.shape
    centred = factors - (0.0 if mean is None else mean)
    if prior in ("spherical", "diagonal", "fixed"):
        lam = np.broadcast_to(np.asarray(precision, dtype=float), (d,))
        return float(0.5 * n * np.sum(np.log(lam)) - 0.5 * np.sum(centred**2 * lam))
    return float(0.5 * n * np.linalg.slogdet(precision)[1]
                 - 0.5 * np.sum((centred @ precision) * centred))


def joint_log_density(train, spec, state: dict) -> float:
    """log p(ratings, parameters) up to a constant, for the model the sampler targets:
    the likelihood, every prior of ``spec`` and the hyperpriors, at ``state``:

    ``U``, ``V``, ``mu``, ``user_bias``, ``item_bias`` (as the model has them), ``sigma``;
    for hierarchical priors ``user_precision`` / ``item_precision`` in the family's own
    form (scalar "spherical", vector "diagonal", d x d matrix "wishart" and
    "normal-wishart"), ``user_mean`` / ``item_mean`` ("normal-wishart") and
    ``user_bias_precision`` / ``item_bias_precision``; for the ordinal likelihood
    ``cutpoints`` (all K - 1, the first at its fixed midpoint) and, with per-user
    thresholds, ``user_cutpoints`` (users x K-1; a density of the users' cut points, not
    of their log gap offsets) and, for hierarchical priors, ``threshold_precision``
    (1/tau^2). Constrained PMF takes
    ``Y`` and ``W`` in place of ``U`` (U = Y + M W) and, for hierarchical priors,
    ``implicit_precision`` (W's, in the family's form); implicit item feedback ``X`` and
    ``Z`` in place of ``V`` (V = X + M' Z) and ``implicit_item_precision``. With tag
    biases, ``user_tag_bias`` / ``item_tag_bias`` (beta; the biases are the effective
    ones, their prior mean H beta / G beta).

    The conditionals the sampler draws from are this density's (tests compare it with
    the PyMC twin's ``logp`` at random points of every family)."""
    spec = checked_spec(spec, "joint_log_density")
    d = spec.n_factors
    if spec.user_additive:
        user_factors = np.asarray(state["Y"]) + user_additive_matrix(train, spec) @ (
            _user_additive_rows(spec, state))
    else:
        user_factors = np.asarray(state["U"]) if d else np.zeros((train.n_users, 0))
    if spec.item_additive:
        item_factors = np.asarray(state["X"]) + item_additive_matrix(train, spec) @ (
            _item_additive_rows(spec, state))
    else:
        item_factors = np.asarray(state["V"]) if d else np.zeros((train.n_items, 0))
    params = FactorParams(
        user_factors,
        item_factors,
        float(state["mu"]) if spec.global_mean else 0.0,
        np.asarray(state["user_bias"]) if spec.biases else None,
        np.asarray(state["item_bias"]) if spec.biases else None)
    sigma = float(state["sigma"]) if spec.noise == "learned" else spec.sigma
    tau = 1.0 / sigma**2
    eta = params.linear_predictor(train.user_idx, train.item_idx)
    if spec.ordinal:
        grid = rating_grid(train.scale)
        cutpoints = np.asarray(state["cutpoints"], dtype=float)
        centres = cutpoint_centres(grid)
        if cutpoints[0] != centres[0] or np.any(np.diff(cutpoints) <= 0):
            return -np.inf
        levels = rating_levels(train.rating, grid)
        if spec.user_thresholds:  # the users' cut points, given the global ones
            user_cut = np.asarray(state["user_cutpoints"], dtype=float)
            if np.any(user_cut[:, 0] != centres[0]) or np.any(np.diff(user_cut) <= 0):
                return -np.inf
            lower, upper = pair_bounds(user_cut[train.user_idx], levels)
            if spec.learned_thresholds:  # 1/tau^2 ~ Gamma(threshold_prior)
                spread = float(state["threshold_precision"])
                total = _gamma_log_density(spread, *spec.threshold_prior)
                total += user_threshold_log_density(user_cut, cutpoints, spread**-0.5)
            else:
                total = user_threshold_log_density(user_cut, cutpoints, spec.threshold_sd)
        else:
            lower, upper = level_bounds(cutpoints, levels)
            total = 0.0
        total += float(np.sum(log_interval_probability(lower, upper, eta, sigma,
                                                       spec.ordinal_link)))
        total -= 0.5 * float(np.sum((cutpoints[1:] - centres[1:]) ** 2)) / spec.cutpoint_sd**2
    else:
        resid = train.rating - eta
        total = 0.5 * train.n_ratings * np.log(tau) - 0.5 * tau * float(resid @ resid)
    if spec.noise == "learned":
        total += _gamma_log_density(tau, *spec.noise_prior)
    if spec.global_mean and spec.mu_prior is not None:
        m0, s0 = spec.mu_prior
        total += -0.5 * (params.mu - m0) ** 2 / s0**2
    a0, b0 = spec.gamma_prior
    if spec.user_additive:  # W's rows and the users' tags' Psi's, under one prior
        total += _implicit_prior_log_density(spec, _user_additive_rows(spec, state),
                                             state.get("implicit_precision"))
    if spec.item_additive:  # Z's rows and the tags' Phi's, under one prior
        total += _implicit_prior_log_density(spec, _item_additive_rows(spec, state),
                                             state.get("implicit_item_precision"))
    sides = (("user", np.asarray(state["Y"]) if spec.user_additive else params.user_factors,
              params.user_bias, spec.sigma_u, spec.sigma_user_bias),
             ("item", np.asarray(state["X"]) if spec.item_additive else params.item_factors,
              params.item_bias, spec.sigma_v,
              spec.sigma_item_bias))
    for side, factors, bias, fixed_scale, fixed_bias_scale in sides:
        tags = tag_bias_matrix(train, spec, side)
        if tags is not None:  # b ~ N(T beta, .), beta ~ N(0, sigma_tag_bias^2 I)
            beta = np.asarray(state[f"{side}_tag_bias"], dtype=float)
            bias = bias - tags @ beta
            total -= 0.5 * float(beta @ beta) / spec.sigma_tag_bias**2
        if spec.prior == "fixed":
            precision, mean, bias_precision = 1.0 / fixed_scale**2, None, 1.0 / fixed_bias_scale**2
        else:
            precision, bias_precision = state[f"{side}_precision"], state[f"{side}_bias_precision"]
            mean = state.get(f"{side}_mean") if spec.prior == "normal-wishart" else None
            if spec.biases:
                total += _gamma_log_density(bias_precision, a0, b0)
            total += _precision_log_hyperprior(precision, spec)
            if spec.prior == "normal-wishart":  # mu_U ~ N(0, (beta0 Lambda)^-1)
                beta0 = spec.nw_beta0
                total += (0.5 * np.linalg.slogdet(beta0 * np.asarray(precision))[1]
                          - 0.5 * beta0 * float(mean @ precision @ mean))
        if d:
            total += _factor_prior_log_density(factors, precision, mean, spec.prior)
        if spec.biases:
            total += 0.5 * len(bias) * np.log(bias_precision) - 0.5 * bias_precision * float(
                bias @ bias)
    return float(total)


def _user_additive_rows(spec, state: dict) -> np.ndarray:
    """[W; Psi]: the rows of the user side's additive block, as
    :func:`~bayes_pmf.model.params.user_additive_matrix` orders its columns."""
    parts = [np.asarray(state[name], dtype=float) for name, on in (
        ("W", spec.constrained), ("Psi", spec.user_features is not None)) if on]
    return np.vstack(parts)


def _item_additive_rows(spec, state: dict) -> np.ndarray:
    """[Z; Phi]: the rows of the item side's additive block, as
    :func:`~bayes_pmf.model.params.item_additive_matrix` orders its columns."""
    parts = [np.asarray(state[name], dtype=float) for name, on in (
        ("Z", spec.implicit_items), ("Phi", spec.item_features is not None)) if on]
    return np.vstack(parts)


def _precision_log_hyperprior(precision, spec) -> float:
    """log density of a factor precision under the family's hyperprior: Gamma(a0, b0)
    for "spherical" and "diagonal", Wishart(W0 = I, nu0 = d) otherwise."""
    if spec.prior in ("spherical", "diagonal"):
        return _gamma_log_density(precision, *spec.gamma_prior)
    # Wishart(W0 = I, nu0 = d): |L|^((nu0 - d - 1)/2) exp(-tr(L)/2)
    return float(-0.5 * np.linalg.slogdet(precision)[1] - 0.5 * np.trace(precision))


def _implicit_prior_log_density(spec, W: np.ndarray, precision) -> float:
    """log p(W) (+ its precision's hyperprior): W_k ~ N(0, sigma_w^2 I) under fixed
    priors, else N(0, Lambda_W^-1) with Lambda_W from the family, zero-mean."""
    if spec.prior == "fixed":
        return _factor_prior_log_density(W, 1.0 / spec.sigma_w**2, None, "fixed")
    family = "wishart" if spec.prior == "normal-wishart" else spec.prior
    return (_precision_log_hyperprior(precision, spec)
            + _factor_prior_log_density(W, precision, None, family))


def _sample_wishart_zero_mean(factors: np.ndarray, rng, config=None
                              ) -> tuple[np.ndarray, np.ndarray]:
    """Lambda | U ~ Wishart(nu0 + n, (W0^-1 + U^T U)^-1) with the factor mean fixed at 0."""
    n, d = factors.shape
    return np.zeros(d), wishart_draw(d + n, np.eye(d) + factors.T @ factors, rng)


def _sample_normal_wishart(factors: np.ndarray, rng, config) -> tuple[np.ndarray, np.ndarray]:
    n, d = factors.shape
    mean = factors.mean(axis=0)
    centred = factors - mean
    scatter = centred.T @ centred
    beta_n = config.nw_beta0 + n
    mu_n = n * mean / beta_n  # mu0 = 0
    w_inv = np.eye(d) + scatter + (config.nw_beta0 * n / beta_n) * np.outer(mean, mean)
    precision = wishart_draw(d + n, w_inv, rng)
    cov = np.linalg.inv(beta_n * precision)
    factor_mean = rng.multivariate_normal(mu_n, 0.5 * (cov + cov.T))
    return factor_mean, precision


def _sample_spherical(factors: np.ndarray, rng, config) -> tuple[np.ndarray, np.ndarray]:
    """lambda | U ~ Gamma(a0 + n d / 2, b0 + |U|_F^2 / 2); Lambda_U = lambda I."""
    n, d = factors.shape
    a0, b0 = config.gamma_prior
    rate = b0 + 0.5 * float(np.sum(factors**2))
    return np.zeros(d), np.eye(d) * rng.gamma(a0 + 0.5 * n * d, 1.0 / rate)


def _sample_diagonal(factors: np.ndarray, rng, config) -> tuple[np.ndarray, np.ndarray]:
    """lambda_k | U ~ Gamma(a0 + n / 2, b0 + sum_i U_ik^2 / 2); Lambda_U = diag(lambda)."""
    n, d = factors.shape
    a0, b0 = config.gamma_prior
    rates = b0 + 0.5 * np.sum(factors**2, axis=0)
    return np.zeros(d), np.diag(rng.gamma(a0 + 0.5 * n, 1.0 / rates))


def _collapsed_wishart_log_density(grams_up, grams_down, log_det, rows_up, rows_down
                                   ) -> float:
    """log p(U A, V A^-T) + log |Jacobian| for the zero-mean Wishart model with every
    precision integrated out (each factor matrix is then matrix-t: p(U) is proportional
    to |I + U^T U|^-(nu0 + n)/2, nu0 = d), as a function of the Gram matrices of the
    matrices moved by A (U; and W in constrained PMF) and by A^-T (V; and Z with
    implicit item feedback), their row counts and log|det A|."""
    d = len(grams_up[0])
    total = (sum(rows_up) - sum(rows_down)) * log_det
    # one stacked call: numpy factors each matrix of a stack as it would alone (same
    # numbers), and a call's overhead is most of a d = 2 move's time
    log_dets = np.linalg.slogdet(np.eye(d) + np.array(grams_up + grams_down))[1]
    for log_det_k, rows in zip(log_dets, rows_up + rows_down):
        total -= 0.5 * (d + rows) * log_det_k
    return float(total)


def _cayley_step(step_size: float, eye: np.ndarray, rng):
    """One proposal of the matrix Metropolis moves (``_balance_moves``, ``_ridge_moves``):
    the Cayley transform g = (I - X)^-1 (I + X) of X = step_size Z / 2 (Z standard normal
    entries), its inverse (the transform of -X, as likely) and log|det g|."""
    half = 0.5 * step_size * rng.standard_normal(eye.shape)
    plus, minus = eye + half, eye - half
    # stacked calls, each matrix solved and factored as alone (see above)
    step, inverse = np.linalg.solve(np.array([minus, plus]), np.array([plus, minus]))
    log_dets = np.linalg.slogdet(np.array([plus, minus]))[1]
    return step, inverse, log_dets[0] - log_dets[1]


def _balance_moves(ups: list, downs: list, rng, steps: int, step_size: float):
    """Metropolis moves (U, V) -> (U A, V A^-T) over invertible d x d matrices A, which
    leave every prediction unchanged; for the zero-mean Wishart model, with Lambda_U and
    Lambda_V integrated out (they are drawn afresh from their conditionals next).

    Each proposal multiplies A by the Cayley transform g = (I - X)^-1 (I + X) of a random
    X = step_size Z / 2 (Z standard normal entries): g^-1 is the transform of -X, which
    is as likely, so the move is a Metropolis step over the group (Liu & Sabatti 2000)
    accepted with the ratio of p(gx) |J_g(x)|, |J_g| = |det g|^(n - m). The single scale
    move cannot turn one latent direction's balance against another's; without this
    their balance wandered with autocorrelation times of 1,000-1,500 sweeps on MovieLens.

    ``ups`` are the matrices moved by A: [U], or [Y, W] in constrained PMF (U = Y + M W);
    ``downs`` those moved by A^-T: [V], or [X, Z] with implicit item feedback; each with
    its own Wishart precision integrated out. Returns the moved lists and the fraction of
    proposals accepted."""
    d = ups[0].shape[1]
    eye = np.eye(d)
    rows_up, rows_down = [len(x) for x in ups], [len(x) for x in downs]
    grams_up, grams_down = [x.T @ x for x in ups], [x.T @ x for x in downs]
    moved, moved_inverse, log_det = eye, eye, 0.0
    current = _collapsed_wishart_log_density(grams_up, grams_down, 0.0, rows_up, rows_down)
    accepted = 0
    for _ in range(steps):
        step, step_inverse, step_log_det = _cayley_step(step_size, eye, rng)
        proposed_up = [step.T @ gram @ step for gram in grams_up]
        proposed_down = [step_inverse @ gram @ step_inverse.T for gram in grams_down]
        proposal = _collapsed_wishart_log_density(proposed_up, proposed_down,
                                                  log_det + step_log_det, rows_up, rows_down)
        if np.log(rng.uniform()) < proposal - current:
            grams_up, grams_down, current = proposed_up, proposed_down, proposal
            moved, moved_inverse = moved @ step, step_inverse @ moved_inverse
            log_det += step_log_det
            accepted += 1
    if not accepted:
        return ups, downs, 0.0
    return ([x @ moved for x in ups], [x @ moved_inverse.T for x in downs],
            accepted / steps)


def _ridge_moves(effective: np.ndarray, offsets: np.ndarray, factors: np.ndarray, rng,
                 steps: int, step_size: float):
    """Metropolis moves along implicit feedback's ridge, for the zero-mean Wishart model:
    (Y, C) -> (U - (M B) C A, C A) over invertible d x d matrices A, the effective
    factors U = Y + (M B) C held fixed (so every prediction is unchanged), with Lambda_U
    and Lambda_W integrated out (they are drawn afresh from their conditionals next).

    The ratings pin U only: how much of it is the user's own Y and how much the implicit
    part M W is left to the two priors, whose precisions in turn follow Y and W. Gibbs
    (W given U, then the precisions) walks that funnel slowly: with the ordinal
    likelihood, autocorrelation times of predicted ratings up to 2,700 sweeps on small
    problems. The map (Y, C) -> (Y + (M B) C (I - A), C A) has Jacobian |det A|^r (r the
    rows of C), and the target is the product of the two matrix-t densities (see
    ``_collapsed_wishart_log_density``); proposals are Cayley steps as in
    ``_balance_moves``. Everything is a d x d product of the Gram matrices of U and
    O = (M B) C, so a step costs O(d^3). ``effective``: U (n x d); ``offsets``: O;
    ``factors``: C. Returns A (None when nothing was accepted) and the fraction of
    proposals accepted."""
    d = effective.shape[1]
    eye = np.eye(d)
    rows = [len(effective), len(factors)]
    uu, uo, oo = effective.T @ effective, effective.T @ offsets, offsets.T @ offsets
    cc = factors.T @ factors

    def log_density(A: np.ndarray, log_det: float) -> float:
        cross = uo @ A
        own = uu - cross - cross.T + A.T @ oo @ A
        return _collapsed_wishart_log_density([own, A.T @ cc @ A], [], 0.0, rows, []) \
            + rows[1] * log_det

    moved, log_det = eye, 0.0
    current = log_density(moved, log_det)
    accepted = 0
    for _ in range(steps):
        step, _, step_log_det = _cayley_step(step_size, eye, rng)
        proposal = log_density(moved @ step, log_det + step_log_det)
        if np.log(rng.uniform()) < proposal - current:
            moved, log_det, current = moved @ step, log_det + step_log_det, proposal
            accepted += 1
    return (moved if accepted else None), accepted / steps


def _sample_scale(ups: list, downs: list, rng) -> float:
    """Draw c for the move (U, V) -> (cU, V/c), which leaves every prediction unchanged.

    A generalised Gibbs step (Liu & Sabatti 2000) over the multiplicative group: c has
    density pi(cU, V/c) |J_c| dc/c with |J_c| = c^(nd - md); with zero-mean Gaussian
    priors, s = c^2 is Generalised Inverse Gaussian GIG(p = (n - m) d / 2,
    a = tr(Lambda_U U^T U), b = tr(Lambda_V V^T V)). The likelihood cannot see this
    direction, so without the move the chains creep along it (slow sigma_u, sigma_v
    and, through them, slow everything the priors touch).

    ``ups``: [(U, Lambda_U)] (constrained PMF: [(Y, Lambda_U), (W, Lambda_W)]), scaled by
    c; ``downs``: [(V, Lambda_V)] (implicit item feedback: [(X, Lambda_V), (Z, Lambda_Z)]),
    scaled by 1/c: each adds its rows to n (m) and its quadratic form to a (b)."""
    d = ups[0][0].shape[1]
    n, m = sum(len(x) for x, _ in ups), sum(len(x) for x, _ in downs)
    a = sum(float(np.sum((x @ precision) * x)) for x, precision in ups)
    b = sum(float(np.sum((x @ precision) * x)) for x, precision in downs)
    if not (a > 0 and b > 0):
        return 1.0
    s = stats.geninvgauss.rvs(0.5 * (n - m) * d, np.sqrt(a * b), random_state=rng) \
        * np.sqrt(b / a)
    return float(np.sqrt(s))


def overrelaxed(mean, current, standard_draw, overrelax: float):
    """Adler's (1981) overrelaxed update of a Gaussian conditional N(mean, C) from its
    ``current`` value: mean + a (current - mean) + sqrt(1 - a^2) standard_draw, where
    ``standard_draw`` ~ N(0, C). For a in (-1, 0] it is reversible with respect to the
    conditional, so it can stand in for a Gibbs draw; a = 0 is the plain draw. Negative a
    carries the chain past the mean instead of back to it, which shortens the random walk
    of quantities that Gibbs moves in small correlated steps."""
    return mean + overrelax * (current - mean) + np.sqrt(1.0 - overrelax**2) * standard_draw


def overrelaxed_gamma(shape: float, rate: float, current: float, overrelax: float,
                      rng) -> float:
    """The overrelaxed update of a Gamma(shape, rate) conditional: Adler's update in the
    normal scores x = Phi^-1(F(current)) (F the Gamma cdf), mapped back through F^-1.
    A fixed monotone map of a reversible kernel is reversible, so this stands in for a
    Gibbs draw. A current value too far in the tail for finite scores gets a plain draw."""
    if not overrelax:
        return float(rng.gamma(shape, 1.0 / rate))
    score = stats.norm.ppf(special.gammainc(shape, rate * current))
    if not np.isfinite(score):
        return float(rng.gamma(shape, 1.0 / rate))
    moved = overrelaxed(0.0, score, rng.standard_normal(), overrelax)
    value = special.gammaincinv(shape, stats.norm.cdf(moved)) / rate
    return float(value) if np.isfinite(value) and value > 0 else float(rng.gamma(shape, 1 / rate))


def _shift_draw(precision: np.ndarray, linear: np.ndarray, rng,
                overrelax: float = 0.0) -> np.ndarray:
    """A draw along a translation whose conditional is N(precision^-1 linear,
    precision^-1), the current point being the shift 0 (overrelaxed about it if asked)."""
    chol = np.linalg.cholesky(precision)
    mean = np.linalg.solve(precision, linear)
    return overrelaxed(mean, 0.0, np.linalg.solve(chol.T, rng.standard_normal(len(linear))),
                       overrelax)


def _bias_scale_move(bias: np.ndarray, precision: float, residual: np.ndarray,
                     index: np.ndarray, tau: float, gamma_prior: tuple[float, float],
                     step: float, rng) -> tuple[np.ndarray, float, float, bool]:
    """A Metropolis move (c, tau_c) -> (s c, tau_c / s^2), log s ~ N(0, step^2), over one
    side's biases and their precision (tau_c ~ Gamma(a0, b0), c_j ~ N(0, 1/tau_c)).

    The move leaves c_j^2 tau_c, the prior of c given tau_c up to its normaliser, and
    carries its Jacobian s^(m - 2); with the Gamma hyperprior the log prior ratio is
    -2 a0 log s - b0 tau_c (s^-2 - 1). The likelihood sees the change (s - 1) c_j of
    every rating's prediction: with ``residual`` the current residuals of the (latent)
    ratings and ``index`` their bias index, the sum of squares changes by
    (s - 1)^2 sum_j n_j c_j^2 - 2 (s - 1) sum_j c_j R_j. Plain Gibbs moves tau_c given c
    and c given tau_c; when most c_j are barely seen by the data (items rated once or
    twice), each pins the other and tau_c crawls (the hierarchical funnel: with implicit
    item feedback sigma_item_bias had an ESS of 35 of 4,000 draws on MovieLens).
    Returns the biases, precision, change of the sum of squares and whether accepted."""
    a0, b0 = gamma_prior
    s = float(np.exp(step * rng.standard_normal()))
    log_u = np.log(rng.random())
    counts = np.bincount(index, minlength=len(bias))
    sums = np.bincount(index, weights=residual, minlength=len(bias))
    change = (s - 1.0) ** 2 * float(counts @ bias**2) - 2.0 * (s - 1.0) * float(bias @ sums)
    log_ratio = -0.5 * tau * change - 2.0 * a0 * np.log(s) - b0 * precision * (s**-2 - 1.0)
    if log_u < log_ratio:
        return s * bias, precision / s**2, change, True
    return bias, precision, 0.0, False


def _mu_prior_terms(spec) -> tuple[float, float]:
    """(precision, mean) of mu's prior: (0, 0) for the flat prior."""
    if spec.mu_prior is None:
        return 0.0, 0.0
    m0, s0 = spec.mu_prior
    return 1.0 / s0**2, m0


def _mu_shift(bias: np.ndarray, count: int, bias_precision: float, mu: float,
              mu_prior: tuple[float, float], rng, overrelax: float) -> float:
    """The draw e of the move (mu + e, bias - e) (see ``_shift_moves``)."""
    prior_precision, prior_mean = mu_prior
    precision = count * bias_precision + prior_precision
    centre = bias.mean() if not prior_precision else (
        (bias_precision * bias.sum() + prior_precision * (prior_mean - mu)) / precision)
    return overrelaxed(centre, 0.0, rng.standard_normal() / np.sqrt(precision), overrelax)


def _shift_moves(U, V, b, c, mu, user_hyper: _SideHyper, item_hyper: _SideHyper,
                 global_mean: bool, rng, overrelax: float = 0.0,
                 mu_prior: tuple[float, float] = (0.0, 0.0), offsets=None,
                 item_offsets=None):
    """Exact draws along the translations that leave every prediction mu + b_i + c_j +
    U_i.V_j unchanged (generalised Gibbs over additive groups, whose Jacobian is 1):

    * (U_i + a, c_j - a.V_j): a ~ N(A^-1 g, A^-1), A = n Lambda_U + tau_c V^T V,
      g = -Lambda_U sum_i (U_i - mu_U) + tau_c V^T c; likewise (V_j + a', b_i - a'.U_i);
    * with a global mean: (mu + e, b_i - e), e ~ N(E^-1 (tau_b sum_i b_i + p0 (m0 - mu)),
      E^-1), E = n tau_b + p0, with mu's prior N(m0, 1/p0) (``mu_prior`` = (p0, m0);
      p0 = 0: the flat prior, e ~ N(mean(b), 1/(n tau_b))); likewise for c.

    Plain Gibbs moves along these only in steps as small as the conditionals are
    narrow: on MovieLens mu's ESS was 10 of 1,600 draws and a heavy user's bias 26.

    In constrained PMF pass Y as ``U`` (its prior is the user prior) and ``offsets`` =
    M W: the second move's b_i - a'.U_i then uses the effective U_i = Y_i + (M W)_i;
    likewise with implicit item feedback X as ``V`` and ``item_offsets`` = M' Z."""
    n, d = U.shape
    m = V.shape[0]
    if d:
        lam_u, tau_c = user_hyper.factor_precision, item_hyper.bias_precision
        seen = V if item_offsets is None else V + item_offsets
        a = _shift_draw(n * lam_u + tau_c * seen.T @ seen,
                        -lam_u @ (U - user_hyper.factor_mean).sum(axis=0) + tau_c * seen.T @ c,
                        rng, overrelax)
        U, c = U + a, c - seen @ a
        effective = U if offsets is None else U + offsets
        lam_v, tau_b = item_hyper.factor_precision, user_hyper.bias_precision
        a = _shift_draw(m * lam_v + tau_b * effective.T @ effective,
                        -lam_v @ (V - item_hyper.factor_mean).sum(axis=0)
                        + tau_b * effective.T @ b, rng, overrelax)
        V, b = V + a, b - effective @ a
    if global_mean:
        shift = _mu_shift(b, n, user_hyper.bias_precision, mu, mu_prior, rng, overrelax)
        b, mu = b - shift, mu + shift
        shift = _mu_shift(c, m, item_hyper.bias_precision, mu, mu_prior, rng, overrelax)
        c, mu = c - shift, mu + shift
    return U, V, b, c, float(mu)


# Metropolis updates of each ordinal cut point per sweep (each one reads only the ratings
# on the two levels the cut point separates). Measured on MovieLens (2 chains x 200
# draws, with the scale move): 3 rounds gave a min cut-point ESS of 50 at 8.7 sweeps/s,
# 1 round 44 at 11.0 (the Gaussian sampler: 18.7): the stretch move sets the pace.
CUTPOINT_ROUNDS = 1


class _OrdinalLatent:
    """The ordinal likelihood's part of a sweep (``likelihood="ordinal"``): the cut points
    and the latent ratings z (Albert & Chib 1993), so that the rest of the sweep is the
    Gaussian sampler's on z with the fixed sigma.

    Each sweep, given eta = mu + b_i + c_j + U_i.V_j of every training rating:

    * every free cut point theta_k gets ``CUTPOINT_ROUNDS`` random-walk Metropolis
      updates of its density with z integrated out (Cowles 1996's collapsed idea: the
      likelihood is prod P(theta_{k-1} < z <= theta_k), so theta_k is not pinned between
      the z's of its two levels, which is what makes plain Gibbs on theta crawl), touching
      only the ratings of the two levels it separates; the step adapts during burn-in
      (towards 44 % accepted) and is then held;
    * one Metropolis move (mu + e, theta_2.. + e), also with z integrated out: the
      direction along which only the first (fixed) cut point tells mu from the others;
      it changes the likelihood of the two lowest levels only;
    * one Metropolis move stretching the latent means and the cut points together
      (``_scale_move``), also with z integrated out;
    * then z ~ N(eta, sigma^2) truncated to its rating's interval, all at once.

    The two collapsed moves target p(theta, mu | factors), and z is drawn afresh from
    p(z | theta, mu, factors) after them: together a valid update of (theta, mu, z)."""

    def __init__(self, train, spec, tune: int, rows: np.ndarray):
        self.grid = rating_grid(train.scale)
        self.centres = cutpoint_centres(self.grid)
        self.sd = spec.cutpoint_sd
        self.biases = spec.biases
        self.sigma = spec.sigma
        by_user = train.by_user
        self.level = rating_levels(by_user.data, self.grid)
        # every rating's user: the chain's own index (8 bytes a rating, held once a chain)
        self.rows = rows
        self.cols = by_user.indices
        positions = sp.csr_matrix((np.arange(1, by_user.nnz + 1, dtype=float),
                                   by_user.indices, by_user.indptr), shape=by_user.shape)
        self.to_item_order = positions.T.tocsr().data.astype(np.int64) - 1
        self.by_level = [np.flatnonzero(self.level == k) for k in range(len(self.grid))]
        self.cutpoints = self.centres.copy()
        self.steps = np.full(len(self.centres), 0.02)
        self.shift_step = 0.02
        self.scale_step = 0.01
        self.tune = tune
        # the sweeps' matrices of z: the ratings' sparsity shared, not copied (their data
        # arrays are replaced by each draw of z, never written in place)
        self.by_user, self.by_item = (
            sp.csr_matrix((matrix.data, matrix.indices, matrix.indptr), shape=matrix.shape,
                          copy=False) for matrix in (by_user, train.by_item))
        self.users = (_UserThresholds(self, spec, by_user.shape[0])
                      if spec.user_thresholds else None)

    def _level_log_likelihood(self, k: int, cutpoints, eta_k: np.ndarray) -> float:
        """log P(ratings of level k | eta), the level's interval read off ``cutpoints``
        (the global K - 1, or every user's: users x K-1)."""
        if np.ndim(cutpoints) == 2:
            return float(np.sum(self.users.level_terms(k, cutpoints, eta_k)))
        lower = cutpoints[k - 1] if k > 0 else -np.inf
        upper = cutpoints[k] if k < len(cutpoints) else np.inf
        return sum_log_interval_probability(lower, upper, eta_k, self.sigma)

    def _log_prior(self, cutpoints) -> float:
        free = slice(1, None)
        return float(-0.5 * np.sum((cutpoints[free] - self.centres[free]) ** 2) / self.sd**2)

    def _threshold_log_prior(self, cutpoints, user_cut, user_gaps=None) -> float:
        """The global cut points' prior, and the users' given them (per-user thresholds;
        ``user_gaps``: their :class:`UserGaps`, when already read)."""
        total = self._log_prior(cutpoints)
        if user_cut is not None:
            gaps = UserGaps(user_cut) if user_gaps is None else user_gaps
            total += gaps.log_density(cutpoints, self.users.tau)
        return total

    @property
    def likelihood_cutpoints(self) -> np.ndarray:
        """The cut points the ratings see: every user's own, or the global ones."""
        return self.users.cut if self.users else self.cutpoints

    def _adapt(self, step: float, accepted: bool, iteration: int) -> float:
        if iteration >= self.tune:
            return step
        return step * np.exp((float(accepted) - 0.44) / np.sqrt(iteration + 1.0))

    def update(self, state: tuple, hypers: tuple, mu_prior: tuple[float, float], rng,
               iteration: int, user_blocks=None, item_blocks=None,
               regressors: tuple = (None, None)) -> tuple:
        """Move the cut points, mu and the scale, draw z; ``state`` is (U, V, b, c, mu)
        and ``hypers`` the two sides' _SideHyper. ``user_blocks``: the user side's factor
        matrices with their priors, [(matrix, _SideHyper)], when U is not itself the
        parameter (constrained PMF: [(Y, user prior), (W, W's prior)]), ``item_blocks``
        likewise; the scale move then stretches each of them, and ``self.stretch`` says
        by how much (1.0: not). ``regressors``: the two sides' tag bias regressors
        (_TagBias or None), whose beta the caller stretches by ``self.stretch`` too.
        Returns the new state and the sum of z."""
        U, V, b, c, mu = state
        eta = self.eta(U, V, mu, b, c)
        theta = self.cutpoints
        eta_of = [eta[rows] for rows in self.by_level]
        if self.users:
            current = self.users.update(eta_of, rng, iteration)
            theta = self.cutpoints
        else:
            current = [self._level_log_likelihood(k, theta, eta_of[k])
                       for k in range(len(eta_of))]
        for _ in range(0 if self.users else CUTPOINT_ROUNDS):
            for k in range(1, len(theta)):
                proposal = theta.copy()
                proposal[k] += self.steps[k] * rng.standard_normal()
                log_u = np.log(rng.random())
                upper = theta[k + 1] if k + 1 < len(theta) else np.inf
                accepted = bool(theta[k - 1] < proposal[k] < upper)
                if accepted:
                    new = (self._level_log_likelihood(k, proposal, eta_of[k]),
                           self._level_log_likelihood(k + 1, proposal, eta_of[k + 1]))
                    ratio = (sum(new) - current[k] - current[k + 1]
                             + self._log_prior(proposal) - self._log_prior(theta))
                    accepted = log_u < ratio
                if accepted:
                    theta = proposal
                    current[k], current[k + 1] = new
                self.steps[k] = self._adapt(self.steps[k], accepted, iteration)
        # (mu + e, theta_2.. + e): eta - theta is unchanged except at the fixed theta_1
        e = self.shift_step * rng.standard_normal()
        log_u = np.log(rng.random())
        proposal = theta + np.r_[0.0, np.full(len(theta) - 1, e)]
        user_cut = self.users.cut if self.users else None
        moved = None if user_cut is None else user_cut + proposal - theta
        accepted = len(theta) < 2 or proposal[1] > proposal[0]
        if accepted:
            prior_precision, prior_mean = mu_prior
            seen = proposal if moved is None else moved
            ratio = (sum(self._level_log_likelihood(k, seen, eta_of[k] + e)
                         for k in (0, 1)) - current[0] - current[1]
                     + self._threshold_log_prior(proposal, moved)
                     - self._threshold_log_prior(theta, user_cut)
                     - 0.5 * prior_precision * ((mu + e - prior_mean) ** 2
                                                - (mu - prior_mean) ** 2))
            accepted = log_u < ratio
        if accepted:
            theta, mu, eta = proposal, mu + e, eta + e
            if moved is not None:
                self.users.cut = moved
            eta_of = [values + e for values in eta_of]
            current[0], current[1] = (
                self._level_log_likelihood(k, self.likelihood_cutpoints if moved is not None
                                           else theta, eta_of[k]) for k in (0, 1))
        self.shift_step = self._adapt(self.shift_step, accepted, iteration)
        self.cutpoints = theta
        (U, V, b, c, mu), factor = self._scale_move((U, V, b, c, mu), hypers, eta_of,
                                                    sum(current), mu_prior, rng, iteration,
                                                    user_blocks, item_blocks, regressors)
        self.stretch = factor
        if factor != 1.0:
            eta = theta[0] + factor * (eta - theta[0])
        if self.users:
            lower, upper = self.users.bounds(self.rows, self.level)
        else:
            lower, upper = level_bounds(self.cutpoints, self.level)
        z = truncated_normal(eta, lower, upper, self.sigma, rng.random(len(eta)))
        self.by_user.data = z
        self.by_item.data = z[self.to_item_order]
        return (U, V, b, c, mu), float(z.sum())

    def _scale_move(self, state, hypers, eta_of, log_likelihood: float, mu_prior, rng,
                    iteration: int, user_blocks=None, item_blocks=None,
                    regressors: tuple = (None, None)):
        """The Metropolis move x -> T_s(x) that stretches every rating's latent mean and
        every free cut point away from the fixed first cut point a by one factor s:
        theta_k -> a + s (theta_k - a), mu -> a + s (mu - a), biases -> s b, factors ->
        sqrt(s) U, sqrt(s) V, so that eta -> a + s (eta - a), with log s ~ N(0, step^2)
        and z integrated out. The likelihood pins the latent scale only through sigma,
        so this direction, which plain updates cross in steps as small as the cut
        points' conditionals, is otherwise the slowest. The acceptance ratio carries the
        Jacobian s^D, D the number of coordinates stretched by s (half for the factors).
        With tag biases their regressors beta stretch by s too (so the own biases do).
        Returns the state and s (1.0 when rejected)."""
        U, V, b, c, mu = state
        user_hyper, item_hyper = hypers
        theta = self.cutpoints
        a = theta[0]
        factor = float(np.exp(self.scale_step * rng.standard_normal()))
        log_u = np.log(rng.random())
        proposal = a + factor * (theta - a)
        user_cut = self.users.cut if self.users else None
        stretched = None if user_cut is None else a + factor * (user_cut - a)
        new_likelihood = sum(
            self._level_log_likelihood(k, proposal if stretched is None else stretched,
                                       a + factor * (values - a))
            for k, values in enumerate(eta_of))
        prior_precision, prior_mean = mu_prior
        new_mu = a + factor * (mu - a)
        ratio = (new_likelihood - log_likelihood
                 + self._threshold_log_prior(proposal, stretched)
                 - self._threshold_log_prior(theta, user_cut)
                 - 0.5 * prior_precision * ((new_mu - prior_mean) ** 2 - (mu - prior_mean) ** 2))
        dimension = len(theta)  # the free cut points and mu
        if user_cut is not None:  # and every user's free cut points
            dimension += user_cut[:, 1:].size
        root = np.sqrt(factor)
        for bias, hyper, regress in ((b, user_hyper, regressors[0]),
                                     (c, item_hyper, regressors[1])):
            dimension += bias.size if self.biases else 0
            own = _own_bias(regress, bias)
            ratio -= 0.5 * hyper.bias_precision * (factor**2 - 1.0) * float(own @ own)
            if regress:
                dimension += regress.beta.size
                ratio -= 0.5 * regress.prior_precision * (factor**2 - 1.0) * float(
                    regress.beta @ regress.beta)
        blocks = (user_blocks or [(U, user_hyper)]) + (item_blocks or [(V, item_hyper)])
        for factors, hyper in blocks:
            dimension += 0.5 * factors.size
            if factors.size:
                for scaled, sign in ((root * factors, -0.5), (factors, 0.5)):
                    centred = scaled - hyper.factor_mean
                    ratio += sign * float(np.sum((centred @ hyper.factor_precision) * centred))
        ratio += dimension * np.log(factor)
        accepted = log_u < ratio
        self.scale_step = self._adapt(self.scale_step, accepted, iteration)
        if not accepted:
            return state, 1.0
        self.cutpoints = proposal
        if stretched is not None:
            self.users.cut = stretched
        return (root * U, root * V, factor * b, factor * c, new_mu), factor

    def eta(self, U, V, mu, b, c) -> np.ndarray:
        """eta of every training rating, in the user-major order."""
        return linear_predictor(self.rows, self.cols, mu, b, c, U, V)

    def expected_rating(self, eta: np.ndarray, users: np.ndarray) -> np.ndarray:
        """E[r] of pairs with these eta and users (row positions; -1: a user the
        training data does not have, who gets the global cut points)."""
        if self.users:
            cut = np.where((users >= 0)[:, None], self.users.cut[np.maximum(users, 0)],
                           self.cutpoints)
            return ordinal_expected_rating(eta[None], cut[None], self.sigma, self.grid)[0]
        return ordinal_expected_rating(eta[None], self.cutpoints, self.sigma, self.grid)[0]


# Per-user thresholds' Metropolis steps: the users' own moves and the joint moves adapt
# towards 44 % accepted during burn-in; the global cut points given the users' get
# PRIOR_ROUNDS cheap updates (they read no ratings).
PRIOR_ROUNDS = 5


class _UserThresholds:
    """Every user's own cut points (``thresholds="user"``), users x K-1 with the first
    column fixed at the global first cut point, and their moves each sweep, given eta:

    * every user's log gap offsets at once by a preconditioned Crank-Nicolson step
      (epsilon' = sqrt(1 - beta^2) epsilon + beta tau xi, one beta per user adapted
      towards 30 % accepted during burn-in), which leaves their prior invariant: the
      acceptance is the likelihood ratio alone, over all the user's ratings;
    * each free cut point of every user at once (a vector of independent random-walk
      Metropolis steps, one per user, z integrated out), touching only the ratings of the
      two levels it separates: the user's likelihood there and the log-normal priors of
      the user's two gaps beside it;
    * the global cut points given the users' (they enter only the users' prior: no
      ratings are read), ``PRIOR_ROUNDS`` random-walk rounds;
    * for each free cut point k, one joint move of the global theta_k and every user's
      cut point k together (its relative position between its neighbours shifted by one
      step on the logit scale; the top one's gap by one step on the log scale), with the
      Jacobian: the direction in which the users' prior holds the global cut points and
      the users' cut points each other fast, and which the first two moves cross in steps
      as small as the global cut points' conditional.

    ``update`` returns each level's log-likelihood under the new cut points."""

    def __init__(self, ordinal: _OrdinalLatent, spec, n_users: int) -> None:
        if len(ordinal.centres) < 3:
            raise ConfigError("thresholds='user' needs a rating grid of at least three "
                              f"levels (two gaps a user can stretch); this one has "
                              f"{len(ordinal.grid)}", setting="thresholds")
        self.ordinal = ordinal
        self.tau = spec.threshold_sd
        self.n_users = n_users
        self.cut = np.tile(ordinal.centres, (n_users, 1))
        self.users_of = [ordinal.rows[rows] for rows in ordinal.by_level]
        width = len(ordinal.centres)
        self.steps = np.full((n_users, width), 0.05)
        self.mixing = np.full(n_users, 0.3)  # each user's pCN step beta
        self.learned = spec.learned_thresholds
        self.hyperprior = spec.threshold_prior
        self.spread_step = 0.05  # the joint stretch of tau and the offsets (log scale)
        self.global_steps = np.full(width, 0.02)
        self.joint_steps = np.full(width, 0.05)

    def level_terms(self, k: int, user_cut: np.ndarray, eta_k: np.ndarray,
                    column=None) -> np.ndarray:
        """log P(each rating of level k | eta) under the users' cut points ``user_cut``
        (``column``: cut point k - 1 or k replaced by these per-user values)."""
        users, width = self.users_of[k], user_cut.shape[1]

        def bound(j):
            if j < 0:
                return -np.inf
            if j >= width:
                return np.inf
            values = column[1] if column is not None and column[0] == j else user_cut[:, j]
            return values[users]
        return log_interval_probability(bound(k - 1), bound(k), eta_k, self.ordinal.sigma)

    def bounds(self, users: np.ndarray, level: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The interval of each rating (its user, its level) under the users' cut points,
        gathered without a ratings x K array."""
        outer = np.full((self.n_users, 1), np.inf)
        edges = np.hstack([-outer, self.cut, outer])
        return edges[users, level], edges[users, level + 1]

    def _sum_by_user(self, k: int, values: np.ndarray) -> np.ndarray:
        return np.bincount(self.users_of[k], weights=values, minlength=self.n_users)

    def update(self, eta_of: list, rng, iteration: int) -> list:
        ordinal, cut = self.ordinal, self.cut
        width = cut.shape[1]
        terms = [self.level_terms(k, cut, eta_k) for k, eta_k in enumerate(eta_of)]
        gaps = np.diff(ordinal.cutpoints)
        tune = iteration < ordinal.tune
        # every user's gaps at once: a preconditioned Crank-Nicolson step on the log gap
        # offsets, which leaves their N(0, tau^2) prior invariant, so that only the
        # likelihood decides: a user whose ratings say little about a gap moves it by
        # the prior's width in one step (the cut-point steps below move one cut point
        # between its neighbours: the top one, a sum of gaps, would crawl)
        beta = self.mixing
        offsets = log_gap_offsets(cut, ordinal.cutpoints)
        proposal_cut = user_cutpoints(ordinal.cutpoints, np.sqrt(1 - beta**2)[:, None] * offsets
                                      + (beta * self.tau)[:, None]
                                      * rng.standard_normal(offsets.shape))
        log_u = np.log(rng.random(self.n_users))
        new = [self.level_terms(k, proposal_cut, eta_k) for k, eta_k in enumerate(eta_of)]
        ratio = sum(self._sum_by_user(k, new[k] - terms[k]) for k in range(len(terms)))
        accepted = log_u < ratio
        cut = np.where(accepted[:, None], proposal_cut, cut)
        terms = [np.where(accepted[self.users_of[k]], new[k], terms[k])
                 for k in range(len(terms))]
        if tune:  # towards 30 % accepted, beta in (0, 1]
            self.mixing = np.minimum(1.0, beta * np.exp((accepted - 0.3)
                                                        / np.sqrt(iteration + 1.0)))
        for k in range(1, width):  # every user's cut point k
            proposal = cut[:, k] + self.steps[:, k] * rng.standard_normal(self.n_users)
            log_u = np.log(rng.random(self.n_users))
            upper = cut[:, k + 1] if k + 1 < width else np.inf
            valid = (cut[:, k - 1] < proposal) & (proposal < upper)
            proposal = np.where(valid, proposal, cut[:, k])
            new = [self.level_terms(j, cut, eta_of[j], (k, proposal)) for j in (k, k + 1)]
            ratio = (self._sum_by_user(k, new[0] - terms[k])
                     + self._sum_by_user(k + 1, new[1] - terms[k + 1])
                     + gap_log_density(cut[:, k - 1], proposal, gaps[k - 1], self.tau)
                     - gap_log_density(cut[:, k - 1], cut[:, k], gaps[k - 1], self.tau))
            if k + 1 < width:
                ratio += (gap_log_density(proposal, upper, gaps[k], self.tau)
                          - gap_log_density(cut[:, k], upper, gaps[k], self.tau))
            accepted = valid & (log_u < ratio)
            cut[:, k] = np.where(accepted, proposal, cut[:, k])
            for j, values in zip((k, k + 1), new):
                terms[j] = np.where(accepted[self.users_of[j]], values, terms[j])
            if tune:
                self.steps[:, k] *= np.exp((accepted - 0.44) / np.sqrt(iteration + 1.0))
        theta = ordinal.cutpoints.copy()
        # log p(theta, the users' cut points), kept for the current state: each move
        # below computes it for its proposal only
        user_gaps = UserGaps(cut)  # the users' cut points stay put in these rounds
        prior = ordinal._threshold_log_prior(theta, cut, user_gaps)
        for _ in range(PRIOR_ROUNDS):  # the global cut points given the users'
            for k in range(1, width):
                proposal = theta.copy()
                proposal[k] += self.global_steps[k] * rng.standard_normal()
                log_u = np.log(rng.random())
                upper = theta[k + 1] if k + 1 < width else np.inf
                accepted = bool(theta[k - 1] < proposal[k] < upper)
                if accepted:
                    proposed_prior = ordinal._threshold_log_prior(proposal, cut, user_gaps)
                    accepted = log_u < proposed_prior - prior
                if accepted:
                    theta, prior = proposal, proposed_prior
                self.global_steps[k] = ordinal._adapt(self.global_steps[k], accepted,
                                                      iteration)
        sums = [float(np.sum(values)) for values in terms]
        for k in range(1, width):  # theta_k and every user's cut point k together
            step = self.joint_steps[k] * rng.standard_normal()
            log_u = np.log(rng.random())
            proposal, moved = theta.copy(), cut.copy()
            if k + 1 < width:  # the position between the neighbours, on the logit scale
                log_jacobian = 0.0
                for values, row in ((proposal, theta), (moved.T, cut.T)):
                    low, high = row[k - 1], row[k + 1]
                    position = (row[k] - low) / (high - low)
                    new_position = special.expit(special.logit(position) + step)
                    values[k] = low + (high - low) * new_position
                    log_jacobian += float(np.sum(
                        np.log(new_position * (1 - new_position))
                        - np.log(position * (1 - position))))
            else:  # the top gap, on the log scale
                for values, row in ((proposal, theta), (moved.T, cut.T)):
                    values[k] = row[k - 1] + (row[k] - row[k - 1]) * np.exp(step)
                log_jacobian = (self.n_users + 1) * step
            new = [self.level_terms(j, moved, eta_of[j]) for j in (k, k + 1)]
            proposed_prior = ordinal._threshold_log_prior(proposal, moved)
            ratio = (float(np.sum(new[0]) + np.sum(new[1])) - sums[k] - sums[k + 1]
                     + proposed_prior - prior + log_jacobian)
            accepted = bool(np.all(np.diff(moved, axis=1) > 0) and log_u < ratio)
            if accepted:
                theta, cut, prior = proposal, moved, proposed_prior
                terms[k], terms[k + 1] = new
                sums[k], sums[k + 1] = float(np.sum(new[0])), float(np.sum(new[1]))
            self.joint_steps[k] = ordinal._adapt(self.joint_steps[k], accepted, iteration)
        ordinal.cutpoints, self.cut = theta, cut
        if self.learned:
            sums = self._update_spread(eta_of, sums, rng, iteration)
        return sums

    def _update_spread(self, eta_of, sums, rng, iteration: int) -> list:
        """A learned tau: drawn from its conditional given the offsets (1/tau^2 ~ Gamma,
        conjugate), then one Metropolis move stretching tau and every offset by one
        factor s (log s ~ N(0, step^2)): the direction in which tau and weakly informed
        offsets hold each other (a funnel); the offsets' prior is invariant under it up
        to the Jacobian, so the ratio is the likelihood's, tau's prior and s^-2 (in
        1/tau^2's terms: -2a log s - b/tau^2 (s^-2 - 1))."""
        ordinal = self.ordinal
        offsets = log_gap_offsets(self.cut, ordinal.cutpoints)
        shape, rate = self.hyperprior
        precision = rng.gamma(shape + 0.5 * offsets.size,
                              1.0 / (rate + 0.5 * float(np.sum(offsets**2))))
        self.tau = 1.0 / np.sqrt(precision)
        log_s = self.spread_step * rng.standard_normal()
        log_u = np.log(rng.random())
        moved = user_cutpoints(ordinal.cutpoints, np.exp(log_s) * offsets)
        new = [self.level_terms(k, moved, eta_k) for k, eta_k in enumerate(eta_of)]
        new_sums = [float(np.sum(values)) for values in new]
        ratio = (sum(new_sums) - sum(sums) - 2 * shape * log_s
                 - rate * precision * (np.exp(-2 * log_s) - 1.0))
        accepted = log_u < ratio
        if accepted:
            self.cut, self.tau, sums = moved, self.tau * np.exp(log_s), new_sums
        self.spread_step = ordinal._adapt(self.spread_step, accepted, iteration)
        return sums


_HYPER_SAMPLERS = {"bpmf": _sample_normal_wishart, "wishart": _sample_wishart_zero_mean,
                   "spherical": _sample_spherical, "diagonal": _sample_diagonal}


def _sample_gamma_precision(values: np.ndarray, rng, config) -> float:
    a0, b0 = config.gamma_prior
    return float(rng.gamma(a0 + 0.5 * len(values), 1.0 / (b0 + 0.5 * float(values @ values))))


# The sampler's name for each prior family of the spec.
_HYPER_OF_PRIOR = {"fixed": "fixed", "spherical": "spherical", "diagonal": "diagonal",
                   "wishart": "wishart", "normal-wishart": "bpmf"}


def draw_factor_prior(factors: np.ndarray, spec, rng) -> tuple[np.ndarray, np.ndarray]:
    """(mean, precision) of one side's factor prior drawn from its conditional given
    that side's own factors (n x d; for implicit feedback Y, not Y + M W), by the
    sampler's own update: for families whose prior the draws do not store in full
    ("wishart", "normal-wishart": only sigma_u = sqrt(trace(Lambda^-1)/d) is kept), a
    draw of it that goes with each posterior draw of the factors. Fold-in uses it."""
    hyper = _HYPER_OF_PRIOR[spec.prior]
    if hyper not in ("wishart", "bpmf"):
        raise ConfigError(f"the {spec.prior!r} prior is stored with the draws; only the "
                          "Wishart families are drawn again", setting="prior")
    return _HYPER_SAMPLERS[hyper](np.asarray(factors, dtype=float), rng, spec)


@dataclass(frozen=True)
class GibbsConfig:
    """The sampler's settings (engine settings; the model comes from the spec)."""

    draws: int = 200
    tune: int = 100
    chains: int = 4
    thin: int = 1
    hyper: str = "fixed"
    learn_sigma: bool = False
    init: Literal["als", "als-shared", "random"] = "als"
    scale_move: bool = True
    shift_moves: bool = True
    overrelax: float = DEFAULT_OVERRELAX
    balance_moves: bool = True

    def __post_init__(self) -> None:
        if not -1.0 < self.overrelax <= 0.0:
            raise ConfigError(f"overrelax must be in (-1, 0], got {self.overrelax!r}",
                              setting="overrelax")
        for name in ("draws", "chains", "thin"):
            check_count(name, getattr(self, name))
        check_count("tune", self.tune, minimum=0)
        if self.init not in ("als", "als-shared", "random"):
            raise ConfigError(f"init must be 'als', 'als-shared' or 'random', got "
                              f"{self.init!r}", setting="init")

    noise_prior: tuple[float, float] = (1.0, 1.0)
    gamma_prior: tuple[float, float] = (1.0, 1.0)
    nw_beta0: float = 2.0
    bias_scale_moves: bool = True
    tag_moves: bool = True


# Draws of the per-user and per-item parameters are stored in single precision: 7
# significant digits, far below any Monte Carlo error, in half the memory (4 chains x
# 1,000 draws on MovieLens: 1.7 GB instead of 3.4). The chains compute in double.
STORED_DTYPE = np.float32
_PER_ROW = ("U", "V", "W", "Z", "Phi", "user_bias", "item_bias", "user_cutpoints")


def _draws_output(train, spec, config: GibbsConfig, held_out,
                  allocate=np.empty) -> dict[str, np.ndarray]:
    """The arrays (chain, draw, ...) every chain's kept draws are written into, each chain
    into its own slice: no copy gathers them at the end (U and V draws are large)."""
    lead = (config.chains, config.draws)
    n, m, d = train.n_users, train.n_items, spec.n_factors
    shapes = {"U": (n, d), "V": (m, d), "sigma": (), "sigma_u": (), "sigma_v": ()}
    if spec.global_mean:
        shapes["mu"] = ()
    if spec.biases:
        shapes.update(user_bias=(n,), item_bias=(m,), sigma_user_bias=(), sigma_item_bias=())
    if config.hyper == "diagonal":
        shapes.update(sigma_u_latent=(d,), sigma_v_latent=(d,))
    if spec.constrained:  # U holds the effective factors Y + M W, which predictions use
        shapes["W"] = (m, d)
    if spec.user_features is not None:  # the users' tags' factors
        shapes["Psi"] = (len(user_tag_vocabulary(train, spec.user_feature_columns)), d)
    if spec.user_additive:
        shapes["sigma_w"] = ()
    if spec.implicit_items:  # V likewise X + M' Z (+ G Phi)
        shapes["Z"] = (n, d)
    if spec.item_features is not None:  # the tags' factors
        shapes["Phi"] = (len(item_tag_vocabulary(train, spec.item_features)), d)
    if spec.item_additive:
        shapes["sigma_z"] = ()
    if spec.user_tag_biases:  # the tags' bias regressors, one per Psi row
        shapes["user_tag_bias"] = (shapes["Psi"][0],)
    if spec.item_tag_biases:
        shapes["item_tag_bias"] = (shapes["Phi"][0],)
    if spec.ordinal:  # sigma is the fixed latent scale: not a draw
        shapes["cutpoints"] = (len(rating_grid(train.scale)) - 1,)
        shapes.pop("sigma")
        if spec.user_thresholds:
            shapes["user_cutpoints"] = (n,) + shapes["cutpoints"]
        if spec.learned_thresholds:
            shapes["threshold_sd"] = ()
    if held_out is not None:
        shapes["running_test_rmse"] = ()
    return {name: allocate(lead + shape, STORED_DTYPE if name in _PER_ROW else np.float64)
            for name, shape in shapes.items()}


def _chain_slice(outputs: dict[str, np.ndarray], chain: int) -> dict[str, np.ndarray]:
    return {name: array[chain] for name, array in outputs.items()}


# The ALS start of each chain is a rough optimum (burn-in forgets the start):
# conjugate-gradient sweeps, at most this many.
START_SWEEPS = 30


def _chain_start(train, spec, init: str, init_spec, shared_start, rng, executor,
                 block_rows: int = DEFAULT_BLOCK_ROWS, on_sweep=None) -> FactorParams:
    """Where a chain starts (see ``sample_gibbs``'s ``init``); its ALS start's row blocks
    are the chain's (``block_rows``): from d = 16 on a block's arithmetic depends on the
    rows it holds, so a start cut otherwise would differ between places whose blocks
    differ. ``on_sweep``: called after each ALS sweep (a chain task's stop check)."""
    if init == "random":
        return FactorParams(
            spec.sigma_u * rng.standard_normal((train.n_users, spec.n_factors)),
            spec.sigma_v * rng.standard_normal((train.n_items, spec.n_factors)),
            train.mean_rating if spec.global_mean else 0.0)
    if init == "als-shared":
        jitter = 0.05
        return FactorParams(
            shared_start.user_factors + jitter * rng.standard_normal(
                shared_start.user_factors.shape),
            shared_start.item_factors + jitter * rng.standard_normal(
                shared_start.item_factors.shape),
            shared_start.mu, shared_start.user_bias.copy(), shared_start.item_bias.copy())
    with single_threaded_blas():
        base = balanced(minimise(train, init_spec, rng=rng, tol=1e-4, solver="cg",
                                 max_sweeps=START_SWEEPS, executor=executor,
                                 block_rows=block_rows, progress=False,
                                 on_sweep=on_sweep).params)
    return FactorParams(
        base.user_factors + spec.sigma_u * rng.standard_normal(base.user_factors.shape),
        base.item_factors + spec.sigma_v * rng.standard_normal(base.item_factors.shape),
        base.mu,
        base.user_bias + spec.sigma_user_bias * rng.standard_normal(len(base.user_bias))
        if spec.biases else None,
        base.item_bias + spec.sigma_item_bias * rng.standard_normal(len(base.item_bias))
        if spec.biases else None)


@dataclass
class _ChainJob:
    """What every chain of one run shares, in one picklable object: a chain run as a Dask
    task (``DaskExecutor(chain_tasks=True)``) receives it, once per worker."""

    train: object
    spec: object
    config: GibbsConfig
    init: str
    init_spec: object
    shared_start: FactorParams | None
    held: tuple | None
    block_rows: int

    def run(self, rng: np.random.Generator, bar, inner: Executor, out: dict) -> None:
        """One chain, from its start (drawn with ``rng``, its own stream) into ``out``
        (the chain's slice of the draws' arrays)."""
        start = _chain_start(self.train, self.spec, self.init, self.init_spec,
                             self.shared_start, rng, inner, self.block_rows,
                             getattr(bar, "check", None))
        _run_chain(self.train, self.spec, self.config, start, rng, self.held, bar,
                   self.block_rows, out, inner)

    def run_alone(self, rng: np.random.Generator, bar, inner: Executor
                  ) -> dict[str, np.ndarray]:
        """:meth:`run` into arrays of its own, returned: a chain away from the caller's
        memory. Same random stream, same arithmetic: the same draws."""
        out = _chain_slice(_draws_output(self.train, self.spec,
                                         replace(self.config, chains=1), self.held), 0)
        self.run(rng, bar, inner, out)
        return out


def _run_chain(train, spec, config: GibbsConfig, start: FactorParams,
               rng: np.random.Generator, held_out, bar, block_rows,
               out: dict, executor: Executor) -> dict[str, np.ndarray]:
    with single_threaded_blas():
        return _chain_sweeps(train, spec, config, start, rng, held_out, bar, block_rows,
                             executor, out)


def _chain_sweeps(train, spec, config, start, rng, held_out, bar, block_rows,
                  executor, out) -> dict[str, np.ndarray]:
    d, biases = spec.n_factors, spec.biases
    # the row of every stored rating, user-major and item-major (once per chain)
    user_rows, item_rows = rating_rows(train.by_user), rating_rows(train.by_item)
    ordinal = _OrdinalLatent(train, spec, config.tune, user_rows) if spec.ordinal else None
    # the ordinal model's sweeps run on its latent ratings z, in place of the ratings
    by_user, by_item = ((ordinal.by_user, ordinal.by_item) if ordinal
                        else (train.by_user, train.by_item))
    N = train.n_ratings
    U, V = start.user_factors.copy(), start.item_factors.copy()
    b, c = start.user_bias.copy(), start.item_bias.copy()
    mu = float(start.mu)
    tau = 1.0 / spec.sigma**2
    fixed_user = _SideHyper(np.zeros(d), np.eye(d) / spec.sigma_u**2,
                            1.0 / spec.sigma_user_bias**2)
    fixed_item = _SideHyper(np.zeros(d), np.eye(d) / spec.sigma_v**2,
                            1.0 / spec.sigma_item_bias**2)
    user_hyper, item_hyper = fixed_user, fixed_item
    # implicit feedback: U = Y + M W (constrained PMF), V = X + M' Z (implicit_items)
    user_side = (_ImplicitSide(user_additive_matrix(train, spec), U, spec.sigma_u,
                               spec.sigma_w, rng) if spec.user_additive else None)
    item_side = (_ImplicitSide(item_additive_matrix(train, spec), V, spec.sigma_v,
                               spec.sigma_w, rng) if spec.item_additive else None)
    # the items' normalised tags, by tag (item features' non-centred steps)
    tag_steps = user_tag_steps = None
    if spec.item_features is not None and config.tag_moves and d:
        tag_steps = _TagSteps(item_side, by_item, train.n_users if spec.implicit_items else 0)
    if spec.user_features is not None and config.tag_moves and d:
        user_tag_steps = _TagSteps(user_side, by_user, train.n_items if spec.constrained else 0)
    draw_implicit_hyper = _HYPER_SAMPLERS.get(
        "wishart" if config.hyper == "bpmf" else config.hyper)  # zero-mean W and Z
    # the tags' bias regressors (tag_biases): b = own + H beta_user, c = own + G beta_item
    user_regress, item_regress = (
        _TagBias(tag_bias_matrix(train, spec, side), np.diff(matrix.indptr),
                 spec.sigma_tag_bias) if on else None
        for side, matrix, on in (("user", by_user, spec.user_tag_biases),
                                 ("item", by_item, spec.item_tag_biases)))

    if held_out is not None:
        running_sum = np.zeros(len(held_out[2]))

    total = config.tune + config.draws * config.thin
    kept = 0
    rating_sum = float(train.rating.sum())
    balance_step = 0.5 / np.sqrt(train.n_users + train.n_items)
    # the bias scale moves (hierarchical bias precisions; see _bias_scale_move)
    bias_scaling = config.bias_scale_moves and biases and config.hyper != "fixed"
    bias_steps = [0.05, 0.05]
    balancing = config.balance_moves and config.hyper == "wishart" and d > 0
    ridge_steps = [balance_step, balance_step]  # the implicit ridge moves' (users, items)
    for iteration in range(total):
        if balancing:
            ups, downs, acceptance = _balance_moves(
                _parts(user_side, U), _parts(item_side, V), rng, BALANCE_STEPS, balance_step)
            U, V = _set_parts(user_side, ups), _set_parts(item_side, downs)
            if iteration < config.tune:  # adapt towards ~30 % accepted, then hold
                balance_step *= np.exp(0.5 * (acceptance - 0.3))
            for k, (side, effective) in enumerate(((user_side, U), (item_side, V))):
                if side:
                    moved, acceptance = _ridge_moves(effective, side.offsets, side.factors,
                                                     rng, BALANCE_STEPS, ridge_steps[k])
                    if moved is not None:
                        side.move_along_ridge(effective, moved)
                    if iteration < config.tune:
                        ridge_steps[k] *= np.exp(0.5 * (acceptance - 0.3))
        if config.hyper != "fixed":
            draw_hyper = _HYPER_SAMPLERS[config.hyper]
            for side in (user_side, item_side):
                if side:
                    side.hyper = _SideHyper(*draw_implicit_hyper(side.factors, rng, config),
                                            1.0)
            if d:
                u_mean, u_prec = draw_hyper(_own(user_side, U), rng, config)
                v_mean, v_prec = draw_hyper(_own(item_side, V), rng, config)
            else:
                u_mean = v_mean = np.zeros(0)
                u_prec = v_prec = np.zeros((0, 0))
            user_hyper = _SideHyper(u_mean, u_prec, _sample_gamma_precision(
                _own_bias(user_regress, b), rng, config) if biases else 1.0)
            item_hyper = _SideHyper(v_mean, v_prec, _sample_gamma_precision(
                _own_bias(item_regress, c), rng, config) if biases else 1.0)

        if ordinal:
            (U, V, b, c, mu), rating_sum = ordinal.update(
                (U, V, b, c, mu), (user_hyper, item_hyper), _mu_prior_terms(spec), rng,
                iteration, _blocks(user_side, U, user_hyper), _blocks(item_side, V, item_hyper),
                (user_regress, item_regress))
            if ordinal.stretch != 1.0:
                for side in (user_side, item_side):
                    if side:
                        side.scale(np.sqrt(ordinal.stretch))
                for regress in (user_regress, item_regress):
                    if regress:  # the biases' prior means stretch with them
                        regress.beta = ordinal.stretch * regress.beta
        # what the half-steps fit: the latent ratings (new every sweep), or the ratings
        # themselves (None: the matrices' own data, which a distributed executor keeps)
        base, item_base = (by_user.data, by_item.data) if ordinal else (None, None)
        # the user step draws Y: the ratings see U = Y + M W
        # (with tag biases the own biases are drawn, their prior means taken off the data)
        targets = Targets(base, mu, c, *((user_side.offsets, V, user_rows) if user_side
                                         else (None, None, None)),
                          row_shift=user_regress.mean() if user_regress else None)
        w, _ = _sample_side(by_user, targets, V, user_hyper, d, biases, tau, rng, block_rows,
                            executor, _stacked(_own(user_side, U), _own_bias(user_regress, b),
                                               biases)
                            if config.overrelax else None, config.overrelax,
                            squared_error=False)
        U = w[:, :d] if not user_side else user_side.set_own(w[:, :d])
        if biases:
            b = w[:, d] if not user_regress else w[:, d] + user_regress.mean()
        targets = Targets(item_base, mu, b, *((item_side.offsets, U, item_rows) if item_side
                                              else (None, None, None)),
                          row_shift=item_regress.mean() if item_regress else None)
        z, squared_error = _sample_side(by_item, targets, U, item_hyper, d, biases, tau, rng,
                                        block_rows, executor,
                                        _stacked(_own(item_side, V),
                                                 _own_bias(item_regress, c), biases)
                                        if config.overrelax else None, config.overrelax)
        V = z[:, :d] if not item_side else item_side.set_own(z[:, :d])
        if biases:
            c = z[:, d] if not item_regress else z[:, d] + item_regress.mean()
        # W given U (Y = U - M W moves with it); Z given V likewise
        for side, effective, hyper in ((user_side, U, user_hyper), (item_side, V, item_hyper)):
            if side:
                side.draw(effective, hyper, rng, config.overrelax)
        if tag_steps is not None:  # the tags' factors, non-centred (X held)
            residual = by_item.data - linear_predictor(
                by_item.indices, item_rows, mu if spec.global_mean else 0.0,
                b if biases else None, c if biases else None, U, V)
            V = _tag_moves(item_side, tag_steps, by_item, residual, U, V, tau, rng)
            squared_error = float(residual @ residual)  # V moved
        if user_tag_steps is not None:  # the users' tags' factors (Y held)
            residual = by_user.data - linear_predictor(
                user_rows, by_user.indices, mu if spec.global_mean else 0.0,
                b if biases else None, c if biases else None, U, V)
            U = _tag_moves(user_side, user_tag_steps, by_user, residual, V, U, tau, rng)
            squared_error = float(residual @ residual)  # U moved
        if user_regress or item_regress:  # the tags' bias regressors, both ways
            residual = by_user.data - linear_predictor(
                user_rows, by_user.indices, mu if spec.global_mean else 0.0, b, c, U, V)
            for regress, hyper, index in ((item_regress, item_hyper, by_user.indices),
                                          (user_regress, user_hyper, user_rows)):
                if not regress:
                    continue
                bias = c if regress is item_regress else b
                regress.centred(bias, hyper.bias_precision, rng)
                sums = np.bincount(index, weights=residual, minlength=len(bias))
                delta = regress.noncentred(sums, tau, rng)
                squared_error += float(regress.counts @ delta**2) - 2.0 * float(delta @ sums)
                residual -= delta[index]
                if regress is item_regress:
                    c = c + delta
                else:
                    b = b + delta
        # With balance moves the scale c I is one of the matrices they draw.
        if config.scale_move and d and config.hyper != "bpmf" and not balancing:
            scale = _sample_scale(_blocks_of_precision(user_side, U, user_hyper),
                                  _blocks_of_precision(item_side, V, item_hyper), rng)
            U = U * scale if not user_side else user_side.scale(scale)
            V = V / scale if not item_side else item_side.scale(1.0 / scale)
        if config.shift_moves and biases:  # on the own biases (their prior's)
            own_u, own_v, own_b, own_c, mu = _shift_moves(
                _own(user_side, U), _own(item_side, V), _own_bias(user_regress, b),
                _own_bias(item_regress, c), mu, user_hyper, item_hyper,
                spec.global_mean, rng, config.overrelax, _mu_prior_terms(spec),
                user_side and user_side.offsets, item_side and item_side.offsets)
            U = own_u if not user_side else user_side.set_own(own_u)
            V = own_v if not item_side else item_side.set_own(own_v)
            b = own_b if not user_regress else own_b + user_regress.mean()
            c = own_c if not item_regress else own_c + item_regress.mean()
        if bias_scaling:
            residual = by_user.data - linear_predictor(
                user_rows, by_user.indices, mu if spec.global_mean else 0.0, b, c, U, V)
            for side, (bias, hyper, index, regress) in enumerate(
                    ((b, user_hyper, user_rows, user_regress),
                     (c, item_hyper, by_user.indices, item_regress))):
                own = _own_bias(regress, bias)
                scaled, precision, change, accepted = _bias_scale_move(
                    own, hyper.bias_precision, residual, index, tau, config.gamma_prior,
                    bias_steps[side], rng)
                if iteration < config.tune:  # towards ~44 % accepted, then hold
                    bias_steps[side] *= np.exp((accepted - 0.44) / np.sqrt(iteration + 1.0))
                if accepted:
                    residual -= (scaled - own)[index]
                    squared_error += change
                    hyper.bias_precision = precision
                    moved = scaled if not regress else scaled + regress.mean()
                    if side:
                        c = moved
                    else:
                        b = moved

        # squared_error: the residuals r - mu - b - c - U.V at the current mu, summed from
        # the item half-step (the scale and shift moves leave every prediction unchanged,
        # the bias scale moves add their change).
        if spec.global_mean:
            residual_sum = rating_sum - N * mu - observed_sum_without_mu(
                train, FactorParams(U, V, 0.0, b, c), block_rows, executor)
            prior_precision, prior_mean = _mu_prior_terms(spec)
            precision = tau * N + prior_precision
            centre = mu + residual_sum / N if not prior_precision else (
                (tau * (residual_sum + N * mu) + prior_precision * prior_mean) / precision)
            new_mu = float(overrelaxed(centre, mu, rng.standard_normal() / np.sqrt(precision),
                                       config.overrelax))
            shift = new_mu - mu
            squared_error += N * shift**2 - 2.0 * shift * residual_sum
            mu = new_mu
        if config.learn_sigma:
            shape, rate = config.noise_prior
            tau = overrelaxed_gamma(shape + 0.5 * N, rate + 0.5 * squared_error, tau,
                                    config.overrelax, rng)
        if not (np.isfinite(tau) and np.isfinite(mu) and np.all(np.isfinite(U))):
            raise NumericalError(f"Gibbs sampler produced non-finite values at sweep {iteration}")

        bar.advance(f"sigma={1 / np.sqrt(tau):.3f}")
        if iteration < config.tune:
            continue
        if held_out is not None:
            # the running posterior mean over every sweep after burn-in, kept or not
            u_idx, i_idx, actual = held_out
            eta = FactorParams(U, V, mu if spec.global_mean else 0.0,
                               b, c).linear_predictor(u_idx, i_idx)
            running_sum += ordinal.expected_rating(eta, u_idx) if ordinal else eta
        if (iteration - config.tune) % config.thin:
            continue
        out["U"][kept], out["V"][kept] = U, V
        if "sigma" in out:
            out["sigma"][kept] = 1.0 / np.sqrt(tau)
        out["sigma_u"][kept] = user_hyper.factor_scale
        out["sigma_v"][kept] = item_hyper.factor_scale
        if config.hyper == "diagonal":
            out["sigma_u_latent"][kept] = 1.0 / np.sqrt(np.diag(user_hyper.factor_precision))
            out["sigma_v_latent"][kept] = 1.0 / np.sqrt(np.diag(item_hyper.factor_precision))
        if spec.global_mean:
            out["mu"][kept] = mu
        if ordinal:
            out["cutpoints"][kept] = ordinal.cutpoints
            if ordinal.users:
                out["user_cutpoints"][kept] = ordinal.users.cut
            if "threshold_sd" in out:
                out["threshold_sd"][kept] = ordinal.users.tau
        if user_side:
            rows = user_side.full(rng)  # [W; Psi]
            if spec.constrained:
                out["W"][kept] = rows[:train.n_items]
            if spec.user_features is not None:
                out["Psi"][kept] = rows[train.n_items if spec.constrained else 0:]
            out["sigma_w"][kept] = user_side.hyper.factor_scale
        if item_side:
            rows = item_side.full(rng)  # [Z; Phi]
            if spec.implicit_items:
                out["Z"][kept] = rows[:train.n_users]
            if spec.item_features is not None:
                out["Phi"][kept] = rows[train.n_users if spec.implicit_items else 0:]
            out["sigma_z"][kept] = item_side.hyper.factor_scale
        if biases:
            out["user_bias"][kept], out["item_bias"][kept] = b, c
            for name, regress in (("user_tag_bias", user_regress),
                                  ("item_tag_bias", item_regress)):
                if regress:
                    out[name][kept] = regress.beta
            out["sigma_user_bias"][kept] = 1.0 / np.sqrt(user_hyper.bias_precision)
            out["sigma_item_bias"][kept] = 1.0 / np.sqrt(item_hyper.bias_precision)
        if held_out is not None:
            swept = iteration - config.tune + 1
            out["running_test_rmse"][kept] = float(
                np.sqrt(np.mean((running_sum / swept - actual) ** 2)))
        kept += 1
    return out


BALANCE_STEPS = 10


class _ImplicitSide:
    """One side's implicit feedback in a chain: the effective factors are own + M F
    (users: U = Y + M W; items: V = X + M' Z). The chain keeps F's coordinates C in the
    basis of M's row space (``factors``, r x d, rows with F's prior ``hyper``, zero mean)
    and integrates out the rest of F, which nothing but F's prior sees
    (:mod:`bayes_pmf.engines.implicit`); ``full`` draws it back where F is stored."""

    def __init__(self, matrix, effective: np.ndarray, start_scale: float, sigma: float,
                 rng) -> None:
        d = effective.shape[1]
        self.feedback = ImplicitFeedback(matrix)
        # F starts at prior-scale noise, own so that the effective factors are the start's
        self.factors = start_scale * rng.standard_normal((self.feedback.rank, d))
        self.offsets = self.feedback.offsets(self.factors)
        self.own = effective - self.offsets
        self.hyper = _SideHyper(np.zeros(d), np.eye(d) / sigma**2, 1.0)

    def set_own(self, own: np.ndarray) -> np.ndarray:
        """Set own; return the effective factors."""
        self.own = own
        return own + self.offsets

    def scale(self, factor: float) -> np.ndarray:
        self.own, self.factors, self.offsets = (factor * self.own, factor * self.factors,
                                                factor * self.offsets)
        return self.own + self.offsets

    def draw(self, effective: np.ndarray, hyper: _SideHyper, rng, overrelax: float) -> None:
        """F given the effective factors (own = effective - M F moves with it)."""
        self.factors = self.feedback.draw(effective, hyper.factor_mean,
                                          hyper.factor_precision, self.hyper.factor_precision,
                                          rng, self.factors, overrelax)
        self.offsets = self.feedback.offsets(self.factors)
        self.own = effective - self.offsets

    def move_along_ridge(self, effective: np.ndarray, moved: np.ndarray) -> None:
        """C -> C A, own = effective - M F A: the effective factors stay (``_ridge_moves``)."""
        self.factors = self.factors @ moved
        self.offsets = self.offsets @ moved
        self.own = effective - self.offsets

    def full(self, rng) -> np.ndarray:
        """A draw of F (W or Z) given C and its prior precision."""
        return self.feedback.full(self.factors, self.hyper.factor_precision, rng)


class _TagSteps:
    """What :func:`_tag_moves` reads that stays fixed for a chain, per tag g: its items
    and their normalised weights G[:, g], the positions of their ratings in the
    item-major order with each rating's weight and user, and b_g = B^T e_g (B: the
    basis of [M' | G]'s row space, fixed for the chain). Set up once, the same numbers
    every sweep recomputed."""

    def __init__(self, side: _ImplicitSide, by_item, first_tag: int) -> None:
        """``side``: the items' additive block, whose matrix [M' | G] holds the tags G
        from column ``first_tag`` on (after the raters' columns M' with implicit
        feedback on items)."""
        tags = side.feedback.matrix[:, first_tag:].tocsc()
        unit = np.zeros(side.feedback.matrix.shape[1])
        self.steps = []
        for g in range(tags.shape[1]):
            items = tags.indices[tags.indptr[g]:tags.indptr[g + 1]]
            weights = tags.data[tags.indptr[g]:tags.indptr[g + 1]]
            if not len(items):
                continue
            starts, ends = by_item.indptr[items], by_item.indptr[items + 1]
            counts = ends - starts
            positions = np.repeat(ends - counts.cumsum(), counts) + np.arange(counts.sum())
            unit[:] = 0.0
            unit[first_tag + g] = 1.0
            self.steps.append((items, weights, positions, by_item.indices[positions],
                               np.repeat(weights, counts)[:, None],
                               side.feedback._project(unit)))


def _tag_moves(side: _ImplicitSide, plan: _TagSteps, by_item, residual, U, V, tau,
               rng) -> np.ndarray:
    """Non-centred Gibbs steps for the tags' factors (item features): for each tag g, its
    factors Phi_g move by Delta (d-vector) and every item j carrying it by G_jg Delta,
    the items' own factors X held: in the chain's coordinates C += b_g Delta^T with
    b_g = B^T e_g (B: the basis of [M' | G]'s row space), so the offsets M B C move by
    G[:, g] Delta. Delta is drawn from its Gaussian conditional: the ratings' (or latent
    ratings') residuals of the tag's items, precision tau, and C's prior N(0, Lambda^-1)
    per row. The centred step (C given V) and this one interweave: a genre's factors and
    its rarely rated items' factors no longer pin each other. ``plan`` holds each tag's
    fixed index sets (:class:`_TagSteps`); ``residual`` the ratings' residuals in
    ``by_item``'s order. The users' tags (user features) take the same steps with the
    roles swapped: ``by_item`` the user-major ratings, ``U`` the item factors and ``V``
    the user factors. Returns V (updated in place, as ``residual``)."""
    d = V.shape[1]
    precision_c = side.hyper.factor_precision
    for items, weights, positions, users, rating_weights, b_g in plan.steps:
        # np.take: the same values as fancy indexing, faster for row gathers
        factors = np.take(U, users, axis=0) * rating_weights
        precision = tau * factors.T @ factors + (b_g @ b_g) * precision_c
        linear = (tau * factors.T @ np.take(residual, positions)
                  - precision_c @ (side.factors.T @ b_g))
        root = np.linalg.cholesky(precision)
        mean = scipy.linalg.cho_solve((root, True), linear)
        delta = mean + scipy.linalg.solve_triangular(root.T, rng.standard_normal(d),
                                                     lower=False)
        side.factors += np.outer(b_g, delta)
        shift = np.outer(weights, delta)
        side.offsets[items] += shift
        V[items] += shift
        residual[positions] -= factors @ delta
    return V


class _TagBias:
    """One side's bias regressors (``tag_biases``): the biases b have the prior mean
    T beta (T: the rows' normalised tags, G or H), beta_g ~ N(0, sigma^2). The chain keeps
    the effective biases b (what the ratings see); own = b - T beta has the zero-mean
    prior of biases without tags. Two exact Gibbs steps per sweep interweave: beta given
    the biases (:meth:`centred`: a regression of the biases on the tags, which moves
    freely where items have few ratings) and beta given the own biases and the ratings
    (:meth:`noncentred`: the biases move with it, free where items have many)."""

    def __init__(self, tags, counts: np.ndarray, sigma: float) -> None:
        self.tags = tags.tocsr()
        self.tags_t = self.tags.T.tocsr()
        self.counts = np.asarray(counts, dtype=float)  # ratings per row
        self.prior_precision = 1.0 / sigma**2
        self.gram = np.asarray((self.tags_t @ self.tags).todense())
        self.weighted_gram = np.asarray((self.tags_t @ sp.diags(self.counts)
                                         @ self.tags).todense())
        self.beta = np.zeros(self.tags.shape[1])

    @property
    def beta(self) -> np.ndarray:
        """The tags' coefficients, read-only: a step moves them by assigning new values,
        which resets the cached :meth:`mean` (an in-place change would raise)."""
        return self._beta

    @beta.setter
    def beta(self, value) -> None:
        self._beta = np.array(value, dtype=float)
        self._beta.flags.writeable = False
        self._mean: np.ndarray | None = None

    def mean(self) -> np.ndarray:
        """T beta: each row's bias prior mean, computed once per value of beta."""
        if self._mean is None:
            self._mean = self.tags @ self._beta
        return self._mean

    def centred(self, bias: np.ndarray, bias_precision: float, rng) -> None:
        """beta ~ p(beta | b, tau_b): precision tau_b T^T T + I / sigma^2, linear
        tau_b T^T b (the biases held)."""
        precision = bias_precision * self.gram + self.prior_precision * np.eye(len(self.beta))
        self.beta = self.beta + _shift_draw(
            precision, bias_precision * (self.tags_t @ bias) - precision @ self.beta, rng)

    def noncentred(self, sums: np.ndarray, tau: float, rng) -> np.ndarray:
        """beta ~ p(beta | own biases, ratings), the own biases held, so that b moves by
        T (beta' - beta): each row's ratings' residuals (``sums``: their sum per row at
        the current b) regress on its tags, precision tau T^T N T + I / sigma^2 (N: the
        rows' rating counts). Returns the biases' change T (beta' - beta)."""
        precision = tau * self.weighted_gram + self.prior_precision * np.eye(len(self.beta))
        step = _shift_draw(precision, tau * (self.tags_t @ sums)
                           - self.prior_precision * self.beta, rng)
        self.beta = self.beta + step
        return self.tags @ step


def _own_bias(regress: _TagBias | None, bias):
    """The biases under their zero-mean prior: b - T beta with tag biases, else b."""
    return bias if regress is None or bias is None else bias - regress.mean()


def _own(side: _ImplicitSide | None, effective: np.ndarray) -> np.ndarray:
    """The matrix under the side's factor prior: own with implicit feedback, else the
    factors themselves."""
    return side.own if side else effective


def _parts(side, effective) -> list:
    return [side.own, side.factors] if side else [effective]


def _set_parts(side, parts: list) -> np.ndarray:
    if not side:
        return parts[0]
    side.own, side.factors = parts
    side.offsets = side.feedback.offsets(side.factors)
    return side.own + side.offsets


def _blocks(side, effective, hyper) -> list:
    return [(side.own, hyper), (side.factors, side.hyper)] if side else [(effective, hyper)]


def _blocks_of_precision(side, effective, hyper) -> list:
    return [(x, h.factor_precision) for x, h in _blocks(side, effective, hyper)]


def _stacked(factors: np.ndarray, bias: np.ndarray, biases: bool) -> np.ndarray:
    return np.hstack([factors, bias[:, None]]) if biases else factors


def balanced(params: FactorParams) -> FactorParams:
    """Rescale U -> cU, V -> V/c (predictions unchanged) so that entries of U and V have
    the same root-mean-square. The likelihood cannot tell the two apart, and starting
    from a lopsided point leaves Gibbs to walk the scale ridge slowly."""
    rms_u = np.sqrt(np.mean(params.user_factors**2))
    rms_v = np.sqrt(np.mean(params.item_factors**2))
    if rms_u == 0 or rms_v == 0:
        return params
    c = np.sqrt(rms_v / rms_u)
    return FactorParams(c * params.user_factors, params.item_factors / c, params.mu,
                        params.user_bias, params.item_bias)


# One chain's working memory per training rating, beyond its draws: the ratings by user
# and by item, the latent ratings, residuals and the row blocks' temporaries. The main
# job's model, one chain in one process, its peak over what the process held before it:
# 376 B at 9*10^5 training ratings (implicit feedback on both sides, its bases included),
# 152 B at 9*10^6 (no implicit feedback); benchmarks/README.md, "Where the chains run".
# 450 B errs on the side of keeping a chain off a worker it might not fit.
CHAIN_BYTES_PER_RATING = 450


def chain_bytes(train, spec, draws_bytes: int) -> int:
    """About how many bytes one chain holds where it runs: its working state
    (:data:`CHAIN_BYTES_PER_RATING` per training rating), its kept draws
    (``draws_bytes``) and, with implicit feedback, the exact step's bases
    (:func:`~bayes_pmf.engines.implicit.implicit_bases_bytes`)."""
    implicit = spec.constrained or spec.implicit_items
    bases = implicit_bases_bytes(train.n_users, train.n_items) if implicit else 0
    return CHAIN_BYTES_PER_RATING * train.n_ratings + draws_bytes + bases


def sample_gibbs(
    train,
    spec,
    *,
    draws: int = 200,
    tune: int = 100,
    chains: int = 4,
    thin: int = 1,
    init: Literal["als", "als-shared", "random"] = "als",
    init_lambda: float | None = None,
    scale_move: bool = True,
    shift_moves: bool = True,
    overrelax: float = DEFAULT_OVERRELAX,
    balance_moves: bool = True,
    bias_scale_moves: bool = True,
    tag_moves: bool = True,
    held_out=None,
    rng: int | None = 0,
    cores: int | None = None,
    executor: Executor | None = None,
    block_rows: int = DEFAULT_BLOCK_ROWS,
    method: str = "gibbs",
    progress: bool = True,
) -> PMFResult:
    """Posterior draws of the model ``spec`` (a PMFSpec: ``PMFSpec()`` is the default
    model, the main job samples ``PMFSpec.hierarchical()``) on the ratings ``train`` by
    Gibbs sampling (see the module docstring). Every prior family and both noise models
    of the spec are sampled, and both likelihoods (Gaussian, ordinal); the identity link
    only.

    Engine settings: ``draws`` kept per chain after ``tune`` burn-in sweeps, keeping every
    ``thin``-th sweep; ``overrelax`` in (-1, 0]: the overrelaxation of every Gaussian
    update and of tau's Gamma update (0: plain Gibbs draws). ``balance_moves`` ("wishart"
    prior): Metropolis moves over invertible matrices A, (U, V) -> (U A, V A^-T), before
    each sweep, and with implicit feedback along its ridge, (Y, W) -> (U - M W A, W A)
    (likewise X, Z). ``scale_move`` adds, after every sweep, an exact draw of the scale c in
    (U, V) -> (cU, V/c) (zero-mean priors only: every family but "normal-wishart"; with
    balance moves on, cI is among their matrices and this draw is skipped).
    ``shift_moves`` (models with biases) adds exact draws along the translations the
    likelihood cannot see: the global mean against the biases, and the factors against
    the other side's biases (see ``_shift_moves``). ``bias_scale_moves`` (hierarchical
    priors, models with biases) adds a Metropolis move of each side's biases and their
    precision together, (c, tau_c) -> (s c, tau_c / s^2) (see ``_bias_scale_move``).
    ``tag_moves`` (item features) adds non-centred draws of each tag's factors with the
    items' own factors held (see ``_tag_moves``).

    ``init="als"`` (overdispersed starts, so that R-hat can see chains that have not
    mixed) starts every chain from its own ALS optimum, reached from the chain's own
    random initial factors (at most 30 conjugate-gradient sweeps, run inside the chain's
    process; factor scales balanced), plus a jitter on the prior's scale (the spec's
    sigma_u, sigma_v, sigma_user_bias, sigma_item_bias). ``"als-shared"`` starts every
    chain from one ALS optimum plus a small (0.05) jitter, ``"random"`` from prior-scale
    noise. The ALS starts use ridge penalty ``init_lambda`` on the factors: by default
    the spec's for fixed priors, and a light 5.0 for the hierarchical ones, whose
    posterior factors are larger than a strongly penalised optimum (measured on
    MovieLens: sigma settles in ~25 sweeps from lambda 5, ~200 from lambda 15).
    ``held_out`` (a test set) makes each chain record the RMSE of its running
    posterior-mean prediction (over every sweep after burn-in, thinned away or not) at
    every kept draw (sample_stats.running_test_rmse).

    ``executor`` (:mod:`bayes_pmf.engines.parallel`) decides where chains and row blocks
    run; by default chains run in up to ``cores`` processes (default: as many as there
    are chains and CPU cores, unless the chains are too short to repay starting
    processes). The draws do not depend on it: every chain has its own random stream,
    and within a sweep the random numbers do not depend on how the work is split.
    Returns a PMFResult named ``method``.
    """
    spec = checked_spec(spec, "sample_gibbs")
    if spec.link != "identity":
        raise ConfigError("the Gibbs sampler is conjugate only for the identity link; "
                          "use sample_nuts for the logistic link", setting="link")
    if spec.ordinal_link != "probit":
        raise ConfigError(
            f"the Gibbs sampler's data augmentation (Albert & Chib) is the ordered "
            f"probit's; this spec has ordinal_link={spec.ordinal_link!r}: sample it with "
            "sample_nuts or fit_advi, fit it with fit_map, or sample "
            "spec.with_(ordinal_link='probit') here", setting="ordinal_link")
    hyper = _HYPER_OF_PRIOR[spec.prior]
    config = GibbsConfig(draws, tune, chains, thin, hyper, spec.noise == "learned", init,
                         scale_move, shift_moves, overrelax, balance_moves, spec.noise_prior,
                         spec.gamma_prior, spec.nw_beta0, bias_scale_moves=bias_scale_moves,
                         tag_moves=tag_moves)
    executor = resolve(executor, cores)
    check_seed(rng)
    seed_sequence = np.random.SeedSequence(rng)
    chain_rngs = [np.random.default_rng(s) for s in seed_sequence.spawn(chains)]
    began = time.perf_counter()
    init_spec = None
    if init != "random":
        if init_lambda is None and hyper != "fixed":
            init_lambda = 5.0
        # chains start from the Gaussian model's optimum (the ordinal model's latent
        # ratings are on the rating scale, its cut points start at the midpoints)
        init_spec = spec.with_(likelihood="gaussian", thresholds="global", constrained=False,
                               implicit_items=False, item_features=None, user_features=None,
                               tag_biases=False)
        init_spec = init_spec if init_lambda is None else init_spec.with_(
            sigma_u=spec.sigma / np.sqrt(init_lambda), sigma_v=spec.sigma / np.sqrt(init_lambda))
    shared_start = None
    if init == "als-shared":
        shared_start = balanced(minimise(train, init_spec, rng=rng, tol=1e-4, solver="cg",
                                         executor=executor, block_rows=block_rows,
                                         progress=False).params)
    held = None
    if held_out is not None:
        users = held_out.user_ids[held_out.user_idx]
        items = held_out.item_ids[held_out.item_idx]
        held = (train.encode_users(users), train.encode_items(items), held_out.rating)
    start_seconds = time.perf_counter() - began

    job = _ChainJob(train, spec, config, init, init_spec, shared_start, held, block_rows)
    work_per_chain = train.n_ratings * (tune + draws * thin)
    stacked = _draws_output(train, spec, config, held, allocate=shared_empty)
    total = chains * (tune + draws * thin)
    processes = executor.chain_processes(chains, work_per_chain)

    def run_chain(chain: int, bar, inner: Executor) -> None:
        job.run(chain_rngs[chain], bar, inner, _chain_slice(stacked, chain))

    def keep_chain(chain: int, drawn: dict[str, np.ndarray]) -> None:
        for name, array in _chain_slice(stacked, chain).items():
            array[...] = drawn[name]

    place = getattr(executor, "place_chains", None)  # a cluster chooses where chains run
    chain_tasks = bool(place and place(chains, chain_bytes(
        train, spec, sum(a.nbytes for a in stacked.values()) // chains)))
    where = ("as Dask tasks" if chain_tasks else "on the Dask cluster"
             if getattr(executor, "remote", False) else f"{processes} processes")
    with sweep_progress(total, f"Gibbs ({chains} chains, {where})", progress) as bar:
        if chain_tasks:  # each chain whole on a worker, its draws sent back
            executor.run_chain_tasks(job.run_alone, chain_rngs, bar, keep_chain)
        else:
            executor.run_chains(run_chain, chains, work_per_chain, bar)
    seconds = time.perf_counter() - began

    sample_stats = {}
    if "running_test_rmse" in stacked:
        sample_stats["running_test_rmse"] = stacked.pop("running_test_rmse")
    if spec.n_factors == 0:
        stacked.pop("U"), stacked.pop("V"), stacked.pop("sigma_u"), stacked.pop("sigma_v")
    settings = {"draws": draws, "tune": tune, "chains": chains, "thin": thin,
                "init": init, "init_lambda": init_lambda, "scale_move": scale_move,
                "shift_moves": shift_moves, "overrelax": overrelax,
                "balance_moves": balance_moves, "bias_scale_moves": bias_scale_moves,
                "tag_moves": tag_moves,
                "executor": repr(executor),
                **({"chain_placement": executor.placed_chains["why"]} if place else {}),
                "cores": processes, "sampling_seconds": seconds,
                "start_seconds": start_seconds,
                # sweeps per second of the chains alone (the ALS start excluded)
                "draws_per_second": chains * (tune + draws * thin) / (seconds - start_seconds)}
    return posterior_result(stacked, spec, train, method=method, seed=rng, settings=settings,
                            sample_stats=sample_stats or None)

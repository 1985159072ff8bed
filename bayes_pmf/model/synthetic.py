"""Ratings drawn from the PMF model with known truth, for tests, benchmarks and teaching.

:func:`make_synthetic` draws the factors and biases from the spec's fixed priors (the
scales ``sigma_u``, ``sigma_v``, ``sigma_user_bias``, ``sigma_item_bias``), distinct
(user, item) pairs with power-law activity, and Gaussian ratings around eta with sd
``sigma``; it returns the ratings with the parameters that generated them.

:func:`draw_from_prior` draws everything from the spec's whole model instead, the
hyperparameters included (every prior family, a learned noise, mu from ``mu_prior``):
one draw of the joint distribution p(parameters, ratings), as simulation-based
calibration needs (:mod:`bayes_pmf.analysis.calibration`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd
import scipy.sparse as sp

from ..data.ratings import RatingScale, RatingsData
from ..errors import ConfigError, RatingsDataError, check_seed
from .params import (
    FactorParams,
    cutpoint_centres,
    item_tag_sets,
    normalised_indicator,
    ordinal_draws,
    tag_matrix,
    user_cutpoints,
    user_tag_sets,
)

# The tags of synthetic items with item_features (draw_from_prior).
SYNTHETIC_TAGS = ("Comedy", "Drama", "Horror", "Noir", "War")
# The values of each user_info column of synthetic users with user_features ("": none).
SYNTHETIC_USER_VALUES = ("a", "b", "c", "d", "")

# The rating grid of ordinal synthetic data unless one is given: half stars, 0.5 to 5.
HALF_STARS = np.arange(1, 11) / 2.0


def _grid_scale(grid) -> tuple[np.ndarray, RatingScale]:
    grid = np.asarray(HALF_STARS if grid is None else grid, dtype=float)
    steps = np.diff(grid)
    if len(grid) < 2 or not np.allclose(steps, steps[0]) or steps[0] <= 0:
        raise ConfigError(f"grid must be at least two evenly spaced increasing levels, got "
                          f"{grid.tolist()}", setting="grid")
    return grid, RatingScale(float(grid[0]), float(grid[-1]), float(steps[0]))


def draw_cutpoints(spec, grid, rng, attempts: int = 100_000) -> np.ndarray:
    """Cut points from the ordinal model's prior: the first at its midpoint, the others
    N(midpoint, cutpoint_sd^2) restricted to increasing order (by rejection)."""
    centres = cutpoint_centres(grid)
    for _ in range(attempts):
        draw = centres + np.r_[0.0, spec.cutpoint_sd * rng.standard_normal(len(centres) - 1)]
        if np.all(np.diff(draw) > 0):
            return draw
    raise ConfigError(f"no increasing cut points in {attempts} prior draws: cutpoint_sd "
                      f"{spec.cutpoint_sd} is too wide for this grid", setting="cutpoint_sd")


def draw_user_cutpoints(spec, cutpoints, n_users: int, rng, spread=None) -> np.ndarray:
    """Every user's cut points from the per-user thresholds' prior around ``cutpoints``:
    each gap the global one times exp(N(0, tau^2)), tau = ``spread`` (default
    threshold_sd)."""
    spread = spec.threshold_sd if spread is None else spread
    offsets = spread * rng.standard_normal((n_users, len(cutpoints) - 1))
    return user_cutpoints(cutpoints, offsets)


def _observed(eta, spec, sigma, grid, cutpoints, rng,
              pair_cut=None) -> tuple[np.ndarray, RatingScale]:
    """Ratings around eta: Gaussian (unbounded scale), or the ordinal model's levels
    (``pair_cut``: each rating's own cut points, per-user thresholds)."""
    noise = rng.standard_normal(len(eta))
    if not spec.ordinal:
        return eta + sigma * noise, RatingScale.unbounded()
    grid, scale = _grid_scale(grid)
    cut = cutpoints if pair_cut is None else pair_cut[None]
    return (ordinal_draws(eta[None], cut, sigma, grid, noise[None], spec.ordinal_link)[0],
            scale)


@dataclass(frozen=True)
class SyntheticRatings:
    """Ratings drawn from PMF, with the parameters that generated them."""

    data: RatingsData
    truth: FactorParams  # aligned with data.user_ids / data.item_ids
    spec: object  # the PMFSpec drawn from
    seed: int | None
    # draw_from_prior: the hyperparameters drawn (the state names of
    # engines.gibbs.joint_log_density: sigma, user_precision, user_bias_precision, ...)
    hyper: dict | None = None

    def true_mean(self, user_idx: np.ndarray, item_idx: np.ndarray) -> np.ndarray:
        """E[r_ij] under the true parameters (before noise), on the rating scale."""
        return self.truth.linear_predictor(user_idx, item_idx)


def _check_sizes(n_users, n_items, n_ratings) -> None:
    for name, value in (("n_users", n_users), ("n_items", n_items), ("n_ratings", n_ratings)):
        if not isinstance(value, (int, np.integer)) or value < 1:
            raise ConfigError(f"{name} must be a positive integer, got {value!r}")
    if n_ratings > n_users * n_items * 0.8:
        raise ConfigError(
            f"n_ratings={n_ratings} is too many for {n_users} x {n_items} pairs (max 80%)"
        )
    if n_ratings < max(n_users, n_items):
        raise ConfigError("n_ratings must be at least max(n_users, n_items)")


def _zipf_weights(count: int, exponent: float, rng: np.random.Generator) -> np.ndarray:
    weights = 1.0 / np.arange(1, count + 1) ** exponent
    rng.shuffle(weights)
    return weights / weights.sum()


def _sample_pairs(n_users: int, n_items: int, n_ratings: int, exponent: float,
                  rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Distinct (user, item) pairs with power-law user and item activity; every user and
    item gets at least one rating so the vocabularies match the requested sizes."""
    user_w = _zipf_weights(n_users, exponent, rng)
    item_w = _zipf_weights(n_items, exponent, rng)
    codes = np.unique(
        np.r_[np.arange(n_users) * n_items + rng.integers(0, n_items, n_users),
              rng.integers(0, n_users, n_items) * n_items + np.arange(n_items)]
    )
    for _ in range(100):
        missing = n_ratings - len(codes)
        if missing <= 0:
            break
        draw = int(missing * 1.3) + 16
        new = rng.choice(n_users, draw, p=user_w) * n_items + rng.choice(n_items, draw, p=item_w)
        new = np.setdiff1d(np.unique(new), codes, assume_unique=True)
        new = rng.permutation(new)[:missing]
        codes = np.union1d(codes, new)
    else:
        raise ConfigError("could not draw enough distinct (user, item) pairs; lower n_ratings")
    codes = rng.permutation(codes)
    return codes // n_items, codes % n_items


def make_synthetic(
    n_users: int = 200,
    n_items: int = 150,
    n_ratings: int = 5000,
    spec=None,
    *,
    activity_exponent: float = 0.8,
    mu: float = 3.5,
    rng: int | np.random.Generator | None = 0,
    grid=None,
) -> SyntheticRatings:
    """Ratings r_ij = mu + b_i + c_j + U_i.V_j + sigma * eps on distinct random pairs,
    drawn from the model ``spec`` (a PMFSpec; required).

    U_i ~ N(0, sigma_u^2 I), V_j ~ N(0, sigma_v^2 I), biases from their priors when
    ``spec.biases``; user and item activity follow a Zipf-like law with the given
    exponent (0 = uniform). Ratings are continuous and unbounded (no rounding), exactly
    the Gaussian model. Works up to ~10^7 ratings in memory proportional to n_ratings.

    A spec with ``constrained=True`` draws from constrained PMF: U_i = Y_i + the mean of
    W_k over the items user i rated, Y_i ~ N(0, sigma_u^2 I), W_k ~ N(0, sigma_w^2 I);
    the returned truth holds the effective U.

    A spec with ``likelihood="ordinal"`` draws ratings on ``grid`` (default half stars 0.5
    to 5) from the ordered probit with every cut point at its midpoint (``hyper`` holds
    them): the Gaussian ratings rounded to the grid.
    """
    if not all(hasattr(spec, name) for name in ("sigma_u", "n_factors", "link")):
        raise ConfigError("make_synthetic needs the model to draw from as a PMFSpec, e.g. "
                          "PMFSpec(n_factors=5, sigma=0.5), got "
                          f"{type(spec).__name__}", setting="spec")
    _check_sizes(n_users, n_items, n_ratings)
    if spec.link != "identity":
        raise ConfigError("make_synthetic draws from the identity-link model only")
    seed = int(rng) if isinstance(rng, (int, np.integer)) else None
    check_seed(rng)
    rng = np.random.default_rng(rng)
    d = spec.n_factors
    truth = FactorParams(
        user_factors=spec.sigma_u * rng.standard_normal((n_users, d)),
        item_factors=spec.sigma_v * rng.standard_normal((n_items, d)),
        mu=mu if spec.global_mean else 0.0,
        user_bias=spec.sigma_user_bias * rng.standard_normal(n_users) if spec.biases else None,
        item_bias=spec.sigma_item_bias * rng.standard_normal(n_items) if spec.biases else None,
    )
    users, items = _sample_pairs(n_users, n_items, n_ratings, activity_exponent, rng)
    if spec.constrained:
        import scipy.sparse as sp

        profiles = spec.sigma_w * rng.standard_normal((n_items, d))
        indicator = sp.csr_matrix((np.ones(len(users)), (users, items)),
                                  shape=(n_users, n_items))
        counts = np.asarray(indicator.sum(axis=1)).ravel()
        offsets = (indicator @ profiles) / counts[:, None]
        truth = FactorParams(truth.user_factors + offsets, truth.item_factors, truth.mu,
                             truth.user_bias, truth.item_bias)
    hyper = None
    pair_cut = None
    if spec.ordinal:
        hyper = {"cutpoints": cutpoint_centres(_grid_scale(grid)[0])}
        if spec.user_thresholds:
            hyper["user_cutpoints"] = draw_user_cutpoints(spec, hyper["cutpoints"], n_users,
                                                          rng)
            pair_cut = hyper["user_cutpoints"][users]
    ratings, scale = _observed(truth.linear_predictor(users, items), spec, spec.sigma, grid,
                               hyper and hyper["cutpoints"], rng, pair_cut)
    data = RatingsData(
        users, items, ratings, pd.Index(np.arange(n_users), name="user"),
        pd.Index(np.arange(n_items), name="item"), scale,
        source=f"synthetic(n_users={n_users}, n_items={n_items}, n_ratings={n_ratings}, "
               f"seed={seed})",
    )
    if not math.isfinite(float(ratings.sum())):
        raise RatingsDataError("synthetic ratings are not finite; check the spec's scales")
    return SyntheticRatings(data=data, truth=truth, spec=spec, seed=seed, hyper=hyper)


def wishart_draw(df: float, scale_inverse: np.ndarray, rng) -> np.ndarray:
    """A draw from Wishart(df, S) given S^-1, by Bartlett's decomposition: with
    S = C C^T and A lower triangular, A_kk^2 ~ chi2(df - k), A_kl ~ N(0, 1) below the
    diagonal, C A A^T C^T ~ Wishart(df, S). (scipy's sampler took 0.3 ms for 10 x 10.)"""
    d = len(scale_inverse)
    # S^-1 = R R^T gives S = R^-T R^-1: C = R^-T (upper triangular; Bartlett needs only
    # S = C C^T, not a lower-triangular C).
    root = np.linalg.inv(np.linalg.cholesky(scale_inverse)).T
    bartlett = np.tril(rng.standard_normal((d, d)), -1)
    bartlett[np.diag_indices(d)] = np.sqrt(rng.chisquare(df - np.arange(d)))
    factor = root @ bartlett
    return factor @ factor.T


def _precision_root_inverse(precision, d: int) -> np.ndarray:
    """R with R R^T = Lambda^-1 for a scalar, vector or d x d precision: rows z R^T are
    N(0, Lambda^-1) draws."""
    precision = np.asarray(precision, dtype=float)
    if precision.ndim < 2:
        return np.diag(np.broadcast_to(1.0 / np.sqrt(precision), (d,)))
    return np.linalg.inv(np.linalg.cholesky(precision)).T


def _info_tags(spec, side: str, info):
    """The normalised tag matrix of every row of ``info`` (users or items: their tags from
    ``spec``'s feature columns) and the number of distinct tags."""
    tag_sets = (user_tag_sets(info.index, info, spec.user_feature_columns) if side == "user"
                else item_tag_sets(info.index, info, spec.item_features))
    vocabulary = np.asarray(sorted(set().union(*tag_sets)), dtype=object)
    return tag_matrix(tag_sets, vocabulary, spec.implicit_norm), len(vocabulary)


def draw_from_prior(spec, n_users: int, n_items: int, n_ratings: int, *,
                    activity_exponent: float = 0.8,
                    rng: int | np.random.Generator | None = 0, grid=None) -> SyntheticRatings:
    """One draw of the spec's whole model: hyperparameters from their hyperpriors (noise
    precision ~ Gamma(noise_prior) when the noise is learned; the factor precisions from
    the prior family; bias precisions ~ Gamma(gamma_prior) for hierarchical families),
    then factors, biases, mu ~ N(mu_prior) and Gaussian ratings on power-law pairs.
    ``truth`` holds the parameters and ``hyper`` the hyperparameters (and, with implicit
    feedback, the own factors Y / X, the implicit factors W / Z and their precisions,
    truth holding the effective U = Y + M W, V = X + M' Z). Needs a proper prior
    on mu (``spec.mu_prior``) when the model has a global mean. The ordinal model draws
    its cut points from their prior too (:func:`draw_cutpoints`) and ratings on ``grid``
    (default half stars 0.5 to 5)."""
    check_seed(rng)
    _check_sizes(n_users, n_items, n_ratings)
    if spec.link != "identity":
        raise ConfigError("draw_from_prior draws the identity-link model", setting="link")
    if spec.global_mean and spec.mu_prior is None:
        raise ConfigError("mu has a flat prior, which cannot be drawn from: give the spec "
                          "mu_prior=(mean, sd) or global_mean=False", setting="mu_prior")
    seed = int(rng) if isinstance(rng, (int, np.integer)) else None
    generator = np.random.default_rng(rng)
    d, (a0, b0) = spec.n_factors, spec.gamma_prior
    hyper: dict = {}
    if spec.noise == "learned":
        shape, rate = spec.noise_prior
        hyper["sigma"] = float(1.0 / np.sqrt(generator.gamma(shape, 1.0 / rate)))
    sigma = hyper.get("sigma", spec.sigma)
    sides = {}
    for side, count, fixed_scale, fixed_bias_scale in (
            ("user", n_users, spec.sigma_u, spec.sigma_user_bias),
            ("item", n_items, spec.sigma_v, spec.sigma_item_bias)):
        mean = np.zeros(d)
        if spec.prior == "fixed":
            precision, bias_precision = 1.0 / fixed_scale**2, 1.0 / fixed_bias_scale**2
        else:
            bias_precision = float(generator.gamma(a0, 1.0 / b0))
            if spec.prior == "spherical":
                precision = float(generator.gamma(a0, 1.0 / b0))
            elif spec.prior == "diagonal":
                precision = generator.gamma(a0, 1.0 / b0, d)
            else:  # Wishart(W0 = I, nu0 = d)
                precision = wishart_draw(d, np.eye(d), generator)
                if spec.prior == "normal-wishart":
                    mean = generator.standard_normal(d) @ _precision_root_inverse(
                        spec.nw_beta0 * precision, d).T
                    hyper[f"{side}_mean"] = mean
            hyper[f"{side}_precision"] = precision
            hyper[f"{side}_bias_precision"] = bias_precision
        factors = mean + generator.standard_normal((count, d)) @ (
            _precision_root_inverse(precision, d).T if d else np.zeros((0, 0)))
        bias = generator.standard_normal(count) / np.sqrt(bias_precision)
        sides[side] = (factors, bias if spec.biases else None)
    mu = float(generator.normal(*spec.mu_prior)) if spec.global_mean else 0.0
    users, items = _sample_pairs(n_users, n_items, n_ratings, activity_exponent, generator)
    factors = {"user": sides["user"][0], "item": sides["item"][0]}
    # implicit feedback: the effective factors add M W (users) and M' Z (items), W and Z
    # from their own zero-mean priors; hyper keeps them and their precisions
    item_info = None
    if spec.item_features is not None:  # 0-3 of SYNTHETIC_TAGS per item, uniformly
        item_info = pd.DataFrame({spec.item_features: [
            "|".join(generator.choice(SYNTHETIC_TAGS, generator.integers(0, 4),
                                      replace=False)) for _ in range(n_items)]},
            index=pd.Index(np.arange(n_items), name="item"))
    user_info = None
    if spec.user_features is not None:  # one of SYNTHETIC_USER_VALUES per column, or none
        user_info = pd.DataFrame({column: [
            value if value else None for value in generator.choice(
                SYNTHETIC_USER_VALUES, n_users)] for column in spec.user_feature_columns},
            index=pd.Index(np.arange(n_users), name="user"))
    for side, on, name, rows in (("user", spec.user_additive, "W", n_items),
                                 ("item", spec.item_additive, "Z", n_users)):
        if not on:
            continue
        key = "implicit_precision" if side == "user" else "implicit_item_precision"
        if spec.prior == "fixed":
            precision = 1.0 / spec.sigma_w**2
        elif spec.prior == "spherical":
            precision = float(generator.gamma(a0, 1.0 / b0))
        elif spec.prior == "diagonal":
            precision = generator.gamma(a0, 1.0 / b0, d)
        else:
            precision = wishart_draw(d, np.eye(d), generator)
        if spec.prior != "fixed":
            hyper[key] = precision
        matrix = normalised_indicator(users, items, (n_users, n_items), spec.implicit_norm,
                                      by_item=side == "item")
        if side == "user" and user_info is not None:  # [M | H] against [W; Psi]
            parts = [matrix] if spec.constrained else []
            parts.append(_info_tags(spec, "user", user_info)[0])
            matrix = sp.hstack(parts).tocsr()
            rows = matrix.shape[1]
        if side == "item":  # [M' | G] against [Z; Phi] (item_additive_matrix)
            parts = [matrix] if spec.implicit_items else []
            if item_info is not None:
                parts.append(_info_tags(spec, "item", item_info)[0])
            matrix = sp.hstack(parts).tocsr()
            rows = matrix.shape[1]
        additive = generator.standard_normal((rows, d)) @ _precision_root_inverse(
            precision, d).T
        if (side == "user" and spec.constrained) or (side == "item" and spec.implicit_items):
            hyper[name] = additive[:n_users] if side == "item" else additive[:n_items]
        if side == "user" and user_info is not None:
            hyper["Psi"] = additive[n_items if spec.constrained else 0:]
        if side == "item" and item_info is not None:
            hyper["Phi"] = additive[n_users if spec.implicit_items else 0:]
        hyper["Y" if side == "user" else "X"] = factors[side]
        factors[side] = factors[side] + matrix @ additive
    biases = {"user": sides["user"][1], "item": sides["item"][1]}
    for side, info in (("user", user_info), ("item", item_info)):
        if not spec.tag_biases or info is None:
            continue  # the biases' prior means from the tags: b = own + T beta
        tags, n_tags = _info_tags(spec, side, info)
        beta = spec.sigma_tag_bias * generator.standard_normal(n_tags)
        hyper[f"{side}_tag_bias"] = beta
        biases[side] = biases[side] + tags @ beta
    truth = FactorParams(factors["user"], factors["item"], mu, biases["user"], biases["item"])
    pair_cut = None
    if spec.ordinal:
        hyper["cutpoints"] = draw_cutpoints(spec, _grid_scale(grid)[0], generator)
        if spec.user_thresholds:
            spread = None
            if spec.learned_thresholds:  # 1/tau^2 from its Gamma prior
                shape, rate = spec.threshold_prior
                spread = hyper["threshold_sd"] = float(generator.gamma(shape, 1 / rate))**-0.5
            hyper["user_cutpoints"] = draw_user_cutpoints(spec, hyper["cutpoints"], n_users,
                                                          generator, spread)
            pair_cut = hyper["user_cutpoints"][users]
    ratings, scale = _observed(truth.linear_predictor(users, items), spec, sigma, grid,
                               hyper.get("cutpoints"), generator, pair_cut)
    if not math.isfinite(float(ratings.sum())):
        raise RatingsDataError("ratings drawn from the prior are not finite")
    data = RatingsData(
        users, items, ratings, pd.Index(np.arange(n_users), name="user"),
        pd.Index(np.arange(n_items), name="item"), scale,
        item_info=item_info, user_info=user_info,
        source=f"prior draw(n_users={n_users}, n_items={n_items}, n_ratings={n_ratings}, "
               f"seed={seed})")
    return SyntheticRatings(data=data, truth=truth, spec=spec, seed=seed, hyper=hyper)

"""The PMF model in PyMC, built from a :class:`~bayes_pmf.model.spec.PMFSpec`: the only
module that declares random variables.

    r_k ~ N(eta_k, sigma^2)                     identity link, k over observed ratings
    r_k' ~ N(sigmoid(eta_k), sigma^2)           logistic link, r' = (r - r_min)/(r_max - r_min)
    eta_k = mu + b[user_k] + c[item_k] + U[user_k] . V[item_k],    mu ~ Flat

and the spec's priors, written as the Gibbs sampler has them:

    prior="fixed"      U[i] ~ N(0, sigma_u^2 I), V[j] ~ N(0, sigma_v^2 I),
                       b[i] ~ N(0, sigma_b^2), c[j] ~ N(0, sigma_c^2)
    prior="spherical"  lambda_u, lambda_v ~ Gamma(a0, b0): U[i] ~ N(0, I / lambda_u), ...;
                       the bias precisions tau_b, tau_c ~ Gamma(a0, b0)
    prior="diagonal"   lambda_u[k], lambda_v[k] ~ Gamma(a0, b0), one per latent dimension
    noise="learned"    1/sigma^2 ~ Gamma(spec.noise_prior)
    constrained=True   U[i] = Y[i] + sum_k I_ik W[k] / n_i^a (I: which items user i rated,
                       n_i how many; a = 1, or 1/2 with implicit_norm="sqrt"; a sparse
                       constant, so this stays O(ratings)), Y[i] with the user prior,
                       W[k] ~ N(0, sigma_w^2 I) under fixed priors, else with its own
                       zero-mean prior of the family (sigma_w, sigma_w_latent or
                       precision_w as for U)
    implicit_items=True  V[j] = X[j] + sum_i I_ij Z[i] / m_j^a likewise (sigma_z, ...)
    item_features=col  V[j] = X[j] (+ the Z part) + sum_g G_jg Phi[g] / k_j^a over item j's
                       k_j tags; Z's and Phi's rows are one zero-mean block
                       ("item_additive", kept as Z and Phi) under Z's prior
    user_features=cols U[i] = Y[i] (+ the W part) + sum_g H_ig Psi[g] / h_i^a over user i's
                       tags; [W; Psi] likewise one block ("user_additive") under W's prior

    prior="wishart"    Lambda_U, Lambda_V ~ Wishart(I, d) by Bartlett's decomposition
                       (chi-square diagonal, normal lower triangle: NUTS samples it),
                       U[i] ~ MvNormal(0, precision Lambda_U); bias precisions Gamma(a0, b0)
    prior="normal-wishart"  as "wishart" with U[i] ~ MvNormal(mu_U, precision Lambda_U),
                       mu_U ~ MvNormal(0, precision beta0 Lambda_U)
    mu_prior=(m0, s0)  mu ~ N(m0, s0^2) instead of the flat prior
    likelihood="ordinal"  level_k ~ OrderedProbit(eta_k, cutpoints, sigma) on the rating
                       grid's levels; cutpoints = [c_1 (fixed midpoint), free...], the
                       free ones N(midpoints, cutpoint_sd^2) under PyMC's ordered
                       transform, with a potential keeping them above c_1;
                       ordinal_link="logit": OrderedLogistic(eta_k / sigma,
                       cutpoints / sigma), the ordered logit of scale sigma

The posterior keeps the learned scales as sigma_u, sigma_v (sigma_u_latent, sigma_v_latent
for "diagonal"; sqrt(trace(Lambda^-1)/d) for the Wishart families), sigma_w and sigma_z
for implicit feedback's W and Z (spherical and Wishart families), sigma_user_bias,
sigma_item_bias and sigma, the names the Gibbs sampler uses; the joint density is the
sampler's (:func:`bayes_pmf.engines.gibbs.joint_log_density`, checked by the tests).

The likelihood touches observed pairs only (``U[user_idx]``, ``V[item_idx]``), never a
dense users x items tensor. Dims are ``user``, ``item``, ``latent`` and ``obs``; the coords
of ``user`` and ``item`` are the original ids. With fixed scales the model's log-density
is -E/sigma^2 + const (E: :func:`bayes_pmf.model.params.objective`), which the tests check.

:func:`point_from_params` and :func:`params_from_point` convert between
:class:`~bayes_pmf.model.params.FactorParams` and PyMC points, in one place.
"""

from __future__ import annotations

import numpy as np
import pymc as pm
import pytensor.tensor as pt

from ..errors import ConfigError
from .params import (
    FactorParams,
    cutpoint_centres,
    item_additive_matrix,
    item_tag_vocabulary,
    rated_items_matrix,
    rating_grid,
    rating_levels,
    tag_bias_matrix,
    user_additive_matrix,
    user_tag_vocabulary,
)

# PyMC names of the random variables holding point-estimate parameters, and of the
# other learned quantities a result keeps (scales; the ordinal model's cut points).
PARAMETER_NAMES = ("U", "V", "mu", "user_bias", "item_bias", "Y", "W", "X", "Z", "Phi",
                   "Psi", "user_tag_bias", "item_tag_bias")
SCALE_NAMES = ("sigma", "sigma_u", "sigma_v", "sigma_user_bias", "sigma_item_bias",
               "sigma_u_latent", "sigma_v_latent", "sigma_w", "sigma_z", "cutpoints",
               "user_cutpoints", "threshold_sd")


def _bias_mean(train, spec, side: str):
    """A side's bias prior mean: 0, or with tag biases T beta, beta ~ N(0,
    sigma_tag_bias^2) per tag (kept as ``user_tag_bias`` / ``item_tag_bias``)."""
    tags = tag_bias_matrix(train, spec, side)
    if tags is None:
        return 0.0
    beta = pm.Normal(f"{side}_tag_bias", 0.0, spec.sigma_tag_bias, dims=f"{side}_tag")
    return pt.dot(tags.toarray(), beta)


def _precision_scale(spec, name: str, dims: str | None = None):
    """A Gamma(spec.gamma_prior) precision and the prior sd it implies (kept as ``name``)."""
    a0, b0 = spec.gamma_prior
    precision = pm.Gamma(f"{name}_precision", alpha=a0, beta=b0, dims=dims)
    return pm.Deterministic(name, 1.0 / pt.sqrt(precision), dims=dims)


def _factor_scale(spec, side: str):
    fixed = {"u": spec.sigma_u, "v": spec.sigma_v, "w": spec.sigma_w, "z": spec.sigma_w}[side]
    if spec.prior == "fixed":
        return fixed
    if spec.prior == "spherical":
        return _precision_scale(spec, f"sigma_{side}")
    return _precision_scale(spec, f"sigma_{side}_latent", dims="latent")


def _wishart_precision(spec, side: str):
    """Lambda ~ Wishart(W0 = I, nu0 = d), written by Bartlett's decomposition so that NUTS
    can sample it: Lambda = L L^T with L lower triangular, L_kk^2 ~ ChiSquared(d - k)
    (k = 0, ..., d - 1) and L_kl ~ N(0, 1) below the diagonal, all independent. Keeps
    the prior sd of a factor entry, sqrt(trace(Lambda^-1) / d), as ``sigma_<side>``
    (the Gibbs sampler's name)."""
    d = spec.n_factors
    squares = pm.ChiSquared(f"bartlett_{side}_diag", nu=d - np.arange(d), dims="latent")
    below = pm.Normal(f"bartlett_{side}_lower", 0.0, 1.0, shape=d * (d - 1) // 2)
    rows, cols = np.tril_indices(d, -1)
    root = pt.zeros((d, d))
    root = pt.set_subtensor(root[np.arange(d), np.arange(d)], pt.sqrt(squares))
    root = pt.set_subtensor(root[rows, cols], below)
    precision = pm.Deterministic(f"precision_{side}", root @ root.T)
    pm.Deterministic(f"sigma_{side}", pt.sqrt(pt.trace(pt.linalg.inv(
        precision)) / d))
    return precision


PARAMETERIZATIONS = ("centered", "noncentered")


def _factor_matrix(spec, side: str, dims: tuple[str, str], name: str,
                   zero_mean: bool = False, parameterization: str = "centered"):
    """The factor matrix of one side under the spec's prior: rows N(mean, Lambda^-1)
    (mean 0 with ``zero_mean``, as for constrained PMF's W). ``"noncentered"`` writes the
    same distribution through standard normal ``<name>_raw`` (rows e_i): scale * e_i, or
    mean + L^-T e_i with Lambda = L L^T for the Wishart families, kept as ``name``."""
    wishart = spec.prior in ("wishart", "normal-wishart")
    if parameterization == "centered":
        if not wishart:
            return pm.Normal(name, 0.0, _factor_scale(spec, side), dims=dims)
        precision = _wishart_precision(spec, side)
        mean = np.zeros(spec.n_factors)
        if spec.prior == "normal-wishart" and not zero_mean:  # mu_U ~ N(0, (beta0 Lambda)^-1)
            mean = pm.MvNormal(f"mean_{side}", mu=np.zeros(spec.n_factors),
                               tau=spec.nw_beta0 * precision, dims="latent")
        return pm.MvNormal(name, mu=mean, tau=precision, dims=dims)
    raw = pm.Normal(f"{name}_raw", 0.0, 1.0, dims=dims)
    if not wishart:
        return pm.Deterministic(name, _factor_scale(spec, side) * raw, dims=dims)
    precision = _wishart_precision(spec, side)
    root = pt.linalg.cholesky(precision)
    # row i: L^-T e_i, whose covariance is (L L^T)^-1 = Lambda^-1
    factors = pt.linalg.solve_triangular(root.T, raw.T, lower=False).T
    if spec.prior == "normal-wishart" and not zero_mean:
        mean_raw = pm.Normal(f"mean_{side}_raw", 0.0, 1.0, dims="latent")
        mean = pt.linalg.solve_triangular(root.T, mean_raw, lower=False) / np.sqrt(
            spec.nw_beta0)
        pm.Deterministic(f"mean_{side}", mean, dims="latent")
        factors = factors + mean
    return pm.Deterministic(name, factors, dims=dims)


def _implicit_factors(train, spec, side: str, parameterization: str):
    """U = Y + M W (``side="user"``, constrained PMF) or V = X + M' Z (``"item"``): own
    factors with the side's prior plus the normalised sum of the implicit factors (W's
    and Z's own zero-mean prior) over the items the user rated / the users who rated
    the item; the effective factors are kept as U / V."""
    from pytensor import sparse as pts

    own_dims, other_dims = (("user", "latent"), ("item", "latent"))
    if side == "item":
        own_dims, other_dims = other_dims, own_dims
    own_name, implicit_name, short, implicit_short = (
        ("Y", "W", "u", "w") if side == "user" else ("X", "Z", "v", "z"))
    own = _factor_matrix(spec, short, own_dims, own_name, parameterization=parameterization)
    features = spec.user_features if side == "user" else spec.item_features
    if features is not None:
        # [W; Psi] ([Z; Phi]) under one zero-mean prior, against [M | H] ([M' | G]):
        # user_additive_matrix / item_additive_matrix
        block = f"{side}_additive"
        implicit = _factor_matrix(spec, implicit_short, (f"{block}_row", "latent"), block,
                                  zero_mean=True, parameterization=parameterization)
        feedback = spec.constrained if side == "user" else spec.implicit_items
        first = (train.n_items if side == "user" else train.n_users) if feedback else 0
        if feedback:
            pm.Deterministic(implicit_name, implicit[:first], dims=other_dims)
        pm.Deterministic("Psi" if side == "user" else "Phi", implicit[first:],
                         dims=(f"{side}_tag", "latent"))
        matrix = (user_additive_matrix if side == "user" else item_additive_matrix)(
            train, spec)
    else:
        implicit = _factor_matrix(spec, implicit_short, other_dims, implicit_name,
                                  zero_mean=True, parameterization=parameterization)
        matrix = rated_items_matrix(train, norm=spec.implicit_norm, by_item=side == "item")
    indicator = pts.as_sparse_variable(matrix)
    return pm.Deterministic("U" if side == "user" else "V",
                            own + pts.structured_dot(indicator, implicit), dims=own_dims)


def _bias_scale(spec, name: str, fixed: float):
    return fixed if spec.prior == "fixed" else _precision_scale(spec, name)


def _ordinal_rating(train, spec, eta, user_idx, parameterization: str = "centered") -> None:
    """The ordered probit on the grid's levels (the Gibbs sampler's cut-point prior: the
    first cut point fixed at its midpoint, the rest N(midpoint, cutpoint_sd^2) and
    increasing). Per-user thresholds: each user's gaps are the global ones times
    exp(offset), offsets ~ N(0, tau^2) (``user_cutpoint_offsets``; tau = threshold_sd, or
    learned under the hierarchical families), the users' cut points kept as
    ``user_cutpoints``."""
    grid = rating_grid(train.scale)
    centres = cutpoint_centres(grid)
    cutpoints = pt.as_tensor_variable(centres[:1])
    if len(centres) > 1:
        free = pm.Normal("cutpoints_free", mu=centres[1:], sigma=spec.cutpoint_sd,
                         transform=pm.distributions.transforms.ordered,
                         initval=centres[1:], shape=len(centres) - 1)
        pm.Potential("cutpoints_above_first",
                     pt.switch(pt.gt(free[0], centres[0]), 0.0, -np.inf))
        cutpoints = pt.concatenate([cutpoints, free])
    cutpoints = pm.Deterministic("cutpoints", cutpoints, dims="cutpoint")
    levels = pm.Data("observed_level", rating_levels(train.rating, grid), dims="obs")
    seen = cutpoints
    if spec.user_thresholds:
        spread = spec.threshold_sd
        if spec.learned_thresholds:  # 1/tau^2 ~ Gamma(threshold_prior)
            precision = pm.Gamma("threshold_precision", alpha=spec.threshold_prior[0],
                                 beta=spec.threshold_prior[1])
            spread = pm.Deterministic("threshold_sd", 1.0 / pt.sqrt(precision))
        if parameterization == "noncentered":
            raw = pm.Normal("user_cutpoint_offsets_raw", 0.0, 1.0,
                            dims=("user", "cutpoint_gap"))
            offsets = pm.Deterministic("user_cutpoint_offsets", spread * raw,
                                       dims=("user", "cutpoint_gap"))
        else:
            offsets = pm.Normal("user_cutpoint_offsets", 0.0, spread,
                                dims=("user", "cutpoint_gap"))
        gaps = pt.diff(cutpoints)[None, :] * pt.exp(offsets)
        first = pt.zeros((train.n_users, 1)) + cutpoints[0]
        user_cut = pm.Deterministic(
            "user_cutpoints", pt.concatenate([first, first + pt.cumsum(gaps, axis=1)], axis=1),
            dims=("user", "cutpoint"))
        seen = user_cut[user_idx]
    if spec.ordinal_link == "logit":  # F((theta - eta) / sigma), F the logistic cdf
        pm.OrderedLogistic("rating", eta=eta / spec.sigma, cutpoints=seen / spec.sigma,
                           compute_p=False, observed=levels, dims="obs", shape=eta.shape)
        return
    pm.OrderedProbit("rating", eta=eta, cutpoints=seen, sigma=spec.sigma,
                     compute_p=False, observed=levels, dims="obs", shape=eta.shape)


def build_model(train, spec, *, parameterization: str = "centered") -> pm.Model:
    """The PyMC model of ``spec`` on the training ratings ``train`` (a RatingsData).
    ``parameterization="noncentered"`` writes every factor matrix through standard normal
    draws (``<name>_raw``; the factors are kept under their names): the same model,
    which NUTS explores better where the factors' prior scale and the factors form a
    funnel (the default model's implicit feedback: centred, NUTS under-sampled large
    sigma_u; benchmarks/README.md, "The default model")."""
    if parameterization not in PARAMETERIZATIONS:
        raise ConfigError(f"parameterization must be one of {PARAMETERIZATIONS}, got "
                          f"{parameterization!r}", setting="parameterization")
    if spec.link == "logistic" and not train.scale.bounded:
        raise ConfigError("the logistic link needs a bounded rating scale (min and max)",
                          setting="link")
    coords = {
        "user": train.user_ids.to_numpy(),
        "item": train.item_ids.to_numpy(),
        "latent": np.arange(spec.n_factors),
        "obs": np.arange(train.n_ratings),
    }
    if spec.ordinal:
        coords["cutpoint"] = np.arange(len(rating_grid(train.scale)) - 1)
        if spec.user_thresholds:
            coords["cutpoint_gap"] = np.arange(len(coords["cutpoint"]) - 1)
    if spec.item_features is not None:
        coords["item_tag"] = item_tag_vocabulary(train, spec.item_features)
        coords["item_additive_row"] = np.arange(
            (train.n_users if spec.implicit_items else 0) + len(coords["item_tag"]))
    if spec.user_features is not None:
        coords["user_tag"] = user_tag_vocabulary(train, spec.user_feature_columns)
        coords["user_additive_row"] = np.arange(
            (train.n_items if spec.constrained else 0) + len(coords["user_tag"]))
    target = train.scale.to_unit(train.rating) if spec.link == "logistic" else train.rating
    with pm.Model(coords=coords) as model:
        user_idx = pm.Data("user_idx", train.user_idx, dims="obs")
        item_idx = pm.Data("item_idx", train.item_idx, dims="obs")
        observed = pm.Data("observed_rating", target, dims="obs")

        if spec.noise == "learned":
            precision = pm.Gamma("noise_precision", alpha=spec.noise_prior[0],
                                 beta=spec.noise_prior[1])
            sigma = pm.Deterministic("sigma", 1.0 / pt.sqrt(precision))
        else:
            sigma = spec.sigma
        eta = pt.zeros(user_idx.shape, dtype="float64")
        if spec.global_mean:
            eta = eta + (pm.Flat("mu") if spec.mu_prior is None
                         else pm.Normal("mu", *spec.mu_prior))
        if spec.biases:
            user_bias = pm.Normal("user_bias", _bias_mean(train, spec, "user"),
                                  _bias_scale(spec, "sigma_user_bias", spec.sigma_user_bias),
                                  dims="user")
            item_bias = pm.Normal("item_bias", _bias_mean(train, spec, "item"),
                                  _bias_scale(spec, "sigma_item_bias", spec.sigma_item_bias),
                                  dims="item")
            eta = eta + user_bias[user_idx] + item_bias[item_idx]
        if spec.n_factors > 0:
            U = _implicit_factors(train, spec, "user", parameterization) if spec.user_additive \
                else _factor_matrix(spec, "u", ("user", "latent"), "U",
                                    parameterization=parameterization)
            V = _implicit_factors(train, spec, "item", parameterization) \
                if spec.item_additive else _factor_matrix(spec, "v", ("item", "latent"), "V",
                                                           parameterization=parameterization)
            eta = eta + (U[user_idx] * V[item_idx]).sum(axis=-1)
        if spec.ordinal:
            _ordinal_rating(train, spec, eta, user_idx, parameterization)
            return model
        mean = pm.math.sigmoid(eta) if spec.link == "logistic" else eta
        pm.Normal("rating", mu=mean, sigma=sigma, observed=observed, dims="obs",
                  shape=user_idx.shape)
    return model


def point_from_params(model: pm.Model, params: FactorParams, spec
                      ) -> dict[str, np.ndarray]:
    """A PyMC point (value-variable names) holding FactorParams' values; learned scales
    take the model's initial values."""
    point = {}
    if spec.n_factors > 0:
        # implicit feedback: start at own = the effective factors, implicit part 0
        for side, effective, own, implicit in (
                ("user", params.user_factors, "Y", "W"), ("item", params.item_factors, "X", "Z")):
            name = "U" if side == "user" else "V"
            if own in model.named_vars:
                point[own] = np.asarray(effective, dtype=float)
                block = f"{side}_additive"  # [W; Psi] or [Z; Phi]
                if block in model.named_vars:
                    implicit = block
                point[implicit] = np.zeros(
                    (len(model.coords[f"{block}_row"]), spec.n_factors)
                    if implicit == block else
                    (params.item_factors if side == "user" else params.user_factors).shape)
            else:
                point[name] = np.asarray(effective, dtype=float)
    if spec.global_mean:
        point["mu"] = np.asarray(params.mu, dtype=float)
    if spec.biases:
        point["user_bias"] = np.asarray(params.user_bias, dtype=float)
        point["item_bias"] = np.asarray(params.item_bias, dtype=float)
    for name, value in model.initial_point().items():
        point.setdefault(name, value)
    return _noncentered_point(model, point, spec)


_FACTOR_SIDES = {"U": "u", "V": "v", "Y": "u", "W": "w", "X": "v", "Z": "z",
                 "item_additive": "z", "user_additive": "w"}


def _noncentered_point(model: pm.Model, point: dict, spec) -> dict:
    """A point whose factor values sit under their names, re-expressed for a
    noncentered model: e = (factors - mean) / scale, or (factors - mean) L for the
    Wishart families (Lambda = L L^T), with the hyperparameters at the point's values."""
    for name, short in _FACTOR_SIDES.items():
        if f"{name}_raw" not in model.named_vars or name not in point:
            continue
        values = np.asarray(point.pop(name), dtype=float)
        wishart = spec.prior in ("wishart", "normal-wishart")
        scale_name = f"precision_{short}" if wishart else (
            f"sigma_{short}_latent" if spec.prior == "diagonal" else f"sigma_{short}")
        hyper = {}
        for extra in (scale_name, f"mean_{short}"):
            if extra in model.named_vars:
                function = model.compile_fn(model.replace_rvs_by_values([model[extra]])[0],
                                            inputs=model.value_vars, on_unused_input="ignore")
                hyper[extra] = np.asarray(function(
                    {v.name: point[v.name] for v in model.value_vars}))
        mean = hyper.get(f"mean_{short}", 0.0) if short in ("u", "v") else 0.0
        if wishart:
            raw = (values - mean) @ np.linalg.cholesky(hyper[scale_name])
        else:
            raw = values / (hyper[scale_name] if scale_name in hyper
                            else _factor_scale(spec, short))  # the fixed family's number
        point[f"{name}_raw"] = raw
    return point


def params_from_point(point: dict, spec, n_users: int, n_items: int) -> FactorParams:
    """The FactorParams of a PyMC point (or a dict of posterior arrays of one draw)."""
    d = spec.n_factors
    return FactorParams(
        user_factors=np.asarray(point["U"]) if d else np.zeros((n_users, 0)),
        item_factors=np.asarray(point["V"]) if d else np.zeros((n_items, 0)),
        mu=float(point["mu"]) if spec.global_mean else 0.0,
        user_bias=np.asarray(point["user_bias"]) if spec.biases else None,
        item_bias=np.asarray(point["item_bias"]) if spec.biases else None,
    )

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
    constrained=True   U[i] = Y[i] + sum_k I_ik W[k] / sum_k I_ik,  Y[i] ~ N(0, sigma_u^2 I),
                       W[k] ~ N(0, sigma_w^2 I) (I: which items user i rated; a sparse
                       constant, so this stays O(ratings))

The posterior keeps the learned scales as sigma_u, sigma_v (sigma_u_latent, sigma_v_latent
for "diagonal"), sigma_user_bias, sigma_item_bias and sigma, the names the Gibbs sampler
uses. The Wishart families have no PyMC twin yet: building them raises ConfigError.

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
from .params import FactorParams, rated_items_matrix

# PyMC names of the random variables holding point-estimate parameters.
PARAMETER_NAMES = ("U", "V", "mu", "user_bias", "item_bias", "Y", "W")
SCALE_NAMES = ("sigma", "sigma_u", "sigma_v", "sigma_user_bias", "sigma_item_bias",
               "sigma_u_latent", "sigma_v_latent")


def _precision_scale(spec, name: str, dims: str | None = None):
    """A Gamma(spec.gamma_prior) precision and the prior sd it implies (kept as ``name``)."""
    a0, b0 = spec.gamma_prior
    precision = pm.Gamma(f"{name}_precision", alpha=a0, beta=b0, dims=dims)
    return pm.Deterministic(name, 1.0 / pt.sqrt(precision), dims=dims)


def _factor_scale(spec, side: str):
    fixed = spec.sigma_u if side == "u" else spec.sigma_v
    if spec.prior == "fixed":
        return fixed
    if spec.prior == "spherical":
        return _precision_scale(spec, f"sigma_{side}")
    return _precision_scale(spec, f"sigma_{side}_latent", dims="latent")


def _bias_scale(spec, name: str, fixed: float):
    return fixed if spec.prior == "fixed" else _precision_scale(spec, name)


def build_model(train, spec) -> pm.Model:
    """The PyMC model of ``spec`` on the training ratings ``train`` (a RatingsData)."""
    if spec.prior in ("wishart", "normal-wishart"):
        raise ConfigError(f"prior={spec.prior!r} has no PyMC twin yet; sample it with "
                          "sample_gibbs, or use prior 'fixed', 'spherical' or 'diagonal' "
                          "with the PyMC engines", setting="prior")
    if spec.link == "logistic" and not train.scale.bounded:
        raise ConfigError("the logistic link needs a bounded rating scale (min and max)",
                          setting="link")
    coords = {
        "user": train.user_ids.to_numpy(),
        "item": train.item_ids.to_numpy(),
        "latent": np.arange(spec.n_factors),
        "obs": np.arange(train.n_ratings),
    }
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
            eta = eta + pm.Flat("mu")
        if spec.biases:
            user_bias = pm.Normal("user_bias", 0.0, _bias_scale(spec, "sigma_user_bias",
                                                                spec.sigma_user_bias),
                                  dims="user")
            item_bias = pm.Normal("item_bias", 0.0, _bias_scale(spec, "sigma_item_bias",
                                                                spec.sigma_item_bias),
                                  dims="item")
            eta = eta + user_bias[user_idx] + item_bias[item_idx]
        if spec.n_factors > 0:
            u_scale = _factor_scale(spec, "u")
            if spec.constrained:
                from pytensor import sparse as pts

                Y = pm.Normal("Y", 0.0, u_scale, dims=("user", "latent"))
                W = pm.Normal("W", 0.0, spec.sigma_w, dims=("item", "latent"))
                indicator = pts.as_sparse_variable(rated_items_matrix(train))
                U = pm.Deterministic("U", Y + pts.structured_dot(indicator, W),
                                     dims=("user", "latent"))
            else:
                U = pm.Normal("U", 0.0, u_scale, dims=("user", "latent"))
            V = pm.Normal("V", 0.0, _factor_scale(spec, "v"), dims=("item", "latent"))
            eta = eta + (U[user_idx] * V[item_idx]).sum(axis=-1)
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
        point["V"] = np.asarray(params.item_factors, dtype=float)
        if "Y" in model.named_vars:  # constrained PMF: start at Y = U, W = 0
            point["Y"] = np.asarray(params.user_factors, dtype=float)
            point["W"] = np.zeros_like(point["V"])
        else:
            point["U"] = np.asarray(params.user_factors, dtype=float)
    if spec.global_mean:
        point["mu"] = np.asarray(params.mu, dtype=float)
    if spec.biases:
        point["user_bias"] = np.asarray(params.user_bias, dtype=float)
        point["item_bias"] = np.asarray(params.item_bias, dtype=float)
    for name, value in model.initial_point().items():
        point.setdefault(name, value)
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

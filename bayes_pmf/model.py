"""The PMF model in PyMC: the only module that declares random variables.

    r_k ~ N(eta_k, sigma^2)                     identity link, k over observed ratings
    r_k' ~ N(sigmoid(eta_k), sigma^2)           logistic link, r' = (r - r_min)/(r_max - r_min)
    eta_k = mu + b[user_k] + c[item_k] + U[user_k] . V[item_k]
    U[i] ~ N(0, sigma_u^2 I),  V[j] ~ N(0, sigma_v^2 I),  b[i] ~ N(0, sigma_b^2),
    c[j] ~ N(0, sigma_c^2),  mu ~ Flat

The likelihood touches observed pairs only (``U[user_idx]``, ``V[item_idx]``), never a
dense users x items tensor. Dims are ``user``, ``item``, ``latent`` and ``obs``; the coords
of ``user`` and ``item`` are the original ids. The index arrays and ratings are
``pm.Data`` so the same model can be pointed at held-out pairs with ``pm.set_data``.

With ``adaptive=True`` (or ``"spherical"``) the scales sigma, sigma_u, sigma_v (and the
bias scales) get HalfNormal hyperpriors centred on the spec's values, so the model learns
its own regularisation (the PMF paper's adaptive priors); ``adaptive="diagonal"`` learns
one prior sd per latent dimension instead (``sigma_u_latent``, ``sigma_v_latent``).

With ``constrained=True`` (constrained PMF, the paper's section 4):

    U[i] = Y[i] + sum_k I_ik W[k] / sum_k I_ik,   Y[i] ~ N(0, sigma_u^2 I), W[k] ~ N(0, sigma_w^2 I)

with I the training indicator (which items each user rated): users who rated similar
sets of items get similar factors, which helps users with few ratings most. The
row-normalised indicator is a sparse constant, so this stays O(ratings).

With fixed scales, the model's log-density is -E/sigma^2 + const, where E is
:func:`bayes_pmf.objective.objective` — the property the tests check.
"""

from __future__ import annotations

import numpy as np
import pymc as pm
import pytensor.tensor as pt

from .data import RatingsData
from .errors import ConfigError
from .priors import PMFSpec


def _scale(name: str, value: float, adaptive: bool):
    if adaptive:
        # HalfNormal with the spec's value as its scale: weakly informative, and the
        # spec's setting is a typical value rather than a hard choice.
        return pm.HalfNormal(name, sigma=2.0 * value)
    return value


NOISE_PRIOR = (1.0, 1.0)  # Gamma(shape, rate) on the noise precision 1/sigma^2


ADAPTIVE = (False, True, "spherical", "diagonal")


def _factor_scale(name: str, value: float, adaptive) -> object:
    if adaptive == "diagonal":
        return pm.HalfNormal(f"{name}_latent", sigma=2.0 * value, dims="latent")
    return _scale(name, value, bool(adaptive))


def build_model(train: RatingsData, spec: PMFSpec, *, adaptive: bool | str = False,
                learn_sigma: bool = False,
                noise_prior: tuple[float, float] = NOISE_PRIOR,
                constrained: bool = False, sigma_w: float = 0.3) -> pm.Model:
    """The PyMC model of ``spec`` on the training ratings (see the module docstring).

    ``learn_sigma`` gives the noise precision 1/sigma^2 a Gamma(``noise_prior``) prior,
    the conjugate prior the Gibbs sampler uses, so both sample the same posterior.
    """
    if adaptive not in ADAPTIVE:
        raise ConfigError(f"adaptive must be one of {ADAPTIVE}, got {adaptive!r}")
    if constrained and spec.n_factors == 0:
        raise ConfigError("constrained PMF needs latent factors (n_factors >= 1)")
    if not sigma_w > 0:
        raise ConfigError(f"sigma_w must be a positive number, got {sigma_w!r}")
    if spec.link == "logistic" and not train.scale.bounded:
        raise ConfigError("the logistic link needs a bounded rating scale (min and max)")
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

        if learn_sigma:
            precision = pm.Gamma("noise_precision", alpha=noise_prior[0], beta=noise_prior[1])
            sigma = pm.Deterministic("sigma", 1.0 / pt.sqrt(precision))
        else:
            sigma = _scale("sigma", spec.sigma, adaptive)
        eta = pt.zeros(user_idx.shape, dtype="float64")
        if spec.global_mean:
            eta = eta + pm.Flat("mu")
        if spec.biases:
            user_bias = pm.Normal("user_bias", 0.0,
                                  _scale("sigma_user_bias", spec.sigma_user_bias, adaptive),
                                  dims="user")
            item_bias = pm.Normal("item_bias", 0.0,
                                  _scale("sigma_item_bias", spec.sigma_item_bias, adaptive),
                                  dims="item")
            eta = eta + user_bias[user_idx] + item_bias[item_idx]
        if spec.n_factors > 0:
            u_scale = _factor_scale("sigma_u", spec.sigma_u, adaptive)
            if constrained:
                from pytensor import sparse as pts

                from .constrained import rated_items_matrix

                Y = pm.Normal("Y", 0.0, u_scale, dims=("user", "latent"))
                W = pm.Normal("W", 0.0, _scale("sigma_w", sigma_w, bool(adaptive)),
                              dims=("item", "latent"))
                indicator = pts.as_sparse_variable(rated_items_matrix(train))
                U = pm.Deterministic("U", Y + pts.structured_dot(indicator, W),
                                     dims=("user", "latent"))
            else:
                U = pm.Normal("U", 0.0, u_scale, dims=("user", "latent"))
            V = pm.Normal("V", 0.0, _factor_scale("sigma_v", spec.sigma_v, adaptive),
                          dims=("item", "latent"))
            eta = eta + (U[user_idx] * V[item_idx]).sum(axis=-1)
        mean = pm.math.sigmoid(eta) if spec.link == "logistic" else eta
        pm.Normal("rating", mu=mean, sigma=sigma, observed=observed, dims="obs",
                  shape=user_idx.shape)
    return model


def point_from_params(model: pm.Model, params, spec: PMFSpec) -> dict[str, np.ndarray]:
    """A PyMC point (value-variable names) holding FactorParams' values."""
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
    # Adaptive scales live on the log scale in PyMC's value space.
    initial = model.initial_point()
    for name, value in initial.items():
        if name not in point:
            point[name] = value
    return point

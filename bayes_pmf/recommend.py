"""Recommendations that use the posterior, and similar items by latent vectors.

Scores for an unseen item j of user i (S posterior draws; one for ALS/MAP):

* ``mean``: posterior-mean predicted rating;
* ``prob``: P(r_ij >= threshold) = mean_s Phi((E_s[r_ij] - t') / sigma_s), with t' the
  threshold less half a rating step (a continuous model scoring discrete ratings);
* ``quantile``: the q-quantile of the expected rating over draws (q < 0.5 pessimistic,
  q > 0.5 optimistic);
* ``thompson``: the expected rating under ONE random posterior draw (exploration).

Items the user rated in training are excluded (they are read from the result's own
constant_data, so a saved result is enough). Unknown users get prior-mean (bias-only)
recommendations, flagged ``cold_user``.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.special import ndtr

from .errors import ConfigError
from .results import PMFResult

SCORES = ("mean", "prob", "quantile", "thompson")


def seen_items(result: PMFResult, user) -> np.ndarray:
    """Item indices the user rated in the result's training data (empty if unknown)."""
    position = result.user_ids.get_indexer([user])[0]
    if position < 0:
        return np.empty(0, dtype=np.int64)
    constant = result.idata.constant_data
    mask = constant["user_idx"].to_numpy() == position
    return np.unique(constant["item_idx"].to_numpy()[mask])


def _sigma_draws(result: PMFResult) -> np.ndarray:
    if "sigma" in result.draws:
        return result.draws["sigma"]
    return np.full(result.n_samples, result.spec.sigma)


def score_items(result: PMFResult, user, *, score: str = "mean", threshold: float = 4.0,
                quantile: float = 0.1, rng=0) -> np.ndarray:
    """The chosen score of every training item for ``user`` (aligned with item_ids)."""
    if score not in SCORES:
        raise ConfigError(f"score must be one of {SCORES}, got {score!r}")
    items = result.item_ids
    users = np.full(len(items), user, dtype=object)
    generator = np.random.default_rng(rng)
    if score == "thompson":
        sample = generator.integers(result.n_samples, size=1)
        return result.mean_draws(users, items, unknown="prior", samples=sample)[0]
    draws = result.mean_draws(users, items, unknown="prior")
    if score == "mean":
        return draws.mean(axis=0)
    if score == "quantile":
        if not 0 < quantile < 1:
            raise ConfigError(f"quantile must be in (0, 1), got {quantile!r}")
        return np.quantile(draws, quantile, axis=0)
    half_step = 0.5 * result.scale.step if result.scale.step else 0.0
    sigma = _sigma_draws(result)[:, None]
    return ndtr((draws - (threshold - half_step)) / sigma).mean(axis=0)


def recommend(result: PMFResult, user, *, n: int = 10, score: str = "mean",
              threshold: float = 4.0, quantile: float = 0.1, item_info: pd.DataFrame | None = None,
              rng=0) -> pd.DataFrame:
    """Top-``n`` unseen items for one user, best first, with the original item ids."""
    if not isinstance(n, (int, np.integer)) or n < 1:
        raise ConfigError(f"n must be a positive integer, got {n!r}")
    scores = score_items(result, user, score=score, threshold=threshold, quantile=quantile,
                         rng=rng)
    candidates = np.ones(len(scores), dtype=bool)
    candidates[seen_items(result, user)] = False
    order = np.flatnonzero(candidates)[np.argsort(-scores[candidates], kind="stable")][:n]
    frame = pd.DataFrame({"rank": np.arange(1, len(order) + 1),
                          "item": result.item_ids[order], "score": scores[order]})
    frame.insert(0, "user", user)
    frame["cold_user"] = result.user_ids.get_indexer([user])[0] < 0
    if item_info is not None and "title" in item_info:
        frame["title"] = item_info["title"].reindex(frame["item"]).to_numpy()
    return frame


def similar_items(result: PMFResult, item, *, n: int = 10,
                  item_info: pd.DataFrame | None = None) -> pd.DataFrame:
    """Items whose latent vectors are closest in cosine similarity, averaged over draws
    (the cosine within one draw is unchanged by rotating the latent space, so the
    average is meaningful even though the factors themselves are not identified)."""
    position = result.item_ids.get_indexer([item])[0]
    if position < 0:
        raise ConfigError(f"item {item!r} has no training ratings, so no latent vector")
    if "V" not in result.draws:
        raise ConfigError("this result has no latent factors (d = 0)")
    V = result.draws["V"]  # (samples, items, d)
    norms = np.linalg.norm(V, axis=2)
    norms[norms == 0] = np.inf
    cosine = np.einsum("sjk,sk->sj", V, V[:, position]) / (norms * norms[:, [position]])
    similarity = cosine.mean(axis=0)
    similarity[position] = -np.inf
    order = np.argsort(-similarity, kind="stable")[:n]
    frame = pd.DataFrame({"rank": np.arange(1, len(order) + 1),
                          "item": result.item_ids[order], "similarity": similarity[order]})
    if item_info is not None and "title" in item_info:
        frame["title"] = item_info["title"].reindex(frame["item"]).to_numpy()
    return frame


def fold_in_user(result: PMFResult, items, ratings, *, rng=0) -> np.ndarray:
    """Factors (and bias) of a NEW user from a handful of ratings, without refitting:
    (samples x d[+1]) draws of w = [U_new, b_new] given each posterior draw of the items.

    Point results (ALS, MAP) get the ridge solution given V (the ALS user update with the
    spec's penalties); sampled results draw w from its Gaussian conditional given each
    draw's V, item biases, mu and sigma (the Gibbs user update), so the new user's
    uncertainty is carried into predictions. Use :func:`predict_folded` to predict.
    """
    from .als import cholesky_solve, batched_cholesky

    item_idx = result.item_ids.get_indexer(pd.Index(items))
    if (item_idx < 0).any():
        unknown = pd.Index(items)[item_idx < 0][0]
        raise ConfigError(f"fold-in item {unknown!r} has no training ratings in this model")
    ratings = np.asarray(ratings, dtype=float)
    if len(ratings) != len(item_idx) or len(ratings) == 0:
        raise ConfigError("give one rating per item, at least one")
    draws, spec = result.draws, result.spec
    n_samples, d = result.n_samples, spec.n_factors
    V = draws["V"][:, item_idx] if "V" in draws else np.zeros((n_samples, len(item_idx), 0))
    design = np.concatenate([V, np.ones((n_samples, len(item_idx), 1))], axis=2) \
        if spec.biases else V
    offset = np.zeros((n_samples, len(item_idx)))
    if "mu" in draws:
        offset += draws["mu"][:, None]
    if "item_bias" in draws:
        offset += draws["item_bias"][:, item_idx]
    sigma = _sigma_draws(result)
    factor_scale = draws["sigma_u"] if "sigma_u" in draws else np.full(n_samples, spec.sigma_u)
    bias_scale = draws["sigma_user_bias"] if "sigma_user_bias" in draws \
        else np.full(n_samples, spec.sigma_user_bias)
    prior = np.concatenate([np.repeat((1 / factor_scale**2)[:, None], d, axis=1),
                            (1 / bias_scale**2)[:, None]], axis=1)[:, : design.shape[2]]
    tau = 1 / sigma**2
    precision = tau[:, None, None] * np.einsum("sjp,sjq->spq", design, design)
    precision[:, np.arange(design.shape[2]), np.arange(design.shape[2])] += prior
    shift = tau[:, None] * np.einsum("sjp,sj->sp", design, ratings[None] - offset)
    chol = batched_cholesky(precision, "fold-in precision")
    if n_samples == 1:
        return cholesky_solve(chol, shift)
    noise = np.einsum("spq,sq->sp", chol, np.random.default_rng(rng).standard_normal(shift.shape))
    return cholesky_solve(chol, shift + noise)


def predict_folded(result: PMFResult, folded: np.ndarray, items) -> np.ndarray:
    """Posterior-mean predicted ratings of the folded-in user for ``items``."""
    item_idx = result.item_ids.get_indexer(pd.Index(items))
    known = item_idx >= 0
    safe = np.maximum(item_idx, 0)
    draws, d = result.draws, result.spec.n_factors
    eta = np.zeros((result.n_samples, len(item_idx)))
    if "mu" in draws:
        eta += draws["mu"][:, None]
    if "item_bias" in draws:
        eta += np.where(known, draws["item_bias"][:, safe], 0.0)
    if result.spec.biases:
        eta += folded[:, [d]]
    if "V" in draws:
        eta += np.where(known, np.einsum("sk,sjk->sj", folded[:, :d], draws["V"][:, safe]), 0.0)
    if result.spec.link == "logistic":
        from .objective import sigmoid

        eta = result.scale.from_unit(sigmoid(eta))
    return eta.mean(axis=0)

"""Recommendations that use the posterior, similar items by latent vectors, and ranking
metrics of recommendations on held-out ratings (precision/recall/NDCG/MAP@k, hit rate,
catalog coverage: see the comment before :func:`ranking_metrics`).

Scores for an unseen item j of user i (S posterior draws; one for ALS/MAP):

* ``mean``: posterior-mean predicted rating;
* ``prob``: P(r_ij >= threshold) = mean_s Phi((E_s[r_ij] - t') / sigma_s), with t' the
  threshold less half a rating step (a continuous model scoring discrete ratings); for
  the ordinal model exactly mean_s Phi((eta_s - theta_s) / sigma), theta_s the cut point
  below the threshold's level (``threshold`` = the top rating gives P(r = max));
* ``quantile``: the q-quantile of the expected rating over draws (q < 0.5 pessimistic,
  q > 0.5 optimistic);
* ``thompson``: the expected rating under ONE random posterior draw (exploration).

Items the user rated in training are excluded (they are read from the result's own
constant_data, so a saved result is enough). Unknown users get prior-mean (bias-only)
recommendations, flagged ``cold_user``. A new user's ratings are folded in by the
Gaussian conditional of their factors; for the ordinal model by that conditional given
latent ratings z, each drawn within its level's interval (data augmentation, as the
sampler does), or for a point result by EM on the same model (its MAP).
"""

from __future__ import annotations

from typing import Callable

import numpy as np
import pandas as pd
from scipy import sparse
from scipy.special import ndtr

from ..engines.linalg import (
    batched_cholesky,
    cholesky_solve,
    gaussian_rows,
    solve_lower_transpose,
)
from ..errors import ConfigError, UnknownIdError, check_seed, plain_scalar
from ..model.params import (
    all_items_predictor,
    item_offset,
    latent_cdf,
    level_bounds,
    log_interval_probability,
    normalised_indicator,
    rating_levels,
    tag_matrix,
    truncated_normal,
    truncated_normal_mean,
    user_tag_sets,
)

SCORES = ("mean", "prob", "quantile", "thompson")
_DRAW_BUDGET = 1 << 24  # samples x users x items values held at once (128 MB)


def _seen_matrix(result) -> sparse.csr_matrix:
    """Users x items indicator of the training ratings, read from the result itself."""
    users, items = result.training_pairs()
    return sparse.csr_matrix((np.ones(len(users), dtype=bool), (users, items)),
                             shape=(len(result.user_ids), len(result.item_ids)))


def seen_items(result, user) -> np.ndarray:
    """Item indices the user rated in the result's training data (empty if unknown)."""
    position = result.user_ids.get_indexer([user])[0]
    if position < 0:
        return np.empty(0, dtype=np.int64)
    return np.sort(_seen_matrix(result)[position].indices)


def _user_draws(result, user_idx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(samples x users x d) factors and (samples x users) biases; zeros, the prior
    mean, for users the model never saw (index -1)."""
    draws, known = result.draws, user_idx >= 0
    safe = np.where(known, user_idx, 0)
    d = result.spec.n_factors
    factors = np.zeros((result.n_samples, len(user_idx), d))
    if "U" in draws and d > 0:
        factors = np.where(known[None, :, None], draws["U"][:, safe], 0.0)
    bias = np.zeros((result.n_samples, len(user_idx)))
    if "user_bias" in draws:
        bias = np.where(known[None], draws["user_bias"][:, safe], 0.0)
    return factors, bias


def _item_offset(result, samples: np.ndarray | slice) -> np.ndarray:
    """(samples x items) of mu + c_j, the part of the prediction no user changes."""
    return item_offset(result.draws, len(result.item_ids), samples)


def _expected_rating_draws(result, factors: np.ndarray, bias: np.ndarray,
                           samples: np.ndarray | slice = slice(None),
                           users: np.ndarray | None = None) -> np.ndarray:
    """(samples x users x items) expected ratings of users given by their factor draws
    (``factors`` and ``bias`` hold the draws ``samples`` of the result); ``users``: their
    row positions (-1: not in the model), whose own cut points apply with per-user
    thresholds (None: the global ones)."""
    chosen = None if isinstance(samples, slice) else samples
    return result.to_rating_scale(all_items_predictor(result.draws, len(result.item_ids),
                                                      factors, bias, samples), chosen,
                                  None if users is None else np.asarray(users)[:, None])


def _posterior_mean_scores(result, factors: np.ndarray,
                           bias: np.ndarray) -> np.ndarray:
    """(users x items) posterior-mean rating of the identity link in one product:
    mean_s U_s V_s^T = [U_1 .. U_S] [V_1 .. V_S]^T / S, no per-draw array."""
    n_samples, n_users, d = factors.shape
    mean = _item_offset(result, slice(None)).mean(axis=0)[None, :] + bias.mean(axis=0)[:, None]
    if "V" in result.draws and d > 0:
        stacked_u = factors.transpose(1, 0, 2).reshape(n_users, n_samples * d)
        stacked_v = result.draws["V"].transpose(1, 0, 2).reshape(-1, n_samples * d)
        mean = mean + stacked_u @ stacked_v.T / n_samples
    return mean


def _reduce_draws(result, draws: np.ndarray, score: str, threshold: float,
                  quantile: float) -> np.ndarray:
    if score == "mean":
        return draws.mean(axis=0)
    if score == "quantile":
        return np.quantile(draws, quantile, axis=0)
    half_step = 0.5 * result.scale.step if result.scale.step else 0.0
    sigma = result.sigma_draws[:, None, None]
    return ndtr((draws - (threshold - half_step)) / sigma).mean(axis=0)


def _check_score(score: str, quantile: float, threshold: float = 4.0, rng=0,
                 scale=None) -> None:
    if score not in SCORES:
        raise ConfigError(f"score must be one of {SCORES}, got {score!r}", setting="score")
    if score == "quantile" and not 0 < quantile < 1:
        raise ConfigError(f"quantile must be in (0, 1), got {quantile!r}", setting="quantile")
    if not (isinstance(threshold, (int, float, np.number)) and np.isfinite(threshold)):
        raise ConfigError(f"threshold must be a finite rating, got {threshold!r}",
                          setting="threshold")
    if score == "prob" and scale is not None and scale.bounded and not (
            scale.min < threshold <= scale.max):
        # every rating reaches a threshold at the bottom, none one above the top: every
        # item would score 1 (or 0), a ranking by nothing
        raise ConfigError(
            f"threshold {threshold:g} leaves nothing to rank: the ratings go from "
            f"{scale.min:g} to {scale.max:g} (every rating is {scale.min:g} or more, none "
            f"above {scale.max:g}); choose a value above {scale.min:g}, up to "
            f"{scale.max:g}", setting="threshold")
    check_seed(rng)


def _scores_from_factors(result, factors: np.ndarray, bias: np.ndarray, *,
                         score: str, threshold: float, quantile: float,
                         generator: np.random.Generator,
                         users: np.ndarray | None = None) -> np.ndarray:
    """(users x items) scores of users given by factor draws, in blocks of users small
    enough that the per-draw array stays near _DRAW_BUDGET values."""
    n_samples, n_users = bias.shape
    if score == "thompson":
        # One posterior draw per user; users sharing a draw are scored together.
        chosen = generator.integers(n_samples, size=n_users)
        scores = np.empty((n_users, len(result.item_ids)))
        for sample in np.unique(chosen):
            group = np.flatnonzero(chosen == sample)
            pick = np.array([sample])
            scores[group] = _expected_rating_draws(
                result, factors[pick][:, group], bias[pick][:, group], pick,
                None if users is None else np.asarray(users)[group])[0]
        return scores
    if score == "mean" and result.spec.link == "identity" and not result.spec.ordinal:
        return _posterior_mean_scores(result, factors, bias)
    block = max(1, _DRAW_BUDGET // max(1, n_samples * len(result.item_ids)))
    return np.concatenate([
        _block_scores(result, factors[:, start:start + block], bias[:, start:start + block],
                      score, threshold, quantile,
                      None if users is None else np.asarray(users)[start:start + block])
        for start in range(0, n_users, block)
    ])


def _block_scores(result, factors: np.ndarray, bias: np.ndarray, score: str,
                  threshold: float, quantile: float, users=None) -> np.ndarray:
    if score == "prob" and result.spec.ordinal:
        # P(r >= threshold) = P(z > the cut point below the threshold's level), per draw
        grid = result.grid
        level = int(np.searchsorted(grid, threshold - 1e-9 * result.scale.step))
        if level == 0:
            return np.ones((factors.shape[1], len(result.item_ids)))
        if level >= len(grid):
            return np.zeros((factors.shape[1], len(result.item_ids)))
        eta = all_items_predictor(result.draws, len(result.item_ids), factors, bias)
        if users is None or "user_cutpoints" not in result.draws:
            cut = result.draws["cutpoints"][:, level - 1, None, None]
        else:  # each user's own: (samples x users x 1)
            cut = result.cutpoint_draws(None, np.asarray(users)[:, None]).column(level - 1)
        return latent_cdf((eta - cut) / result.sigma_draws[:, None, None],
                          result.spec.ordinal_link).mean(axis=0)
    return _reduce_draws(result, _expected_rating_draws(result, factors, bias, users=users),
                         score, threshold, quantile)
def score_matrix(result, users, *, score: str = "mean", threshold: float = 4.0,
                 quantile: float = 0.1, rng=0) -> np.ndarray:
    """(users x items) scores of every training item for each user, rows aligned with
    ``users``, columns with ``result.item_ids``. Unknown users score at the prior mean."""
    _check_score(score, quantile, threshold, rng, result.scale)
    user_idx = result.user_ids.get_indexer(pd.Index(users))
    factors, bias = _user_draws(result, user_idx)
    return _scores_from_factors(result, factors, bias, score=score, threshold=threshold,
                                quantile=quantile, generator=np.random.default_rng(rng),
                                users=user_idx)


def score_items(result, user, *, score: str = "mean", threshold: float = 4.0,
                quantile: float = 0.1, rng=0) -> np.ndarray:
    """The chosen score of every training item for one user (aligned with item_ids)."""
    return score_matrix(result, [user], score=score, threshold=threshold, quantile=quantile,
                        rng=rng)[0]


def _check_n(n) -> None:
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise ConfigError(f"n must be a positive integer, got {n!r}", setting="n")


def _top_n_table(result, scores: np.ndarray, seen: np.ndarray, n: int,
                 item_info: pd.DataFrame | None) -> pd.DataFrame:
    """Long table (row, rank, item, score) of each row's best ``n`` unseen items."""
    scores = np.where(seen, -np.inf, scores)
    keep = min(n, scores.shape[1])
    top = np.argpartition(-scores, keep - 1, axis=1)[:, :keep]
    order = np.argsort(-np.take_along_axis(scores, top, axis=1), axis=1, kind="stable")
    top = np.take_along_axis(top, order, axis=1)
    top_scores = np.take_along_axis(scores, top, axis=1)
    rows, ranks = np.nonzero(np.isfinite(top_scores))
    frame = pd.DataFrame({"row": rows, "rank": ranks + 1,
                          "item": result.item_ids[top[rows, ranks]],
                          "score": top_scores[rows, ranks]})
    item_info = result.item_info if item_info is None else item_info
    if item_info is not None and "title" in item_info:
        frame["title"] = item_info["title"].reindex(frame["item"]).to_numpy()
    return frame


def recommend_many(result, users, *, n: int = 10, score: str = "mean",
                   threshold: float = 4.0, quantile: float = 0.1,
                   item_info: pd.DataFrame | None = None, rng=0) -> pd.DataFrame:
    """Top-``n`` unseen items for each user, scored for all users at once: a long table
    (user, rank, item, score, cold_user[, title]) in the order of ``users``, best first.

    Items a user rated in training are never recommended back. Users the model never
    saw get the prior-mean (bias-only) ranking, flagged ``cold_user``."""
    _check_n(n)
    users = pd.Index(users)
    if users.has_duplicates:
        raise ConfigError(f"users must be distinct; "
                          f"{plain_scalar(users[users.duplicated()][0])!r} repeats")
    scores = score_matrix(result, users, score=score, threshold=threshold,
                          quantile=quantile, rng=rng)
    user_idx = result.user_ids.get_indexer(users)
    seen = _seen_matrix(result)[np.maximum(user_idx, 0)].toarray()
    seen[user_idx < 0] = False  # cold users saw nothing
    frame = _top_n_table(result, scores, seen, n, item_info)
    rows = frame.pop("row").to_numpy()
    frame.insert(0, "user", users[rows])
    frame["cold_user"] = user_idx[rows] < 0
    return frame


def recommend(result, user, *, n: int = 10, score: str = "mean",
              threshold: float = 4.0, quantile: float = 0.1, item_info: pd.DataFrame | None = None,
              rng=0) -> pd.DataFrame:
    """Top-``n`` unseen items for one user, best first, with the original item ids."""
    return recommend_many(result, [user], n=n, score=score, threshold=threshold,
                          quantile=quantile, item_info=item_info, rng=rng)


def _similar(result, factor: str, ids: pd.Index, key, n: int, kind: str,
             info: pd.DataFrame | None) -> pd.DataFrame:
    """Rows of ``factor`` closest to ``key``'s in cosine similarity, averaged over draws
    (the cosine within one draw is unchanged by rotating the latent space, so the
    average is meaningful even though the factors themselves are not identified)."""
    _check_n(n)
    position = ids.get_indexer([key])[0]
    if position < 0:
        raise ConfigError(f"{kind} {plain_scalar(key)!r} has no training ratings, so no "
                          "latent vector")
    if factor not in result.draws or result.draws[factor].shape[-1] == 0:
        raise ConfigError("this result has no latent factors (d = 0)")
    vectors = result.draws[factor]  # (samples, rows, d)
    norms = np.linalg.norm(vectors, axis=2)
    norms[norms == 0] = np.inf
    cosine = np.einsum("sjk,sk->sj", vectors, vectors[:, position])
    similarity = (cosine / (norms * norms[:, [position]])).mean(axis=0)
    order = np.argsort(-similarity, kind="stable")
    order = order[order != position][:n]
    frame = pd.DataFrame({"rank": np.arange(1, len(order) + 1), kind: ids[order],
                          "similarity": similarity[order]})
    if info is not None and "title" in info:
        frame["title"] = info["title"].reindex(frame[kind]).to_numpy()
    return frame


def similar_items(result, item, *, n: int = 10,
                  item_info: pd.DataFrame | None = None) -> pd.DataFrame:
    """The ``n`` items most similar to ``item`` by cosine of latent vectors."""
    return _similar(result, "V", result.item_ids, item, n, "item",
                    result.item_info if item_info is None else item_info)


def similar_users(result, user, *, n: int = 10) -> pd.DataFrame:
    """The ``n`` users most similar to ``user`` by cosine of latent vectors."""
    return _similar(result, "U", result.user_ids, user, n, "user", None)


def fold_in_user(result, items, ratings, *, feedback=(), user_info=None,
                 rng=0) -> np.ndarray:
    """Factors (and bias) of a NEW user from a handful of ratings, without refitting:
    (samples x d[+1]) draws of w = [U_new, b_new] given each posterior draw of the items.

    Point results (ALS, MAP) get the ridge solution given V (the ALS user update with the
    spec's penalties); sampled results draw w from its Gaussian conditional given each
    draw's V, item biases, mu and sigma (the Gibbs user update), so the new user's
    uncertainty is carried into predictions; the prior is that draw's user prior (for
    the Wishart families, whose draws keep only its size sigma_u, the precision matrix is
    drawn given the draw's user factors, the sampler's own update).
    Use :func:`predict_folded` to predict.

    With implicit feedback on the user side (``spec.constrained``: U = Y + M W) the new
    user's factors have the prior mean n^-a sum of W over the items given (per draw), so
    which items they rated moves them before the ratings do; ``feedback`` adds items the
    user rated without giving the values (they join that sum, not the likelihood).

    With user features (``spec.user_features``: U = Y + ... + H Psi) ``user_info`` gives
    the new user's values of those columns (a mapping, e.g. ``{"gender": "F",
    "occupation": "writer"}``): their tags' normalised sum of Psi joins the prior mean.
    Without it the user has no tags (no offset), as a user without values in the data.
    """
    tags = None
    if user_info is not None:
        if result.spec.user_features is None or "Psi" not in result.draws:
            raise ConfigError("user_info describes a new user for a model with user "
                              "features; this model has none", setting="user_info")
        tags = _new_user_tags(result, user_info)
    return _fold_in(result, items, ratings, feedback, tags, rng)


def _new_user_tags(result, user_info):
    """The 1 x tags row of H of a new user from their values (a mapping of column to
    value; a column the model does not use is an error naming it)."""
    try:
        row = pd.DataFrame([dict(user_info)], index=pd.Index(["new"]))
    except (TypeError, ValueError):
        raise ConfigError("user_info must map the model's user columns to the new user's "
                          f"values, e.g. {{'gender': 'F'}}, got {user_info!r}",
                          setting="user_info") from None
    columns = result.spec.user_feature_columns
    unknown = [c for c in row.columns if c not in columns]
    if unknown:
        raise ConfigError(f"user_info column {unknown[0]!r} is not one of the model's user "
                          f"features {list(columns)}", setting="user_info")
    row = row.reindex(columns=list(columns))
    vocabulary = result.idata.posterior["Psi"].coords["user_tag"].to_numpy()
    sets = user_tag_sets(row.index, row, columns)
    known_tags = set(vocabulary)
    unseen = [tag for tag in sets[0] if tag not in known_tags]
    if unseen:
        column = unseen[0].split("=", 1)[0]
        known = [t.split("=", 1)[1] for t in vocabulary if t.split("=", 1)[0] == column]
        shown = ", ".join(repr(v) for v in known[:12]) + (", ..." if len(known) > 12 else "")
        raise ConfigError(f"user_info {column}={unseen[0].split('=', 1)[1]!r}: no training "
                          f"user has this value, so the model has no factors for it; "
                          f"expected one of {shown} (or leave {column!r} out)",
                          setting="user_info")
    return tag_matrix(sets, vocabulary, result.spec.implicit_norm)


def _fold_in(result, items, ratings, feedback, tags, rng) -> np.ndarray:
    """:func:`fold_in_user` with ``tags``, the user's 1 x tags row of H (or None)."""
    if result.spec.link != "identity":
        raise ConfigError("fold-in solves the Gaussian (identity-link) conditional; this "
                          f"result uses the {result.spec.link} link")
    item_idx = _known_items(result, items)
    ratings = np.asarray(ratings, dtype=float)
    if len(ratings) != len(item_idx) or len(ratings) == 0:
        raise ConfigError("give one rating per item, at least one")
    repeated = pd.Index(items)[pd.Index(items).duplicated()]
    if len(repeated):
        raise ConfigError(f"fold-in item {plain_scalar(repeated[0])!r} is rated more than "
                          "once; give each item one rating")
    scale = result.scale
    off = ~np.isfinite(ratings) | scale.out_of_range(ratings) | scale.off_grid(ratings)
    if off.any():
        where = int(np.flatnonzero(off)[0])
        allowed = (f"ratings in [{scale.min:g}, {scale.max:g}]" if scale.bounded
                   else "finite ratings") + (f" in steps of {scale.step:g}" if scale.step
                                             else "")
        raise ConfigError(f"fold-in rating {plain_scalar(ratings[where])!r} of item "
                          f"{plain_scalar(pd.Index(items)[where])!r} is not on this model's "
                          "scale; expected "
                          f"{allowed}")
    draws, spec = result.draws, result.spec
    n_samples, d = result.n_samples, spec.n_factors
    V = draws["V"][:, item_idx] if "V" in draws else np.zeros((n_samples, len(item_idx), 0))
    design = np.concatenate([V, np.ones((n_samples, len(item_idx), 1))], axis=2) \
        if spec.biases else V
    offset = _item_offset(result, slice(None))[:, item_idx]
    generator = np.random.default_rng(rng)
    prior, prior_mean = _new_user_prior(result, generator)  # (S, p, p), (S, d)
    prior = prior[:, : design.shape[2], : design.shape[2]]
    if spec.constrained and "W" in draws:  # the new user's n^-a sum of W over their items
        rated = np.union1d(item_idx, _known_items(result, feedback))
        prior_mean = prior_mean + draws["W"][:, rated].sum(axis=1) / (
            np.sqrt(len(rated)) if spec.implicit_norm == "sqrt" else len(rated))
    bias_mean = np.zeros(n_samples)
    if tags is not None and tags.nnz:  # the user's tags: + h^-a sum of their Psi
        prior_mean = prior_mean + np.einsum("t,std->sd", tags.toarray()[0],
                                            draws["Psi"].astype(float))
        if "user_tag_bias" in draws:  # and their bias's prior mean h^-a sum of beta
            bias_mean = draws["user_tag_bias"].astype(float) @ tags.toarray()[0]
    # solve for w - [prior mean, bias prior mean], then add it back
    offset = offset + np.einsum("sjd,sd->sj", V, prior_mean) + bias_mean[:, None]
    sigma = result.sigma_draws
    tau = 1 / sigma**2
    precision = tau[:, None, None] * np.einsum("sjp,sjq->spq", design, design) + prior
    if spec.ordinal:
        lower, upper = level_bounds(draws["cutpoints"][:, None, :],
                                    rating_levels(ratings, result.grid))
        if spec.ordinal_link == "logit":
            folded = fold_in_logit(design, offset, prior, sigma, lower[:, 0], upper[:, 0],
                                   sample=n_samples > 1, rng=generator)
        else:
            folded = fold_in_ordinal(design, offset, precision, sigma, lower[:, 0],
                                     upper[:, 0], ratings, sample=n_samples > 1,
                                     rng=generator)
    else:
        shift = tau[:, None] * np.einsum("sjp,sj->sp", design, ratings[None] - offset)
        noise = None if n_samples == 1 else generator.standard_normal(shift.shape)
        folded = gaussian_rows(precision, shift, noise, what="fold-in precision")[0]
    folded[:, :d] += prior_mean
    if spec.biases:
        folded[:, d] += bias_mean
    return folded


def _new_user_prior(result, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Per posterior draw, the prior of a new user's [factors, bias]: (S, d+1, d+1)
    precision and (S, d) factor mean (of Y, the user's own factors, with implicit
    feedback). Stored where the draws hold it (sigma_u, the diagonal family's sd per
    dimension, sigma_user_bias; the spec's for fixed priors). The Wishart families'
    (mean and) precision matrix is not stored (only sigma_u, its rotation-invariant
    size): a sampled result draws it from its conditional given that draw's user
    factors, the sampler's own update, which keeps its shape: with the isotropic
    sigma_u alone a new user would be as likely to vary along the population's narrow
    latent directions as along its wide ones."""
    draws, spec = result.draws, result.spec
    n_samples, d = result.n_samples, spec.n_factors
    precision = np.zeros((n_samples, d + 1, d + 1))
    mean = np.zeros((n_samples, d))
    if spec.prior in ("wishart", "normal-wishart") and n_samples > 1 and d and "U" in draws:
        from ..engines.gibbs import draw_factor_prior

        implicit = None
        if spec.constrained and "W" in draws:  # M: U = Y + M W
            implicit = normalised_indicator(*result.training_pairs(), (
                len(result.user_ids), len(result.item_ids)), spec.implicit_norm)
        tags = result.user_tag_matrix()  # H: U = Y + ... + H Psi
        for s in range(n_samples):
            own = draws["U"][s].astype(float)
            if implicit is not None:
                own = own - implicit @ draws["W"][s].astype(float)
            if tags is not None:
                own = own - tags @ draws["Psi"][s].astype(float)
            mean[s], precision[s, :d, :d] = draw_factor_prior(own, spec, rng)
    elif "sigma_u_latent" in draws:
        precision[:, np.arange(d), np.arange(d)] = 1 / draws["sigma_u_latent"] ** 2
    else:
        scale = draws["sigma_u"] if "sigma_u" in draws else np.full(n_samples, spec.sigma_u)
        precision[:, np.arange(d), np.arange(d)] = (1 / scale**2)[:, None]
    bias_scale = draws["sigma_user_bias"] if "sigma_user_bias" in draws \
        else np.full(n_samples, spec.sigma_user_bias)
    precision[:, d, d] = 1 / bias_scale**2
    return precision, mean


def _known_items(result, items) -> np.ndarray:
    item_idx = result.item_ids.get_indexer(pd.Index(items))
    if (item_idx < 0).any():
        unknown = plain_scalar(pd.Index(items)[item_idx < 0][0])
        raise ConfigError(f"fold-in item {unknown!r} has no training ratings in this model")
    return item_idx


def fold_in_feedback(result, user, items, *, rng=0) -> np.ndarray:
    """A KNOWN user's factors (and bias) after they rated ``items`` since the fit, from
    which items alone, without refitting (#19's feedback-only fold-in): (samples x
    d[+1]) draws, as :func:`fold_in_user` returns, for :func:`predict_folded`.

    With implicit feedback on the user side (U = Y + n_i^-a sum_{j in N(i)} W_j, N(i)
    the n_i items the user rated) the new items join N(i), and the user's factors are drawn
    again given their training ratings and the grown N(i) in every posterior draw (the
    Gibbs user update, :func:`fold_in_user` with the training ratings and ``feedback``);
    the rest of the posterior is unchanged. Keeping Y and only adding the new items' W
    would move U away from what the user's ratings say, by the new W's posterior noise.
    Rating values, if any, are not used (a refit uses them)."""
    spec = result.spec
    if not (spec.constrained and "W" in result.draws):
        raise ConfigError("this model has no user-side feedback term (fit it with "
                          "implicit 'users' or 'both'): which items a user rated does not "
                          "enter its predictions", setting="implicit")
    position = result.user_ids.get_indexer(pd.Index([user]))[0]
    if position < 0:
        raise UnknownIdError(f"user {plain_scalar(user)!r} has no training ratings in this "
                             f"model; fold a new user in with fold_in_user")
    _known_items(result, items)
    users, rated = result.training_pairs()
    mine = users == position
    ratings = result.idata.observed_data["rating"].to_numpy()[mine]
    tags = result.user_tag_matrix()  # the user's own tags stay theirs
    return _fold_in(result, result.item_ids[rated[mine]], ratings, items,
                    None if tags is None else tags[position], rng)


FOLD_IN_ORDINAL_SWEEPS = 40  # per posterior draw; the chains start at the Gaussian answer
FOLD_IN_EM_MAX_ITERATIONS = 1000  # EM for a point result stops earlier once w settles


def fold_in_ordinal(design, offset, precision, sigma, lower, upper, start, *,
                    sample: bool, rng: np.random.Generator,
                    sweeps: int = FOLD_IN_ORDINAL_SWEEPS) -> np.ndarray:
    """A new user's w under the ordinal model, for S parameter draws at once: latent
    z_j ~ N(offset_j + x_j.w, sigma^2) falls in (lower_j, upper_j].

    ``sample``: ``sweeps`` data-augmentation Gibbs sweeps per draw (z from its truncated
    normal, then w from its Gaussian conditional given z), started from the Gaussian
    answer with z = ``start`` (the ratings), returning the last w: a draw from p(w | the
    ratings, draw s). Otherwise EM to the MAP (z replaced by its truncated-normal mean),
    until w changes by less than 1e-10 (at most FOLD_IN_EM_MAX_ITERATIONS). Shapes:
    design (S, J, p), offset/lower/upper (S, J), precision (S, p, p) = prior precision +
    design'design / sigma^2, sigma (S,)."""
    tau = (1 / sigma**2)[:, None]
    z = np.broadcast_to(np.asarray(start, dtype=float), offset.shape)
    w = None
    for _ in range(sweeps + 1 if sample else FOLD_IN_EM_MAX_ITERATIONS):
        shift = tau * np.einsum("sjp,sj->sp", design, z - offset)
        noise = rng.standard_normal(shift.shape) if sample else None
        previous, w = w, gaussian_rows(precision, shift, noise, what="fold-in precision")[0]
        if not sample and previous is not None and np.max(np.abs(w - previous)) < 1e-10:
            break
        eta = offset + np.einsum("sjp,sp->sj", design, w)
        if sample:
            z = truncated_normal(eta, lower, upper, sigma[:, None], rng.random(eta.shape))
        else:
            z = truncated_normal_mean(eta, lower, upper, sigma[:, None])
    return w


FOLD_IN_LOGIT_STEPS = 40  # independence Metropolis steps per posterior draw
FOLD_IN_LOGIT_SPREAD = 1.2  # the proposal's sd over the Laplace approximation's
_NEWTON_STEPS = 100


def _logit_level_terms(eta, lower, upper, sigma):
    """The first and second derivatives in eta of log P(lower < z <= upper) for
    z ~ Logistic(eta, sigma) (the second is negative: the ordered logit is
    log-concave)."""
    log_mass = log_interval_probability(lower, upper, eta, sigma, "logit")
    a, b = (lower - eta) / sigma, (upper - eta) / sigma
    with np.errstate(invalid="ignore"):
        cdf_a, cdf_b = latent_cdf(a, "logit"), latent_cdf(b, "logit")
    dens_a, dens_b = cdf_a * (1 - cdf_a), cdf_b * (1 - cdf_b)
    mass = np.maximum(np.exp(log_mass), 1e-300)
    first = (dens_a - dens_b) / (sigma * mass)
    second = (dens_b * (1 - 2 * cdf_b) - dens_a * (1 - 2 * cdf_a)) / (sigma**2 * mass)
    return first, second - first**2


def fold_in_logit(design, offset, prior, sigma, lower, upper, *, sample: bool,
                  rng: np.random.Generator, steps: int = FOLD_IN_LOGIT_STEPS) -> np.ndarray:
    """A new user's w under the ordered logit, for S parameter draws at once: the rating
    j's latent z_j ~ Logistic(offset_j + x_j.w, sigma) falls in (lower_j, upper_j], and
    w ~ N(0, prior^-1).

    The posterior of w given a draw is log-concave: Newton's method (with step halving)
    finds its mode, which a point result returns. ``sample``: ``steps`` independence
    Metropolis steps from the mode, proposing from the Laplace approximation N(mode,
    H^-1) widened FOLD_IN_LOGIT_SPREAD times (H the negative Hessian there), so that its
    tails cover the target's; the last state is a draw from p(w | the ratings, draw s).
    Shapes: design (S, J, p), offset/lower/upper (S, J), prior (S, p, p), sigma (S,)."""
    sigma = np.asarray(sigma, dtype=float)[:, None]

    def eta_of(w):
        return offset + np.einsum("sjp,sp->sj", design, w)

    def log_target(w):
        log_mass = log_interval_probability(lower, upper, eta_of(w), sigma, "logit")
        return log_mass.sum(axis=1) - 0.5 * np.einsum("sp,spq,sq->s", w, prior, w)

    def slope_and_curvature(w):  # the gradient and the negative Hessian's Cholesky factor
        first, second = _logit_level_terms(eta_of(w), lower, upper, sigma)
        gradient = np.einsum("sjp,sj->sp", design, first) - np.einsum("spq,sq->sp", prior, w)
        hessian = prior - np.einsum("sjp,sjq,sj->spq", design, design, second)
        return gradient, batched_cholesky(hessian, "fold-in Hessian")  # H = L L^T

    w = np.zeros((design.shape[0], design.shape[2]))
    value = log_target(w)
    for _ in range(_NEWTON_STEPS):
        gradient, chol = slope_and_curvature(w)
        step = cholesky_solve(chol, gradient)
        length = np.ones(len(w))
        for _halving in range(30):  # halve each draw's step until its target rises
            moved = w + length[:, None] * step
            new_value = log_target(moved)
            worse = ~(new_value >= value - 1e-12)
            if not worse.any():
                break
            length = np.where(worse, length / 2, length)
        w, value = moved, new_value
        if np.max(np.abs(length[:, None] * step)) < 1e-10:
            break
    if not sample:
        return w
    chol = slope_and_curvature(w)[1]  # at the mode
    mode, spread = w, FOLD_IN_LOGIT_SPREAD

    def log_proposal(x):  # up to a constant: -|L^T (x - mode)|^2 / (2 spread^2)
        scaled = np.einsum("spq,sp->sq", chol, x - mode)
        return -0.5 * np.sum(scaled**2, axis=1) / spread**2

    current, current_target = mode, value
    for _ in range(steps):
        # x = mode + spread L^-T e has covariance spread^2 H^-1
        proposed = mode + spread * solve_lower_transpose(chol, rng.standard_normal(w.shape))
        proposed_target = log_target(proposed)
        log_ratio = (proposed_target - current_target
                     + log_proposal(current) - log_proposal(proposed))
        accept = np.log(rng.random(len(w))) < log_ratio
        current = np.where(accept[:, None], proposed, current)
        current_target = np.where(accept, proposed_target, current_target)
    return current


def _folded_draws(result, folded: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The folded-in user as (samples x 1 x d) factors and (samples x 1) bias."""
    d = result.spec.n_factors
    if folded.shape != (result.n_samples, d + int(result.spec.biases)):
        raise ConfigError(f"folded draws have shape {folded.shape}; expected "
                          f"({result.n_samples}, {d + int(result.spec.biases)}) from fold_in_user")
    bias = folded[:, [d]] if result.spec.biases else np.zeros((result.n_samples, 1))
    return folded[:, None, :d], bias


def folded_rating_draws(result, folded: np.ndarray, items) -> np.ndarray:
    """(samples x items) draws of the folded-in user's expected rating for ``items``,
    which must be known to the model (an unknown item has no factors to pair with)."""
    item_idx = result.item_ids.get_indexer(pd.Index(items))
    if (item_idx < 0).any():
        raise UnknownIdError(f"item {pd.Index(items)[item_idx < 0][0]!r} has no training "
                             f"ratings in this model")
    factors, bias = _folded_draws(result, folded)
    return _expected_rating_draws(result, factors, bias)[:, 0, item_idx]


def predict_folded(result, folded: np.ndarray, items) -> np.ndarray:
    """Posterior-mean predicted ratings of the folded-in user for ``items``."""
    return folded_rating_draws(result, folded, items).mean(axis=0)


def recommend_new_user(result, items, ratings, *, n: int = 10,
                       score: str = "mean", threshold: float = 4.0, quantile: float = 0.1,
                       item_info: pd.DataFrame | None = None, user_info=None,
                       rng=0) -> pd.DataFrame:
    """Top-``n`` items for a user who is not in the model, from a handful of ratings:
    the user is folded in (:func:`fold_in_user`, with their ``user_info`` values for a
    model with user features) and the rated items are excluded."""
    _check_n(n)
    _check_score(score, quantile, threshold, rng, result.scale)
    generator = np.random.default_rng(rng)
    folded = fold_in_user(result, items, ratings, user_info=user_info, rng=generator)
    rated = result.item_ids.get_indexer(pd.Index(items))
    return _folded_top_n(result, folded, rated, "(new user)", n=n, score=score,
                         threshold=threshold, quantile=quantile, item_info=item_info,
                         generator=generator)


def recommend_with_feedback(result, user, items, *, n: int = 10, score: str = "mean",
                            threshold: float = 4.0, quantile: float = 0.1,
                            item_info: pd.DataFrame | None = None, rng=0) -> pd.DataFrame:
    """Top-``n`` items for a known user who has rated ``items`` since the fit (values
    unknown): the user is folded in by :func:`fold_in_feedback`, and both their training
    items and ``items`` are excluded."""
    _check_n(n)
    _check_score(score, quantile, threshold, rng, result.scale)
    generator = np.random.default_rng(rng)
    folded = fold_in_feedback(result, user, items, rng=generator)
    rated = np.union1d(seen_items(result, user), _known_items(result, items))
    return _folded_top_n(result, folded, rated, user, n=n, score=score, threshold=threshold,
                         quantile=quantile, item_info=item_info, generator=generator,
                         users=result.user_ids.get_indexer(pd.Index([user])))


def _folded_top_n(result, folded, rated_idx, user, *, n, score, threshold, quantile,
                  item_info, generator, users=None) -> pd.DataFrame:
    factors, bias = _folded_draws(result, folded)
    scores = _scores_from_factors(result, factors, bias, score=score, threshold=threshold,
                                  quantile=quantile, generator=generator, users=users)
    rated = np.zeros((1, len(result.item_ids)), dtype=bool)
    rated[0, rated_idx] = True
    frame = _top_n_table(result, scores, rated, n, item_info)
    frame.pop("row")
    frame.insert(0, "user", user)
    return frame


# -- ranking metrics of recommendations ----------------------------------------------------
#
# Ranking metrics of top-k recommendations on held-out ratings.
#
# For every test user with at least one relevant held-out rating (rating >= threshold),
# the model ranks every training item the user has not rated in training; with R the
# user's relevant held-out items and T the top k:
#
#     precision@k = |T & R| / k          recall@k = |T & R| / |R|
#     hit rate    = 1 if T & R else 0    AP@k = sum_{r <= k, item_r in R} precision@r / min(|R|, k)
#     NDCG@k      = sum_{r: item_r in R} 1/log2(r + 1)  /  sum_{r <= min(|R|, k)} 1/log2(r + 1)
#
# averaged over those users; catalog coverage = distinct recommended items / training items.
# Held-out items unknown to the model cannot be ranked and count as misses.


def _user_metrics(top: np.ndarray, relevant: set, k: int) -> dict:
    hits = np.array([item in relevant for item in top], dtype=float)
    discounts = 1.0 / np.log2(np.arange(2, k + 2))
    ideal = discounts[: min(len(relevant), k)].sum()
    precision_at = np.cumsum(hits) / np.arange(1, len(hits) + 1)
    return {
        "precision": hits.sum() / k,
        "recall": hits.sum() / len(relevant),
        "hit_rate": float(hits.any()),
        "map": float((precision_at * hits).sum() / min(len(relevant), k)),
        "ndcg": float((hits * discounts[: len(hits)]).sum() / ideal),
    }


def ranking_metrics(score_items: Callable[[object], np.ndarray], train,
                    test, *, k: int = 10, threshold: float = 4.0) -> dict:
    """Averages of the metrics above; ``score_items(user_id)`` returns one score per
    training item (aligned with ``train.item_ids``), higher is better."""
    if not isinstance(k, (int, np.integer)) or k < 1:
        raise ConfigError(f"k must be a positive integer, got {k!r}")
    frame = test.to_frame()
    relevant = frame[frame["rating"] >= threshold].groupby("user")["item"].agg(set)
    by_user = train.by_user
    rows, recommended = [], set()
    for user, items in relevant.items():
        scores = np.asarray(score_items(user), dtype=float).copy()
        position = train.user_ids.get_indexer([user])[0]
        if position >= 0:
            seen = by_user.indices[by_user.indptr[position]:by_user.indptr[position + 1]]
            scores[seen] = -np.inf
        order = np.argsort(-scores, kind="stable")[:k]
        order = order[np.isfinite(scores[order])]
        top = train.item_ids[order]
        recommended.update(top)
        rows.append(_user_metrics(np.asarray(top), items, k))
    if not rows:
        raise ConfigError(f"no test user has a rating >= {threshold}; lower the threshold")
    means = pd.DataFrame(rows).mean().to_dict()
    return {f"{name}@{k}" if name != "hit_rate" else f"hit_rate@{k}": float(value)
            for name, value in means.items()} | {
        "catalog_coverage": len(recommended) / train.n_items,
        "n_users": len(rows), "k": k, "threshold": threshold}


def popularity_scores(train) -> Callable[[object], np.ndarray]:
    """The popularity baseline: every user gets items ranked by training rating count."""
    counts = train.item_counts.astype(float)
    return lambda user: counts


def model_scores(result, train, *, score: str = "mean",
                 threshold: float = 4.0, rng=0) -> Callable[[object], np.ndarray]:
    """A model's scores (see :mod:`bayes_pmf.recommend`; default the posterior-mean
    rating) of every training item, computed for all training users in one vectorised
    pass; users unknown to the model get their prior-mean ranking."""
    if not result.item_ids.equals(train.item_ids):
        raise ConfigError("the result was fitted on other items than this training data")
    options = dict(score=score, threshold=threshold, rng=rng)
    known = score_matrix(result, train.user_ids, **options)
    positions = result.user_ids.get_indexer(train.user_ids)

    def score_user(user) -> np.ndarray:
        row = train.user_ids.get_indexer([user])[0]
        if row >= 0 and positions[row] >= 0:
            return known[row]
        return score_matrix(result, [user], **options)[0]

    return score_user

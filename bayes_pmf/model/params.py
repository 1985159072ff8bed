"""Factor parameters, THE linear predictor, the ordinal link, and the MAP objective E.

``eta_ij = mu + b_i + c_j + U_i.V_j`` is computed here and nowhere else, in three
layouts that every engine, the result and the recommender share:

* :meth:`FactorParams.linear_predictor`: one point estimate, for index pairs;
* :func:`predictor_draws`: posterior draws (leading sample axis), for index pairs;
* :func:`all_items_predictor`: users given by (draws of) their factors, against every
  item at once (one matrix product; the recommender's layout).

An index of -1 marks an id the model never saw: its factors and bias take their prior
mean 0, so an unknown user is predicted mu + c_j (the cold-start prediction).

:func:`objective` scores any solver's point estimate with the same E (see
:mod:`bayes_pmf.model.spec` for the formula), so ALS, the PyMC MAP and anything a user
writes are compared by one function. Specs are read by their attributes only.

The ordinal likelihood's arithmetic (``likelihood="ordinal"``, see
:mod:`bayes_pmf.model.spec`) lives here too, for every engine and the result: the rating
grid and its levels, the cut points' prior centres, level probabilities, expected ratings,
the stable log-probability of an interval and truncated-normal draws. Every function of
the latent's distribution takes ``link``: "probit" (z ~ N(eta, sigma^2), the ordered
probit) or "logit" (z ~ Logistic(eta, sigma), the ordered logit, whose sd is
pi/sqrt(3) sigma).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
from scipy.special import expit, log_expit, log_ndtr, ndtr, ndtri

from ..errors import ConfigError

_CHUNK = 1 << 16  # pairs per chunk of a point prediction: bounds the (chunk x d) gathers


def linear_predictor(user_idx, item_idx, mu: float = 0.0, user_bias=None, item_bias=None,
                     user_factors=None, item_factors=None) -> np.ndarray:
    """mu + b_i + c_j + U_i.V_j for index pairs (-1: unknown, at the prior mean; absent
    terms, None, are zero), computed in bounded-memory chunks."""
    user_idx, item_idx = np.asarray(user_idx), np.asarray(item_idx)
    known_u, known_i = user_idx >= 0, item_idx >= 0
    everything_known = bool(known_u.all() and known_i.all())
    safe_u = user_idx if everything_known else np.maximum(user_idx, 0)
    safe_i = item_idx if everything_known else np.maximum(item_idx, 0)
    out = np.full(len(user_idx), float(mu))
    # np.take: numpy's fancy indexing was 7-10x slower for these gathers.
    for bias, safe, known in ((user_bias, safe_u, known_u), (item_bias, safe_i, known_i)):
        if bias is not None and len(bias):
            values = np.take(bias, safe)
            out += values if everything_known else np.where(known, values, 0.0)
    if user_factors is not None and item_factors is not None and user_factors.shape[1]:
        for start in range(0, len(user_idx), _CHUNK):
            stop = start + _CHUNK
            dots = np.einsum("ij,ij->i", np.take(user_factors, safe_u[start:stop], axis=0),
                             np.take(item_factors, safe_i[start:stop], axis=0))
            if not everything_known:
                dots = np.where(known_u[start:stop] & known_i[start:stop], dots, 0.0)
            out[start:stop] += dots
    return out


@dataclass(frozen=True)
class FactorParams:
    """U (n x d), V (m x d), global mean mu, user biases b (n), item biases c (m).

    Absent terms are zeros, so the predicted mean is always mu + b_i + c_j + U_i.V_j
    (before the link function).
    """

    user_factors: np.ndarray
    item_factors: np.ndarray
    mu: float = 0.0
    user_bias: np.ndarray | None = None
    item_bias: np.ndarray | None = None

    def __post_init__(self) -> None:
        n, m = len(self.user_factors), len(self.item_factors)
        if self.user_bias is None:
            object.__setattr__(self, "user_bias", np.zeros(n))
        if self.item_bias is None:
            object.__setattr__(self, "item_bias", np.zeros(m))

    @property
    def n_factors(self) -> int:
        return self.user_factors.shape[1]

    def linear_predictor(self, user_idx: np.ndarray, item_idx: np.ndarray) -> np.ndarray:
        """mu + b_i + c_j + U_i.V_j for index pairs (-1: unknown, at the prior mean),
        computed in bounded-memory chunks."""
        return linear_predictor(user_idx, item_idx, self.mu, self.user_bias, self.item_bias,
                                self.user_factors, self.item_factors)


def _draw_predictor(draws: dict[str, np.ndarray], sample: int, user_idx, item_idx
                    ) -> np.ndarray:
    """The linear predictor of one posterior draw (absent terms omitted)."""
    return linear_predictor(
        user_idx, item_idx, float(draws["mu"][sample]) if "mu" in draws else 0.0,
        *(draws[name][sample] if name in draws else None
          for name in ("user_bias", "item_bias", "U", "V")))


def _sample_list(draws: dict[str, np.ndarray], samples) -> np.ndarray:
    if samples is None:
        return np.arange(len(next(iter(draws.values()))))
    return np.asarray(samples)


def predictor_draws(draws: dict[str, np.ndarray], user_idx: np.ndarray,
                    item_idx: np.ndarray, samples: np.ndarray | None = None) -> np.ndarray:
    """(samples x pairs) of mu + b_i + c_j + U_i.V_j from posterior ``draws`` (arrays with
    a leading sample axis: "mu", "user_bias", "item_bias", "U", "V", absent terms
    omitted), for the draws ``samples`` (default all); -1 indices at the prior mean.

    One draw at a time: each draw's U and V are small enough to stay in cache while its
    rows are gathered (gathering across draws was 5x slower at 4,000 draws)."""
    chosen = _sample_list(draws, samples)
    user_idx, item_idx = np.asarray(user_idx), np.asarray(item_idx)
    eta = np.empty((len(chosen), len(user_idx)))
    for row, sample in enumerate(chosen):
        eta[row] = _draw_predictor(draws, sample, user_idx, item_idx)
    return eta


def predictor_mean(draws: dict[str, np.ndarray], user_idx: np.ndarray,
                   item_idx: np.ndarray, samples: np.ndarray | None = None) -> np.ndarray:
    """The mean over draws of :func:`predictor_draws`, accumulated one draw at a time
    (memory: one value per pair)."""
    chosen = _sample_list(draws, samples)
    total = np.zeros(len(user_idx))
    for sample in chosen:
        total += _draw_predictor(draws, sample, user_idx, item_idx)
    return total / max(1, len(chosen))


def item_offset(draws: dict[str, np.ndarray], n_items: int,
                samples: np.ndarray | slice = slice(None)) -> np.ndarray:
    """(samples x items) of mu + c_j: the part of every prediction no user changes."""
    n_samples = len(np.arange(len(next(iter(draws.values()))))[samples]) if draws else 1
    offset = np.zeros((n_samples, n_items))
    if "mu" in draws:
        offset += draws["mu"][samples, None]
    if "item_bias" in draws:
        offset += draws["item_bias"][samples]
    return offset


def all_items_predictor(draws: dict[str, np.ndarray], n_items: int, factors: np.ndarray,
                        bias: np.ndarray, samples: np.ndarray | slice = slice(None)
                        ) -> np.ndarray:
    """(samples x users x items) of eta for users given by (samples x users x d) factor
    draws and (samples x users) bias draws, against every item: one matrix product per
    draw with the item factors of the same draws ``samples``."""
    eta = item_offset(draws, n_items, samples)[:, None, :] + bias[:, :, None]
    if "V" in draws and factors.shape[-1] > 0:
        eta = eta + np.matmul(factors, draws["V"][samples].transpose(0, 2, 1))
    return eta


def rated_items_matrix(train, extra=None, norm: str = "count", by_item: bool = False):
    """(users x items) row-normalised indicator of the items each user rated (constrained
    PMF's I): row i holds n_i^-1 (``norm="count"``) or n_i^-1/2 (``"sqrt"``) on the n_i
    items user i rated. ``extra`` (a RatingsData) adds pairs known to be rated without
    their values (the paper's use of the Netflix qualifying set); its ids must be in
    ``train``'s. ``by_item=True``: the (items x users) matrix of who rated each item,
    normalised the same way by the item's count."""
    users, items = train.user_idx, train.item_idx
    if extra is not None:
        extra_users = train.encode_users(extra.user_ids[extra.user_idx])
        extra_items = train.encode_items(extra.item_ids[extra.item_idx])
        known = (extra_users >= 0) & (extra_items >= 0)
        users = np.r_[users, extra_users[known]]
        items = np.r_[items, extra_items[known]]
    return normalised_indicator(users, items, (train.n_users, train.n_items), norm, by_item)


def normalised_indicator(users: np.ndarray, items: np.ndarray, shape: tuple[int, int],
                         norm: str = "count", by_item: bool = False):
    """:func:`rated_items_matrix` of the (user, item) index pairs given."""
    indicator = sp.csr_matrix((np.ones(len(users)), (users, items)), shape=shape)
    indicator.data[:] = 1.0  # a pair listed twice still counts once
    if by_item:
        indicator = indicator.T.tocsr()
    counts = np.asarray(indicator.sum(axis=1)).ravel()
    weights = 1.0 / np.maximum(counts, 1.0)
    return (sp.diags(np.sqrt(weights) if norm == "sqrt" else weights) @ indicator).tocsr()


# Tag values that mean "no tags" (the MovieLens files' own marker, and empty strings).
NO_TAGS = frozenset({"", "(no genres listed)"})


def item_tag_sets(item_ids, item_info, column: str) -> list[tuple[str, ...]]:
    """The tags of each item id, from ``item_info[column]`` ("|"-separated, as the
    MovieLens genres are), sorted; () for an item without a row, a value or a tag."""
    if item_info is None or column not in item_info:
        raise ConfigError(
            f"item_features={column!r} needs the items' {column!r} column, and this "
            "data has " + ("no item information" if item_info is None else
                           f"the columns {list(item_info.columns)}"),
            setting="item_features")
    values = item_info[column].reindex(item_ids)
    out = []
    for value in values.to_numpy(dtype=object):
        if not isinstance(value, str):
            out.append(())
            continue
        out.append(tuple(sorted({tag.strip() for tag in value.split("|")} - NO_TAGS)))
    return out


def item_tag_vocabulary(train, column: str) -> np.ndarray:
    """The tags the training items carry, sorted: the rows of Phi."""
    tags = sorted(set().union(*item_tag_sets(train.item_ids, train.item_info, column)))
    if not tags:
        raise ConfigError(f"item_features={column!r}: no training item has a tag in that "
                          "column", setting="item_features")
    return np.asarray(tags, dtype=object)


def tag_matrix(tag_sets, vocabulary, norm: str = "count"):
    """(rows x tags) normalised indicator (G for items, H for users): row j holds k_j^-1
    (``norm="count"``) or k_j^-1/2 (``"sqrt"``) on row j's k_j tags in ``vocabulary``
    (other tags are ignored: a tag no training row carried has no factors)."""
    position = {tag: k for k, tag in enumerate(vocabulary)}
    rows, cols = [], []
    for j, tags in enumerate(tag_sets):
        for tag in tags:
            if tag in position:
                rows.append(j)
                cols.append(position[tag])
    indicator = sp.csr_matrix((np.ones(len(rows)), (rows, cols)),
                              shape=(len(tag_sets), len(vocabulary)))
    counts = np.asarray(indicator.sum(axis=1)).ravel()
    weights = 1.0 / np.maximum(counts, 1.0)
    return (sp.diags(np.sqrt(weights) if norm == "sqrt" else weights) @ indicator).tocsr()


def item_additive_matrix(train, spec):
    """The item side's additive design: V = X + [M' | G] [Z; Phi], with M' the
    normalised raters of each item (``spec.implicit_items``) and G its normalised tags
    (``spec.item_features``), side by side (items x (users + tags))."""
    parts = []
    if spec.implicit_items:
        parts.append(rated_items_matrix(train, norm=spec.implicit_norm, by_item=True))
    if spec.item_features is not None:
        parts.append(feature_tag_matrix(train, spec, "item"))
    return sp.hstack(parts).tocsr()


def user_tag_sets(user_ids, user_info, columns) -> list[tuple[str, ...]]:
    """The tags of each user id, "column=value" for each of ``columns`` of ``user_info``
    (a value split at "|" as item tags are; every other value, numbers included, as
    written), sorted; () for a user without a row or values."""
    columns = tuple(columns)
    missing = [c for c in columns if user_info is None or c not in user_info]
    if missing:
        raise ConfigError(
            f"user_features={','.join(columns)!r} needs the users' {missing[0]!r} column, "
            "and this data has " + ("no user information (give a users file, e.g. "
                                    "MovieLens 100k's u.user)" if user_info is None else
                                    f"the columns {list(user_info.columns)}"),
            setting="user_features")
    table = user_info.reindex(user_ids)
    out: list[set] = [set() for _ in range(len(table))]
    for column in columns:
        for row, value in enumerate(table[column].to_numpy(dtype=object)):
            if value is None or (isinstance(value, float) and np.isnan(value)):
                continue
            text = value if isinstance(value, str) else str(value)
            out[row].update(f"{column}={tag.strip()}" for tag in text.split("|")
                            if tag.strip() not in NO_TAGS)
    return [tuple(sorted(tags)) for tags in out]


def user_tag_vocabulary(train, columns, sets=None) -> np.ndarray:
    """The tags the training users carry, sorted: the rows of Psi (``sets``: the training
    users' :func:`user_tag_sets`, if already computed)."""
    if sets is None:
        sets = user_tag_sets(train.user_ids, getattr(train, "user_info", None), columns)
    tags = sorted(set().union(*sets))
    if not tags:
        raise ConfigError(f"user_features={','.join(columns)!r}: no training user has a "
                          "value in those columns", setting="user_features")
    return np.asarray(tags, dtype=object)


def user_additive_matrix(train, spec):
    """The user side's additive design: U = Y + [M | H] [W; Psi], with M the normalised
    items each user rated (``spec.constrained``) and H their normalised tags
    (``spec.user_features``), side by side (users x (items + tags))."""
    parts = []
    if spec.constrained:
        parts.append(rated_items_matrix(train, norm=spec.implicit_norm))
    if spec.user_features is not None:
        parts.append(feature_tag_matrix(train, spec, "user"))
    return parts[0] if len(parts) == 1 else sp.hstack(parts).tocsr()


def tag_bias_matrix(train, spec, side: str):
    """The normalised tags (G for ``side="item"``, H for ``"user"``: rows x tags, as in
    the additive designs) whose products with the tags' bias regressors are the biases'
    prior means (``spec.tag_biases``); None where that side has none."""
    wanted = spec.item_tag_biases if side == "item" else spec.user_tag_biases
    return feature_tag_matrix(train, spec, side) if wanted else None


def feature_tag_matrix(train, spec, side: str):
    """One side's normalised tag matrix (rows x the training rows' tags, sorted): G from
    ``spec.item_features`` for ``side="item"``, H from ``spec.user_features`` for
    ``"user"``. The additive designs' tag part and the tag biases' design alike."""
    if side == "item":
        return tag_matrix(item_tag_sets(train.item_ids, train.item_info, spec.item_features),
                          item_tag_vocabulary(train, spec.item_features), spec.implicit_norm)
    columns = spec.user_feature_columns
    sets = user_tag_sets(train.user_ids, getattr(train, "user_info", None), columns)
    return tag_matrix(sets, user_tag_vocabulary(train, columns, sets), spec.implicit_norm)


def sigmoid(x: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * np.asarray(x)))


def check_params_match_spec(params: FactorParams, spec) -> None:
    """Terms the spec leaves out must be zero, or E would score a different model."""
    if params.n_factors != spec.n_factors:
        raise ConfigError(f"params have d={params.n_factors}, the spec d={spec.n_factors}")
    if not spec.global_mean and params.mu != 0:
        raise ConfigError(f"spec has no global mean, but params have mu={params.mu}")
    if not spec.biases and (np.any(params.user_bias) or np.any(params.item_bias)):
        raise ConfigError("spec has no bias terms, but params have nonzero biases")


def residuals(data, params: FactorParams, spec) -> np.ndarray:
    """Observed minus predicted on the likelihood's scale ([0, 1] for the logistic link)."""
    check_params_match_spec(params, spec)
    eta = params.linear_predictor(data.user_idx, data.item_idx)
    if spec.link == "logistic":
        return data.scale.to_unit(data.rating) - sigmoid(eta)
    return data.rating - eta


def objective(data, params: FactorParams, spec) -> float:
    """The PMF MAP objective E (half squared error plus ridge penalties) at ``params``
    for ratings ``data`` (a RatingsData) and model ``spec`` (a PMFSpec).

    The negative log-posterior with fixed sigmas is E / sigma^2 + const."""
    resid = residuals(data, params, spec)
    return 0.5 * float(resid @ resid) + objective_penalty(params, spec)


def objective_penalty(params: FactorParams, spec) -> float:
    """The ridge (and mu prior) part of the objective E: all of it but the data's half
    squared error."""
    value = 0.5 * spec.lambda_u * float(np.sum(params.user_factors**2))
    value += 0.5 * spec.lambda_v * float(np.sum(params.item_factors**2))
    if spec.biases:
        value += 0.5 * spec.lambda_user_bias * float(params.user_bias @ params.user_bias)
        value += 0.5 * spec.lambda_item_bias * float(params.item_bias @ params.item_bias)
    if spec.global_mean and spec.mu_prior is not None:
        m0, s0 = spec.mu_prior
        value += 0.5 * spec.sigma**2 / s0**2 * (params.mu - m0) ** 2
    return value


# --- the ordinal link --------------------------------------------------------------------


def rating_grid(scale) -> np.ndarray:
    """The K rating levels v_1 < ... < v_K of a bounded scale with a grid step (a
    RatingScale); the ordinal likelihood needs them."""
    if not (scale.bounded and scale.step):
        raise ConfigError(
            f"likelihood='ordinal' (the main job's default) needs ratings on a bounded grid "
            f"(e.g. 0.5 to 5 in half stars); these ratings have min={scale.min}, "
            f"max={scale.max}, step={scale.step}: choose likelihood='gaussian' for "
            "continuous ratings", setting="likelihood")
    grid = scale.values()
    if len(grid) < 2:
        raise ConfigError("likelihood='ordinal' needs at least two rating levels",
                          setting="likelihood")
    return grid


def cutpoint_centres(grid: np.ndarray) -> np.ndarray:
    """The K - 1 midpoints (v_k + v_{k+1})/2: where the cut points' prior is centred, and
    where the first cut point is fixed."""
    grid = np.asarray(grid, dtype=float)
    return 0.5 * (grid[:-1] + grid[1:])


def rating_levels(ratings: np.ndarray, grid: np.ndarray) -> np.ndarray:
    """The level index (0 .. K-1) of each rating on ``grid``; ConfigError if a rating is
    not one of the levels."""
    grid = np.asarray(grid, dtype=float)
    ratings = np.asarray(ratings, dtype=float)
    level = np.clip(np.searchsorted(cutpoint_centres(grid), ratings), 0, len(grid) - 1)
    off = np.abs(grid[level] - ratings) > 1e-9 * max(1.0, float(np.max(np.abs(grid))))
    if off.any():
        raise ConfigError(f"{int(off.sum())} rating(s) are not on the grid {grid.tolist()}, "
                          f"e.g. {float(ratings[off][0])!r}", setting="likelihood")
    return level.astype(np.int64)


def level_bounds(cutpoints, level: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The interval (theta_{k-1}, theta_k] of each rating level k (0 .. K-1) read off the
    K - 1 cut points (-inf below the first level, +inf above the last); cut points of
    shape (..., K-1) give bounds of shape (..., levels)."""
    cutpoints = np.asarray(cutpoints, dtype=float)
    outer = np.ones(cutpoints.shape[:-1] + (1,))
    edges = np.concatenate([-np.inf * outer, cutpoints, np.inf * outer], axis=-1)
    return edges[..., level], edges[..., level + 1]


def pair_bounds(cutpoints, level: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """:func:`level_bounds` with one set of cut points per pair: cut points (..., pairs,
    K-1) (or a :class:`UserCutpoints`) and one level per pair give bounds (..., pairs)."""
    if isinstance(cutpoints, UserCutpoints):
        return cutpoints.bounds(level)
    cutpoints = np.asarray(cutpoints, dtype=float)
    outer = np.ones(cutpoints.shape[:-1] + (1,))
    edges = np.concatenate([-np.inf * outer, cutpoints, np.inf * outer], axis=-1)
    index = np.broadcast_to(np.asarray(level)[..., None], cutpoints.shape[:-1] + (1,))
    return (np.take_along_axis(edges, index, axis=-1)[..., 0],
            np.take_along_axis(edges, index + 1, axis=-1)[..., 0])


# --- per-user thresholds (thresholds="user") ----------------------------------------------
#
# User u's cut points T_u share the fixed first one, and each gap is the global gap times
# exp(epsilon_uk), epsilon_uk ~ N(0, tau^2): T_u,k+1 = T_u,k + (theta_k+1 - theta_k) e^eps.
# tau -> 0 is the global model; a user who never gives half stars has wide whole-star
# intervals, one who never goes below 3 a wide bottom interval.


def user_cutpoints(cutpoints, offsets) -> np.ndarray:
    """Users' cut points (..., users, K-1) from the global ones (..., K-1) and the users'
    log gap offsets epsilon (..., users, K-2)."""
    cutpoints = np.asarray(cutpoints, dtype=float)
    gaps = np.diff(cutpoints, axis=-1)[..., None, :] * np.exp(offsets)
    first = np.broadcast_to(cutpoints[..., None, :1], gaps.shape[:-1] + (1,))
    return np.concatenate([first, first + np.cumsum(gaps, axis=-1)], axis=-1)


def log_gap_offsets(user_cut, cutpoints) -> np.ndarray:
    """The users' log gap offsets epsilon (..., users, K-2): the inverse of
    :func:`user_cutpoints`."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return (np.log(np.diff(user_cut, axis=-1))
                - np.log(np.diff(np.asarray(cutpoints, dtype=float), axis=-1))[..., None, :])


def gap_log_density(lower, upper, gap, tau: float) -> np.ndarray:
    """log p(a user's gap upper - lower | the global gap) under the log-normal prior of
    per-user thresholds, as a density of the user's cut points (the 1/width is the
    Jacobian from epsilon); -inf for a gap that is not positive."""
    width = np.asarray(upper, dtype=float) - lower
    with np.errstate(divide="ignore", invalid="ignore"):
        out = _gap_terms(np.log(width), gap, tau)
    if np.ndim(out) and (width > 0).all():
        return out  # (np.where would copy it unchanged)
    return np.where(width > 0, out, -np.inf)


def _gap_terms(log_width, gap, tau: float):
    """:func:`gap_log_density` of gaps with logarithms ``log_width``, where positive."""
    offset = log_width - np.log(gap)
    return -0.5 * (offset / tau) ** 2 - log_width - np.log(tau * np.sqrt(2 * np.pi))


def user_threshold_log_density(user_cut, cutpoints, tau: float) -> float:
    """log p(every user's cut points | the global ones): the sum of :func:`gap_log_density`
    over users and gaps."""
    return UserGaps(user_cut).log_density(cutpoints, tau)


class UserGaps:
    """Every user's gaps between cut points (users x K-2), read once: their prior density
    given the global cut points (:meth:`log_density`, :func:`user_threshold_log_density`)
    for as many global cut points as a sampler proposes while the users' stay put. The
    same numbers as :func:`gap_log_density` summed, without re-reading the users'."""

    def __init__(self, user_cut) -> None:
        user_cut = np.asarray(user_cut, dtype=float)
        self.width = user_cut[:, 1:] - user_cut[:, :-1]
        with np.errstate(divide="ignore", invalid="ignore"):
            self.log_width = np.log(self.width)
        self.valid = bool((self.width > 0).all())

    def log_density(self, cutpoints, tau: float) -> float:
        """log p(the users' cut points | the global ``cutpoints``, spread ``tau``)."""
        cutpoints = np.asarray(cutpoints, dtype=float)
        gaps = cutpoints[1:] - cutpoints[:-1]  # np.diff's numbers, without its overhead
        with np.errstate(divide="ignore", invalid="ignore"):
            out = _gap_terms(self.log_width, gaps, tau)
        if not self.valid:
            out = np.where(self.width > 0, out, -np.inf)
        return float(out.sum())


# spec.ORDINAL_LINKS, restated: the spec module stays free of the arithmetic and this one
# of the spec (a deeper import graph otherwise)
_LINKS = ("probit", "logit")


def _check_link(link: str) -> None:
    if link not in _LINKS:
        raise ConfigError(f"ordinal_link must be one of {_LINKS}, got {link!r}",
                          setting="ordinal_link")


def latent_cdf(x, link: str = "probit") -> np.ndarray:
    """The standardised latent's cdf: the normal's (probit) or the logistic's (logit)."""
    _check_link(link)
    return ndtr(x) if link == "probit" else expit(x)


def _log_cdf(x, link: str) -> np.ndarray:
    return log_ndtr(x) if link == "probit" else log_expit(x)


def standard_latent(normal: np.ndarray, link: str = "probit") -> np.ndarray:
    """Standard normal numbers turned into standardised latent noise by the probability
    integral transform: unchanged for the probit, logit(Phi(x)) for the logit (computed
    as log Phi(x) - log Phi(-x), exact in both tails)."""
    _check_link(link)
    normal = np.asarray(normal, dtype=float)
    return normal if link == "probit" else log_ndtr(normal) - log_ndtr(-normal)


def log_interval_probability(lower, upper, eta, sigma, link: str = "probit") -> np.ndarray:
    """log P(lower < z <= upper) for z ~ N(eta, sigma^2) (``link="probit"``) or
    z ~ Logistic(eta, sigma) (``"logit"``), accurate in both tails (bounds may be -inf /
    +inf)."""
    _check_link(link)
    cdf = ndtr if link == "probit" else expit
    a = (np.asarray(lower, dtype=float) - eta) / sigma
    b = (np.asarray(upper, dtype=float) - eta) / sigma
    flip = a > 0  # both bounds in the upper tail: use the mirror image, P(-b < x <= -a)
    if flip.any():  # (skipped when no value flips: the same numbers, fewer calls)
        a, b = np.where(flip, -b, a), np.where(flip, -a, b)
    with np.errstate(divide="ignore", invalid="ignore"):
        # a <= 0 now, so F(a) <= 1/2 carries full relative precision: the plain
        # difference is exact to rounding unless it underflows (b far out or a ~ b)
        out = np.log(cdf(b) - cdf(a))
        far = ~(out > -600.0)
        if far.any():
            shape = np.shape(out)
            log_b = _log_cdf(np.broadcast_to(b, shape)[far], link)
            log_a = _log_cdf(np.broadcast_to(a, shape)[far], link)
            out = np.array(out, dtype=float, copy=True)
            out[far] = log_b + np.log1p(-np.exp(log_a - log_b))
    return out


def truncated_normal_mean(eta, lower, upper, sigma) -> np.ndarray:
    """E[z] for z ~ N(eta, sigma^2) truncated to (lower, upper] (bounds may be -inf /
    +inf): eta + sigma (phi(a) - phi(b)) / (Phi(b) - Phi(a)), the densities divided by
    the mass in log space so that far tails stay finite."""
    log_mass = log_interval_probability(lower, upper, eta, sigma)
    a = (np.asarray(lower, dtype=float) - eta) / sigma
    b = (np.asarray(upper, dtype=float) - eta) / sigma
    with np.errstate(over="ignore", invalid="ignore"):
        ratio_a = np.where(np.isfinite(a), np.exp(-0.5 * a**2 - log_mass), 0.0)
        ratio_b = np.where(np.isfinite(b), np.exp(-0.5 * b**2 - log_mass), 0.0)
    return eta + sigma * (ratio_a - ratio_b) / np.sqrt(2 * np.pi)


# Long chains of elementwise operations run over cache-sized pieces of 1-D inputs: every
# temporary then stays in cache instead of streaming ~70 MB arrays through memory once
# per operation. Measured at 9e6 values: truncated-normal draws 1.10 -> 0.78 s, a sum of
# interval log-probabilities 0.64 -> 0.32 s; each value's arithmetic is unchanged.
_PIECE = 1 << 15


def _pieces(n: int, *values) -> bool:
    """Whether 1-D inputs of length ``n`` (scalars allowed) are worth cutting in pieces."""
    return n > _PIECE and all(np.ndim(v) == 0 or np.shape(v) == (n,) for v in values)


def _piece(value, part: slice):
    return value if np.ndim(value) == 0 else value[part]


def sum_log_interval_probability(lower, upper, eta, sigma, link: str = "probit") -> float:
    """sum(log_interval_probability(lower, upper, eta, sigma, link)) for 1-D eta, in
    pieces."""
    eta = np.asarray(eta, dtype=float)
    n = len(eta)
    if not _pieces(n, lower, upper, sigma):
        return float(np.sum(log_interval_probability(lower, upper, eta, sigma, link)))
    total = 0.0
    for start in range(0, n, _PIECE):
        part = slice(start, start + _PIECE)
        total += float(np.sum(log_interval_probability(
            _piece(lower, part), _piece(upper, part), eta[part], _piece(sigma, part),
            link)))
    return total


def truncated_normal(eta, lower, upper, sigma, uniform: np.ndarray) -> np.ndarray:
    """Draws of z ~ N(eta, sigma^2) truncated to (lower, upper], by inverting the cdf at
    ``uniform`` (U(0, 1) numbers, one per value), in the tail where the cdf is accurate;
    beyond the reach of double precision (a bound 38 sd out) the draw is the
    exponential approximation of the far tail."""
    n = np.size(uniform)
    if np.ndim(uniform) == 1 and np.shape(eta) == (n,) and _pieces(n, lower, upper, sigma):
        out = np.empty(n)
        for start in range(0, n, _PIECE):
            part = slice(start, start + _PIECE)
            out[part] = _truncated_normal(eta[part], _piece(lower, part),
                                          _piece(upper, part), _piece(sigma, part),
                                          uniform[part])
        return out
    return _truncated_normal(eta, lower, upper, sigma, uniform)


def _truncated_normal(eta, lower, upper, sigma, uniform: np.ndarray) -> np.ndarray:
    a = (np.asarray(lower, dtype=float) - eta) / sigma
    b = (np.asarray(upper, dtype=float) - eta) / sigma
    flip = a > 0
    a, b = np.where(flip, -b, a), np.where(flip, -a, b)
    low, high = ndtr(a), ndtr(b)
    with np.errstate(divide="ignore", invalid="ignore"):
        x = ndtri(low + uniform * (high - low))
        far = ~(high > low) | ~np.isfinite(x)
        if far.any():  # the mass sits against b: b - Exp(|b|)
            x = np.where(far, b + np.log(np.maximum(uniform, 1e-300)) / np.abs(b), x)
    x = np.clip(x, a, b)
    return eta + sigma * np.where(flip, -x, x)


class UserCutpoints:
    """Each pair's cut points under per-user thresholds, gathered one cut point at a time
    so that no samples x pairs x K-1 array is built: ``table`` holds every stored draw's
    users' cut points (draws x users x K-1; read, not copied), ``samples`` the draws used
    (an index array, or None for all), ``rows`` each pair's user (any shape; -1: a user
    the model has not seen, who gets the draws' global cut points ``fallback``, draws x
    K-1)."""

    def __init__(self, table, samples, rows, fallback) -> None:
        self.table = table
        self.samples = None if samples is None else np.asarray(samples, dtype=np.intp)
        self.rows = np.asarray(rows, dtype=np.intp)
        self.known = self.rows >= 0
        self.fallback = np.asarray(fallback if samples is None else fallback[self.samples],
                                   dtype=float)
        self.count = table.shape[-1]
        self.n_samples = len(self.fallback)

    def _gather(self, k) -> np.ndarray:
        """(samples x rows.shape) of cut point ``k`` (an int, or one per pair)."""
        safe = np.where(self.known, self.rows, 0).ravel()
        k = np.broadcast_to(k, self.rows.shape).ravel()
        if self.samples is None:
            values = self.table[:, safe, k]
        else:
            values = self.table[self.samples[:, None], safe[None, :], k[None, :]]
        values = np.asarray(values, dtype=float).reshape((self.n_samples,) + self.rows.shape)
        if not self.known.all():
            values[:, ~self.known] = self.fallback[:, k.reshape(self.rows.shape)[~self.known]]
        return values

    def column(self, k: int) -> np.ndarray:
        """Cut point k of every pair's user, per draw: (samples x rows.shape)."""
        return self._gather(k)

    def bounds(self, level: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """:func:`pair_bounds` of each pair's level (rows' shape), per draw."""
        level = np.broadcast_to(np.asarray(level), self.rows.shape)
        lower = self._gather(np.maximum(level - 1, 0))
        upper = self._gather(np.minimum(level, self.count - 1))
        lower[:, level == 0] = -np.inf
        upper[:, level == self.count] = np.inf
        return lower, upper


def _cut(cutpoints, k: int) -> np.ndarray:
    """Cut point k of every sample (and pair), shaped by :func:`_per_sample`."""
    return cutpoints.column(k) if isinstance(cutpoints, UserCutpoints) else cutpoints[:, k]


def _cut_count(cutpoints) -> int:
    return cutpoints.count if isinstance(cutpoints, UserCutpoints) else cutpoints.shape[1]


def _per_sample(eta: np.ndarray, cutpoints, sigma) -> tuple[np.ndarray, np.ndarray]:
    """Cut points (samples x K-1) and sigma (samples) shaped to broadcast against eta
    (samples x ...): one set per sample; or cut points per pair (samples x ... x K-1, the
    middle axes broadcasting against eta's), returned as (samples x K-1 x ...); or a
    :class:`UserCutpoints`, returned as it is."""
    if isinstance(cutpoints, UserCutpoints):
        sigma = np.broadcast_to(np.asarray(sigma, dtype=float), (cutpoints.n_samples,))
        return cutpoints, sigma.reshape(sigma.shape + (1,) * (eta.ndim - 1))
    cutpoints = np.atleast_2d(np.asarray(cutpoints, dtype=float))
    sigma = np.broadcast_to(np.asarray(sigma, dtype=float), (len(cutpoints),))
    tail = (1,) * (eta.ndim - 1)
    if cutpoints.ndim > 2:  # per pair (samples x ... x K-1, broadcasting against eta)
        return np.moveaxis(cutpoints, -1, 1), sigma.reshape(sigma.shape + tail)
    return (cutpoints.reshape(cutpoints.shape + tail),
            sigma.reshape(sigma.shape + tail))


def ordinal_expected_rating(eta, cutpoints, sigma, grid, link: str = "probit"
                            ) -> np.ndarray:
    """E[r | eta] = v_1 + sum_k (v_{k+1} - v_k) P(z > theta_k) for eta (samples x ...),
    cut points (samples x K-1) and sigma (samples), one cut point at a time."""
    _check_link(link)
    eta = np.asarray(eta, dtype=float)
    per_pair = np.ndim(cutpoints) > 2
    cutpoints, sigma = _per_sample(eta, cutpoints, sigma)
    grid = np.asarray(grid, dtype=float)
    out = np.full(eta.shape, grid[0])
    if isinstance(cutpoints, UserCutpoints):  # one cut point of every pair at a time
        for k, gap in enumerate(np.diff(grid)):
            out += gap * latent_cdf((eta - cutpoints.column(k)) / sigma, link)
        return out
    # in pieces along the pairs' last axis (see _PIECE): same arithmetic for every value
    # (1-D eta is one value per sample: no pairs axis to cut)
    width = eta.shape[-1] if eta.ndim >= 2 else 1
    step = max(1, _PIECE // eta[..., :1].size) if eta.ndim >= 2 else 1
    for start in range(0, width, step):
        part = (..., slice(start, start + step)) if eta.ndim >= 2 else ...
        piece = eta[part]
        for k, gap in enumerate(np.diff(grid)):
            cut = cutpoints[:, k]
            if per_pair:
                cut = np.broadcast_to(cut, eta.shape)[part]
            out[part] += gap * latent_cdf((piece - cut) / sigma, link)
    return out


def ordinal_draws(eta, cutpoints, sigma, grid, normal: np.ndarray, link: str = "probit"
                  ) -> np.ndarray:
    """Ratings drawn from the ordinal model: z = eta + sigma * e, snapped to the level
    whose interval holds it (eta, normal: samples x ...); e is ``normal`` itself for the
    probit, its logistic transform (:func:`standard_latent`) for the logit."""
    eta = np.asarray(eta, dtype=float)
    cutpoints, sigma = _per_sample(eta, cutpoints, sigma)
    latent = eta + sigma * standard_latent(normal, link)
    level = np.zeros(latent.shape, dtype=np.int64)
    for k in range(_cut_count(cutpoints)):
        level += latent > _cut(cutpoints, k)
    return np.asarray(grid, dtype=float)[level]


def binned_probabilities(centre, edges, sigma, link: str = "probit") -> np.ndarray:
    """(pairs x K): the mean over samples of P(edges_{k-1} < z <= edges_k) for
    z ~ N(centre_s, sigma_s^2) (or the logistic, ``link="logit"``): centre (samples x
    pairs), edges (samples x K-1) the interior bin edges (the ordinal model's cut points;
    the grid's midpoints for the Gaussian model's mass on each grid bin), sigma
    (samples)."""
    _check_link(link)
    centre = np.asarray(centre, dtype=float)
    edges, sigma = _per_sample(centre, edges, sigma)
    below = np.zeros(centre.shape)
    out = np.empty(centre.shape[1:] + (_cut_count(edges) + 1,))
    for k in range(_cut_count(edges)):
        cdf = latent_cdf((_cut(edges, k) - centre) / sigma, link)
        out[..., k] = (cdf - below).mean(axis=0)
        below = cdf
    out[..., -1] = (1.0 - below).mean(axis=0)
    return out

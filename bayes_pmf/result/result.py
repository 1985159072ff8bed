"""A fitted PMF result: predictions for any (user, item) pairs from any method.

:class:`PMFResult` wraps the InferenceData every method returns. Predictions average
the predicted rating over posterior draws (for a point estimate there is one draw);
raw factors are never averaged, since they are identified only up to rotation.

Unknown ids (cold start) follow an explicit policy, ``unknown=``:

* ``"error"`` (default): raise :class:`~bayes_pmf.errors.UnknownIdError` naming them;
* ``"prior"``: use the prior mean for what was not learned — an unknown user's factors
  and bias are 0, so the prediction is mu + c_j (the item's bias-baseline prediction),
  an unknown item gives mu + b_i, both unknown give mu;
* ``"nan"``: return NaN for those pairs.
"""

from __future__ import annotations

from functools import cached_property
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd

from ..data.ratings import RatingScale
from ..errors import ConfigError, ResultFileError, UnknownIdError, plain_scalar
from ..model.params import (
    FactorParams,
    UserCutpoints,
    binned_probabilities,
    cutpoint_centres,
    item_tag_sets,
    item_tag_vocabulary,
    level_bounds,
    log_interval_probability,
    ordinal_draws,
    ordinal_expected_rating,
    pair_bounds,
    predictor_draws,
    predictor_mean,
    rating_grid,
    rating_levels,
    sigmoid,
    tag_matrix,
    user_tag_sets,
    user_tag_vocabulary,
)
from ..model.spec import PMFSpec
from . import idata as idata_io

UnknownPolicy = Literal["error", "prior", "nan"]


# draws x pairs values held at once when mapped draws are averaged (128 MB of float64)
_BLOCK_VALUES = 1 << 24


def encode_pairs(user_ids: pd.Index, item_ids: pd.Index, users, items,
                 unknown: UnknownPolicy, sides: tuple[str, ...] = ("user", "item")
                 ) -> tuple[np.ndarray, np.ndarray]:
    """Indices of the pairs in the vocabularies (-1 where unknown), enforcing ``unknown``
    on the ``sides`` the model has parameters for (a user-mean baseline cannot fail to
    know an item)."""
    if unknown not in ("error", "prior", "nan"):
        raise ConfigError(f"unknown must be 'error', 'prior' or 'nan', got {unknown!r}")
    users = pd.Index(users)
    items = pd.Index(items)
    if len(users) != len(items):
        raise ConfigError(f"got {len(users)} users but {len(items)} items; pass one per pair")
    user_idx = user_ids.get_indexer(users)
    item_idx = item_ids.get_indexer(items)
    if unknown == "error":
        for kind, idx, ids in (("user", user_idx, users), ("item", item_idx, items)):
            if kind not in sides:
                continue
            missing = idx < 0
            if missing.any():
                examples = pd.unique(np.asarray(ids[missing]))
                raise UnknownIdError(
                    f"{int(missing.sum())} pair(s) name {len(examples)} {kind}(s) absent from "
                    f"the training data, e.g. {kind} {plain_scalar(examples[0])!r}; pass "
                    f"unknown='prior' "
                    f"for the cold-start prediction or unknown='nan'"
                )
    return user_idx, item_idx


def _decode_spec(attrs: dict) -> PMFSpec:
    """The spec of a result's attrs. Files written before the spec held the prior family
    and the noise model recorded them as the Gibbs sampler's settings."""
    settings = dict(attrs["spec"])
    if "prior" not in settings:
        legacy = attrs["settings"]
        hyper = legacy.get("hyper", "fixed")
        settings["prior"] = {"bpmf": "normal-wishart"}.get(hyper, hyper)
        settings["noise"] = "learned" if legacy.get("learn_sigma") else "fixed"
        settings["constrained"] = bool(legacy.get("constrained", False))
    try:
        return PMFSpec.from_dict(settings)
    except ConfigError as exc:
        raise ResultFileError(f"the saved model spec is not valid: {exc}") from None


# The tags' factors of each side's features (Phi: item features, Psi: user features).
_TAG_FACTORS = {"item": "Phi", "user": "Psi"}


class PMFResult:
    """A fitted model, from any method; immutable. Wraps the ArviZ InferenceData
    ``idata`` (see :mod:`bayes_pmf.result.idata` for its groups); ``method``, ``spec``,
    ``scale``, ``seed`` and ``attrs`` (settings, versions, data hash) come from it."""

    def __init__(self, idata) -> None:
        attrs = idata_io.raw_attrs(idata)
        attrs["spec"] = _decode_spec(attrs)
        try:
            attrs["scale"] = RatingScale(**attrs["scale"])
        except (TypeError, ValueError) as exc:
            raise ResultFileError(f"the saved rating scale is not valid: {exc}") from None
        self.idata = idata
        self.method: str = attrs["method"]
        self.spec: PMFSpec = attrs["spec"]
        self.scale: RatingScale = attrs["scale"]
        self.seed = attrs["seed"]
        self.attrs = attrs
        self.user_ids, self.item_ids = idata_io.vocabularies(idata)
        self._described_info: dict[str, pd.DataFrame] = {}

    def describing_items(self, item_info: pd.DataFrame | None) -> "PMFResult":
        """This result, told the side information of items it has no ratings for
        (``item_info`` indexed by item id, with the spec's ``item_features`` column): a
        model with item features then predicts such an item from its tags, mu + b_i +
        U_i . (k^-a sum of the tags' Phi), instead of the prior mean's mu + b_i. A model
        without item features (or ``item_info=None``) is returned as it is. The held-out
        predictions (:func:`~bayes_pmf.result.predictive.held_out_predictions`) pass
        the test data's own item information."""
        return self._described("item", item_info)

    def describing_users(self, user_info: pd.DataFrame | None) -> "PMFResult":
        """This result, told the side information of users it has no ratings for
        (``user_info`` indexed by user id, with the spec's ``user_features`` columns): a
        model with user features then predicts such a user from their tags, mu + c_j +
        (h^-a sum of the tags' Psi) . V_j, instead of the prior mean's mu + c_j. As
        :meth:`describing_items` otherwise (both can be told)."""
        return self._described("user", user_info)

    def _described(self, side: str, info: pd.DataFrame | None) -> "PMFResult":
        features = self.spec.item_features if side == "item" else self.spec.user_features
        if features is None or info is None or _TAG_FACTORS[side] not in self.draws:
            return self
        described = PMFResult(self.idata)
        described.__dict__["draws"] = self.draws  # the cached draws, not a second copy
        described._described_info = dict(self._described_info, **{side: info})
        return described

    def user_tag_matrix(self):
        """H (training users x the result's user tags, normalised as the model has it):
        the rows through which the users' factors add Psi, or None without user
        features."""
        sets = idata_io.user_tags(self.idata)
        if sets is None or "Psi" not in self.draws:
            return None
        vocabulary = self.idata.posterior["Psi"].coords["user_tag"].to_numpy()
        return tag_matrix(sets, vocabulary, self.spec.implicit_norm)

    def _cold_tags(self, side: str, ids, idx, cold):
        """(rows of the cold pairs whose ``side`` the result knows, the positions of those
        it knows only from :meth:`describing_items` / :meth:`describing_users` with their
        normalised tags as a sparse matrix, or None)."""
        rows = np.asarray(idx)[cold]
        info = self._described_info.get(side)
        unknown = np.flatnonzero(rows < 0)
        if info is None or not len(unknown):
            return rows, unknown, None
        ids = pd.Index(np.asarray(ids, dtype=object)[cold][unknown])
        vocabulary = self.idata.posterior[_TAG_FACTORS[side]].coords[f"{side}_tag"].to_numpy()
        sets = (item_tag_sets(ids, info, self.spec.item_features) if side == "item"
                else user_tag_sets(ids, info, self.spec.user_feature_columns))
        return rows, unknown, tag_matrix(sets, vocabulary, self.spec.implicit_norm)

    def _cold_side(self, side: str, tags, sample: int) -> np.ndarray:
        """(cold pairs x d) one draw's factors of the cold pairs' ``side``: the result's own
        for known rows, the tags' (normalised sum of Phi / Psi) for described ones, zero
        otherwise."""
        rows, unknown, matrix = tags
        factors = np.asarray(self.draws["U" if side == "user" else "V"][sample][
            np.maximum(rows, 0)], dtype=np.float64)
        factors[rows < 0] = 0.0
        if matrix is not None:
            factors[unknown] = np.asarray(matrix @ self.draws[_TAG_FACTORS[side]][sample])
        return factors

    def _cold_terms(self, users, items, user_idx, item_idx, samples, by_index: bool):
        """(samples x pairs) the factor term of pairs with a user or an item known only
        from :meth:`describing_items` / :meth:`describing_users` (zero elsewhere), or
        None: U_i . (G_j Phi), (H_i Psi) . V_j, or (H_i Psi) . (G_j Phi); with tag biases
        plus G_j beta_item and H_i beta_user for those rows."""
        if not self._described_info or by_index:
            return None
        user_idx, item_idx = np.asarray(user_idx), np.asarray(item_idx)
        cold = np.flatnonzero((user_idx < 0) | (item_idx < 0))
        if not len(cold):
            return None
        chosen = np.arange(self.n_samples) if samples is None else np.asarray(samples)
        user_tags = self._cold_tags("user", users, user_idx, cold)
        item_tags = self._cold_tags("item", items, item_idx, cold)
        terms = np.zeros((len(chosen), len(user_idx)))
        for row, sample in enumerate(chosen):  # one draw at a time: memory of one draw
            terms[row, cold] = np.einsum("pd,pd->p", self._cold_side("user", user_tags, sample),
                                         self._cold_side("item", item_tags, sample))
            for side, tags in (("user", user_tags), ("item", item_tags)):
                self._add_cold_bias(side, tags, sample, terms[row], cold)
        return terms

    def _add_cold_bias(self, side: str, tags, sample: int, out: np.ndarray, cold) -> None:
        """With tag biases, add the described cold rows' bias prior mean (their tags'
        normalised sum of beta: G_j beta_item or H_i beta_user) to their pairs in ``out``."""
        rows, unknown, matrix = tags
        name = f"{side}_tag_bias"
        if matrix is None or name not in self.draws:
            return
        out[np.asarray(cold)[unknown]] += np.asarray(
            matrix @ np.asarray(self.draws[name][sample], dtype=np.float64))

    def _eta(self, users, items, user_idx, item_idx, samples, by_index: bool) -> np.ndarray:
        """(samples x pairs) linear predictor of encoded pairs, with the tags' terms of
        described cold users and items (:meth:`describing_items`)."""
        eta = predictor_draws(self.draws, user_idx, item_idx, samples)
        cold = self._cold_terms(users, items, user_idx, item_idx, samples, by_index)
        if cold is not None:
            eta += cold
        return eta

    def save(self, path: str | Path) -> Path:
        return save_result(self, path)

    def with_method(self, method: str) -> "PMFResult":
        """The same result under another method name (the main job names each run)."""
        return PMFResult(idata_io.with_attrs(self.idata, method=method))

    def require_held_out(self):
        """:attr:`held_out`, or a ConfigError saying how to get it."""
        if self.held_out is None:
            raise ConfigError("this result holds no held-out predictions; pass the test "
                              "ratings or call held_out_predictions(result, test)",
                              setting="test")
        return self.held_out

    def require_draws(self, count: int, purpose: str) -> None:
        """A ConfigError unless the result has at least ``count`` posterior draws."""
        if self.n_samples < count:
            raise ConfigError(
                f"{self.method} result has {self.n_samples} draw(s): {purpose} need "
                "posterior samples (gibbs, nuts, advi)")

    def training_pairs(self) -> tuple[np.ndarray, np.ndarray]:
        """(user_idx, item_idx) of the training ratings the result was fitted to."""
        return idata_io.training_pairs(self.idata)

    def without_predictions(self) -> "PMFResult":
        """The result without its held-out predictions (what run folders save)."""
        return PMFResult(idata_io.without_predictions(self.idata))

    def keeping_held_out(self, columns, *, draws: bool = True) -> "PMFResult":
        """The result with only the listed columns of its stored held-out predictions
        (and the pairs' ids and ratings), their predictive draws only with ``draws``:
        what a long run keeps of a scored model for the few columns its figures read."""
        return PMFResult(idata_io.keep_predictions(self.idata, columns, draws))

    def with_idata(self, idata) -> "PMFResult":
        """A result around ``idata`` (e.g. this one's with more groups)."""
        return PMFResult(idata)

    @property
    def settings(self) -> dict:
        """How the engine ran: its settings and what it recorded (ALS: the objective per
        sweep, ``converged``, ``n_sweeps``; Gibbs: draws, chains, timings, ...)."""
        return self.attrs["settings"]

    @property
    def has_predictive(self) -> bool:
        """False for the mean baselines, which define no noise model and so no
        predictive distribution (no intervals, no coverage)."""
        return bool(self.attrs["settings"].get("predictive", True))

    @property
    def item_info(self) -> pd.DataFrame | None:
        """The items' titles (column ``title``, indexed by item id) when the training
        data had them, else None."""
        titles = idata_io.item_titles(self.idata)
        return None if titles is None else titles.to_frame()

    @property
    def held_out(self):
        """(predictive draws, per-pair table) of the held-out predictions stored by
        :func:`bayes_pmf.result.predictive.held_out_predictions`, or None."""
        return idata_io.predictions_of(self.idata)

    def held_out_table(self, columns) -> pd.DataFrame | None:
        """The listed columns of :attr:`held_out`'s per-pair table (or None): what a
        reader of one or two columns asks for instead of the whole table."""
        stored = idata_io.predictions_of(self.idata, columns)
        return None if stored is None else stored[1]

    def thinned(self, max_draws: int) -> "PMFResult":
        """The same result with at most ``max_draws`` posterior draws, evenly spaced
        within each chain (a point estimate is returned unchanged)."""
        if max_draws < 1:
            raise ConfigError(f"max_draws must be >= 1, got {max_draws!r}")
        return PMFResult(idata_io.thinned(self.idata, max_draws))

    def __repr__(self) -> str:
        return (f"PMFResult(method={self.method!r}, d={self.spec.n_factors}, "
                f"samples={self.n_samples}, users={len(self.user_ids)}, "
                f"items={len(self.item_ids)})")

    @property
    def n_samples(self) -> int:
        chains, draws = idata_io.chains_and_draws(self.idata)
        return chains * draws

    @cached_property
    def draws(self) -> dict[str, np.ndarray]:
        return idata_io.stacked_draws(self.idata)

    @property
    def sigma_draws(self) -> np.ndarray:
        """Noise sd per posterior draw: learned (``sigma`` in the posterior) or the
        spec's fixed value repeated."""
        if "sigma" in self.draws:
            return self.draws["sigma"]
        return np.full(self.n_samples, self.spec.sigma)

    def point_params(self) -> FactorParams:
        """The parameters of a point estimate (ALS, MAP): one chain, one draw."""
        if self.n_samples != 1:
            raise ConfigError(
                f"{self.method} result has {self.n_samples} posterior draws; factors of "
                "different draws are not comparable (rotation), so there is no single point"
            )
        draws = self.draws
        d = self.spec.n_factors
        return FactorParams(
            user_factors=draws["U"][0] if "U" in draws else np.zeros((len(self.user_ids), d)),
            item_factors=draws["V"][0] if "V" in draws else np.zeros((len(self.item_ids), d)),
            mu=float(draws["mu"][0]) if "mu" in draws else 0.0,
            user_bias=draws["user_bias"][0] if "user_bias" in draws else None,
            item_bias=draws["item_bias"][0] if "item_bias" in draws else None,
        )

    def _chosen(self, samples) -> np.ndarray | slice:
        return slice(None) if samples is None else np.asarray(samples)

    def cutpoint_draws(self, samples=None, user_idx=None) -> np.ndarray:
        """The ordinal model's cut points of the draws ``samples`` (default all):
        (samples x K-1), or with per-user thresholds and ``user_idx`` (row positions of
        users, any shape; -1: a user the model has not seen, who gets the global cut
        points) a :class:`~bayes_pmf.model.params.UserCutpoints`, which the ordinal
        arithmetic reads one cut point at a time."""
        chosen = self._chosen(samples)
        if user_idx is None or "user_cutpoints" not in self.draws:
            return self.draws["cutpoints"][chosen]
        return UserCutpoints(self.draws["user_cutpoints"], samples, user_idx,
                             self.draws["cutpoints"])

    def to_rating_scale(self, eta: np.ndarray, samples=None, user_idx=None) -> np.ndarray:
        """eta (samples x ...: the draws ``samples``, default all) mapped through the link
        onto the rating scale: the expected rating E[r | params] of each draw. With
        per-user thresholds, ``user_idx`` (broadcasting against eta's trailing axes) says
        whose cut points apply (None: the global ones)."""
        if self.spec.ordinal:
            chosen = self._chosen(samples)
            return ordinal_expected_rating(eta, self.cutpoint_draws(samples, user_idx),
                                           self.sigma_draws[chosen], self.grid,
                                           self.spec.ordinal_link)
        if self.spec.link == "logistic":
            return self.scale.from_unit(sigmoid(eta))
        return eta

    @property
    def grid(self) -> np.ndarray:
        """The rating levels (a bounded scale with a step; ConfigError otherwise)."""
        return rating_grid(self.scale)

    def eta_draws(self, users, items, *, unknown: UnknownPolicy = "error",
                  samples: np.ndarray | None = None, by_index: bool = False) -> np.ndarray:
        """Draws of the linear predictor eta for each pair: (samples x pairs).

        ``by_index=True``: ``users`` and ``items`` are row positions in the result's
        ``user_ids`` / ``item_ids`` (as in ``training_pairs()``), not ids; every method
        below that takes pairs passes it on."""
        user_idx, item_idx, unknown_pairs = self._encode(users, items, unknown, by_index)
        eta = self._eta(users, items, user_idx, item_idx, samples, by_index)
        if unknown == "nan":
            eta[:, unknown_pairs] = np.nan
        return eta

    def mean_draws(self, users, items, *, unknown: UnknownPolicy = "error",
                   samples: np.ndarray | None = None, by_index: bool = False) -> np.ndarray:
        """Draws of the expected rating E[r | params] for each pair: (samples x pairs)."""
        user_idx = self._encode(users, items, unknown, by_index)[0]
        return self.to_rating_scale(
            self.eta_draws(users, items, unknown=unknown, samples=samples, by_index=by_index),
            samples, user_idx)

    def noise_sd_draws(self, samples=None) -> np.ndarray:
        """The noise sd of each draw on the scale its likelihood lives on (the ordinal
        model's latent z, the Gaussian model's ratings, or [0, 1] for the logistic link)."""
        return self.sigma_draws[self._chosen(samples)]

    def rating_noise_sd_draws(self, samples=None) -> np.ndarray:
        """The Gaussian model's noise sd on the rating scale (the logistic link's noise,
        on [0, 1], mapped back by the scale's width)."""
        sigma = self.noise_sd_draws(samples)
        return sigma * self.scale.width if self.spec.link == "logistic" else sigma

    def rating_draws(self, users, items, normal: np.ndarray, *,
                     samples: np.ndarray | None = None,
                     unknown: UnknownPolicy = "prior", by_index: bool = False) -> np.ndarray:
        """Ratings drawn from the predictive of each draw (samples x pairs), given standard
        normal numbers ``normal`` of that shape: E[r | draw] plus noise (on the rating
        scale) for the Gaussian model, the level of eta + noise for the ordinal one (the
        logit's logistic noise made from the normal numbers)."""
        sigma = self.noise_sd_draws(samples)
        if self.spec.ordinal:
            eta = self.eta_draws(users, items, unknown=unknown, samples=samples,
                                 by_index=by_index)
            user_idx = self._encode(users, items, unknown, by_index)[0]
            ratings = ordinal_draws(eta, self.cutpoint_draws(samples, user_idx), sigma,
                                    self.grid, normal, self.spec.ordinal_link)
            return np.where(np.isnan(eta), np.nan, ratings)
        means = self.mean_draws(users, items, unknown=unknown, samples=samples,
                                by_index=by_index)
        return means + self.rating_noise_sd_draws(samples)[:, None] * normal

    def log_likelihood_draws(self, users, items, actual, *,
                             samples: np.ndarray | None = None,
                             by_index: bool = False) -> np.ndarray:
        """log p(actual | draw) for each draw and pair (samples x pairs), on the
        likelihood's own scale: the probability of the rating's level (ordinal), the
        normal density (Gaussian; of the rating mapped to [0, 1] for the logistic link)."""
        sigma = self.noise_sd_draws(samples)
        actual = np.asarray(actual, dtype=float)
        if self.spec.ordinal:
            chosen = self._chosen(samples)
            eta = self.eta_draws(users, items, unknown="prior", samples=samples,
                                 by_index=by_index)
            levels = rating_levels(actual, self.grid)
            if "user_cutpoints" in self.draws:
                user_idx = self._encode(users, items, "prior", by_index)[0]
                lower, upper = pair_bounds(self.cutpoint_draws(samples, user_idx), levels)
            else:
                lower, upper = level_bounds(self.draws["cutpoints"][chosen], levels)
            return log_interval_probability(lower, upper, eta, sigma[:, None],
                                            self.spec.ordinal_link)
        means = self.mean_draws(users, items, unknown="prior", samples=samples,
                                by_index=by_index)
        if self.spec.link == "logistic":
            means, actual = self.scale.to_unit(means), self.scale.to_unit(actual)
        z = (actual[None, :] - means) / sigma[:, None]
        return -0.5 * z**2 - np.log(sigma)[:, None] - 0.5 * np.log(2 * np.pi)

    def level_probabilities(self, users, items, *,
                            samples: np.ndarray | None = None) -> np.ndarray:
        """(pairs x K) posterior predictive probability of each rating level, averaged over
        the draws ``samples``: the ordinal model's own, and for the Gaussian model its
        predictive mass on each grid bin (edges at the midpoints, the end bins open)."""
        if self.spec.ordinal:
            eta = self.eta_draws(users, items, unknown="prior", samples=samples)
            user_idx = self._encode(users, items, "prior")[0]
            return binned_probabilities(eta, self.cutpoint_draws(samples, user_idx),
                                        self.noise_sd_draws(samples),
                                        self.spec.ordinal_link)
        means = self.mean_draws(users, items, unknown="prior", samples=samples)
        sigma = self.rating_noise_sd_draws(samples)
        edges = np.broadcast_to(cutpoint_centres(self.grid), (len(means), len(self.grid) - 1))
        return binned_probabilities(means, edges, sigma)

    def _encode(self, users, items, unknown: UnknownPolicy, by_index: bool = False):
        """Row indices of the pairs (-1: unknown) and which pairs have an unknown id on a
        side the model predicts (the pairs ``unknown="nan"`` leaves out). ``by_index``:
        the pairs are row indices already, checked to be in range."""
        if by_index:
            user_idx, item_idx = (np.asarray(x, dtype=np.intp) for x in (users, items))
            for name, idx, n in (("users", user_idx, len(self.user_ids)),
                                 ("items", item_idx, len(self.item_ids))):
                inside = idx.size == 0 or 0 <= idx.min() <= idx.max() < n
                if idx.ndim != 1 or idx.shape != user_idx.shape or not inside:
                    raise ConfigError(f"{name}: by_index=True takes row positions 0..{n - 1}, "
                                      "one per pair")
            return user_idx, item_idx, np.zeros(len(user_idx), dtype=bool)
        sides = tuple(self.settings.get("sides", ("user", "item")))
        user_idx, item_idx = encode_pairs(self.user_ids, self.item_ids, users, items, unknown,
                                          sides)
        unknown_pairs = np.zeros(len(user_idx), dtype=bool)
        if "user" in sides:
            unknown_pairs |= user_idx < 0
        if "item" in sides:
            unknown_pairs |= item_idx < 0
        return user_idx, item_idx, unknown_pairs

    def mean_prediction(self, users, items, *, unknown: UnknownPolicy = "error"
                        ) -> np.ndarray:
        """The posterior mean of the expected rating E[r | params] for each pair, over all
        draws, in memory of a few values per pair (the mean of :meth:`mean_draws`)."""
        user_idx, item_idx, unknown_pairs = self._encode(users, items, unknown)
        if self.spec.link == "identity" and not self.spec.ordinal \
                and not self._described_info:
            means = predictor_mean(self.draws, user_idx, item_idx)
        else:  # the mean of the mapped draws (with any tags' terms), a block at a time
            block = max(1, _BLOCK_VALUES // max(1, len(user_idx)))
            total = np.zeros(len(user_idx))
            for start in range(0, self.n_samples, block):
                chosen = np.arange(start, min(start + block, self.n_samples))
                total += self.to_rating_scale(self._eta(
                    users, items, user_idx, item_idx, chosen, False), chosen,
                    user_idx).sum(axis=0)
            means = total / self.n_samples
        if unknown == "nan":
            means[unknown_pairs] = np.nan
        return means

    def predict(self, users, items, *, unknown: UnknownPolicy = "error",
                clip: bool = False, round: bool = False) -> np.ndarray:
        """Posterior-mean predicted rating for each (user, item) pair, aligned with input.

        ``clip`` bounds predictions to the rating scale; ``round`` clips and snaps to the
        nearest allowed rating (the PMF paper's 'map back and round').
        """
        prediction = self.mean_prediction(users, items, unknown=unknown)
        if round:
            return self.scale.round(prediction)
        if clip:
            return self.scale.clip(prediction)
        return prediction

    def predict_frame(self, pairs: pd.DataFrame, *, user_col: str = "user",
                      item_col: str = "item", unknown: UnknownPolicy = "error") -> pd.DataFrame:
        """Predictions as a table with the original ids: mean, sd of the mean over the
        posterior (0 for a point estimate) and cold-start flags."""
        users, items = pairs[user_col].to_numpy(), pairs[item_col].to_numpy()
        draws = self.mean_draws(users, items, unknown=unknown)
        return pd.DataFrame(
            {
                "user": users,
                "item": items,
                "mean": draws.mean(axis=0),
                "sd": draws.std(axis=0),
                "cold_user": self.user_ids.get_indexer(pd.Index(users)) < 0,
                "cold_item": self.item_ids.get_indexer(pd.Index(items)) < 0,
            },
            index=pairs.index,
        )


def point_result(params: FactorParams, spec: PMFSpec, train, *, method: str,
                 seed: int | None, settings: dict | None = None,
                 extra_scalars: dict[str, float] | None = None,
                 extra_arrays: dict[str, np.ndarray] | None = None) -> PMFResult:
    """Wrap a point estimate (ALS, MAP) as a chain=1, draw=1 result; ``extra_scalars``
    (e.g. learned sigma) and ``extra_arrays`` (e.g. constrained PMF's Y and W) join the
    posterior group."""
    extra = {**(extra_scalars or {}), **(extra_arrays or {})}
    posterior = {name: np.asarray(value) for name, value in extra.items()}
    if spec.n_factors > 0:
        posterior["U"] = params.user_factors
        posterior["V"] = params.item_factors
    if spec.global_mean:
        posterior["mu"] = np.asarray(params.mu)
    if spec.biases:
        posterior["user_bias"] = params.user_bias
        posterior["item_bias"] = params.item_bias
    user_sets = _user_tag_sets(train, spec)
    idata = idata_io.build_idata(posterior, train, spec, method=method, seed=seed,
                                 settings=settings, point=True,
                                 tags=_tags(train, spec, user_sets), user_tag_sets=user_sets)
    return PMFResult(idata)


def _user_tag_sets(train, spec) -> list | None:
    """The training users' tags (user features: the rows of H), else None."""
    if spec.user_features is None:
        return None
    return user_tag_sets(train.user_ids, getattr(train, "user_info", None),
                         spec.user_feature_columns)


def _tags(train, spec, user_sets=None) -> dict:
    """The rows of Phi and Psi: the training items' and users' tags (side features;
    ``user_sets``: the training users' tag sets, if already computed)."""
    tags = {}
    if spec.item_features is not None:
        tags["item_tag"] = item_tag_vocabulary(train, spec.item_features)
    if spec.user_features is not None:
        tags["user_tag"] = user_tag_vocabulary(train, spec.user_feature_columns, user_sets)
    return tags


def posterior_result(arrays: dict[str, np.ndarray], spec: PMFSpec, train, *, method: str,
                     seed: int | None, settings: dict | None = None,
                     sample_stats: dict[str, np.ndarray] | None = None,
                     extra_groups: dict | None = None) -> PMFResult:
    """Wrap posterior draws (arrays with leading chain, draw axes) as a result, with the
    posterior predictive and pointwise log-likelihood of the training ratings
    (:func:`with_training_predictive`)."""
    user_sets = _user_tag_sets(train, spec)
    return with_training_predictive(PMFResult(idata_io.build_idata(
        arrays, train, spec, method=method, seed=seed, settings=settings,
        sample_stats=sample_stats, extra_groups=extra_groups,
        tags=_tags(train, spec, user_sets), user_tag_sets=user_sets)))


# The training ratings' posterior predictive and log-likelihood hold at most this many
# values each (float32: 64 MB a group): every draw for small data, 46 per chain on the
# embedded MovieLens (4 chains), one per chain from 4.2 million training ratings.
TRAINING_PREDICTIVE_VALUES = 2**24
# draws x ratings x (d + 1) gathered at once while computing them
_GATHER_VALUES = 2**23


def with_training_predictive(result: PMFResult,
                             max_values: int = TRAINING_PREDICTIVE_VALUES) -> PMFResult:
    """``result`` with ``posterior_predictive`` and ``log_likelihood`` groups for its
    training ratings (see :func:`bayes_pmf.result.idata.add_training_predictive`): the
    same evenly spaced draws of every chain, as many as ``max_values`` allows (at least
    one per chain), ratings drawn with a random stream fixed by the result's seed.
    Point estimates and models without a predictive are returned unchanged."""
    if result.n_samples <= 1 or not result.has_predictive:
        return result
    chains, draws = idata_io.chains_and_draws(result.idata)
    user_idx, item_idx = result.training_pairs()
    actual = result.idata.observed_data["rating"].to_numpy()
    n = len(actual)
    per_chain = int(min(draws, max(1, max_values // max(n * chains, 1))))
    keep = np.unique(np.linspace(0, draws - 1, per_chain).round().astype(int))
    samples = (np.arange(chains)[:, None] * draws + keep[None, :]).ravel()
    rng = np.random.default_rng([0 if result.seed is None or result.seed < 0
                                 else int(result.seed), 0x7070])
    ratings = np.empty((len(samples), n), dtype=np.float32)
    log_likelihood = np.empty((len(samples), n), dtype=np.float32)
    step = max(1, _GATHER_VALUES // max(n * (result.spec.n_factors + 1), 1))
    for start in range(0, len(samples), step):
        chosen = samples[start:start + step]
        normal = rng.standard_normal((len(chosen), n))
        ratings[start:start + step] = result.rating_draws(user_idx, item_idx, normal,
                                                          samples=chosen, by_index=True)
        log_likelihood[start:start + step] = result.log_likelihood_draws(
            user_idx, item_idx, actual, samples=chosen, by_index=True)
    shape = (chains, len(keep), n)
    return PMFResult(idata_io.add_training_predictive(
        result.idata, ratings.reshape(shape), log_likelihood.reshape(shape), keep,
        result.user_ids[user_idx], result.item_ids[item_idx]))


def save_result(result: PMFResult, path: str | Path) -> Path:
    """Write a result to NetCDF atomically: a crash mid-write leaves the previous file (or
    none) at ``path`` and no temporary file."""
    path = Path(path)
    if path.is_dir():
        raise ResultFileError(f"cannot save a result to {path}: it is a directory; give a "
                              "file name such as model.nc")
    try:
        return idata_io.write_netcdf(result.idata, path)
    except OSError as exc:
        raise ResultFileError(f"cannot write {path}: {exc.strerror or exc}") from None


def load_result(path: str | Path) -> PMFResult:
    """Read a result saved by :func:`save_result`; ResultFileError if it is not one."""
    path = Path(path)
    if not path.is_file():
        raise ResultFileError(f"no saved result at {path}")
    try:
        idata = idata_io.read_netcdf(path)
    except Exception as exc:  # h5py/netCDF raise many types for damaged files
        raise ResultFileError(
            f"cannot read {path} as a bayes_pmf result (truncated or not NetCDF): {exc}"
        ) from None
    return PMFResult(idata)

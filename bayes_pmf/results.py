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

from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd

from . import idata as idata_io
from .errors import ConfigError, ResultFileError, UnknownIdError
from .fileio import atomic_path
from .data import RatingsData, plain_scalar
from .objective import FactorParams, sigmoid
from .priors import PMFSpec


UnknownPolicy = Literal["error", "prior", "nan"]
_PAIR_BUDGET = 1 << 22  # samples x pairs x d values held at once


def encode_pairs(user_ids: pd.Index, item_ids: pd.Index, users, items,
                 unknown: UnknownPolicy) -> tuple[np.ndarray, np.ndarray]:
    """Indices of the pairs in the vocabularies (-1 where unknown), enforcing ``unknown``."""
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
            missing = idx < 0
            if missing.any():
                examples = pd.unique(np.asarray(ids[missing]))
                raise UnknownIdError(
                    f"{int(missing.sum())} pair(s) name {len(examples)} {kind}(s) absent from "
                    f"the training data, e.g. {kind} {plain_scalar(examples[0])!r}; pass unknown='prior' "
                    f"for the cold-start prediction or unknown='nan'"
                )
    return user_idx, item_idx


@dataclass(frozen=True)
class PredictionSummary:
    mean: np.ndarray
    sd: np.ndarray
    cold_user: np.ndarray
    cold_item: np.ndarray


class PMFResult:
    """A fitted model, from any method; immutable. Build with :meth:`from_idata`."""

    def __init__(self, idata) -> None:
        attrs = idata_io.result_attrs(idata)
        self.idata = idata
        self.method: str = attrs["method"]
        self.spec = attrs["spec"]
        self.scale = attrs["scale"]
        self.seed = attrs["seed"]
        self.attrs = attrs
        self.user_ids, self.item_ids = idata_io.vocabularies(idata)

    @classmethod
    def from_idata(cls, idata) -> "PMFResult":
        return cls(idata)

    def save(self, path: str | Path) -> Path:
        return save_result(self, path)

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
        return idata_io.n_samples(self.idata)

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

    def _linear_predictor_draws(self, user_idx: np.ndarray, item_idx: np.ndarray,
                                samples: np.ndarray | None = None) -> np.ndarray:
        """(samples x pairs) of mu + b_i + c_j + U_i.V_j, with unknown ids at prior mean 0."""
        draws = self.draws
        pick = slice(None) if samples is None else samples
        n_samples = self.n_samples if samples is None else len(samples)
        known_u, known_i = user_idx >= 0, item_idx >= 0
        safe_u, safe_i = np.where(known_u, user_idx, 0), np.where(known_i, item_idx, 0)
        eta = np.zeros((n_samples, len(user_idx)))
        if "mu" in draws:
            eta += draws["mu"][pick][:, None]
        if "user_bias" in draws:
            eta += np.where(known_u, draws["user_bias"][pick][:, safe_u], 0.0)
        if "item_bias" in draws:
            eta += np.where(known_i, draws["item_bias"][pick][:, safe_i], 0.0)
        if "U" in draws and draws["U"].shape[-1] > 0:
            both = known_u & known_i
            d = draws["U"].shape[-1]
            chunk = max(1, _PAIR_BUDGET // max(1, n_samples * d))
            for start in range(0, len(user_idx), chunk):
                stop = start + chunk
                dots = np.einsum(
                    "spk,spk->sp",
                    draws["U"][pick][:, safe_u[start:stop]],
                    draws["V"][pick][:, safe_i[start:stop]],
                )
                eta[:, start:stop] += np.where(both[start:stop], dots, 0.0)
        return eta

    def _to_rating_scale(self, eta: np.ndarray) -> np.ndarray:
        if self.spec.link == "logistic":
            return self.scale.from_unit(sigmoid(eta))
        return eta

    def mean_draws(self, users, items, *, unknown: UnknownPolicy = "error",
                   samples: np.ndarray | None = None) -> np.ndarray:
        """Draws of the expected rating E[r | params] for each pair: (samples x pairs)."""
        user_idx, item_idx = encode_pairs(self.user_ids, self.item_ids, users, items, unknown)
        means = self._to_rating_scale(self._linear_predictor_draws(user_idx, item_idx, samples))
        if unknown == "nan":
            means[:, (user_idx < 0) | (item_idx < 0)] = np.nan
        return means

    def predict(self, users, items, *, unknown: UnknownPolicy = "error",
                clip: bool = False, round: bool = False) -> np.ndarray:
        """Posterior-mean predicted rating for each (user, item) pair, aligned with input.

        ``clip`` bounds predictions to the rating scale; ``round`` clips and snaps to the
        nearest allowed rating (the PMF paper's 'map back and round').
        """
        prediction = self.mean_draws(users, items, unknown=unknown).mean(axis=0)
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


def point_result(params: FactorParams, spec: PMFSpec, train: RatingsData, *, method: str,
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
    idata = idata_io.build_idata(posterior, train, spec, method=method, seed=seed,
                                 settings=settings, point=True)
    return PMFResult(idata)


def save_result(result: PMFResult, path: str | Path) -> Path:
    """Write a result to NetCDF atomically: a crash mid-write leaves no file at ``path``."""
    path = Path(path)
    with atomic_path(path) as tmp:
        result.idata.to_netcdf(str(tmp))
    return path


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

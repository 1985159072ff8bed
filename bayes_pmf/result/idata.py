"""The one module that imports ArviZ: the result schema, NetCDF files, thinning, and the
ArviZ calls the rest of the package makes (summaries, rank plots, LOO).

Every method (ALS, MAP, NUTS, ADVI, Gibbs, the baselines) returns the same shape:

* ``posterior``: dims ``(chain, draw, ...)`` (a point estimate is chain=1, draw=1) holding
  ``U (user, latent)``, ``V (item, latent)``, ``mu``, ``user_bias (user)``,
  ``item_bias (item)``, ``sigma`` and the learned scales (absent terms omitted), and,
  once held-out predictions are computed, ``predicted_rating (chain, draw, pair)`` for
  the held-out pairs the convergence diagnostics follow;
* ``observed_data`` (``rating`` over ``obs``) and ``constant_data`` (``user_idx``,
  ``item_idx`` over ``obs``): the training ratings;
* for posterior samples (:func:`bayes_pmf.result.result.with_training_predictive`):
  ``posterior_predictive`` and ``log_likelihood`` (``rating (chain, draw, obs)`` for the
  training ratings, from evenly spaced draws of each chain, ``user_id`` and ``item_id``
  as coordinates over ``obs``), so that ``az.plot_ppc``, ``az.loo`` and ``az.loo_pit``
  work on ``result.idata`` as on a PyMC trace;
* after :func:`bayes_pmf.result.predictive.held_out_predictions`: ``predictions``
  (``rating (chain, draw, pair)``: posterior predictive draws for the held-out pairs) and
  ``predictions_constant_data`` (per pair: ``user``, ``item``, ``held_out_rating`` and
  the summaries computed from all draws, see that module).

The coords ``user`` and ``item`` are the original ids. The posterior's attrs record how
the result was made (method, model spec, rating scale, seed, data hash, package
versions, inference settings), JSON-encoded so they survive NetCDF. Keeping all of this
here means the move to arviz >= 1 (DataTree) touches one file.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import warnings
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import xarray as xr

from ..errors import ResultFileError
from ..fileio import atomic_path, size_text
from ..provenance import package_versions
from . import psis

if TYPE_CHECKING:  # the annotations' az; at run time ArviZ is imported on first use
    import arviz as az

FORMAT_VERSION = 1
_PREFIX = "bayes_pmf_"
_PARAM_DIMS = {
    "U": ("user", "latent"),
    "V": ("item", "latent"),
    "mu": (),
    "user_bias": ("user",),
    "item_bias": ("item",),
    "sigma": (),
    "sigma_u": (),
    "sigma_v": (),
    "sigma_user_bias": (),
    "sigma_item_bias": (),
    # adaptive diagonal priors: one learned prior sd per latent dimension
    "sigma_u_latent": ("latent",),
    "sigma_v_latent": ("latent",),
    # the ordinal likelihood's cut points (the first one fixed)
    "cutpoints": ("cutpoint",),
    # per-user thresholds: every user's own cut points (the first one fixed)
    "user_cutpoints": ("user", "cutpoint"),
    "threshold_sd": (),
    # constrained PMF: U = Y + (row-normalised rated-items indicator) W
    "Y": ("user", "latent"),
    "W": ("item", "latent"),
    "sigma_w": (),
    # implicit item feedback: V = X + (row-normalised raters indicator) Z
    "X": ("item", "latent"),
    "Z": ("user", "latent"),
    "sigma_z": (),
    # the items' tags (item_features): V = X (+ M' Z) + G Phi, one row per tag
    "Phi": ("item_tag", "latent"),
    # the users' tags (user_features): U = Y (+ M W) + H Psi, one row per tag
    "Psi": ("user_tag", "latent"),
    # tag_biases: the tags' bias regressors (c ~ N(G beta_item, .), b ~ N(H beta_user, .))
    "item_tag_bias": ("item_tag",),
    "user_tag_bias": ("user_tag",),
}
# Derived quantities kept beside the parameters (not parameters: never stacked as such).
_DERIVED_DIMS = {"predicted_rating": ("pair",)}


def _arviz():
    """ArviZ, imported on first use: about 1.2 s of ``import bayes_pmf`` (a third of
    ``bayes-pmf --help``'s time) went to it, for commands that never build a result."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=FutureWarning)
        import arviz

    return arviz


def __getattr__(name: str):
    if name == "InferenceData":  # arviz.InferenceData, imported when first asked for
        return _arviz().InferenceData
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _coords(train, spec, tags=None) -> dict:
    coords = {
        "user": train.user_ids.to_numpy(),
        "item": train.item_ids.to_numpy(),
        "latent": np.arange(spec.n_factors),
    }
    for name, vocabulary in (tags or {}).items():  # the rows of Phi / Psi (features)
        coords[name] = np.asarray(vocabulary).astype(str)
    return coords


def _item_titles(train) -> xr.Dataset | None:
    """The items' titles (when the data has them, e.g. the embedded MovieLens), kept in
    constant_data so a saved result can name its recommendations."""
    info = getattr(train, "item_info", None)
    if info is None or "title" not in info:
        return None
    titles = info["title"].reindex(train.item_ids).astype(object).fillna("").to_numpy()
    return xr.Dataset({"item_title": ("item", titles.astype(str))},
                      coords={"item": train.item_ids.to_numpy()})


def _user_tags(train, sets) -> xr.Dataset | None:
    """The training users' tags ``sets`` ("|"-joined, user features), kept in
    constant_data so a saved result knows H, whose rows the users' factors add Psi
    through."""
    if sets is None:
        return None
    return xr.Dataset({"user_tags": ("user", np.array(["|".join(s) for s in sets], dtype=str))},
                      coords={"user": train.user_ids.to_numpy()})


def user_tags(idata: az.InferenceData) -> list[tuple[str, ...]] | None:
    """The training users' tags (user features) in the result's user order, or None."""
    constant = idata.constant_data
    if "user_tags" not in constant:
        return None
    return [tuple(t for t in str(v).split("|") if t) for v in constant["user_tags"].to_numpy()]


def _dataset(arrays: dict[str, np.ndarray], dims: dict[str, tuple], coords: dict) -> xr.Dataset:
    variables = {}
    for name, values in arrays.items():
        values = np.asarray(values)
        leading = values.ndim - len(dims[name])
        if not 0 <= leading <= 2:
            raise ValueError(f"{name} has too many dimensions: {values.shape}")
        variables[name] = (("chain", "draw")[:leading] + dims[name], values)
    needed = {d for _, (var_dims, _) in variables.items() for d in var_dims}
    # the vocabularies always (a result names its users and items even without factors)
    used_coords = {k: v for k, v in coords.items() if k in needed or k in ("user", "item")}
    dataset = xr.Dataset(variables, coords=used_coords)
    for name in ("chain", "draw"):
        if name in dataset.dims and name not in dataset.coords:
            dataset = dataset.assign_coords({name: np.arange(dataset.sizes[name])})
    return dataset


def build_idata(
    posterior: dict[str, np.ndarray],
    train,
    spec,
    *,
    method: str,
    seed: int | None,
    settings: dict | None = None,
    sample_stats: dict[str, np.ndarray] | None = None,
    extra_groups: dict[str, xr.Dataset] | None = None,
    point: bool = False,
    tags: dict | None = None,
    user_tag_sets: list | None = None,
) -> az.InferenceData:
    """Assemble a result from posterior arrays with leading (chain, draw) axes (none when
    ``point=True``: they are then given chain=1, draw=1), the training ratings ``train``
    (a RatingsData) and the model ``spec`` (a PMFSpec); ``tags`` names the rows of Phi
    and Psi (``{"item_tag": ..., "user_tag": ...}``, side features); ``user_tag_sets``
    the training users' tags (user features), kept in constant_data."""
    if point:
        posterior = {k: np.asarray(v)[None, None] for k, v in posterior.items()}
    posterior_ds = _dataset(posterior, _PARAM_DIMS, _coords(train, spec, tags))
    posterior_ds.attrs.update(
        {
            _PREFIX + "format": FORMAT_VERSION,
            _PREFIX + "method": method,
            _PREFIX + "spec": json.dumps(spec.as_dict()),
            _PREFIX + "scale": json.dumps(train.scale.as_dict()),
            _PREFIX + "seed": -1 if seed is None else int(seed),
            _PREFIX + "data_sha256": train.fingerprint,
            _PREFIX + "data_source": train.source,
            _PREFIX + "versions": json.dumps(package_versions()),
            _PREFIX + "settings": json.dumps(settings or {}, default=str),
        }
    )
    # a RangeIndex: the same coordinate values without an array of them in every result
    # (72 MB each at 10^7 training ratings)
    obs = {"obs": pd.RangeIndex(train.n_ratings)}
    groups = {
        "posterior": posterior_ds,
        "observed_data": xr.Dataset({"rating": ("obs", train.rating)}, coords=obs),
        "constant_data": xr.Dataset(
            {"user_idx": ("obs", train.user_idx), "item_idx": ("obs", train.item_idx)},
            coords=obs,
        ),
    }
    for extra in (_item_titles(train), _user_tags(train, user_tag_sets)):
        if extra is not None:
            groups["constant_data"] = groups["constant_data"].merge(extra)
    if sample_stats:
        groups["sample_stats"] = _dataset(sample_stats, {k: () for k in sample_stats}, {})
    if extra_groups:
        groups.update(extra_groups)
    return _inference_data(groups)


def _inference_data(groups: dict) -> az.InferenceData:
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=UserWarning)
        return _arviz().InferenceData(**groups)


def raw_attrs(idata: az.InferenceData) -> dict:
    """The bayes_pmf attrs of a result, JSON decoded (spec and scale as dicts);
    ResultFileError if it is not a bayes_pmf result or the attrs are damaged."""
    if "posterior" not in idata.groups():
        raise ResultFileError("not a bayes_pmf result: no posterior group")
    raw = idata.posterior.attrs
    if _PREFIX + "format" not in raw:
        raise ResultFileError("not a bayes_pmf result: its posterior lacks bayes_pmf attrs")
    version = int(raw[_PREFIX + "format"])
    if version != FORMAT_VERSION:
        raise ResultFileError(
            f"result written in bayes_pmf format {version}; this version reads format "
            f"{FORMAT_VERSION}"
        )
    try:
        seed = int(raw[_PREFIX + "seed"])
        return {
            "format": version,
            "method": str(raw[_PREFIX + "method"]),
            "spec": json.loads(raw[_PREFIX + "spec"]),
            "scale": json.loads(raw[_PREFIX + "scale"]),
            "seed": None if seed < 0 else seed,
            "data_sha256": str(raw[_PREFIX + "data_sha256"]),
            "data_source": str(raw.get(_PREFIX + "data_source", "")),
            "versions": json.loads(raw[_PREFIX + "versions"]),
            "settings": json.loads(raw[_PREFIX + "settings"]),
        }
    except (KeyError, ValueError, TypeError) as exc:
        raise ResultFileError(f"bayes_pmf attrs are damaged or incompatible: {exc}") from None


def with_attrs(idata: az.InferenceData, **changes) -> az.InferenceData:
    """A shallow copy (arrays shared) whose bayes_pmf attrs have the given values (e.g.
    method=...; settings and other dicts are JSON-encoded)."""
    groups = {group: getattr(idata, group) for group in idata.groups()}
    posterior = groups["posterior"].copy(deep=False)
    posterior.attrs = dict(posterior.attrs)
    for key, value in changes.items():
        posterior.attrs[_PREFIX + key] = (json.dumps(value, default=str)
                                          if isinstance(value, dict) else value)
    groups["posterior"] = posterior
    return _inference_data(groups)


def stacked_draws(idata: az.InferenceData) -> dict[str, np.ndarray]:
    """Posterior parameter arrays with (chain, draw) flattened into one leading sample axis."""
    posterior = idata.posterior
    n_chain, n_draw = posterior.sizes["chain"], posterior.sizes["draw"]
    return {
        name: posterior[name].transpose("chain", "draw", *_PARAM_DIMS[name])
        .to_numpy()
        .reshape((n_chain * n_draw,) + posterior[name].shape[2:])
        for name in posterior.data_vars
        if name in _PARAM_DIMS
    }


def vocabularies(idata: az.InferenceData) -> tuple[pd.Index, pd.Index]:
    posterior = idata.posterior
    return (pd.Index(posterior["user"].to_numpy(), name="user"),
            pd.Index(posterior["item"].to_numpy(), name="item"))


def chains_and_draws(idata: az.InferenceData) -> tuple[int, int]:
    return int(idata.posterior.sizes["chain"]), int(idata.posterior.sizes["draw"])


def training_pairs(idata: az.InferenceData) -> tuple[np.ndarray, np.ndarray]:
    """(user_idx, item_idx) of the training ratings a result was fitted to."""
    constant = idata.constant_data
    return constant["user_idx"].to_numpy(), constant["item_idx"].to_numpy()


def item_titles(idata: az.InferenceData) -> pd.Series | None:
    """Titles of the result's items indexed by item id, or None when the data had none."""
    constant = idata.constant_data
    if "item_title" not in constant:
        return None
    return pd.Series(constant["item_title"].to_numpy(), index=pd.Index(
        constant["item"].to_numpy(), name="item"), name="title")


def sample_stat(idata: az.InferenceData, name: str) -> np.ndarray | None:
    """A sample_stats variable as (chain, draw) array, or None when absent."""
    stats = getattr(idata, "sample_stats", None)
    if stats is None or name not in stats:
        return None
    return stats[name].to_numpy()


# -- held-out predictions ----------------------------------------------------------------

def add_predictions(idata: az.InferenceData, draws: np.ndarray, per_pair: dict[str, np.ndarray],
                    monitored: np.ndarray | None = None,
                    monitored_draws: np.ndarray | None = None) -> az.InferenceData:
    """A copy with the ``predictions`` group (``rating``: predictive draws, samples x
    pairs, stored as chain=1 x draw x pair), ``predictions_constant_data`` (``per_pair``
    arrays over ``pair``; ``user`` and ``item`` are also the pair coords) and, given
    ``monitored`` pair positions with their (chain, draw, pairs) expected-rating draws,
    ``predicted_rating`` in the posterior."""
    pair = pd.RangeIndex(draws.shape[1])
    coords = {"pair": pair, "pair_user": ("pair", per_pair["user"]),
              "pair_item": ("pair", per_pair["item"])}
    predictions = xr.Dataset({"rating": (("chain", "draw", "pair"), draws[None])},
                             coords={"chain": [0], "draw": np.arange(draws.shape[0]), **coords})
    constant = xr.Dataset({name: ("pair", np.asarray(values)) for name, values in per_pair.items()},
                          coords=coords)
    groups = {group: getattr(idata, group) for group in idata.groups()
              if group not in ("predictions", "predictions_constant_data")}
    if monitored is not None:
        posterior = groups["posterior"].drop_vars("predicted_rating", errors="ignore")
        derived = xr.DataArray(
            monitored_draws, dims=("chain", "draw", "pair"),
            coords={"pair": np.asarray(monitored),
                    "pair_user": ("pair", np.asarray(per_pair["user"])[monitored]),
                    "pair_item": ("pair", np.asarray(per_pair["item"])[monitored])})
        groups["posterior"] = posterior.assign(predicted_rating=derived.drop_vars(
            [c for c in ("chain", "draw") if c in derived.coords]))
        groups["posterior"].attrs = dict(posterior.attrs)
    groups.update(predictions=predictions, predictions_constant_data=constant)
    return _inference_data(groups)


def add_training_predictive(idata: az.InferenceData, ratings: np.ndarray,
                            log_likelihood: np.ndarray, draws: np.ndarray, user_ids,
                            item_ids) -> az.InferenceData:
    """A copy with the ``posterior_predictive`` group (``rating (chain, draw, obs)``:
    ratings drawn from the predictive of the posterior draws ``draws`` of each chain, for
    the training ratings of ``observed_data``) and the ``log_likelihood`` group (the
    same shape: log p(observed rating | draw)), with the ids of each rating's user and
    item as coordinates ``user_id`` and ``item_id`` over ``obs``: what ``az.plot_ppc``,
    ``az.loo`` and ``az.loo_pit`` read."""
    coords = {"chain": idata.posterior["chain"].to_numpy()[:ratings.shape[0]],
              "draw": np.asarray(draws), "obs": pd.RangeIndex(ratings.shape[-1]),
              "user_id": ("obs", np.asarray(user_ids)), "item_id": ("obs", np.asarray(item_ids))}
    groups = {group: getattr(idata, group) for group in idata.groups()
              if group not in ("posterior_predictive", "log_likelihood")}
    dims = ("chain", "draw", "obs")
    groups["posterior_predictive"] = xr.Dataset({"rating": (dims, ratings)}, coords=coords)
    groups["log_likelihood"] = xr.Dataset({"rating": (dims, log_likelihood)}, coords=coords)
    return _inference_data(groups)


def predictions_of(idata: az.InferenceData, columns=None
                   ) -> tuple[np.ndarray, pd.DataFrame] | None:
    """(predictive draws as samples x pairs, per-pair table) stored by
    :func:`add_predictions`, or None when the result has none. ``columns``: only these
    columns of the table (it has about 55, one float64 array per pair each: at 10⁶
    held-out pairs the whole table is 0.44 GB, so readers ask for what they read)."""
    if "predictions" not in idata.groups():
        return None
    draws = idata.predictions["rating"].to_numpy()
    stored = idata.predictions_constant_data
    # copy=False: the columns stay the stored arrays (a copy consolidated into one block
    # would be a transient 0.44 GB at 10^6 pairs for every reader of the whole table)
    table = pd.DataFrame({name: stored[name].to_numpy()
                          for name in (stored.data_vars if columns is None else columns)},
                         copy=False)
    return draws.reshape(-1, draws.shape[-1]), table


def keep_predictions(idata: az.InferenceData, columns, draws: bool = True
                     ) -> az.InferenceData:
    """A copy whose held-out predictions keep only the per-pair ``columns`` (and the
    pairs' ``user``, ``item`` and ``held_out_rating``), and without their predictive
    draws unless ``draws`` (then no draw is left: a stage that reads none of the rest
    should not hold it; at 10^6 pairs a column is 8 MB and the draws up to 134 MB)."""
    if "predictions" not in idata.groups():
        return idata
    stored = idata.predictions_constant_data
    kept = [name for name in stored.data_vars
            if name in set(columns) | {"user", "item", "held_out_rating"}]
    groups = {group: getattr(idata, group) for group in idata.groups()}
    groups["predictions_constant_data"] = stored[kept]
    if not draws:
        groups["predictions"] = idata.predictions.isel(draw=slice(0, 0))
    return _inference_data(groups)


def training_predictive_of(idata: az.InferenceData) -> tuple[np.ndarray, np.ndarray] | None:
    """(predictive draws as samples x training ratings, the observed ratings) stored by
    :func:`add_training_predictive`, or None when the result has none."""
    if "posterior_predictive" not in idata.groups():
        return None
    draws = idata.posterior_predictive["rating"].to_numpy()
    return draws.reshape(-1, draws.shape[-1]), idata.observed_data["rating"].to_numpy()


def monitored_predictions(idata: az.InferenceData) -> xr.DataArray | None:
    posterior = idata.posterior
    return posterior["predicted_rating"] if "predicted_rating" in posterior else None


def without_predictions(idata: az.InferenceData) -> az.InferenceData:
    """A copy without the held-out predictions (what run folders save: the per-pair
    numbers are in metrics.json, and the draws would outweigh a point estimate)."""
    groups = {group: getattr(idata, group) for group in idata.groups()
              if group not in ("predictions", "predictions_constant_data")}
    posterior = groups["posterior"]
    if "predicted_rating" in posterior:
        attrs = dict(posterior.attrs)
        groups["posterior"] = posterior.drop_vars("predicted_rating")
        groups["posterior"].attrs = attrs
    return _inference_data(groups)


# -- files ------------------------------------------------------------------------------------

# The least share of its arrays' bytes a result's NetCDF file takes on disk (zlib, as
# ArviZ writes it): measured 0.70-1.00 for a run's models, the posterior's the least.
# Below it a write is refused as certain to fail; above, h5py may still run out.
SMALLEST_COMPRESSION = 0.5


def write_netcdf(idata: az.InferenceData, path: str | Path) -> Path:
    """Write atomically: a crash mid-write leaves the previous file (or none) at ``path``.
    A file system without room for the file (at least :data:`SMALLEST_COMPRESSION` of
    its arrays' bytes) is an OSError (ENOSPC) before writing: h5py, failing mid-write,
    raises RuntimeErrors and prints more as its objects go."""
    path = Path(path)
    arrays = sum(getattr(idata, group).nbytes for group in idata.groups())
    with atomic_path(path) as tmp:
        free = shutil.disk_usage(tmp.parent).free
        if SMALLEST_COMPRESSION * arrays > free:
            raise OSError(errno.ENOSPC, f"{os.strerror(errno.ENOSPC)} ({path.name} holds "
                          f"{size_text(arrays)} of arrays, at least "
                          f"{size_text(SMALLEST_COMPRESSION * arrays)} compressed; "
                          f"{size_text(free)} free)", str(path))
        idata.to_netcdf(str(tmp))
    return path


def read_netcdf(path) -> az.InferenceData:
    """Load fully into memory (so the file can be replaced or deleted afterwards)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=UserWarning)
        idata = _arviz().from_netcdf(path)
    for group in idata.groups():
        getattr(idata, group).load()
    return idata


def thinned(idata: az.InferenceData, max_draws: int) -> az.InferenceData:
    """A copy keeping at most ``max_draws`` draws in total, evenly spaced within each
    chain (every group with a draw axis), the original count recorded in the
    posterior's attrs. Deterministic, so a thinned file is reproducible."""
    n_chain, n_draw = idata.posterior.sizes["chain"], idata.posterior.sizes["draw"]
    per_chain = max(1, max_draws // n_chain)
    if per_chain >= n_draw:
        return idata
    keep = np.unique(np.linspace(0, n_draw - 1, per_chain).round().astype(int))
    groups = {}
    for group in idata.groups():
        dataset = getattr(idata, group)
        if "draw" in dataset.dims and dataset.sizes["draw"] == n_draw:
            dataset = dataset.isel(draw=keep)
        groups[group] = dataset
    posterior = groups["posterior"]
    posterior.attrs = dict(posterior.attrs, **{_PREFIX + "thinned_from_draws": n_draw})
    return _inference_data(groups)


# -- ArviZ's diagnostics and plots, for the analysis wing and plots.py ------------------------

def diagnostics_summary(dataset: xr.Dataset) -> pd.DataFrame:
    """``az.summary(kind="diagnostics")`` of a dataset of (chain, draw, ...) variables."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=RuntimeWarning)
        return _arviz().summary(dataset, kind="diagnostics", round_to="none")


def rhat(values: np.ndarray) -> float:
    """Rank-normalised split R-hat of one (chain, draw) array."""
    return float(_arviz().rhat(values))


def bfmi_min(idata: az.InferenceData) -> float | None:
    stats = getattr(idata, "sample_stats", None)
    if stats is None or "energy" not in stats:
        return None
    return float(np.min(_arviz().bfmi(idata)))


def loo(idata: az.InferenceData, log_likelihood: xr.Dataset | None = None):
    """PSIS-LOO of ``idata`` (its ``log_likelihood`` group, or ``log_likelihood`` if
    given), as ``az.loo(idata, pointwise=True)`` computes it (the relative efficiency from
    every posterior quantity's effective sample size, scale "log") but vectorised
    (:mod:`bayes_pmf.result.psis`): the same ``ELPDData``, which ``az.compare`` reads, in
    a fraction of the time on 10^4 and more ratings."""
    if log_likelihood is None:
        log_likelihood = idata.log_likelihood
    names = list(log_likelihood.data_vars)
    if len(names) != 1:
        raise ValueError(f"one log-likelihood variable expected, found {names}")
    values = log_likelihood[names[0]]
    observation_dims = [d for d in values.dims if d not in ("chain", "draw")]
    stacked = values.stack(__obs__=observation_dims) if len(observation_dims) > 1 \
        else values
    array = stacked.transpose("chain", "draw", ...).values
    array = array.reshape(array.shape[0], array.shape[1], -1)
    reff = psis.relative_efficiency(
        idata.posterior[name].values for name in idata.posterior.data_vars)
    totals = psis.loo_pointwise(array, reff)
    template = values.isel(chain=0, draw=0, drop=True)
    loo_i = xr.DataArray(totals["loo_i"].reshape(template.shape), dims=template.dims,
                         coords=template.coords, name="loo_i")
    pareto_k = xr.DataArray(totals["pareto_k"].reshape(template.shape), dims=template.dims,
                            coords=template.coords, name="pareto_shape")
    warning = bool(np.any(totals["pareto_k"] > totals["good_k"]))
    return _arviz().ELPDData(
        data=[totals["elpd_loo"], totals["se"], totals["p_loo"], totals["n_samples"],
              totals["n_data_points"], warning, loo_i, pareto_k, "log", totals["good_k"]],
        index=["elpd_loo", "se", "p_loo", "n_samples", "n_data_points", "warning", "loo_i",
               "pareto_k", "scale", "good_k"])


def plot_rank(dataset: xr.Dataset, var_names, axes) -> None:
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore")
        _arviz().plot_rank(dataset, var_names=var_names, ax=axes)

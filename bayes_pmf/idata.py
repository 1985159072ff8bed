"""The one module that converts to and from ArviZ InferenceData.

Every method (ALS, MAP, NUTS, ADVI, Gibbs) returns the same shape: a ``posterior`` group
with dims ``(chain, draw, ...)`` — a point estimate is chain=1, draw=1 — holding

    U (user, latent), V (item, latent), mu (), user_bias (user), item_bias (item), sigma ()

(absent terms are omitted), plus ``observed_data`` (rating over obs) and
``constant_data`` (user_idx, item_idx over obs). The coords ``user`` and ``item`` are
the original ids. The posterior group's attrs record how the result was made (method,
model settings, seed, data hash, package versions, inference settings), JSON-encoded so
they survive NetCDF. Keeping all of this here means the move to arviz >= 1 (DataTree)
touches one file.
"""

from __future__ import annotations

import json
import warnings

import numpy as np
import pandas as pd
import xarray as xr

with warnings.catch_warnings():
    warnings.filterwarnings("ignore", category=FutureWarning)
    import arviz as az

from .data import RatingScale, RatingsData
from .errors import ResultFileError
from .priors import PMFSpec
from .provenance import package_versions

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
    # constrained PMF: U = Y + (row-normalised rated-items indicator) W
    "Y": ("user", "latent"),
    "W": ("item", "latent"),
    "sigma_w": (),
}


def _coords(train: RatingsData, n_factors: int) -> dict:
    return {
        "user": train.user_ids.to_numpy(),
        "item": train.item_ids.to_numpy(),
        "latent": np.arange(n_factors),
    }


def _dataset(arrays: dict[str, np.ndarray], dims: dict[str, tuple], coords: dict) -> xr.Dataset:
    variables = {}
    for name, values in arrays.items():
        values = np.asarray(values)
        leading = values.ndim - len(dims[name])
        leading_dims = ("chain", "draw")[:leading] if leading <= 2 else None
        if leading_dims is None:
            raise ValueError(f"{name} has too many dimensions: {values.shape}")
        variables[name] = (leading_dims + dims[name], values)
    needed = {d for _, (var_dims, _) in variables.items() for d in var_dims}
    used_coords = {k: v for k, v in coords.items() if k in needed}
    dataset = xr.Dataset(variables, coords=used_coords)
    for name in ("chain", "draw"):
        if name in dataset.dims and name not in dataset.coords:
            dataset = dataset.assign_coords({name: np.arange(dataset.sizes[name])})
    return dataset


def build_idata(
    posterior: dict[str, np.ndarray],
    train: RatingsData,
    spec: PMFSpec,
    *,
    method: str,
    seed: int | None,
    settings: dict | None = None,
    sample_stats: dict[str, np.ndarray] | None = None,
    extra_groups: dict[str, xr.Dataset] | None = None,
    point: bool = False,
) -> az.InferenceData:
    """Assemble a result. ``posterior`` arrays have leading (chain, draw) axes, or none
    when ``point=True`` (they are then given chain=1, draw=1)."""
    if point:
        posterior = {k: np.asarray(v)[None, None] for k, v in posterior.items()}
    coords = _coords(train, spec.n_factors)
    posterior_ds = _dataset(posterior, _PARAM_DIMS, coords)
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
    obs = {"obs": np.arange(train.n_ratings)}
    groups = {
        "posterior": posterior_ds,
        "observed_data": xr.Dataset({"rating": ("obs", train.rating)}, coords=obs),
        "constant_data": xr.Dataset(
            {"user_idx": ("obs", train.user_idx), "item_idx": ("obs", train.item_idx)},
            coords=obs,
        ),
    }
    if sample_stats:
        groups["sample_stats"] = _dataset(
            sample_stats, {k: () for k in sample_stats}, {}
        )
    if extra_groups:
        groups.update(extra_groups)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=UserWarning)
        return az.InferenceData(**groups)


def result_attrs(idata: az.InferenceData) -> dict:
    """The decoded bayes_pmf attrs of a result; ResultFileError if it is not one."""
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
            "spec": PMFSpec.from_dict(json.loads(raw[_PREFIX + "spec"])),
            "scale": RatingScale(**json.loads(raw[_PREFIX + "scale"])),
            "seed": None if seed < 0 else seed,
            "data_sha256": str(raw[_PREFIX + "data_sha256"]),
            "data_source": str(raw.get(_PREFIX + "data_source", "")),
            "versions": json.loads(raw[_PREFIX + "versions"]),
            "settings": json.loads(raw[_PREFIX + "settings"]),
        }
    except (KeyError, ValueError, TypeError) as exc:
        raise ResultFileError(f"bayes_pmf attrs are damaged or incompatible: {exc}") from None


def stacked_draws(idata: az.InferenceData) -> dict[str, np.ndarray]:
    """Posterior arrays with (chain, draw) flattened into one leading 'sample' axis."""
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


def n_samples(idata: az.InferenceData) -> int:
    return int(idata.posterior.sizes["chain"] * idata.posterior.sizes["draw"])


def read_netcdf(path) -> az.InferenceData:
    """Load fully into memory (so the file can be replaced or deleted afterwards)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=UserWarning)
        idata = az.from_netcdf(path)
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
        groups[group] = dataset.isel(draw=keep) if "draw" in dataset.dims else dataset
    posterior = groups["posterior"]
    posterior.attrs = dict(posterior.attrs, **{_PREFIX + "thinned_from_draws": n_draw})
    return az.InferenceData(**groups)

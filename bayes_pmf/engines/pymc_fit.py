"""The PyMC engines on the model of :mod:`bayes_pmf.model.pymc_model`: MAP (L-BFGS-B),
NUTS (nutpie, numpyro or PyMC's own) and mean-field ADVI, each returning a PMFResult.

MAP never starts at PyMC's default initial point: with U = V = 0 the gradient of the
log-posterior with respect to the factors vanishes (a saddle), so L-BFGS returns at once
having moved nowhere. ``fit_map`` therefore starts from the ALS solution (default: it is
the optimum already, so MAP only confirms it) or from a seeded jittered point.
"""

from __future__ import annotations

import logging
import time
import warnings

import numpy as np
import pymc as pm

from ..errors import ConfigError, check_seed
from ..model.params import FactorParams
from ..model.pymc_model import (
    PARAMETER_NAMES,
    SCALE_NAMES,
    build_model,
    params_from_point,
    point_from_params,
)
from ..result.result import PMFResult, point_result, posterior_result
from .ridge import checked_spec, minimise

log = logging.getLogger(__name__)


def jittered_params(train, spec, rng, scale: float = 0.1) -> FactorParams:
    """A seeded random start away from the U = V = 0 saddle."""
    generator = np.random.default_rng(rng)
    return FactorParams(
        user_factors=scale * generator.standard_normal((train.n_users, spec.n_factors)),
        item_factors=scale * generator.standard_normal((train.n_items, spec.n_factors)),
        mu=train.mean_rating if spec.global_mean else 0.0,
        user_bias=np.zeros(train.n_users) if spec.biases else None,
        item_bias=np.zeros(train.n_items) if spec.biases else None,
    )


def fit_map(
    train,
    spec,
    *,
    start: str | FactorParams = "als",
    rng: int | None = 0,
    maxeval: int = 20_000,
    model: pm.Model | None = None,
    method: str = "map",
    progress: bool = True,
) -> PMFResult:
    """The MAP of ``spec``'s PyMC model (``spec`` a PMFSpec) by L-BFGS-B, as a
    chain=1, draw=1 result named ``method``.

    ``start``: ``"als"`` (default) — the ALS solution of the spec's fixed-prior penalties
    (identity link; for the logistic link a jittered start is used, there is no
    closed-form solver); ``"jitter"`` — a seeded random start; or explicit
    :class:`FactorParams`. With a hierarchical prior or a learned noise the scales are
    maximised jointly with the factors (the PMF paper's adaptive priors by MAP; they can
    collapse to zero) and kept in the posterior group; constrained PMF starts at
    Y = U_start, W = 0. ``model`` (the spec's built model) can be passed in to reuse its
    compiled functions.
    """
    spec = checked_spec(spec, "the PyMC engines")
    check_seed(rng)
    if isinstance(start, str) and start not in ("als", "jitter"):
        raise ConfigError(f"start must be 'als', 'jitter' or FactorParams, got {start!r}",
                          setting="start")
    model = model or build_model(train, spec)
    began = time.perf_counter()
    if isinstance(start, FactorParams):
        initial, start_name = start, "given"
    elif start == "als" and spec.link == "identity":
        initial = minimise(train, spec, rng=rng, max_sweeps=500, tol=1e-10,
                           progress=progress).params
        start_name = "als"
    else:
        initial, start_name = jittered_params(train, spec, rng), "jitter"
    start_seconds = time.perf_counter() - began
    began = time.perf_counter()
    with warnings.catch_warnings():
        if not spec.is_fixed:
            # A collapsing prior scale (the degenerate mode of joint MAP over factors and
            # scales) makes PyTensor warn mid-search; the result reports the scales.
            warnings.simplefilter("ignore", RuntimeWarning)
        point = pm.find_MAP(start=point_from_params(model, initial, spec), method="L-BFGS-B",
                            maxeval=maxeval, model=model, progressbar=progress,
                            include_transformed=False, seed=rng)
    map_seconds = time.perf_counter() - began
    params = params_from_point(point, spec, train.n_users, train.n_items)
    learned = {name: np.asarray(point[name]) for name in SCALE_NAMES if name in point}
    constrained_arrays = {name: np.asarray(point[name])
                          for name in ("Y", "W", "X", "Z", "Phi", "Psi", "user_tag_bias",
                                       "item_tag_bias") if name in point}
    log.info("MAP from %s start: %.2fs (+%.2fs for the start)", start_name, map_seconds,
             start_seconds)
    return point_result(
        params, spec, train, method=method, seed=rng,
        settings={"start": start_name, "maxeval": maxeval, "map_seconds": map_seconds,
                  "start_seconds": start_seconds, "optimizer": "L-BFGS-B",
                  "learned_scales": {k: v.tolist() for k, v in learned.items()}},
        extra_scalars=learned, extra_arrays=constrained_arrays,
    )


_POSTERIOR_NAMES = PARAMETER_NAMES + SCALE_NAMES


def compiled_model(train, spec):
    """The spec's PyMC model with its log-posterior gradient compiled, for checks that
    reuse one compilation: (model, gradient at FactorParams, number of parameters,
    seconds to build and compile)."""
    began = time.perf_counter()
    model = build_model(train, spec)
    dlogp = model.compile_dlogp(jacobian=False)
    seconds = time.perf_counter() - began

    def gradient(params: FactorParams) -> np.ndarray:
        return dlogp(point_from_params(model, params, spec))

    n_parameters = int(sum(np.size(v) for v in model.initial_point().values()))
    return model, gradient, n_parameters, seconds


def _from_pymc(pymc_idata, train, spec, *, method: str, seed,
               settings: dict, keep_sample_stats: bool) -> PMFResult:
    """Re-express PyMC's InferenceData in bayes_pmf's one result shape."""
    posterior = pymc_idata.posterior
    arrays = {name: posterior[name].to_numpy() for name in _POSTERIOR_NAMES
              if name in posterior}
    extra = {}
    if keep_sample_stats and "sample_stats" in pymc_idata.groups():
        extra["sample_stats"] = pymc_idata.sample_stats
    if "log_likelihood" in pymc_idata.groups():
        extra["log_likelihood"] = pymc_idata.log_likelihood
    return posterior_result(arrays, spec, train, method=method, seed=seed, settings=settings,
                            extra_groups=extra)


def _start_point(train, spec, model, start, rng, progress):
    if isinstance(start, FactorParams):
        return point_from_params(model, start, spec)
    if start == "map":
        initial = minimise(train, spec, rng=rng, tol=1e-6, progress=progress).params \
            if spec.link == "identity" else fit_map(train, spec, rng=rng, model=model,
                                                     progress=progress).point_params()
        return point_from_params(model, initial, spec)
    if start == "jitter":
        return point_from_params(model, jittered_params(train, spec, rng), spec)
    raise ConfigError(f"start must be 'map', 'jitter' or FactorParams, got {start!r}",
                      setting="start")


def available_nuts_sampler() -> str:
    """nutpie, then numpyro, when installed (much faster); PyMC's own otherwise."""
    import importlib.util

    for name in ("nutpie", "numpyro"):
        if importlib.util.find_spec(name) is not None:
            return name
    return "pymc"


def sample_nuts(
    train,
    spec,
    *,
    draws: int = 500,
    tune: int = 500,
    chains: int = 2,
    start: str | FactorParams = "map",
    sampler: str | None = None,
    log_likelihood: bool = False,
    rng: int | None = 0,
    method: str = "nuts",
    progress: bool = True,
    parameterization: str = "centered",
) -> PMFResult:
    """The posterior of ``spec``'s PyMC model (``spec`` a PMFSpec) by NUTS,
    started at the MAP/ALS point (away from the U = V = 0 saddle). ``sampler`` is
    "nutpie", "numpyro" or "pymc" (default: the best installed). ``log_likelihood=True``
    keeps the pointwise log-likelihood (large) for LOO. ``parameterization``:
    "centered" or "noncentered" (the same model through standard normal factors,
    :func:`~bayes_pmf.model.pymc_model.build_model`; better for implicit feedback's
    funnels). Returns a PMFResult named ``method``."""
    spec = checked_spec(spec, "the PyMC engines")
    check_seed(rng)
    model = build_model(train, spec, parameterization=parameterization)
    sampler = sampler or available_nuts_sampler()
    options = {}
    if sampler == "nutpie":
        # nutpie takes neither PyMC's initvals nor idata_kwargs; it starts from its own
        # jittered point (away from the U = V = 0 saddle too) and keeps no log-likelihood.
        if log_likelihood:
            raise ConfigError("log_likelihood=True needs sampler='pymc' or 'numpyro'",
                              setting="log_likelihood")
        start_used = "nutpie default"
    else:
        options = {"initvals": _start_point(train, spec, model, start, rng, progress),
                   "idata_kwargs": {"log_likelihood": log_likelihood}}
        start_used = start if isinstance(start, str) else "given"
    began = time.perf_counter()
    with model:
        pymc_idata = pm.sample(
            draws=draws, tune=tune, chains=chains, random_seed=rng, nuts_sampler=sampler,
            progressbar=progress, compute_convergence_checks=False, cores=min(chains, 2),
            **options,
        )
    seconds = time.perf_counter() - began
    return _from_pymc(pymc_idata, train, spec, method=method, seed=rng,
                      settings={"draws": draws, "tune": tune, "chains": chains,
                                "sampler": sampler, "start": start_used,
                                "parameterization": parameterization,
                                "sampling_seconds": seconds},
                      keep_sample_stats=True)


def fit_advi(
    train,
    spec,
    *,
    iterations: int = 3_000,
    draws: int = 500,
    start: str | FactorParams = "map",
    learning_rate: float = 0.003,
    start_sigma: float = 0.05,
    rng: int | None = 0,
    method: str = "advi",
    progress: bool = True,
) -> PMFResult:
    """Mean-field ADVI of ``spec``'s PyMC model (``spec`` a PMFSpec) started at
    the MAP/ALS point; ``draws`` samples of the fitted approximation form the posterior
    (one chain), a PMFResult named ``method``. Known to understate uncertainty.

    The approximation starts with standard deviation ``start_sigma`` on every
    (unconstrained) parameter and is fitted by Adam at ``learning_rate``. PyMC's defaults
    (sd softplus(0) = 0.69, adagrad at 0.001) start it wider than the factors' prior and
    crawl: on MovieLens, 5,000 of their iterations gave test RMSE 0.894 and sigma 1.31,
    20,000 gave 0.884 (820 s); 3,000 Adam steps at 0.003 from sd 0.05 gave 0.8735 and a
    lower final loss than at 0.01 (0.8746) in 93 s."""
    spec = checked_spec(spec, "the PyMC engines")
    check_seed(rng)
    if not (learning_rate > 0 and start_sigma > 0):
        raise ConfigError("learning_rate and start_sigma must be positive, got "
                          f"{learning_rate!r} and {start_sigma!r}", setting="learning_rate")
    model = build_model(train, spec)
    initvals = _start_point(train, spec, model, start, rng, progress)
    began = time.perf_counter()
    with model:
        approx = pm.fit(n=iterations, method="advi", start=initvals, random_seed=rng,
                        start_sigma={name: np.full(np.size(value), start_sigma)
                                     for name, value in initvals.items()},
                        obj_optimizer=pm.adam(learning_rate=learning_rate),
                        progressbar=progress)
        pymc_idata = approx.sample(draws, random_seed=rng)
    seconds = time.perf_counter() - began
    return _from_pymc(pymc_idata, train, spec, method=method, seed=rng,
                      settings={"iterations": iterations, "draws": draws,
                                "learning_rate": learning_rate,
                                "start_sigma": start_sigma, "fit_seconds": seconds,
                                "final_elbo_loss": float(approx.hist[-1])},
                      keep_sample_stats=False)

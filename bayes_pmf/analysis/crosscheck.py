"""MAP with PyMC against the NumPy ALS reference: the same model, two solvers.

Compared on what is identified — the objective E (scored by the one public
:func:`~bayes_pmf.model.params.objective`) and predicted ratings for held-out pairs —
never on the factors themselves, which are determined only up to a rotation and sign
flips of the latent space.
"""

from __future__ import annotations

import time

import numpy as np

from ..engines.als import fit_als
from ..engines.pymc_fit import compiled_model, fit_map
from ..model.params import objective


def _relative(value: float, reference: float) -> float:
    """(value - reference) / |reference|; 0 when both are 0 (e.g. constant ratings fitted
    exactly), never a division by zero."""
    if value == reference:
        return 0.0
    return (value - reference) / abs(reference) if reference else float("inf")


def _diffs(a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    gap = a - b
    return float(np.max(np.abs(gap))), float(np.sqrt(np.mean(gap**2)))


def crosscheck_map(
    train,
    test,
    spec,
    *,
    rng: int = 0,
    cold: bool = True,
    als_tol: float = 1e-10,
    als_max_sweeps: int = 3000,
    progress: bool = False,
) -> dict:
    """Fit ALS and PyMC MAP (from the ALS point, and from a seeded jittered point) on
    the same data with the same fixed sigmas (``spec.map_model()``); report objectives,
    prediction gaps on held-out pairs, the log-posterior gradient norm at the ALS point,
    and wall times."""
    spec = spec.map_model()
    started = time.perf_counter()
    als_result = fit_als(train, spec, rng=rng, tol=als_tol, max_sweeps=als_max_sweeps,
                         progress=progress)
    als_seconds = time.perf_counter() - started
    als_params = als_result.point_params()

    model, gradient_at, n_parameters, compile_seconds = compiled_model(train, spec)
    gradient = gradient_at(als_params)

    warm = fit_map(train, spec, start=als_params, rng=rng, model=model, progress=progress)
    users, items = test.id_pairs()
    als_pred = als_result.predict(users, items, unknown="prior")
    warm_pred = warm.predict(users, items, unknown="prior")
    objective_als = objective(train, als_params, spec)
    objective_map = objective(train, warm.point_params(), spec)
    max_diff, rms_diff = _diffs(warm_pred, als_pred)
    report = {
        "n_train": train.n_ratings,
        "n_test": test.n_ratings,
        "n_factors": spec.n_factors,
        "n_parameters": n_parameters,
        "spec": spec.as_dict(),
        "seed": rng,
        "objective_als": objective_als,
        "objective_map": objective_map,
        "objective_rel_diff": _relative(objective_map, objective_als),
        "pred_max_abs_diff": max_diff,
        "pred_rms_diff": rms_diff,
        "grad_norm_at_als": float(np.linalg.norm(gradient)),
        "als_sweeps": als_result.settings["n_sweeps"],
        "als_converged": als_result.settings["converged"],
        "als_seconds": als_seconds,
        "model_build_compile_seconds": compile_seconds,
        "map_seconds": warm.attrs["settings"]["map_seconds"],
    }
    if cold:
        cold_fit = fit_map(train, spec, start="jitter", rng=rng, model=model, progress=progress)
        objective_cold = objective(train, cold_fit.point_params(), spec)
        cold_max, cold_rms = _diffs(cold_fit.predict(users, items, unknown="prior"), als_pred)
        report.update({
            "objective_cold_map": objective_cold,
            "cold_objective_rel_diff": _relative(objective_cold, objective_als),
            "cold_pred_max_abs_diff": cold_max,
            "cold_pred_rms_diff": cold_rms,
            "cold_map_seconds": cold_fit.attrs["settings"]["map_seconds"],
        })
    return report

"""The standard set of figures and the diagnostics table of a main-job run."""

from __future__ import annotations

import logging

import matplotlib.pyplot as plt
import pandas as pd

from . import plots
from .diagnostics import convergence_summary, heldout_log_predictive_density, identifiable_draws
from .results import PMFResult
from .split import Split

log = logging.getLogger(__name__)


def _posterior_model(models: dict) -> tuple[str, PMFResult] | None:
    sampled = [(n, m) for n, m in models.items() if isinstance(m, PMFResult) and m.n_samples > 1]
    return sampled[0] if sampled else None


def run_figures(models: dict, split: Split, results: list[dict]) -> dict[str, plt.Figure]:
    """Figures for a run: method comparison, RMSE by user activity, ALS objective, and for
    the first sampled model: posterior predictive, predicted vs actual, calibration,
    running RMSE and rank plots of identifiable quantities."""
    train, test = split.train, split.test
    users, items = test.id_pairs()
    figures = {"method_comparison": plots.plot_method_comparison(
        plots.method_comparison_data(results))}
    predictions = {name: model.predict(users, items, unknown="prior")
                   for name, model in models.items()
                   if name in ("bias-baseline", "pmf-als", "pmf-map", "pmf-constrained") or
                   (isinstance(model, PMFResult) and model.n_samples > 1)}
    figures["rmse_by_activity"] = plots.plot_rmse_by_activity(
        plots.rmse_by_activity_data(predictions, train, test))
    if "pmf-als" in models:
        figures["als_objective"] = plots.plot_objective_trace(
            plots.objective_trace_data(models["pmf-als"]))
    chosen = _posterior_model(models)
    point = models.get("pmf-als")
    if chosen is not None:
        name, model = chosen
        if train.scale.bounded and train.scale.step:
            figures["ppc_ratings"] = plots.plot_ppc_ratings(
                plots.ppc_ratings_data(model, test),
                title=f"Held-out ratings vs posterior predictive ({name})")
        figures["predicted_vs_actual"] = plots.plot_predicted_vs_actual(
            plots.predicted_vs_actual_data(model, test),
            title=f"Predicted vs actual held-out ratings ({name})")
        calibration = {name: plots.calibration_data(model, test)}
        if point is not None:
            calibration["pmf-als (plug-in sigma)"] = plots.calibration_data(point, test)
        figures["calibration"] = plots.plot_calibration(calibration)
        try:
            reference = {n: r["rmse"] for n, r in ((r["method"], r) for r in results)
                         if n in ("pmf-als", "bias-baseline")}
            figures["running_rmse"] = plots.plot_running_rmse(
                plots.running_rmse_data(model), reference=reference)
        except ValueError:
            pass
        if model.idata.posterior.sizes["chain"] > 1:
            figures["rank_identifiable"] = plots.plot_rank_identifiable(
                identifiable_draws(model, test))
    return figures


def diagnostics_table(models: dict, split: Split) -> pd.DataFrame:
    """Convergence verdict and held-out lpd per sampled model."""
    rows = []
    for name, model in models.items():
        if not (isinstance(model, PMFResult) and model.n_samples > 1):
            continue
        report = convergence_summary(model, split.test)
        rows.append({"method": name, **report.as_dict(),
                     **heldout_log_predictive_density(model, split.test)})
    return pd.DataFrame(rows)

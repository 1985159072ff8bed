"""The standard set of figures of a main-job run, read from the held-out predictions
stored in each model."""

from __future__ import annotations

import warnings

import matplotlib.pyplot as plt

from .. import plots
from ..analysis.diagnostics import identifiable_draws
from ..analysis.metrics import rmse_by_activity_table


def _posterior_model(models: dict):
    sampled = [(n, m) for n, m in models.items() if m.n_samples > 1]
    return sampled[0] if sampled else None


def run_figures(models: dict, split, results: list[dict]) -> dict[str, plt.Figure]:
    """Figures for a run: method comparison, RMSE by user activity, ALS objective, and for
    the first sampled model: posterior predictive, predicted vs actual, calibration,
    running RMSE and rank plots of identifiable quantities."""
    train, test = split.train, split.test
    figures = {"method_comparison": plots.plot_method_comparison(
        plots.method_comparison_data(results))}
    predictions = {name: model.held_out[1]["mean"].to_numpy()
                   for name, model in models.items()
                   if name in ("bias-baseline", "pmf-als", "pmf-map", "pmf-constrained") or
                   model.n_samples > 1}
    figures["rmse_by_activity"] = plots.plot_rmse_by_activity(
        rmse_by_activity_table(predictions, train, test))
    if "pmf-als" in models:
        figures["als_objective"] = plots.plot_objective_trace(
            plots.objective_trace_data(models["pmf-als"]))
    chosen = _posterior_model(models)
    point = models.get("pmf-als")
    if chosen is not None:
        name, model = chosen
        if train.scale.bounded and train.scale.step:
            figures["ppc_ratings"] = plots.plot_ppc_ratings(
                plots.ppc_ratings_data(model),
                title=f"Held-out ratings vs posterior predictive ({name})")
        figures["predicted_vs_actual"] = plots.plot_predicted_vs_actual(
            plots.predicted_vs_actual_data(model),
            title=f"Predicted vs actual held-out ratings ({name})")
        calibration = {name: plots.calibration_data(model)}
        if point is not None:
            calibration["pmf-als (plug-in sigma)"] = plots.calibration_data(point)
        figures["calibration"] = plots.plot_calibration(calibration)
        reference = {r["method"]: r["rmse"] for r in results
                     if r["method"] in ("pmf-als", "bias-baseline")}
        try:
            running = plots.running_rmse_data(model)
        except ValueError as exc:
            warnings.warn(f"figure 'running_rmse' left out for {name}: {exc}", stacklevel=2)
        else:
            figures["running_rmse"] = plots.plot_running_rmse(running, reference=reference)
        if model.idata.posterior.sizes["chain"] > 1:
            figures["rank_identifiable"] = plots.plot_rank_identifiable(
                identifiable_draws(model, test))
    return figures

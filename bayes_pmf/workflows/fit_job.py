"""The main job: load ratings, split, fit baselines and PMF, predict the held-out
ratings once per model, score, diagnose, record everything, and draw the run's figures
(:func:`run_figures`, from the stored predictions).

``run_fit_job`` is what ``bayes-pmf fit`` runs; it returns the metrics dictionary written
to ``metrics.json`` and the fitted models (those the figures read holding their held-out
predictions), so notebooks can use it as well as the CLI.
"""

from __future__ import annotations

import os
import resource
import time
import warnings
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Callable

import pandas as pd

from .. import plots
from ..analysis.diagnostics import (
    convergence_summary,
    heldout_log_predictive_density,
    identifiable_draws,
)
from ..analysis.metrics import rmse_by_activity_table, score
from ..data.files import load_split as load_split_of
from ..engines.als import fit_als, fit_bias_baseline, fit_global_mean, fit_item_mean, fit_user_mean
from ..result.predictive import CALIBRATION_LEVELS, held_out_predictions, interval_column_names
from .config import FitJobConfig, check_memory, grid_levels, sampling_plan
from .reproducibility import environment


@dataclass
class FitJobOutcome:
    metrics: dict
    # every fitted model; of the held-out predictions only the columns the figures and
    # diagnostics read are kept, for the models they read (FIGURE_PREDICTIONS and the
    # sampled ones; see _kept_for_figures): held_out_predictions(model, split.test)
    # recomputes a whole table
    models: dict = field(default_factory=dict)
    split: object | None = None  # a Split


def load_split(config: FitJobConfig, executor=None):
    """The train/test split the config asks for (and the full data when it was split);
    partitions of ``config.data`` are read on the workers of a Dask ``executor``."""
    return load_split_of(config.data, config.train, config.test,
                         test_fraction=config.test_fraction, seed=config.seed,
                         items=config.items, users=config.users,
                         client=getattr(executor, "client", None), scale=config.scale,
                         invalid=config.invalid, duplicates=config.duplicates)


def _timed(fit: Callable[[], object]) -> tuple[object, float]:
    start = time.perf_counter()
    model = fit()
    return model, time.perf_counter() - start


def _als_methods(config: FitJobConfig, split, executor=None) -> list[tuple[str, Callable]]:
    train = split.train

    def als(spec, name: str):
        return lambda: fit_als(train, spec, max_sweeps=config.max_sweeps, tol=config.tol,
                               rng=config.seed, method=name, progress=config.progress,
                               executor=executor)

    return [
        ("pmf-als", als(config.gaussian_spec, "pmf-als")),
        ("pmf-als-nobias", als(config.pmf_spec_no_bias, "pmf-als-nobias")),
    ]


def _map_methods(config: FitJobConfig, split) -> list[tuple[str, Callable]]:
    from ..engines.pymc_fit import fit_map  # imports PyMC: only when MAP is asked for

    train = split.train
    name = config.method_name("pmf-map")
    return [(name, lambda: fit_map(train, config.pmf_spec, start="als", rng=config.seed,
                                   method=name, progress=config.progress))]


def _gibbs_methods(config: FitJobConfig, split, executor=None) -> list[tuple[str, Callable]]:
    from ..engines.gibbs import sample_gibbs

    train, test = split.train, split.test
    plan = sampling_plan(config, train.n_ratings, train.n_users, train.n_items,
                         levels=grid_levels(train.scale))
    name = config.method_name("bpmf-gibbs")
    # The held-out set is only watched (running RMSE per sample), never fitted to.
    return [(name, lambda: sample_gibbs(
        train, config.posterior_spec_for(train), draws=plan.draws, tune=plan.tune,
        chains=config.chains, thin=plan.thin, held_out=test, rng=config.seed,
        method=name, progress=config.progress, executor=executor))]


def _nuts_methods(config: FitJobConfig, split) -> list[tuple[str, Callable]]:
    from ..engines.pymc_fit import sample_nuts

    train = split.train
    # the Gibbs sampler's model (its PyMC twin), for either link
    name = config.method_name("pmf-nuts")
    spec = config.posterior_spec_for(train)
    # implicit feedback's funnel (own factors against their prior scale) biases NUTS on
    # the centred twin; the noncentered one is the same model (benchmarks/README.md)
    implicit = spec.user_additive or spec.item_additive
    return [(name, lambda: sample_nuts(
        train, spec, draws=config.draws, tune=config.tune,
        chains=min(config.chains, 2), rng=config.seed, method=name,
        progress=config.progress,
        parameterization="noncentered" if implicit else "centered"))]


def _advi_methods(config: FitJobConfig, split) -> list[tuple[str, Callable]]:
    from ..engines.pymc_fit import fit_advi

    train = split.train
    name = config.method_name("pmf-advi")
    return [(name, lambda: fit_advi(train, config.posterior_spec_for(train), draws=config.draws,
                                    rng=config.seed, method=name,
                                    progress=config.progress))]


def _constrained_methods(config: FitJobConfig, split) -> list[tuple[str, Callable]]:
    from ..engines.constrained import fit_constrained

    train = split.train
    return [("pmf-constrained", lambda: fit_constrained(
        train, config.gaussian_spec.with_(constrained=True), rng=config.seed,
        method="pmf-constrained", progress=config.progress))]


# the methods whose engines run on the executor seam (a Dask cluster with config.dask)
DISTRIBUTED_METHODS = ("als", "gibbs")

METHODS: dict[str, Callable[..., list[tuple[str, Callable]]]] = {
    "als": _als_methods,
    "map": _map_methods,
    "gibbs": _gibbs_methods,
    "nuts": _nuts_methods,
    "advi": _advi_methods,
    "constrained": _constrained_methods,
}


class Stages:
    """Wall time and memory of each stage of a run, for metrics.json's "stages" (what
    benchmarks/scale_memory.py reports): peak resident memory so far, of this process and
    of its chain processes, and this process's resident memory at the stage's end (what
    the stage left held; the peak minus it was transient)."""

    def __init__(self) -> None:
        self.rows: list[dict] = []

    @contextmanager
    def __call__(self, stage: str):
        began = time.perf_counter()
        yield
        resident = _resident_bytes() / 2**20
        # the kernel's high-water mark trails the resident size by a few pages' worth of
        # unsynchronised counters, so the current size bounds the peak from below too
        peak = max(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                   resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024, resident)
        self.rows.append({"stage": stage, "seconds": round(time.perf_counter() - began, 3),
                          "peak_rss_mb": round(peak), "rss_mb": round(resident)})


def _resident_bytes() -> int:
    """This process's resident memory now (Linux: /proc/self/statm; elsewhere 0)."""
    try:
        with open("/proc/self/statm") as handle:
            return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, AttributeError):
        return 0


def run_fit_job(config: FitJobConfig, stages: Stages | None = None) -> FitJobOutcome:
    """Fit the baselines and each requested method on the training part; predict the
    held-out part once per model (stored in each result) and score them all with the
    same cold-start policy. ``stages`` records each stage's time and memory."""
    stages = stages or Stages()
    # the cluster first: a wrong scheduler address fails before any work is done
    with _cluster(config, stages) as executor:
        return _run_fit_job(config, stages, executor)


def _run_fit_job(config: FitJobConfig, stages: Stages, executor) -> FitJobOutcome:
    with stages("read and split"), warnings.catch_warnings(record=True) as said:
        split, full = load_split(config, executor)
    for warning in said:  # shown as they would have been, and kept with the run's data
        warnings.warn_explicit(warning.message, warning.category, warning.filename,
                               warning.lineno)
    check_memory(config, split)
    train, test = split.train, split.test
    if set(config.methods) & {"gibbs", "nuts", "advi"}:
        config.posterior_spec_for(train)  # an item column the data lacks: before any fit
    # the full data only describes itself: the split holds what the run uses
    dataset = (full or train).describe() | (
        {"test_source": test.source, "test_ingest": test.ingest.as_dict()} if full is None
        else {})
    data_warnings = [str(w.message) for w in said if issubclass(w.category, UserWarning)]
    if data_warnings:  # text ids kept, a scale inferred, test pairs seen in training
        dataset["warnings"] = data_warnings
    del full
    fits: list[tuple[str, Callable]] = [
        ("global-mean", lambda: fit_global_mean(train)),
        ("user-mean", lambda: fit_user_mean(train)),
        ("item-mean", lambda: fit_item_mean(train)),
        ("bias-baseline", lambda: fit_bias_baseline(train, config.lambda_bias,
                                                    config.lambda_bias)),
    ]
    for method in config.methods:
        fits.extend(METHODS[method](config, split, executor) if method in
                    DISTRIBUTED_METHODS else METHODS[method](config, split))
    results, models = [], {}
    for name, fit in fits:
        with stages(f"fit {name}"):
            model, seconds = _timed(fit)
        with stages(f"predict and score {name}"):
            if model.method != name:
                model = model.with_method(name)
            model = held_out_predictions(model, test)
            results.append({"method": name, **score(model, train, test,
                                                     round=config.round_predictions),
                            "fit_seconds": seconds})
            # scored: only the figures and diagnostics read the per-pair predictions
            # again, a few columns of a few models (at 10^7 ratings a model's whole
            # table and draws are ~0.6 GB)
            models[name] = _kept_for_figures(name, model)
    cluster = _cluster_record(executor)
    metrics = {
        "dataset": dataset,
        "split": split.describe(),
        "settings": config.as_dict(),
        "seed": config.seed,
        **environment(),
        "results": results,
    }
    if cluster:
        metrics["cluster"] = cluster
    if set(config.methods) & {"gibbs", "nuts", "advi"}:
        metrics["implicit"] = config.implicit_for(train.n_users, train.n_items)
        metrics["item_features"] = config.item_features_for(train)
        metrics["user_features"] = config.user_features_for(train)
    if "gibbs" in config.methods:
        metrics["sampling"] = sampling_plan(config, train.n_ratings, train.n_users,
                                            train.n_items,
                                            levels=grid_levels(train.scale)).as_dict()
    if any(m.n_samples > 1 for m in models.values()):
        with stages("diagnostics"):
            table = diagnostics_table(models, split)
        metrics["diagnostics"] = table.to_dict(orient="records")
    metrics["stages"] = stages.rows
    return FitJobOutcome(metrics=metrics, models=models, split=split)


@contextmanager
def _cluster(config: FitJobConfig, stages: Stages):
    """The executor of the run's ALS and Gibbs fits: None (this machine), or a Dask
    cluster's (started, for "local:N", and stopped with the run)."""
    if config.dask is None:
        yield None
        return
    from ..engines.dask_executor import DaskExecutor

    # where the Gibbs chains run: as the user said, or chosen per fit (chain_placement)
    chain_tasks = "auto" if config.dask_chains is None else config.dask_chains
    with stages("start the Dask cluster"):
        if config.dask.startswith("local:"):
            executor = DaskExecutor.local(int(config.dask.split(":", 1)[1]),
                                          chain_tasks=chain_tasks)
        else:
            executor = DaskExecutor.connect(config.dask, chain_tasks=chain_tasks)
    with executor:
        yield executor


def _cluster_record(executor) -> dict | None:
    """What metrics.json records of the cluster: its shape and what moved."""
    if executor is None:
        return None
    return {**executor.describe(), "bytes_sent": executor.bytes_sent,
            "bytes_received": executor.bytes_received, "recoveries": executor.recoveries,
            **({"chains": executor.placed_chains} if executor.placed_chains else {})}


def diagnostics_table(models: dict, split) -> pd.DataFrame:
    """Convergence verdict and held-out lpd per sampled model."""
    rows = []
    for name, model in models.items():
        if model.n_samples <= 1:
            continue
        report = convergence_summary(model, split.test)
        rows.append({"method": name, **report.as_dict(),
                     **heldout_log_predictive_density(model, split.test)})
    return pd.DataFrame(rows)


# -- the figures of a run -------------------------------------------------------------------

# The point models whose held-out predictions the figures read (RMSE by user activity,
# calibration); run_fit_job keeps these and the sampled models' predictions in the
# models it returns, and drops the others' once they are scored.
FIGURE_PREDICTIONS = ("bias-baseline", "pmf-als", "pmf-map", "pmf-map-ordinal",
                      "pmf-constrained")

# The per-pair columns of the stored held-out predictions that run_figures and the
# diagnostics read: the mean of every model they draw, the central intervals of the ALS
# point estimate (calibration) and of a sampled model, which also keeps its predictive
# sd, pointwise lpd and draws (posterior predictive, predicted vs actual).
_INTERVALS = tuple(interval_column_names(CALIBRATION_LEVELS))
SAMPLED_FIGURE_COLUMNS = ("mean", "pred_mean", "pred_sd", "lpd", *_INTERVALS)


def _kept_for_figures(name: str, model):
    """What a run keeps of a scored model: only what its figures and diagnostics read."""
    if model.n_samples > 1:
        return model.keeping_held_out(SAMPLED_FIGURE_COLUMNS)
    if name == "pmf-als":
        return model.keeping_held_out(("mean", *_INTERVALS), draws=False)
    if name in FIGURE_PREDICTIONS:
        return model.keeping_held_out(("mean",), draws=False)
    return model.without_predictions()


def _posterior_model(models: dict):
    sampled = [(n, m) for n, m in models.items() if m.n_samples > 1]
    return sampled[0] if sampled else None


def run_figures(models: dict, split, results: list[dict]) -> dict:
    """Figures for a run: method comparison, RMSE by user activity, ALS objective, and for
    the first sampled model: posterior predictive, predicted vs actual, calibration,
    running RMSE and rank plots of identifiable quantities."""
    train, test = split.train, split.test
    figures = {"method_comparison": plots.plot_method_comparison(
        plots.method_comparison_data(results))}
    means = {name: model.held_out_table(["mean"]) for name, model in models.items()
             if name in FIGURE_PREDICTIONS or model.n_samples > 1}
    predictions = {name: table["mean"].to_numpy() for name, table in means.items()
                   if table is not None}
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
        pit = {r["method"]: r["pit_histogram"] for r in results
               if "pit_histogram" in r and r["method"] in (name, "pmf-als")}
        if pit:
            figures["pit"] = plots.plot_pit(pit)
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

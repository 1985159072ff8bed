"""Reproducibility reports: one call fits, scores, cross-checks and writes a folder.

    write_report(ReportConfig(), "reports/movielens-default")

writes the run folder of :mod:`bayes_pmf.runfolder` (metrics.json, results.csv,
diagnostics.csv, figures/, models/) plus

    config.toml   the settings; ``bayes-pmf report --config config.toml`` reruns them
    report.md     data, split, settings and seeds, versions and machine, metrics table,
                  RMSE by user activity, MAP-vs-ALS cross-check, diagnostics, figures
    report.html   the same, self-contained (figures embedded)

Every number in the report is read from the metrics dictionary, which is written as
metrics.json too, so a test can compare a committed report with a fresh run.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from itertools import product
from pathlib import Path

import pandas as pd

from ..analysis.selection import (
    SELECTION_SAMPLING,
    check_model_selection,
    select_hyperparameters,
    select_model,
)
from ..errors import ConfigError
from .config import FitJobConfig, ReportConfig
from .fit_job import FitJobOutcome, Stages, load_split, run_figures, run_fit_job
from .render import to_html, to_markdown
from .runfolder import (
    RunFolder,
    default_run_dir,
    metrics_json,
    results_table,
    write_run_folder,
    write_text,
)

_CAPTIONS = {
    "method_comparison": "Held-out RMSE of every method (lower is better).",
    "rmse_by_activity": "Held-out RMSE by the number of training ratings of the user "
                        "(the PMF paper's breakdown): where models differ is at low activity.",
    "als_objective": "ALS objective per sweep: it decreases monotonically to convergence.",
    "ppc_ratings": "Distribution of held-out ratings against the posterior predictive.",
    "predicted_vs_actual": "Posterior-mean prediction against the actual held-out rating.",
    "calibration": "Coverage of central predictive intervals against their nominal level "
                   "(on the diagonal = calibrated).",
    "pit": "Randomised probability integral transform of the held-out ratings under each "
           "predictive on the rating grid (flat at 0.1 = calibrated; a U means too narrow, "
           "a hump too wide): the calibration check for discrete ratings.",
    "running_rmse": "Held-out RMSE of the running posterior mean over Gibbs sweeps, "
                    "against the MAP and bias baseline.",
    "rank_identifiable": "Rank plots of identifiable quantities (sigma, predicted ratings) "
                         "per chain: uniform bars mean the chains agree.",
}


def crosscheck_section(split, config: ReportConfig) -> dict:
    """The report's "crosscheck" entry of metrics.json: PyMC's MAP against the NumPy ALS
    reference on the split's training part, at the job's fixed-prior penalties."""
    from ..analysis.crosscheck import crosscheck_map  # imports PyMC

    report = crosscheck_map(split.train, split.test, config.job.gaussian_spec,
                            rng=config.job.seed, cold=False, progress=False)
    report.pop("spec")
    return report


# -- the commands' jobs ----------------------------------------------------------------------

@dataclass
class FitRun:
    """What ``bayes-pmf fit`` did: the job's outcome, the run folder it wrote, the figure
    names, the results table and metrics.json's text."""

    outcome: FitJobOutcome
    out_dir: Path
    figures: list[str]
    table: pd.DataFrame
    metrics_json: str


def run_fit(config: FitJobConfig, out_dir: str | Path | None = None, *, figures: bool = True,
            selection=None, overwrite: bool = False) -> FitRun:
    """The main job with its figures, written to a run folder (default
    ``reports/runs/fit-<date>-<time>``) that appears whole at the end or not at all (see
    :class:`~bayes_pmf.workflows.runfolder.RunFolder`; a folder holding an earlier run is
    replaced only with ``overwrite``); ``selection`` (a Selection that chose the config's
    lambda and d) is recorded in metrics.json."""
    stages = Stages()
    with RunFolder(out_dir or default_run_dir(), overwrite=overwrite) as folder:
        outcome = run_fit_job(config, stages)
        outcome.metrics["run_id"] = folder.run_id
        if selection is not None:
            outcome.metrics["selection"] = selection.as_dict()
        drawn = None
        if figures:
            with stages("figures"):
                drawn = run_figures(outcome.models, outcome.split, outcome.metrics["results"])
        with stages("save"):  # recorded in metrics.json up to the figures
            write_run_folder(outcome.metrics, outcome.models, folder.staging, drawn)
            out = folder.commit()
    return FitRun(outcome, out, sorted(drawn or {}), results_table(outcome.metrics["results"]),
                  metrics_json(outcome.metrics))


def check_map(config: FitJobConfig, *, cold: bool = True) -> dict:
    """The PyMC-MAP vs NumPy-ALS cross-check on the config's training part (fixed priors
    at the config's penalties), with the data source."""
    from ..analysis.crosscheck import crosscheck_map  # imports PyMC

    split, _ = load_split(config)
    report = crosscheck_map(split.train, split.test, config.gaussian_spec, rng=config.seed,
                            cold=cold, progress=config.progress)
    report["dataset"] = split.train.source
    return report


def select(config: FitJobConfig, lambdas, dims, folds: int):
    """lambda and d by ``folds``-fold cross-validation on the config's training part."""
    split, _ = load_split(config)
    return select_hyperparameters(split.train, lambdas=lambdas, dims=dims, k=folds,
                                  lambda_bias=config.lambda_bias, rng=config.seed,
                                  progress=config.progress)


def posterior_variants(config: FitJobConfig, likelihoods, implicit, dims,
                       item_features=None, thresholds=None, user_features=None,
                       tag_biases=None) -> dict:
    """The posterior models (the run's :meth:`FitJobConfig.posterior_spec_for`) for every
    likelihood x implicit feedback x d (x item features, when ``item_features`` lists
    more than one setting; else each has that one, or the run's; x the ordinal model's
    ``thresholds``, default the run's), by name; "auto" settings are resolved on each
    fold. The ordinal model with per-user thresholds is named "ordinal (user
    thresholds)"; the Gaussian model has no thresholds and is tried once.
    ``user_features`` likewise for the users' side information, ``tag_biases`` ("off",
    "on") for the tags' bias regressors."""
    features = list(item_features) if item_features else [config.item_features]
    user_sets = list(user_features) if user_features else [config.user_features]
    cuts = list(thresholds) if thresholds else [config.thresholds]
    shifts = list(tag_biases) if tag_biases else ["on" if config.tag_biases else "off"]
    unknown = [v for v in shifts if v not in ("off", "on")]
    if unknown:
        raise ConfigError(f"tag_biases variants are 'off' and 'on', got {unknown[0]!r}",
                          setting="tag_biases")
    variants: dict = {}
    for likelihood, cut, feedback, d, tags, user_tags, shift in product(
            likelihoods, cuts, implicit, dims, features, user_sets, shifts):
        if likelihood != "ordinal":
            if cut != cuts[0]:
                continue
            cut = "global"
        variant = replace(config, likelihood=likelihood, thresholds=cut, implicit=feedback,
                          n_factors=d, item_features=tags, user_features=user_tags,
                          tag_biases=shift == "on")
        model = f"{likelihood} (user thresholds)" if cut == "user" else likelihood
        name = f"{model}, implicit {feedback}, d={d}" + (
            f", item features {tags}" if len(features) > 1 else "") + (
            f", user features {user_tags}" if len(user_sets) > 1 else "") + (
            f", tag biases {shift}" if len(shifts) > 1 else "")
        variants[name] = variant.posterior_spec_for
    return variants


def select_posterior(config: FitJobConfig, likelihoods, implicit, dims, folds: int, *,
                     by: str = "rmse", train=None, item_features=None, thresholds=None,
                     user_features=None, tag_biases=None):
    """:func:`select_model` of the posterior variants (:func:`posterior_variants`; with
    ``item_features``, those settings compared too) on the config's training part
    (``train`` when the caller has it already, else read and split here), the config's
    chains, burn-in and draws."""
    check_model_selection(folds, by)
    variants = posterior_variants(config, likelihoods, implicit, dims, item_features,
                                  thresholds, user_features, tag_biases)  # checks them
    if train is None:
        train = load_split(config)[0].train
    return select_model(train, variants, k=folds, by=by, draws=config.draws,
                        tune=config.tune, chains=config.chains, rng=config.seed,
                        progress=config.progress)


# The variants a report's model selection compares (at the job's d), and the Gibbs run on
# each fold: bp.select_model's defaults, or the job's own chains, burn-in and draws where
# those are fewer (a quick job gets a quick comparison).
MODEL_SELECTION_GRID = {"likelihoods": ("gaussian", "ordinal"), "implicit": ("none", "both"),
                        "folds": 3}


def model_selection_section(config: FitJobConfig, train) -> dict:
    """The report's "model_selection" entry: :func:`select_posterior` over
    MODEL_SELECTION_GRID on the job's training ratings ``train``, and the variant the
    report's own job runs."""
    sampling = {name: min(getattr(config, name), default)
                for name, default in SELECTION_SAMPLING.items()}
    quick = replace(config, **sampling)
    selection = select_posterior(quick, MODEL_SELECTION_GRID["likelihoods"],
                                 MODEL_SELECTION_GRID["implicit"], (config.n_factors,),
                                 MODEL_SELECTION_GRID["folds"], train=train)
    implicit = config.implicit_for(train.n_users, train.n_items)
    features = config.item_features_for(train)
    model = config.likelihood + (" (user thresholds)" if config.likelihood == "ordinal"
                                 and config.thresholds == "user" else "")
    return dict(selection.as_dict(),
                run_model=f"{model}, implicit {implicit}, d={config.n_factors}"
                + (f" (each with the items' {features})" if features else ""))


def run_report_job(config: ReportConfig) -> tuple[dict, dict, dict]:
    """Fit and measure everything a report shows: (metrics, models, figures)."""
    outcome = run_fit_job(config.job)
    metrics = dict(outcome.metrics, title=config.title)
    if config.crosscheck:
        metrics["crosscheck"] = crosscheck_section(outcome.split, config)
    if config.model_selection:
        metrics["model_selection"] = model_selection_section(config.job, outcome.split.train)
    figures = run_figures(outcome.models, outcome.split, metrics["results"])
    return metrics, outcome.models, figures


def write_report(config: ReportConfig | None = None, out_dir: str | Path = "reports/report",
                 *, overwrite: bool = False) -> Path:
    """Run the report's job and write the report folder (whole or not at all; an earlier
    report there is replaced only with ``overwrite``); returns its path."""
    config = config or ReportConfig()
    with RunFolder(out_dir, overwrite=overwrite) as folder:
        metrics, models, figures = run_report_job(config)
        metrics["run_id"] = folder.run_id
        out = folder.staging
        write_run_folder(metrics, models, out, figures)
        metrics = dict(metrics, figures=[f"figures/{name}.png" for name in figures])
        write_text(out / "config.toml", config.as_toml())
        blocks = report_blocks(metrics)
        write_text(out / "report.md", to_markdown(blocks))
        write_text(out / "report.html", to_html(blocks, out, config.title))
        return folder.commit()


# -- the report's text ------------------------------------------------------------------

def _ingest_rows(ingest: dict, part: str = "") -> list[tuple]:
    """What happened to a file's rows: read / used, and the rejected by reason."""
    rejected = ingest.get("rejected") or {}
    return [(f"rows read / used{part}",
             f"{ingest.get('n_read', '?'):,} / {ingest.get('n_used', '?'):,}"),
            (f"rows rejected{part}",
             ", ".join(f"{k}: {v}" for k, v in rejected.items()) or "none")]


def _data_blocks(metrics: dict) -> list[tuple]:
    data, split = metrics["dataset"], metrics["split"]
    given = "test_ingest" in data  # given train and test files: each its own count
    rows = [("source", data["source"]), ("ratings", f"{data['n_ratings']:,}"),
            ("users", f"{data['n_users']:,}"), ("items", f"{data['n_items']:,}"),
            ("density", f"{data['density']:.4%}"), ("mean rating", f"{data['mean_rating']:.4f}"),
            ("rating scale", f"{data['scale']['min']} to {data['scale']['max']} "
                             f"in steps of {data['scale']['step']}"),
            *_ingest_rows(data.get("ingest", {}), " (training file)" if given else ""),
            *(_ingest_rows(data["test_ingest"], " (test file)") if given else []),
            ("SHA-256 of the ratings", f"`{data['sha256']}`")]
    rows += [("warning on reading", text) for text in data.get("warnings", [])]
    split_rows = [(key.replace("_", " "), split[key]) for key in split]
    return [
        ("h2", "Data"),
        ("table", pd.DataFrame(rows, columns=["", "value"], dtype=object)),
        ("h2", "Split"),
        ("p", "Ratings in the test part whose user or item has no training rating are "
              "scored with the cold-start (prior-mean) prediction and counted below"
              + (f"; the posterior model predicts an item without training ratings from "
                 f"its {metrics['item_features']} instead (item features)"
                 if metrics.get("item_features") else "")
              + (f"; a user without training ratings from their "
                 f"{metrics['user_features'].replace(',', ', ')} (user features)"
                 if metrics.get("user_features") else "") + "."),
        ("table", pd.DataFrame(split_rows, columns=["", "value"], dtype=object)),
    ]


def _settings_blocks(metrics: dict) -> list[tuple]:
    settings = [(key, str(value)) for key, value in metrics["settings"].items()]
    return [
        ("h2", "Settings and seeds"),
        ("p", f"Every random step (split, ALS start, Gibbs chains, MAP start) is seeded "
              f"from seed {metrics['seed']}. The file `config.toml` in this folder holds these "
              f"settings; `bayes-pmf report --config config.toml --out DIR` reruns them."),
        ("table", pd.DataFrame(settings, columns=["setting", "value"])),
        *_sampling_blocks(metrics),
    ]


def _sampling_blocks(metrics: dict) -> list[tuple]:
    plan = metrics.get("sampling")
    if not plan:
        return []
    text = (f"The Gibbs chains ran {plan['tune']} burn-in sweeps and kept {plan['draws']} "
            f"draws each, every {plan['thin']}th sweep after burn-in"
            if plan["thin"] > 1 else
            f"The Gibbs chains ran {plan['tune']} burn-in sweeps and kept {plan['draws']} "
            "draws each")
    blocks = [("p", text + (": " + "; ".join(plan["notes"]) if plan["notes"] else "") + ".")]
    # the model's implicit feedback as run ("auto" resolved for the data)
    implicit = metrics.get("implicit", metrics["settings"].get("implicit", "none"))
    if implicit != "none":
        sides = {"users": "each user's factors add the 1/sqrt(count)-scaled sum of factors W "
                          "of the items they rated",
                 "items": "each item's factors add the 1/sqrt(count)-scaled sum of factors Z "
                          "of the users who rated it"}
        chosen = ["users", "items"] if implicit == "both" else [implicit]
        blocks.append(("p", "The posterior model has implicit feedback (which items a user "
                            "chose to rate, and who rated an item, from the training part "
                            "only): " + "; ".join(sides[c] for c in chosen)
                       + ". W and Z have their own Wishart priors."))
    features = metrics.get("item_features")
    if features:
        blocks.append(("p", f"The posterior model has item features: each tag of the items' "
                            f"{features} column gets factors, and each item's factors add "
                            "the 1/sqrt(count)-scaled sum of its tags' factors (under Z's "
                            "prior); an item without training ratings is predicted from its "
                            f"{features}."))
    columns = metrics.get("user_features")
    if columns:
        blocks.append(("p", "The posterior model has user features: each value of the "
                            f"users' {columns.replace(',', ', ')} gets factors, and each "
                            "user's factors add the 1/sqrt(count)-scaled sum of their "
                            "values' factors (under W's prior); a user without training "
                            "ratings is predicted from them."))
    if metrics["settings"].get("tag_biases") and (features or columns):
        blocks.append(("p", "The tags also give the biases their prior means (tag biases): "
                            "each tag has its own shift beta, and an item's (user's) bias is "
                            "drawn around the 1/sqrt(count)-scaled sum of its tags' shifts, "
                            "which a cold item (user) is predicted with."))
    return blocks


def _results_blocks(metrics: dict) -> list[tuple]:
    table = results_table(metrics["results"])
    activity = {r["method"]: {b["bucket"]: b["rmse"] for b in r["rmse_by_activity"]}
                for r in metrics["results"] if "rmse_by_activity" in r}
    counts = {b["bucket"]: b["n_test"] for b in metrics["results"][0]["rmse_by_activity"]}
    by_activity = pd.DataFrame(activity)
    by_activity.insert(0, "test ratings", pd.Series(counts))
    by_activity = by_activity[by_activity["test ratings"] > 0]
    by_activity.insert(0, "training ratings of the user", by_activity.index)
    best = table.loc[table["rmse"].idxmin()]
    return [
        ("h2", "Held-out accuracy"),
        ("p", f"Root mean squared error (RMSE) and mean absolute error (MAE) in stars on "
              f"the {metrics['split']['n_test']:,} test ratings; coverage is the share of "
              f"test ratings inside the central 50% / 90% predictive interval (nominal 0.50 / "
              f"0.90; baselines without a predictive distribution have none). log_score "
              f"(mean log probability the predictive gives the observed half-star level; "
              f"higher is better) and rps (ranked probability score; lower is better) are "
              f"proper scores of the whole predictive on the rating grid: for a Gaussian "
              f"model, its mass on each level's bin. Best: "
              f"**{best['method']}**, RMSE {best['rmse']:.4f}."),
        ("table", table),
        ("h2", "RMSE by user activity"),
        ("table", by_activity.reset_index(drop=True)),
    ]


def _crosscheck_blocks(metrics: dict) -> list[tuple]:
    check = metrics.get("crosscheck")
    if not check:
        return []
    rows = [(key, check[key]) for key in (
        "objective_als", "objective_map", "objective_rel_diff", "pred_max_abs_diff",
        "pred_rms_diff", "grad_norm_at_als", "als_sweeps", "als_seconds",
        "model_build_compile_seconds", "map_seconds")]
    return [
        ("h2", "PyMC MAP against the NumPy ALS reference"),
        ("p", "The same PMF posterior maximised by two independent solvers: the objective "
              "and the held-out predictions (identified quantities; the factors are only "
              "identified up to rotation) must agree, and the gradient of PyMC's log "
              "posterior at the ALS point must be near zero."),
        ("table", pd.DataFrame(rows, columns=["quantity", "value"], dtype=object)),
    ]


def _model_selection_blocks(metrics: dict) -> list[tuple]:
    selection = metrics.get("model_selection")
    if not selection:
        return []
    table = pd.DataFrame(selection["table"])
    shown = pd.DataFrame({
        "model": table["model"],
        "CV RMSE": [f"{m:.4f} ± {s:.4f}" for m, s in zip(table["cv_rmse"],
                                                          table["cv_rmse_se"])],
        "CV log score": [f"{m:.4f} ± {s:.4f}" for m, s in zip(table["cv_log_score"],
                                                               table["cv_log_score_se"])],
        "sampling s": [f"{v:.1f}" for v in table["sampling_seconds"]]})
    settings = selection["settings"]
    same = selection["chosen"] == selection["run_model"]
    verdict = (f"Chosen by {selection['by']}: **{selection['chosen']}**; this report's model "
               f"is {selection['run_model']}" + (", the same." if same else
                                                  ", not the chosen one."))
    return [
        ("h2", "Model selection"),
        ("p", f"{selection['k']}-fold cross-validation on the training part only (seed "
              f"{selection['seed']}; the test part is never used): every variant sampled "
              f"on the same folds, {settings['chains']} chains x ({settings['tune']} + "
              f"{settings['draws']}) Gibbs sweeps per fold, scored on the held-out fold "
              "by RMSE of the posterior mean and by the log score (mean log probability "
              "of the held-out rating's level); mean ± standard error over folds."),
        ("table", shown),
        ("p", verdict),
    ]


def _diagnostics_blocks(metrics: dict) -> list[tuple]:
    rows = metrics.get("diagnostics")
    if not rows:
        return []
    table = pd.DataFrame(rows)[["method", "converged", "chains", "draws_per_chain",
                                "max_rhat", "min_ess_bulk", "min_ess_tail", "lpd_per_rating"]]
    reasons = [f"{r['method']}: {'; '.join(r['reasons'])}" for r in rows if r["reasons"]]
    return [
        ("h2", "Convergence diagnostics"),
        ("p", "Computed on identifiable quantities only (noise sigma, predicted ratings of "
              "held-out and of random pairs; U·Vᵀ entries too in models without biases): "
              "raw factors rotate freely between chains and have "
              "R-hat ≫ 1 even when predictions have converged. Criteria: R-hat ≤ 1.01 and "
              "bulk/tail ESS ≥ 100 per chain. lpd = held-out log predictive density per "
              "rating."),
        ("table", table),
        *[("p", text) for text in reasons],
    ]


def _environment_blocks(metrics: dict) -> list[tuple]:
    versions = pd.DataFrame(list(metrics["versions"].items()), columns=["package", "version"])
    machine = ", ".join(f"{k} {v}" for k, v in metrics["machine"].items())
    return [("h2", "Software and machine"), ("table", versions), ("p", f"Machine: {machine}.")]


def report_blocks(metrics: dict) -> list[tuple]:
    """The report as renderable blocks, every number taken from ``metrics``."""
    blocks = [
        ("h1", metrics.get("title", ReportConfig().title)),
        ("p", f"bayes_pmf {metrics['versions'].get('bayes_pmf')} on Python "
              f"{metrics['versions'].get('python')}. "
              f"Regenerate this folder with `bayes-pmf report --config config.toml --out DIR`; "
              f"`metrics.json` holds every number below at full precision."),
    ]
    blocks += _data_blocks(metrics) + _settings_blocks(metrics) + _results_blocks(metrics)
    blocks += (_crosscheck_blocks(metrics) + _model_selection_blocks(metrics)
               + _diagnostics_blocks(metrics))
    if metrics.get("figures"):
        blocks.append(("h2", "Figures"))
        for path in metrics["figures"]:
            name = Path(path).stem
            blocks.append(("figure", path, _CAPTIONS.get(name, name.replace("_", " "))))
    return blocks + _environment_blocks(metrics)

"""The PMF paper's findings, re-run on a ratings data set (default: embedded MovieLens).

Salakhutdinov & Mnih (2007) report, on Netflix: (a) unregularised matrix factorisation
overfits while PMF does not; (b) adaptive priors match or beat the best hand-tuned λ;
(c) constrained PMF helps users with few ratings most; and the BPMF paper (2008) adds
(d) Bayesian averaging beats MAP and (e) the posterior keeps improving with d where MAP
stalls. Each experiment function measures one on a seeded split; the findings are stated
from the numbers, with the verdict (reproduced or not) computed, never written in
advance, and :func:`write_paper_report` writes them as a report folder
(``bayes-pmf paper``).

Every λ hand-tuned here is scored on the test part only to show the *oracle* best (what a
grid search on the test set would find); the honest alternative, λ chosen by k-fold
cross-validation on the training part, is reported beside it.
"""

from __future__ import annotations

import json
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from .. import plots
from ..analysis.metrics import rmse, rmse_by_activity_table
from ..data.files import load_split
from ..engines.als import fit_als
from ..model.spec import DEFAULT_LAMBDA, DEFAULT_LAMBDA_BIAS, DEFAULT_SIGMA_W, PMFSpec
from .render import to_html, to_markdown
from .reproducibility import environment
from .runfolder import RunFolder, metrics_json, write_figures, write_text

LAMBDA_BIAS = DEFAULT_LAMBDA_BIAS


@dataclass(frozen=True)
class PaperConfig:
    data: str | None = None  # None: the embedded MovieLens
    seed: int = 0
    test_fraction: float = 0.1
    n_factors: int = 10
    lambda_: float = DEFAULT_LAMBDA
    lambdas: tuple[float, ...] = (1.0, 3.0, 10.0, 15.0, 30.0, 100.0)
    dims: tuple[int, ...] = (2, 5, 10, 20)
    unregularised_lambda: float = 1e-3
    sweeps: int = 30
    cv_folds: int = 3
    gibbs_chains: int = 2
    gibbs_tune: int = 100
    gibbs_draws: int = 150
    sigma_w: float = DEFAULT_SIGMA_W
    constrained_max_iter: int = 3000
    sparse_user_fraction: float = 0.5
    sparse_max_ratings: int = 10
    # how the ratings file is read (load_ratings' words): the scale (min, max, step; None:
    # the layout's or the ratings' own), rows off it, pairs rated twice
    scale: tuple[float, float, float] | None = None
    invalid: str = "error"
    duplicates: str = "error"
    progress: bool = field(default=False, compare=False)

    def as_dict(self) -> dict:
        settings = asdict(self)
        settings.pop("progress")
        return settings

    @classmethod
    def fast(cls, **settings) -> "PaperConfig":
        """Small grids and short chains: a smoke run, minutes shorter (``--fast``)."""
        return cls(**{**FAST, **settings})


FAST = dict(lambdas=(1.0, 15.0), dims=(2, 5), sweeps=6, cv_folds=2, gibbs_chains=2,
            gibbs_tune=20, gibbs_draws=20, constrained_max_iter=150)


def _spec(config: PaperConfig, n_factors: int | None = None, lam: float | None = None) -> PMFSpec:
    return PMFSpec.from_lambdas(n_factors or config.n_factors, lam or config.lambda_,
                                biases=True, lambda_user_bias=LAMBDA_BIAS,
                                lambda_item_bias=LAMBDA_BIAS)


def _test_rmse(result, test) -> float:
    users, items = test.id_pairs()
    return rmse(test.rating, result.predict(users, items, unknown="prior"))


def _gibbs(train, spec: PMFSpec, config: PaperConfig, prior: str = "wishart"):
    from ..engines.gibbs import sample_gibbs

    return sample_gibbs(train, spec.with_(prior=prior, noise="learned"),
                        draws=config.gibbs_draws, tune=config.gibbs_tune,
                        chains=config.gibbs_chains, rng=config.seed, progress=config.progress)


def overfitting_curves(split, config: PaperConfig) -> pd.DataFrame:
    """(a) Train and test RMSE after every ALS sweep, unregularised vs PMF."""
    rows = []
    for label, lam in (("unregularised MF", config.unregularised_lambda),
                       ("PMF", config.lambda_)):
        spec = PMFSpec.from_lambdas(config.n_factors, lam, biases=True,
                                    lambda_user_bias=max(lam, config.unregularised_lambda),
                                    lambda_item_bias=max(lam, config.unregularised_lambda))
        fitted = None
        for number in range(1, config.sweeps + 1):
            with warnings.catch_warnings():  # one sweep at a time, on purpose
                warnings.filterwarnings("ignore", message="ALS stopped at max_sweeps")
                fitted = fit_als(split.train, spec, max_sweeps=1, rng=config.seed,
                                 init=None if fitted is None else fitted.point_params(),
                                 progress=False)
            rows.append({"model": label, "lambda": lam, "sweep": number,
                         "train_rmse": _test_rmse(fitted, split.train),
                         "test_rmse": _test_rmse(fitted, split.test)})
    return pd.DataFrame(rows)


def adaptive_versus_tuned(split, config: PaperConfig) -> pd.DataFrame:
    """(b) Hand-tuned λ grid (test-oracle and CV-chosen) against adaptive priors, learned
    by MAP (PyMC) and sampled (Gibbs, spherical and diagonal)."""
    from ..analysis.selection import select_hyperparameters
    from ..engines.pymc_fit import fit_map

    rows = []
    for lam in config.lambdas:
        fit = fit_als(split.train, _spec(config, lam=lam), rng=config.seed, tol=1e-6,
                      max_sweeps=200, progress=False)
        rows.append({"model": f"PMF, hand-tuned λ = {lam:g}", "kind": "grid",
                     "test_rmse": _test_rmse(fit, split.test)})
    chosen = select_hyperparameters(split.train, lambdas=config.lambdas,
                                    dims=(config.n_factors,), k=config.cv_folds,
                                    lambda_bias=LAMBDA_BIAS, rng=config.seed, progress=False)
    grid = {row["model"]: row for row in rows}
    rows.append({"model": f"PMF, λ = {chosen.lambda_:g} chosen by {config.cv_folds}-fold CV "
                          "on the training part", "kind": "cv",
                 "test_rmse": grid[f"PMF, hand-tuned λ = {chosen.lambda_:g}"]["test_rmse"]})
    adaptive_map = fit_map(split.train, _spec(config).with_(prior="spherical", noise="learned"),
                           rng=config.seed, method="map-adaptive", progress=False)
    learned = adaptive_map.attrs["settings"]["learned_scales"]
    rows.append({"model": "adaptive priors, MAP (PyMC)", "kind": "adaptive-map",
                 "test_rmse": _test_rmse(adaptive_map, split.test),
                 "learned_sigma_u": learned.get("sigma_u"),
                 "learned_sigma_v": learned.get("sigma_v")})
    for prior in ("spherical", "diagonal"):
        posterior = _gibbs(split.train, _spec(config), config, prior=prior)
        rows.append({"model": f"adaptive {prior} prior, sampled (Gibbs)", "kind": "adaptive",
                     "test_rmse": _test_rmse(posterior, split.test),
                     "learned_sigma_u": float(posterior.draws["sigma_u"].mean()),
                     "learned_sigma_v": float(posterior.draws["sigma_v"].mean())})
    return pd.DataFrame(rows)


def sparsify_users(train, fraction: float, max_ratings: int, rng):
    """A training set in which a random ``fraction`` of users keep only 1..max_ratings of
    their ratings (uniformly many, chosen at random): the sparse users of the paper's
    Netflix subset, which MovieLens (every user >= 20 ratings) lacks."""
    generator = np.random.default_rng(rng)
    sparse = generator.random(train.n_users) < fraction
    keep_count = generator.integers(1, max_ratings + 1, train.n_users)
    order = np.lexsort((generator.random(train.n_ratings), train.user_idx))
    starts = np.r_[0, np.cumsum(train.user_counts)[:-1]]
    rank = np.empty(train.n_ratings, dtype=np.int64)
    rank[order] = np.arange(train.n_ratings) - np.repeat(starts, train.user_counts)
    keep = ~sparse[train.user_idx] | (rank < keep_count[train.user_idx])
    return train.take(keep)


def constrained_by_activity(split, config: PaperConfig) -> tuple[pd.DataFrame, dict]:
    """(c) Plain vs constrained PMF by user-activity bucket, on the data as it is and with
    sparse users made by :func:`sparsify_users`."""
    from ..engines.constrained import fit_constrained

    spec = _spec(config)
    tables, overall = [], {}
    sparse_train = sparsify_users(split.train, config.sparse_user_fraction,
                                  config.sparse_max_ratings, config.seed)
    users, items = split.test.id_pairs()
    for variant, train in (("as is", split.train), ("sparse users", sparse_train)):
        plain = fit_als(train, spec, rng=config.seed, tol=1e-7, max_sweeps=300,
                        progress=False)
        constrained = fit_constrained(train, spec.with_(constrained=True, sigma_w=config.sigma_w),
                                      rng=config.seed, max_iter=config.constrained_max_iter,
                                      progress=config.progress)
        predictions = {"PMF": plain.predict(users, items, unknown="prior"),
                       "constrained PMF": constrained.predict(users, items, unknown="prior")}
        table = rmse_by_activity_table(predictions, train, split.test)
        table.insert(0, "training data", variant)
        tables.append(table)
        for name, predicted in predictions.items():
            overall[(variant, name)] = rmse(split.test.rating, predicted)
    return pd.concat(tables, ignore_index=True), overall


def rmse_versus_d(split, config: PaperConfig) -> pd.DataFrame:
    """(d, e) Test RMSE of MAP (ALS) and the posterior mean (Gibbs) for each d."""
    rows = []
    for d in config.dims:
        spec = _spec(config, n_factors=d)
        als = fit_als(split.train, spec, rng=config.seed, tol=1e-6, max_sweeps=200,
                      progress=False)
        posterior = _gibbs(split.train, spec, config)
        rows.append({"d": d, "map_rmse": _test_rmse(als, split.test),
                     "posterior_rmse": _test_rmse(posterior, split.test)})
    return pd.DataFrame(rows)


# -- the report ----------------------------------------------------------------------------

# buckets of "users with few ratings" in finding (c), and the RMSE gain (stars) that
# counts as an improvement: about two standard errors of an RMSE difference on the
# ~2,000 paired held-out ratings of each bucket
FEW = ("1-5", "6-10")
MIN_GAIN = 0.005


def _verdict(holds: bool) -> str:
    return "**reproduced**" if holds else "**not reproduced**"


def finding_overfitting(curves: pd.DataFrame) -> dict:
    unreg = curves[curves["model"] == "unregularised MF"]
    pmf = curves[curves["model"] == "PMF"]
    best_unreg = float(unreg["test_rmse"].min())
    final_unreg, final_pmf = float(unreg["test_rmse"].iloc[-1]), float(pmf["test_rmse"].iloc[-1])
    rises = final_unreg > best_unreg + 1e-3
    holds = rises and final_pmf < final_unreg and float(unreg["train_rmse"].iloc[-1]) < float(
        pmf["train_rmse"].iloc[-1])
    text = (f"(a) Unregularised MF (λ = {unreg['lambda'].iloc[0]:g}) fits the training "
            f"ratings better (train RMSE {unreg['train_rmse'].iloc[-1]:.4f} vs "
            f"{pmf['train_rmse'].iloc[-1]:.4f}) but its test RMSE "
            f"{'rises from' if rises else 'stays near'} its best {best_unreg:.4f} to "
            f"{final_unreg:.4f} after {int(unreg['sweep'].max())} sweeps, while PMF ends at "
            f"{final_pmf:.4f}: {_verdict(holds)}.")
    return {"holds": bool(holds), "text": text, "best_unregularised": best_unreg,
            "final_unregularised": final_unreg, "final_pmf": final_pmf}


def finding_adaptive(table: pd.DataFrame) -> dict:
    grid = table[table["kind"] == "grid"]
    oracle = grid.loc[grid["test_rmse"].idxmin()]
    cv = table[table["kind"] == "cv"].iloc[0]
    sampled = table[table["kind"] == "adaptive"]
    best_sampled = sampled.loc[sampled["test_rmse"].idxmin()]
    point = table[table["kind"] == "adaptive-map"].iloc[0]
    holds = best_sampled["test_rmse"] <= oracle["test_rmse"] + 0.002
    collapsed = point["test_rmse"] > cv["test_rmse"] + 0.005
    text = (f"(b) The best hand-tuned λ, picked on the test set itself, gives "
            f"{oracle['test_rmse']:.4f} ({oracle['model']}); λ chosen honestly by "
            f"cross-validation gives {cv['test_rmse']:.4f}. Adaptive priors with the "
            f"hyperparameters sampled reach {best_sampled['test_rmse']:.4f} "
            f"({best_sampled['model']}) with no grid search: {_verdict(holds)} (within "
            f"0.002). Adaptive priors by MAP (the paper's method) give "
            f"{point['test_rmse']:.4f}" + (
                ": the joint maximum over factors and scales collapses the prior scales "
                "(learned σ_u = {:.3g}, σ_v = {:.3g}) onto a degenerate mode, a known "
                "failure of point estimates of hierarchical scales that this small data "
                "set does not escape.".format(point.get("learned_sigma_u", np.nan) or np.nan,
                                              point.get("learned_sigma_v", np.nan) or np.nan)
                if collapsed else "."))
    return {"holds": bool(holds), "text": text, "oracle_rmse": float(oracle["test_rmse"]),
            "cv_rmse": float(cv["test_rmse"]), "adaptive_rmse": float(best_sampled["test_rmse"]),
            "adaptive_map_rmse": float(point["test_rmse"]),
            "adaptive_map_collapsed": bool(collapsed)}


def finding_constrained(table: pd.DataFrame, overall: dict) -> dict:
    sparse = table[(table["training data"] == "sparse users") & table["bucket"].isin(FEW)]
    pivot = sparse.pivot_table(index="bucket", columns="method", values="rmse")
    counts = sparse.groupby("bucket")["n_test"].first()
    gains = (pivot["PMF"] - pivot["constrained PMF"]).to_dict()
    holds = bool(len(gains)) and all(g > MIN_GAIN for g in gains.values())
    as_is = table[table["training data"] == "as is"]
    as_is_few = int(as_is[as_is["bucket"].isin(FEW)]["n_test"].sum()) // 2
    details = "; ".join(
        f"{bucket} ratings: {pivot.loc[bucket, 'PMF']:.4f} → "
        f"{pivot.loc[bucket, 'constrained PMF']:.4f} (n = {int(counts[bucket])})"
        for bucket in pivot.index)
    text = (f"(c) MovieLens has {as_is_few} held-out ratings of users with ≤ 10 training "
            f"ratings (every user rated ≥ 20 movies), so the comparison also uses a copy of the "
            f"training part in which half the users keep only 1–10 ratings. There, test RMSE "
            f"of PMF → constrained PMF for users with {details}: {_verdict(holds)} (an "
            f"improvement must exceed {MIN_GAIN} stars" + ("" if holds else
            "; the gains are smaller, so on MovieLens knowing which movies a sparse user "
            "rated adds next to nothing to PMF with biases") + "). Over all "
            f"test ratings: {overall[('sparse users', 'PMF')]:.4f} → "
            f"{overall[('sparse users', 'constrained PMF')]:.4f} (sparse copy), "
            f"{overall[('as is', 'PMF')]:.4f} → {overall[('as is', 'constrained PMF')]:.4f} "
            f"(data as is).")
    return {"holds": holds, "text": text, "gains": gains,
            "overall": {f"{k[0]} / {k[1]}": v for k, v in overall.items()}}


def finding_bayes(table: pd.DataFrame, n_factors: int) -> dict:
    # at the run's d, or at the largest d of the grid when the grid does not hold it
    by_d = table.sort_values("d").set_index("d")
    d = n_factors if n_factors in by_d.index else int(by_d.index[-1])
    row = by_d.loc[d]
    holds = bool(row["posterior_rmse"] < row["map_rmse"])
    text = (f"(d) At d = {d}, the "
            f"posterior mean (Gibbs) scores {row['posterior_rmse']:.4f} against MAP's "
            f"{row['map_rmse']:.4f}: {_verdict(holds)}.")
    return {"holds": holds, "text": text, "map_rmse": float(row["map_rmse"]),
            "posterior_rmse": float(row["posterior_rmse"])}


def finding_dimension(table: pd.DataFrame) -> dict:
    table = table.sort_values("d")
    map_best_d = int(table.loc[table["map_rmse"].idxmin(), "d"])
    post_best_d = int(table.loc[table["posterior_rmse"].idxmin(), "d"])
    largest = table.iloc[-1]
    holds = bool(post_best_d >= map_best_d and largest["posterior_rmse"] < largest["map_rmse"])
    steps = ", ".join(f"d = {int(r.d)}: {r.map_rmse:.4f} / {r.posterior_rmse:.4f}"
                      for r in table.itertuples())
    beats = "still beats" if largest["posterior_rmse"] < largest["map_rmse"] else "does not beat"
    text = (f"(e) Test RMSE, MAP / posterior mean: {steps}. MAP is best at d = {map_best_d}, "
            f"the posterior at d = {post_best_d}; at the largest d the posterior {beats} "
            f"MAP: {_verdict(holds)} (the posterior keeps its edge as d grows).")
    return {"holds": holds, "text": text, "map_best_d": map_best_d, "posterior_best_d": post_best_d}


def run_paper(config: PaperConfig) -> tuple[dict, dict, dict]:
    """Run all five experiments: (metrics, tables, figures)."""
    split, data = load_split(config.data, test_fraction=config.test_fraction,
                             seed=config.seed, scale=config.scale, invalid=config.invalid,
                             duplicates=config.duplicates)
    curves = overfitting_curves(split, config)
    adaptive = adaptive_versus_tuned(split, config)
    by_activity, overall = constrained_by_activity(split, config)
    by_d = rmse_versus_d(split, config)
    findings = {
        "overfitting": finding_overfitting(curves),
        "adaptive_priors": finding_adaptive(adaptive),
        "constrained": finding_constrained(by_activity, overall),
        "bayes_vs_map": finding_bayes(by_d, config.n_factors),
        "dimension": finding_dimension(by_d),
    }
    tables = {"overfitting": curves, "adaptive": adaptive, "by_activity": by_activity,
              "by_d": by_d}
    sparse = by_activity[by_activity["training data"] == "sparse users"]
    figures = {
        "overfitting": plots.plot_overfitting(curves),
        "adaptive": plots.plot_model_rmse(adaptive, title="Hand-tuned λ against adaptive priors"),
        "constrained_by_activity": plots.plot_rmse_by_activity(
            sparse.drop(columns="training data"),
            title="PMF vs constrained PMF by user activity (half the users made sparse)"),
        "rmse_vs_d": plots.plot_rmse_versus_d(by_d),
    }
    metrics = {"settings": config.as_dict(), "dataset": data.describe(),
               "split": split.describe(), "findings": findings,
               "tables": {name: table.to_dict(orient="records") for name, table in tables.items()},
               **environment()}
    return metrics, tables, figures


CLAIMS = {
    "overfitting": "(a) unregularised MF overfits, PMF does not",
    "adaptive_priors": "(b) adaptive priors match the best hand-tuned λ",
    "constrained": "(c) constrained PMF helps users with few ratings",
    "bayes_vs_map": "(d) the posterior mean beats MAP",
    "dimension": "(e) the posterior keeps its edge over MAP as d grows",
}
CAPTIONS = {
    "overfitting": "(a) Train (dashed) and test (solid) RMSE per ALS sweep, d = 10.",
    "adaptive": "(b) Test RMSE of PMF over a hand-tuned λ grid, λ chosen by cross-"
                "validation, and adaptive priors (MAP and sampled).",
    "constrained_by_activity": "(c) Test RMSE by the user's number of training ratings, "
                               "training data with half the users made sparse.",
    "rmse_vs_d": "(d, e) Test RMSE of MAP (ALS) and of the posterior mean (Gibbs) over d.",
}


def _rows_left_out(ingest: dict) -> str:
    """' (of 1,003 rows read; left out: off the scale: 2, ...)', or nothing when every row
    read is a rating used."""
    rejected = ingest.get("rejected") or {}
    if not rejected:
        return ""
    reasons = ", ".join(f"{reason}: {count:,}" for reason, count in rejected.items())
    return f" (of {ingest['n_read']:,} rows read; left out: {reasons})"


def _blocks(metrics: dict, tables: dict, figure_paths: list[str]) -> list[tuple]:
    data, findings = metrics["dataset"], metrics["findings"]
    summary = pd.DataFrame([{"finding": CLAIMS.get(key, key),
                             "verdict": "reproduced" if value["holds"] else "not reproduced"}
                            for key, value in findings.items()])
    blocks = [
        ("h1", "The PMF paper's findings, reproduced on " + data["source"]),
        ("p", f"{data['n_ratings']:,} ratings{_rows_left_out(data.get('ingest', {}))}, "
              f"{data['n_users']:,} users, {data['n_items']:,} "
              f"items (SHA-256 `{data['sha256'][:16]}…`); seeded random split "
              f"{metrics['split']['n_train']:,} / {metrics['split']['n_test']:,}; every setting "
              f"is in `metrics.json`. Regenerate with `bayes-pmf paper --out DIR` "
              f"(`--data FILE` for your own MovieLens file)."),
        ("table", summary),
    ]
    for value in findings.values():
        blocks.append(("p", value["text"]))
    blocks += [("h2", "Hand-tuned λ against adaptive priors"),
               ("table", tables["adaptive"][["model", "test_rmse"]]),
               ("h2", "Test RMSE against d"), ("table", tables["by_d"]),
               ("h2", "RMSE by user activity, PMF against constrained PMF"),
               ("table", tables["by_activity"].pivot_table(
                   index=["training data", "bucket", "n_test"], columns="method",
                   values="rmse").reset_index())]
    blocks.append(("h2", "Figures"))
    for path in figure_paths:
        stem = Path(path).stem
        blocks.append(("figure", path, CAPTIONS.get(stem, stem.replace("_", " "))))
    versions = ", ".join(f"{k} {v}" for k, v in metrics["versions"].items())
    blocks.append(("p", f"Software: {versions}."))
    return blocks


def write_paper_report(config: PaperConfig | None = None,
                       out_dir: str | Path = "reports/pmf-paper", *,
                       overwrite: bool = False) -> Path:
    """Run the paper's experiments and write their report folder (whole or not at all;
    an earlier one there is replaced only with ``overwrite``); returns its path."""
    config = config or PaperConfig()
    with RunFolder(out_dir, overwrite=overwrite) as folder:
        metrics, tables, figures = run_paper(config)
        out = folder.staging
        paths = write_figures(figures, out)
        metrics["figures"] = paths
        write_text(out / "metrics.json", metrics_json(metrics))
        blocks = _blocks(metrics, tables, paths)
        write_text(out / "report.md", to_markdown(blocks))
        write_text(out / "report.html", to_html(blocks, out, blocks[0][1]))
        write_text(out / "settings.json", json.dumps(config.as_dict(), indent=2))
        return folder.commit()

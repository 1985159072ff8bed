"""Command line: a thin layer over the public API (no modelling logic here).

    bayes-pmf fit [--data PATH | --train PATH --test PATH]
                  [--method als|map|gibbs|nuts|advi|constrained]
                  [--factors D] [--seed S] [--test-fraction F] [--out DIR] [--json]
    bayes-pmf paper [--data PATH [--scale MIN MAX STEP] [--invalid drop] [--duplicates mean]]
                    [--out DIR] [--fast]   the PMF paper's findings, as a report
    bayes-pmf select [data options] [--lambdas ...] [--dims ...] [--folds K]   CV of λ, d
    bayes-pmf report [--config config.toml | fit options] [--out DIR]   Markdown + HTML report
    bayes-pmf check-map [data options] [--json]     PyMC MAP vs the NumPy ALS reference
    bayes-pmf recommend --run DIR (--user ID [--user ID ...] | --new-user CSV) [--n 10]
                        [--score mean|prob|quantile|thompson] [--json]
    bayes-pmf similar --run DIR (--item ID | --user ID) [--n 10] [--json]

Errors in the user's input end the program with exit status 2 and a one-line message
on stderr, never a traceback.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import logging
import os
import sys
import threading

from ..errors import BayesPMFError, ConfigError, Terminated
from .recommend import add_run_options, run_recommend, run_similar

# The command-line flag of each library setting, for messages that name a setting.
FLAGS = {"out": "--out", "n_factors": "--factors", "lambda": "--lambda",
         "test_fraction": "--test-fraction",
         "max_sweeps": "--max-sweeps", "methods": "--method", "draws": "--draws",
         "tune": "--tune", "chains": "--chains", "thin": "--thin", "seed": "--seed",
         "data": "--data", "train": "--train", "test": "--test", "items": "--items",
         "users": "--users", "user_features": "--user-features",
         "link": "--link",
         "round_predictions": "--round", "likelihood": "--likelihood",
         "thresholds": "--thresholds", "ordinal_link": "--ordinal-link",
         "implicit": "--implicit", "item_features": "--item-features", "k": "--folds",
         "tag_biases": "--tag-biases",
         "by": "--by", "user_info": "--user-info", "lambdas": "--lambdas", "dims": "--dims",
         "scale": "--scale", "invalid": "--invalid", "duplicates": "--duplicates",
         "n": "--n", "threshold": "--threshold", "rng": "--seed", "n_workers": "--dask-local"}


def _add_read_options(group) -> None:
    """How a ratings file is read: its scale, bad rows, pairs rated twice."""
    group.add_argument("--scale", type=float, nargs=3, metavar=("MIN", "MAX", "STEP"),
                       help="the rating scale, e.g. --scale 1 10 1 (default: MovieLens' for "
                            "its files, else the span and step of the ratings); a rating "
                            "off it is a bad row")
    group.add_argument("--invalid", choices=["error", "drop"], default=None,
                       help="a row whose rating is missing, not a number or off the scale: "
                            "error (default) stops, naming its line; drop leaves it out "
                            "and counts it (metrics.json, the report)")
    group.add_argument("--duplicates", choices=["error", "mean", "last"], default=None,
                       help="a (user, item) pair rated in two rows: error (default) stops, "
                            "naming the lines; mean or last merges them, counted like "
                            "dropped rows")


def _add_data_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("data (default: the embedded MovieLens)")
    group.add_argument("--data", metavar="PATH",
                       help="a ratings file: CSV/TSV or MovieLens u.data / ratings.dat / "
                            "ratings.csv")
    group.add_argument("--train", metavar="PATH", help="a given training file (with --test)")
    group.add_argument("--test", metavar="PATH", help="a given test file (with --train)")
    group.add_argument("--items", metavar="PATH",
                       help="an items file (CSV/TSV with a header, one row per item, e.g. "
                            "MovieLens' movies.csv): titles, and genres for --item-features")
    group.add_argument("--users", metavar="PATH",
                       help="a users file (CSV/TSV with a header, one row per user, or "
                            "MovieLens' u.user / users.dat): demographics for "
                            "--user-features")
    _add_read_options(group)
    group.add_argument("--test-fraction", type=float, default=0.1,
                       help="held-out fraction of a random split (default 0.1)")
    group.add_argument("--seed", type=int, default=0, help="seed of every random step (default 0)")


def _add_job_options(parser: argparse.ArgumentParser) -> None:
    _add_data_options(parser)
    _add_model_options(parser)
    parser.add_argument("--method", action="append",
                        choices=["als", "map", "gibbs", "nuts", "advi", "constrained"],
                        default=None,
                        help="PMF inference method(s) to run besides the baselines; repeat "
                             "for several (default: als and gibbs)")
    parser.add_argument("--draws", type=int, default=None,
                        help="posterior draws per chain for gibbs/nuts/advi (default 2000: "
                             "a converged 4-chain Gibbs posterior of the embedded MovieLens, "
                             "every 2nd kept to stay within draws_memory_gb)")
    parser.add_argument("--tune", type=int, default=None,
                        help="burn-in / tuning sweeps per chain (default 600: Gibbs chains "
                             "start overdispersed, each from its own ALS optimum jittered "
                             "at the prior's scale, and the ordinal model's need 600 to "
                             "converge; NUTS adapts with 500-1000)")
    parser.add_argument("--chains", type=int, default=None, help="chains (default 4)")
    parser.add_argument("--thin", type=int, default=None,
                        help="gibbs: keep every THIN-th sweep after burn-in, so that longer "
                             "chains fit in memory; costs effective draws per sweep, as "
                             "overrelaxed draws are anti-correlated (default 1)")
    parser.add_argument("--max-sweeps", type=int, default=None, help="ALS sweeps at most")


def _add_model_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--factors", type=int, default=None,
                        help="latent dimension d (default 10)")
    parser.add_argument("--lambda", dest="lambda_", type=float, default=None,
                        help="ridge penalty of the factors in PMF with biases (default 15)")
    parser.add_argument("--link", choices=["identity", "logistic"], default="identity",
                        help="identity (default) or the PMF paper's logistic link, ratings "
                             "mapped to [0, 1] (fitted by map, nuts, advi; default method "
                             "then: map)")
    parser.add_argument("--likelihood", choices=["gaussian", "ordinal"], default=None,
                        help="ordinal (default; gaussian with --link logistic): the ordered "
                             "probit on the rating grid with learned cut points, for gibbs, "
                             "map, nuts and advi (their names get '-ordinal'; ALS and "
                             "constrained PMF stay Gaussian); or gaussian")
    parser.add_argument("--thresholds", choices=["global", "user"], default=None,
                        help="the ordinal model's cut points: user (default), each user's "
                             "own, shrunk towards the global ones (how a user uses the "
                             "scale: half stars or not, the low end or not), or global, "
                             "one set for everyone")
    parser.add_argument("--ordinal-link", choices=["probit", "logit"], default=None,
                        dest="ordinal_link",
                        help="the ordinal model's latent distribution: probit (default, "
                             "every engine) or logit, the ordered logit (map, nuts, advi; "
                             "without --method: als and map)")
    parser.add_argument("--implicit", choices=["auto", "none", "users", "items", "both"],
                        default=None,
                        help="implicit feedback in the posterior model (gibbs, nuts, advi): "
                             "both adds to each user's factors those of the items they rated "
                             "and to each item's those of the users who rated it (SVD++-"
                             "style, normalised by 1/sqrt(count)); users or items one side; "
                             "none: plain BPMF; auto (default): both up to 4,000 users or "
                             "items (the smaller count), none above")
    parser.add_argument("--item-features", dest="item_features", default=None,
                        metavar="auto|none|COLUMN",
                        help="side information in the posterior model (gibbs, nuts, advi): "
                             "the tags of an item column ('Comedy|Drama') get factors added "
                             "to the items', and items without training ratings are "
                             "predicted from their tags; auto (default): the genres when "
                             "the data's items have them (the embedded MovieLens does); "
                             "none: no side information")
    parser.add_argument("--tag-biases", dest="tag_biases", action="store_const",
                        const=True, default=None,
                        help="the item and user features' tags also give the biases their "
                             "prior means (each tag's own shift, learned): a cold item or "
                             "user is then predicted with its tags' shift too (the "
                             "posterior model: gibbs, nuts, advi)")
    parser.add_argument("--user-features", dest="user_features", default=None,
                        metavar="auto|none|COLUMNS",
                        help="the users' side information (gibbs, nuts, advi): each value "
                             "of the users file's columns named (comma-separated, e.g. "
                             "gender,occupation) is a tag whose factors are added to the "
                             "users', and users without training ratings are predicted "
                             "from their tags; auto (default): the columns with fewer "
                             "distinct values than a fifth of the users (u.user: age, "
                             "gender, occupation), none without --users")
    parser.add_argument("--round", dest="round_predictions", action="store_true",
                        help="snap held-out predictions to the rating grid before scoring "
                             "(the paper's 'map back and round')")
    parser.add_argument("--no-progress", action="store_true", help="hide progress bars")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="bayes-pmf",
        description="Bayesian Probabilistic Matrix Factorization of explicit ratings.",
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    fit = commands.add_parser(
        "fit", help="fit baselines and PMF, score them on held-out ratings, write a run folder",
        description="Fit baselines and PMF on a seeded split and print test RMSE/MAE.",
    )
    _add_job_options(fit)
    fit.add_argument("--overwrite", action="store_true",
                     help="replace an existing output folder whole (it is kept if the run "
                          "fails)")
    fit.add_argument("--out", metavar="DIR",
                     help="run folder (default reports/runs/fit-<date>-<time>)")
    fit.add_argument("--json", action="store_true",
                     help="print metrics.json to stdout and nothing else (no progress "
                          "bars)")
    fit.add_argument("--no-figures", action="store_true", help="write no PNG figures")
    where = fit.add_mutually_exclusive_group()
    where.add_argument("--dask", metavar="tcp://HOST:PORT",
                       help="run ALS and the Gibbs sampler on an existing Dask scheduler "
                            '(pip install "bayes_pmf[dask]"); same numbers as in-process')
    where.add_argument("--dask-local", type=int, metavar="N",
                       help="start a Dask LocalCluster of N worker processes for the run")
    placement = fit.add_mutually_exclusive_group()
    placement.add_argument("--dask-chains", action="store_true",
                           help="with --dask or --dask-local: run each Gibbs chain whole as "
                                "one Dask task (by default when there are at least as many "
                                "chains as worker threads and one chain fits a thread's "
                                "share of its worker's memory)")
    placement.add_argument("--dask-row-blocks", action="store_true",
                           help="with --dask or --dask-local: run every half-step's row "
                                "blocks as Dask tasks, the chains in this process")
    fit.add_argument("--cv-select", action="store_true",
                     help="choose --lambda and --factors by 5-fold cross-validation on the "
                          "training part first (grid of 'bayes-pmf select')")

    paper = commands.add_parser(
        "paper", help="reproduce the PMF paper's findings and write a report",
        description="Overfitting without priors, adaptive priors vs hand-tuned lambda, "
                    "constrained PMF by user activity, posterior vs MAP, RMSE vs d; each "
                    "finding stated with its numbers in report.md / report.html.",
    )
    paper.add_argument("--data", metavar="PATH", help="a ratings file (default: embedded "
                                                      "MovieLens)")
    _add_read_options(paper.add_argument_group("reading --data"))
    paper.add_argument("--seed", type=int, default=0, help="seed of every random step")
    paper.add_argument("--fast", action="store_true",
                       help="small grids and short chains (a smoke run, minutes less)")
    paper.add_argument("--overwrite", action="store_true",
                     help="replace an existing output folder whole (it is kept if the run "
                          "fails)")
    paper.add_argument("--out", metavar="DIR",
                       help="report folder (default reports/runs/paper-<date>-<time>; the "
                            "committed reports/pmf-paper is only rewritten when named)")
    paper.add_argument("--no-progress", action="store_true", help="hide progress bars")

    select = commands.add_parser(
        "select", help="choose lambda and d, or the posterior model, by k-fold "
                       "cross-validation on the training part",
        description="k-fold cross-validation on the training part of the split only (the "
                    "test part is never used): of ALS over a grid of lambda and d, or with "
                    "--posterior of the posterior model (likelihood x implicit feedback x "
                    "d, sampled by the Gibbs sampler), scored by RMSE and log score.",
    )
    _add_data_options(select)
    select.add_argument("--lambdas", type=float, nargs="+", default=None,
                        help="ALS: ridge penalties to try (default 1 3 10 15 30)")
    select.add_argument("--dims", type=int, nargs="+", default=None,
                        help="latent dimensions to try (default 5 10 20; with --posterior 10)")
    select.add_argument("--folds", type=int, default=None,
                        help="k of k-fold (default 5; with --posterior 3)")
    posterior = select.add_argument_group("posterior models (--posterior)")
    posterior.add_argument("--posterior", action="store_true",
                           help="cross-validate posterior models instead of ALS's lambda")
    posterior.add_argument("--likelihoods", nargs="+", choices=["gaussian", "ordinal"],
                           default=None, help="likelihoods to try (default gaussian ordinal)")
    posterior.add_argument("--thresholds", nargs="+", dest="threshold_variants",
                           choices=["global", "user"], default=None,
                           help="the ordinal model's cut points to try (default global)")
    posterior.add_argument("--implicit", nargs="+", dest="implicit_variants",
                           choices=["auto", "none", "users", "items", "both"], default=None,
                           help="implicit feedback to try (default none both)")
    posterior.add_argument("--item-features", nargs="+", dest="item_feature_variants",
                           default=None, metavar="auto|none|COLUMN",
                           help="item features to try (default auto alone: the genres when "
                                "the data's items have them); e.g. --item-features none auto")
    posterior.add_argument("--user-features", nargs="+", dest="user_feature_variants",
                           default=None, metavar="auto|none|COLUMNS",
                           help="user features to try (default auto alone: the users file's "
                                "columns with few values, given --users); e.g. "
                                "--user-features none auto gender,occupation")
    posterior.add_argument("--tag-biases", nargs="+", dest="tag_bias_variants",
                           choices=["off", "on"], default=None,
                           help="the features' tags as bias regressors, to try (default "
                                "off alone); e.g. --tag-biases off on")
    posterior.add_argument("--draws", type=int, default=None,
                           help="draws per chain on each fold (default 400)")
    posterior.add_argument("--tune", type=int, default=None,
                           help="burn-in sweeps per chain on each fold (default 200)")
    posterior.add_argument("--chains", type=int, default=None,
                           help="chains on each fold (default 2)")
    posterior.add_argument("--by", choices=["rmse", "log_score"], default=None,
                           help="the score that chooses (default rmse; log_score: mean log "
                                "probability of the held-out rating's level)")
    select.add_argument("--no-progress", action="store_true", help="hide progress bars")
    select.add_argument("--json", action="store_true", help="print the result as JSON only")

    report = commands.add_parser(
        "report", help="write a reproducibility report (Markdown + HTML) under reports/",
        description="Run the main job, the MAP-vs-ALS cross-check and the diagnostics and "
                    "write report.md, report.html, config.toml, metrics.json, figures and "
                    "models into one folder. Settings come from the options below or from "
                    "--config (a config.toml of an earlier report), not both.",
    )
    report.add_argument("--config", metavar="TOML", help="settings file (see config.toml "
                                                         "in any report folder)")
    _add_job_options(report)
    report.add_argument("--title", help="report title")
    report.add_argument("--model-selection", action="store_true",
                        help="also cross-validate the posterior model's variants (gaussian "
                             "and ordinal, implicit none and both, at the run's d) on the "
                             "training part and show the comparison")
    report.add_argument("--no-crosscheck", action="store_true",
                        help="skip the PyMC MAP vs ALS cross-check")
    report.add_argument("--overwrite", action="store_true",
                     help="replace an existing output folder whole (it is kept if the run "
                          "fails)")
    report.add_argument("--out", metavar="DIR",
                        help="report folder (default reports/report-<date>-<time>)")

    check = commands.add_parser(
        "check-map", help="cross-check PyMC's MAP against the NumPy ALS reference",
        description="Fit ALS and PyMC MAP (from the ALS point and from a seeded jittered "
                    "point) on the same data; compare objectives, held-out predictions, "
                    "the gradient at the ALS point and wall times.",
    )
    _add_data_options(check)
    _add_model_options(check)
    check.add_argument("--no-cold", action="store_true",
                       help="skip the MAP from a jittered start (slow on large data)")
    check.add_argument("--json", action="store_true",
                       help="print the report as JSON only (no progress bars)")

    rec = commands.add_parser(
        "recommend", help="top-N unseen items for users (or a new user) from a run folder",
        description="Recommend items from a model saved by 'bayes-pmf fit': for one or "
                    "more known users, or for a new user folded in from a CSV of ratings.",
    )
    add_run_options(rec)
    who = rec.add_mutually_exclusive_group(required=True)
    who.add_argument("--user", action="append", metavar="ID",
                     help="user id as in the ratings data; repeat for several users")
    who.add_argument("--new-user", metavar="CSV",
                     help="a new user's ratings (columns item,rating), folded in without refitting")
    rec.add_argument("--user-info", metavar="COLUMN=VALUE", action="append",
                     help="with --new-user, for a model with user features: the new user's "
                          "value of one of its user columns (repeat, e.g. --user-info "
                          "gender=F --user-info occupation=writer)")
    rec.add_argument("--rated-since", metavar="CSV",
                     help="with one --user: items they rated since the fit (a CSV with an "
                          "item column; values, if any, unused), folded in as implicit "
                          "feedback without refitting and left out of the list")
    rec.add_argument("--score", choices=["mean", "prob", "quantile", "thompson"],
                     default="mean", help="ranking score (default mean)")
    rec.add_argument("--threshold", type=float, default=4.0,
                     help="rating threshold of --score prob (default 4)")
    rec.add_argument("--seed", type=int, default=0, help="seed of --score thompson")

    similar = commands.add_parser(
        "similar", help="most similar items or users by cosine of latent vectors",
        description="Items (or users) closest to one item (user) in the latent space, "
                    "the cosine averaged over posterior draws.",
    )
    add_run_options(similar)
    which = similar.add_mutually_exclusive_group(required=True)
    which.add_argument("--item", metavar="ID", help="item id")
    which.add_argument("--user", metavar="ID", help="user id")
    return parser


def _job_config(args: argparse.Namespace, **overrides):
    from ..workflows.config import FitJobConfig

    given = {"data": args.data, "train": args.train, "test": args.test, "seed": args.seed,
             "test_fraction": args.test_fraction, "items": args.items,
             "users": getattr(args, "users", None)}
    if getattr(args, "factors", None) is not None:
        given["n_factors"] = args.factors
    if getattr(args, "lambda_", None) is not None:
        given["lambda_"] = args.lambda_
    if getattr(args, "scale", None) is not None:
        given["scale"] = tuple(args.scale)
    for name in ("link", "round_predictions", "likelihood", "thresholds", "ordinal_link",
                 "implicit", "item_features", "user_features", "tag_biases", "invalid",
                 "duplicates"):
        if getattr(args, name, None) is not None:
            given[name] = getattr(args, name)
    if getattr(args, "link", None) == "logistic" and args.likelihood is None:
        given["likelihood"] = "gaussian"  # the logistic link is the Gaussian model's
    if given.get("thresholds") == "user" and given.get("likelihood") == "gaussian":
        raise ConfigError("--thresholds user (each user's own cut points) belongs to the "
                          "ordinal likelihood, and --likelihood gaussian has no cut points: "
                          "drop one of them", setting="thresholds")
    return FitJobConfig(**given, **overrides,
                        # --json: stdout holds the JSON only, and PyMC's own progress
                        # bars (MAP, NUTS) write to stdout, so progress is off
                        progress=not (args.no_progress or getattr(args, "json", False)))


def _fit_job_config(args: argparse.Namespace):
    default = (("map",) if args.link == "logistic" else ("als", "map")
               if getattr(args, "ordinal_link", None) == "logit" else ("als", "gibbs"))
    # the sampling settings' defaults live in FitJobConfig alone: only given flags pass
    given = {name: getattr(args, name) for name in ("max_sweeps", "draws", "tune", "chains",
                                                    "thin") if getattr(args, name) is not None}
    if (getattr(args, "dask_local", None) is not None or getattr(args, "dask", None)) and \
            importlib.util.find_spec("distributed") is None:
        raise ConfigError('--dask and --dask-local need the Dask extra: pip install '
                          '"bayes_pmf[dask]"', setting="dask")
    if getattr(args, "dask_local", None) is not None:
        if args.dask_local < 1:
            raise ConfigError(f"--dask-local must be a positive number of workers, got "
                              f"{args.dask_local}", setting="dask_local")
        given["dask"] = f"local:{args.dask_local}"
    elif getattr(args, "dask", None):
        if not args.dask.startswith(("tcp://", "tls://", "inproc://", "ucx://")):
            raise ConfigError(f"--dask takes a scheduler address like tcp://HOST:8786, got "
                              f"{args.dask!r}", setting="dask")
        given["dask"] = args.dask
    for flag, tasks in (("dask_chains", True), ("dask_row_blocks", False)):
        if getattr(args, flag, False):
            if "dask" not in given:
                raise ConfigError(f"--{flag.replace('_', '-')} says where the chains run "
                                  "on a Dask cluster: give --dask tcp://HOST:PORT or "
                                  "--dask-local N with it", setting=flag)
            given["dask_chains"] = tasks
    return _job_config(args, methods=tuple(args.method or default), **given)


_JOB_FLAGS = ("data", "train", "test", "items", "users", "scale", "invalid", "duplicates",
              "test_fraction", "seed", "factors",
              "lambda_", "method", "draws", "tune", "chains", "thin", "max_sweeps", "title",
              "link", "round_predictions", "likelihood", "thresholds", "ordinal_link",
              "implicit", "item_features", "user_features", "tag_biases")


def _report(args: argparse.Namespace) -> int:
    import time
    from dataclasses import replace

    from ..workflows.config import ReportConfig, read_config
    from ..workflows.report import write_report

    if args.config:
        defaults = build_parser().parse_args(["report"])
        given = [f for f in _JOB_FLAGS if getattr(args, f) != getattr(defaults, f)]
        if given:
            flags = ", ".join("--" + f.rstrip("_").replace("_", "-") for f in given)
            raise ConfigError(f"--config holds the settings; edit the file instead of "
                              f"giving {flags}")
        config = read_config(args.config)
        config = replace(config, job=replace(config.job, progress=not args.no_progress))
    else:
        config = ReportConfig(job=_fit_job_config(args),
                              title=args.title or ReportConfig().title)
    if args.no_crosscheck:
        config = replace(config, crosscheck=False)
    if args.model_selection:
        config = replace(config, model_selection=True)
    out = write_report(config, args.out or time.strftime("reports/report-%Y%m%d-%H%M%S"),
                       overwrite=args.overwrite)
    print(f"report: {out / 'report.md'} and {out / 'report.html'}")
    return 0


def _check_map(args: argparse.Namespace) -> int:
    import json

    from ..workflows.report import check_map

    if args.json and not args.no_progress:  # stdout stays JSON; say what is under way
        print("check-map: fitting ALS and PyMC's MAP (minutes on large data); the JSON "
              "report follows on stdout", file=sys.stderr, flush=True)
    report = check_map(_job_config(args), cold=not args.no_cold)
    if args.json:
        print(json.dumps(report, indent=2, default=str))
        return 0
    for key, value in report.items():
        if key != "spec":
            print(f"{key:>28s}  {value:.6g}" if isinstance(value, float) else
                  f"{key:>28s}  {value}")
    return 0


def _print_left_out(ingest: dict, part: str = "") -> None:
    """The rows --invalid drop or --duplicates mean/last left out, by reason."""
    if ingest.get("rejected"):
        print(f"rows left out{part}: {ingest['n_read'] - ingest['n_used']:,} of "
              f"{ingest['n_read']:,} ("
              + ", ".join(f"{why}: {count:,}" for why, count in ingest["rejected"].items())
              + ")")


def _paper(args: argparse.Namespace) -> int:
    import json
    import time

    from ..workflows.paper import PaperConfig, write_paper_report

    settings = dict(data=args.data, seed=args.seed, progress=not args.no_progress,
                    scale=None if args.scale is None else tuple(args.scale),
                    invalid=args.invalid or "error", duplicates=args.duplicates or "error")
    config = PaperConfig.fast(**settings) if args.fast else PaperConfig(**settings)
    out = write_paper_report(config, args.out
                             or time.strftime("reports/runs/paper-%Y%m%d-%H%M%S"),
                             overwrite=args.overwrite)
    metrics = json.loads((out / "metrics.json").read_text())
    _print_left_out(metrics["dataset"]["ingest"])
    for value in metrics["findings"].values():
        print(value["text"].replace("**", ""))
    print(f"report: {out / 'report.md'} and {out / 'report.html'}")
    return 0


ALS_SELECT = {"lambdas": [1, 3, 10, 15, 30], "dims": [5, 10, 20], "folds": 5}
# the library's defaults (bp.select_model), plus the grid the command tries
POSTERIOR_SELECT = {"likelihoods": ["gaussian", "ordinal"], "implicit": ["none", "both"],
                    "item_features": ["auto"], "user_features": ["auto"],
                    "tag_biases": ["off"],
                    "thresholds": ["global"], "dims": [10],
                    "folds": 3, "draws": 400,
                    "tune": 200, "chains": 2, "by": "rmse"}
# select's flags whose destination is not their name
_SELECT_DESTS = {"implicit": "implicit_variants", "item_features": "item_feature_variants",
                 "thresholds": "threshold_variants",
                 "user_features": "user_feature_variants",
                 "tag_biases": "tag_bias_variants"}


def _select_settings(args: argparse.Namespace) -> dict:
    """The given select flags over the defaults of the chosen mode; a flag of the other
    mode is an error (before any data is read)."""
    mode, other = (POSTERIOR_SELECT, ALS_SELECT) if args.posterior \
        else (ALS_SELECT, POSTERIOR_SELECT)
    given = {name: getattr(args, _SELECT_DESTS.get(name, name))
             for name in {**mode, **other}}
    for name in sorted(set(other) - set(mode)):
        if given[name] is not None:
            raise ConfigError(f"--{name} applies to " + (
                "ALS's grid, not with --posterior" if args.posterior
                else "posterior models: add --posterior"), setting=name)
    return {name: default if given[name] is None else given[name]
            for name, default in mode.items()}


def _select(args: argparse.Namespace) -> int:
    import json

    from ..workflows.report import select, select_posterior

    settings = _select_settings(args)
    if args.posterior:
        return _select_posterior(args, settings, select_posterior)
    selection = select(_job_config(args), settings["lambdas"], settings["dims"],
                       settings["folds"])
    if args.json:
        print(json.dumps(selection.as_dict(), indent=2))
        return 0
    print(f"{selection.k}-fold cross-validation on the training part "
          f"(seed {selection.seed}); best first:")
    print(selection.table.drop(columns="fold_rmse").to_string(
        index=False, float_format=lambda v: f"{v:.4f}"))
    print(f"chosen: --lambda {selection.lambda_:g} --factors {selection.n_factors}")
    return 0


def _select_posterior(args: argparse.Namespace, settings: dict, select_posterior) -> int:
    import json

    config = _job_config(args, draws=settings["draws"], tune=settings["tune"],
                         chains=settings["chains"])
    selection = select_posterior(config, settings["likelihoods"], settings["implicit"],
                                 settings["dims"], settings["folds"], by=settings["by"],
                                 item_features=settings["item_features"],
                                 thresholds=settings["thresholds"],
                                 user_features=settings["user_features"],
                                 tag_biases=settings["tag_biases"])
    if args.json:
        print(json.dumps(selection.as_dict(), indent=2))
        return 0
    print(f"{selection.k}-fold cross-validation of posterior models on the training part "
          f"(seed {selection.seed}; Gibbs, {config.chains} chains x ({config.tune} + "
          f"{config.draws}) sweeps per fold); best {selection.by} first:")
    table = selection.table.drop(columns=[c for c in selection.table if c.startswith("fold_")])
    print(table.to_string(index=False, float_format=lambda v: f"{v:.4f}"))
    likelihood, implicit, d, *features = selection.chosen.split(", ")
    if likelihood.endswith(" (user thresholds)"):
        likelihood = likelihood.split()[0] + " --thresholds user"
    flags = {"item features": "--item-features", "user features": "--user-features"}
    print(f"chosen: --likelihood {likelihood} --implicit {implicit.split()[1]} "
          f"--factors {d.split('=')[1]}"
          + "".join(f" {flags[' '.join(f.split()[:2])]} {f.split()[-1]}" for f in features
                    if not f.startswith("tag biases"))
          + (" --tag-biases" if "tag biases on" in features else ""))
    return 0


def _fit(args: argparse.Namespace) -> int:
    from ..workflows.report import run_fit, select

    selection = None
    if args.cv_select:
        selection = select(_job_config(args), ALS_SELECT["lambdas"], ALS_SELECT["dims"],
                           ALS_SELECT["folds"])
        args.lambda_, args.factors = selection.lambda_, selection.n_factors
    run = run_fit(_fit_job_config(args), args.out, figures=not args.no_figures,
                  selection=selection, overwrite=args.overwrite)
    if args.json:
        print(run.metrics_json)
        return 0
    metrics = run.outcome.metrics
    dataset, split = metrics["dataset"], metrics["split"]
    print(f"data: {dataset['source']}: {dataset['n_ratings']:,} ratings, "
          f"{dataset['n_users']:,} users, {dataset['n_items']:,} items")
    for part, ingest in (("", dataset["ingest"]), (" (test file)",
                                                   dataset.get("test_ingest", {}))):
        _print_left_out(ingest, part)
    print(f"split: {split['method']}, {split['n_train']:,} train / {split['n_test']:,} test "
          f"ratings; {split['cold_ratings']} test ratings have a user or item unseen in "
          f"training (scored with the cold-start fallback)")
    print(run.table.to_string(index=False, float_format=lambda v: f"{v:.4f}"))
    for row in metrics.get("diagnostics", []):
        verdict = "converged" if row["converged"] else "NOT converged"
        why = "; ".join(row["reasons"]) or "R-hat <= 1.01 and ESS >= 100/chain"
        print(f"{row['method']}: {verdict} ({why}); max R-hat {row['max_rhat']:.3f}, "
              f"min bulk ESS {row['min_ess_bulk']:.0f} on identifiable quantities; "
              f"held-out lpd/rating {row['lpd_per_rating']:.4f}")
    cluster = metrics.get("cluster")
    if cluster:
        print(f"cluster: {cluster['scheduler']}, {cluster['workers']} workers, "
              f"{cluster['threads']} threads; {cluster['bytes_sent'] / 1e6:,.1f} MB sent, "
              f"{cluster['bytes_received'] / 1e6:,.1f} MB received"
              + (", directly" if cluster.get("transfers") == "direct" else "")
              + (f", {cluster['recoveries']} lost workers recovered"
                 if cluster["recoveries"] else ""))
        if "chains" in cluster:
            chains = cluster["chains"]
            where = ("each chain one task on a worker" if chains["run_as"] == "tasks" else
                     "in this process, their half-steps' row blocks as tasks")
            flag = ("--dask-chains" if args.dask_chains else
                    "--dask-row-blocks" if args.dask_row_blocks else None)
            why = f"asked for by {flag}" if flag else chains["why"]
            print(f"Gibbs chains: {where} ({why})")
    if run.figures:
        print(f"figures: {', '.join(run.figures)}")
    if selection is not None:
        print(f"lambda {selection.lambda_:g} and d {selection.n_factors} chosen by "
              f"{selection.k}-fold cross-validation on the training part")
    print(f"run folder: {run.out_dir}")
    return 0


def command_flags(parser: argparse.ArgumentParser, args: argparse.Namespace) -> dict:
    """The part of FLAGS this command has: a message never names a flag the command
    lacks (``similar`` has no --invalid: its messages keep the library's words). With
    ``report --config`` the settings come from a TOML file, whose keys the messages keep
    (only --out is a flag there)."""
    if getattr(args, "config", None) is not None:
        return {"out": FLAGS["out"]}
    commands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    options = commands.choices[args.command]._option_string_actions
    return {name: flag for name, flag in FLAGS.items() if flag in options}


def _in_flags(message: str, names, flags: dict, bare_names: bool = False) -> str:
    """A library message with the settings ``names`` (one name or several) written as
    this command's ``flags``: a value it advises in Python's words as the flag
    (invalid='drop' -> --invalid drop, scale=(min, max, step) -> --scale MIN MAX STEP)
    and, with ``bare_names`` (a ConfigError's own message), every bare name too
    (n_factors -> --factors)."""
    import re

    for name in (names,) if isinstance(names, str) else (names or ()):
        if name not in flags:
            continue

        def flag(match: re.Match, name: str = name) -> str:
            if match[1] is not None:
                return f"{flags[name]} {match[1]}"
            return " ".join([flags[name], *(v.strip().upper() if v.strip().isalpha()
                                             else v.strip() for v in match[2].split(","))])

        message = re.sub(rf"(?<![\w-]){re.escape(name)}=(?:'([^']*)'|\(([^)]*)\))", flag,
                         message)
        if bare_names:  # not a part of a path: out/run, /tmp/out
            message = re.sub(rf"(?<![\w\-/\\.]){re.escape(name)}\b(?![/\\])", flags[name],
                             message)
    return message


@contextlib.contextmanager
def _terminate_as_interrupt():
    """SIGTERM raises :class:`Terminated` while the block runs (where it would end the
    process on the spot, leaving a staging folder, a lock and Dask workers' tracebacks),
    when the block runs in the main thread and SIGTERM has its default action."""
    import signal

    if threading.current_thread() is not threading.main_thread() or \
            signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL:
        yield
        return

    def terminate(signum, frame):
        raise Terminated("terminated (SIGTERM)")

    signal.signal(signal.SIGTERM, terminate)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)


def _quiet_dask(record: logging.LogRecord) -> bool:
    """Dask's loggers say every worker's start and stop at INFO (and set their own
    levels); here only their warnings (a lost worker) show, but for a nanny's word that
    it killed a worker still busy when the cluster stopped (a chain task after Ctrl-C):
    the command stopping it is what the user asked for."""
    if not record.name.startswith("distributed"):
        return True
    return record.levelno >= logging.WARNING and not (
        record.name == "distributed.nanny" and "still alive after" in record.getMessage())


def _warning_printer(command: str, flags: dict):
    """How this command shows a warning: the library's own (UserWarning and its kinds)
    as one line, "bayes-pmf fit: warning: ...", like its errors; others (from numpy,
    PyMC, ...) as Python shows them."""
    import warnings

    default = warnings.showwarning

    def show(message, category, filename, lineno, file=None, line=None) -> None:
        if not issubclass(category, UserWarning):
            default(message, category, filename, lineno, file, line)
            return
        text = _in_flags(str(message), getattr(message, "setting", None), flags)
        print(f"bayes-pmf {command}: warning: {text}", file=sys.stderr if file is None
              else file)

    return show


def main(argv: list[str] | None = None) -> int:
    import warnings

    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    for handler in logging.getLogger().handlers:
        handler.addFilter(_quiet_dask)
    if args.command is None:
        parser.print_help()
        return 0
    commands = {"fit": _fit, "select": _select, "paper": _paper, "report": _report,
                "check-map": _check_map, "recommend": run_recommend, "similar": run_similar}
    flags = command_flags(parser, args)
    try:
        # this command's way of showing warnings, and SIGTERM as an interrupt, for its
        # length only: a Python caller of main() gets Python's back afterwards
        with warnings.catch_warnings(), _terminate_as_interrupt():
            warnings.showwarning = _warning_printer(args.command, flags)
            return commands[args.command](args)
    except BayesPMFError as exc:
        message = _in_flags(str(exc), getattr(exc, "setting", None), flags,
                            bare_names=isinstance(exc, ConfigError))
        print(f"bayes-pmf {args.command}: error: {message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as exc:
        terminated = isinstance(exc, Terminated)
        print("terminated" if terminated else "interrupted", file=sys.stderr)
        return 143 if terminated else 130
    except BrokenPipeError:
        # the reader went away (`bayes-pmf recommend ... | head`): stop quietly, with the
        # shell's status for SIGPIPE, and keep Python from complaining at exit
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141


if __name__ == "__main__":
    sys.exit(main())

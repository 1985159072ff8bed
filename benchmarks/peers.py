"""bayes_pmf against the libraries users would reach for instead, on one identical split.

    python benchmarks/peers.py [--data PATH] [--seed 0] [--repeats 3] [--factors 10]
                               [--skip NAME ...] [--out FILE]

Every installed peer (scikit-surprise, cmfrec, myfm, cornac: `pip install ".[bench]"`)
and bayes_pmf are fitted in the same run on the same seeded 90/10 split of the embedded
MovieLens (or --data), and scored on every held-out rating with the same rule: a peer
that cannot predict a pair (cold start) falls back to the training global mean, and all
predictions are clipped to the rating scale. Every method is fitted --repeats times with
its own seeds seed, seed + 1, ... on the one split (seed --seed): the table shows the mean
RMSE and MAE, the RMSE's range over the repeats (Monte Carlo noise, for the samplers) and
the median fit time. One table is printed (and written as JSON with --out). Timings on
this machine are noisy: compare rows of one run only.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.sparse as sp

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import bayes_pmf as bp  # noqa: E402
from bayes_pmf.model.spec import (  # noqa: E402
    DEFAULT_LAMBDA,
    DEFAULT_LAMBDA_BIAS,
    DEFAULT_LAMBDA_NO_BIAS,
)
from bayes_pmf.workflows.config import FitJobConfig  # noqa: E402


def _frames(split):
    train = split.train.to_frame()
    users, items = split.test.id_pairs()
    test = pd.DataFrame({"user": users, "item": items, "rating": split.test.rating})
    return train, test


# -- bayes_pmf ---------------------------------------------------------------------------

def bayes_pmf_methods(split, d, seed):
    train = split.train

    def als(spec, name):
        def run():
            return bp.als_result(bp.fit_als(train, spec, rng=seed, max_sweeps=200, tol=1e-6,
                                            progress=False), train, method=name)
        return run

    with_bias = bp.PMFSpec.from_lambdas(d, DEFAULT_LAMBDA, biases=True,
                                        lambda_user_bias=DEFAULT_LAMBDA_BIAS,
                                        lambda_item_bias=DEFAULT_LAMBDA_BIAS)
    def gibbs(spec, **settings):
        def run():
            from bayes_pmf.engines.gibbs import sample_gibbs

            return sample_gibbs(train, spec, rng=seed, progress=False, **settings)
        return run

    # The main job's Gaussian model: zero-mean Wishart hyperpriors on the factor
    # precisions, learned noise (the RMSE table of README.md; the ordinal default is
    # compared with myFM's ordered probit in benchmarks/ordinal.py).
    default = FitJobConfig(n_factors=d, seed=seed, likelihood="gaussian", implicit="none")

    return {
        "bayes_pmf global mean": lambda: bp.fit_global_mean(train),
        "bayes_pmf bias baseline": lambda: bp.fit_bias_baseline(train),
        "bayes_pmf ALS (biases)": als(with_bias, "als"),
        "bayes_pmf ALS (no biases)": als(bp.PMFSpec.from_lambdas(d, DEFAULT_LAMBDA_NO_BIAS),
                                         "als-nobias"),
        "bayes_pmf BPMF Gibbs, Normal-Wishart (1 chain, 100+200 it)":
            gibbs(with_bias.with_(prior="normal-wishart", noise="learned"), chains=1,
                  tune=100, draws=200),
        "bayes_pmf Gibbs, Gaussian model (2 chains x 30+120 it, 2 processes)":
            gibbs(default.posterior_spec, chains=2, tune=30, draws=120, cores=2),
        "bayes_pmf Gibbs, Gaussian model, main job's chains (4 chains x 100+1000 it)":
            gibbs(default.posterior_spec, chains=default.chains,
                  tune=default.tune, draws=default.draws),
    }


def _predict_bayes_pmf(model, test):
    return model.predict(test["user"].to_numpy(), test["item"].to_numpy(), unknown="prior")


# -- peers ----------------------------------------------------------------------------------

def surprise_methods(train, d, seed, scale):
    import surprise

    reader = surprise.Reader(rating_scale=(scale.min, scale.max))
    trainset = surprise.Dataset.load_from_df(train[["user", "item", "rating"]],
                                             reader).build_full_trainset()

    def make(factory):
        def run():
            algo = factory()
            algo.fit(trainset)
            return algo
        return run

    return {
        "Surprise SVD": make(lambda: surprise.SVD(n_factors=d, random_state=seed)),
        "Surprise SVD(biased=False)": make(
            lambda: surprise.SVD(n_factors=d, biased=False, random_state=seed)),
        "Surprise BaselineOnly": make(lambda: surprise.BaselineOnly(verbose=False)),
    }


def _predict_surprise(algo, test):
    return np.array([algo.predict(u, i).est for u, i in zip(test["user"], test["item"])])


def cmfrec_methods(train, d, seed):
    import cmfrec

    frame = train.rename(columns={"user": "UserId", "item": "ItemId", "rating": "Rating"})

    def run():
        model = cmfrec.CMF(k=d, lambda_=10.0, user_bias=True, item_bias=True, method="als",
                           random_state=seed, verbose=False, nthreads=2)
        model.fit(frame[["UserId", "ItemId", "Rating"]])
        return model

    return {"cmfrec ALS (biases)": run}


def _predict_cmfrec(model, test):
    return np.asarray(model.predict(user=test["user"].to_numpy(), item=test["item"].to_numpy()),
                      dtype=float)


class _OneHot:
    """User and item one-hot columns for factorization machines; unseen ids get no column."""

    def __init__(self, train):
        self.users = pd.Index(pd.unique(train["user"]))
        self.items = pd.Index(pd.unique(train["item"]))

    def __call__(self, frame):
        u = self.users.get_indexer(frame["user"])
        i = self.items.get_indexer(frame["item"])
        rows = np.arange(len(frame))
        cols = np.r_[u, len(self.users) + i]
        keep = np.r_[u >= 0, i >= 0]
        return sp.csr_matrix((np.ones(keep.sum()), (np.r_[rows, rows][keep], cols[keep])),
                             shape=(len(frame), len(self.users) + len(self.items)))


def myfm_methods(train, d, seed, n_iter=300):
    import myfm

    encoder = _OneHot(train)

    def run():
        import contextlib
        import io

        model = myfm.MyFMRegressor(rank=d, random_seed=seed)
        with contextlib.redirect_stderr(io.StringIO()):  # its tqdm bar would flood the table
            model.fit(encoder(train), train["rating"].to_numpy(), n_iter=n_iter,
                      n_kept_samples=n_iter - 100,
                      group_shapes=[len(encoder.users), len(encoder.items)])
        model._bench_encoder = encoder
        return model

    return {f"myFM Bayesian FM (Gibbs, {n_iter} it)": run}


def _predict_myfm(model, test):
    return model.predict(model._bench_encoder(test))


def cornac_methods(train, d, seed):
    import cornac

    def run():
        data = cornac.data.Dataset.from_uir(
            list(zip(train["user"].astype(str), train["item"].astype(str), train["rating"])),
            seed=seed)
        model = cornac.models.PMF(k=d, max_iter=100, learning_rate=0.001, lambda_reg=0.001,
                                  seed=seed, verbose=False)
        model.fit(data)
        model._bench_data = data
        return model

    return {"cornac PMF": run}


def _predict_cornac(model, test):
    data, out = model._bench_data, np.full(len(test), np.nan)
    for row, (u, i) in enumerate(zip(test["user"].astype(str), test["item"].astype(str))):
        if u in data.uid_map and i in data.iid_map:
            out[row] = model.score(data.uid_map[u], data.iid_map[i])
    return out


PEERS = {
    "surprise": ("surprise", surprise_methods, _predict_surprise),
    "cmfrec": ("cmfrec", cmfrec_methods, _predict_cmfrec),
    "myfm": ("myfm", myfm_methods, _predict_myfm),
    "cornac": ("cornac", cornac_methods, _predict_cornac),
}


def _jobs(split, train, d, seed, skip):
    """(name, fit, predict) for bayes_pmf and every installed peer, seeded with ``seed``."""
    scale = split.train.scale
    jobs = [(name, fit, _predict_bayes_pmf)
            for name, fit in bayes_pmf_methods(split, d, seed).items()]
    missing = []
    for key, (module, make, predict) in PEERS.items():
        if key in skip:
            continue
        try:
            __import__(module)
        except ImportError:
            missing.append(key)
            continue
        args = (train, d, seed, scale) if key == "surprise" else (train, d, seed)
        jobs += [(name, fit, predict) for name, fit in make(*args).items()]
    return jobs, missing


def run(data, seed=0, d=10, skip=(), repeats=1):
    split = bp.random_split(data, 0.1, rng=seed)
    train, test = _frames(split)
    scale, fallback = split.train.scale, split.train.mean_rating
    rows = []
    for repeat in range(repeats):
        jobs, missing = _jobs(split, train, d, seed + repeat, skip)
        for name, fit, predict in jobs:
            start = time.perf_counter()
            model = fit()
            seconds = time.perf_counter() - start
            predicted = np.asarray(predict(model, test), dtype=float)
            n_fallback = int(np.sum(~np.isfinite(predicted)))
            predicted = scale.clip(np.where(np.isfinite(predicted), predicted, fallback))
            rows.append({"method": name, "repeat": repeat, "method_seed": seed + repeat,
                         "rmse": bp.rmse(test["rating"], predicted),
                         "mae": bp.mae(test["rating"], predicted), "fit_seconds": seconds,
                         "fallback_pairs": n_fallback})
            print(f"  done: {name}, seed {seed + repeat} ({seconds:.1f}s)", file=sys.stderr)
    runs = pd.DataFrame(rows)
    table = runs.groupby("method", sort=False).agg(
        rmse=("rmse", "mean"), rmse_min=("rmse", "min"), rmse_max=("rmse", "max"),
        mae=("mae", "mean"), fit_seconds=("fit_seconds", "median"),
        fallback_pairs=("fallback_pairs", "max")).reset_index()
    return table, runs, split, missing


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", help="ratings file (default: embedded MovieLens)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--repeats", type=int, default=3,
                        help="fits per method, with seeds seed, seed + 1, ...")
    parser.add_argument("--factors", type=int, default=10)
    parser.add_argument("--skip", nargs="*", default=[], choices=sorted(PEERS))
    parser.add_argument("--out", help="write the table and settings as JSON here")
    args = parser.parse_args(argv)
    data = bp.load_ratings(args.data) if args.data else bp.load_movielens()
    table, runs, split, missing = run(data, args.seed, args.factors, set(args.skip),
                                      args.repeats)
    print(f"data: {data.source}; split: seeded random 90/10 (seed {args.seed}), "
          f"{split.test.n_ratings} test ratings, {split.describe()['cold_ratings']} cold; "
          f"d = {args.factors}; {args.repeats} fits per method (mean RMSE/MAE, RMSE range, "
          f"median seconds)")
    if missing:
        print(f"peers not installed (pip install '.[bench]'): {', '.join(missing)}")
    print(table.to_string(index=False, float_format=lambda v: f"{v:.4f}"))
    if args.out:
        Path(args.out).write_text(json.dumps(
            {"seed": args.seed, "repeats": args.repeats, "factors": args.factors,
             "data": data.describe(),
             "versions": bp.provenance.package_versions(("scikit-surprise", "cmfrec", "myfm",
                                                         "cornac")),
             "results": table.to_dict(orient="records"),
             "runs": runs.to_dict(orient="records")}, indent=2, default=str))


if __name__ == "__main__":
    main()

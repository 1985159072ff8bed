"""Posterior sampling speed: bayes_pmf's Gibbs beside myFM's Gibbs (same data, same run),
and NUTS wall time and ESS per second on held-out predictions.

    python benchmarks/posterior_speed.py [--factors 10 32] [--sweeps 200]
                                         [--nuts-ratings 5000] [--out FILE]

Data: the training part of the seeded 90/10 split of the embedded MovieLens. Gibbs
throughput is sweeps (full passes over users, items and hyperparameters) per second of
one chain. NUTS runs on a stated random subset (--nuts-ratings) because PyMC's NUTS on
the full data takes far longer than this benchmark should; ESS is the bulk ESS of
held-out expected ratings (identifiable), summarised by its median.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import bayes_pmf as bp  # noqa: E402
from bayes_pmf.engines.gibbs import sample_gibbs  # noqa: E402
from bayes_pmf.model.spec import DEFAULT_LAMBDA, DEFAULT_LAMBDA_BIAS  # noqa: E402


def _spec(d: int) -> bp.PMFSpec:
    return bp.PMFSpec.from_lambdas(d, DEFAULT_LAMBDA, biases=True,
                                   lambda_user_bias=DEFAULT_LAMBDA_BIAS,
                                   lambda_item_bias=DEFAULT_LAMBDA_BIAS)


def gibbs_rate(train, d: int, sweeps: int) -> float:
    result = sample_gibbs(train, _spec(d).with_(prior="normal-wishart", noise="learned"),
                          draws=sweeps, tune=0, chains=1, progress=False)
    return result.attrs["settings"]["draws_per_second"]  # the ALS start is not a sweep


def myfm_rate(train, d: int, sweeps: int) -> float | None:
    try:
        import myfm
    except ImportError:
        return None
    import scipy.sparse as sp

    rows = np.arange(train.n_ratings)
    X = sp.csr_matrix((np.ones(2 * train.n_ratings),
                       (np.r_[rows, rows], np.r_[train.user_idx, train.n_users + train.item_idx])),
                      shape=(train.n_ratings, train.n_users + train.n_items))
    model = myfm.MyFMRegressor(rank=d, random_seed=0)
    start = time.perf_counter()
    with contextlib.redirect_stderr(io.StringIO()):
        model.fit(X, train.rating, n_iter=sweeps, n_kept_samples=sweeps,
                  group_shapes=[train.n_users, train.n_items])
    return sweeps / (time.perf_counter() - start)


def nuts_ess_rate(data, n_ratings: int, d: int) -> dict:
    import arviz as az

    from bayes_pmf.engines.pymc_fit import available_nuts_sampler, sample_nuts

    rng = np.random.default_rng(0)
    subset = data.take(np.sort(rng.choice(data.n_ratings, n_ratings, replace=False)))
    split = bp.random_split(subset, 0.1, rng=0)
    started = time.perf_counter()
    result = sample_nuts(split.train, _spec(d), draws=500, tune=500, chains=2, progress=False)
    seconds = time.perf_counter() - started
    users, items = split.test.id_pairs()
    draws = result.mean_draws(users, items, unknown="prior").reshape(2, 500, -1)
    ess = np.array([az.ess(draws[:, :, k]) for k in range(draws.shape[2])])
    gibbs_start = time.perf_counter()
    gibbs = sample_gibbs(split.train, _spec(d).with_(prior="normal-wishart", noise="learned"),
                         draws=500, tune=100, chains=2, progress=False)
    gibbs_seconds = time.perf_counter() - gibbs_start
    gdraws = gibbs.mean_draws(users, items, unknown="prior").reshape(2, 500, -1)
    gess = np.array([az.ess(gdraws[:, :, k]) for k in range(gdraws.shape[2])])
    return {"sampler": available_nuts_sampler(), "n_ratings": n_ratings, "d": d,
            "nuts_seconds": seconds, "nuts_median_ess": float(np.median(ess)),
            "nuts_ess_per_second": float(np.median(ess) / seconds),
            "gibbs_seconds": gibbs_seconds, "gibbs_median_ess": float(np.median(gess)),
            "gibbs_ess_per_second": float(np.median(gess) / gibbs_seconds),
            "divergences": int(result.idata.sample_stats["diverging"].sum())}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--factors", type=int, nargs="*", default=[10, 32])
    parser.add_argument("--sweeps", type=int, default=200)
    parser.add_argument("--nuts-ratings", type=int, default=5000)
    parser.add_argument("--out", default=None)
    args = parser.parse_args(argv)
    data = bp.load_movielens()
    train = bp.random_split(data, 0.1, rng=0).train
    rows = []
    for d in args.factors:
        ours, theirs = gibbs_rate(train, d, args.sweeps), myfm_rate(train, d, args.sweeps)
        rows.append({"d": d, "bayes_pmf_sweeps_per_s": ours, "myfm_sweeps_per_s": theirs,
                     "ratio": None if theirs is None else ours / theirs})
        print(f"d={d:>3}: bayes_pmf Gibbs {ours:6.1f} sweeps/s, myFM "
              f"{'n/a' if theirs is None else f'{theirs:6.1f}'} sweeps/s", flush=True)
    nuts = nuts_ess_rate(data, args.nuts_ratings, 10) if args.nuts_ratings else None
    if nuts:
        print(f"NUTS ({nuts['sampler']}) on {nuts['n_ratings']} ratings, d=10, 2x(500+500): "
              f"{nuts['nuts_seconds']:.1f}s, median ESS {nuts['nuts_median_ess']:.0f}, "
              f"{nuts['nuts_ess_per_second']:.1f} ESS/s, {nuts['divergences']} divergences; "
              f"Gibbs same data 2x(100+500): {nuts['gibbs_seconds']:.1f}s, median ESS "
              f"{nuts['gibbs_median_ess']:.0f}, {nuts['gibbs_ess_per_second']:.1f} ESS/s")
    if args.out:
        Path(args.out).write_text(json.dumps(
            {"gibbs": rows, "nuts": nuts,
             "versions": bp.provenance.package_versions(("myfm", "nutpie", "numpyro"))},
            indent=2))


if __name__ == "__main__":
    main()

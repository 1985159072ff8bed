"""Seconds per ALS sweep and per Gibbs sweep, in-process against a Dask cluster of 1 and
2 workers, on synthetic ratings from the model; bytes sent per sweep and peak memory per
worker; Spark MLlib's ALS (pyspark, local[2]) beside it when installed.

    python benchmarks/dask_scaling.py [--sizes 1000000 10000000] [--factors 10]
        [--sweeps 3] [--no-spark] [--out benchmarks/results/dask_scaling.json]

One run, one machine: every row runs on the same ratings in this process (the client)
and, for the Dask rows, in LocalCluster worker processes started here. For each size
and place:

* ALS: one warm-up sweep (it sends the rating blocks to the workers), then ``--sweeps``
  timed sweeps (median), exact ridge solves, lambda = 10, d = ``--factors``.
* Gibbs: ``sample_gibbs`` with one chain from a random start, the main job's
  hierarchical Gaussian model (no implicit feedback); seconds per sweep as the sampler
  counts them (its ``draws_per_second``: the chain's sweeps, not the start or the
  result's assembly), over 2 x ``--sweeps`` sweeps.
* Bytes sent per sweep: what the executor sent to the workers during the timed ALS
  sweeps, divided by their number (the executor's own count of the arrays it hands
  to Dask: the factors, noise, offsets and, once, the rating blocks); received: the
  rows coming back.
* Loopback bytes per sweep: the operating system's count of the bytes that crossed the
  loopback interface (every message between the client, the scheduler and the workers,
  which all run on this machine: task specifications, data, heartbeats) during the same
  timed sweeps; a check of the executor's own count that does not rely on it.
* Worker memory: the largest worker's resident memory after the fits, from Dask's own
  monitor (a forked worker's ru_maxrss would count its parent's pages).

Spark: ``pyspark.ml.recommendation.ALS`` with ``local[2]``, the same ratings, rank and
iteration count, at each lambda of a small grid (Spark scales lambda by each row's
number of ratings: ALS-WR), its best test RMSE beside bayes_pmf's ALS at its best lambda
of the same grid, both on the same 90/10 split.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

LAMBDA = 10.0
LAMBDA_GRID = (1.0, 3.0, 10.0)
SPARK_LAMBDA_GRID = (0.001, 0.003, 0.01, 0.03)


def make_data(n_ratings: int, seed: int = 0):
    import bayes_pmf as bp

    n_users, n_items = max(1000, n_ratings // 150), max(500, n_ratings // 1000)
    spec = bp.PMFSpec(n_factors=10, sigma=0.8, sigma_u=0.5, sigma_v=0.5, biases=True)
    return bp.make_synthetic(n_users, n_items, n_ratings, spec, rng=seed).data


def _loopback_bytes() -> int:
    """Bytes sent over the loopback interface so far, as the operating system counts them
    (0 where there is no such interface)."""
    import psutil  # a dependency of distributed

    counters = psutil.net_io_counters(pernic=True)
    return int(counters["lo"].bytes_sent) if "lo" in counters else 0


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _als_sweeps(data, d: int, sweeps: int, executor) -> tuple[float, float, float, float]:
    """Median seconds per timed sweep, bytes sent and received per timed sweep (the
    executor's count), loopback bytes per timed sweep (the operating system's)."""
    import bayes_pmf as bp
    from bayes_pmf.engines.ridge import initial_params, sweep

    spec = bp.PMFSpec.from_lambdas(d, LAMBDA, biases=True)
    params = initial_params(data, spec, rng=0)
    params = sweep(data, params, spec, executor=executor)  # warm-up: blocks placed
    sent0 = getattr(executor, "bytes_sent", 0)
    received0 = getattr(executor, "bytes_received", 0)
    loopback = _loopback_bytes()
    times = []
    for _ in range(sweeps):
        start = time.perf_counter()
        params = sweep(data, params, spec, executor=executor)
        times.append(time.perf_counter() - start)
    return (float(np.median(times)),
            (getattr(executor, "bytes_sent", 0) - sent0) / sweeps,
            (getattr(executor, "bytes_received", 0) - received0) / sweeps,
            (_loopback_bytes() - loopback) / sweeps)


def _gibbs_seconds_per_sweep(data, d: int, sweeps: int, executor
                             ) -> tuple[float, float, float]:
    """Seconds per sweep as the sampler counts them (its sweeps alone: no start, no
    result assembly), over 2 x ``sweeps`` sweeps of one chain; bytes sent per sweep (the
    executor's count) and loopback bytes per sweep (start and assembly included)."""
    import bayes_pmf as bp
    from bayes_pmf.engines.gibbs import sample_gibbs

    spec = bp.PMFSpec.hierarchical().with_(n_factors=d, likelihood="gaussian")
    sent, loopback = getattr(executor, "bytes_sent", 0), _loopback_bytes()
    result = sample_gibbs(data, spec, draws=2 * sweeps, tune=1, chains=1, init="random",
                          rng=0, progress=False, executor=executor)
    total = 2 * sweeps + 1
    return (1.0 / result.settings["draws_per_second"],
            (getattr(executor, "bytes_sent", 0) - sent) / total,
            (_loopback_bytes() - loopback) / total)


def _worker_memory_mb(executor) -> float:
    """The largest worker's resident memory now, as Dask's own monitor reports it."""
    workers = executor.client.scheduler_info(n_workers=-1)["workers"].values()
    return float(max(w["metrics"]["memory"] for w in workers)) / 2**20


def measure_place(data, d: int, sweeps: int, place: str) -> dict:
    from bayes_pmf.engines.parallel import LocalExecutor

    if place == "in-process":
        executor, closer = LocalExecutor(), None
    else:
        from bayes_pmf.engines.dask_executor import DaskExecutor

        workers = int(place.split("-")[1])
        executor = closer = DaskExecutor.local(workers, threads_per_worker=2 // workers)
    try:
        als, sent, received, als_loopback = _als_sweeps(data, d, sweeps, executor)
        gibbs, gibbs_sent, gibbs_loopback = _gibbs_seconds_per_sweep(data, d, sweeps,
                                                                     executor)
        row = {"place": place, "als_seconds_per_sweep": als,
               "gibbs_seconds_per_sweep": gibbs, "bytes_sent_per_gibbs_sweep": gibbs_sent,
               "bytes_sent_per_als_sweep": sent, "bytes_received_per_als_sweep": received,
               "loopback_bytes_per_als_sweep": als_loopback,
               "loopback_bytes_per_gibbs_sweep": gibbs_loopback,
               "client_peak_mb": _peak_mb()}
        if closer is not None:
            row["worker_memory_mb"] = _worker_memory_mb(executor)
        return row
    finally:
        if closer is not None:
            closer.close()


def _test_rmse(predict, test) -> float:
    return float(np.sqrt(np.mean((predict - test.rating) ** 2)))


def spark_beside(data, d: int, iterations: int, seed: int = 0) -> list[dict]:
    """Spark's ALS and bayes_pmf's ALS on the same 90/10 split: seconds per iteration and
    test RMSE at each library's best lambda of its grid."""
    import bayes_pmf as bp
    from bayes_pmf.engines.als import fit_als

    split = bp.random_split(data, 0.1, rng=seed)
    train, test = split.train, split.test
    users, items = test.user_ids[test.user_idx], test.item_ids[test.item_idx]
    rows = []

    def ours(label: str, biases: bool, executor=None, grid=LAMBDA_GRID) -> dict:
        best = None
        for lam in grid:
            start = time.perf_counter()
            fit = fit_als(train, bp.PMFSpec.from_lambdas(d, lam, biases=biases),
                          max_sweeps=iterations, tol=0.0, rng=seed, progress=False,
                          executor=executor)
            seconds = time.perf_counter() - start
            rmse = _test_rmse(fit.predict(users, items, unknown="prior"), test)
            if best is None or rmse < best["test_rmse"]:
                best = {"library": label, "lambda": lam,
                        "seconds_per_iteration": seconds / iterations, "test_rmse": rmse}
        rows.append(best)
        return best

    ours("bayes_pmf ALS (exact, biases)", True)
    plain = ours("bayes_pmf ALS (exact, no biases: Spark's model)", False)
    from bayes_pmf.engines.dask_executor import DaskExecutor

    with DaskExecutor.local(2, threads_per_worker=1) as executor:
        ours("bayes_pmf ALS on Dask, 2 workers (no biases)", False, executor,
             grid=(plain["lambda"],))
    try:
        from pyspark.ml.recommendation import ALS
        from pyspark.sql import SparkSession
    except ImportError:
        return rows
    spark = (SparkSession.builder.master("local[2]").appName("bayes_pmf-bench")
             .config("spark.driver.memory", "8g").config("spark.ui.enabled", "false")
             .config("spark.ui.showConsoleProgress", "false")
             .getOrCreate())
    spark.sparkContext.setLogLevel("ERROR")
    try:
        def frame(part):
            import pandas as pd

            return spark.createDataFrame(pd.DataFrame({
                "user": np.asarray(part.user_ids[part.user_idx], dtype=np.int32),
                "item": np.asarray(part.item_ids[part.item_idx], dtype=np.int32),
                "rating": part.rating.astype(float)}))

        train_frame = frame(train).cache()
        train_frame.count()
        test_frame = frame(test).cache()
        test_frame.count()
        best = None
        for lam in SPARK_LAMBDA_GRID:
            als = ALS(rank=d, maxIter=iterations, regParam=lam, userCol="user", itemCol="item",
                      ratingCol="rating", coldStartStrategy="drop", seed=seed)
            start = time.perf_counter()
            model = als.fit(train_frame)
            model.userFactors.count()  # the fit is lazy until the factors are used
            seconds = time.perf_counter() - start
            predicted = model.transform(test_frame).toPandas()
            rmse = float(np.sqrt(np.mean((predicted["prediction"] - predicted["rating"]) ** 2)))
            if best is None or rmse < best["test_rmse"]:
                best = {"library": "Spark MLlib ALS (ALS-WR, local[2])", "lambda": lam,
                        "seconds_per_iteration": seconds / iterations, "test_rmse": rmse,
                        "test_ratings_scored": int(len(predicted))}
        rows.append(best)
    finally:
        spark.stop()
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1_000_000, 10_000_000])
    parser.add_argument("--factors", type=int, default=10)
    parser.add_argument("--sweeps", type=int, default=3)
    parser.add_argument("--places", nargs="+", default=["in-process", "dask-1", "dask-2"])
    parser.add_argument("--no-spark", action="store_true")
    parser.add_argument("--spark-size", type=int, default=None,
                        help="ratings for the Spark comparison (default: the largest size)")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" /
                                             "dask_scaling.json"))
    args = parser.parse_args()
    rows, spark_rows = [], []
    for n in args.sizes:
        began = time.perf_counter()
        data = make_data(n)
        data.by_user, data.by_item  # built once, outside the timings
        print(f"{n:,} ratings ({data.n_users:,} users, {data.n_items:,} items) made in "
              f"{time.perf_counter() - began:.0f} s", flush=True)
        for place in args.places:
            row = {"n_ratings": n, "n_factors": args.factors,
                   **measure_place(data, args.factors, args.sweeps, place)}
            rows.append(row)
            print(json.dumps(row), flush=True)
        if not args.no_spark and n == (args.spark_size or max(args.sizes)):
            spark_rows = [{"n_ratings": n, "n_factors": args.factors, **r}
                          for r in spark_beside(data, args.factors, 10)]
            for r in spark_rows:
                print(json.dumps(r), flush=True)
    result = {"machine": {"cpus": os.cpu_count()}, "rows": rows, "spark": spark_rows}
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print()
    print(f"{'ratings':>11} {'place':>11} {'ALS s/sweep':>12} {'Gibbs s/sweep':>14} "
          f"{'MB sent/sweep':>14} {'MB loopback':>12} {'worker MB':>10}")
    for r in rows:
        print(f"{r['n_ratings']:>11,} {r['place']:>11} {r['als_seconds_per_sweep']:>12.3f} "
              f"{r['gibbs_seconds_per_sweep']:>14.3f} "
              f"{r['bytes_sent_per_als_sweep'] / 1e6:>14.1f} "
              f"{r['loopback_bytes_per_als_sweep'] / 1e6:>12.1f} "
              f"{r.get('worker_memory_mb', float('nan')):>10.0f}")
    for r in spark_rows:
        print(f"{r['library']}: lambda {r['lambda']}, {r['seconds_per_iteration']:.2f} "
              f"s/iteration, test RMSE {r['test_rmse']:.4f}")


if __name__ == "__main__":
    main()

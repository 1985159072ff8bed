"""The ALS iteration's passes over every rating outside the half-steps (the objective E
after each sweep and the global mean's sum of b_i + c_j + U_i.V_j), done by the client
as before 2026-12-05 (U and V gathered, or multiplied by the rating pattern, for every
rating) against summed in the user row blocks where the blocks are (threads in-process,
the workers on Dask), on the same ratings in one run.

    python benchmarks/dask_client_passes.py [--ratings 10000000] [--repeats 3]
        [--out benchmarks/results/dask_client_passes.json]

For each place (in-process; a Dask LocalCluster of 1 worker x 2 threads; of 2 workers x
1 thread) and each way (client, blocks, alternated twice so that the machine's spells
fall on both): seconds per objective and per mean's sum (median of ``--repeats``), and
seconds per ALS iteration as ``minimise`` runs it (4 sweeps, their objectives and the
start's, divided by 4); on Dask, the MB one sweep (with its mean's sum) sends to the
workers and gets back, as the executor counts them. The last objective of every row is
printed: the ways agree.
Synthetic ratings as in ``dask_scaling.py`` (d = 10, biases, lambda = 10).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import scipy.sparse as sp

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from dask_scaling import LAMBDA, make_data  # noqa: E402


def client_objective(data, params, spec, block_rows=None, executor=None) -> float:
    """E as the client computed it: every rating's residual from gathered U and V."""
    from bayes_pmf.model.params import objective

    return objective(data, params, spec)


def client_sum(data, params, block_rows=None, executor=None) -> float:
    """The global mean's sum as the client computed it: the rating pattern times V."""
    by_user = data.by_user
    pattern = sp.csr_matrix((np.ones(by_user.nnz), by_user.indices, by_user.indptr),
                            shape=by_user.shape)
    item_sums = pattern @ params.item_factors
    return float(np.einsum("ij,ij->", params.user_factors, item_sums)
                 + data.user_counts @ params.user_bias + data.item_counts @ params.item_bias)


def measure(data, spec, place: str, executor, repeats: int) -> list[dict]:
    from bayes_pmf.engines import ridge

    ways = {"client": (client_objective, client_sum),
            "blocks": (ridge.blockwise_objective, ridge.observed_sum_without_mu)}
    blocks = ways["blocks"]
    params = ridge.initial_params(data, spec, rng=0)
    params = ridge.sweep(data, params, spec, executor=executor)  # blocks placed
    rows = []
    for way in ("client", "blocks", "client", "blocks"):
        objective, total = ways[way]
        ridge.blockwise_objective, ridge.observed_sum_without_mu = objective, total
        try:
            objective_s, sum_s = [], []
            for _ in range(repeats):
                start = time.perf_counter()
                objective(data, params, spec, 4096, executor)
                objective_s.append(time.perf_counter() - start)
                start = time.perf_counter()
                total(data, params, 4096, executor)
                sum_s.append(time.perf_counter() - start)
            sent, received = (getattr(executor, name, 0)
                              for name in ("bytes_sent", "bytes_received"))
            ridge.sweep(data, params, spec, executor=executor)
            sent = getattr(executor, "bytes_sent", 0) - sent
            received = getattr(executor, "bytes_received", 0) - received
            fit = ridge.minimise(data, spec, max_sweeps=4, tol=0.0, rng=0,
                                 executor=executor, progress=False)
        finally:
            ridge.blockwise_objective, ridge.observed_sum_without_mu = blocks
        rows.append({"place": place, "way": way,
                     "objective_s": float(np.median(objective_s)),
                     "mean_sum_s": float(np.median(sum_s)),
                     "als_iteration_s": fit.seconds / 4,
                     "sweep_mb_sent": sent / 1e6, "sweep_mb_received": received / 1e6,
                     "last_objective": fit.objective_trace[-1]})
        print(json.dumps(rows[-1]), flush=True)
    return rows


def main() -> None:
    import bayes_pmf as bp
    from bayes_pmf.engines.dask_executor import DaskExecutor

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ratings", type=int, default=10_000_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" /
                                             "dask_client_passes.json"))
    args = parser.parse_args()
    began = time.perf_counter()
    data = make_data(args.ratings)
    data.by_user, data.by_item  # built once, outside the timings
    print(f"{args.ratings:,} ratings made in {time.perf_counter() - began:.0f} s", flush=True)
    spec = bp.PMFSpec.from_lambdas(10, LAMBDA, biases=True)
    rows = measure(data, spec, "in-process", None, args.repeats)
    for label, workers, threads in (("Dask, 1 worker x 2 threads", 1, 2),
                                    ("Dask, 2 workers x 1 thread", 2, 1)):
        with DaskExecutor.local(workers, threads_per_worker=threads,
                                chain_tasks=False) as executor:
            rows += measure(data, spec, label, executor, args.repeats)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({"machine": {"cpus": os.cpu_count()},
                                          "n_ratings": args.ratings, "rows": rows},
                                         indent=1))
    print("| place | passes | s per objective | s per mean's sum | s per ALS iteration |")
    print("|---|---|---|---|---|")
    for place in dict.fromkeys(r["place"] for r in rows):
        for way in ("client", "blocks"):
            mine = [r for r in rows if r["place"] == place and r["way"] == way]
            cells = [" / ".join(f"{r[key]:.3f}" for r in mine)
                     for key in ("objective_s", "mean_sum_s", "als_iteration_s")]
            print(f"| {place} | {way} | {' | '.join(cells)} |")


if __name__ == "__main__":
    main()

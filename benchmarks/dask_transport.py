"""How a half-step's shared inputs reach the Dask workers: inside each worker's task
(the task graph) or scattered ahead of the tasks (to one worker, copied on between
workers), at a size where the other side's factors pass Dask's 10 MB large-graph warning.

    python benchmarks/dask_transport.py [--ratings 20000000] [--rounds 3]
        [--out benchmarks/results/dask_transport.json]

One run, one machine, one LocalCluster of 2 workers x 1 thread: ALS (d = 10, biases,
exact solves) on synthetic ratings from the model (n_users = N/150, n_items = N/1000),
after a warm-up fit that places the rating blocks. Then ``--rounds`` rounds, each timing
a 3-sweep fit once per way in alternating order (``SCATTER_ABOVE`` set to infinity:
every input in the tasks; to 0: every input scattered ahead; the default 8 MB, through
the scheduler and with the executor's direct transfers, ``DaskExecutor(client,
direct=True)``: the blocks, the inputs scattered ahead and the results above 8 MB
straight between client and workers). Reported per way: the
median seconds per sweep, the bytes that crossed the loopback interface per sweep, the
large-graph warnings Dask gave, and whether the predictions equal the in-task way's.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import warnings
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

SWEEPS = 3


def loopback_bytes() -> int:
    with open("/proc/net/dev", encoding="ascii") as handle:
        for line in handle:
            name, _, rest = line.partition(":")
            if name.strip() == "lo":
                return int(rest.split()[0])
    return 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ratings", type=int, default=20_000_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" /
                                             "dask_transport.json"))
    args = parser.parse_args()
    import bayes_pmf as bp
    from bayes_pmf.engines import dask_executor
    from bayes_pmf.engines.als import fit_als

    n = args.ratings
    spec = bp.PMFSpec(n_factors=10, sigma=0.8, sigma_u=0.5, sigma_v=0.5, biases=True)
    began = time.perf_counter()
    data = bp.make_synthetic(max(1000, n // 150), max(500, n // 1000), n, spec,
                             rng=0).data
    print(f"{n:,} ratings, {data.n_users:,} users, {data.n_items:,} items, made in "
          f"{time.perf_counter() - began:.0f} s", flush=True)
    # way: (SCATTER_ABOVE, direct transfers)
    ways = {"in the tasks": (float("inf"), False), "scattered ahead": (0, False),
            "8 MB threshold": (dask_executor.SCATTER_ABOVE, False),
            "8 MB threshold, direct": (dask_executor.SCATTER_ABOVE, True)}
    rows = {way: {"seconds": [], "loopback": [], "warnings": 0} for way in ways}
    users, items = data.user_ids[data.user_idx[:100_000]], data.item_ids[
        data.item_idx[:100_000]]
    predictions = {}
    with dask_executor.DaskExecutor.local(2) as executor:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # one sweep: "not converged"
            fit_als(data, spec, rng=0, progress=False, max_sweeps=1, tol=0.0,
                    executor=executor)  # places the rating blocks
        for round_ in range(args.rounds):
            order = list(ways) if round_ % 2 == 0 else list(reversed(ways))
            for way in order:
                dask_executor.SCATTER_ABOVE, executor.direct = ways[way]
                with warnings.catch_warnings(record=True) as caught:
                    warnings.simplefilter("always")
                    before = loopback_bytes()
                    start = time.perf_counter()
                    fit = fit_als(data, spec, rng=0, progress=False, max_sweeps=SWEEPS,
                                  tol=0.0, executor=executor)
                    seconds = time.perf_counter() - start
                    sent = loopback_bytes() - before
                rows[way]["seconds"].append(seconds / SWEEPS)
                rows[way]["loopback"].append(sent / SWEEPS)
                rows[way]["warnings"] += sum("large graph" in str(w.message) for w in caught)
                predictions.setdefault(way, fit.predict(users, items))
                print(f"round {round_ + 1} {way}: {seconds / SWEEPS:.3f} s/sweep", flush=True)
    reference = predictions["in the tasks"]
    table = []
    for way, row in rows.items():
        table.append({"way": way, "s_per_sweep_median": float(np.median(row["seconds"])),
                      "s_per_sweep": row["seconds"],
                      "loopback_mb_per_sweep": float(np.median(row["loopback"])) / 1e6,
                      "large_graph_warnings": row["warnings"],
                      "same_predictions": bool(np.array_equal(predictions[way],
                                                              reference))})
    print("| way | s/sweep (median) | loopback MB/sweep | large-graph warnings | same numbers |")
    print("|---|---|---|---|---|")
    for row in table:
        print(f"| {row['way']} | {row['s_per_sweep_median']:.3f} | "
              f"{row['loopback_mb_per_sweep']:.1f} | {row['large_graph_warnings']} | "
              f"{'yes' if row['same_predictions'] else 'no'} |")
    Path(args.out).write_text(json.dumps({"ratings": n, "users": data.n_users,
                                          "items": data.n_items, "rows": table},
                                         indent=1) + "\n")


if __name__ == "__main__":
    main()

"""Rows per block: as many blocks as a multiple of the workers (2026-12-06) against the
rule before (the fewest blocks of at most ``block_rows`` rows, at least one per worker),
side by side in one run: seconds per exact ALS sweep in-process and on a Dask
LocalCluster of 2 workers x 1 thread.

    python benchmarks/block_layout.py [--ratings 10000000] [--factors 10] [--rounds 3]
        [--out benchmarks/results/block_layout.json]

dask_scaling.py's synthetic ratings from the model (n_users = N/150, n_items = N/1000),
ALS with biases and lambda = 10. Each round runs both rules, alternating: in-process,
two sweeps timed; on the cluster, the rating blocks placed again for the rule (one
untimed sweep), then two sweeps timed. The factors must be equal under both rules and in
both places, bit for bit (the layout never moves a number).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def rule_before(n_rows: int, block_rows: int, workers: int) -> int:
    """parallel.block_size before 2026-12-06."""
    return max(1, min(block_rows, -(-n_rows // workers)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ratings", type=int, default=10_000_000)
    parser.add_argument("--factors", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--out", default=str(ROOT / "benchmarks/results/block_layout.json"))
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT))
    import bayes_pmf as bp
    from bayes_pmf.engines import parallel
    from bayes_pmf.engines.dask_executor import DaskExecutor
    from bayes_pmf.engines.ridge import initial_params, sweep

    n = args.ratings
    truth = bp.PMFSpec(n_factors=10, sigma=0.8, sigma_u=0.5, sigma_v=0.5, biases=True)
    data = bp.make_synthetic(n // 150, n // 1000, n, truth, rng=0).data
    spec = bp.PMFSpec.from_lambdas(args.factors, 10.0, biases=True)
    start = initial_params(data, spec, rng=0)
    rules = {"before": rule_before, "now": parallel.block_size}
    seconds = {name: {"in-process": [], "dask": []} for name in rules}
    layouts = {name: {side: int(-(-matrix.shape[0] // rule(matrix.shape[0],
                                                            parallel.DEFAULT_BLOCK_ROWS, 2)))
                      for side, matrix in (("users", data.by_user), ("items", data.by_item))}
               for name, rule in rules.items()}
    reference = None
    with DaskExecutor.local(2, chain_tasks=False) as executor:
        for round_ in range(args.rounds):
            for name, rule in rules.items():
                parallel.block_size = rule
                clock = time.perf_counter()
                here = sweep(data, sweep(data, start, spec), spec)
                seconds[name]["in-process"].append((time.perf_counter() - clock) / 2)
                executor._placements.clear()  # the blocks placed again, in this layout
                sweep(data, start, spec, executor=executor)
                clock = time.perf_counter()
                there = sweep(data, sweep(data, start, spec, executor=executor), spec,
                              executor=executor)
                seconds[name]["dask"].append((time.perf_counter() - clock) / 2)
                reference = here if reference is None else reference
                for params in (here, there):
                    assert np.array_equal(params.user_factors, reference.user_factors)
                    assert np.array_equal(params.item_factors, reference.item_factors)
                print(json.dumps({"round": round_, "rule": name,
                                  **{k: v[-1] for k, v in seconds[name].items()}}), flush=True)
    parallel.block_size = rules["now"]
    medians = {name: {k: float(np.median(v)) for k, v in by_place.items()}
               for name, by_place in seconds.items()}
    print(f"\n{n:,} ratings, d = {args.factors}: blocks for 2 workers (users, items): "
          + ", ".join(f"{name} {layout['users']}, {layout['items']}"
                      for name, layout in layouts.items()))
    print(f"medians of {args.rounds} rounds, s per ALS sweep: "
          + "; ".join(f"{place} {medians['before'][place]:.3f} -> {medians['now'][place]:.3f}"
                      for place in ("in-process", "dask")))
    Path(args.out).write_text(json.dumps({"settings": vars(args), "blocks": layouts,
                                          "seconds": seconds, "median": medians},
                                         indent=2) + "\n")


if __name__ == "__main__":
    main()

"""The other side's design held once, not twice, where the row blocks run: the padded
rows gathered from the design as it is (the padding zeroed after the gather) against a
copy with a zero row appended (the code before 2026-12-06), side by side in one run.

    python benchmarks/design_copies.py --before REV [--users 1000000] [--items 10000]
        [--ratings 3000000] [--factors 32] [--sweeps 3] [--rounds 3]
        [--out benchmarks/results/design_copies.json]

``--before`` is the commit to compare with (checked out into a temporary git worktree);
the tree this script is in is "after". Each round runs both trees, alternating, each in
its own process on the same synthetic ratings (many users with few ratings each, so that
the user design of the item half-step is the large shared input):

* in-process (one process, 2 threads): the median seconds per exact ALS sweep and per
  Gibbs sweep (the main job's hierarchical Gaussian model, one chain; the sampler's own
  count of its sweeps), and the peak of what numpy and Python allocate during two ALS
  sweeps and during a two-sweep Gibbs fit (tracemalloc, started after a warm-up sweep:
  a byte count, not a noisy resident size);
* on a Dask LocalCluster of 2 workers x 1 thread (row blocks as tasks): each worker's
  resident memory sampled every 5 ms during two ALS sweeps after a warm-up one, its
  peak above its resident memory before them, the larger of the two workers (the
  transfers' own buffers included, which tracemalloc would not all see), and the
  seconds per sweep there (the mean of the two; the block placement by each block's
  middle rating, 2026-12-06, is in "after" too).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from _memory import ResidentPeaks  # benchmarks/_memory.py

ROOT = Path(__file__).resolve().parents[1]


def _data(args):
    import bayes_pmf as bp

    spec = bp.PMFSpec(n_factors=10, sigma=0.8, sigma_u=0.5, sigma_v=0.5, biases=True)
    return bp.make_synthetic(args.users, args.items, args.ratings, spec, rng=0).data


def _als_seconds(data, d, sweeps) -> float:
    import bayes_pmf as bp
    from bayes_pmf.engines.ridge import initial_params, sweep

    spec = bp.PMFSpec.from_lambdas(d, 10.0, biases=True)
    params = sweep(data, initial_params(data, spec, rng=0), spec)
    times = []
    for _ in range(sweeps):
        start = time.perf_counter()
        params = sweep(data, params, spec)
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def _gibbs_seconds(data, d, sweeps) -> float:
    import bayes_pmf as bp
    from bayes_pmf.engines.gibbs import sample_gibbs

    spec = bp.PMFSpec.hierarchical().with_(n_factors=d, likelihood="gaussian")
    result = sample_gibbs(data, spec, draws=sweeps, tune=1, chains=1, init="random",
                          rng=0, progress=False)
    return 1.0 / result.settings["draws_per_second"]


def _traced_peak_mb(run) -> float:
    """The peak of what ``run()`` allocated and had not freed yet (memory held from before
    is not traced at all)."""
    import tracemalloc

    tracemalloc.start()
    try:
        run()
        return tracemalloc.get_traced_memory()[1] / 2**20
    finally:
        tracemalloc.stop()


def child(args) -> dict:
    import bayes_pmf as bp
    from bayes_pmf.engines.dask_executor import DaskExecutor
    from bayes_pmf.engines.ridge import initial_params, sweep

    row = {"package": str(Path(bp.__file__).parent)}
    data = _data(args)
    d, sweeps = args.factors, args.sweeps
    row["als_seconds_per_sweep"] = _als_seconds(data, d, sweeps)
    row["gibbs_seconds_per_sweep"] = _gibbs_seconds(data, d, sweeps)
    spec = bp.PMFSpec.from_lambdas(d, 10.0, biases=True)
    state = {"params": sweep(data, initial_params(data, spec, rng=0), spec)}

    def two_sweeps(executor=None) -> None:
        for _ in range(2):
            state["params"] = sweep(data, state["params"], spec, executor=executor)

    row["in_process_als_peak_mb"] = _traced_peak_mb(two_sweeps)
    row["in_process_gibbs_peak_mb"] = _traced_peak_mb(lambda: _gibbs_seconds(data, d, 2))
    with DaskExecutor.local(2, chain_tasks=False) as executor:
        pids = list(executor.client.run(os.getpid).values())
        state["params"] = sweep(data, state["params"], spec, executor=executor)  # placed
        start = time.perf_counter()
        with ResidentPeaks(pids, interval=0.005) as peaks:
            two_sweeps(executor)
        row["worker_als_resident_peak_mb"] = max(peaks.rise_mb)
        row["dask_als_seconds_per_sweep"] = (time.perf_counter() - start) / 2
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", required=False)
    parser.add_argument("--users", type=int, default=1_000_000)
    parser.add_argument("--items", type=int, default=10_000)
    parser.add_argument("--ratings", type=int, default=3_000_000)
    parser.add_argument("--factors", type=int, default=32)
    parser.add_argument("--sweeps", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--out", default=str(ROOT / "benchmarks/results/design_copies.json"))
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args)))
        return
    if not args.before:
        parser.error("--before REV is required")
    settings = ["--users", str(args.users), "--items", str(args.items), "--ratings",
                str(args.ratings), "--factors", str(args.factors), "--sweeps",
                str(args.sweeps)]
    with tempfile.TemporaryDirectory(prefix="bayes-pmf-before-") as before:
        subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", before,
                        args.before], check=True, capture_output=True)
        try:
            trees = {"before": Path(before), "after": ROOT}
            rows = []
            for round_ in range(args.rounds):
                for name, tree in trees.items():
                    env = dict(os.environ, PYTHONPATH=str(tree))
                    out = subprocess.run(
                        [sys.executable, str(Path(__file__).resolve()), "--child",
                         *settings], env=env, cwd=tree, check=True, capture_output=True,
                        text=True)
                    row = {"tree": name, "round": round_,
                           **json.loads(out.stdout.strip().splitlines()[-1])}
                    rows.append(row)
                    print(json.dumps(row), flush=True)
        finally:
            subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force",
                            before], check=False, capture_output=True)
    keys = [k for k in rows[0] if k not in ("tree", "round", "package")]
    summary = {name: {k: float(np.median([r[k] for r in rows if r["tree"] == name]))
                      for k in keys} for name in trees}
    design_mb = args.users * (args.factors + 1) * 8 / 2**20
    print(f"\n{args.ratings:,} ratings, {args.users:,} users x {args.items:,} items, "
          f"d = {args.factors}: the user design is {design_mb:.0f} MB; medians of "
          f"{args.rounds} rounds")
    print(f"{'':<30}{'before':>12}{'after':>12}{'after/before':>14}")
    for k in keys:
        b, a = summary["before"][k], summary["after"][k]
        print(f"{k:<30}{b:>12.2f}{a:>12.2f}{a / b:>14.2f}")
    Path(args.out).write_text(json.dumps(
        {"settings": vars(args), "design_mb": design_mb, "rows": rows,
         "median": summary}, indent=2) + "\n")


if __name__ == "__main__":
    main()

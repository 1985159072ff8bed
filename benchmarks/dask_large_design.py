"""What a Dask worker holds when the other side's design is the capacity model's 2.64 GB:
the item half-step of exact ALS with 10^7 users (d = 32 and the bias column, so the user
design is 10^7 x 33 float64), and Dask's transport of an array that size on its own.

    python benchmarks/dask_large_design.py [--users 10000000] [--items 100000]
        [--ratings 20000000] [--factors 32] [--rounds 0]
        [--readings "copied on receipt,as received"]
        [--out benchmarks/results/dask_large_design.json]

One run, one machine, one LocalCluster of 2 workers x 1 thread. Each process's resident
memory is sampled every 10 ms; a figure is the peak above the process's resident memory
just before the step, in MB and as a multiple of the design's size. Before each half-step
the workers are waited for until they hold nothing the client has dropped (Dask releases
asynchronously: ``_memory.released``, whose seconds each row records), then every process,
the client first, collects its garbage and hands freed heap back (``_memory.settle``):
without it, memory a worker kept from the last half-step was reused by the next one and
hid up to a design's worth of its rise.

* **Transport alone.** The design scattered to one worker through the scheduler, then a
  task on the other worker that reads it (Dask's worker-to-worker copy), then both
  released; the same once more with ``direct=True`` (client to worker without the
  scheduler). A rise of 1.0x the design on a worker means the array arrived with no
  transient copy; 2.0x, one copy made on the way.
* **The half-step.** ``ridge.half_step`` over the items (the rating blocks are random
  ratings, ``--ratings`` of them spread over the items and users uniformly), run once
  in-process (the default thread pool) and twice on the cluster: the first call places
  the rating blocks, the second is a half-step of a running fit (the design sent, the
  blocks already there); then twice more with the executor's direct transfers
  (``DaskExecutor(client, direct=True)``, its own blocks placed by its first call). A
  LocalCluster's scheduler runs in the client's process: through it, what the client
  sends passes through the client's process twice. The solved rows must equal the
  in-process ones exactly. A worker's peak is the design plus what its blocks' kernels
  allocate (the gathered design rows of a block's ratings, the Gram matrices); the
  kernel's own share is measured separately, in-process, with tracemalloc over the
  largest single block.
* **How a worker reads what it receives** (``--rounds N``): Dask delivers a large array
  misaligned (its data 2, 4 or 6 bytes past a multiple of 8). N rounds, each running the
  half-step once per ``--readings`` on the workers, alternating, each on a fresh
  LocalCluster whose first half-step places the blocks and whose second is measured
  (seconds; each worker's resident memory between half-steps and its peak above it);
  medians. "as received": the code, row gathers that copy only the rows
  they take (``gather.take_rows``, 2026-12-06's second mend); "copied on receipt": the
  first mend, every misaligned array copied to an aligned one when the half-step's
  inputs arrive; "plain take": before both, numpy's take, which copies a misaligned
  source whole at every call (over three minutes per half-step at the default shape).
  The results must equal the in-process ones in every reading.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
from _memory import ResidentPeaks, released, settle  # benchmarks/_memory.py

ROOT = Path(__file__).resolve().parents[1]


def ratings_by_item(users: int, items: int, ratings: int, rng):
    """A CSR (items x users) of random ratings, built without a COO table: the items'
    rows in order, each rating's user drawn uniformly."""
    import scipy.sparse as sp

    counts = np.bincount(rng.integers(0, items, ratings), minlength=items)
    indptr = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    indices = rng.integers(0, users, ratings).astype(np.int32)
    data = rng.normal(3.5, 1.0, ratings)
    return sp.csr_matrix((data, indices, indptr), shape=(items, users))


def transport(executor, design, direct: bool) -> dict:
    """The design scattered to the first worker, then read by a task on the second."""
    client = executor.client
    names = sorted(client.scheduler_info(n_workers=-1)["workers"])
    pids = [os.getpid(), *client.run(os.getpid, workers=names).values()]
    with ResidentPeaks(pids) as scatter:
        start = time.perf_counter()
        # scatter returns once the worker holds it (future.result() would fetch it back)
        [future] = client.scatter([design], workers=[names[0]], hash=False, direct=direct)
        seconds = time.perf_counter() - start
    with ResidentPeaks(pids) as copy:
        start = time.perf_counter()
        total = client.submit(lambda x: float(x[::100_000].sum()), future, workers=[names[1]],
                              allow_other_workers=False, pure=False).result()
        copy_seconds = time.perf_counter() - start
    assert total == float(design[::100_000].sum())
    del future
    time.sleep(1.0)  # the release reaches the workers
    return {"direct": direct, "scatter_seconds": seconds, "copy_seconds": copy_seconds,
            "scatter_rise_mb": dict(zip(["client", "worker_0", "worker_1"], scatter.rise_mb)),
            "copy_rise_mb": dict(zip(["client", "worker_0", "worker_1"], copy.rise_mb))}


def largest_block_kernel_mb(by_item, design, penalty) -> float:
    """What one block's exact solve allocates beyond its inputs (tracemalloc), for the
    block of the most ratings (4,096 rows, the default block size)."""
    import tracemalloc

    from bayes_pmf.engines.linalg import prepare_design, solve_rows
    from bayes_pmf.engines.parallel import DEFAULT_BLOCK_ROWS, row_block

    starts = range(0, by_item.shape[0], DEFAULT_BLOCK_ROWS)
    start = max(starts, key=lambda s: by_item.indptr[min(s + DEFAULT_BLOCK_ROWS,
                                                          by_item.shape[0])]
                - by_item.indptr[s])
    block = row_block(by_item, start, min(start + DEFAULT_BLOCK_ROWS, by_item.shape[0]))
    prepared = prepare_design(design)
    tracemalloc.start()
    try:
        solve_rows(block, prepared, penalty)
        return tracemalloc.get_traced_memory()[1] / 2**20
    finally:
        tracemalloc.stop()


READINGS = ("plain take", "copied on receipt", "as received")


def _copied(value):
    """The first mend of 2026-12-06 (912f401), for comparison: every misaligned array of
    a half-step's shared inputs and recipe (the design inside its Prepared, the recipe's
    factors and biases) copied to an aligned one on receipt."""
    from dataclasses import fields, replace

    from bayes_pmf.engines.gather import aligned
    from bayes_pmf.engines.parallel import Prepared, Targets

    if isinstance(value, np.ndarray):
        return aligned(value)
    if type(value) is dict:
        return {k: _copied(v) for k, v in value.items()}
    if type(value) is tuple:
        return tuple(_copied(v) for v in value)
    if isinstance(value, Prepared):
        return Prepared(value.function, _copied(value.args))
    if isinstance(value, Targets):
        return replace(value, **{f.name: _copied(getattr(value, f.name))
                                 for f in fields(value)})
    return value


def _set_reading(reading: str) -> str:
    """On a worker: how it reads the arrays it receives. "as received" (the code: row
    gathers that copy only the rows they take, ``gather.take_rows``); "copied on
    receipt" (the first mend: :func:`_copied` in the bundle task); "plain take" (before
    both: numpy's take, which copies a misaligned source whole at every call)."""
    from bayes_pmf.engines import dask_executor, linalg, parallel

    if not hasattr(dask_executor, "_as_built"):
        dask_executor._as_built = (dask_executor._bundle, linalg.take_rows)
    bundle, take_rows = dask_executor._as_built

    def plain(source, indices, out=None, mode="raise"):
        return np.take(source, indices, axis=0, out=out, mode=mode)

    linalg.take_rows = parallel.take_rows = plain if reading == "plain take" else take_rows
    dask_executor._bundle = ((lambda inputs: bundle(_copied(inputs)))
                             if reading == "copied on receipt" else bundle)
    return reading


def measured_half_step(executor, pids, by_item, design, penalty):
    """The item half-step on ``executor``'s cluster, measured from a settled start: the
    client settles, the workers are waited for until they hold nothing it dropped
    (``released``), then they settle; returns the solved rows, the seconds, the seconds
    the release took and the processes' :class:`ResidentPeaks`."""
    from bayes_pmf.engines.ridge import half_step

    settle(0.0)
    release = released(executor.client)
    executor.client.run(settle)
    with ResidentPeaks(pids) as peaks:
        start = time.perf_counter()
        there = half_step(by_item, by_item.data, design, penalty, executor=executor)
        seconds = time.perf_counter() - start
    return there, seconds, release, peaks


def reading_round(reading: str, by_item, design, penalty, here) -> dict:
    """One item half-step of a running fit on a fresh LocalCluster (2 x 1) whose workers
    read received arrays by ``reading`` (:func:`_set_reading`): a first half-step places
    the rating blocks, then every process settles and the second is measured, so that
    each worker's figures are its peak above what it holds between half-steps, with no
    other reading's memory left in it."""
    from bayes_pmf.engines.dask_executor import DaskExecutor
    from bayes_pmf.engines.ridge import half_step

    with DaskExecutor.local(2, chain_tasks=False) as executor:
        client = executor.client
        workers = sorted(client.scheduler_info(n_workers=-1)["workers"])
        pids = list(client.run(os.getpid, workers=workers).values())
        client.run(_set_reading, reading)
        half_step(by_item, by_item.data, design, penalty, executor=executor)
        there, seconds, release, peaks = measured_half_step(executor, pids, by_item, design,
                                                            penalty)
    assert np.array_equal(there, here)
    return {"seconds": seconds, "release_seconds": release, "worker_held_mb": peaks.before_mb,
            "worker_peak_mb": peaks.peak_mb, "worker_rise_mb": peaks.rise_mb}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=10_000_000)
    parser.add_argument("--items", type=int, default=100_000)
    parser.add_argument("--ratings", type=int, default=20_000_000)
    parser.add_argument("--factors", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=0)
    parser.add_argument("--readings", default="copied on receipt,as received",
                        help=f"comma-separated, of {READINGS}")
    parser.add_argument("--out",
                        default=str(ROOT / "benchmarks/results/dask_large_design.json"))
    args = parser.parse_args()
    readings = [r.strip() for r in args.readings.split(",")]
    unknown = sorted(set(readings) - set(READINGS))
    if unknown:
        parser.error(f"--readings: {unknown} not among {READINGS}")
    sys.path.insert(0, str(ROOT))
    from bayes_pmf.engines.dask_executor import DaskExecutor
    from bayes_pmf.engines.ridge import half_step

    rng = np.random.default_rng(0)
    by_item = ratings_by_item(args.users, args.items, args.ratings, rng)
    design = rng.standard_normal((args.users, args.factors + 1))
    design[:, -1] = 1.0
    penalty = np.full(args.factors + 1, 10.0)
    design_mb = design.nbytes / 2**20
    out = {"settings": vars(args), "design_mb": design_mb,
           "rating_blocks_mb": (by_item.data.nbytes + by_item.indices.nbytes) / 2**20}
    print(f"user design {design_mb:,.0f} MB; rating blocks {out['rating_blocks_mb']:,.0f} MB",
          flush=True)

    start = time.perf_counter()
    here = half_step(by_item, by_item.data, design, penalty)
    out["in_process_seconds"] = time.perf_counter() - start
    out["largest_block_kernel_mb"] = largest_block_kernel_mb(by_item, design, penalty)
    print(f"in-process half-step {out['in_process_seconds']:.1f} s; the largest block's "
          f"kernel allocates {out['largest_block_kernel_mb']:,.0f} MB", flush=True)

    with DaskExecutor.local(2, chain_tasks=False) as executor:
        client = executor.client
        pids = [os.getpid(), *client.run(os.getpid).values()]
        out["transport"] = [transport(executor, design, direct) for direct in (False, True)]
        for row in out["transport"]:
            print(json.dumps(row), flush=True)
        out["half_steps"] = []
        # the executor of the direct transfers: its own blocks (placed by its first call)
        direct = DaskExecutor(client, chain_tasks=False, direct=True)
        for call, runner in (("first (blocks placed)", executor),
                             ("second (blocks in place)", executor),
                             ("direct transfers, blocks placed", direct),
                             ("direct transfers, blocks in place", direct)):
            sent = runner.bytes_sent
            there, seconds, release, peaks = measured_half_step(runner, pids, by_item, design,
                                                                penalty)
            row = {"call": call, "seconds": seconds, "release_seconds": release,
                   "sent_mb": (runner.bytes_sent - sent) / 2**20,
                   "rise_mb": dict(zip(["client", "worker_0", "worker_1"], peaks.rise_mb)),
                   "max_abs_difference": float(np.max(np.abs(there - here)))}
            out["half_steps"].append(row)
            print(json.dumps(row), flush=True)
        direct.close()
    if args.rounds:
        out["readings"] = {r: [] for r in readings}
    for _ in range(args.rounds):
        for reading in readings:
            row = reading_round(reading, by_item, design, penalty, here)
            out["readings"][reading].append(row)
            print(json.dumps({"reading": reading, **row}), flush=True)
    print(f"\nuser design {design_mb:,.0f} MB; peaks above each process's memory before "
          "the step, as multiples of the design:")
    for row in out["transport"]:
        for step in ("scatter", "copy"):
            rise = row[f"{step}_rise_mb"]
            print(f"  {step:<8} direct={row['direct']!s:<5} "
                  + "  ".join(f"{k} {v / design_mb:.2f}x" for k, v in rise.items()))
    for row in out["half_steps"]:
        print(f"  half-step, {row['call']}: {row['seconds']:.1f} s, "
              + "  ".join(f"{k} {v / design_mb:.2f}x" for k, v in row["rise_mb"].items())
              + f", |difference| {row['max_abs_difference']:.1e}")
    for reading, rows in out.get("readings", {}).items():
        rise = np.median([max(row["worker_rise_mb"]) for row in rows])
        held = np.median([max(row["worker_held_mb"]) for row in rows])
        print(f"  half-step, workers' arrays {reading}: "
              f"{np.median([row['seconds'] for row in rows]):.2f} s, the larger worker "
              f"{rise / design_mb:.2f}x above the {held:,.0f} MB it holds between "
              f"half-steps (medians of {args.rounds}; in-process "
              f"{out['in_process_seconds']:.2f} s)")
    Path(args.out).write_text(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    main()

"""Gibbs chains on Dask (#20): each chain whole as one task, against row blocks as tasks
and against chain processes on this machine, side by side in one run.

    python benchmarks/dask_chains.py [--chains 4] [--tune 50] [--draws 150]
                                     [--block-rows 256] [--out FILE]

The main job's posterior model on the training part of its seed-0 split of the embedded
MovieLens (ordinal likelihood with per-user thresholds, implicit feedback on both sides,
the genres), ``--chains`` chains of ``--tune`` + ``--draws`` sweeps, seed 0, in three
places:

* ``in-process``: ``sample_gibbs``'s default executor (one process per chain, up to the
  machine's cores);
* ``dask chain tasks``: ``DaskExecutor.local(2, chain_tasks=True)``, each chain one task;
* ``dask row blocks``: ``DaskExecutor.local(2, chain_tasks=False)``, every half-step's
  row blocks as tasks.

Every place cuts the rows into blocks of at most ``--block-rows`` (the layout does not
move a bit; 256 makes more, smaller tasks, 4096 each place's own default layout).
Prints the wall seconds of each ``sample_gibbs`` call (the cluster's start excluded),
the ratio to in-process, the bytes the executor sent and received, and whether the
draws equal the in-process ones bit for bit. Writes ``results/dask_chains.json``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import bayes_pmf as bp  # noqa: E402
from bayes_pmf.engines.dask_executor import DaskExecutor  # noqa: E402
from bayes_pmf.provenance import machine, package_versions  # noqa: E402
from bayes_pmf.workflows.config import FitJobConfig  # noqa: E402


def digest(result) -> str:
    out = hashlib.sha256()
    for name in sorted(result.idata.posterior.data_vars):
        out.update(np.ascontiguousarray(result.idata.posterior[name].values).tobytes())
    return out.hexdigest()


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chains", type=int, default=4)
    parser.add_argument("--tune", type=int, default=50)
    parser.add_argument("--draws", type=int, default=150)
    parser.add_argument("--block-rows", type=int, default=256)
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" /
                                             "dask_chains.json"))
    args = parser.parse_args(argv)
    split = bp.random_split(bp.load_movielens(), 0.1, rng=0)
    spec = FitJobConfig().posterior_spec_for(split.train)
    settings = dict(draws=args.draws, tune=args.tune, chains=args.chains, rng=0,
                    block_rows=args.block_rows, progress=False)
    rows, reference = [], None
    for place in ("in-process", "dask chain tasks", "dask row blocks"):
        executor = (None if place == "in-process" else
                    DaskExecutor.local(2, chain_tasks=place == "dask chain tasks"))
        try:
            began = time.perf_counter()
            result = bp.sample_gibbs(split.train, spec, executor=executor, **settings)
            seconds = time.perf_counter() - began
            row = {"place": place, "seconds": seconds,
                   "bytes_sent": getattr(executor, "bytes_sent", 0),
                   "bytes_received": getattr(executor, "bytes_received", 0)}
        finally:
            if executor is not None:
                executor.close()
        reference = reference or digest(result)
        row["identical"] = digest(result) == reference
        rows.append(row)
        print(f"{place}: {seconds:.1f} s, sent {row['bytes_sent'] / 1e6:.1f} MB, received "
              f"{row['bytes_received'] / 1e6:.1f} MB, draws identical: {row['identical']}",
              flush=True)
    base = rows[0]["seconds"]
    print(f"| place ({args.chains} chains x ({args.tune} + {args.draws}) sweeps) | seconds | "
          "of in-process | MB sent | MB received | draws bit-identical |")
    print("|---|---|---|---|---|---|")
    for row in rows:
        print(f"| {row['place']} | {row['seconds']:.1f} | {row['seconds'] / base:.2f} | "
              f"{row['bytes_sent'] / 1e6:.1f} | {row['bytes_received'] / 1e6:.1f} | "
              f"{'yes' if row['identical'] else 'NO'} |")
    Path(args.out).write_text(json.dumps({"settings": vars(args), "rows": rows,
                                          "machine": machine(),
                                          "versions": package_versions()}, indent=1))


if __name__ == "__main__":
    main()

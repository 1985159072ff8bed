"""Reading a partitioned ratings data set: in this process against on the workers of a
Dask LocalCluster (``load_ratings(folder, client=...)``, what ``bayes-pmf fit --data
folder --dask-local 2`` does), the client's memory and seconds side by side.

    python benchmarks/dask_loading.py [--sizes 1000000 10000000] [--parts 8]
        [--out benchmarks/results/dask_loading.json]

For each size: synthetic ratings (MovieLens ratings.csv layout: userId, movieId, rating
in half stars, timestamp; users = ratings / 100, 20,000 items, distinct pairs) written as
``--parts`` CSV files. Each way of reading runs in a fresh Python process, so that its
peak resident memory (``ru_maxrss``) is its own:

* in-process: ``bp.load_ratings(folder)``;
* workers: ``bp.load_ratings(folder, client=...)`` with a LocalCluster of 2 worker
  processes started in that process, which import bayes_pmf, before the clock starts.

Reported per way: seconds to read, the client's peak resident memory and how much the
read added to it (peak after minus the high-water mark before), the workers' resident
memory after the read, and whether both ways gave the same data (fingerprint).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

CHILD = r"""
import json, resource, sys, time
import bayes_pmf as bp

def peak_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

folder, way = sys.argv[1], sys.argv[2]
executor = None
if way == "workers":
    from bayes_pmf.engines.dask_executor import DaskExecutor
    executor = DaskExecutor.local(2)
    # the workers import the package before the clock starts (once per worker process)
    executor.client.run(lambda: __import__("bayes_pmf.data.files"))
before = peak_mb()
start = time.perf_counter()
data = bp.load_ratings(folder, client=executor.client if executor else None)
seconds = time.perf_counter() - start
out = {"seconds": seconds, "client_peak_mb": peak_mb(), "client_before_mb": before,
       "n_ratings": data.n_ratings, "fingerprint": data.fingerprint}
if executor:
    import psutil
    rss = executor.client.run(lambda: psutil.Process().memory_info().rss / 2**20)
    out["worker_rss_mb"] = sorted(rss.values())
    executor.close()
print(json.dumps(out))
"""


def write_parts(folder: Path, n: int, parts: int, seed: int = 0) -> int:
    rng = np.random.default_rng(seed)
    n_users, n_items = max(n // 100, 10), 20_000
    pairs = np.unique(rng.integers(0, n_users * n_items, int(n * 1.02), dtype=np.int64))
    pairs = rng.permutation(pairs)[:n]
    frame = pd.DataFrame({
        "userId": pairs // n_items + 1, "movieId": pairs % n_items + 1,
        "rating": rng.integers(1, 11, len(pairs)) / 2,
        "timestamp": rng.integers(10**9, 2 * 10**9, len(pairs))})
    folder.mkdir(parents=True, exist_ok=True)
    for k in range(parts):
        frame.iloc[k::parts].to_csv(folder / f"part-{k:03d}.csv", index=False)
    return len(frame)


def run(folder: Path, way: str) -> dict:
    done = subprocess.run([sys.executable, "-c", CHILD, str(folder), way],
                          capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=float, nargs="+", default=[1e6, 1e7])
    parser.add_argument("--parts", type=int, default=8)
    parser.add_argument("--out", default="benchmarks/results/dask_loading.json")
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for size in args.sizes:
            folder = Path(tmp) / f"ratings-{int(size)}"
            n = write_parts(folder, int(size), args.parts)
            text_mb = sum(p.stat().st_size for p in folder.iterdir()) / 2**20
            results = {way: run(folder, way) for way in ("in-process", "workers")}
            same = results["in-process"]["fingerprint"] == results["workers"]["fingerprint"]
            for way, result in results.items():
                row = {"ratings": n, "files": args.parts, "csv_mb": round(text_mb, 1),
                       "way": way, "seconds": round(result["seconds"], 2),
                       "client_peak_mb": round(result["client_peak_mb"]),
                       "client_added_mb": round(result["client_peak_mb"]
                                                - result["client_before_mb"]),
                       "worker_rss_mb": [round(m) for m in result.get("worker_rss_mb", [])],
                       "same_data": same}
                rows.append(row)
                print(json.dumps(row), flush=True)
    print()
    print("| ratings | files (CSV MB) | read | seconds | client peak MB | added by the read "
          "MB | workers' RSS after, MB | same data |")
    print("|---|---|---|---|---|---|---|---|")
    for row in rows:
        print(f"| {row['ratings']:,} | {row['files']} ({row['csv_mb']}) | {row['way']} | "
              f"{row['seconds']} | {row['client_peak_mb']:,} | {row['client_added_mb']:,} | "
              f"{', '.join(str(m) for m in row['worker_rss_mb']) or '–'} | "
              f"{'yes' if row['same_data'] else 'NO'} |")
    Path(args.out).write_text(json.dumps({"parts": args.parts, "rows": rows}, indent=1)
                              + "\n")


if __name__ == "__main__":
    main()

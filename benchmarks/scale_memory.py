"""What a user runs, at scale: ``bayes-pmf fit`` on a CSV of 10^6 and 10^7 ratings, with
the default methods and figures, stage by stage.

    python benchmarks/scale_memory.py [--sizes 1e6 1e7] [--extra ARG ...] [--parts K]
                                      [--out benchmarks/results/scale_memory.json]

``--parts K`` cuts each CSV into K files and fits the folder (with ``--extra
--dask-local 2``: read on the Dask workers).

For each size, synthetic ratings from the PMF model (n_users = N/150, n_items = N/1000,
d = 10, biases, rounded to half stars in 0.5-5) are written to a CSV (cached under
$TMPDIR), then the command ``python -m bayes_pmf fit --data FILE --out DIR
--no-progress`` runs in a child process. Reported: the whole command's wall time and
peak resident memory (its own and its chain processes', from the operating system), and
each stage's seconds, the peak memory reached by its end and the memory the command
still held then (metrics.json "stages":
read and split, every method's fit, its held-out predictions and scores, diagnostics,
figures; saving is the rest).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def ratings_csv(n_ratings: int, folder: Path) -> Path:
    """A cached CSV of ``n_ratings`` synthetic half-star ratings (user,item,rating)."""
    import bayes_pmf as bp

    path = folder / f"synthetic-{n_ratings}.csv"
    if path.exists():
        return path
    spec = bp.PMFSpec(n_factors=10, sigma=0.9, biases=True)
    truth = bp.make_synthetic(max(n_ratings // 150, 10), max(n_ratings // 1000, 10),
                              n_ratings, spec, rng=0)
    data = truth.data
    rating = np.clip(np.round(data.rating * 2) / 2, 0.5, 5.0)
    tmp = path.with_suffix(".tmp")
    with open(tmp, "w") as handle:
        handle.write("user,item,rating\n")
        step = 1_000_000
        for start in range(0, n_ratings, step):
            block = slice(start, start + step)
            lines = np.char.add(np.char.add(data.user_idx[block].astype(str), ","),
                                data.item_idx[block].astype(str))
            lines = np.char.add(np.char.add(lines, ","), rating[block].astype(str))
            handle.write("\n".join(lines.tolist()) + "\n")
    os.replace(tmp, path)
    return path


def ratings_parts(csv: Path, parts: int) -> Path:
    """The cached CSV cut into ``parts`` files of consecutive lines, each with the
    header, in a folder beside it (what ``--data FOLDER`` reads as one table)."""
    folder = csv.with_name(f"{csv.stem}-{parts}-parts")
    if folder.exists():
        return folder
    lines = csv.read_text().splitlines(keepends=True)
    header, body = lines[0], lines[1:]
    tmp = folder.with_name(folder.name + ".tmp")
    tmp.mkdir(exist_ok=True)
    size = -(-len(body) // parts)
    for k in range(parts):
        (tmp / f"part-{k:03d}.csv").write_text(header + "".join(body[k * size:(k + 1) * size]))
    os.replace(tmp, folder)
    return folder


def run_cli(path: Path, extra: list[str]) -> dict:
    out = Path(tempfile.mkdtemp(prefix="bayes-pmf-scale-")) / "run"
    command = [sys.executable, "-m", "bayes_pmf", "fit", "--data", str(path), "--out",
               str(out), "--no-progress", *extra]
    began = time.perf_counter()
    proc = subprocess.run(command, capture_output=True, text=True, cwd=ROOT)
    seconds = time.perf_counter() - began
    peak_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    if proc.returncode != 0:
        return {"command": " ".join(command[2:]), "error": proc.stderr[-2000:],
                "seconds": round(seconds, 1)}
    metrics = json.loads((out / "metrics.json").read_text())
    stages = metrics["stages"]
    saved = seconds - sum(stage["seconds"] for stage in stages)
    return {"command": " ".join(command[2:]), "seconds": round(seconds, 1),
            "peak_rss_mb": round(peak_mb), "stages": stages,
            "rest_seconds": round(saved, 1),
            "results": {r["method"]: round(r["rmse"], 4) for r in metrics["results"]},
            "sampling": metrics.get("sampling"),
            "diagnostics": [{key: row[key] for key in ("method", "converged", "max_rhat",
                                                       "min_ess_bulk", "min_ess_tail")}
                            for row in metrics.get("diagnostics", [])],
            "settings": metrics["settings"],
            **({"cluster": metrics["cluster"]} if "cluster" in metrics else {})}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", nargs="+", type=float, default=[1e6, 1e7])
    parser.add_argument("--extra", nargs="*", default=[], help="more arguments for fit")
    parser.add_argument("--data-dir", default=tempfile.gettempdir())
    parser.add_argument("--parts", type=int, default=0,
                        help="cut the CSV into this many files and fit the folder")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results"
                                             / "scale_memory.json"))
    args = parser.parse_args(argv)
    rows = []
    for size in args.sizes:
        path = ratings_csv(int(size), Path(args.data_dir))
        if args.parts:
            path = ratings_parts(path, args.parts)
        # each size in a fresh child of a fresh process, so peaks do not carry over
        proc = subprocess.run([sys.executable, __file__, "--child", str(path), *args.extra],
                              capture_output=True, text=True)
        row = json.loads(proc.stdout) if proc.returncode == 0 else {"error": proc.stderr}
        row["ratings"] = int(size)
        rows.append(row)
        print(json.dumps(row, indent=1), flush=True)
    Path(args.out).write_text(json.dumps({"rows": rows}, indent=1))
    for row in rows:
        if "stages" not in row:
            continue
        print(f"\n{row['ratings']:,} ratings: {row['seconds']:.0f} s, "
              f"peak {row['peak_rss_mb']:,} MB")
        print("| stage | seconds | peak MB so far | MB held at its end |\n|---|---|---|---|")
        for stage in row["stages"]:
            print(f"| {stage['stage']} | {stage['seconds']:.1f} | {stage['peak_rss_mb']:,} "
                  f"| {stage.get('rss_mb', float('nan')):,} |")
        print(f"| save and the rest | {row['rest_seconds']:.1f} | {row['peak_rss_mb']:,} | |")


if __name__ == "__main__":
    if len(sys.argv) > 2 and sys.argv[1] == "--child":
        print(json.dumps(run_cli(Path(sys.argv[2]), sys.argv[3:])))
    else:
        main()

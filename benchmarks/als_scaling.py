"""Seconds per ALS sweep and peak memory at 1e5, 1e6, 1e7 synthetic ratings, d = 10 and 32,
bayes_pmf beside cmfrec (when installed) on the same data in the same run.

    python benchmarks/als_scaling.py [--sizes 100000 1000000 10000000] [--factors 10 32]
                                     [--sweeps 3] [--out benchmarks/results/als_scaling.json]

Each (library, size, d) runs in its own child process that loads the ratings from a
.npz file, records its resident memory (ru_maxrss) before fitting and the high-water
mark after: "solver MB" is the increment, the memory the solver itself needed. Seconds
per sweep is the median of the timed sweeps (bayes_pmf) or the fit time divided by the
number of iterations (cmfrec, whose setup is included). Two solvers each, compared like
for like: exact ridge solves (bayes_pmf's default; cmfrec's Cholesky solver,
"cmfrec-exact") and 3 conjugate-gradient steps per row ("bayes_pmf-cg", solver="cg";
cmfrec's default solver, "cmfrec", here without its final Cholesky sweep so that every
timed sweep is a CG sweep on both sides). cmfrec computes in float32 by default
(use_float=True); its "-f64" rows run in float64, the precision of bayes_pmf's exact
and "bayes_pmf-cg" rows; "bayes_pmf-cg32" runs its CG steps in float32 (cg_precision).
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

LAMBDA = 10.0


def _shape_for(n_ratings: int) -> tuple[int, int]:
    return max(1000, n_ratings // 150), max(500, n_ratings // 1000)


def make_data(n_ratings: int, path: Path, seed: int = 0) -> None:
    import bayes_pmf as bp

    n_users, n_items = _shape_for(n_ratings)
    spec = bp.PMFSpec(n_factors=10, sigma=0.8, sigma_u=0.5, sigma_v=0.5, biases=True)
    synthetic = bp.make_synthetic(n_users, n_items, n_ratings, spec, rng=seed)
    data = synthetic.data
    np.savez(path, user=data.user_idx.astype(np.int32), item=data.item_idx.astype(np.int32),
             rating=data.rating, n_users=n_users, n_items=n_items)


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def child(library: str, path: str, d: int, sweeps: int) -> dict:
    import bayes_pmf as bp
    from bayes_pmf.engines.als import initial_params, sweep

    arrays = np.load(path)
    user, item, rating = arrays["user"], arrays["item"], arrays["rating"]
    if library.startswith("bayes_pmf"):
        cg_steps = 3 if library.startswith("bayes_pmf-cg") else None
        cg_dtype = np.float32 if library == "bayes_pmf-cg32" else np.float64
        data = bp.RatingsData(user, item, rating, np.arange(int(arrays["n_users"])),
                              np.arange(int(arrays["n_items"])), bp.RatingScale.unbounded())
        spec = bp.PMFSpec.from_lambdas(d, LAMBDA, biases=True)
        params = initial_params(data, spec, rng=0)
        data.by_user, data.by_item  # the sparse views are built once per data set
        before = _rss_mb()
        times = []
        for _ in range(sweeps):
            start = time.perf_counter()
            params = sweep(data, params, spec, cg_steps=cg_steps, cg_dtype=cg_dtype)
            times.append(time.perf_counter() - start)
        per_sweep = float(np.median(times))
    else:
        import cmfrec
        import scipy.sparse as sp

        matrix = sp.coo_matrix((rating, (user, item)))
        before = _rss_mb()
        # "cmfrec": its default solver, 3 conjugate-gradient steps per row, every sweep
        # (finalize_chol=False: no exact last sweep inside the timing); "cmfrec-exact":
        # Cholesky every sweep, the same exact solve as bayes_pmf's default.
        model = cmfrec.CMF(k=d, lambda_=LAMBDA, user_bias=True, item_bias=True, method="als",
                           niter=sweeps, verbose=False, nthreads=2, random_state=0,
                           use_cg="exact" not in library, finalize_chol=False,
                           use_float=not library.endswith("-f64"),
                           precompute_for_predictions=False)
        start = time.perf_counter()
        model.fit(matrix)
        per_sweep = (time.perf_counter() - start) / sweeps
    return {"seconds_per_sweep": per_sweep, "rss_before_mb": before,
            "peak_rss_mb": _rss_mb(), "solver_mb": _rss_mb() - before}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="*", default=[100_000, 1_000_000, 10_000_000])
    parser.add_argument("--factors", type=int, nargs="*", default=[10, 32])
    parser.add_argument("--sweeps", type=int, default=3)
    parser.add_argument("--out", default=str(ROOT / "benchmarks/results/als_scaling.json"))
    parser.add_argument("--child", nargs=3, metavar=("LIBRARY", "NPZ", "D"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        library, path, d = args.child
        print(json.dumps(child(library, path, int(d), args.sweeps)))
        return
    try:
        import cmfrec  # noqa: F401
        libraries = ["bayes_pmf", "cmfrec-exact-f64", "cmfrec-exact",
                     "bayes_pmf-cg", "cmfrec-f64", "bayes_pmf-cg32", "cmfrec"]
    except ImportError:
        libraries = ["bayes_pmf", "bayes_pmf-cg", "bayes_pmf-cg32"]
        print("cmfrec not installed (pip install '.[bench]'): bayes_pmf only", file=sys.stderr)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for n_ratings in args.sizes:
            path = Path(tmp) / f"ratings-{n_ratings}.npz"
            make_data(n_ratings, path)
            for d in args.factors:
                for library in libraries:
                    proc = subprocess.run(
                        [sys.executable, __file__, "--sweeps", str(args.sweeps),
                         "--child", library, str(path), str(d)],
                        capture_output=True, text=True, check=True)
                    result = json.loads(proc.stdout.strip().splitlines()[-1])
                    n_users, n_items = _shape_for(n_ratings)
                    rows.append({"library": library, "n_ratings": n_ratings, "n_users": n_users,
                                 "n_items": n_items, "d": d, **result})
                    print(f"{library:16s} n={n_ratings:>10,} d={d:>3} "
                          f"{result['seconds_per_sweep']:8.3f} s/sweep "
                          f"solver {result['solver_mb']:8.1f} MB "
                          f"peak {result['peak_rss_mb']:8.1f} MB", flush=True)
    for row in rows:
        if row["library"].startswith("bayes_pmf"):
            for peer_name in ("cmfrec", "cmfrec-f64", "cmfrec-exact", "cmfrec-exact-f64"):
                peer = [r for r in rows if r["library"] == peer_name
                        and r["n_ratings"] == row["n_ratings"] and r["d"] == row["d"]]
                if peer:
                    row[f"ratio_to_{peer_name}"] = (row["seconds_per_sweep"]
                                                    / peer[0]["seconds_per_sweep"])
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    from bayes_pmf.provenance import machine, package_versions

    Path(args.out).write_text(json.dumps(
        {"sweeps": args.sweeps, "lambda": LAMBDA, "machine": machine(),
         "versions": package_versions(("cmfrec",)), "rows": rows}, indent=2))


if __name__ == "__main__":
    main()

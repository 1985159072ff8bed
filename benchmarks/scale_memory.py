"""Peak memory and time of ALS and the Gibbs sampler at 1e6, 3e6 and 1e7 synthetic ratings
(d = 10): does memory grow linearly in the number of ratings and stay under 3 GB?

    python benchmarks/scale_memory.py [--sizes 1000000 3000000 10000000] [--factors 10]
                                      [--out benchmarks/results/scale_memory.json]

Each (method, size) runs in its own child process that loads the ratings from a .npz file
(see als_scaling.py) and runs the public entry point end to end: ``fit_als`` for 3 sweeps
plus ``als_result`` (the InferenceData), or ``sample_gibbs`` with 1 chain of 2 burn-in + 3
kept sweeps. Peak resident memory (ru_maxrss) covers everything the process held,
data included.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from als_scaling import LAMBDA, _rss_mb, _shape_for, make_data  # noqa: E402


def child(method: str, path: str, d: int) -> dict:
    import bayes_pmf as bp

    arrays = np.load(path)
    data = bp.RatingsData(arrays["user"], arrays["item"], arrays["rating"],
                          np.arange(int(arrays["n_users"])), np.arange(int(arrays["n_items"])),
                          bp.RatingScale.unbounded())
    spec = bp.PMFSpec.from_lambdas(d, LAMBDA, biases=True)
    loaded = _rss_mb()
    start = time.perf_counter()
    if method == "als":
        fit = bp.fit_als(data, spec, max_sweeps=3, tol=0.0, rng=0, progress=False)
        result = bp.als_result(fit, data)
        sweeps = fit.settings["n_sweeps"]
    else:
        from bayes_pmf.engines.gibbs import sample_gibbs

        result = sample_gibbs(data, spec.with_(prior="normal-wishart", noise="learned"), draws=3,
                              tune=2, chains=1, rng=0, progress=False)
        sweeps = 5
    seconds = time.perf_counter() - start
    finite = bool(all(np.isfinite(v).all() for v in result.draws.values()))
    return {"seconds": seconds, "seconds_per_sweep": seconds / sweeps, "rss_loaded_mb": loaded,
            "peak_rss_mb": _rss_mb(), "finite": finite}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="*",
                        default=[1_000_000, 3_000_000, 10_000_000])
    parser.add_argument("--factors", type=int, default=10)
    parser.add_argument("--out", default=str(ROOT / "benchmarks/results/scale_memory.json"))
    parser.add_argument("--child", nargs=3, metavar=("METHOD", "NPZ", "D"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        method, path, d = args.child
        print(json.dumps(child(method, path, int(d))))
        return
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for n_ratings in args.sizes:
            path = Path(tmp) / f"ratings-{n_ratings}.npz"
            make_data(n_ratings, path)
            for method in ("als", "gibbs"):
                proc = subprocess.run([sys.executable, __file__, "--child", method, str(path),
                                       str(args.factors)], capture_output=True, text=True)
                if proc.returncode != 0:
                    raise SystemExit(proc.stderr[-3000:])
                result = json.loads(proc.stdout.strip().splitlines()[-1])
                n_users, n_items = _shape_for(n_ratings)
                rows.append({"method": method, "n_ratings": n_ratings, "n_users": n_users,
                             "n_items": n_items, "d": args.factors, **result})
                print(f"{method:6s} n={n_ratings:>11,} {result['seconds_per_sweep']:7.2f} s/sweep "
                      f"peak {result['peak_rss_mb']:8.1f} MB "
                      f"({result['peak_rss_mb'] / n_ratings * 1e6:6.1f} MB per 1e6 ratings)",
                      flush=True)
    from bayes_pmf.provenance import machine, package_versions

    Path(args.out).write_text(json.dumps({"machine": machine(), "versions": package_versions(),
                                          "rows": rows}, indent=2))


if __name__ == "__main__":
    main()

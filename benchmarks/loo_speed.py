"""PSIS-LOO: ``bayes_pmf.loo`` (vectorised) beside ``az.loo`` on the same posterior.

    python benchmarks/loo_speed.py [--chains 2] [--tune 60] [--draws 60]
                                   [--likelihood ordinal] [--out benchmarks/results/loo_speed.json]

The main job's seeded 90/10 split of the embedded MovieLens; the main job's posterior
model without implicit feedback (notebook 06's "ordinal"), sampled by the Gibbs sampler;
then LOO on its 90,000 training ratings, each call timed 3 times (median), bayes_pmf's
and ArviZ's alternately in one run. ArviZ is given a float64 copy of the pointwise
log-likelihood too, so that the numbers can be compared to rounding (the stored group is
float32, in which ArviZ does part of its arithmetic).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
import warnings
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import bayes_pmf as bp  # noqa: E402
from bayes_pmf.workflows.config import FitJobConfig  # noqa: E402
from bayes_pmf.workflows.fit_job import load_split  # noqa: E402


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chains", type=int, default=2)
    parser.add_argument("--tune", type=int, default=60)
    parser.add_argument("--draws", type=int, default=60)
    parser.add_argument("--likelihood", default="ordinal", choices=["ordinal", "gaussian"])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", default="benchmarks/results/loo_speed.json")
    args = parser.parse_args(argv)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import arviz as az

    config = FitJobConfig(likelihood=args.likelihood, implicit="none")
    split, _ = load_split(config)
    result = bp.sample_gibbs(split.train, config.posterior_spec, draws=args.draws,
                             tune=args.tune, chains=args.chains, rng=0, progress=False)
    idata64 = result.idata.copy()
    idata64.log_likelihood["rating"] = idata64.log_likelihood["rating"].astype(float)
    calls = {"bayes_pmf.loo": lambda: bp.loo(result),
             "az.loo (float32 group)": lambda: az.loo(result.idata, pointwise=True),
             "az.loo (float64 copy)": lambda: az.loo(idata64, pointwise=True)}
    seconds = {name: [] for name in calls}
    values = {}
    for _ in range(args.repeats):
        for name, call in calls.items():
            began = time.perf_counter()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                values[name] = call()
            seconds[name].append(time.perf_counter() - began)
    ours = values["bayes_pmf.loo"]
    rows = []
    for name, out in values.items():
        rows.append({"call": name, "median_seconds": round(statistics.median(seconds[name]), 3),
                     "elpd_loo": float(out.elpd_loo), "se": float(out.se),
                     "p_loo": float(out.p_loo),
                     "max_rel_diff_loo_i": float(np.max(np.abs(
                         out.loo_i.values - ours.loo_i.values) / np.abs(ours.loo_i.values))),
                     "max_abs_diff_pareto_k": float(np.max(np.abs(
                         out.pareto_k.values - ours.pareto_k.values)))})
    base = rows[0]["median_seconds"]
    print(f"PSIS-LOO on {split.train.n_ratings:,} training ratings, "
          f"{args.chains} x {args.draws} draws ({args.likelihood})")
    print(f"{'call':<26}{'median s':>10}{'x ours':>8}{'elpd_loo':>14}{'p_loo':>10}"
          f"{'max rel d loo_i':>17}{'max d k':>10}")
    for row in rows:
        print(f"{row['call']:<26}{row['median_seconds']:>10.2f}"
              f"{row['median_seconds'] / base:>8.1f}{row['elpd_loo']:>14.4f}"
              f"{row['p_loo']:>10.2f}{row['max_rel_diff_loo_i']:>17.1e}"
              f"{row['max_abs_diff_pareto_k']:>10.1e}")
    record = {"settings": vars(args), "n_ratings": split.train.n_ratings, "rows": rows,
              "versions": bp.provenance.package_versions()}
    Path(args.out).write_text(json.dumps(record, indent=1) + "\n")
    return record


if __name__ == "__main__":
    main()

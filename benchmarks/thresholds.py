"""Per-user thresholds (#18): what they cost per sweep, side by side in one run.

    python benchmarks/thresholds.py [--sweeps 300] [--seeds 2] [--out FILE]

The main job's posterior model (implicit feedback on both sides, the genres, Wishart
priors) on the training part of its seed-0 split, sampled by one chain on one core
(``sample_gibbs(..., chains=1, cores=1)``, 50 burn-in sweeps then ``--sweeps``), three
ways: the Gaussian likelihood (learned noise), the ordinal one with global cut points,
and the ordinal one with each user's own (tau learned), alternating, for each seed.
Prints the sweeps per second of each run and the medians; writes them to
``results/thresholds.json``. Which model wins on held-out ratings is cross-validated by
``bayes-pmf select --posterior --likelihoods ordinal --thresholds global user`` (its
result: ``results/thresholds_cv.json``).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import bayes_pmf as bp  # noqa: E402
from bayes_pmf.workflows.config import FitJobConfig  # noqa: E402


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sweeps", type=int, default=300)
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" /
                                             "thresholds.json"))
    args = parser.parse_args(argv)
    split = bp.random_split(bp.load_movielens(), 0.1, rng=0)
    spec = FitJobConfig().posterior_spec_for(split.train)
    variants = {"gaussian": spec.with_(likelihood="gaussian", thresholds="global",
                                       noise="learned"),
                "ordinal, global cut points": spec.with_(thresholds="global"),
                "ordinal, per-user cut points": spec.with_(thresholds="user")}
    rows = []
    for seed in range(args.seeds):
        for name, variant in variants.items():
            result = bp.sample_gibbs(split.train, variant, draws=args.sweeps, tune=50,
                                     chains=1, cores=1, rng=seed, progress=False)
            rate = float(result.attrs["settings"]["draws_per_second"])
            rows.append({"model": name, "seed": seed, "sweeps_per_second": rate})
            print(f"{name}, seed {seed}: {rate:.1f} sweeps/s", flush=True)
    medians = {name: float(np.median([r["sweeps_per_second"] for r in rows
                                      if r["model"] == name])) for name in variants}
    print("| model | sweeps/s (median) | of the Gaussian's |")
    print("|---|---|---|")
    for name, rate in medians.items():
        print(f"| {name} | {rate:.1f} | {rate / medians['gaussian']:.2f} |")
    Path(args.out).write_text(json.dumps({"sweeps": args.sweeps, "rows": rows,
                                          "medians": medians}, indent=1))


if __name__ == "__main__":
    main()

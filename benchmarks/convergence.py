"""Time to a converged 4-chain Gibbs posterior of the embedded MovieLens.

    python benchmarks/convergence.py [--runs 500x1 1000x1 1000x3] [--tunes 100 300]
                                     [--inits als als-shared] [--seeds 0 1]
                                     [--chains 4] [--factors 10] [--cores 2] [--out FILE]

The main job's model (d = 10, biases, zero-mean Wishart hyperpriors) on the training part
of the seeded 90/10 split. For each run DRAWSxTHIN (draws kept per chain, keeping every
THIN-th sweep), each burn-in length, chain start and seed, a separate run from scratch
(ALS start, burn-in, draws; chains in parallel processes) is timed end to end and judged by
``bayes_pmf.convergence_summary``: R-hat <= 1.01 and bulk/tail ESS >= 100 per chain for
sigma, mu, the factor scales and 50 held-out predicted ratings (the identifiable
quantities). Also reported: the test RMSE of the posterior mean.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import bayes_pmf as bp  # noqa: E402
from bayes_pmf.analysis.diagnostics import convergence_summary  # noqa: E402
from bayes_pmf.engines.gibbs import sample_gibbs  # noqa: E402
from bayes_pmf.workflows.config import FitJobConfig  # noqa: E402


def run(train, test, spec, draws: int, thin: int, tune: int, chains: int,
        cores: int | None, init: str = "als", seed: int = 0) -> dict:
    began = time.perf_counter()
    result = sample_gibbs(train, spec.with_(prior="wishart", noise="learned"), draws=draws,
                          thin=thin, tune=tune, chains=chains, rng=seed, cores=cores,
                          init=init, progress=False)
    seconds = time.perf_counter() - began
    report = convergence_summary(result, test)
    users, items = test.user_ids[test.user_idx], test.item_ids[test.item_idx]
    posterior_mean = result.mean_draws(users, items, unknown="prior").mean(axis=0)
    settings = result.attrs["settings"]
    return {
        "draws": draws, "thin": thin, "tune": tune, "chains": chains, "cores": settings["cores"],
        "init": init, "seed": seed,
        "seconds": seconds, "converged": report.converged, "reasons": report.reasons,
        **{k: report.details[k] for k in ("max_rhat", "min_ess_bulk", "min_ess_tail")},
        "worst_rhat_quantity": str(report.summary["r_hat"].idxmax()),
        "lowest_ess_quantity": str(report.summary["ess_bulk"].idxmin()),
        "test_rmse": bp.rmse(test.rating, posterior_mean),
        "sweeps_per_second": settings["draws_per_second"],
    }


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", nargs="*", default=["500x1", "1000x1", "1000x3"])
    parser.add_argument("--tunes", type=int, nargs="*", default=[FitJobConfig().tune],
                        help="burn-in sweeps per chain (default: the main job's)")
    parser.add_argument("--chains", type=int, default=4)
    parser.add_argument("--factors", type=int, default=10)
    parser.add_argument("--cores", type=int, default=None)
    parser.add_argument("--inits", nargs="*", default=["als"],
                        help="chain starts: als (overdispersed, the default), als-shared, "
                             "random")
    parser.add_argument("--seeds", type=int, nargs="*", default=[0])
    parser.add_argument("--out", default=None)
    args = parser.parse_args(argv)
    split = bp.random_split(bp.load_movielens(), 0.1, rng=0)
    spec = FitJobConfig(n_factors=args.factors).pmf_spec
    rows = []
    print("| start | seed | draws/chain | thin | burn-in + sweeps | chains x processes | wall s "
          "| max R-hat | min bulk ESS | min tail ESS | converged | test RMSE |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for init, tune, seed, text in ((i, t, s, r) for i in args.inits for t in args.tunes
                                   for s in args.seeds for r in args.runs):
        draws, thin = (int(part) for part in text.split("x"))
        row = run(split.train, split.test, spec, draws, thin, tune, args.chains, args.cores,
                  init, seed)
        rows.append(row)
        print(f"| {init} | {seed} | {draws} | {thin} | {tune} + {draws * thin} "
              f"| {row['chains']} x {row['cores']} "
              f"| {row['seconds']:.1f} "
              f"| {row['max_rhat']:.3f} ({row['worst_rhat_quantity']}) "
              f"| {row['min_ess_bulk']:.0f} ({row['lowest_ess_quantity']}) "
              f"| {row['min_ess_tail']:.0f} | {'yes' if row['converged'] else 'no'} "
              f"| {row['test_rmse']:.4f} |", flush=True)
    if args.out:
        from bayes_pmf.provenance import machine, package_versions

        Path(args.out).write_text(json.dumps(
            {"settings": vars(args), "machine": machine(), "versions": package_versions(),
             "rows": rows}, indent=2, default=str))


if __name__ == "__main__":
    main()

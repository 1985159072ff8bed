"""Simulation-based calibration of the main job's model, 500 replicates.

    python benchmarks/sbc.py [--reps 500] [--processes 2] [--bins 10]
                             [--model gaussian|ordinal] [--broken]
                             [--out benchmarks/results/sbc.json]

The model `bayes-pmf fit` samples (zero-mean Wishart priors on the factor precisions,
Gamma bias precisions, learned noise, global mean; balance, scale and shift moves,
overrelaxation -0.8), with mu ~ N(3, 1) so that it can be drawn (the main job's flat
prior is the same code path with zero prior precision). Each replicate: d = 2, 30
users x 8 items, 150 ratings drawn from the prior; one chain, 100 burn-in sweeps, 99
draws kept from every 4th sweep. Ranks of sigma, mu, the four prior scales, the balance
log(|U|/|V|), and expected ratings of 2 observed and 2 unobserved pairs; per quantity a
chi-square test of uniform ranks in 10 bins, Bonferroni-corrected over the quantities.
Replicates are split over processes (seeded per replicate, so the split changes nothing).

``--model ordinal``: the ordinal model (ordered probit on half stars, global cut points,
sigma = 0.6, Wishart priors, mu ~ N(3, 0.5)), d = 2, 20 users x 12 items, 120 ratings,
400 burn-in sweeps, 99 draws from every 3rd sweep; its free cut points are ranked too.
``--broken`` (ordinal) runs the same check on a sampler that leaves the cut points'
prior out of their Metropolis moves: the power of the check.

``--model ordinal-user``: the ordinal model with per-user thresholds (the same problems,
300 burn-in sweeps, 99 draws from every 6th sweep); two users' low, middle and top cut
points are ranked too. ``--broken`` then drops the shrink factor sqrt(1 - beta^2) from the
users' preconditioned Crank-Nicolson step, which makes it a random walk accepted on the
likelihood alone: the users' prior is lost.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import bayes_pmf as bp  # noqa: E402
from bayes_pmf.analysis.calibration import simulation_based_calibration  # noqa: E402

MODELS = {
    "gaussian": (bp.PMFSpec.hierarchical(n_factors=2, mu_prior=(3.0, 1.0)),
                 dict(n_users=30, n_items=8, n_ratings=150, tune=100, thin=4, draws=99,
                      rng=2026)),
    "ordinal": (bp.PMFSpec(n_factors=2, sigma=0.6, likelihood="ordinal", prior="wishart",
                           mu_prior=(3.0, 0.5)),
                dict(n_users=20, n_items=12, n_ratings=120, tune=400, thin=3, draws=99,
                     rng=2026)),
    "ordinal-user": (bp.PMFSpec(n_factors=2, sigma=0.6, likelihood="ordinal",
                                prior="wishart", mu_prior=(3.0, 0.5), thresholds="user"),
                     dict(n_users=20, n_items=12, n_ratings=120, tune=300, thin=6, draws=99,
                          rng=2026)),
}


def _break_user_steps(gibbs) -> None:
    """The per-user thresholds' pCN step without its shrink (see the module docstring)."""
    import inspect
    import textwrap

    source = textwrap.dedent(inspect.getsource(gibbs._UserThresholds.update))
    broken = source.replace("np.sqrt(1 - beta**2)[:, None] * offsets", "offsets")
    if broken == source:
        raise RuntimeError("the pCN step's shrink was not found: update _break_user_steps")
    namespace = dict(vars(gibbs))
    exec(broken, namespace)  # noqa: S102 - the benchmark's own, deliberately broken copy
    gibbs._UserThresholds.update = namespace["update"]


def _part(args):
    n_reps, reps, model, broken = args
    if broken:
        from bayes_pmf.engines import gibbs

        if model == "ordinal-user":
            _break_user_steps(gibbs)
        else:
            gibbs._OrdinalLatent._log_prior = lambda self, cutpoints: 0.0
    spec, settings = MODELS[model]
    return simulation_based_calibration(spec, n_reps=n_reps, reps=reps, **settings)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=500)
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--bins", type=int, default=10)
    parser.add_argument("--model", choices=sorted(MODELS), default="gaussian")
    parser.add_argument("--broken", action="store_true")
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "sbc.json"))
    args = parser.parse_args(argv)
    began = time.perf_counter()
    parts = [(args.reps, range(k, args.reps, args.processes), args.model, args.broken)
             for k in range(args.processes)]
    with ProcessPoolExecutor(args.processes) as pool:
        results = list(pool.map(_part, parts))
    combined = results[0]
    for part in results[1:]:
        combined = combined.join(part)
    seconds = time.perf_counter() - began
    table = combined.uniformity(bins=args.bins, alpha=0.01)
    print(f"{args.reps} replicates in {seconds:.0f} s; ranks of {combined.n_draws} draws, "
          f"{args.bins} bins, Bonferroni over {len(table)} quantities")
    print("| quantity | chi2 | p | adjusted p | uniform at 1% | counts per bin |")
    print("|---|---|---|---|---|---|")
    for row in table.itertuples():
        print(f"| {row.quantity} | {row.chi2:.1f} | {row.p_value:.3f} | {row.adjusted_p:.3f} "
              f"| {'yes' if row.passed else 'NO'} | {' '.join(map(str, row.counts))} |")
    Path(args.out).write_text(json.dumps({
        "spec": MODELS[args.model][0].as_dict(), "broken": args.broken,
        "settings": {**MODELS[args.model][1], "reps": args.reps, "bins": args.bins},
        "seconds": round(seconds, 1), "table": table.to_dict(orient="records")}, indent=1))


if __name__ == "__main__":
    main()

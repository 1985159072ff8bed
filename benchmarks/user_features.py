"""User features (#19 item 2): does a user's side information help, and what does it cost?

    python benchmarks/user_features.py [--data u.data --users u.user] [--out FILE]

The main job's posterior model (ordinal, per-user cut points, implicit feedback on both
sides, Wishart priors; ``FitJobConfig().posterior_spec_for``) with and without user
features, sampled by Gibbs on the same split in one run, scored on the held-out ratings:
RMSE, RMSE of the cold users (every rating of 10% of the users held out: predicted from
their tags, or by the prior mean without features), log score and sweeps per second.

Without ``--data`` the ratings are synthetic, drawn from a model with user features
(:data:`SYNTHETIC`) with two user columns (``occupation`` and ``age``, 4 values each, a
fifth of the users without one) at another shape than the embedded MovieLens (1,200 users
x 400 items, 36,000 ratings), twice: once with the users'
columns as drawn (informative) and once with them shuffled across users (the same
columns, carrying nothing: the features model must not lose much there). With ``--data``
and ``--users`` (e.g. MovieLens 100k's u.data and u.user) the same comparison runs on
those files, with the columns "auto" chooses. Writes ``results/user_features.json``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import bayes_pmf as bp  # noqa: E402
from bayes_pmf.analysis.metrics import score  # noqa: E402
from bayes_pmf.provenance import package_versions  # noqa: E402
from bayes_pmf.workflows.config import FitJobConfig  # noqa: E402

COLUMNS = "occupation,age"


# The model the synthetic ratings are drawn from: the ordered probit on half stars with
# fixed scales chosen so that the ratings look like MovieLens' (mean ~3.5, sd ~1.1), the
# users' factors mostly their tags' (Psi's sd 0.6 against Y's 0.25).
SYNTHETIC = bp.PMFSpec(n_factors=5, prior="fixed", sigma=0.7, sigma_u=0.25, sigma_v=0.5,
                       sigma_w=0.6, sigma_user_bias=0.4, sigma_item_bias=0.4,
                       likelihood="ordinal", user_features=COLUMNS, implicit_norm="sqrt",
                       mu_prior=(3.5, 0.05))


def synthetic(rng: int):
    """Ratings drawn from :data:`SYNTHETIC` (1,200 users x 400 items, 36,000 ratings)."""
    return bp.draw_from_prior(SYNTHETIC, n_users=1200, n_items=400, n_ratings=36_000,
                              rng=rng).data


def cold_user_split(data, rng: int):
    """Every rating of 10% of the users, and 10% of the others' ratings, held out."""
    generator = np.random.default_rng(rng)
    cold_users = generator.choice(data.n_users, data.n_users // 10, replace=False)
    held = np.isin(data.user_idx, cold_users) | (generator.random(data.n_ratings) < 0.1)
    train, test = data.take(~held), data.take(held)
    known = np.isin(test.item_ids[test.item_idx], train.item_ids)  # cold items aside
    return train, test.take(known)


def evaluate(train, test, columns, draws: int, tune: int, chains: int) -> dict:
    config = FitJobConfig(n_factors=5, user_features=columns or "none")
    spec = config.posterior_spec_for(train)
    started = time.perf_counter()
    result = bp.sample_gibbs(train, spec, draws=draws, tune=tune, chains=chains, rng=0,
                             progress=False)
    seconds = time.perf_counter() - started
    scores = score(result, train, test)
    cold = np.isin(test.user_ids[test.user_idx], train.user_ids, invert=True)
    return {"user_features": spec.user_features, "rmse": scores["rmse"],
            "rmse_cold_users": scores["rmse_cold"], "n_cold": int(cold.sum()),
            "log_score": scores["log_score"], "rps": scores["rps"], "seconds": seconds,
            "sweeps_per_second": chains * (draws + tune) / seconds}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data")
    parser.add_argument("--users")
    parser.add_argument("--draws", type=int, default=400)
    parser.add_argument("--tune", type=int, default=200)
    parser.add_argument("--chains", type=int, default=2)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" /
                                             "user_features.json"))
    args = parser.parse_args(argv)
    cases = {}
    if args.data:
        _, full = bp.load_split(args.data, users=args.users, seed=args.seed)
        columns = FitJobConfig().user_features_for(full)
        cases[f"{Path(args.data).name} + {Path(args.users).name}"] = (
            *cold_user_split(full, args.seed), columns)
    else:
        data = synthetic(args.seed)
        cases["synthetic, informative columns"] = (*cold_user_split(data, args.seed), COLUMNS)
        shuffled = np.random.default_rng(args.seed).permutation(len(data.user_info))
        info = data.user_info.copy()
        info[:] = data.user_info.to_numpy()[shuffled]
        data.user_info = info
        cases["synthetic, shuffled columns"] = (*cold_user_split(data, args.seed), COLUMNS)
    rows = []
    for case, (train, test, columns) in cases.items():
        for features in (None, columns):
            row = {"case": case, **evaluate(train, test, features, args.draws, args.tune,
                                             args.chains)}
            rows.append(row)
            print(json.dumps(row), flush=True)
    print("| data | user features | RMSE | cold users' RMSE (n) | log score | RPS | "
          "sweeps/s |")
    print("|---|---|---|---|---|---|---|")
    for row in rows:
        print(f"| {row['case']} | {row['user_features'] or 'none'} | {row['rmse']:.4f} | "
              f"{row['rmse_cold_users']:.4f} ({row['n_cold']}) | {row['log_score']:.4f} | "
              f"{row['rps']:.4f} | {row['sweeps_per_second']:.1f} |")
    Path(args.out).write_text(json.dumps({"settings": vars(args), "rows": rows,
                                          "versions": package_versions()}, indent=1))


if __name__ == "__main__":
    main()

"""Tag biases (#19 item 2, the features "as bias regressors"): do the tags' prior means of
the biases help, where, and what do they cost?

    python benchmarks/tag_biases.py [--draws 400] [--tune 200] [--chains 2] [--out FILE]

The main job's posterior model (``FitJobConfig().posterior_spec_for``: ordinal, per-user
cut points, implicit feedback on both sides, the genres as item features, Wishart priors)
with and without ``tag_biases``, sampled by Gibbs on the same split in one run and scored
on the held-out ratings: RMSE, the cold items' RMSE (items without training ratings:
predicted from their genres), log score, RPS and sweeps per second. Two data sets:

* the embedded MovieLens on the main job's own split (seed 0, 10% held out; 339 held-out
  ratings of items the training part lacks);
* synthetic ratings at another shape (600 users x 1,500 items, 30,000 half-star
  ratings, every rating of 10% of the items and 10% of the others held out), drawn from
  the ordered probit whose item biases are mostly their tags' (:data:`SYNTHETIC`).

Writes ``results/tag_biases.json``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import bayes_pmf as bp  # noqa: E402
from bayes_pmf.analysis.metrics import score  # noqa: E402
from bayes_pmf.provenance import package_versions  # noqa: E402
from bayes_pmf.workflows.config import FitJobConfig  # noqa: E402
from bayes_pmf.workflows.fit_job import load_split  # noqa: E402

# Half stars from an ordered probit whose item biases are their genres' (beta's sd 0.5)
# plus a little of their own (0.15), on a MovieLens-like scale.
SYNTHETIC = bp.PMFSpec(n_factors=5, prior="fixed", sigma=0.7, sigma_u=0.3, sigma_v=0.3,
                       sigma_w=0.3, sigma_user_bias=0.4, sigma_item_bias=0.15,
                       likelihood="ordinal", item_features="genres", tag_biases=True,
                       sigma_tag_bias=0.5, implicit_norm="sqrt", mu_prior=(3.5, 0.05))


def synthetic_split(seed: int):
    data = bp.draw_from_prior(SYNTHETIC, n_users=600, n_items=1500, n_ratings=30_000,
                              rng=seed).data
    generator = np.random.default_rng(seed)
    cold = generator.choice(data.n_items, data.n_items // 10, replace=False)
    held = np.isin(data.item_idx, cold) | (generator.random(data.n_ratings) < 0.1)
    train, test = data.take(~held), data.take(held)
    known = np.isin(test.user_ids[test.user_idx], train.user_ids)  # cold users aside
    return train, test.take(known)


def evaluate(train, test, config: FitJobConfig, draws: int, tune: int, chains: int) -> dict:
    spec = config.posterior_spec_for(train)
    started = time.perf_counter()
    result = bp.sample_gibbs(train, spec, draws=draws, tune=tune, chains=chains, rng=0,
                             progress=False)
    seconds = time.perf_counter() - started
    scores = score(result, train, test)
    cold = np.isin(test.item_ids[test.item_idx], train.item_ids, invert=True)
    return {"tag_biases": spec.tag_biases, "item_features": spec.item_features,
            "rmse": scores["rmse"], "rmse_cold_items": scores["rmse_cold"],
            "n_cold": int(cold.sum()), "log_score": scores["log_score"],
            "rps": scores["rps"], "seconds": seconds,
            "sweeps_per_second": chains * (draws + tune) / seconds}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--draws", type=int, default=400)
    parser.add_argument("--tune", type=int, default=200)
    parser.add_argument("--chains", type=int, default=2)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" /
                                             "tag_biases.json"))
    args = parser.parse_args(argv)
    split, _ = load_split(FitJobConfig())
    cases = {"embedded MovieLens (the main job's split)": (split.train, split.test,
                                                          FitJobConfig()),
             "synthetic, biases from the tags": (*synthetic_split(args.seed),
                                                 FitJobConfig(n_factors=5))}
    rows = []
    for case, (train, test, config) in cases.items():
        for on in (False, True):
            row = {"case": case, **evaluate(train, test, replace(config, tag_biases=on),
                                             args.draws, args.tune, args.chains)}
            rows.append(row)
            print(json.dumps(row), flush=True)
    print("| data | tag biases | RMSE | cold items' RMSE (n) | log score | RPS | sweeps/s |")
    print("|---|---|---|---|---|---|---|")
    for row in rows:
        print(f"| {row['case']} | {'on' if row['tag_biases'] else 'off'} | {row['rmse']:.4f} "
              f"| {row['rmse_cold_items']:.4f} ({row['n_cold']}) | {row['log_score']:.4f} | "
              f"{row['rps']:.4f} | {row['sweeps_per_second']:.1f} |")
    Path(args.out).write_text(json.dumps({"settings": vars(args), "rows": rows,
                                          "versions": package_versions()}, indent=1))


if __name__ == "__main__":
    main()

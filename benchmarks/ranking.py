"""Ranking metrics on the embedded MovieLens: popularity baseline, PMF (ALS = MAP) and the
Gibbs posterior (mean, probability of a relevant rating, pessimistic quantile), on the
seeded 90/10 split, relevance = held-out rating >= 4 stars.

    python benchmarks/ranking.py [--k 10] [--out FILE]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import bayes_pmf as bp  # noqa: E402
from bayes_pmf.analysis.recommend import model_scores, popularity_scores, ranking_metrics  # noqa: E402
from bayes_pmf.engines.gibbs import sample_gibbs  # noqa: E402
from bayes_pmf.workflows.config import FitJobConfig  # noqa: E402


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--threshold", type=float, default=4.0)
    parser.add_argument("--out")
    args = parser.parse_args(argv)
    split = bp.random_split(bp.load_movielens(), 0.1, rng=0)
    train, test = split.train, split.test
    spec = FitJobConfig().pmf_spec
    als = bp.als_result(bp.fit_als(train, spec, rng=0, tol=1e-6, progress=False), train)
    gibbs = sample_gibbs(train, spec.with_(prior="wishart", noise="learned"), draws=200, tune=150,
                         chains=4, rng=0, progress=False)
    rows = []
    for name, scores in (("popularity", popularity_scores(train)),
                         ("bias-baseline", model_scores(bp.fit_bias_baseline(train), train)),
                         ("pmf-als (MAP)", model_scores(als, train)),
                         ("bpmf-gibbs (posterior mean)", model_scores(gibbs, train)),
                         ("bpmf-gibbs (P(r >= 4))",
                          model_scores(gibbs, train, score="prob", threshold=args.threshold)),
                         ("bpmf-gibbs (10% quantile)",
                          model_scores(gibbs, train, score="quantile"))):
        rows.append({"method": name, **ranking_metrics(scores, train, test, k=args.k,
                                                       threshold=args.threshold)})
    table = pd.DataFrame(rows)
    print(table.to_string(index=False, float_format=lambda v: f"{v:.4f}"))
    if args.out:
        Path(args.out).write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()

"""The ordinal likelihood against the Gaussian one and myFM's ordered probit, on one split.

    python benchmarks/ordinal.py [--data PATH] [--seed 0] [--draws 1000] [--tune 300]
                                 [--chains 4] [--out benchmarks/results/ordinal.json]

On the main job's seeded 90/10 split of the embedded MovieLens (or --data), in one run:
the main job's Gaussian posterior model and its ordinal twin (``likelihood="ordinal"``,
global cut points), both sampled by the Gibbs sampler with the main job's chains, and,
when installed, myFM's ``MyFMOrderedProbit`` (rank 10, user and item one-hot in two
prior groups: the same information) with as many sweeps. Every model is scored on every
held-out rating by the same functions: RMSE of the expected rating (clipped to the
scale), ``log_score`` (mean log predictive probability of the observed level: the
Gaussian model's predictive mass on the level's grid bin), ``rps`` (ranked probability
score), the largest bin deviation of the randomised PIT histogram, and how far the
predicted share of each rating level is from its held-out share (percentage points).
Sweeps per second are the chains' own (the start excluded).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import bayes_pmf as bp  # noqa: E402
from bayes_pmf.analysis.metrics import grid_scores, score  # noqa: E402
from bayes_pmf.result.predictive import held_out_predictions, level_column  # noqa: E402
from bayes_pmf.workflows.config import FitJobConfig  # noqa: E402
from bayes_pmf.workflows.fit_job import load_split  # noqa: E402


def _level_shares(table: pd.DataFrame, grid: np.ndarray) -> dict:
    predicted = np.array([table[level_column(v)].mean() for v in grid])
    observed = np.array([np.mean(np.isclose(table["held_out_rating"], v)) for v in grid])
    return {"predicted_share": predicted.round(4).tolist(),
            "held_out_share": observed.round(4).tolist(),
            "max_share_gap_points": float(100 * np.max(np.abs(predicted - observed)))}


def bayes_pmf_row(name, spec, split, config, seed):
    began = time.perf_counter()
    result = bp.sample_gibbs(split.train, spec, draws=config.draws, tune=config.tune,
                             chains=config.chains, rng=seed, method=name, progress=False)
    seconds = time.perf_counter() - began
    result = held_out_predictions(result, split.test)
    scores = score(result, split.train, split.test)
    _, table = result.held_out
    row = {"model": name, "seconds": round(seconds, 1),
           "sweeps_per_second": round(result.settings["draws_per_second"], 2),
           **{key: scores[key] for key in ("rmse", "log_score", "rps", "pit_max_deviation",
                                           "coverage_50_grid", "coverage_90_grid")},
           **_level_shares(table, split.train.scale.values())}
    if spec.ordinal:
        row["cutpoints"] = result.draws["cutpoints"].mean(axis=0).round(3).tolist()
    return row


def myfm_row(split, config, seed, d):
    import myfm
    import scipy.sparse as sp

    train, test = split.train, split.test
    grid = train.scale.values()

    def one_hot(user_idx, item_idx):
        rows = np.arange(len(user_idx))
        keep_u, keep_i = user_idx >= 0, item_idx >= 0
        return sp.csr_matrix(
            (np.ones(keep_u.sum() + keep_i.sum()),
             (np.r_[rows[keep_u], rows[keep_i]],
              np.r_[user_idx[keep_u], train.n_users + item_idx[keep_i]])),
            shape=(len(user_idx), train.n_users + train.n_items))

    users, items = test.id_pairs()
    test_x = one_hot(train.encode_users(users), train.encode_items(items))
    levels = np.rint((train.rating - grid[0]) / train.scale.step).astype(int)
    sweeps = config.tune + config.draws
    began = time.perf_counter()
    model = myfm.MyFMOrderedProbit(rank=d, random_seed=seed)
    with contextlib.redirect_stderr(io.StringIO()):
        model.fit(one_hot(train.user_idx, train.item_idx), levels, n_iter=sweeps,
                  n_kept_samples=config.draws, group_shapes=[train.n_users, train.n_items])
    seconds = time.perf_counter() - began
    probabilities = model.predict_proba(test_x)
    table = pd.DataFrame({"held_out_rating": test.rating})
    for k, value in enumerate(grid):
        table[level_column(value)] = probabilities[:, k]
    expected = np.clip(probabilities @ grid, grid[0], grid[-1])
    scores = grid_scores(table)
    return {"model": f"myFM ordered probit (rank {d}, {sweeps} it)",
            "seconds": round(seconds, 1), "sweeps_per_second": round(sweeps / seconds, 2),
            "rmse": float(np.sqrt(np.mean((expected - test.rating) ** 2))),
            **{key: scores[key] for key in ("log_score", "rps", "pit_max_deviation")},
            **_level_shares(table, grid)}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--draws", type=int, default=1000)
    parser.add_argument("--tune", type=int, default=300)
    parser.add_argument("--chains", type=int, default=4)
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "ordinal.json"))
    args = parser.parse_args(argv)
    config = FitJobConfig(data=args.data, seed=args.seed, draws=args.draws, tune=args.tune,
                          chains=args.chains, progress=False)
    split, _ = load_split(config)
    # plain BPMF on both sides: the likelihoods alone (implicit feedback:
    # benchmarks/implicit.py)
    gaussian = FitJobConfig(likelihood="gaussian", n_factors=config.n_factors, implicit="none")
    ordinal = FitJobConfig(likelihood="ordinal", n_factors=config.n_factors, implicit="none")
    rows = [bayes_pmf_row("bpmf-gibbs (Gaussian)", gaussian.posterior_spec, split, config,
                          args.seed),
            bayes_pmf_row("bpmf-gibbs-ordinal", ordinal.posterior_spec, split, config,
                          args.seed)]
    try:
        rows.append(myfm_row(split, config, args.seed, config.n_factors))
    except ImportError:
        print("myfm is not installed (pip install '.[bench]'): its row is left out")
    columns = ["model", "rmse", "log_score", "rps", "pit_max_deviation",
               "max_share_gap_points", "sweeps_per_second", "seconds"]
    print(pd.DataFrame(rows)[columns].to_string(index=False, float_format="%.4f"))
    Path(args.out).write_text(json.dumps({"settings": vars(args), "rows": rows}, indent=1))


if __name__ == "__main__":
    main()

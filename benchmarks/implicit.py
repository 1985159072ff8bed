"""Implicit feedback (#19) against plain BPMF and myFM's strongest configurations, on one
split, in one run.

    python benchmarks/implicit.py [--data PATH] [--seed 42] [--draws 400] [--tune 200]
                                  [--chains 2] [--cv K] [--out benchmarks/results/implicit.json]

The split is the issue's: the embedded MovieLens (or --data), rows permuted by
``numpy.random.default_rng(seed)``, the first 90% for training. bayes_pmf's posterior
model (zero-mean Wishart priors; Gaussian with a learned noise, or ordinal) is sampled
by the Gibbs sampler with implicit feedback off ("none"), on the item side ("items":
V_j = X_j + m_j^-1/2 sum of Z over the users who rated j) and on both sides ("both":
also U_i = Y_i + n_i^-1/2 sum of W over the items user i rated) and "both+genres" (also
the items' genres as item features). myFM (when installed)
gets the same information in its strongest form: rank 10, user and item one-hot plus
each user's rated items and each item's raters as 1/sqrt(count)-normalised features
(relation blocks), one prior group per block, Gibbs regression and ordered probit, with
as many sweeps; and the ordered probit with the genres as a third item-side group (with
a row per cold item, so that it predicts those from their genres too). Scores: RMSE of
the posterior-mean (expected) rating, clipped to the
scale, on every held-out rating (cold users and items get each model's own fallback;
myFM's: the bias baseline); log_score and RPS on the rating grid where the model gives a
predictive distribution.

``--cv K`` first chooses the variant the way a user should, without the test part:
K-fold cross-validation on the training part only (same chains), the fold RMSE of each
variant and the one with the lowest mean (``--no-test``: only that). ``--likelihoods``,
``--variants`` and ``--no-myfm`` restrict the rows.
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
import scipy.sparse as sp

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import bayes_pmf as bp  # noqa: E402
from bayes_pmf.analysis.metrics import grid_scores, score  # noqa: E402
from bayes_pmf.result.predictive import held_out_predictions, level_column  # noqa: E402
from bayes_pmf.workflows.config import FitJobConfig  # noqa: E402

VARIANTS = ("none", "items", "both", "both+genres")


def issue_split(data, seed: int):
    """Rows permuted by default_rng(seed), the first 90% for training (the issue's
    split; ``random_split`` holds out the first 10% of its permutation instead)."""
    from bayes_pmf.data.split import _make

    order = np.random.default_rng(seed).permutation(data.n_ratings)
    test = np.zeros(data.n_ratings, dtype=bool)
    test[order[int(0.9 * data.n_ratings):]] = True
    return _make(data, test, "random", {"test_fraction": 0.1, "seed": seed}, "keep")


def gibbs_row(likelihood, implicit, split, args, score_it=True):
    implicit, _, side = implicit.partition("+")  # "both+genres": the items' genres too
    spec = FitJobConfig(likelihood=likelihood, implicit=implicit).posterior_spec
    if side:
        spec = spec.with_(item_features=side)
        implicit = f"{implicit}+{side}"
    began = time.perf_counter()
    result = bp.sample_gibbs(split.train, spec, draws=args.draws, tune=args.tune,
                             chains=args.chains, rng=args.seed, progress=False)
    seconds = time.perf_counter() - began
    row = {"model": f"bayes_pmf Gibbs, {likelihood}, implicit={implicit}",
           "seconds": round(seconds, 1),
           "sweeps_per_second": round(result.settings["draws_per_second"], 2)}
    if score_it:
        scored = held_out_predictions(result, split.test)
        scores = score(scored, split.train, split.test)
        row.update({key: scores[key] for key in ("rmse", "log_score", "rps")})
        table = scored.held_out_table(["mean", "cold_item", "cold_user"])
        cold = table["cold_item"].to_numpy() & ~table["cold_user"].to_numpy()
        predicted = np.clip(table["mean"].to_numpy(), split.train.scale.min,
                            split.train.scale.max)
        row["cold_item_rmse"] = float(np.sqrt(np.mean(
            (predicted[cold] - split.test.rating[cold]) ** 2)))
    else:
        users, items = split.test.id_pairs()  # cold items: from their tags if it has them
        predicted = result.describing_items(split.test.item_info).predict(
            users, items, unknown="prior")
        row["rmse"] = float(np.sqrt(np.mean((predicted - split.test.rating) ** 2)))
    return row


def _relation_blocks(train, implicit: bool, genres=None):
    """myFM's relation blocks: user one-hot (+ rated items), item one-hot (+ raters, + the
    genres as 1/sqrt(count) features). With ``genres`` (tag sets of the training items
    and then of the test's cold items), the item block has a row per cold item too:
    no one-hot, no raters, its genres."""
    n, m = train.n_users, train.n_items
    rows = m if genres is None else len(genres)
    rated = sp.csr_matrix((np.ones(train.n_ratings), (train.user_idx, train.item_idx)),
                          shape=(n, rows))
    user_parts = [sp.identity(n, format="csr")]
    item_parts = [sp.eye(rows, m, format="csr")]
    if implicit:
        user_parts.append(sp.diags(1 / np.sqrt(np.maximum(rated.sum(axis=1).A1, 1))) @ rated)
        item_parts.append(sp.diags(1 / np.sqrt(np.maximum(rated.sum(axis=0).A1, 1)))
                          @ rated.T)
    if genres is not None:
        from bayes_pmf.model.params import tag_matrix

        item_parts.append(tag_matrix(genres, sorted(set().union(*genres[:m])), "sqrt"))
    groups = [p.shape[1] for p in user_parts] + [p.shape[1] for p in item_parts]
    return sp.hstack(user_parts).tocsr(), sp.hstack(item_parts).tocsr(), groups


def myfm_row(split, args, implicit: bool, ordinal: bool, genres: bool = False):
    import myfm
    from myfm import RelationBlock

    from bayes_pmf.model.params import item_tag_sets

    train, test = split.train, split.test
    grid = train.scale.values()
    users, items = test.id_pairs()
    test_users, test_items = train.encode_users(users), train.encode_items(items)
    tags = None
    if genres:  # the cold items get rows after the training items'
        cold_ids = pd.Index(items[test_items < 0]).unique()
        test_items = np.where(test_items >= 0, test_items,
                              train.n_items + cold_ids.get_indexer(items))
        tags = (item_tag_sets(train.item_ids, train.item_info, "genres")
                + item_tag_sets(cold_ids, test.item_info, "genres"))
    user_block, item_block, groups = _relation_blocks(train, implicit, tags)
    known = (test_users >= 0) & (test_items >= 0)
    blocks = [RelationBlock(np.where(known, test_users, 0), user_block),
              RelationBlock(np.where(known, test_items, 0), item_block)]
    train_blocks = [RelationBlock(train.user_idx, user_block),
                    RelationBlock(train.item_idx, item_block)]
    sweeps = args.tune + args.draws
    began = time.perf_counter()
    with contextlib.redirect_stderr(io.StringIO()):
        if ordinal:
            model = myfm.MyFMOrderedProbit(rank=10, random_seed=args.seed)
            levels = np.rint((train.rating - grid[0]) / train.scale.step).astype(int)
            model.fit(None, levels, X_rel=train_blocks, n_iter=sweeps,
                      n_kept_samples=args.draws, group_shapes=groups)
        else:
            model = myfm.MyFMRegressor(rank=10, random_seed=args.seed)
            model.fit(None, train.rating, X_rel=train_blocks, n_iter=sweeps,
                      n_kept_samples=args.draws, group_shapes=groups)
    seconds = time.perf_counter() - began
    fallback = bp.fit_bias_baseline(train).predict(users, items, unknown="prior")
    row = {"model": f"myFM {'ordered probit' if ordinal else 'Gibbs'}, "
                    f"{'+ implicit (both sides)' if implicit else 'plain'}"
                    f"{' + genres' if genres else ''}",
           "seconds": round(seconds, 1), "sweeps_per_second": round(sweeps / seconds, 2)}
    if ordinal:
        probabilities = model.predict_proba(None, blocks)
        predicted = np.clip(probabilities @ grid, grid[0], grid[-1])
        table = pd.DataFrame({"held_out_rating": test.rating[known]})
        for k, value in enumerate(grid):
            table[level_column(value)] = probabilities[known, k]
        scores = grid_scores(table)
        row.update(log_score=scores["log_score"], rps=scores["rps"],
                   note=f"log_score, rps on the {known.sum()} ratings of known users"
                        + (" (cold items by their genres)" if genres else " and items"))
    else:
        predicted = np.clip(model.predict(None, blocks), grid[0], grid[-1])
    predicted = np.where(known, predicted, fallback)
    row["rmse"] = float(np.sqrt(np.mean((predicted - test.rating) ** 2)))
    cold = (train.encode_items(items) < 0) & (test_users >= 0)
    row["cold_item_rmse"] = float(np.sqrt(np.mean((predicted[cold] - test.rating[cold]) ** 2)))
    return row


def cross_validate(split, args) -> pd.DataFrame:
    rows = []
    for fold, inner in enumerate(bp.kfold(split.train, args.cv, rng=args.seed)):
        for likelihood in args.likelihoods:
            for implicit in args.variants:
                row = gibbs_row(likelihood, implicit, inner, args, score_it=False)
                rows.append({"fold": fold, "likelihood": likelihood, "implicit": implicit,
                             "rmse": row["rmse"]})
                print(rows[-1], flush=True)
    table = pd.DataFrame(rows).groupby(["likelihood", "implicit"])["rmse"].agg(
        ["mean", "std"]).sort_values("mean")
    return table


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--draws", type=int, default=400)
    parser.add_argument("--tune", type=int, default=200)
    parser.add_argument("--chains", type=int, default=2)
    parser.add_argument("--cv", type=int, default=0)
    parser.add_argument("--likelihoods", nargs="+", default=["gaussian", "ordinal"])
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS))
    parser.add_argument("--no-test", action="store_true",
                        help="cross-validation only: leave the test part untouched")
    parser.add_argument("--no-myfm", action="store_true")
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "implicit.json"))
    args = parser.parse_args(argv)
    data = bp.load_ratings(args.data) if args.data else bp.load_movielens()
    split = issue_split(data, args.seed)
    print(f"data: {data.source}; {split.train.n_ratings} training, {split.test.n_ratings} "
          f"test ratings; chains {args.chains} x ({args.tune} + {args.draws})", flush=True)
    output = {"settings": vars(args)}
    if args.cv:
        table = cross_validate(split, args)
        print(table.to_string(float_format="%.4f"))
        output["cv"] = table.reset_index().to_dict(orient="records")
    if args.no_test:
        Path(args.out).write_text(json.dumps(output, indent=1))
        return
    rows = []
    for likelihood in args.likelihoods:
        for implicit in args.variants:
            rows.append(gibbs_row(likelihood, implicit, split, args))
            print(rows[-1], flush=True)
    try:
        for implicit, ordinal, genres in ((False, False, False), (True, False, False),
                                          (True, True, False), (True, True, True)) \
                if not args.no_myfm else ():
            rows.append(myfm_row(split, args, implicit, ordinal, genres))
            print(rows[-1], flush=True)
    except ImportError:
        print("myfm is not installed (pip install '.[bench]'): its rows are left out")
    columns = ["model", "rmse", "cold_item_rmse", "log_score", "rps", "sweeps_per_second",
               "seconds"]
    print(pd.DataFrame(rows).reindex(columns=columns).to_string(index=False,
                                                                float_format="%.4f"))
    output["rows"] = rows
    Path(args.out).write_text(json.dumps(output, indent=1))


if __name__ == "__main__":
    main()

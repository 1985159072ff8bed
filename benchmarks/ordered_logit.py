"""Ordered probit or ordered logit (#18)? Chosen on held-out ratings of the training part.

    python benchmarks/ordered_logit.py [--folds 3] [--out FILE]

The main job's point model with the ordinal likelihood and per-user thresholds (fixed
priors at the run's penalties, d = 10: PyMC's MAP, started from ALS), once with the
normal cdf and once with the logistic one at the scale whose sd is the probit's
(``FitJobConfig.pmf_spec``). Each is scored by ``--folds``-fold cross-validation on the
training part of the main job's seed-0 split (what a choice may look at) and then once on
its held-out 10% (what the README reports): RMSE of the expected rating, log score and
RPS of the predictive on the grid. Both links are fitted on the same folds in the same
run. Writes ``results/ordered_logit.json``.
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
from bayes_pmf.data.split import kfold  # noqa: E402
from bayes_pmf.engines.pymc_fit import fit_map  # noqa: E402
from bayes_pmf.provenance import package_versions  # noqa: E402
from bayes_pmf.workflows.config import FitJobConfig  # noqa: E402

LINKS = ("probit", "logit")


def evaluate(train, test, link: str) -> dict:
    spec = FitJobConfig(methods=("als", "map"), ordinal_link=link).pmf_spec
    started = time.perf_counter()
    result = fit_map(train, spec, start="als", rng=0, progress=False)
    seconds = time.perf_counter() - started
    scores = score(result, train, test)
    return {"rmse": scores["rmse"], "log_score": scores["log_score"], "rps": scores["rps"],
            "fit_seconds": seconds}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--folds", type=int, default=3)
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" /
                                             "ordered_logit.json"))
    args = parser.parse_args(argv)
    split = bp.random_split(bp.load_movielens(), 0.1, rng=0)
    rows = []
    for fold, part in enumerate(kfold(split.train, args.folds, rng=0)):
        for link in LINKS:
            row = {"link": link, "fold": fold, **evaluate(part.train, part.test, link)}
            rows.append(row)
            print(f"fold {fold}, {link}: RMSE {row['rmse']:.4f}, log score "
                  f"{row['log_score']:.4f}, RPS {row['rps']:.4f} ({row['fit_seconds']:.0f} s)",
                  flush=True)
    held_out = {link: evaluate(split.train, split.test, link) for link in LINKS}
    print("| link | CV RMSE | CV log score | CV RPS | test RMSE | test log score | test RPS |")
    print("|---|---|---|---|---|---|---|")
    summary = {}
    for link in LINKS:
        mine = [r for r in rows if r["link"] == link]
        cv = {key: float(np.mean([r[key] for r in mine]))
              for key in ("rmse", "log_score", "rps")}
        summary[link] = {"cv": cv, "test": held_out[link]}
        test = held_out[link]
        print(f"| {link} | {cv['rmse']:.4f} | {cv['log_score']:.4f} | {cv['rps']:.4f} | "
              f"{test['rmse']:.4f} | {test['log_score']:.4f} | {test['rps']:.4f} |")
    wins = sum(a["log_score"] > b["log_score"] for a, b in
               zip([r for r in rows if r["link"] == "logit"],
                   [r for r in rows if r["link"] == "probit"]))
    print(f"the logit's log score beat the probit's on {wins} of {args.folds} folds")
    Path(args.out).write_text(json.dumps({"folds": args.folds, "rows": rows,
                                          "summary": summary, "versions": package_versions()},
                                         indent=1))


if __name__ == "__main__":
    main()

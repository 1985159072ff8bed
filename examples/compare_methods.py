"""Baselines, ALS, PyMC MAP and the Gibbs posterior on one split, one table.

    python examples/compare_methods.py
"""

import pandas as pd

import bayes_pmf as bp
from bayes_pmf.engines.gibbs import sample_gibbs
from bayes_pmf.engines.pymc_fit import fit_map

spec = bp.PMFSpec(n_factors=3, sigma=0.6, sigma_u=0.7, sigma_v=0.7, biases=True)
synthetic = bp.make_synthetic(200, 150, 6000, spec, rng=1)
split = bp.random_split(synthetic.data, 0.2, rng=0)
train, test = split.train, split.test

models = {
    "global mean": bp.fit_global_mean(train),
    "bias baseline": bp.fit_bias_baseline(train),
    "ALS (MAP)": bp.als_result(bp.fit_als(train, spec, progress=False), train),
    "PyMC MAP": fit_map(train, spec, progress=False),
    "Gibbs posterior": sample_gibbs(train, spec.with_(prior="fixed", noise="learned"), draws=200,
                                    tune=100, chains=2, progress=False),
}
rows = []
for name, model in models.items():
    scores = bp.score(model, train, test)
    rows.append({"method": name, "rmse": scores["rmse"], "mae": scores["mae"],
                 "coverage_90": scores.get("coverage_90")})
print(pd.DataFrame(rows).to_string(index=False, float_format=lambda v: f"{v:.4f}"))
print(f"noise sigma of the generating model: {spec.sigma}")

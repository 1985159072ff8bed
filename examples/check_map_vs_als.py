"""PyMC's MAP and the NumPy ALS reference find the same optimum of the same model.

    python examples/check_map_vs_als.py
"""

import bayes_pmf as bp
from bayes_pmf.analysis.crosscheck import crosscheck_map

spec = bp.PMFSpec(n_factors=4, sigma=0.5, sigma_u=0.7, sigma_v=0.7, biases=True)
synthetic = bp.make_synthetic(150, 100, 4000, spec, rng=2)
split = bp.random_split(synthetic.data, 0.2, rng=0)
report = crosscheck_map(split.train, split.test, spec, rng=0)
for key in ("objective_als", "objective_map", "objective_rel_diff", "pred_max_abs_diff",
            "grad_norm_at_als", "cold_objective_rel_diff", "map_seconds", "cold_map_seconds"):
    print(f"{key:>24s}: {report[key]:.6g}")
assert abs(report["objective_rel_diff"]) < 1e-6, "MAP and ALS disagree"

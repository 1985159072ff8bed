"""A posterior with its convergence verdict and figures, on the embedded MovieLens.

    python examples/posterior_diagnostics.py [out_dir]
"""

import sys
from pathlib import Path

import bayes_pmf as bp
from bayes_pmf import plots
from bayes_pmf.analysis.diagnostics import convergence_summary
from bayes_pmf.engines.gibbs import sample_gibbs

out = Path(sys.argv[1] if len(sys.argv) > 1 else "reports/runs/example-diagnostics")
out.mkdir(parents=True, exist_ok=True)
split = bp.random_split(bp.load_movielens(), 0.1, rng=0)
spec = bp.PMFSpec.from_lambdas(10, 15.0, biases=True, lambda_user_bias=5, lambda_item_bias=5)
posterior = sample_gibbs(split.train, spec.with_(prior="wishart", noise="learned"), draws=60,
                         tune=40, chains=2, held_out=split.test, progress=False)
print(convergence_summary(posterior, split.test))
print(f"held-out RMSE {bp.score(posterior, split.train, split.test)['rmse']:.4f}")
figures = {
    "calibration": plots.plot_calibration(plots.calibration_data(posterior, split.test)),
    "running_rmse": plots.plot_running_rmse(plots.running_rmse_data(posterior)),
    "ppc_ratings": plots.plot_ppc_ratings(plots.ppc_ratings_data(posterior, split.test)),
}
for name, figure in figures.items():
    figure.savefig(out / f"{name}.png", dpi=100)
print(f"figures in {out}")

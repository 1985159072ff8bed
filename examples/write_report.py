"""Write a reproducibility report (Markdown + self-contained HTML) for your own data, then
rerun it from the config.toml it wrote and check the numbers come back identical.

    python examples/write_report.py [OUT_DIR]
"""

import json
import sys
import tempfile
from pathlib import Path

import bayes_pmf as bp
from bayes_pmf.workflows.config import FitJobConfig, ReportConfig, read_config
from bayes_pmf.workflows.report import write_report
from bayes_pmf.workflows.reproducibility import comparable_metrics

out = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(tempfile.mkdtemp())
# Stand-in for your ratings file: 3,000 ratings drawn from PMF itself, on a half-star grid
# like real ones (the default ordinal model needs a grid; continuous scores take
# FitJobConfig(likelihood="gaussian")).
truth = bp.make_synthetic(150, 80, 3000, bp.PMFSpec(n_factors=3, sigma=0.6, biases=True), rng=4)
frame = truth.data.to_frame()
frame["rating"] = (frame["rating"] * 2).round().clip(1, 10) / 2
ratings_csv = out / "my_ratings.csv"
out.mkdir(parents=True, exist_ok=True)
frame.to_csv(ratings_csv, index=False)

job = FitJobConfig(data=str(ratings_csv), n_factors=3, lambda_=2.0, draws=60, tune=40, chains=2,
                   progress=False)
first = write_report(ReportConfig(job=job, title="PMF on my ratings"), out / "report")
print((first / "report.md").read_text().split("## Held-out accuracy")[1].split("##")[0])

again = write_report(read_config(first / "config.toml"), out / "rerun")
same = comparable_metrics(json.loads((first / "metrics.json").read_text())) == \
    comparable_metrics(json.loads((again / "metrics.json").read_text()))
print(f"report: {first / 'report.html'}; rerun from its config.toml identical: {same}")
assert same

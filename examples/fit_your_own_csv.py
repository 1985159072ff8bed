"""Fit PMF to your own ratings file and predict, with cold start handled explicitly.

    python examples/fit_your_own_csv.py [ratings.csv]

Without an argument it writes a small demo CSV (drawn from the PMF model) and uses it.
Any CSV/TSV with user, item and rating columns works, as do MovieLens files.
"""

import sys
import tempfile
from pathlib import Path

import bayes_pmf as bp

if len(sys.argv) > 1:
    path = Path(sys.argv[1])
else:
    demo = bp.make_synthetic(300, 200, 6000, bp.PMFSpec(n_factors=5, sigma=0.5),
                             rng=0).data.to_frame()
    demo["rating"] = demo["rating"].clip(1, 5).round()  # make it look like 1-5 stars
    path = Path(tempfile.mkdtemp()) / "my_ratings.csv"
    demo.to_csv(path, index=False)

data = bp.load_ratings(path)
print(data, "| ingest:", data.ingest.as_dict())
split = bp.random_split(data, test_fraction=0.1, rng=0)
spec = bp.PMFSpec.from_lambdas(n_factors=5, lambda_u=10, biases=True)
result = bp.als_result(bp.fit_als(split.train, spec, rng=0, progress=False), split.train)
scores = bp.score(result, split.train, split.test)
print(f"held-out RMSE {scores['rmse']:.3f}, MAE {scores['mae']:.3f}, "
      f"{scores['n_cold_scored']} cold-start ratings scored")

user, item = split.train.user_ids[0], split.train.item_ids[0]
print("prediction for a known pair:", result.predict([user], [item], clip=True))
print("for a new user (prior mean):", result.predict(["new user"], [item], unknown="prior"))

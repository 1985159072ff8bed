# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # A research workflow on MovieLens
#
# The embedded MovieLens ratings (100,004 ratings of 9,066 movies by 671 users, half
# stars from 0.5 to 5) from baselines to a full posterior: a seeded hold-out, baselines,
# PMF by ALS and by PyMC MAP, Bayesian PMF by Gibbs sampling, convergence diagnostics on
# identifiable quantities, the posterior predictive against held-out ratings,
# calibration, RMSE by user activity, and one comparison table.
#
# **What you will learn:**
#
# - the research workflow on real ratings: split, baselines, ALS and MAP, the
#   posterior;
# - how to judge convergence on identifiable quantities, not on raw factors;
# - posterior predictive checks and calibration against held-out ratings, and ArviZ's
#   own (why ratings are ordinal and what implicit feedback adds: notebook 06).
#
# *Stored outputs.* The outputs saved in this notebook's `.ipynb` come from the
# short setting the test suite re-runs (`BAYES_PMF_FAST=1`: 2 chains x (60 + 60) sweeps
# instead of 4 x (150 + 200)), so their numbers are rougher than a full run's;
# run it without that variable for the full setting.

# %%
import os

import pandas as pd

import bayes_pmf as bp
from bayes_pmf import plots
from bayes_pmf.analysis.diagnostics import (convergence_summary, heldout_log_predictive_density,
                                   identifiable_draws)
from bayes_pmf.workflows.runfolder import results_table
from bayes_pmf.engines.gibbs import sample_gibbs
from bayes_pmf.engines.pymc_fit import fit_map

FAST = os.environ.get("BAYES_PMF_FAST") == "1"
SEED = 0
CHAINS, TUNE, DRAWS = (2, 60, 60) if FAST else (4, 150, 200)

# %% [markdown]
# ## Data and a seeded split
#
# Every ingest is counted (rows read = used + rejected, by reason) and fingerprinted, so
# a reader can check that their copy of the data is this one.

# %%
ratings = bp.load_movielens()
print(ratings)
print(ratings.describe()["sha256"], ratings.describe()["ingest"])
split = bp.random_split(ratings, 0.1, rng=SEED)
train, test = split.train, split.test
pd.Series(split.describe())

# %% [markdown]
# 339 held-out ratings belong to movies with no training rating (movies rated once).
# They are kept and scored with the model's cold-start prediction rather than dropped.
#
# ## Baselines, PMF by ALS and by PyMC MAP
#
# λ = σ²/σ²_prior = 15 for the factors and 5 for the biases, chosen on a validation split
# inside the training part.

# %%
spec = bp.PMFSpec.from_lambdas(10, 15.0, biases=True, lambda_user_bias=5, lambda_item_bias=5)
models = {
    "global-mean": bp.fit_global_mean(train),
    "bias-baseline": bp.fit_bias_baseline(train, 5, 5),
    "pmf-als": bp.als_result(bp.fit_als(train, spec, rng=SEED, progress=False), train),
}
models["pmf-map"] = fit_map(train, spec, start="als", rng=SEED, progress=False)

# %% [markdown]
# ## The posterior: Bayesian PMF by Gibbs sampling
#
# Conjugate updates of every user's and item's factors given the rest, with a Wishart
# hyperprior on the factor precisions and a Gamma prior on the noise precision. The
# held-out set is only watched (running RMSE per sweep), never fitted to.

# %%
posterior = sample_gibbs(train, spec.with_(prior="wishart", noise="learned"), draws=DRAWS, tune=TUNE, chains=CHAINS, held_out=test, rng=SEED, progress=False)
models["bpmf-gibbs"] = posterior
posterior.idata

# %% [markdown]
# The result is ArviZ's own InferenceData, with the posterior predictive and the pointwise
# log-likelihood of the training ratings, so ArviZ's functions work on it as on a PyMC
# trace: the posterior predictive check of the training ratings, and PSIS-LOO. (The
# package's figures below use the *held-out* ratings, a stricter check: the training
# ratings were fitted.) Already here the Gaussian predictive (a smooth curve) misses how
# ratings heap on whole and half stars: the reason for the ordinal model (notebook 06).

# %%
import arviz as az

az.plot_ppc(posterior.idata, num_pp_samples=40, figsize=(7, 3.5))
# bp.loo is az.loo's PSIS-LOO, vectorised: the same numbers, ten times faster here
print(bp.loo(posterior).elpd_loo.round(1), "= elpd_loo (expected log predictive density, leave-one-out)")

# %% [markdown]
# ## Convergence, judged on identifiable quantities
#
# Raw factors rotate freely between chains, so their R-hat says nothing. The verdict
# uses σ and predicted ratings of held-out and of random pairs. Not U_i·V_j alone: with
# biases it trades with the item biases (U_i + a for every user, c_j − a·V_j for every
# item leaves every prediction as it is), so only the prior pins it.

# %%
report = convergence_summary(posterior, test)
print(report)
print(heldout_log_predictive_density(posterior, test))
plots.plot_rank_identifiable(identifiable_draws(posterior, test));

# %% [markdown]
# ## One table

# %%
results = [{"method": name, **bp.score(model, train, test)} for name, model in models.items()]
table = results_table(results).drop(columns="fit_seconds")
table

# %%
plots.plot_method_comparison(plots.method_comparison_data(results));

# %% [markdown]
# ## Posterior predictive against held-out ratings, and calibration
#
# Real ratings heap on whole stars; the Gaussian model spreads its mass evenly across
# half and whole stars. Intervals are nevertheless calibrated: the 50% and 90% central
# intervals contain close to 50% and 90% of held-out ratings.

# %%
plots.plot_ppc_ratings(plots.ppc_ratings_data(posterior, test));

# %%
plots.plot_predicted_vs_actual(plots.predicted_vs_actual_data(posterior, test));

# %%
plots.plot_calibration({"bpmf-gibbs": plots.calibration_data(posterior, test),
                        "pmf-als (plug-in sigma)": plots.calibration_data(models["pmf-als"], test)});

# %% [markdown]
# ## Where the models differ: RMSE by user activity
#
# The PMF paper's breakdown. Every MovieLens user here rated at least 20 movies, so the
# paper's regime of users with a handful of ratings is absent; the posterior's gain over
# MAP shows in the buckets from 21 ratings up, while the smallest bucket (148 held-out
# ratings) is too noisy to rank the methods.

# %%
users, items = test.id_pairs()
predictions = {name: models[name].predict(users, items, unknown="prior")
               for name in ("bias-baseline", "pmf-als", "bpmf-gibbs")}
plots.plot_rmse_by_activity(bp.rmse_by_activity_table(predictions, train, test));

# %%
plots.plot_running_rmse(plots.running_rmse_data(posterior),
                        reference={"pmf-als": table.set_index("method").loc["pmf-als", "rmse"]});

# %% [markdown]
# ## Ratings are ordinal, and which movies people rate matters
#
# The posterior predictive figure above is the Gaussian model's weak point: held-out
# ratings heap on whole stars, and a normal distribution around each prediction cannot.
# The main job's posterior is therefore an ordered probit on the rating grid with
# implicit feedback; notebook `06_ordinal_and_implicit` builds both up step by step, with
# the posterior predictive before and after each.

# %% [markdown]
# ## Exercises
#
# 1. Rerun the posterior with 4 chains and 4x the sweeps (unset `BAYES_PMF_FAST`):
#   which convergence warnings disappear?
# 2. Compare `az.loo` of the Gibbs posterior with `heldout_log_predictive_density` on
#   the test set: which is larger per rating, and why?
# 3. Drop the biases (`biases=False`) from the Gibbs model: how much of the gain over
#   ALS was the biases'?
# 4. Find the ten held-out ratings with the lowest predictive probability: what do they
#   have in common?

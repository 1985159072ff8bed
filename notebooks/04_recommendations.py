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
# # Recommendations with uncertainty
#
# A posterior over ratings gives more than a ranked list: how sure the model is about each
# entry. This notebook fits Bayesian PMF to the embedded MovieLens and shows top-N lists
# scored by the posterior mean, by the probability of a rating of at least 4 stars and by
# a pessimistic quantile; movies similar to a given movie by their latent vectors;
# and what happens for users the model has never seen, before and after they rate a few
# movies.
#
# **What you will learn:**
#
# - top-N lists by posterior mean, by P(r ≥ 4) and by a pessimistic quantile;
# - intervals on recommendations, similar items, cold-start users;
# - folding in a new user without refitting, and how their uncertainty shrinks.
#
# *Stored outputs.* The outputs saved in this notebook's `.ipynb` come from the
# short setting the test suite re-runs (`BAYES_PMF_FAST=1`: 2 chains x (60 + 60) sweeps
# instead of 4 x (150 + 200)), so their numbers are rougher than a full run's;
# run it without that variable for the full setting.

# %%
import os

import matplotlib.pyplot as plt
import numpy as np

import bayes_pmf as bp
from bayes_pmf.engines.gibbs import sample_gibbs
from bayes_pmf.analysis.recommend import (fold_in_user, folded_rating_draws, predict_folded, recommend,
                                 recommend_many, recommend_new_user, similar_items)

FAST = os.environ.get("BAYES_PMF_FAST") == "1"
SEED = 0

# %%
ratings = bp.load_movielens()
titles = ratings.item_info
spec = bp.PMFSpec.from_lambdas(10, 15.0, biases=True, lambda_user_bias=5, lambda_item_bias=5)
posterior = sample_gibbs(ratings, spec.with_(prior="wishart", noise="learned"), draws=60 if FAST else 200, tune=60 if FAST else 150, chains=2 if FAST else 4, rng=SEED, progress=False)
posterior

# %% [markdown]
# ## Top-10 for one user, three ways
#
# Items the user already rated are never recommended back. `mean` ranks by the posterior
# mean rating; `prob` by P(rating ≥ 4); `quantile` by the 10% quantile of the expected
# rating — an item the model is *sure* the user likes. Uncertain items (rated by few
# people) drop in the last two rankings.

# %%
user = 15
for score in ("mean", "prob", "quantile"):
    print(f"--- score = {score}")
    print(recommend(posterior, user, n=5, score=score, item_info=titles)
          [["rank", "item", "score", "title"]].to_string(index=False))

# %% [markdown]
# The same list with its uncertainty: the 90% interval of each movie's expected rating
# for this user, over posterior draws, and how many people rated the movie.

# %%
top = recommend(posterior, user, n=12, score="mean", item_info=titles)
draws = posterior.mean_draws(np.full(len(top), user), top["item"])
low, high = np.quantile(draws, [0.05, 0.95], axis=0)
counts = ratings.item_counts[ratings.encode_items(top["item"])]
fig, ax = plt.subplots(figsize=(8, 4.5))
y = np.arange(len(top))[::-1]
ax.errorbar(top["score"], y, xerr=[top["score"] - low, high - top["score"]], fmt="o", capsize=3)
ax.set_yticks(y, [f"{t[:38]} ({c} ratings)" for t, c in zip(top["title"], counts)])
ax.set(xlabel="expected rating (stars): posterior mean and 90% interval",
       title=f"Top movies for user {user}, with uncertainty")
fig.tight_layout()

# %% [markdown]
# ## Many users at once
#
# `recommend_many` scores every user in one vectorised pass.

# %%
lists = recommend_many(posterior, ratings.user_ids[:200], n=10, item_info=titles)
print(lists.head(12).to_string(index=False))
print(f"{lists['item'].nunique()} distinct movies in 200 top-10 lists")

# %% [markdown]
# ## Similar movies by latent vectors
#
# Cosine similarity of the item vectors, averaged over posterior draws (a rotation does
# not change a cosine, so the average is meaningful even though the vectors are not
# identified).

# %%
for movie in (260, 1):  # Star Wars (1977), Toy Story (1995)
    print(f"--- like {titles.loc[movie, 'title']}")
    print(similar_items(posterior, movie, n=5, item_info=titles)
          [["rank", "item", "similarity", "title"]].to_string(index=False))

# %% [markdown]
# ## Cold start
#
# A user with no ratings gets the prior-mean ranking (the item biases: the
# well-liked movies for everyone), flagged `cold_user`. After a few ratings the user can
# be folded in without refitting: their factors are drawn from the Gibbs conditional
# given each posterior draw of the movies. The more they rate, the narrower their
# predictions.

# %%
print(recommend(posterior, "someone new", n=5, item_info=titles)
      [["rank", "title", "score", "cold_user"]].to_string(index=False))

sci_fi = [260, 1196, 1210, 2571, 1240, 589, 1200, 541]  # Star Wars ... Alien, Blade Runner
print(recommend_new_user(posterior, sci_fi[:4], [5, 5, 4.5, 5], n=5, item_info=titles)
      [["rank", "title", "score"]].to_string(index=False))

# %%
probe = ratings.item_ids[np.argsort(-ratings.item_counts)[:300]]
widths = []
for k in range(1, len(sci_fi) + 1):
    folded = fold_in_user(posterior, sci_fi[:k], [5.0] * k, rng=SEED)
    widths.append(folded_rating_draws(posterior, folded, probe).std(axis=0).mean())
fig, ax = plt.subplots(figsize=(6, 3.8))
ax.plot(range(1, len(sci_fi) + 1), widths, marker="o")
ax.set(xlabel="ratings given by the new user",
       ylabel="posterior sd of expected rating (stars)",
       title="A new user's uncertainty shrinks as they rate")
fig.tight_layout()
print("predicted for the five most rated movies:",
      np.round(predict_folded(posterior, folded, probe[:5]), 2))

# %% [markdown]
# ## Exercises
#
# 1. Recommend for the same user by mean, by P(r ≥ 4) and by the 10 % quantile: which
#   titles move, and why?
# 2. Fold in a user who rated five horror films 1 star: what is recommended, and how
#   wide are the intervals?
# 3. For a cold-start user, how many ratings does fold-in need before the top 10 stops
#   changing?

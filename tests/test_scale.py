"""The main job is linear in the ratings (#21 item 6): bounded-memory predictive summaries
that equal the direct ones, and the sampling plan that bounds a chain's sweeps and the
draws held in memory. The timings and memory themselves live in
benchmarks/scale_memory.py."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
from scipy.stats import norm

import bayes_pmf as bp
from bayes_pmf.data.ratings import RatingScale
from bayes_pmf.engines.gibbs import sample_gibbs
from bayes_pmf.model.params import predictor_draws
from bayes_pmf.result import predictive
from bayes_pmf.workflows import run_fit_job
from bayes_pmf.workflows.config import (
    AUTO_IMPLICIT_MAX_RANK,
    MIN_BUDGET_TUNE,
    FitJobConfig,
    sampling_plan,
)


def _draws(rng, S=60, n=30, m=20, d=4):
    return {"mu": rng.normal(size=S), "user_bias": rng.normal(size=(S, n)),
            "item_bias": rng.normal(size=(S, m)), "U": rng.normal(size=(S, n, d)),
            "V": rng.normal(size=(S, m, d))}


@pytest.mark.parametrize("chosen", [None, np.array([3, 7, 8, 40, 59])])
def test_predictor_draws_gathers_only_the_pairs_asked_for(chosen):
    rng = np.random.default_rng(0)
    draws = _draws(rng)
    users, items = rng.integers(-1, 30, 500), rng.integers(-1, 20, 500)
    pick = slice(None) if chosen is None else chosen
    known_u, known_i = users >= 0, items >= 0
    u, i = np.maximum(users, 0), np.maximum(items, 0)
    expected = (draws["mu"][pick][:, None]
                + np.where(known_u, draws["user_bias"][pick][:, u], 0.0)
                + np.where(known_i, draws["item_bias"][pick][:, i], 0.0)
                + np.where(known_u & known_i, np.einsum(
                    "spk,spk->sp", draws["U"][pick][:, u], draws["V"][pick][:, i]), 0.0))
    np.testing.assert_array_equal(predictor_draws(draws, users, items, chosen), expected)


def test_plug_in_intervals_computed_exactly_match_draws():
    """The point estimates' intervals come from the normal's quantiles, not from draws:
    they must equal the quantiles of many draws of the same normal, continuous and
    snapped to the half-star grid."""
    scale = RatingScale(0.5, 5.0, 0.5)
    mean = np.array([0.2, 1.26, 3.0, 3.74, 4.9, 5.6])
    sd = np.array([0.3, 0.9, 0.05, 0.9, 0.5, 0.2])
    levels = (0.1, 0.5, 0.9)
    exact = predictive._gaussian_interval_columns(mean, sd, scale, levels)
    draws = mean + sd * np.random.default_rng(1).standard_normal((400_000, len(mean)))
    sampled = predictive._interval_columns(draws, scale, levels)
    for name, values in exact.items():
        if name.startswith("grid_"):
            # discrete quantiles agree exactly unless a cdf sits within MC error of a tail
            assert np.mean(values == sampled[name]) >= 5 / 6, name
        else:
            # a sample quantile's sd is sd * sqrt(p(1-p)/n) / phi(z_p): 4 of them
            tail = (1 - int(name.split("_")[1]) / 100) / 2
            mc_sd = sd * np.sqrt(tail * (1 - tail) / len(draws)) / norm.pdf(norm.ppf(tail))
            np.testing.assert_array_less(np.abs(values - sampled[name]), 4 * mc_sd)


def test_sampled_summaries_in_blocks_are_the_single_pass_ones(monkeypatch, synthetic):
    """Above the memory budget the posterior summaries are computed in blocks of pairs
    with their own random streams: same means exactly, same sd and intervals up to Monte
    Carlo error."""
    split = bp.random_split(synthetic.data, 0.2, rng=0)
    model = sample_gibbs(split.train, synthetic.spec.with_(noise="learned"), draws=100,
                         tune=20, chains=2, progress=False)
    users, items = split.test.id_pairs()
    whole, _ = predictive._sampled_summaries(model, users, items, 0, 200, (0.5,))
    monkeypatch.setattr(predictive, "_SUMMARY_BUDGET", 200 * 37)  # not one pass, but
    monkeypatch.setattr(predictive, "_BLOCK_BUDGET", 200 * 37)  # blocks of 37 pairs
    blocks, stored = predictive._sampled_summaries(model, users, items, 0, 200, (0.5,))
    assert stored.shape[1] == len(users)
    # predictive sd over 200 draws: a sample sd has relative error ~ 1/sqrt(400) = 5%
    np.testing.assert_allclose(blocks["pred_sd"], whole["pred_sd"], rtol=0.3)
    assert abs(np.median(blocks["pred_sd"] / whole["pred_sd"]) - 1) < 0.02
    assert np.max(np.abs(blocks["pred_mean"] - whole["pred_mean"])) < 5 * np.max(
        whole["pred_sd"]) / np.sqrt(200)


def test_lpd_and_level_probabilities_do_not_depend_on_the_block_size(monkeypatch, synthetic):
    """The pointwise lpd and the level probabilities are computed in blocks of pairs from
    one set of draws: any block size gives the same numbers, bit for bit (so the block
    budget bounds memory without moving a committed figure)."""
    users, items = synthetic.data.id_pairs()
    stars = np.clip(np.round((synthetic.data.rating + 3) * 2) / 2, 0.5, 5)  # a half-star grid
    data = bp.RatingsData.from_arrays(users, items, stars)
    split = bp.random_split(data, 0.2, rng=0)
    model = sample_gibbs(split.train, synthetic.spec.with_(likelihood="ordinal"), draws=30,
                         tune=10, chains=2, progress=False)
    users, items = split.test.id_pairs()
    args = (model, users, items)
    whole_lpd = predictive._pointwise_lpd(*args, split.test.rating, 60, 0)
    whole_levels = predictive._level_probability_columns(*args, 60, 0)
    monkeypatch.setattr(predictive, "_BLOCK_BUDGET", 60 * 10 * 7)  # 7 pairs at a time
    assert np.array_equal(predictive._pointwise_lpd(*args, split.test.rating, 60, 0), whole_lpd)
    blocks = predictive._level_probability_columns(*args, 60, 0)
    assert all(np.array_equal(blocks[name], whole_levels[name]) for name in whole_levels)


# the embedded MovieLens' training part: 90,752 ratings, 610 users, 9,127 items
ML = (90_752, 610, 9_127)


def test_sampling_plan_leaves_small_runs_alone():
    config = FitJobConfig(draws=1000, implicit="none")
    plan = sampling_plan(FitJobConfig(draws=1000, draws_memory_gb=0, implicit="none"), *ML)
    assert (plan.draws, plan.tune, plan.thin, plan.notes) == (1000, config.tune, 1, ())
    assert sampling_plan(config, *ML) == plan  # MovieLens: 1.7 of 2 GB
    assert sampling_plan(config, 900_000, 6_666, 1_000).thin == 1  # 10^6 ratings: 1.3 GB
    # 2,000 draws per chain would hold 3.4 GB: every 2nd sweep is kept; the default model
    # also stores the implicit factors W and Z (6.8 GB): every 4th
    plain = sampling_plan(FitJobConfig(implicit="none"), *ML)
    assert (plain.draws, plain.tune, plain.thin) == (1000, 600, 2)
    default = sampling_plan(FitJobConfig(), *ML)
    assert (default.draws, default.tune, default.thin) == (500, 600, 4)
    assert default.implicit == "both"  # "auto" on 610 users
    assert len(default.notes) == 1 and "draws_memory_gb" in default.notes[0]
    # the whole run's sweep budget (4 chains x 2,600 sweeps x 90,752 = 9.4e8) fits
    assert FitJobConfig().sweep_budget >= 4 * 2600 * ML[0]


def test_sampling_plan_bounds_the_runs_sweeps_and_memory_at_ten_million():
    config = FitJobConfig(draws_memory_gb=0.1)
    n_train, n_users, n_items = 9_000_000, 66_666, 10_000
    plan = sampling_plan(config, n_train, n_users, n_items)
    sweeps = plan.tune + plan.draws * plan.thin
    # the budget of 1e9 visits over 4 chains: 28 of the 2,600 sweeps each, burn-in held
    # at its floor, draws shrunk by the budget's share
    share = 1e9 / (n_train * config.chains * (config.tune + config.draws))
    assert plan.tune == MIN_BUDGET_TUNE and plan.draws * plan.thin >= round(
        config.draws * share) - plan.thin
    assert 25 <= sweeps <= 35
    assert config.chains * sweeps * n_train <= 1.2e9  # the budget, and floors' rounding
    # "auto" leaves implicit feedback out at 10,000 items, and says so
    assert plan.implicit == "none" and "no implicit feedback" in plan.notes[0]
    stored = config.chains * plan.draws * (n_users + n_items) * (config.n_factors + 1) * 4
    assert plan.thin >= 2 and stored <= 0.1 * 2**30  # the 0.1 GB of float32 asked for
    assert len(plan.notes) == 3 and "sweep_budget" in plan.notes[1]
    unlimited = sampling_plan(FitJobConfig(sweep_budget=0, draws_memory_gb=0), n_train,
                              n_users, n_items)
    assert (unlimited.draws, unlimited.tune, unlimited.thin) == (config.draws, config.tune, 1)


def test_implicit_auto_follows_the_smaller_side_and_explicit_is_checked_before_work():
    config = FitJobConfig()
    edge = AUTO_IMPLICIT_MAX_RANK
    assert config.implicit_for(50_000, edge) == "both"
    assert config.implicit_for(50_000, edge + 1) == "none"
    assert config.implicit_for(edge + 1, 50_000) == "none"
    assert FitJobConfig(implicit="items").implicit_for(50_000, 50_000) == "items"
    large = SimpleNamespace(n_users=edge + 1, n_items=edge + 1)  # what the rule reads
    spec = FitJobConfig().posterior_spec_for(large)  # the spec the run fits follows it...
    assert not spec.implicit_items and not spec.constrained
    assert FitJobConfig().posterior_spec.implicit_items  # ...the data-blind one is "both"
    with pytest.raises(bp.ConfigError, match="at most 10,000.*--implicit none"):
        sampling_plan(FitJobConfig(implicit="both"), 10**8, 200_000, 20_000)
    # the CLI's help names the same limit
    from bayes_pmf.cli.main import build_parser

    assert f"{edge:,}" in build_parser().format_help() or f"{edge:,}" in " ".join(
        action.help or "" for sub in build_parser()._subparsers._group_actions
        for parser in sub.choices.values() for action in parser._actions)


@pytest.mark.parametrize("name,value", [("sweep_budget", -1.0), ("draws_memory_gb", float("nan")),
                                        ("draws_memory_gb", "1")])
def test_budgets_are_checked(name, value):
    with pytest.raises(bp.ConfigError, match=name):
        FitJobConfig(**{name: value})


def test_thinning_keeps_the_same_chain_and_the_running_mean_of_every_sweep(synthetic):
    """Thinning only chooses which sweeps are stored: every 3rd draw of an unthinned
    chain, and the running held-out RMSE still averages every sweep after burn-in."""
    split = bp.random_split(synthetic.data, 0.2, rng=0)
    spec = synthetic.spec.with_(noise="learned")
    common = dict(tune=5, chains=1, held_out=split.test, rng=4, progress=False)
    every = sample_gibbs(split.train, spec, draws=9, thin=1, **common)
    thinned = sample_gibbs(split.train, spec, draws=3, thin=3, **common)
    np.testing.assert_array_equal(thinned.draws["U"], every.draws["U"][::3])
    np.testing.assert_array_equal(thinned.draws["sigma"], every.draws["sigma"][::3])
    running = lambda m: m.idata.sample_stats["running_test_rmse"].to_numpy()[0]  # noqa: E731
    np.testing.assert_allclose(running(thinned), running(every)[::3], rtol=1e-12)


def test_the_main_job_follows_its_sampling_plan(tmp_path):
    truth = bp.make_synthetic(60, 40, 1500, bp.PMFSpec(n_factors=2), rng=0)
    path = tmp_path / "r.csv"
    truth.data.to_frame().to_csv(path, index=False)
    # continuous synthetic ratings: the Gaussian model (the ordinal one needs a grid)
    config = FitJobConfig(data=str(path), n_factors=2, methods=("gibbs",), draws=40, tune=10,
                          likelihood="gaussian", implicit="none",
                          chains=2, draws_memory_gb=2 * 40 * 100 * 3 * 4 / 2.5 / 2**30,
                          progress=False)
    outcome = run_fit_job(config)
    plan = outcome.metrics["sampling"]
    assert plan["thin"] == 3 and plan["draws"] == 13 and plan["tune"] == 10
    model = outcome.models["bpmf-gibbs"]
    assert model.idata.posterior.sizes["draw"] == 13
    assert model.settings["thin"] == 3
    # every stage records its time, the peak so far and what this process held at its end
    # (in MB: a Python process with NumPy and PyMC loaded holds 50 MB to a few GB)
    stages = outcome.metrics["stages"]
    assert [row["stage"] for row in stages][:2] == ["read and split", "fit global-mean"]
    assert "fit bpmf-gibbs" in [row["stage"] for row in stages]
    peaks = [row["peak_rss_mb"] for row in stages]
    assert peaks == sorted(peaks)  # a peak so far never falls
    assert all(50 < row["rss_mb"] <= row["peak_rss_mb"] < 20_000 for row in stages), stages


@pytest.mark.parametrize("n", [1, 2, 99, 400, 1000, 1001])
def test_intervals_from_one_sort_are_numpys_quantiles(n):
    """The summaries sort the draws once and read every level's quantiles off the order
    statistics: exactly np.quantile's linear (continuous) and inverted-cdf (snapped to
    the grid) quantiles."""
    from bayes_pmf.result.predictive import CALIBRATION_LEVELS

    scale = RatingScale(0.5, 5.0, 0.5)
    draws = np.random.default_rng(n).normal(3.0, 1.2, (n, 7))
    draws[:, 0] = 3.25  # ties, and a value halfway between two grid values
    columns = predictive._interval_columns(draws, scale, CALIBRATION_LEVELS)
    snapped = scale.round(draws)
    for level in CALIBRATION_LEVELS:
        tag, tail = predictive.level_tag(level), (1 - level) / 2
        lower, upper = np.quantile(draws, [tail, 1 - tail], axis=0)
        grid_lower, grid_upper = np.quantile(snapped, [tail, 1 - tail], axis=0,
                                             method="inverted_cdf")
        np.testing.assert_allclose(columns[f"lower_{tag}"], lower, rtol=0, atol=1e-12)
        np.testing.assert_allclose(columns[f"upper_{tag}"], upper, rtol=0, atol=1e-12)
        np.testing.assert_array_equal(columns[f"grid_lower_{tag}"], grid_lower)
        np.testing.assert_array_equal(columns[f"grid_upper_{tag}"], grid_upper)

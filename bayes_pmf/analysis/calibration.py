"""Simulation-based calibration (SBC; Talts et al. 2018) of the Gibbs sampler, for any
model it samples, the main job's included.

Each replicate draws parameters and ratings from the spec's whole model
(:func:`~bayes_pmf.model.synthetic.draw_from_prior`), samples the posterior from those
ratings and records the rank of every true value among the posterior draws. If the
sampler draws from the right posterior, each rank is uniform on 0..L (L draws): a
chi-square test per quantity, Bonferroni-corrected over the quantities, checks it. A
sampler that is biased, too narrow or too wide shows as a slope, a U or a hump in the
rank histogram.

Quantities ranked: the noise sd ``sigma`` (learned noise), ``mu`` (global mean; needs
``spec.mu_prior``), the prior scales of the factors ``sigma_u``, ``sigma_v`` (sqrt of
trace(Lambda^-1)/d) and of the biases (hierarchical priors), the **balance** log(|U|_F /
|V|_F) (the direction the likelihood cannot see: only the prior and the scale and
balance moves set it), the linear predictors mu + b_i + c_j + U_i.V_j of a few observed
and unobserved (user, item) pairs (the expected ratings of the Gaussian model), and the
ordinal model's free cut points; with implicit feedback the size log |W|_F (|Z|_F) of the
implicit factors and their prior scale sigma_w (sigma_z).

Thinned single chains keep the draws nearly independent, which the uniformity test
assumes; the replicates are seeded from one seed, so any subset (``reps``) can be
computed separately (in parallel processes) and the parts joined.
"""

from __future__ import annotations

import multiprocessing as mp
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats

from ..engines.gibbs import sample_gibbs
from ..errors import ConfigError, check_count, check_seed
from ..model.synthetic import draw_from_prior


@dataclass(frozen=True)
class CalibrationResult:
    """Ranks (replicate x quantity) of the true values among ``n_draws`` posterior draws."""

    ranks: pd.DataFrame
    n_draws: int

    def uniformity(self, bins: int = 10, alpha: float = 0.01) -> pd.DataFrame:
        """Per quantity: chi-square test of uniform ranks in ``bins`` equal bins, its
        p-value, the Bonferroni-adjusted p-value (x the number of quantities) and
        whether it passes at ``alpha``."""
        rows = []
        for name in self.ranks.columns:
            counts = np.bincount(self.ranks[name].to_numpy() * bins // (self.n_draws + 1),
                                 minlength=bins)
            statistic, p_value = stats.chisquare(counts)
            adjusted = min(1.0, p_value * self.ranks.shape[1])
            rows.append({"quantity": name, "chi2": float(statistic), "p_value": float(p_value),
                         "adjusted_p": adjusted, "passed": adjusted > alpha,
                         "counts": counts.tolist()})
        return pd.DataFrame(rows)

    def join(self, other: "CalibrationResult") -> "CalibrationResult":
        """The ranks of two parts of one calibration run (same settings, other replicates)."""
        if other.n_draws != self.n_draws or list(other.ranks.columns) != list(self.ranks.columns):
            raise ConfigError("only parts of one calibration run (same draws and quantities) "
                              "can be joined")
        return CalibrationResult(pd.concat([self.ranks, other.ranks]).sort_index(),
                                 self.n_draws)


def _scale(precision) -> float:
    """sqrt(trace(Lambda^-1)/d) for a scalar, vector or matrix precision."""
    precision = np.asarray(precision, dtype=float)
    if precision.ndim < 2:
        return float(np.sqrt(np.mean(1.0 / precision)))
    return float(np.sqrt(np.trace(np.linalg.inv(precision)) / len(precision)))


def _unobserved_pairs(data, count: int, generator) -> tuple[np.ndarray, np.ndarray]:
    seen = set(zip(data.user_idx.tolist(), data.item_idx.tolist()))
    users, items = [], []
    while len(users) < count:
        user, item = int(generator.integers(data.n_users)), int(generator.integers(data.n_items))
        if (user, item) not in seen:
            seen.add((user, item))
            users.append(user)
            items.append(item)
    return np.array(users), np.array(items)


def _replicate_ranks(spec, seed, sizes, sampler: dict, pairs: int) -> dict[str, int]:
    data_seed, chain_seed, pair_seed = seed.spawn(3)
    drawn = draw_from_prior(spec, *sizes, rng=np.random.default_rng(data_seed))
    data, truth, hyper = drawn.data, drawn.truth, drawn.hyper
    result = sample_gibbs(data, spec, chains=1, rng=int(chain_seed.generate_state(1)[0]),
                          progress=False, **sampler)
    posterior = result.draws
    values, true = {}, {}
    if spec.noise == "learned":
        values["sigma"], true["sigma"] = posterior["sigma"], hyper["sigma"]
    if spec.global_mean:
        values["mu"], true["mu"] = posterior["mu"], truth.mu
    if spec.prior != "fixed":
        for side, short in (("user", "u"), ("item", "v")):
            if spec.n_factors:
                values[f"sigma_{short}"] = posterior[f"sigma_{short}"]
                true[f"sigma_{short}"] = _scale(hyper[f"{side}_precision"])
            if spec.biases:
                values[f"sigma_{side}_bias"] = posterior[f"sigma_{side}_bias"]
                true[f"sigma_{side}_bias"] = 1.0 / np.sqrt(hyper[f"{side}_bias_precision"])
    for implicit, name, short in ((spec.constrained, "W", "w"),
                                  (spec.user_features is not None, "Psi", "w"),
                                  (spec.implicit_items, "Z", "z"),
                                  (spec.item_features is not None, "Phi", "z")):
        if not implicit:
            continue
        # the implicit factors' size (the W / Z step and their moves set it)
        values[f"log_norm_{name}"] = np.log(np.linalg.norm(posterior[name], axis=(1, 2)))
        true[f"log_norm_{name}"] = float(np.log(np.linalg.norm(hyper[name])))
        if (name == "Phi" and spec.implicit_items) or (name == "Psi" and spec.constrained):
            continue  # Z's and Phi's prior is one (W's and Psi's): its scale is Z's row
        if spec.prior != "fixed":
            key = "implicit_precision" if name in ("W", "Psi") else "implicit_item_precision"
            values[f"sigma_{short}"], true[f"sigma_{short}"] = (posterior[f"sigma_{short}"],
                                                                _scale(hyper[key]))
    for side, on in (("user", spec.user_tag_biases), ("item", spec.item_tag_biases)):
        if not on:
            continue  # the tags' bias regressors: two tags' and the first row's bias
        beta = hyper[f"{side}_tag_bias"]
        for k in range(min(2, len(beta))):
            values[f"{side}_tag_bias_{k}"] = posterior[f"{side}_tag_bias"][:, k]
            true[f"{side}_tag_bias_{k}"] = beta[k]
        values[f"{side}_bias_0"] = posterior[f"{side}_bias"][:, 0]
        true[f"{side}_bias_0"] = (truth.user_bias if side == "user" else truth.item_bias)[0]
    if spec.n_factors:
        values["balance"] = np.log(np.linalg.norm(posterior["U"], axis=(1, 2))
                                   / np.linalg.norm(posterior["V"], axis=(1, 2)))
        true["balance"] = float(np.log(np.linalg.norm(truth.user_factors)
                                       / np.linalg.norm(truth.item_factors)))
    if spec.ordinal:
        for k in range(1, len(hyper["cutpoints"])):
            values[f"cutpoint_{k}"] = posterior["cutpoints"][:, k]
            true[f"cutpoint_{k}"] = hyper["cutpoints"][k]
    if spec.ordinal and spec.learned_thresholds:
        values["threshold_sd"], true["threshold_sd"] = (posterior["threshold_sd"],
                                                        hyper["threshold_sd"])
    if spec.ordinal and spec.user_thresholds:  # two users' own, low, middle and top
        last = len(hyper["cutpoints"]) - 1
        for user in (0, 1):
            for k in sorted({1, (last + 1) // 2, last}):
                values[f"user_{user}_cutpoint_{k}"] = posterior["user_cutpoints"][:, user, k]
                true[f"user_{user}_cutpoint_{k}"] = hyper["user_cutpoints"][user, k]
    generator = np.random.default_rng(pair_seed)
    observed = generator.choice(data.n_ratings, pairs, replace=False)
    for kind, (users, items) in (
            ("observed", (data.user_idx[observed], data.item_idx[observed])),
            ("unobserved", _unobserved_pairs(data, pairs, generator))):
        means = result.eta_draws(data.user_ids[users], data.item_ids[items])
        expected = truth.linear_predictor(users, items)
        for k in range(pairs):
            values[f"{kind}_rating_{k}"], true[f"{kind}_rating_{k}"] = means[:, k], expected[k]
    return {name: int(np.sum(np.asarray(values[name]) < true[name])) for name in values}


def simulation_based_calibration(
    spec,
    *,
    n_reps: int = 100,
    n_users: int = 20,
    n_items: int = 12,
    n_ratings: int = 120,
    draws: int = 99,
    thin: int = 4,
    tune: int = 200,
    pairs: int = 2,
    rng: int = 0,
    reps=None,
    sampler_options: dict | None = None,
    processes: int = 1,
) -> CalibrationResult:
    """SBC of :func:`~bayes_pmf.engines.gibbs.sample_gibbs` for the model ``spec`` (see
    the module docstring): ``n_reps`` replicates on ``n_users`` x ``n_items`` problems
    with ``n_ratings`` ratings, one chain of ``tune`` + ``draws`` x ``thin`` sweeps each
    (further sampler settings in ``sampler_options``). ``reps`` (a range) computes only
    those replicates of the run seeded by ``rng``. ``processes`` > 1 shares the
    replicates out over that many forked processes (where the platform forks; else they
    run here): each replicate has its own seed, so the ranks are the same either way."""
    check_seed(rng)
    for name, value in (("n_reps", n_reps), ("draws", draws), ("thin", thin), ("pairs", pairs),
                        ("processes", processes)):
        check_count(name, value)
    sampler = {"draws": draws, "thin": thin, "tune": tune, **(sampler_options or {})}
    chosen = list(range(n_reps) if reps is None else reps)
    job = (spec, rng, n_reps, (n_users, n_items, n_ratings), sampler, pairs)
    if processes > 1 and len(chosen) > 1 and "fork" in mp.get_all_start_methods():
        parts = [chosen[k::processes] for k in range(min(processes, len(chosen)))]
        with ProcessPoolExecutor(len(parts), mp_context=mp.get_context("fork")) as pool:
            rows = {}
            for part in pool.map(_replicates, [job] * len(parts), parts):
                rows.update(part)
        rows = {rep: rows[rep] for rep in sorted(rows)}
    else:
        rows = _replicates(job, chosen)
    return CalibrationResult(pd.DataFrame.from_dict(rows, orient="index"), draws)


def _replicates(job: tuple, reps: list[int]) -> dict[int, dict]:
    """The ranks of replicates ``reps`` of the calibration run ``job`` (its spec, seed,
    replicate count, problem shape, sampler settings and probe pairs)."""
    spec, rng, n_reps, shape, sampler, pairs = job
    seeds = np.random.SeedSequence(rng).spawn(n_reps)
    return {rep: _replicate_ranks(spec, seeds[rep], shape, sampler, pairs) for rep in reps}

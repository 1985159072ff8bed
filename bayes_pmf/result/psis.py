"""PSIS-LOO and the mean's effective sample size, vectorised over quantities.

ArviZ 0.2x runs both one quantity at a time in a Python loop: ``az.loo`` on a posterior
of the embedded MovieLens (90,000 training ratings, about 10⁵ parameters) spends a
minute or more in ``ess(posterior, method="mean")`` (for the relative efficiency) and
in ``psislw`` (a generalized Pareto fit per rating). These are the same computations
(Vehtari, Gelman & Gabry 2017; Vehtari et al. 2024; ArviZ's ``_ess``, ``_psislw`` and
``_gpdfit``) done on whole blocks of quantities at once, in NumPy only: the numbers
agree with ArviZ's to rounding (tests/test_psis.py), in a fraction of the time
(benchmarks/README.md, "PSIS-LOO").

:func:`bayes_pmf.result.idata.loo` wraps them into ArviZ's ``ELPDData``, so
``az.compare`` reads the result as it reads ``az.loo``'s.
"""

from __future__ import annotations

import numpy as np
from scipy.fft import next_fast_len
from scipy.special import logsumexp

# values per block (quantities x draws x the working copies): bounds the memory a call
# adds, whatever the number of ratings
_BLOCK_VALUES = 1 << 22

_PRIOR_BS = 3   # the empirical-Bayes GPD fit's prior (Zhang & Stephens 2009; ArviZ's)
_PRIOR_K = 10


def _blocks(n: int, per_row: int):
    rows = max(1, _BLOCK_VALUES // max(per_row, 1))
    for start in range(0, n, rows):
        yield slice(start, min(n, start + rows))


def ess_mean(draws: np.ndarray) -> np.ndarray:
    """Effective sample size of the mean for each quantity: ``draws`` is
    ``(quantity, chain, draw)``; the chains are split in halves, the autocorrelations
    combined across chains and summed by Geyer's initial monotone sequence, as
    ``az.ess(..., method="mean")`` does one quantity at a time. NaN where a quantity has
    a missing draw or the chains have fewer than 4 draws; the number of draws where a
    quantity is constant."""
    draws = np.asarray(draws, dtype=float)
    n_quantities, n_chains, n_draws = draws.shape
    out = np.full(n_quantities, np.nan)
    if n_draws < 4:
        return out
    for block in _blocks(n_quantities, 6 * n_chains * n_draws):
        out[block] = _ess_block(draws[block])
    return out


def _ess_block(draws: np.ndarray) -> np.ndarray:
    half = draws.shape[2] // 2
    split = np.concatenate([draws[:, :, :half], draws[:, :, -half:]], axis=1)
    _, n_chains, n = split.shape
    centred = split - split.mean(axis=2, keepdims=True)
    size = next_fast_len(2 * n)
    spectrum = np.fft.rfft(centred, n=size, axis=2)
    spectrum *= np.conjugate(spectrum)
    acov = np.fft.irfft(spectrum, n=size, axis=2)[:, :, :n] / n
    mean_acov = acov.mean(axis=1)                       # (quantity, lag)
    mean_var = mean_acov[:, 0] * n / (n - 1.0)
    var_plus = mean_var * (n - 1.0) / n
    if n_chains > 1:
        var_plus = var_plus + np.var(split.mean(axis=2), axis=1, ddof=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        rho = 1.0 - (mean_var[:, None] - mean_acov) / var_plus[:, None]
    rho[:, 0] = 1.0
    tau = _geyer_tau(rho, n)
    total = n_chains * n
    tau = np.maximum(tau, 1 / np.log10(total))
    ess = total / tau
    constant = (split.max(axis=(1, 2)) - split.min(axis=(1, 2))) < np.finfo(float).resolution
    ess[constant] = total
    ess[np.isnan(split).any(axis=(1, 2))] = np.nan
    return ess


def _geyer_tau(rho: np.ndarray, n: int) -> np.ndarray:
    """-1 + 2 Σ of the autocorrelations kept by Geyer's initial positive sequence (pairs
    of lags summed while positive), made monotone (each pair no larger than the one
    before), plus the lag after the last pair when it is kept, quantity by quantity as
    ArviZ's loop keeps them."""
    n_quantities = rho.shape[0]
    n_pairs = (n + 1) // 2
    padded = np.zeros((n_quantities, 2 * n_pairs + 2))
    padded[:, :n] = rho
    pair = padded[:, 0:2 * n_pairs:2] + padded[:, 1:2 * n_pairs:2]   # pair j: lags 2j, 2j+1
    # ArviZ runs pair j = 1, 2, ... while the previous pair's sum is positive and its
    # lag 2j - 1 < n - 3; the pairs run ("bodies") are 1..executed
    most = max(0, int(np.ceil((n - 2) / 2)) - 1)        # j with 2j - 1 < n - 3
    j = np.arange(n_pairs)
    allowed = (j >= 1) & (j <= most)
    stops = (pair <= 0) | (np.isnan(pair))
    # executed = first j >= 1 whose pair sum is <= 0 (that pair runs, then stops), capped
    # at `most`; 0 when pair 0 already stops the loop
    stop_at = np.where(stops & allowed[None, :], j[None, :], most + 1).min(axis=1)
    executed = np.where(stops[:, 0], 0, np.minimum(stop_at, most))
    # the kept pairs 0..executed-1, made monotone by a running minimum
    running = np.minimum.accumulate(np.where(np.isnan(pair), np.inf, pair), axis=1)
    kept = j[None, :] < executed[:, None]
    total = np.where(kept, running, 0.0).sum(axis=1)
    # lag 2*executed is added when the last pair was stored (sum >= 0) or it is positive
    last = np.take_along_axis(padded, (2 * executed)[:, None], axis=1)[:, 0]
    last_pair = np.take_along_axis(pair, np.minimum(executed, n_pairs - 1)[:, None],
                                   axis=1)[:, 0]
    keep_last = (executed == 0) | (last_pair >= 0) | (last > 0)
    tau = -1.0 + 2.0 * total + np.where(keep_last, last, 0.0)
    tau[np.isnan(rho).any(axis=1)] = np.nan
    return tau


def relative_efficiency(posterior_draws) -> float:
    """ArviZ's relative efficiency for PSIS-LOO: the mean over every posterior quantity
    of its mean's effective sample size, over the number of draws (1 for one chain).
    ``posterior_draws`` yields arrays ``(chain, draw, ...)``."""
    total, count, n_samples, n_chains = 0.0, 0, None, None
    for values in posterior_draws:
        values = np.asarray(values, dtype=float)
        n_chains, n_draws = values.shape[:2]
        n_samples = n_chains * n_draws
        flat = np.moveaxis(values.reshape(n_chains, n_draws, -1), 2, 0)
        ess = ess_mean(flat)
        total += ess.sum()
        count += ess.size
    if n_chains is None or n_chains == 1:
        return 1.0
    return total / count / n_samples


def pareto_smoothed_log_weights(log_ratios: np.ndarray, reff: float = 1.0):
    """PSIS (normalised) of each row of ``log_ratios`` (``(observation, sample)``): the
    largest ``min(S/5, 3 sqrt(S/reff))`` ratios of a row are replaced by the expected
    order statistics of a generalized Pareto fitted to them, then truncated at the
    largest raw ratio. Returns the smoothed log weights and each row's Pareto shape k
    (inf where the tail has 4 values or fewer)."""
    log_ratios = np.asarray(log_ratios, dtype=float)
    n_obs, n_samples = log_ratios.shape
    cutoff = int(np.ceil(min(n_samples / 5.0, 3 * (n_samples / reff) ** 0.5)))
    weights = np.empty_like(log_ratios)
    shape = np.empty(n_obs)
    for block in _blocks(n_obs, 4 * n_samples):
        weights[block], shape[block] = _psis_block(log_ratios[block], cutoff)
    return weights, shape


def _psis_block(x: np.ndarray, cutoff: int):
    x = x - x.max(axis=1, keepdims=True)
    n_obs, n_samples = x.shape
    order = np.argsort(x, axis=1, kind="stable")
    ordered = np.take_along_axis(x, order, axis=1)
    threshold = np.maximum(ordered[:, n_samples - cutoff - 1], np.log(np.finfo(float).tiny))
    tail_len = (ordered > threshold[:, None]).sum(axis=1)
    shape = np.full(n_obs, np.inf)
    for length in np.unique(tail_len):
        if length <= 4:
            continue
        rows = np.flatnonzero(tail_len == length)
        tail = np.exp(ordered[rows, n_samples - length:]) - np.exp(threshold[rows])[:, None]
        k, sigma = _gpd_fit(tail)
        shape[rows] = k
        smooth = np.isfinite(k)
        if not smooth.any():
            continue
        rows, k, sigma = rows[smooth], k[smooth], sigma[smooth]
        quantiles = _gpd_quantiles(np.arange(0.5, length) / length, k, sigma)
        with np.errstate(invalid="ignore"):
            smoothed = np.log(quantiles + np.exp(threshold[rows])[:, None])
        ordered[rows, n_samples - length:] = smoothed
    ordered = np.where(ordered > 0, 0.0, ordered)
    ordered -= logsumexp(ordered, axis=1, keepdims=True)
    out = np.empty_like(ordered)
    np.put_along_axis(out, order, ordered, axis=1)
    return out, shape


def _gpd_fit(tail: np.ndarray):
    """Zhang & Stephens' empirical-Bayes estimate of the generalized Pareto's shape k and
    scale sigma for each row of sorted exceedances ``tail`` (rows of one length), with a
    weak prior pulling k towards 0.5, as ArviZ's ``_gpdfit``."""
    n = tail.shape[1]
    m = 30 + int(n ** 0.5)
    b = 1 - np.sqrt(m / (np.arange(1, m + 1, dtype=float) - 0.5))
    b = b[None, :] / (_PRIOR_BS * tail[:, int(n / 4 + 0.5) - 1])[:, None]
    b += 1 / tail[:, -1][:, None]
    k = np.log1p(-b[:, :, None] * tail[:, None, :]).mean(axis=2)         # (row, m)
    length_scale = n * (np.log(-(b / k)) - k - 1)
    weights = 1 / np.exp(length_scale[:, None, :] - length_scale[:, :, None]).sum(axis=2)
    weights = np.where(weights >= 10 * np.finfo(float).eps, weights, 0.0)
    weights /= weights.sum(axis=1, keepdims=True)
    b_post = (b * weights).sum(axis=1)
    k_post = np.log1p(-b_post[:, None] * tail).mean(axis=1)
    sigma = -k_post / b_post
    k_post = (n * k_post + _PRIOR_K * 0.5) / (n + _PRIOR_K)
    return k_post, sigma


def _gpd_quantiles(probs: np.ndarray, k: np.ndarray, sigma: np.ndarray) -> np.ndarray:
    """The generalized Pareto's quantile function at ``probs`` for each row's (k, sigma):
    NaN rows where sigma <= 0 (as ArviZ's ``_gpinv``)."""
    k, sigma = k[:, None], sigma[:, None]
    tiny = np.abs(k) < np.finfo(float).eps
    with np.errstate(divide="ignore", invalid="ignore"):
        general = np.expm1(-k * np.log1p(-probs)[None, :]) / k
    values = np.where(tiny, -np.log1p(-probs)[None, :], general) * sigma
    return np.where(sigma > 0, values, np.nan)


def loo_pointwise(log_likelihood: np.ndarray, reff: float) -> dict:
    """PSIS-LOO from ``log_likelihood`` (``(chain, draw, observation)``): each
    observation's leave-one-out log predictive density ``loo_i``, its Pareto k, and the
    totals ``elpd_loo``, ``se`` and ``p_loo`` as ``az.loo(scale="log")`` reports them."""
    log_likelihood = np.asarray(log_likelihood, dtype=float)
    n_chains, n_draws, n_obs = log_likelihood.shape
    n_samples = n_chains * n_draws
    loo_i = np.empty(n_obs)
    pareto_k = np.empty(n_obs)
    lppd = 0.0
    for block in _blocks(n_obs, 6 * n_samples):
        rows = log_likelihood[:, :, block].reshape(n_samples, -1).T      # (obs, sample)
        weights, pareto_k[block] = pareto_smoothed_log_weights(-rows, reff)
        loo_i[block] = logsumexp(weights + rows, axis=1)
        lppd += float((logsumexp(rows, axis=1) - np.log(n_samples)).sum())
    elpd = loo_i.sum()   # NumPy floats, as az.loo's (``.round(1)`` works on them)
    return {"loo_i": loo_i, "pareto_k": pareto_k, "elpd_loo": elpd,
            "se": (n_obs * np.var(loo_i)) ** 0.5, "p_loo": np.float64(lppd) - elpd,
            "n_samples": n_samples, "n_data_points": n_obs,
            "good_k": min(1 - 1 / np.log10(n_samples), 0.7)}

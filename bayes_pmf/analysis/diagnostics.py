"""Convergence diagnostics on identifiable quantities, and predictive model comparison.

The posterior of PMF is invariant to U -> U R, V -> V R for any orthogonal R (rotations
and sign flips of the latent space), so chains wander between equivalent factor
orientations and R-hat of a raw entry U[i, k] can be far above 1 while every predicted
rating has converged. Diagnostics therefore go on quantities the likelihood identifies:
sigma, predicted ratings for held-out pairs and expected ratings of random pairs, and,
in models without biases, entries of U V^T. :func:`raw_factor_rhat` exists only to show
the contrast.

With biases, U_i.V_j itself is not identified either: (U_i + a for every user,
c_j - a.V_j for every item) changes every U_i.V_j and no prediction, so only the prior
pins it, as it pins mu against the average bias.

The held-out predicted ratings the verdict follows are read from the result (stored by
:func:`~bayes_pmf.result.predictive.held_out_predictions`), as is the held-out lpd.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import xarray as xr

from ..result import idata as idata_io
from ..result.predictive import choose_monitored, held_out_predictions, stored_predictions

RHAT_MAX = 1.01
ESS_MIN_PER_CHAIN = 100
# Scalars the likelihood pins down. mu, sigma_u and sigma_v are left out of the verdict:
# mu trades with the average bias and (under BPMF) with mu_U.mu_V, and U -> cU, V -> V/c
# moves sigma_u against sigma_v without changing any prediction.
_SCALARS = ("sigma",)


def _by_chain(result, flat: np.ndarray) -> np.ndarray:
    posterior = result.idata.posterior
    return flat.reshape(posterior.sizes["chain"], posterior.sizes["draw"], *flat.shape[1:])


def identifiable_draws(result, test=None, *, n_pairs: int = 50,
                       rng=0) -> xr.Dataset:
    """Draws (chain, draw, ...) of the identifiable quantities: sigma, predicted ratings
    (mu + b_i + c_j + U_i.V_j) of the seeded held-out pairs the result's stored
    predictions follow (dim ``pair``, coords their positions in the held-out set; stored
    first from ``test`` if the result has none) and expected ratings of random (user,
    item) pairs, and, for models without biases, entries of U V^T for those pairs (with
    biases they trade with the biases: module docstring)."""
    posterior = result.idata.posterior
    variables = {name: posterior[name] for name in _SCALARS if name in posterior}
    generator = np.random.default_rng(rng)
    monitored = idata_io.monitored_predictions(result.idata)
    if monitored is None and test is not None:
        monitored = idata_io.monitored_predictions(
            held_out_predictions(result, test, rng=rng).idata)
    if monitored is not None:
        # the random pairs below come from the generator after the monitored pairs were
        # chosen (the same seeded sequence whether or not they were stored earlier)
        _, generator = choose_monitored(int(test.n_ratings) if test is not None
                                        else _held_out_size(result), rng, n_pairs)
        variables["predicted_rating"] = monitored
    if "U" in posterior and posterior.sizes["latent"] > 0:
        draws = result.draws
        n_u, n_i = draws["U"].shape[1], draws["V"].shape[1]
        u = generator.integers(0, n_u, n_pairs)
        i = generator.integers(0, n_i, n_pairs)
        if not result.spec.biases:
            dots = np.einsum("spk,spk->sp", draws["U"][:, u], draws["V"][:, i])
            variables["UVt"] = (("chain", "draw", "uv_pair"), _by_chain(result, dots))
        means = result.mean_draws(u, i, by_index=True)
        variables["expected_rating"] = xr.DataArray(
            _by_chain(result, means), dims=("chain", "draw", "uv_pair"),
            coords={"uv_user": ("uv_pair", np.asarray(result.user_ids[u])),
                    "uv_item": ("uv_pair", np.asarray(result.item_ids[i]))})
    return xr.Dataset(variables)


def _held_out_size(result) -> int:
    held_out = result.held_out
    return 0 if held_out is None else len(held_out[1])


@dataclass
class ConvergenceReport:
    """A verdict with its reasons, and the ArviZ summary behind it."""

    converged: bool
    reasons: list[str]
    summary: pd.DataFrame
    divergences: int | None = None
    details: dict = field(default_factory=dict)

    def __str__(self) -> str:
        verdict = "converged" if self.converged else "NOT converged"
        lines = [f"{verdict}: " + ("; ".join(self.reasons) if self.reasons else "all checks pass")]
        lines += [f"  {k}: {v}" for k, v in self.details.items()]
        return "\n".join(lines)

    def as_dict(self) -> dict:
        return {"converged": self.converged, "reasons": self.reasons,
                "divergences": self.divergences, **self.details}


def convergence_summary(result, test=None, *,
                        n_pairs: int = 50, rng=0, rhat_max: float = RHAT_MAX,
                        ess_min_per_chain: int = ESS_MIN_PER_CHAIN) -> ConvergenceReport:
    """R-hat, bulk/tail ESS over the identifiable quantities, divergences for NUTS; the
    verdict fails when any R-hat exceeds ``rhat_max``, any ESS is below
    ``ess_min_per_chain`` x chains, or NUTS diverged."""
    result.require_draws(4, "convergence diagnostics")
    dataset = identifiable_draws(result, test, n_pairs=n_pairs, rng=rng)
    summary = idata_io.diagnostics_summary(dataset)
    chains = result.idata.posterior.sizes["chain"]
    ess_min = ess_min_per_chain * chains
    reasons = []
    rhat = summary["r_hat"].to_numpy(dtype=float)
    # every R-hat undefined (draws constant in some chain): no worst one, and no warning
    worst_rhat = float("nan") if np.isnan(rhat).all() else float(np.nanmax(rhat))
    if not np.isfinite(worst_rhat) or worst_rhat > rhat_max:
        bad = summary.index[~(summary["r_hat"] <= rhat_max)]
        worst = summary["r_hat"].fillna(np.inf).idxmax()
        reasons.append(f"R-hat above {rhat_max} for {len(bad)} of {len(summary)} quantities "
                       f"(worst {worst_rhat:.3f}, for {worst})")
    for column in ("ess_bulk", "ess_tail"):
        low = summary.index[~(summary[column] >= ess_min)]
        if len(low):
            lowest = summary[column].fillna(-np.inf).idxmin()
            reasons.append(f"{column} below {ess_min} ({ess_min_per_chain} per chain) for "
                           f"{len(low)} quantities (lowest {summary[column].min():.0f}, "
                           f"for {lowest})")
    if chains < 2:
        reasons.append("one chain only: R-hat is the split-chain version; run >= 2 chains")
    divergences = None
    diverging = idata_io.sample_stat(result.idata, "diverging")
    if diverging is not None:
        divergences = int(diverging.sum())
        if divergences:
            reasons.append(f"{divergences} divergent NUTS transitions")
    details = {"chains": chains, "draws_per_chain": int(result.idata.posterior.sizes["draw"]),
               "quantities": len(summary), "max_rhat": worst_rhat,
               "min_ess_bulk": float(summary["ess_bulk"].min()),
               "min_ess_tail": float(summary["ess_tail"].min())}
    bfmi = idata_io.bfmi_min(result.idata)
    if bfmi is not None:
        details["bfmi_min"] = bfmi
    converged = not [r for r in reasons if not r.startswith("one chain")] and chains >= 2
    return ConvergenceReport(converged, reasons, summary, divergences, details)


def raw_factor_rhat(result, n_entries: int = 50, rng=0) -> np.ndarray:
    """R-hat of raw entries of U: meaningless (rotation), shown only for contrast."""
    generator = np.random.default_rng(rng)
    U = result.idata.posterior["U"]
    users = generator.integers(0, U.sizes["user"], n_entries)
    latent = generator.integers(0, U.sizes["latent"], n_entries)
    values = U.to_numpy()[:, :, users, latent]
    return np.array([idata_io.rhat(values[:, :, k]) for k in range(n_entries)])


# -- predictive comparison ---------------------------------------------------------------

def heldout_log_predictive_density(result, test=None) -> dict:
    """Sum and mean over held-out ratings of log (1/S) sum_s p(r | draw s): the held-out
    lpd, higher is better; comparable across methods on the same test set. Read from the
    result's stored predictions (computed from ``test`` if absent)."""
    _, table = stored_predictions(result, test)
    pointwise = table["lpd"].to_numpy()
    return {"lpd": float(pointwise.sum()), "lpd_per_rating": float(pointwise.mean())}


def _log_density_draws(result, data, max_samples: int) -> np.ndarray:
    """(samples x ratings) log N(r | E[r | draw], sigma_draw^2) on the likelihood's scale,
    for the first ``max_samples`` draws."""
    samples = np.arange(min(max_samples, result.n_samples))
    users, items = data.id_pairs()
    return result.log_likelihood_draws(users, items, data.rating, samples=samples)


def log_likelihood_group(result, train) -> xr.Dataset:
    """Pointwise log-likelihood of the training ratings for every draw (chain, draw, obs);
    large (draws x ratings), so computed on request."""
    log_density = _log_density_draws(result, train, max_samples=result.n_samples)
    return xr.Dataset({"rating": (("chain", "draw", "obs"), _by_chain(result, log_density))},
                      coords={"obs": np.arange(train.n_ratings)})


def loo(result, train=None):
    """PSIS-LOO of a sampled result on its training ratings: ArviZ's ``ELPDData`` with
    the numbers ``az.loo(result.idata)`` gives, computed vectorised (seconds instead of
    minutes at 10^5 ratings; ``az.compare`` reads it). ``train`` is needed only when the
    result holds no pointwise log-likelihood. Pareto k > 0.7 flags ratings whose removal
    changes the posterior a lot (typically the only rating of a user or item, whose
    factors it alone determines): there the LOO estimate is unreliable."""
    if "log_likelihood" in result.idata.groups():
        return idata_io.loo(result.idata)
    if train is None:
        raise ValueError("this result holds no pointwise log-likelihood: pass train=, the "
                         "training ratings it was fitted to")
    return idata_io.loo(result.idata, log_likelihood_group(result, train))

"""Gibbs against NUTS on the model the main job samples (#17 item 3): zero-mean Wishart
priors (Bartlett-parameterised in PyMC), Gamma bias precisions, a learned noise and the
flat-prior global mean, on a small real subset of the embedded MovieLens. Posterior
means of sigma, of the learned scales, of mu and of held-out expected ratings agree
within Monte Carlo error (z-scores from both samplers' effective sample sizes); a Gibbs
sampler with a deliberately broken move does not.

Marked ``expensive``: the two tests take about ten minutes here, so the default test run (and
CI) deselects it; run it with ``python -m pytest -m expensive -s`` (results in
benchmarks/README.md). What CI runs instead proves the same chain in two cheaper links:
the PyMC twin's log density equals the Gibbs sampler's joint density for every prior
family (tests/test_twins.py), and the Gibbs sampler is calibrated on that model
(tests/test_calibration.py)."""

from __future__ import annotations

import arviz as az
import numpy as np
import pytest

import bayes_pmf as bp
from bayes_pmf.engines import gibbs
from bayes_pmf.engines.gibbs import sample_gibbs

SPEC = bp.PMFSpec.hierarchical(n_factors=2)
# the same with the ordinal likelihood (#18: global cut points, sigma fixed)
ORDINAL_SPEC = bp.PMFSpec.hierarchical(n_factors=2, likelihood="ordinal")
SCALARS = ("sigma", "mu", "sigma_u", "sigma_v", "sigma_user_bias", "sigma_item_bias",
           "sigma_w", "sigma_z")


def default_spec(train) -> bp.PMFSpec:
    """The model ``bayes-pmf fit`` samples with every default (ordinal likelihood, implicit
    feedback on both sides, zero-mean Wishart priors), at d = 2."""
    from bayes_pmf.workflows.config import FitJobConfig

    return FitJobConfig(n_factors=2).posterior_spec_for(train)


@pytest.fixture(scope="module")
def subset():
    """The 90 most active users' ratings of the 30 items they rated most (about 2,000
    ratings; more users than items, as in MovieLens' rows, so that the balance moves'
    Jacobian |det A|^(n - m) matters), split 85/15 with a seed. Small because NUTS
    crawls along the model's rotation ridges (tree depth 6-7, step 0.01-0.03): on
    200 x 80 at d = 3 it needs about 0.6 s per iteration, too long for CI."""
    data = bp.load_movielens()
    users = np.argsort(-data.user_counts)[:90]
    keep = np.isin(data.user_idx, users)
    counts = np.bincount(data.item_idx[keep], minlength=data.n_items)
    items = np.argsort(-counts)[:30]
    small = data.take(keep & np.isin(data.item_idx, items))
    return bp.random_split(small, 0.15, rng=0)


@pytest.fixture(scope="module")
def nuts(subset):
    from bayes_pmf.engines.pymc_fit import sample_nuts

    return sample_nuts(subset.train, SPEC, draws=400, tune=400, chains=2, rng=3,
                       progress=False)  # nutpie when installed, PyMC otherwise


def _summaries(result, test, pairs=25):
    """Posterior mean and its Monte Carlo standard error (sd / sqrt(ESS)) of the scalar
    quantities and of the expected ratings of the first held-out pairs."""
    users, items = test.id_pairs()
    chains = result.idata.posterior.sizes["chain"]
    quantities = {name: result.draws[name] for name in SCALARS if name in result.draws}
    if "cutpoints" in result.draws:  # the free ones
        cut = result.draws["cutpoints"]
        quantities.update({f"cutpoint_{k}": cut[:, k] for k in range(1, cut.shape[1])})
    if "user_cutpoints" in result.draws:  # two users' own, middle and top
        own = result.draws["user_cutpoints"]
        middle, top = own.shape[2] // 2, own.shape[2] - 1
        quantities.update({f"user_{u}_cutpoint_{k}": own[:, u, k]
                           for u in (0, 1) for k in (middle, top)})
    predicted = result.mean_draws(users[:pairs], items[:pairs], unknown="prior")
    quantities.update({f"pair_{k}": predicted[:, k] for k in range(pairs)})
    out = {}
    for name, values in quantities.items():
        by_chain = np.asarray(values, dtype=float).reshape(chains, -1)
        ess = float(az.ess(by_chain))
        out[name] = (by_chain.mean(), by_chain.std() / np.sqrt(ess), by_chain.std())
    return out


def _z_scores(first, second) -> dict[str, float]:
    return {name: abs(first[name][0] - second[name][0])
            / np.hypot(first[name][1], second[name][1]) for name in first}


def _gibbs(subset, spec=SPEC):
    return sample_gibbs(subset.train, spec, draws=1000, tune=200, chains=2, rng=4,
                        progress=False)


@pytest.mark.expensive
def test_gibbs_and_nuts_agree_on_the_main_jobs_model(subset, nuts):
    assert int(nuts.idata.sample_stats["diverging"].sum()) == 0
    g, n = _summaries(_gibbs(subset), subset.test), _summaries(nuts, subset.test)
    z = _z_scores(g, n)
    ratios = np.array([g[name][2] / n[name][2] for name in g])
    print(f"\nGibbs vs NUTS: max |z| {max(z.values()):.2f} ({max(z, key=z.get)}), "
          f"median |z| {np.median(list(z.values())):.2f}, sd ratio median "
          f"{np.median(ratios):.3f} (range {ratios.min():.2f}-{ratios.max():.2f})")
    # 31 quantities: |z| < 3.5 for each if both samplers are right (a 1-in-2,000 event
    # per quantity, so about 1.5% that any one of them exceeds it by chance)
    assert max(z.values()) < 3.5, z
    # posterior sds agree too: each estimate is off by ~1/sqrt(2 ESS) (5-10% here)
    assert 0.85 < np.median(ratios) < 1.15, ratios


@pytest.mark.expensive
def test_a_broken_gibbs_move_disagrees_with_nuts(subset, nuts, monkeypatch):
    """The comparison has power: the balance moves with their Jacobian dropped shift the
    factor scales, far outside Monte Carlo error."""
    density = gibbs._collapsed_wishart_log_density
    monkeypatch.setattr(gibbs, "_collapsed_wishart_log_density",
                        lambda gram_u, gram_v, log_det, n, m: density(gram_u, gram_v, 0.0, n, m))
    z = _z_scores(_summaries(_gibbs(subset), subset.test), _summaries(nuts, subset.test))
    print(f"\nbroken Gibbs vs NUTS: z(sigma_u) {z['sigma_u']:.1f}, z(sigma_v) {z['sigma_v']:.1f}")
    assert max(z["sigma_u"], z["sigma_v"]) > 6, z


def _assert_agreement(label: str, subset, spec, expected=(),
                      parameterization="centered") -> None:
    """NUTS on the PyMC twin of ``spec`` (written ``parameterization``) against the Gibbs
    sampler on ``subset``: every summary (``expected`` among them) within |z| < 3.5, the
    median sd ratio within 0.85-1.15 (the criteria of the first test); the figures are
    printed."""
    from bayes_pmf.engines.pymc_fit import sample_nuts

    nuts = sample_nuts(subset.train, spec, draws=400, tune=400, chains=2, rng=3,
                       progress=False, parameterization=parameterization)
    g = _summaries(_gibbs(subset, spec), subset.test)
    n = _summaries(nuts, subset.test)
    assert set(expected) <= set(g) == set(n)
    z = _z_scores(g, n)
    ratios = np.array([g[name][2] / n[name][2] for name in g])
    print(f"\n{label}, Gibbs vs NUTS: {len(z)} quantities, max |z| {max(z.values()):.2f} "
          f"({max(z, key=z.get)}), median |z| {np.median(list(z.values())):.2f}, sd ratio "
          f"median {np.median(ratios):.3f} (range {ratios.min():.2f}-{ratios.max():.2f}), "
          f"{int(nuts.idata.sample_stats['diverging'].sum())} divergences")
    assert max(z.values()) < 3.5, z
    assert 0.85 < np.median(ratios) < 1.15, ratios


@pytest.mark.expensive
def test_gibbs_and_nuts_agree_on_the_ordinal_model(subset):
    """The ordinal model (#18) on the same subset: PyMC's OrderedProbit twin sampled by
    NUTS against the data-augmentation Gibbs sampler; same criteria as above."""
    _assert_agreement("ordinal model", subset, ORDINAL_SPEC, ["cutpoint_1"])


@pytest.mark.expensive
def test_gibbs_and_nuts_agree_on_the_ordinal_model_with_user_thresholds(subset):
    """Per-user thresholds (#18) on the same subset: the twin's log gap offsets sampled
    by NUTS against the Gibbs sampler's moves of the users' cut points; same criteria,
    two users' middle and top cut points among the quantities. Measured 2026-12-04: 42
    quantities, max |z| 2.50 (sigma_user_bias), median |z| 0.61, sd ratio median 1.026
    (0.78-1.11), 0 divergences."""
    _assert_agreement("ordinal model, user thresholds", subset,
                      ORDINAL_SPEC.with_(thresholds="user"), ["user_1_cutpoint_8"])


@pytest.mark.expensive
def test_gibbs_and_nuts_agree_on_the_default_model(subset):
    """The model every default of ``bayes-pmf fit`` gives (#19: the ordinal likelihood
    with implicit feedback on both sides, U = Y + M W and V = X + M' Z, Wishart priors)
    on the same subset: the PyMC twin sampled by NUTS against the Gibbs sampler; same
    criteria as above, over the scalars (with sigma_w and sigma_z), the free cut points
    and the held-out expected ratings. NUTS samples the noncentered twin (the same model,
    tests/test_twins.py): on the centred one it under-sampled large sigma_u (0.529
    against Gibbs' 0.563-0.568, z 3.5-3.9, its divergences all at sigma_u 0.58-0.68;
    1,141 s). Measured 2026-12-04 (nutpie; 526 s with the Gibbs run, 10 divergences):
    max |z| 2.73 (mu), median |z| 0.71, sd ratio median 0.998 (0.94-1.12); with per-user
    thresholds, the default since (two users' middle and top cut points among 44
    quantities; 2 divergences): max |z| 1.96, median |z| 0.34, sd ratio median 0.987
    (0.85-1.18)."""
    spec = default_spec(subset.train)
    assert spec.ordinal and spec.constrained and spec.implicit_items and spec.prior == "wishart"
    _assert_agreement("default model", subset, spec, ["sigma_w", "sigma_z", "cutpoint_1"],
                      parameterization="noncentered")

"""One model, several engines: for every prior family the Gibbs sampler samples, the PyMC
model built from the same PMFSpec has the same joint density (#17 item 1).

The sampler's density is :func:`bayes_pmf.engines.gibbs.joint_log_density` (the density
whose conditionals it draws from); PyMC's is its compiled ``logp`` without the
transforms' Jacobians, i.e. the density of the model's own variables. The Wishart
precisions are PyMC variables through Bartlett's decomposition (chi-square diagonal c_k,
normal lower triangle), so PyMC's density is over (c, z) rather than Lambda: the change of
variables adds log |dLambda / d(c, z)| = sum_k (d - k - 1) log L_kk (k from 0), which the
test adds. Everything else must agree up to one constant per model.
"""

from __future__ import annotations

import numpy as np
import pytest

import bayes_pmf as bp
from bayes_pmf.engines.gibbs import joint_log_density
from bayes_pmf.model.params import item_tag_vocabulary
from bayes_pmf.model.pymc_model import build_model

FAMILIES = ("fixed", "spherical", "diagonal", "wishart", "normal-wishart")


@pytest.fixture(scope="module")
def tiny():
    spec = bp.PMFSpec(n_factors=3, sigma=0.5, biases=True)
    return bp.make_synthetic(14, 11, 90, spec, rng=5).data


def _state(values: dict, spec) -> tuple[dict, float]:
    """The sampler's state from PyMC's variables, and the Bartlett Jacobian term."""
    names = (("Y",) if spec.user_additive else ("U",)) + (("W",) if spec.constrained else ()) + (
        ("Psi",) if spec.user_features else ()) + (
        ("X",) if spec.item_additive else ("V",)) + (("Z",) if spec.implicit_items else ()) + (
        ("Phi",) if spec.item_features else ())
    state = {name: values[name] for name in names + ("mu", "user_bias", "item_bias",
                                                     "cutpoints", "user_tag_bias",
                                                     "item_tag_bias") if name in values}
    if spec.noise == "learned":
        state["sigma"] = values["sigma"]
    jacobian = 0.0
    d = spec.n_factors
    sides = ((("user", "u"), ("item", "v"))
             + ((("implicit", "w"),) if spec.user_additive else ())
             + ((("implicit_item", "z"),) if spec.item_additive else ()))
    for side, short in sides:
        if spec.prior == "fixed":
            continue
        if not side.startswith("implicit"):
            state[f"{side}_bias_precision"] = values[f"sigma_{side}_bias_precision"]
        if spec.prior == "spherical":
            state[f"{side}_precision"] = values[f"sigma_{short}_precision"]
        elif spec.prior == "diagonal":
            state[f"{side}_precision"] = values[f"sigma_{short}_latent_precision"]
        else:
            state[f"{side}_precision"] = values[f"precision_{short}"]
            roots = np.sqrt(values[f"bartlett_{short}_diag"])
            jacobian += float(np.sum((d - np.arange(d) - 1) * np.log(roots)))
            if spec.prior == "normal-wishart" and not side.startswith("implicit"):
                state[f"{side}_mean"] = values[f"mean_{short}"]
    return state, jacobian


def _random_points(data, spec, n, rng, parameterization="centered", raw_jacobian=True):
    """PyMC's log density (without the transforms' Jacobians) at ``n`` random points near
    the twin's initial point, each with the sampler's state at that point and the
    log-Jacobian of the Bartlett parameterisation (and, for the noncentered twin, of
    the map from its standard normal draws to the factors)."""
    model = build_model(data, spec, parameterization=parameterization)
    logp = model.compile_logp(jacobian=False)
    names = [v.name for v in model.free_RVs + model.deterministics]
    values_of = model.compile_fn(model.replace_rvs_by_values([model[n] for n in names]),
                                 inputs=model.value_vars,
                                 point_fn=True, on_unused_input="ignore")
    generator = np.random.default_rng(rng)
    start = model.initial_point()
    for _ in range(n):
        # cut points moved less, so that they stay above the fixed first one
        point = {k: v + generator.normal(0.0, 0.1 if "cutpoints" in k else 0.4, np.shape(v))
                 for k, v in start.items()}
        values = dict(zip(names, values_of(point)))
        state, jacobian = _state(values, spec)
        if parameterization == "noncentered" and raw_jacobian:
            jacobian += _raw_jacobian(values, spec, data)
        yield float(logp(point)), state, jacobian


def _raw_jacobian(values: dict, spec, data) -> float:
    """log |d factors / d raw| of the noncentered twin, up to a constant: each row is
    L^-T e (Wishart families: -1/2 log|Lambda| per row, and for the Normal-Wishart's mean
    too) or scale * e (d log scale per row, per dimension for "diagonal")."""
    if spec.user_features:
        from bayes_pmf.model.params import user_tag_vocabulary

        rows = (data.n_items if spec.constrained else 0) + len(
            user_tag_vocabulary(data, spec.user_feature_columns))
        sides = (("Y", "u", data.n_users), ("user_additive", "w", rows))
    elif spec.constrained:
        sides = (("Y", "u", data.n_users), ("W", "w", data.n_items))
    else:
        sides = (("U", "u", data.n_users),)
    if spec.item_additive:
        rows = (data.n_users if spec.implicit_items else 0) + (
            len(item_tag_vocabulary(data, spec.item_features)) if spec.item_features else 0)
        sides += (("X", "v", data.n_items), ("item_additive", "z", rows))
    else:
        sides += (("V", "v", data.n_items),)
    total = 0.0
    for name, short, rows in sides:
        if spec.prior in ("wishart", "normal-wishart"):
            with_mean = spec.prior == "normal-wishart" and short in ("u", "v")
            total -= 0.5 * (rows + with_mean) * np.linalg.slogdet(
                values[f"precision_{short}"])[1]
        elif spec.prior == "spherical":
            total += rows * spec.n_factors * np.log(values[f"sigma_{short}"])
        elif spec.prior == "diagonal":
            total += rows * np.sum(np.log(values[f"sigma_{short}_latent"]))
    return float(total)


@pytest.mark.parametrize("noise", ["fixed", "learned"])
@pytest.mark.parametrize("family", FAMILIES)
def test_pymc_twin_has_the_samplers_joint_density(tiny, family, noise):
    spec = bp.PMFSpec(n_factors=3, prior=family, noise=noise, mu_prior=(3.0, 1.5)
                      if family == "wishart" else None)
    differences, scale = [], []
    for theirs, state, jacobian in _random_points(tiny, spec, 6, rng=0):
        differences.append(theirs - joint_log_density(tiny, spec, state) - jacobian)
        scale.append(abs(theirs))
    # one constant per model: the normalising constants, nothing that depends on the point
    spread = np.ptp(differences)
    assert spread <= 1e-8 * max(scale), (family, noise, differences)


@pytest.mark.parametrize("family, likelihood", [(family, "gaussian") for family in FAMILIES]
                         + [("wishart", "ordinal")])
def test_implicit_feedback_twin_has_the_samplers_joint_density(family, likelihood):
    """Implicit feedback on both sides (U = Y + M W, V = X + M' Z, SVD++'s 1/sqrt(n)
    normalisation), with W's and Z's own priors in each family, on both likelihoods:
    the sampler's density is PyMC's up to a constant."""
    spec = bp.PMFSpec(n_factors=3, prior=family, constrained=True, implicit_items=True,
                      implicit_norm="sqrt", likelihood=likelihood,
                      noise="learned" if likelihood == "gaussian" else "fixed")
    data = bp.make_synthetic(14, 11, 90, bp.PMFSpec(n_factors=3, sigma=0.5,
                                                    likelihood=likelihood), rng=5).data
    differences, scale = [], []
    for theirs, state, jacobian in _random_points(data, spec, 6, rng=2):
        differences.append(theirs - joint_log_density(data, spec, state) - jacobian)
        scale.append(abs(theirs))
    # PyMC's normal log-cdf is accurate to ~2e-6 per term (tests/test_ordinal.py), so two
    # points of the ordinal model may differ by 2 x 2e-6 per rating
    tolerance = (2 * 2e-6 * data.n_ratings if likelihood == "ordinal"
                 else 1e-8 * max(scale))
    assert np.ptp(differences) <= tolerance, (family, likelihood, differences)
    # power: the count normalisation in the sampler's density is another model
    counted = [theirs - joint_log_density(data, spec.with_(implicit_norm="count"), state)
               - jacobian for theirs, state, jacobian in _random_points(data, spec, 3, rng=3)]
    assert np.ptp(counted) > 1e-3


@pytest.mark.parametrize("family, likelihood", [(family, "gaussian") for family in FAMILIES]
                         + [("wishart", "ordinal")])
def test_the_noncentered_twin_is_the_same_model(family, likelihood):
    """build_model(parameterization="noncentered") (what NUTS samples for the default
    model) writes the factors as scale * e or L^-T e with e standard normal: its density
    over (e, rest) is the sampler's joint density over (factors, rest) times the map's
    Jacobian, up to a constant, with implicit feedback on both sides; without the
    Jacobian it is not (power)."""
    spec = bp.PMFSpec(n_factors=3, prior=family, constrained=True, implicit_items=True,
                      implicit_norm="sqrt", likelihood=likelihood,
                      noise="learned" if likelihood == "gaussian" else "fixed")
    data = bp.make_synthetic(14, 11, 90, bp.PMFSpec(n_factors=3, sigma=0.5,
                                                    likelihood=likelihood), rng=5).data
    differences, without, scale = [], [], []
    for theirs, state, jacobian in _random_points(data, spec, 6, rng=4,
                                                  parameterization="noncentered"):
        differences.append(theirs - joint_log_density(data, spec, state) - jacobian)
        scale.append(abs(theirs))
    for theirs, state, jacobian in _random_points(data, spec, 6, rng=4, raw_jacobian=False,
                                                  parameterization="noncentered"):
        without.append(theirs - joint_log_density(data, spec, state) - jacobian)
    tolerance = (2 * 2e-6 * data.n_ratings if likelihood == "ordinal"
                 else 1e-8 * max(scale))  # as in the test above
    assert np.ptp(differences) <= tolerance, (family, likelihood, differences)
    if family != "fixed":  # the fixed family's Jacobian is a constant
        assert np.ptp(without) > 1e-3


def test_a_noncentered_start_is_the_point_given():
    """point_from_params on the noncentered twin: the factors it implies are the
    FactorParams' (so a NUTS run starts where it is told), in every family."""
    from bayes_pmf.model.params import FactorParams
    from bayes_pmf.model.pymc_model import point_from_params

    data = bp.make_synthetic(14, 11, 90, bp.PMFSpec(n_factors=3, sigma=0.5), rng=5).data
    generator = np.random.default_rng(0)
    params = FactorParams(generator.normal(size=(data.n_users, 3)),
                          generator.normal(size=(data.n_items, 3)), 3.0,
                          generator.normal(size=data.n_users), generator.normal(size=data.n_items))
    for family in FAMILIES:
        spec = bp.PMFSpec(n_factors=3, prior=family, constrained=family != "fixed")
        model = build_model(data, spec, parameterization="noncentered")
        point = point_from_params(model, params, spec)
        factors = model.compile_fn(model.replace_rvs_by_values([model["U"], model["V"]]),
                                   inputs=model.value_vars, on_unused_input="ignore")(
            {v.name: point[v.name] for v in model.value_vars})
        np.testing.assert_allclose(factors[0], params.user_factors, atol=1e-12)
        np.testing.assert_allclose(factors[1], params.item_factors, atol=1e-12)


def tagged(data, rng=0):
    """``data`` with genre-like tags on its items (0-3 of five tags each, one tag
    carried by no item: it must be left out of Phi's rows)."""
    import pandas as pd

    generator = np.random.default_rng(rng)
    tags = ["Comedy", "Drama", "Horror", "Noir", "War"]
    values = ["|".join(sorted(generator.choice(tags[:4], generator.integers(0, 4),
                                               replace=False)))
              for _ in range(data.n_items)]
    values[0] = "(no genres listed)"
    data.item_info = pd.DataFrame({"genres": values}, index=data.item_ids)
    return data


@pytest.mark.parametrize("family, implicit, likelihood", [
    ("wishart", True, "gaussian"), ("wishart", False, "ordinal"), ("spherical", True, "gaussian"),
    ("fixed", False, "gaussian"), ("diagonal", True, "gaussian")])
@pytest.mark.parametrize("parameterization", ["centered", "noncentered"])
def test_item_features_twin_has_the_samplers_joint_density(family, implicit, likelihood,
                                                           parameterization):
    """Item features (V = X [+ M' Z] + G Phi, Phi's rows and Z's under one prior): the
    sampler's density is PyMC's up to a constant, centred and noncentered; a sampler
    density that leaves the tags out (V = X [+ M' Z]) is another model (power)."""
    spec = bp.PMFSpec(n_factors=3, prior=family, constrained=True, implicit_items=implicit,
                      item_features="genres", implicit_norm="sqrt", likelihood=likelihood,
                      noise="learned" if likelihood == "gaussian" else "fixed")
    data = tagged(bp.make_synthetic(14, 11, 90, bp.PMFSpec(n_factors=3, sigma=0.5,
                                                           likelihood=likelihood), rng=5).data)
    assert list(item_tag_vocabulary(data, "genres")) == ["Comedy", "Drama", "Horror", "Noir"]
    differences, without, scale = [], [], []
    for theirs, state, jacobian in _random_points(data, spec, 6, rng=2,
                                                  parameterization=parameterization):
        assert state["Phi"].shape == (4, 3)
        differences.append(theirs - joint_log_density(data, spec, state) - jacobian)
        scale.append(abs(theirs))
        untagged = dict(state, X=state["X"] + (item_tag_matrix_of(data, spec) @ state["Phi"]))
        without.append(theirs - joint_log_density(
            data, spec.with_(item_features=None, implicit_items=implicit), untagged) if
            implicit else 0.0)
    tolerance = (2 * 2e-6 * data.n_ratings if likelihood == "ordinal"
                 else 1e-8 * max(scale))  # as above
    assert np.ptp(differences) <= tolerance, (family, likelihood, differences)
    if implicit:  # the same effective factors without Phi's prior terms: not a constant
        assert np.ptp(without) > 1e-3


def item_tag_matrix_of(data, spec):
    from bayes_pmf.model.params import item_tag_sets, tag_matrix

    return tag_matrix(item_tag_sets(data.item_ids, data.item_info, "genres"),
                           item_tag_vocabulary(data, "genres"), spec.implicit_norm)


def test_the_twin_detects_a_wrong_hyperprior(tiny):
    """The comparison has power: the sampler's density with the Wishart's degrees of
    freedom off by one (|Lambda|^0 instead of |Lambda|^-1/2) no longer matches PyMC's."""
    spec = bp.PMFSpec(n_factors=3, prior="wishart", noise="learned")
    differences = []
    for theirs, state, jacobian in _random_points(tiny, spec, 4, rng=1):
        wrong = sum(0.5 * np.linalg.slogdet(state[f"{side}_precision"])[1]
                    for side in ("user", "item"))
        differences.append(theirs - joint_log_density(tiny, spec, state) - jacobian - wrong)
    assert np.ptp(differences) > 1e-3


def test_mu_prior_reaches_every_engine(tiny):
    """mu ~ N(m0, s0^2) is the same model in ALS (its penalty), PyMC MAP and Gibbs."""
    spec = bp.PMFSpec(n_factors=2, mu_prior=(0.0, 0.05))  # pulls mu hard towards 0
    als = bp.fit_als(tiny, spec, progress=False, tol=1e-10, max_sweeps=2000)
    flat = bp.fit_als(tiny, spec.with_(mu_prior=None), progress=False, tol=1e-10,
                      max_sweeps=2000)
    mu_als = float(als.draws["mu"][0])
    assert abs(mu_als) < abs(float(flat.draws["mu"][0])) / 3
    from bayes_pmf.engines.pymc_fit import fit_map

    pymc_map = fit_map(tiny, spec, start="als", progress=False)
    assert abs(float(pymc_map.draws["mu"][0]) - mu_als) < 1e-4

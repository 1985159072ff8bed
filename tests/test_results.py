import numpy as np
import pytest

import bayes_pmf as bp
from bayes_pmf import (
    ResultFileError,
    UnknownIdError,
    als_result,
    fit_als,
    fit_bias_baseline,
    load_result,
)


@pytest.fixture(scope="module")
def result(synthetic):
    return als_result(fit_als(synthetic.data, synthetic.spec, progress=False), synthetic.data)


def test_point_result_has_documented_groups_dims_and_attrs(result, synthetic):
    idata = result.idata
    assert {"posterior", "observed_data", "constant_data"} <= set(idata.groups())
    post = idata.posterior
    assert post["U"].dims == ("chain", "draw", "user", "latent")
    assert post["V"].dims == ("chain", "draw", "item", "latent")
    assert post.sizes["chain"] == 1 and post.sizes["draw"] == 1
    np.testing.assert_array_equal(post["user"].to_numpy(), synthetic.data.user_ids)
    assert result.attrs["data_sha256"] == synthetic.data.fingerprint
    assert result.attrs["spec"] == synthetic.spec
    assert result.attrs["versions"]["numpy"] == np.__version__


def test_predictions_match_the_factors(result, synthetic):
    draws = result.draws
    u, i = 7, 11
    expected = (draws["mu"][0] + draws["user_bias"][0, u] + draws["item_bias"][0, i]
                + draws["U"][0, u] @ draws["V"][0, i])
    assert result.predict([u], [i])[0] == pytest.approx(expected, abs=1e-12)


def test_unknown_ids_policy(result):
    with pytest.raises(UnknownIdError, match="user 'nobody'"):
        result.predict(["nobody", 1], [3, 3])
    prior = result.predict(["nobody"], [3], unknown="prior")[0]
    draws = result.draws
    assert prior == pytest.approx(draws["mu"][0] + draws["item_bias"][0, 3])
    both = result.predict(["nobody"], ["nothing"], unknown="prior")[0]
    assert both == pytest.approx(draws["mu"][0])
    nan = result.predict(["nobody", 1], [3, 3], unknown="nan")
    assert np.isnan(nan[0]) and np.isfinite(nan[1])


def test_predict_frame_keeps_order_and_flags_cold(result):
    import pandas as pd

    pairs = pd.DataFrame({"user": [3, "new", 1], "item": [2, 2, "new"]}, index=[10, 20, 30])
    frame = result.predict_frame(pairs, unknown="prior")
    assert list(frame.index) == [10, 20, 30]
    assert list(frame["cold_user"]) == [False, True, False]
    assert list(frame["cold_item"]) == [False, False, True]
    assert np.all(frame["sd"] == 0)  # a point estimate has no posterior spread


def test_clip_and_round(result):
    wild = result.predict([0, 1, 2], [0, 1, 2])
    assert np.array_equal(result.predict([0, 1, 2], [0, 1, 2], clip=True), wild)  # unbounded


def test_save_load_round_trip(result, tmp_path):
    path = result.save(tmp_path / "r.nc")
    loaded = load_result(path)
    np.testing.assert_array_equal(loaded.predict([1, 2], [3, 4]), result.predict([1, 2], [3, 4]))
    assert loaded.attrs == result.attrs
    assert not list(tmp_path.glob(".*tmp"))


def test_load_refuses_garbage(tmp_path, result):
    junk = tmp_path / "junk.nc"
    junk.write_bytes(b"not a netcdf file")
    with pytest.raises(ResultFileError, match="cannot read"):
        load_result(junk)
    good = result.save(tmp_path / "good.nc")
    truncated = tmp_path / "trunc.nc"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(ResultFileError):
        load_result(truncated)
    with pytest.raises(ResultFileError, match="no saved result"):
        load_result(tmp_path / "missing.nc")


def test_bias_baseline_is_pmf_without_factors(synthetic):
    baseline = fit_bias_baseline(synthetic.data, 5.0, 5.0)
    assert "U" not in baseline.idata.posterior
    draws = baseline.draws
    data = synthetic.data
    mu, b, c = draws["mu"][0], draws["user_bias"][0], draws["item_bias"][0]
    resid = data.rating - mu - b[data.user_idx] - c[data.item_idx]
    # The exact minimiser: every block's gradient of E vanishes (mu: sum of residuals;
    # b_i: its residuals minus 5 b_i; c_j likewise). The CG solve leaves ~1e-9 at
    # ratings ~1 (measured); 1e-7 allows that, while the alternating sweeps' stop at a
    # 1e-10 change of E left ~1e-4 and a wrong penalty would leave ~1e-1.
    assert abs(resid.sum()) < 1e-7
    np.testing.assert_allclose(np.bincount(data.user_idx, resid, data.n_users), 5.0 * b,
                               atol=1e-7)
    np.testing.assert_allclose(np.bincount(data.item_idx, resid, data.n_items), 5.0 * c,
                               atol=1e-7)
    wrong = np.bincount(data.user_idx, resid, data.n_users) / 6.0
    assert np.max(np.abs(b - wrong)) > 1e-3
    settings = baseline.settings
    assert settings["converged"] and settings["objective_trace"][-1] < settings[
        "objective_trace"][0]


def test_bias_baseline_solve_is_the_minimum_alternating_sweeps_approach(synthetic):
    """The long run of the ALS sweeps (d = 0) approaches the CG solve's E from above."""
    from bayes_pmf.engines.ridge import minimise, solve_biases

    spec = bp.PMFSpec.from_lambdas(0, 1.0, sigma=1.0, biases=True, lambda_user_bias=5.0,
                                   lambda_item_bias=5.0)
    exact = solve_biases(synthetic.data, spec).objective_trace[-1]
    sweeps = minimise(synthetic.data, spec, max_sweeps=500, tol=0.0, rng=0, progress=False)
    trace = np.array(sweeps.objective_trace)
    assert np.all(trace >= exact - 1e-9 * abs(exact))  # nothing goes below the minimum
    assert trace[-1] - exact < 1e-9 * abs(exact)  # and the sweeps get there


def test_a_crash_mid_save_leaves_no_file_and_keeps_the_old_one(result, tmp_path, monkeypatch):
    """save_result writes to a temporary file and renames it: a failure while writing
    leaves neither a half file under the final name nor a stray temporary file, and an
    earlier good file at that name survives intact."""
    path = tmp_path / "model.nc"
    result.save(path)
    before = path.read_bytes()

    def crash(self, target, *args, **kwargs):
        with open(target, "wb") as handle:
            handle.write(b"half a file")
        raise OSError("disk full")

    monkeypatch.setattr(type(result.idata), "to_netcdf", crash)
    with pytest.raises(bp.ResultFileError, match="disk full"):
        result.save(path)
    assert path.read_bytes() == before
    with pytest.raises(bp.ResultFileError):
        result.save(tmp_path / "fresh.nc")
    assert not (tmp_path / "fresh.nc").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.nc"]


def test_thinning_keeps_evenly_spaced_draws_per_chain(synthetic):
    from bayes_pmf.engines.gibbs import sample_gibbs

    posterior = sample_gibbs(synthetic.data, synthetic.spec.with_(prior="fixed", noise="learned"),
                             draws=40, tune=10, chains=2, progress=False)
    small = posterior.thinned(20)
    assert small.n_samples == 20
    kept = small.idata.posterior["draw"].to_numpy()
    assert kept[0] == 0 and kept[-1] == 39 and np.all(np.diff(kept) > 0)
    np.testing.assert_array_equal(small.idata.posterior["U"].to_numpy(),
                                  posterior.idata.posterior["U"].to_numpy()[:, kept])
    assert small.idata.posterior.attrs["bayes_pmf_thinned_from_draws"] == 40
    assert posterior.thinned(1000) is not None and posterior.thinned(1000).n_samples == 80
    assert small.attrs["method"] == posterior.attrs["method"]


def test_results_saved_before_the_redesign_still_load():
    """Files written by bayes_pmf before the spec held the prior family load, decode to
    the model that was fitted (ALS: fixed priors; the Wishart Gibbs run: its prior and
    learned noise) and predict exactly what they predicted then."""
    from pathlib import Path

    legacy = Path(__file__).parent / "fixtures" / "legacy"
    expected = np.load(legacy / "expected_predictions.npy")
    als = bp.load_result(legacy / "pmf-als-format1.nc")
    gibbs = bp.load_result(legacy / "gibbs-format1.nc")
    assert (als.spec.prior, als.spec.noise) == ("fixed", "fixed")
    assert (gibbs.spec.prior, gibbs.spec.noise) == ("wishart", "learned")
    spec = bp.PMFSpec(n_factors=2, sigma=0.5, biases=True)
    users, items = bp.make_synthetic(30, 20, 200, spec, rng=3).data.id_pairs()
    np.testing.assert_array_equal(als.predict(users[:20], items[:20]), expected[0])
    np.testing.assert_array_equal(gibbs.predict(users[:20], items[:20]), expected[1])

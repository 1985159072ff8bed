"""Item features (#19 item 2): the items' tags (the embedded MovieLens' genres) enter the
item factors, V = X (+ M' Z) + G Phi, in every engine that samples the posterior model,
and items without training ratings are predicted from their tags. The PyMC twin's
density is the sampler's (tests/test_twins.py) and the sampler is calibrated
(tests/test_calibration.py); this file checks the data side, the cold-start prediction
and the job's handling."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import bayes_pmf as bp
from bayes_pmf.model.params import item_tag_sets, item_tag_vocabulary, tag_matrix
from bayes_pmf.workflows.config import FitJobConfig


def test_tags_are_read_as_sets_and_normalised():
    info = pd.DataFrame({"genres": ["Comedy|Drama", " Drama | Comedy |Drama", np.nan,
                                    "(no genres listed)", "", "War"]},
                        index=[10, 11, 12, 13, 14, 15])
    sets = item_tag_sets([10, 11, 12, 13, 14, 15, 99], info, "genres")
    assert sets == [("Comedy", "Drama"), ("Comedy", "Drama"), (), (), (), ("War",), ()]
    G = tag_matrix(sets, np.array(["Comedy", "Drama"], dtype=object), "sqrt").toarray()
    # two tags: 1/sqrt(2) each; War is not in the vocabulary (no factors), so ignored
    np.testing.assert_allclose(G[0], [2**-0.5, 2**-0.5])
    np.testing.assert_allclose(G[2:], 0.0)
    counted = tag_matrix(sets, np.array(["Comedy", "Drama"], dtype=object), "count")
    np.testing.assert_allclose(counted.toarray()[1], [0.5, 0.5])
    with pytest.raises(bp.ConfigError, match="'directors'.*columns \\['genres'\\]"):
        item_tag_sets([10], info, "directors")


def test_the_spec_and_the_job_refuse_bad_settings():
    for value in ("", "  ", 3):
        with pytest.raises(bp.ConfigError, match="item_features"):
            bp.PMFSpec(item_features=value)
    with pytest.raises(bp.ConfigError, match="latent factors"):
        bp.PMFSpec(n_factors=0, item_features="genres")
    with pytest.raises(bp.ConfigError, match="item_features"):
        FitJobConfig(item_features="")
    with pytest.raises(bp.ConfigError, match="ALS fits plain PMF"):
        bp.fit_als(bp.load_movielens(), bp.PMFSpec(item_features="genres"), progress=False)


def test_auto_uses_the_genres_when_the_data_has_them():
    movielens = bp.load_movielens()
    assert FitJobConfig().item_features_for(movielens) == "genres"
    assert FitJobConfig().posterior_spec_for(movielens).item_features == "genres"
    assert FitJobConfig(item_features="none").posterior_spec_for(movielens).item_features is None
    plain = bp.make_synthetic(20, 10, 100, bp.PMFSpec(n_factors=2), rng=0).data
    assert FitJobConfig().posterior_spec_for(plain).item_features is None
    # the 20 genre values of MovieLens less "(no genres listed)"
    assert len(item_tag_vocabulary(movielens, "genres")) == 19


def test_a_missing_column_fails_before_any_fit():
    """--item-features COLUMN on data without it: a ConfigError naming the column and
    what the data has, raised after reading, before the first fit."""
    from bayes_pmf.workflows.fit_job import Stages, run_fit_job

    stages = Stages()
    with pytest.raises(bp.ConfigError, match="'directors'.*title.*genres"):
        run_fit_job(FitJobConfig(methods=("gibbs",), item_features="directors",
                                 progress=False), stages)
    assert [row["stage"] for row in stages.rows] == ["read and split"]


@pytest.fixture(scope="module")
def tag_driven():
    """Ratings from a model whose item factors are mostly their tags' (X's sd 0.05
    against Phi's 1.0; fixed priors, Gaussian noise 0.3), and a split that holds out
    every rating of 12 items: cold items with tags."""
    spec = bp.PMFSpec(n_factors=2, sigma=0.3, sigma_u=1.0, sigma_v=0.05, sigma_w=1.0,
                      item_features="genres", implicit_norm="sqrt", mu_prior=(3.0, 0.1))
    drawn = bp.draw_from_prior(spec, 60, 70, 2500, rng=4)
    data = drawn.data
    cold = np.isin(data.item_idx, np.arange(12))
    train, test = data.take(~cold), data.take(cold)
    known = np.isin(test.user_ids[test.user_idx], train.user_ids)
    test = test.take(known)
    result = bp.sample_gibbs(train, spec.with_(mu_prior=None), draws=150, tune=100, chains=1,
                             rng=1, progress=False)
    return train, test, result


def test_cold_items_are_predicted_from_their_tags(tag_driven):
    """With the test's item information, a cold pair's linear predictor is, per draw,
    mu + b_i + U_i . (G_j Phi) (checked against that formula), and the held-out RMSE of
    the cold items falls well below the prior mean's (measured 0.47 against 1.09 on 469
    cold ratings);
    without it, or on a model without item features, nothing changes."""
    train, test, result = tag_driven
    users, items = test.id_pairs()
    assert (result.item_ids.get_indexer(pd.Index(items)) < 0).all()
    described = result.describing_items(test.item_info)
    eta = described.eta_draws(users, items, unknown="prior")
    draws = result.draws
    G = tag_matrix(item_tag_sets(pd.Index(items), test.item_info, "genres"),
                        result.idata.posterior["Phi"].coords["item_tag"].to_numpy(), "sqrt")
    u = result.user_ids.get_indexer(pd.Index(users))
    for s in (0, 77, 149):
        expected = (draws["mu"][s] + draws["user_bias"][s][u]
                    + np.einsum("pd,pd->p", draws["U"][s][u], np.asarray(G @ draws["Phi"][s])))
        np.testing.assert_allclose(eta[s], expected, rtol=1e-12, atol=1e-12)
    rmse = lambda p: float(np.sqrt(np.mean((p - test.rating) ** 2)))  # noqa: E731
    with_tags = rmse(described.predict(users, items, unknown="prior"))
    prior_mean = rmse(result.predict(users, items, unknown="prior"))
    assert with_tags < 0.8 * prior_mean, (with_tags, prior_mean)
    assert result.describing_items(None) is result
    plain = bp.sample_gibbs(train, result.spec.with_(item_features=None), draws=5, tune=5,
                            chains=1, rng=1, progress=False)
    assert plain.describing_items(test.item_info) is plain


def test_held_out_predictions_read_the_tests_tags(tag_driven):
    """held_out_predictions (the main job's one place) predicts the cold items from the
    test data's item information: its stored means are the described result's."""
    from bayes_pmf.result.predictive import held_out_predictions

    train, test, result = tag_driven
    table = held_out_predictions(result, test).held_out_table(["mean", "cold_item"])
    assert table["cold_item"].all()
    users, items = test.id_pairs()
    np.testing.assert_allclose(
        table["mean"], result.describing_items(test.item_info).mean_prediction(
            users, items, unknown="prior"), rtol=1e-12)
    assert not np.allclose(table["mean"], result.mean_prediction(users, items,
                                                                 unknown="prior"))


def test_an_items_file_gives_the_genres_to_a_users_ratings(tmp_path):
    """MovieLens-format files from the user: ratings.csv and movies.csv (with a byte-order
    mark and quoted titles holding commas). The items file's rows become the split's item
    information, so item_features="auto" finds the genres; a file of another id type is
    refused with the line named."""
    from bayes_pmf.data.files import load_split

    movielens = bp.load_movielens()
    ratings = movielens.to_frame().head(3000)
    ratings.rename(columns={"user": "userId", "item": "movieId"}).to_csv(
        tmp_path / "ratings.csv", index=False)
    info = movielens.item_info.reset_index().rename(columns={"item": "movieId"})
    (tmp_path / "movies.csv").write_text("\ufeff" + info[["movieId", "title", "genres"]]
                                         .to_csv(index=False), encoding="utf-8")
    assert '"' in (tmp_path / "movies.csv").read_text()  # titles with commas are quoted
    split, full = load_split(tmp_path / "ratings.csv", items=tmp_path / "movies.csv")
    np.testing.assert_array_equal(
        split.train.item_info["genres"].reindex(split.train.item_ids).to_numpy(),
        movielens.item_info["genres"].reindex(split.train.item_ids).to_numpy())
    config = FitJobConfig(data=str(tmp_path / "ratings.csv"), items=str(tmp_path / "movies.csv"))
    assert config.posterior_spec_for(split.train).item_features == "genres"
    (tmp_path / "bad.csv").write_text("movieId,genres\n1,Comedy\n007,Drama\n")
    with pytest.raises(bp.RatingsFileError, match="line 3: item id '007'"):
        load_split(tmp_path / "ratings.csv", items=tmp_path / "bad.csv")


def _tag_move_chain(broken: bool = False, n: int = 3000):
    """Exact draws of the tags' coordinates C from their conditional given the items' own
    factors X (a tiny Gaussian problem: 6 users x 5 items, all 30 ratings, 3 tags, d = 2,
    U and Lambda fixed), each then moved once by the sampler's non-centred tag step;
    returns (before, after), n x (r d). ``broken``: the step without C's prior pull."""
    import inspect

    import scipy.sparse as sp
    from scipy import stats

    from bayes_pmf.engines import gibbs

    generator = np.random.default_rng(0)
    n_users, n_items, d, tau = 6, 5, 2, 4.0
    G = sp.csr_matrix(np.array([[1, 1, 0], [0, 1, 0], [1, 0, 1], [0, 0, 1], [1, 1, 1]],
                               dtype=float))
    G = sp.diags(1 / np.sqrt(np.asarray(G.sum(axis=1)).ravel())) @ G
    U = generator.normal(size=(n_users, d))
    X = generator.normal(scale=0.3, size=(n_items, d))
    Lam = np.array([[2.0, 0.3], [0.3, 1.0]])
    users, items = np.meshgrid(np.arange(n_users), np.arange(n_items))
    users, items = users.ravel(), items.ravel()  # item-major, as by_item holds them
    ratings = generator.normal(size=len(users))
    by_item = sp.csr_matrix((ratings, (items, users)), shape=(n_items, n_users))
    item_rows = np.repeat(np.arange(n_items), np.diff(by_item.indptr))
    side = gibbs._ImplicitSide(G, X.copy(), 0.1, 1.0, generator)
    L = side.feedback.loadings  # items x r
    r = L.shape[1]
    design = np.array([np.kron(L[j], U[i]) for i, j in zip(by_item.indices, item_rows)])
    target = by_item.data - np.einsum("pd,pd->p", U[by_item.indices], X[item_rows])
    precision = np.kron(np.eye(r), Lam) + tau * design.T @ design
    covariance = np.linalg.inv(precision)
    mean = covariance @ (tau * design.T @ target)
    move = gibbs._tag_moves
    if broken:
        source = inspect.getsource(gibbs._tag_moves).replace(
            "- precision_c @ (side.factors.T @ b_g)", "")
        namespace: dict = {}
        exec(source, gibbs.__dict__, namespace)  # noqa: S102 - a deliberately broken copy
        move = namespace["_tag_moves"]
    before = generator.multivariate_normal(mean, covariance, size=n)
    after = np.empty_like(before)
    plan = gibbs._TagSteps(side, by_item, 0)  # fixed index sets: G and the ratings' layout
    for s in range(n):
        side.factors = before[s].reshape(r, d).copy()
        side.offsets = side.feedback.offsets(side.factors)
        side.own = X.copy()
        side.hyper = gibbs._SideHyper(np.zeros(d), Lam, 1.0)
        V = X + side.offsets
        residual = by_item.data - np.einsum("pd,pd->p", U[by_item.indices], V[item_rows])
        move(side, plan, by_item, residual, U, V, tau, generator)
        after[s] = side.factors.ravel()
        np.testing.assert_allclose(V - side.offsets, X, atol=1e-12)  # X held
    directions = generator.normal(size=(4, r * d))
    return [stats.ks_2samp(before @ v, after @ v).pvalue for v in directions]


def test_the_tag_step_keeps_its_target():
    """The non-centred tag step is an exact Gibbs step: applied to exact draws from the
    tags' conditional given X, it gives draws from it again (KS on four random
    projections, p > 0.001 each); X never moves. Without C's prior pull in its mean
    the same check fails (p < 1e-6)."""
    assert min(_tag_move_chain()) > 1e-3
    assert min(_tag_move_chain(broken=True)) < 1e-6

import json

import numpy as np
import pandas as pd
import pytest
from scipy.stats import norm

import bayes_pmf as bp
from bayes_pmf.analysis.recommend import recommend, seen_items, similar_items
from bayes_pmf.result.result import point_result


@pytest.fixture()
def hand_made():
    """2 users x 4 items, d = 1, mu = 3: E[r] = 3 + U_i V_j, known by hand."""
    train = bp.RatingsData.from_arrays(["u", "u", "w"], ["a", "d", "b"], [5.0, 1.0, 2.0],
                                       scale=(1, 5, 0.5))
    # vocabularies are sorted: users [u, w], items [a, b, d]
    params = bp.FactorParams(np.array([[1.0], [-1.0]]), np.array([[2.0], [1.0], [-1.0]]), 3.0)
    spec = bp.PMFSpec(n_factors=1, sigma=0.5)
    return point_result(params, spec, train, method="hand", seed=None)


def test_seen_items_are_excluded_and_order_is_by_score(hand_made):
    assert list(hand_made.item_ids[seen_items(hand_made, "u")]) == ["a", "d"]
    top = recommend(hand_made, "u", n=5)
    assert list(top["item"]) == ["b"]  # the only unseen item
    top_w = recommend(hand_made, "w", n=5)
    assert list(top_w["item"]) == ["d", "a"]  # E = 4 and 1
    assert list(top_w["score"]) == [4.0, 1.0]


def test_probability_score_by_hand(hand_made):
    top = recommend(hand_made, "w", n=1, score="prob", threshold=4.0)
    # P(r >= 4) with half-star continuity correction: Phi((4 - 3.75) / 0.5)
    assert top["score"].iloc[0] == pytest.approx(norm.cdf(0.5))


def test_unknown_user_gets_flagged_prior_recommendations(hand_made):
    top = recommend(hand_made, "new", n=3)
    assert top["cold_user"].all()
    assert np.allclose(top["score"], 3.0)  # mu, no biases


def test_similar_items_by_cosine(hand_made):
    table = similar_items(hand_made, "a", n=2)
    assert list(table["item"]) == ["b", "d"]
    np.testing.assert_allclose(table["similarity"], [1.0, -1.0])
    with pytest.raises(bp.ConfigError, match="no training ratings"):
        similar_items(hand_made, "zzz")


def test_bad_arguments(hand_made):
    with pytest.raises(bp.ConfigError, match="score must be"):
        recommend(hand_made, "u", score="best")
    with pytest.raises(bp.ConfigError, match="n must be"):
        recommend(hand_made, "u", n=0)
    # P(r >= t) with t at or below the bottom of the scale is 1 for every item, above its
    # top 0: a ranking by nothing, refused; the top rating itself is a fine threshold
    low, high = hand_made.scale.min, hand_made.scale.max
    for threshold in (low, low - 1, high + hand_made.scale.step):
        with pytest.raises(bp.ConfigError, match=f"threshold {threshold:g} leaves nothing"):
            recommend(hand_made, "u", score="prob", threshold=threshold)
    assert len(recommend(hand_made, "u", score="prob", threshold=high))


@pytest.fixture(scope="module")
def run_folder(tmp_path_factory):
    from pathlib import Path

    from bayes_pmf.cli import main

    fixtures = Path(__file__).parent / "fixtures"
    run = tmp_path_factory.mktemp("rec") / "run"
    assert main(["fit", "--json", "--train", str(fixtures / "u1.base"), "--test",
                 str(fixtures / "u1.test"), "--factors", "2", "--method", "als",
                 "--out", str(run), "--no-figures"]) == 0
    return run


def test_recommend_cli_from_run_folder(fixtures, run_folder, tmp_path, capsys):
    from bayes_pmf.cli import main

    capsys.readouterr()
    assert main(["recommend", "--run", str(run_folder), "--user", "8", "--n", "3",
                 "--json"]) == 0
    items = json.loads(capsys.readouterr().out)
    assert len(items) == 3 and {"item", "score"} <= set(items[0])
    train = pd.read_csv(fixtures / "u1.base", sep="\t", header=None)
    rated = set(train[train[0] == 8][1])
    assert not rated & {row["item"] for row in items}
    assert main(["recommend", "--run", str(tmp_path / "none"), "--user", "8"]) == 2


def test_recommend_cli_many_users_new_user_and_similar(fixtures, run_folder, tmp_path,
                                                       capsys):
    from bayes_pmf.cli import main

    capsys.readouterr()
    assert main(["recommend", "--run", str(run_folder), "--user", "8", "--user", "99999",
                 "--n", "2", "--json"]) == 0
    rows = pd.DataFrame(json.loads(capsys.readouterr().out))
    assert rows.groupby("user").size().to_dict() == {8: 2, 99999: 2}
    assert rows.set_index("user")["cold_user"].groupby(level=0).all().to_dict() == {
        8: False, 99999: True}
    assert main(["recommend", "--run", str(run_folder), "--user", "8", "--user", "99999",
                 "--n", "2"]) == 0
    header = capsys.readouterr().out
    assert "unknown users 99999:" in header and "np." not in header

    mine = tmp_path / "me.csv"
    mine.write_text("item,rating\n1,5\n2,4\n3,1\n")
    assert main(["recommend", "--run", str(run_folder), "--new-user", str(mine), "--n", "4",
                 "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert len(rows) == 4 and not {1, 2, 3} & {row["item"] for row in rows}

    bad = tmp_path / "bad.csv"
    bad.write_text("item,rating\n1,five\n")
    assert main(["recommend", "--run", str(run_folder), "--new-user", str(bad)]) == 2
    assert "line 2 holds 'five'" in capsys.readouterr().err
    # an empty file, a folder, an id of the wrong kind: one line each, no traceback
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    for argv, words in ((["--new-user", str(empty)], "cannot read " + str(empty)),
                        (["--new-user", str(tmp_path)], "cannot read the new-user ratings"),
                        (["--user", "abc"], "this model's ids are integers (e.g. ")):
        assert main(["recommend", "--run", str(run_folder), *argv]) == 2
        err = capsys.readouterr().err
        assert words in err and "np." not in err and "Traceback" not in err, argv
    # --run that is not a run folder, a model it does not hold, a bad seed: each named
    # as the flag, with what to give instead
    for argv, words in (
            (["--run", str(run_folder / "metrics.json"), "--user", "8"],
             f"is a file; expected the folder of a run of 'bayes-pmf fit' (the run folder "
             f"is {run_folder})"),
            (["--run", str(tmp_path / "none"), "--user", "8"], "none: no such folder"),
            (["--run", str(run_folder), "--model", "pmf-gibbs", "--user", "8"],
             "it holds bias-baseline, global-mean, item-mean, pmf-als, pmf-als-nobias, "
             "user-mean: name one with --model"),
            (["--run", str(run_folder), "--user", "8", "--score", "thompson", "--seed",
              "-1"], "error: --seed must be an integer from 0")):
        assert main(["recommend", *argv]) == 2
        err = capsys.readouterr().err
        assert words in err and len(err.splitlines()) == 1, (argv, err)

    assert main(["similar", "--run", str(run_folder), "--item", "1", "--n", "3",
                 "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [row["rank"] for row in rows] == [1, 2, 3] and 1 not in {r["item"] for r in rows}
    assert rows[0]["similarity"] >= rows[-1]["similarity"]
    assert main(["similar", "--run", str(run_folder), "--user", "8"]) == 0
    assert "users most similar to 8" in capsys.readouterr().out


def test_a_reader_that_stops_early_ends_the_command_quietly(run_folder):
    """`bayes-pmf recommend ... | head -1`: the pipe closes while the table is printed;
    the command stops with the shell's SIGPIPE status and no traceback (it used to end
    in a BrokenPipeError traceback)."""
    import subprocess
    import sys

    proc = subprocess.Popen([sys.executable, "-m", "bayes_pmf", "recommend", "--run",
                             str(run_folder), "--user", "8", "--n", "1000", "--json"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    # the reader goes away before the command prints (it takes seconds to start): its
    # first write fails, whatever the pipe's buffer holds (reading a line first and then
    # closing raced the writer: a run on CI saw status 0)
    proc.stdout.close()
    stderr = proc.stderr.read().decode()
    assert proc.wait(timeout=120) == 141, stderr
    assert "Traceback" not in stderr and "Error" not in stderr, stderr


def test_fold_in_matches_a_full_refit(synthetic):
    """A user folded in from 12 ratings predicts like the same user fitted with everyone:
    the refit's item factors move only slightly when one user is added."""
    from bayes_pmf.analysis.recommend import fold_in_user, predict_folded

    data, spec = synthetic.data, synthetic.spec
    user = data.user_ids[np.argmax(data.user_counts)]
    frame = data.to_frame()
    mine = frame[frame["user"] == user].iloc[:12]
    others = frame[frame["user"] != user]
    full = pd.concat([others, mine])
    fit = lambda f: bp.als_result(
        bp.fit_als(bp.RatingsData.from_frame(f), spec, tol=1e-10, max_sweeps=2000,
                   progress=False), bp.RatingsData.from_frame(f))
    refit, without = fit(full), fit(others)
    folded = fold_in_user(without, mine["item"], mine["rating"])
    items = without.item_ids
    predicted = predict_folded(without, folded, items)
    reference = refit.predict(np.full(len(items), user), items)
    # Measured 0.044 stars (sigma = 0.3 here); scaling the folded factors by 1.3 gives
    # 0.93, so the bound separates a right fold-in from a wrong one.
    assert np.max(np.abs(predicted - reference)) < 0.08
    with pytest.raises(bp.ConfigError, match="no training ratings"):
        fold_in_user(without, ["nope"], [3.0])


def test_fold_in_on_a_posterior_carries_uncertainty(synthetic):
    from bayes_pmf.analysis.recommend import fold_in_user, folded_rating_draws, predict_folded
    from bayes_pmf.engines.gibbs import sample_gibbs

    posterior = sample_gibbs(synthetic.data, synthetic.spec.with_(prior="fixed", noise="learned"),
                             draws=100, tune=50, chains=2, progress=False)
    items = synthetic.data.item_ids[:5]
    few = fold_in_user(posterior, items[:2], [4.0, 4.5])
    many = fold_in_user(posterior, synthetic.data.item_ids[:40],
                        synthetic.true_mean(np.zeros(40, int), np.arange(40)))
    assert few.shape == (200, synthetic.spec.n_factors + 1)
    # Two ratings leave the new user's predicted ratings far more uncertain than forty
    # (judged on predictions, which are identified: the raw factors follow each chain's
    # rotation of V, and chains start apart)
    unseen = synthetic.data.item_ids[40:80]
    spread_few = folded_rating_draws(posterior, few, unseen).std(axis=0).mean()
    spread_many = folded_rating_draws(posterior, many, unseen).std(axis=0).mean()
    assert spread_few > 1.5 * spread_many, (spread_few, spread_many)
    assert np.all(np.isfinite(predict_folded(posterior, few, items)))


def test_many_users_at_once_equal_one_at_a_time(hand_made):
    from bayes_pmf.analysis.recommend import recommend_many

    many = recommend_many(hand_made, ["w", "new", "u"], n=5)
    for user in ("w", "new", "u"):
        one = recommend(hand_made, user, n=5)
        mine = many[many["user"] == user].reset_index(drop=True)
        pd.testing.assert_frame_equal(mine, one)
    assert list(many["user"].drop_duplicates()) == ["w", "new", "u"]  # input order kept
    assert many.loc[many["user"] == "new", "cold_user"].all()
    assert not many.loc[many["user"] != "new", "cold_user"].any()
    with pytest.raises(bp.ConfigError, match="distinct"):
        recommend_many(hand_made, ["u", "u"])


@pytest.fixture(scope="module")
def small_posterior():
    from bayes_pmf.engines.gibbs import sample_gibbs

    spec = bp.PMFSpec(n_factors=2, sigma=0.5, biases=True)
    truth = bp.make_synthetic(40, 30, 500, spec, rng=3)
    return sample_gibbs(truth.data, spec.with_(prior="normal-wishart", noise="learned"), draws=30,
                        tune=20, chains=2, progress=False, rng=1)


def test_vectorised_scores_match_per_draw_predictions(small_posterior):
    """Each score from score_matrix against the same statistic of mean_draws computed
    pair by pair: the closed-form posterior mean, the blocked prob/quantile paths."""
    from bayes_pmf.analysis.recommend import score_matrix

    result = small_posterior
    users = list(result.user_ids[:7]) + ["never-seen"]
    pairs_u = np.repeat(np.array(users, dtype=object), len(result.item_ids))
    pairs_i = np.tile(result.item_ids, len(users))
    draws = result.mean_draws(pairs_u, pairs_i, unknown="prior").reshape(
        result.n_samples, len(users), -1)
    np.testing.assert_allclose(score_matrix(result, users), draws.mean(axis=0), atol=1e-10)
    np.testing.assert_allclose(score_matrix(result, users, score="quantile", quantile=0.2),
                               np.quantile(draws, 0.2, axis=0), atol=1e-10)
    sigma = result.draws["sigma"] if "sigma" in result.draws else result.spec.sigma
    step = result.scale.step or 0.0
    expected = norm.cdf((draws - (4.0 - step / 2)) / np.reshape(sigma, (-1, 1, 1))).mean(0)
    np.testing.assert_allclose(score_matrix(result, users, score="prob"), expected, atol=1e-10)
    thompson = score_matrix(result, users, score="thompson", rng=5)
    # every row is one whole posterior draw of that user's expected ratings
    for row, user in enumerate(users):
        assert np.any(np.all(np.isclose(draws[:, row], thompson[row]), axis=1))
    np.testing.assert_array_equal(thompson, score_matrix(result, users, score="thompson",
                                                         rng=5))


def test_similar_users_by_cosine(hand_made):
    from bayes_pmf.analysis.recommend import similar_users

    table = similar_users(hand_made, "u", n=3)
    assert list(table["user"]) == ["w"]
    np.testing.assert_allclose(table["similarity"], [-1.0])  # U = +1 and -1


def test_new_user_recommendations_exclude_what_they_rated(synthetic):
    from bayes_pmf.analysis.recommend import fold_in_user, predict_folded, recommend_new_user

    als = bp.als_result(bp.fit_als(synthetic.data, synthetic.spec, progress=False),
                        synthetic.data)
    items, ratings = als.item_ids[:6], [5.0, 4.0, 1.0, 2.0, 5.0, 3.0]
    top = recommend_new_user(als, items, ratings, n=len(als.item_ids))
    assert len(top) == len(als.item_ids) - 6
    assert not set(top["item"]) & set(items)
    expected = predict_folded(als, fold_in_user(als, items, ratings), top["item"])
    np.testing.assert_allclose(top["score"], expected)
    assert np.all(np.diff(top["score"]) <= 0)


def _ordinal_fold_in_problem(copies):
    """One parameter draw repeated ``copies`` times: 7 ratings on a 1-5 grid whose cut
    points sit off the midpoints (where reading ratings as latent values is wrong)."""
    from bayes_pmf.model.params import level_bounds, rating_levels

    rng = np.random.default_rng(11)
    design = np.hstack([rng.normal(0, 0.8, (7, 2)), np.ones((7, 1))])
    offset = np.full(7, 3.4)
    ratings = np.array([5.0, 4.0, 5.0, 2.0, 4.0, 3.0, 5.0])
    cuts = np.array([1.5, 2.9, 3.1, 4.9])
    sigma = 0.5
    prior = np.diag([1.0, 1.0, 4.0])
    lower, upper = level_bounds(cuts, rating_levels(ratings, np.arange(1.0, 6.0)))
    tile = lambda a: np.broadcast_to(a, (copies,) + a.shape).copy()  # noqa: E731
    precision = prior + design.T @ design / sigma**2
    return dict(design=tile(design), offset=tile(offset), precision=tile(precision),
                sigma=np.full(copies, sigma), lower=tile(lower), upper=tile(upper),
                start=ratings), prior


def test_ordinal_fold_in_draws_from_the_exact_conditional():
    """The ordinal fold-in's draws of a new user's [U, b] given one parameter draw match
    the exact posterior p(w) prod_j P(r_j | w), computed by importance sampling from the
    prior (10^6 draws); the former shortcut (ratings read as latent values, one
    Gaussian step: sweeps=0) fails the same check. Tolerance: 4.5 Monte Carlo standard
    errors of the difference for the means, 5% for the sds (20,000 fold-in draws)."""
    from bayes_pmf.analysis.recommend import fold_in_ordinal
    from bayes_pmf.model.params import log_interval_probability

    problem, prior = _ordinal_fold_in_problem(20_000)
    drawn = fold_in_ordinal(**problem, sample=True, rng=np.random.default_rng(0))
    # importance sampling from the prior N(0, prior^-1)
    rng = np.random.default_rng(1)
    w = rng.standard_normal((1_000_000, 3)) / np.sqrt(np.diag(prior))
    eta = problem["offset"][0] + w @ problem["design"][0].T
    log_weight = log_interval_probability(problem["lower"][0], problem["upper"][0], eta,
                                          0.5).sum(axis=1)
    weight = np.exp(log_weight - log_weight.max())
    weight /= weight.sum()
    mean = weight @ w
    sd = np.sqrt(weight @ (w - mean) ** 2)
    ess = 1 / np.sum(weight**2)
    assert ess > 2_000  # enough for the reference's own error

    def z_scores(values):
        se = np.hypot(values.std(axis=0) / np.sqrt(len(values)), sd / np.sqrt(ess))
        return np.abs(values.mean(axis=0) - mean) / se

    assert z_scores(drawn).max() < 4.5, (drawn.mean(axis=0), mean)
    np.testing.assert_allclose(drawn.std(axis=0), sd, rtol=0.05)
    shortcut = fold_in_ordinal(**problem, sample=True, rng=np.random.default_rng(0),
                               sweeps=0)
    assert z_scores(shortcut).max() > 10


def test_ordinal_fold_in_of_a_point_result_is_the_map():
    """Without draws, EM on the same model: the gradient of log p(w) + sum_j log P(r_j |
    w) vanishes at its answer (central differences, step 1e-5)."""
    from bayes_pmf.analysis.recommend import fold_in_ordinal
    from bayes_pmf.model.params import log_interval_probability

    problem, prior = _ordinal_fold_in_problem(1)
    mode = fold_in_ordinal(**problem, sample=False, rng=np.random.default_rng(0))[0]

    def log_posterior(w):
        eta = problem["offset"][0] + problem["design"][0] @ w
        return -0.5 * w @ prior @ w + log_interval_probability(
            problem["lower"][0], problem["upper"][0], eta, 0.5).sum()

    step = 1e-5
    gradient = [(log_posterior(mode + step * e) - log_posterior(mode - step * e)) / (2 * step)
                for e in np.eye(3)]
    assert np.max(np.abs(gradient)) < 1e-4
    assert log_posterior(mode) > log_posterior(mode + 0.05)  # a maximum, not a saddle


def test_fold_in_with_implicit_feedback_centres_the_new_user_on_their_items():
    """Implicit feedback on the user side (U = Y + M W): the new user's conditional
    mean, per draw, is P^-1 (Lambda m + tau sum_j V_j (r_j - mu)) with the prior mean
    m = n^-1/2 sum of W over the items given, computed here directly (fixed priors, one
    draw: the fold-in returns the mean). Without m the answer is another one."""
    spec = bp.PMFSpec(n_factors=2, biases=False, constrained=True, implicit_norm="sqrt",
                      sigma_u=0.4, sigma_w=1.0)
    data = bp.make_synthetic(25, 12, 160, bp.PMFSpec(n_factors=2, biases=False),
                             rng=2).data
    result = bp.sample_gibbs(data, spec, chains=1, tune=30, draws=1, rng=0, progress=False,
                             cores=1)
    items, ratings = data.item_ids[[0, 3, 5]], np.array([4.0, 2.5, 3.0])
    folded = bp.fold_in_user(result, items, ratings)[0]
    V = result.draws["V"][0, [0, 3, 5]].astype(float)
    W = result.draws["W"][0, [0, 3, 5]].astype(float)
    mu, tau, lam = float(result.draws["mu"][0]), 1 / spec.sigma**2, 1 / spec.sigma_u**2
    m = W.sum(axis=0) / np.sqrt(3)
    precision = lam * np.eye(2) + tau * V.T @ V
    expected = np.linalg.solve(precision, lam * m + tau * V.T @ (ratings - mu))
    np.testing.assert_allclose(folded, expected, rtol=1e-5)  # float32 draws
    assert not np.allclose(folded, np.linalg.solve(precision, tau * V.T @ (ratings - mu)),
                           rtol=1e-3)


def test_recommend_cli_folds_in_items_rated_since(fixtures, run_folder, tmp_path, capsys):
    """`recommend --user U --rated-since CSV` on a run whose posterior has implicit
    feedback: the list is bp.recommend_with_feedback's for the saved model, and leaves out
    the user's training items and the new ones; the flag is refused with a message for
    several users and for a model without implicit feedback."""
    from bayes_pmf.analysis.recommend import seen_items
    from bayes_pmf.cli import main

    run = tmp_path / "implicit"
    assert main(["fit", "--json", "--train", str(fixtures / "u1.base"), "--test",
                 str(fixtures / "u1.test"), "--factors", "2", "--method", "gibbs",
                 "--implicit", "users", "--draws", "10", "--tune", "10", "--chains", "1",
                 "--out", str(run), "--no-figures", "--no-progress"]) == 0
    capsys.readouterr()
    since = tmp_path / "since.csv"
    since.write_text("item,rating\n1,\n2,4\n")
    assert main(["recommend", "--run", str(run), "--user", "8", "--rated-since", str(since),
                 "--n", "50", "--json"]) == 0
    rows = pd.DataFrame(json.loads(capsys.readouterr().out))
    model = bp.load_result(next((run / "models").glob("bpmf-gibbs*.nc")))
    expected = bp.recommend_with_feedback(model, 8, [1, 2], n=50)
    assert rows["item"].tolist() == expected["item"].tolist()
    # the JSON printer writes 10 significant digits
    np.testing.assert_allclose(rows["score"], expected["score"], rtol=1e-9)
    excluded = set(model.item_ids[seen_items(model, 8)]) | {1, 2}
    assert not excluded & set(rows["item"])
    assert len(rows) == len(model.item_ids) - len(excluded)
    assert main(["recommend", "--run", str(run), "--user", "8", "--rated-since", str(since),
                 "--n", "3"]) == 0
    assert "2 items rated since the fit" in capsys.readouterr().out

    assert main(["recommend", "--run", str(run), "--user", "8", "--user", "9",
                 "--rated-since", str(since)]) == 2
    assert "--rated-since goes with one --user" in capsys.readouterr().err
    assert main(["recommend", "--run", str(run_folder), "--user", "8", "--rated-since",
                 str(since)]) == 2
    assert "no user-side feedback term" in capsys.readouterr().err


@pytest.mark.slow
@pytest.mark.parametrize("family", ["wishart", "normal-wishart"])
def test_fold_in_on_a_wishart_posterior_keeps_the_population_shape(family):
    """A new user folded into a Wishart posterior varies as a user sampled with everyone
    does. Users' and items' latent scales 1.2 and 0.35 (so the posterior's Lambda_U is far
    from isotropic); one user with one rating is folded in, and the same user is sampled
    in a refit with everyone: the sd of their expected rating of each item agrees
    (measured 0.96-1.10 of the refit's for both families; Monte Carlo error of an sd from
    600 chained draws is 5-8%), and so do the means (within 0.04 sd). The fold-in given
    only sigma_u (isotropic) gave sds up to 3.6 times the refit's."""
    from bayes_pmf.analysis.recommend import fold_in_user, folded_rating_draws
    from bayes_pmf.engines.gibbs import sample_gibbs

    rng = np.random.default_rng(0)
    n, m, scales = 300, 60, np.array([1.2, 0.35])
    U, V = rng.normal(size=(n, 2)) * scales, rng.normal(size=(m, 2)) * scales
    pairs = rng.permutation(n * m)[:6000]
    users, items = pairs // m, pairs % m
    frame = pd.DataFrame({"user": users, "item": items, "rating": np.einsum(
        "kd,kd->k", U[users], V[items]) + 0.3 * rng.normal(size=len(pairs))})
    newcomer = pd.DataFrame({"user": [n], "item": [5], "rating": [0.5]})
    spec = bp.PMFSpec(n_factors=2, prior=family, noise="learned", biases=False,
                      global_mean=False)
    settings = dict(draws=300, tune=100, chains=2, rng=1, progress=False)
    posterior = sample_gibbs(bp.RatingsData.from_frame(frame), spec, **settings)
    refit = sample_gibbs(bp.RatingsData.from_frame(pd.concat([frame, newcomer])), spec,
                         **settings)
    all_items = posterior.item_ids
    reference = refit.mean_draws(np.full(m, n), all_items)
    folded = folded_rating_draws(posterior, fold_in_user(posterior, [5], [0.5], rng=3),
                                 all_items)
    ratio = folded.std(axis=0) / reference.std(axis=0)
    assert 0.8 < ratio.min() and ratio.max() < 1.25, np.round(ratio, 2)
    apart = np.abs(folded.mean(axis=0) - reference.mean(axis=0)) / reference.std(axis=0)
    assert apart.max() < 0.15, np.round(apart, 3)


def test_the_new_users_wishart_prior_is_drawn_given_their_own_factors(synthetic):
    """With implicit feedback (U = Y + M W) Lambda_U is the prior of Y: drawn again
    given each draw's Y, its size trace(Lambda^-1)/d averages what the sampler stored
    (sigma_u^2; measured 0.1% apart over 300 draws, Monte Carlo error about 0.6%). Drawn
    given U = Y + M W instead it is 9% larger."""
    from bayes_pmf.analysis.recommend import _new_user_prior
    from bayes_pmf.engines.gibbs import sample_gibbs

    spec = bp.PMFSpec.hierarchical(n_factors=3).with_(constrained=True, implicit_norm="sqrt")
    posterior = sample_gibbs(synthetic.data, spec, draws=150, tune=100, chains=2, rng=1,
                             progress=False)
    precision, mean = _new_user_prior(posterior, np.random.default_rng(0))
    assert precision.shape == (300, 4, 4) and np.all(mean == 0)  # zero-mean family
    size = np.mean([np.trace(np.linalg.inv(p[:3, :3])) / 3 for p in precision])
    stored = np.mean(posterior.draws["sigma_u"] ** 2)
    print(f"\nnew user's prior size against the stored sigma_u^2: {size / stored - 1:+.2%}")
    assert abs(size / stored - 1) < 0.03, (size, stored)
    np.testing.assert_allclose(precision[:, 3, 3], 1 / posterior.draws["sigma_user_bias"] ** 2)

"""User features (#19 item 2): the users' side information in the model, U = Y (+ M W) +
H Psi, on every engine that fits it, with the same proofs as the item features'."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from test_twins import _random_points

import bayes_pmf as bp
from bayes_pmf.engines.gibbs import joint_log_density
from bayes_pmf.errors import ConfigError, RatingsFileError
from bayes_pmf.model.params import (
    tag_matrix,
    user_additive_matrix,
    user_tag_sets,
    user_tag_vocabulary,
)
from bayes_pmf.model.synthetic import draw_from_prior


def described(data, rng=0):
    """``data`` with two demographic columns on its users: a gender and an age, one user
    without a gender (no tag from that column) and one age a number."""
    generator = np.random.default_rng(rng)
    gender = list(generator.choice(["F", "M"], data.n_users))
    gender[0] = ""
    age = [str(a) for a in generator.choice([18, 25, 35], data.n_users)]
    data.user_info = pd.DataFrame({"gender": gender, "age": age, "zip": "00000"},
                                  index=data.user_ids)
    return data


def test_user_tags_are_column_value_pairs_and_normalised():
    info = pd.DataFrame({"gender": ["F", "M", None, "M"], "job": ["a|b", "a", "c", ""],
                         "age": [25, 25.5, 30, 41]}, index=[10, 11, 12, 13])
    sets = user_tag_sets(pd.Index([10, 12, 13, 99]), info, ("gender", "job"))
    # 99 has no row; 13's empty job is no tag; a "|" splits a value as item tags do
    assert sets == [("gender=F", "job=a", "job=b"), ("job=c",), ("gender=M",), ()]
    # numbers are tags as written: 25 and 25.5 stay apart
    assert user_tag_sets(pd.Index([10, 11]), info, ("age",)) == [("age=25.0",), ("age=25.5",)]
    H = tag_matrix(sets, np.array(["gender=F", "job=a", "job=b", "job=c"], dtype=object),
                   "sqrt").toarray()
    np.testing.assert_allclose(H[0], [1 / np.sqrt(3)] * 3 + [0.0])
    np.testing.assert_allclose(H[3], 0.0)  # a user without tags has no offset
    with pytest.raises(ConfigError, match="'job'") as caught:
        user_tag_sets(pd.Index([10]), info.drop(columns="job"), ("gender", "job"))
    assert caught.value.setting == "user_features"


def test_spec_checks_the_columns():
    assert bp.PMFSpec(user_features=" gender , age").user_feature_columns == ("gender", "age")
    for bad in ("", "gender,,age", "age,age", 3):
        with pytest.raises(ConfigError, match="user_features"):
            bp.PMFSpec(user_features=bad)
    with pytest.raises(ConfigError, match="latent factors"):
        bp.PMFSpec(n_factors=0, user_features="gender")
    spec = bp.PMFSpec(user_features="gender")
    assert spec.user_additive and not spec.constrained
    with pytest.raises(ConfigError, match="user_features"):
        bp.fit_als(bp.make_synthetic(10, 8, 40, bp.PMFSpec(n_factors=2), rng=0).data, spec)


@pytest.mark.parametrize("family, constrained, likelihood", [
    ("wishart", True, "gaussian"), ("wishart", False, "ordinal"),
    ("spherical", False, "gaussian"), ("fixed", True, "gaussian"),
    ("diagonal", False, "gaussian"), ("normal-wishart", True, "gaussian")])
@pytest.mark.parametrize("parameterization", ["centered", "noncentered"])
def test_user_features_twin_has_the_samplers_joint_density(family, constrained, likelihood,
                                                           parameterization):
    """U = Y [+ M W] + H Psi, with item features too: the sampler's density is PyMC's up
    to a constant, centred and noncentered. Power: the sampler's density with the users'
    tags moved into Y (the same effective factors, Psi's prior terms left out) is not."""
    spec = bp.PMFSpec(n_factors=3, prior=family, constrained=constrained,
                      user_features="gender,age", implicit_norm="sqrt",
                      likelihood=likelihood,
                      noise="learned" if likelihood == "gaussian" else "fixed")
    data = described(bp.make_synthetic(14, 11, 90, bp.PMFSpec(n_factors=3, sigma=0.5,
                                                              likelihood=likelihood),
                                       rng=5).data)
    vocabulary = list(user_tag_vocabulary(data, ("gender", "age")))
    assert vocabulary == ["age=18", "age=25", "age=35", "gender=F", "gender=M"]
    H = tag_matrix(user_tag_sets(data.user_ids, data.user_info, ("gender", "age")),
                   vocabulary, "sqrt")
    differences, without, scale = [], [], []
    for theirs, state, jacobian in _random_points(data, spec, 6, rng=2,
                                                  parameterization=parameterization):
        assert state["Psi"].shape == (5, 3)
        differences.append(theirs - joint_log_density(data, spec, state) - jacobian)
        scale.append(abs(theirs))
        untagged = dict(state, Y=state["Y"] + H @ state["Psi"])
        plain = spec.with_(user_features=None)
        if not constrained:
            untagged["U"] = untagged.pop("Y")
        without.append(theirs - joint_log_density(data, plain, untagged))
    # PyMC's normal log-cdf is accurate to ~2e-6 per term (tests/test_ordinal.py)
    tolerance = (2 * 2e-6 * data.n_ratings if likelihood == "ordinal"
                 else 1e-8 * max(scale))
    assert np.ptp(differences) <= tolerance, (family, likelihood, differences)
    assert np.ptp(without) > 1e-3


def test_the_additive_design_puts_the_tags_after_the_rated_items():
    data = described(bp.make_synthetic(14, 11, 90, bp.PMFSpec(n_factors=2), rng=5).data)
    both = user_additive_matrix(data, bp.PMFSpec(constrained=True, user_features="gender"))
    tags = user_additive_matrix(data, bp.PMFSpec(user_features="gender"))
    assert both.shape == (14, 11 + 2) and tags.shape == (14, 2)
    np.testing.assert_array_equal(both[:, 11:].toarray(), tags.toarray())
    assert tags[0].nnz == 0  # user 0 has no gender


@pytest.fixture(scope="module")
def tag_driven():
    """Ordinal-free synthetic data whose users' factors are mostly their tags' (Psi large,
    Y small), and a split that holds out every rating of 12 users: cold users."""
    spec = bp.PMFSpec(n_factors=2, sigma=0.3, sigma_u=0.15, sigma_v=1.0, sigma_w=2.0,
                      prior="fixed",
                      user_features="job", implicit_norm="sqrt", mu_prior=(3.0, 0.5))
    truth = draw_from_prior(spec, n_users=120, n_items=40, n_ratings=2400, rng=3)
    data = truth.data
    cold = np.isin(data.user_idx, np.arange(12))
    return spec, data.take(~cold), data.take(cold)


def test_cold_users_are_predicted_from_their_tags(tag_driven):
    """A user with no training ratings gets mu + c_j + (H_i Psi) . V_j per draw, which
    beats the prior mean's mu + c_j on those users' ratings; a result not told the users'
    tags (or a model without user features) gives the prior mean."""
    spec, train, test = tag_driven
    assert test.user_info is not None and len(test.user_info) == test.n_users
    result = bp.sample_gibbs(train, spec, draws=150, tune=100, chains=1, rng=0,
                             progress=False)
    users, items = test.id_pairs()
    told = result.describing_users(test.user_info)
    eta = told.eta_draws(users, items, unknown="prior")
    # the formula, per draw
    H = tag_matrix(user_tag_sets(pd.Index(users), test.user_info, ("job",)),
                   result.idata.posterior["Psi"].coords["user_tag"].to_numpy(), "sqrt")
    draws = result.draws
    item_idx = result.item_ids.get_indexer(items)
    for s in (0, 77):
        expected = (draws["mu"][s] + draws["item_bias"][s][item_idx]
                    + np.einsum("pd,pd->p", np.asarray(H @ draws["Psi"][s]),
                                draws["V"][s][item_idx]))
        np.testing.assert_allclose(eta[s], expected, rtol=1e-5, atol=1e-6)
    prior_mean = result.predict(users, items, unknown="prior")
    tagged = told.predict(users, items, unknown="prior")
    rmse_prior = np.sqrt(np.mean((prior_mean - test.rating) ** 2))
    rmse_tags = np.sqrt(np.mean((tagged - test.rating) ** 2))
    # the tags carry most of a user's factors here (sd 2 against Y's 0.15): 0.8 leaves room
    assert rmse_tags < 0.8 * rmse_prior, (rmse_tags, rmse_prior)
    # the held-out predictions use the test's own user information
    held = bp.held_out_predictions(result, test)
    np.testing.assert_allclose(held.held_out[1]["mean"], tagged, rtol=1e-6)


def test_a_users_file_in_movielens_100k_layout(tmp_path):
    """MovieLens 100k's u.user has no header ("1|24|M|technician|85711"): read with its
    columns named; ids typed as the ratings' are; a bad id names its line."""
    ratings = tmp_path / "u.data"
    ratings.write_text("".join(f"{u}\t{i}\t{1 + (u * i) % 5}\t88125000{u}\n"
                               for u in (1, 2, 3) for i in (1, 2, 3, 4)))
    users = tmp_path / "u.user"
    users.write_text("1|24|M|technician|85711\n2|53|F|other|94043\n3|23|M|writer|32067\n")
    split, full = bp.load_split(ratings, users=users, test_fraction=0.25, seed=0)
    info = full.user_info
    assert list(info.columns) == ["age", "gender", "occupation", "zip_code"]
    assert info.loc[2, "occupation"] == "other" and info.loc[1, "age"] == "24"
    assert split.train.user_info is not None
    one = tmp_path / "users.dat"  # MovieLens 1M's layout
    one.write_text("1::F::1::10::48067\n2::M::56::16::70072\n")
    assert bp.load_user_info(one, integer=True).loc[2, "age"] == "56"
    bad = tmp_path / "bad.user"
    bad.write_text("1|24|M|technician|85711\nx7|53|F|other|94043\n")
    with pytest.raises(RatingsFileError, match="line 2: user id 'x7'"):
        bp.load_split(ratings, users=bad)
    bad.write_text("x1|24|M|technician|85711\n2|53|F|other|94043\n")  # a text id first
    with pytest.raises(RatingsFileError, match="line 1: user id 'x1'"):
        bp.load_split(ratings, users=bad)
    piped = tmp_path / "piped.user"  # "|" and a header: not MovieLens' layout
    piped.write_text("user|age|gender|occupation|zip\n1|24|M|technician|85711\n")
    assert bp.load_user_info(piped, integer=True).loc[1, "occupation"] == "technician"
    header = tmp_path / "users.csv"
    header.write_text("\ufeffuserId,gender\n1,M\n1,F\n")
    with pytest.raises(RatingsFileError, match=r"user 1 has more than one row \(lines 2 and 3"):
        bp.load_user_info(header, integer=True)
    other = tmp_path / "other.csv"
    other.write_text("userId,gender\n70,M\n")
    with pytest.raises(RatingsFileError, match="none of the 3 users who rated has a row"):
        bp.load_split(ratings, users=other)


def test_fit_with_a_users_file_from_the_command_line(tmp_path, capsys):
    """bayes-pmf fit --users u.user: "auto" takes the columns with few distinct values
    (age, gender, occupation; not the zip code, one per user), the run records them, and
    a column the file lacks is refused before any fit, with no run folder."""
    import json

    from bayes_pmf.cli.main import main

    spec = bp.PMFSpec(n_factors=2, likelihood="ordinal", user_features="occupation",
                      mu_prior=(3.0, 0.3))
    drawn = draw_from_prior(spec, n_users=60, n_items=30, n_ratings=900, rng=2)
    ratings = tmp_path / "ratings.csv"
    drawn.data.to_frame().to_csv(ratings, index=False)
    generator = np.random.default_rng(0)
    occupation = drawn.data.user_info["occupation"].reindex(drawn.data.user_ids).fillna("")
    (tmp_path / "u.user").write_text("".join(
        f"{user}|{generator.choice([18, 25, 35])}|{generator.choice(['F', 'M'])}|{job}|"
        f"{10000 + user}\n" for user, job in zip(drawn.data.user_ids, occupation)))
    out = tmp_path / "run"
    assert main(["fit", "--data", str(ratings), "--users", str(tmp_path / "u.user"),
                 "--method", "gibbs", "--factors", "2", "--draws", "20", "--tune", "10",
                 "--chains", "1", "--no-figures", "--out", str(out), "--no-progress"]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["user_features"] == "age,gender,occupation"
    assert metrics["settings"]["users"] == str(tmp_path / "u.user")
    capsys.readouterr()
    assert main(["fit", "--data", str(ratings), "--users", str(tmp_path / "u.user"),
                 "--user-features", "gender,income", "--method", "gibbs",
                 "--out", str(tmp_path / "bad"), "--no-progress"]) == 2
    assert "'income'" in capsys.readouterr().err
    assert not (tmp_path / "bad").exists()


def test_select_compares_user_features_by_cross_validation(tag_driven, capsys):
    """select --posterior --user-features none auto: both variants on the same folds, the
    one with the users' tags ahead on these tag-driven continuous ratings, printed as the
    fit flags; the log score, which needs a rating grid, is NaN here and cannot be the
    criterion (refused before any fit)."""
    from bayes_pmf.workflows.config import FitJobConfig
    from bayes_pmf.workflows.report import select_posterior

    _, train, _ = tag_driven
    config = FitJobConfig(likelihood="gaussian", implicit="none", n_factors=2, draws=60,
                          tune=30, chains=1, progress=False)
    selection = select_posterior(config, ["gaussian"], ["none"], [2], 3, train=train,
                                 user_features=["none", "auto"])
    table = selection.table.set_index("model")
    with_tags = "gaussian, implicit none, d=2, user features auto"
    assert selection.chosen == with_tags
    assert table.loc[with_tags, "cv_rmse"] < table.loc[
        "gaussian, implicit none, d=2, user features none", "cv_rmse"]
    assert table["cv_log_score"].isna().all()
    with pytest.raises(ConfigError, match="rating grid") as caught:
        select_posterior(config, ["gaussian"], ["none"], [2], 3, train=train,
                         by="log_score", user_features=["none", "auto"])
    assert caught.value.setting == "by"


def test_a_new_user_is_folded_in_with_their_tags(tag_driven):
    """fold_in_user(..., user_info={...}): a cold user's tags join the prior mean of their
    factors, so two ratings and their job predict their other ratings better than two
    ratings alone; a column the model does not use, or a value no training user had, is refused
    by name. The saved result
    keeps the training users' tags (H), which the Wishart prior of a new user and the
    known user's feedback fold-in need."""
    from bayes_pmf.analysis.recommend import fold_in_user, predict_folded

    spec, train, test = tag_driven
    result = bp.sample_gibbs(train, spec.with_(prior="wishart"), draws=100, tune=100,
                             chains=1, rng=0, progress=False)
    H = result.user_tag_matrix()
    expected = tag_matrix(user_tag_sets(train.user_ids, train.user_info, ("job",)),
                          result.idata.posterior["Psi"].coords["user_tag"].to_numpy(), "sqrt")
    assert (H != expected).nnz == 0
    errors = {"tags": [], "none": []}
    for user in test.user_ids:
        mine = test.user_ids[test.user_idx] == user
        items, ratings = test.item_ids[test.item_idx[mine]], test.rating[mine]
        job = test.user_info.loc[user, "job"]
        if len(items) < 6 or not isinstance(job, str):
            continue
        for key, info in (("tags", {"job": job}), ("none", None)):
            folded = fold_in_user(result, items[:2], ratings[:2], user_info=info, rng=0)
            errors[key].append(predict_folded(result, folded, items[2:]) - ratings[2:])
    rmse = {key: np.sqrt(np.mean(np.concatenate(e) ** 2)) for key, e in errors.items()}
    assert len(errors["tags"]) >= 5
    assert rmse["tags"] < 0.8 * rmse["none"], rmse  # the tags carry most of the factors
    with pytest.raises(ConfigError, match="'income' is not one of the model's user"):
        fold_in_user(result, items[:2], ratings[:2], user_info={"income": "high"})
    # a value no training user had has no factors: named, with the known ones, not dropped
    with pytest.raises(ConfigError, match=r"job='astronaut': no training user has this "
                                          r"value.*expected one of 'a', 'b'"):
        fold_in_user(result, items[:2], ratings[:2], user_info={"job": "astronaut"})


def test_recommend_a_new_user_with_their_values_from_the_command_line(tmp_path, capsys):
    """bayes-pmf recommend --new-user CSV --user-info job=a: the new user's tags move the
    list (another job, another list); a malformed value or --user-info without
    --new-user is refused with exit 2."""
    import json

    from bayes_pmf.cli.main import main

    spec = bp.PMFSpec(n_factors=2, sigma=0.3, sigma_u=0.15, sigma_v=1.0, sigma_w=2.0,
                      prior="fixed", user_features="job", implicit_norm="sqrt",
                      mu_prior=(3.0, 0.5))
    data = draw_from_prior(spec, n_users=80, n_items=30, n_ratings=1500, rng=6).data
    data.to_frame().to_csv(tmp_path / "ratings.csv", index=False)
    data.user_info.reindex(data.user_ids).fillna("").rename_axis("user").to_csv(
        tmp_path / "users.csv")
    run = tmp_path / "run"
    assert main(["fit", "--data", str(tmp_path / "ratings.csv"), "--users",
                 str(tmp_path / "users.csv"), "--likelihood", "gaussian", "--implicit", "none",
                 "--method", "gibbs", "--factors", "2", "--draws", "40", "--tune", "20",
                 "--chains", "1", "--no-figures", "--out", str(run), "--no-progress"]) == 0
    (tmp_path / "new.csv").write_text("item,rating\n0,3.5\n1,2.0\n")
    lists = {}
    for job in ("a", "b"):
        capsys.readouterr()
        assert main(["recommend", "--run", str(run), "--new-user", str(tmp_path / "new.csv"),
                     "--user-info", f"job={job}", "--json"]) == 0
        lists[job] = [row["item"] for row in json.loads(capsys.readouterr().out)]
    assert lists["a"] != lists["b"]
    assert main(["recommend", "--run", str(run), "--new-user", str(tmp_path / "new.csv"),
                 "--user-info", "job"]) == 2
    assert "COLUMN=VALUE" in capsys.readouterr().err
    assert main(["recommend", "--run", str(run), "--user", "0", "--user-info", "job=a"]) == 2

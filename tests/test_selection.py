"""λ and d by k-fold cross-validation on the training part only."""

import json

import numpy as np
import pytest

import bayes_pmf as bp
from bayes_pmf.analysis.selection import select_hyperparameters


def test_cross_validation_prefers_the_generating_dimension_and_a_sane_lambda():
    """Data from PMF with d = 3: d = 1 underfits, so CV must not choose it; an absurd
    penalty (1000, factors shrunk to nothing) must not win either."""
    spec = bp.PMFSpec(n_factors=3, sigma=0.4, sigma_u=0.8, sigma_v=0.8)
    data = bp.make_synthetic(150, 100, 5000, spec, rng=2).data
    selection = select_hyperparameters(data, lambdas=(0.25, 1000.0), dims=(1, 3), k=3,
                                       biases=False, progress=False, rng=0)
    assert selection.n_factors == 3 and selection.lambda_ == 0.25
    table = selection.table
    assert len(table) == 4 and table["cv_rmse"].is_monotonic_increasing
    assert all(len(folds) == 3 for folds in table["fold_rmse"])
    assert np.allclose(table["cv_rmse"], [np.mean(f) for f in table["fold_rmse"]], atol=1e-6)
    again = select_hyperparameters(data, lambdas=(0.25, 1000.0), dims=(1, 3), k=3,
                                   biases=False, progress=False, rng=0)
    assert again.table.equals(selection.table)


def test_selection_never_sees_the_test_part(fixtures, tmp_path, capsys):
    """Reversing every test rating (r -> 6 - r) leaves the CLI's selection unchanged."""
    import pandas as pd

    from bayes_pmf.cli import main

    test = pd.read_csv(fixtures / "u1.test", sep="\t", header=None)
    test[2] = 6 - test[2]
    flipped = tmp_path / "u1.test"
    test.to_csv(flipped, sep="\t", header=False, index=False)
    tables = []
    for test_file in (fixtures / "u1.test", flipped):
        assert main(["select", "--train", str(fixtures / "u1.base"), "--test", str(test_file),
                     "--lambdas", "1", "20", "--dims", "1", "2", "--folds", "3",
                     "--json"]) == 0
        tables.append(json.loads(capsys.readouterr().out))
    assert tables[0] == tables[1]


@pytest.mark.parametrize("kwargs, message", [
    ({"lambdas": ()}, "lambdas must list"),
    ({"lambdas": (-1.0,)}, "lambdas must be positive numbers"),
    ({"dims": (0,)}, "dims must be positive integers"),
    ({"k": 1}, "k must be an integer >= 2"),
])
def test_bad_grids_are_named(synthetic, kwargs, message):
    with pytest.raises(bp.ConfigError, match=message):
        select_hyperparameters(synthetic.data, progress=False, **kwargs)


def test_select_cli_and_fit_cv_select(fixtures, tmp_path, capsys):
    from bayes_pmf.cli import main

    args = ["--train", str(fixtures / "u1.base"), "--test", str(fixtures / "u1.test")]
    assert main(["select", *args, "--lambdas", "1", "50", "--dims", "1", "2", "--folds", "3",
                 "--json"]) == 0
    chosen = json.loads(capsys.readouterr().out)
    assert {chosen["lambda"], chosen["n_factors"]} <= {1.0, 50.0, 1, 2}
    assert len(chosen["table"]) == 4
    assert main(["fit", *args, "--cv-select", "--method", "als", "--json", "--no-figures",
                 "--out", str(tmp_path / "run")]) == 0
    metrics = json.loads(capsys.readouterr().out)
    assert metrics["settings"]["lambda_"] == metrics["selection"]["lambda"]
    assert metrics["settings"]["n_factors"] == metrics["selection"]["n_factors"]


# -- the posterior model, chosen by cross-validation (select_model) ----------------------

def _heaped(seed=4):
    """Ratings from the ordinal model (half stars, d = 2), 90% of the half stars moved to
    a whole star next to them (a coin picks which), so that they heap on whole stars as
    MovieLens users' do (there 74% are whole)."""
    spec = bp.PMFSpec(n_factors=2, sigma=0.6, likelihood="ordinal", prior="wishart")
    drawn = bp.make_synthetic(120, 60, 3000, spec, rng=seed).data
    rng = np.random.default_rng(seed)
    rating = drawn.rating.copy()
    moved = (rating % 1 == 0.5) & (rng.random(len(rating)) < 0.9)
    rating[moved] += np.where(rng.random(moved.sum()) < 0.5, -0.5, 0.5)
    users, items = drawn.id_pairs()
    heaped = bp.RatingsData.from_arrays(users, items, np.clip(rating, 1.0, 5.0),
                                        scale=drawn.scale)
    assert np.mean(heaped.rating % 1 == 0) > 0.9
    return heaped, spec


def test_posterior_selection_prefers_the_generating_likelihood_and_reports_true_folds():
    """On heaped ratings the ordinal posterior (cut points learned) scores the held-out
    levels far better than the Gaussian one (log score -1.27 against -1.74 in 3 folds of
    3,000 ratings: the margin is 50 times the fold spread) on every fold, so it is
    chosen; and a
    fold's numbers in the table are that fold refitted and rescored by hand."""
    from bayes_pmf.analysis.metrics import score
    from bayes_pmf.analysis.selection import select_model

    data, ordinal = _heaped()
    variants = {"gaussian": ordinal.with_(likelihood="gaussian", noise="learned"),
                "ordinal": ordinal}
    selection = select_model(data, variants, k=3, by="log_score", draws=40, tune=40,
                             chains=1, rng=0, progress=False)
    table = selection.table.set_index("model")
    assert selection.chosen == "ordinal" and list(selection.table["model"]) == [
        "ordinal", "gaussian"]
    assert all(o > g for o, g in zip(table.loc["ordinal", "fold_log_score"],
                                     table.loc["gaussian", "fold_log_score"]))
    assert table.loc["ordinal", "cv_log_score"] == pytest.approx(
        np.mean(table.loc["ordinal", "fold_log_score"]), abs=1e-6)
    fold = list(bp.kfold(data, 3, rng=0))[1]
    again = bp.sample_gibbs(fold.train, ordinal, draws=40, tune=40, chains=1, rng=0,
                            held_out=fold.test, progress=False)
    redone = score(again, fold.train, fold.test)
    assert table.loc["ordinal", "fold_rmse"][1] == pytest.approx(redone["rmse"], abs=1e-6)
    assert table.loc["ordinal", "fold_log_score"][1] == pytest.approx(redone["log_score"],
                                                                        abs=1e-6)
    by_rmse = select_model(data, variants, k=3, by="rmse", draws=40, tune=40, chains=1,
                           rng=0, progress=False)
    columns = [c for c in by_rmse.table if c != "sampling_seconds"]
    assert by_rmse.table.sort_values("model")[columns].reset_index(drop=True).equals(
        selection.table.sort_values("model")[columns].reset_index(drop=True))
    assert by_rmse.table["cv_rmse"].is_monotonic_increasing


@pytest.mark.parametrize("argv, flag", [
    (["--posterior", "--lambdas", "1"], "--lambdas"),
    (["--likelihoods", "ordinal"], "--likelihoods"),
    (["--draws", "10"], "--draws"),
    (["--posterior", "--folds", "1"], "--folds"),
    (["--posterior", "--draws", "0"], "--draws"),
])
def test_select_flags_of_the_other_mode_or_out_of_range_are_named(argv, flag, fixtures,
                                                                  capsys):
    from bayes_pmf.cli import main

    assert main(["select", "--train", str(fixtures / "u1.base"), "--test",
                 str(fixtures / "u1.test"), "--no-progress", *argv]) == 2
    captured = capsys.readouterr()
    assert flag in captured.err and "Traceback" not in captured.err
    assert captured.out == ""                        # nothing ran


def test_select_posterior_cli(fixtures, capsys):
    """The CLI's posterior selection on the MovieLens-format fixture: every variant of
    the grid in the table, the choice printed as the fit flags that run it."""
    from bayes_pmf.cli import main

    args = ["select", "--posterior", "--train", str(fixtures / "u1.base"), "--test",
            str(fixtures / "u1.test"), "--likelihoods", "gaussian", "ordinal", "--implicit",
            "none", "both", "--dims", "2", "--folds", "2", "--draws", "15", "--tune", "15",
            "--chains", "1", "--no-progress"]
    assert main([*args, "--json"]) == 0
    chosen = json.loads(capsys.readouterr().out)
    names = {row["model"] for row in chosen["table"]}
    assert names == {f"{lik}, implicit {imp}, d=2" for lik in ("gaussian", "ordinal")
                     for imp in ("none", "both")}
    assert chosen["chosen"] == chosen["table"][0]["model"] and chosen["k"] == 2
    assert chosen["settings"] == {"draws": 15, "tune": 15, "chains": 1}
    assert main(args) == 0
    printed = capsys.readouterr().out
    likelihood, implicit, d = chosen["chosen"].split(", ")
    assert (f"chosen: --likelihood {likelihood} --implicit {implicit.split()[1]} "
            f"--factors 2") in printed


def test_select_posterior_cli_compares_item_features(fixtures, tmp_path, capsys):
    """--item-features none auto (with --items, an items file with genres): each is a
    variant of its own, named, and the choice is printed with its --item-features;
    "auto" resolves to the genres on every fold."""
    from bayes_pmf.cli import main
    from bayes_pmf.workflows.config import FitJobConfig
    from bayes_pmf.workflows.report import posterior_variants

    items = tmp_path / "items.csv"
    genres = ["Comedy|Drama", "Drama", "Horror|Comedy", "War", "Drama|War"]
    items.write_text("item,genres\n" + "".join(f"{k},{genres[k % 5]}\n"
                                                for k in range(1, 1683)))
    args = ["select", "--posterior", "--train", str(fixtures / "u1.base"), "--test",
            str(fixtures / "u1.test"), "--items", str(items), "--likelihoods", "gaussian",
            "--implicit", "none", "--item-features", "none", "auto", "--dims", "2",
            "--folds", "2", "--draws", "10", "--tune", "10", "--chains", "1", "--no-progress"]
    assert main([*args, "--json"]) == 0
    chosen = json.loads(capsys.readouterr().out)
    assert {row["model"] for row in chosen["table"]} == {
        f"gaussian, implicit none, d=2, item features {tags}" for tags in ("none", "auto")}
    assert main(args) == 0
    tags = chosen["chosen"].split(", ")[-1].split()[-1]
    assert f"--factors 2 --item-features {tags}" in capsys.readouterr().out
    train = bp.load_split(train=fixtures / "u1.base", test=fixtures / "u1.test",
                          items=items)[0].train
    variants = posterior_variants(FitJobConfig(), ["gaussian"], ["none"], [2], ["none", "auto"])
    assert [variant(train).item_features for variant in variants.values()] == [None, "genres"]


def test_select_posterior_cli_defaults_are_the_librarys():
    """`bayes-pmf select --posterior` and bp.select_model sample and choose alike."""
    import inspect

    from bayes_pmf.cli.main import POSTERIOR_SELECT

    defaults = {name: p.default for name, p in
                inspect.signature(bp.select_model).parameters.items()}
    assert {key: POSTERIOR_SELECT[key] for key in ("draws", "tune", "chains", "by")} == {
        key: defaults[key] for key in ("draws", "tune", "chains", "by")}
    assert POSTERIOR_SELECT["folds"] == defaults["k"]

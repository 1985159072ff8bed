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

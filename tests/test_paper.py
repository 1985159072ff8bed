"""The paper reproduction runs end to end (fast settings) and states its findings from
the numbers it measured."""

import json

import numpy as np
import pandas as pd
import pytest

import bayes_pmf as bp


@pytest.fixture(scope="module")
def ratings_csv(tmp_path_factory):
    spec = bp.PMFSpec(n_factors=2, sigma=0.5, sigma_u=0.6, sigma_v=0.6, biases=True)
    truth = bp.make_synthetic(120, 80, 3000, spec, rng=4)
    frame = truth.data.to_frame()
    frame["rating"] = np.clip(np.round(frame["rating"]), 1, 5)
    path = tmp_path_factory.mktemp("paper") / "ratings.csv"
    frame.to_csv(path, index=False)
    return path


@pytest.fixture(scope="module")
def untidy_csv(ratings_csv):
    """The ratings with two rows a reader must be told what to do with: a rating of 7 on
    the 1-5 stars, and the first pair rated a second time."""
    frame = pd.read_csv(ratings_csv)
    extra = frame.iloc[[1, 0]].assign(rating=[7.0, 5.0])
    path = ratings_csv.with_name("untidy.csv")
    pd.concat([frame, extra], ignore_index=True).to_csv(path, index=False)
    return path


def test_paper_refuses_an_untidy_file_naming_the_flag_that_reads_it(untidy_csv, tmp_path,
                                                                     capsys):
    """Before any fit: status 2, the row named, the advice as paper's own flag (it has
    --scale, --invalid and --duplicates, as fit has), nothing written."""
    from bayes_pmf.cli import main

    out = tmp_path / "paper"
    assert main(["paper", "--data", str(untidy_csv), "--fast", "--no-progress",
                 "--out", str(out), "--scale", "1", "5", "1"]) == 2
    error = capsys.readouterr().err
    assert "7" in error and "--invalid drop" in error and "invalid='drop'" not in error
    assert not out.exists()


@pytest.mark.slow
def test_paper_command_writes_findings_consistent_with_its_tables(untidy_csv, tmp_path,
                                                                   capsys):
    """The whole report (fast settings) on a file read with --scale, --invalid drop and
    --duplicates last: the rows left out are counted in metrics.json and said in the
    report."""
    from bayes_pmf.cli import main

    out = tmp_path / "paper"
    assert main(["paper", "--data", str(untidy_csv), "--fast", "--no-progress",
                 "--out", str(out), "--scale", "1", "5", "1", "--invalid", "drop",
                 "--duplicates", "last"]) == 0
    printed = capsys.readouterr().out
    metrics = json.loads((out / "metrics.json").read_text())
    ingest = metrics["dataset"]["ingest"]
    assert ingest["n_read"] == 3002 and ingest["n_used"] == 3000
    assert sum(ingest["rejected"].values()) == 2, ingest
    assert metrics["settings"]["invalid"] == "drop"
    assert metrics["settings"]["scale"] == [1.0, 5.0, 1.0]
    assert "3,000 ratings (of 3,002 rows read; left out: " in (out / "report.md").read_text()
    assert "rows left out: 2 of 3,002 (" in printed
    findings, tables = metrics["findings"], metrics["tables"]
    assert set(findings) == {"overfitting", "adaptive_priors", "constrained", "bayes_vs_map",
                             "dimension"}
    for value in findings.values():
        assert value["text"].replace("**", "").split(":")[0][:20] in printed
        assert ("not reproduced" in value["text"]) != value["holds"]
    by_d = {row["d"]: row for row in tables["by_d"]}
    bayes = findings["bayes_vs_map"]
    assert bayes["holds"] == (bayes["posterior_rmse"] < bayes["map_rmse"])
    assert bayes["map_rmse"] == by_d[5]["map_rmse"]  # d = 10 not in the fast grid: largest
    curves = tables["overfitting"]
    assert {row["model"] for row in curves} == {"unregularised MF", "PMF"}
    report = (out / "report.md").read_text()
    assert "| finding | verdict |" in report and report.count("![") == 4
    assert (out / "report.html").read_text().count("data:image/png;base64,") == 4


def test_sparsify_users_keeps_few_ratings_for_the_chosen_users(synthetic):
    from bayes_pmf.workflows.paper import sparsify_users

    data = synthetic.data
    thinned = sparsify_users(data, 0.5, 3, rng=0)
    counts = dict(zip(thinned.user_ids, thinned.user_counts))
    before = dict(zip(data.user_ids, data.user_counts))
    kept_few = [u for u in counts if counts[u] <= 3 < before[u]]
    untouched = [u for u in counts if counts[u] == before[u]]
    assert len(kept_few) > 0.3 * data.n_users and len(untouched) > 0.3 * data.n_users
    assert set(counts) == set(before)  # every user keeps at least one rating
    assert triples_subset(thinned, data)


def triples_subset(small, big) -> bool:
    a = set(map(tuple, small.to_frame()[["user", "item", "rating"]].to_numpy()))
    b = set(map(tuple, big.to_frame()[["user", "item", "rating"]].to_numpy()))
    return a <= b


def test_the_bayes_finding_names_the_d_it_reads():
    """--fast runs d = 2, 5 while the default d is 10: the finding is stated at d = 5,
    the largest d run (it used to print "d = 1", a row position)."""
    import pandas as pd

    from bayes_pmf.workflows.paper import finding_bayes

    table = pd.DataFrame({"d": [5, 2], "map_rmse": [0.90, 0.91],
                          "posterior_rmse": [0.88, 0.92]})
    finding = finding_bayes(table, n_factors=10)
    assert finding["text"].startswith("(d) At d = 5,") and finding["holds"]
    assert finding["posterior_rmse"] == 0.88
    at_two = finding_bayes(table, n_factors=2)
    assert at_two["text"].startswith("(d) At d = 2,") and not at_two["holds"]

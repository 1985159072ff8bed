import json
import subprocess
import sys

import numpy as np
import pytest

import bayes_pmf as bp
from bayes_pmf.cli import main


def _fit_json(args, capsys):
    assert main(["fit", "--json", *args]) == 0
    out = capsys.readouterr().out
    return json.loads(out)


def test_fit_json_on_given_split(fixtures, tmp_path, capsys):
    # short chains: this checks what is written, not the posterior
    metrics = _fit_json(["--train", str(fixtures / "u1.base"), "--test", str(fixtures / "u1.test"),
                         "--factors", "2", "--draws", "100", "--tune", "50",
                         "--out", str(tmp_path / "run")], capsys)
    assert metrics["split"]["n_train"] == 48 and metrics["split"]["n_test"] == 12
    methods = [r["method"] for r in metrics["results"]]
    assert methods[:4] == ["global-mean", "user-mean", "item-mean", "bias-baseline"]
    assert "pmf-als" in methods
    for entry in metrics["results"]:
        assert {"method", "rmse", "mae", "fit_seconds"} <= set(entry)
        assert entry["n_test"] == 12
    written = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert written["results"] == metrics["results"]
    assert (tmp_path / "run" / "models" / "pmf-als.nc").is_file()


def test_fit_samples_the_implicit_feedback_model_by_default(fixtures, tmp_path, capsys):
    """The main job's posterior has implicit feedback on both sides unless --implicit says
    otherwise (the default "auto" is "both" on data this small); the saved model and
    metrics.json say which model ran."""
    common = ["--train", str(fixtures / "u1.base"), "--test", str(fixtures / "u1.test"),
              "--factors", "2", "--draws", "20", "--tune", "10", "--chains", "2",
              "--method", "gibbs"]
    for flag, users, items in (([], True, True), (["--implicit", "items"], False, True),
                               (["--implicit", "none"], False, False)):
        out = tmp_path / f"run-{flag[1] if flag else 'default'}"
        metrics = _fit_json(common + flag + ["--out", str(out)], capsys)
        assert metrics["settings"]["implicit"] == (flag[1] if flag else "auto")
        assert metrics["implicit"] == metrics["sampling"]["implicit"] == (
            flag[1] if flag else "both")
        saved = bp.load_result(out / "models" / "bpmf-gibbs-ordinal.nc")
        assert (saved.spec.constrained, saved.spec.implicit_items) == (users, items)
        assert ("W" in saved.draws, "Z" in saved.draws) == (users, items)


@pytest.mark.slow
def test_fit_uses_the_genres_of_the_embedded_movielens(tmp_path, capsys):
    """--item-features auto (the default) on the embedded MovieLens: the posterior model
    has the genres' factors, metrics.json says so, and the cold items' RMSE differs from
    the same run's with --item-features none (where they get the prior mean); a user
    file without item information runs without them."""
    common = ["--factors", "2", "--draws", "10", "--tune", "10", "--chains", "1",
              "--method", "gibbs", "--implicit", "none"]
    runs = {}
    for flag in ("auto", "none"):
        out = tmp_path / flag
        runs[flag] = _fit_json(common + ["--item-features", flag, "--out", str(out)], capsys)
        saved = bp.load_result(out / "models" / "bpmf-gibbs-ordinal.nc")
        assert (saved.spec.item_features, "Phi" in saved.draws) == (
            ("genres", True) if flag == "auto" else (None, False))
    assert runs["auto"]["item_features"] == "genres" and runs["none"]["item_features"] is None
    cold = {flag: runs[flag]["results"][-1]["rmse_cold"] for flag in runs}
    assert runs["auto"]["results"][-1]["n_cold_scored"] == 339 and cold["auto"] != cold["none"]


def test_fit_is_reproducible(fixtures, tmp_path, capsys):
    # 4 chains in 2 processes as by default, shorter: reruns must agree however long
    args = ["--data", str(fixtures / "ratings.csv"), "--test-fraction", "0.2", "--seed", "3",
            "--draws", "200", "--tune", "50"]
    first = _fit_json(args + ["--out", str(tmp_path / "a")], capsys)
    second = _fit_json(args + ["--out", str(tmp_path / "b")], capsys)
    strip = lambda m: [{k: v for k, v in r.items() if k != "fit_seconds"} for r in m["results"]]
    assert strip(first) == strip(second)


@pytest.mark.parametrize("args, message", [
    (["--data", "missing.csv"], "ratings file not found"),
    (["--factors", "0"], "--factors must be a positive integer"),
    (["--test-fraction", "1.5"], "--test-fraction must be in (0, 1)"),
    (["--train", "x.csv"], "--train and --test go together"),
])
def test_cli_errors_exit_2_without_traceback(args, message, tmp_path):
    proc = subprocess.run([sys.executable, "-m", "bayes_pmf", "fit", "--no-progress",
                           "--out", str(tmp_path / "o"), *args],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2
    assert message in proc.stderr
    assert "Traceback" not in proc.stderr


def test_fit_runs_constrained_pmf_from_the_command_line(fixtures, tmp_path, capsys):
    assert main(["fit", "--json", "--train", str(fixtures / "u1.base"), "--test",
                 str(fixtures / "u1.test"), "--factors", "2", "--method", "als",
                 "--method", "constrained", "--out", str(tmp_path / "run")]) == 0
    metrics = json.loads(capsys.readouterr().out)
    rows = {row["method"]: row for row in metrics["results"]}
    assert "pmf-constrained" in rows and np.isfinite(rows["pmf-constrained"]["rmse"])
    saved = bp.load_result(tmp_path / "run" / "models" / "pmf-constrained.nc")
    assert saved.method == "pmf-constrained" and "W" in saved.draws


def test_fit_with_the_logistic_link_and_rounding(fixtures, tmp_path, capsys):
    """`fit --link logistic` runs the paper's logistic model by MAP (its default method),
    and `--round` scores predictions snapped to the rating grid; ALS and Gibbs refuse
    the link before any work."""
    args = ["--train", str(fixtures / "u1.base"), "--test", str(fixtures / "u1.test"),
            "--factors", "2", "--no-figures"]
    metrics = _fit_json(args + ["--link", "logistic", "--round", "--out", str(tmp_path / "r")],
                        capsys)
    assert metrics["settings"]["link"] == "logistic"
    assert metrics["settings"]["round_predictions"] is True
    assert [r["method"] for r in metrics["results"]][-1] == "pmf-map"
    model = bp.load_result(tmp_path / "r" / "models" / "pmf-map.nc")
    assert model.spec.link == "logistic"
    test = bp.load_ratings(fixtures / "u1.test")
    users, items = test.id_pairs()
    # the fixture's grid: whole stars 1-5
    snapped = np.round(np.clip(model.predict(users, items, unknown="prior"), 1, 5))
    rmse = float(np.sqrt(np.mean((snapped - test.rating) ** 2)))
    assert metrics["results"][-1]["rmse"] == pytest.approx(rmse, abs=1e-9)
    assert main(["fit", "--json", *args, "--link", "logistic", "--method", "gibbs",
                 "--out", str(tmp_path / "g")]) == 2
    assert "logistic link" in capsys.readouterr().err
    assert not (tmp_path / "g").exists()



def test_check_map_json_keeps_stdout_json_and_says_what_runs(fixtures, capsys):
    """`check-map --json`: stdout is the JSON report alone; stderr says at once what is
    under way (it used to run silent for minutes on large data)."""
    assert main(["check-map", "--json", "--train", str(fixtures / "u1.base"), "--test",
                 str(fixtures / "u1.test"), "--factors", "2", "--no-cold"]) == 0
    captured = capsys.readouterr()
    report = json.loads(captured.out)
    assert abs(report["objective_rel_diff"]) < 1e-8
    assert "check-map: fitting ALS and PyMC's MAP" in captured.err

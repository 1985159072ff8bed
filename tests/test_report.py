"""Reproducibility reports: config round trip, exact reruns, rendering, the committed report."""

import json
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

import bayes_pmf as bp
from bayes_pmf.workflows.config import FitJobConfig, ReportConfig, read_config
from bayes_pmf.workflows.report import write_report
from bayes_pmf.workflows.reproducibility import comparable_metrics, compare_metrics, promise

ROOT = Path(__file__).parents[1]
COMMITTED = ROOT / "reports" / "movielens-default"


@pytest.fixture(scope="module")
def small_config():
    fixtures = Path(__file__).parent / "fixtures"
    job = FitJobConfig(train=str(fixtures / "u1.base"), test=str(fixtures / "u1.test"),
                       n_factors=2, draws=30, tune=20, chains=2, progress=False)
    return ReportConfig(job=job, title="Small report")


@pytest.fixture(scope="module")
def small_report(small_config, tmp_path_factory):
    return write_report(small_config, tmp_path_factory.mktemp("report") / "first")


def test_config_round_trips_through_toml(small_config, tmp_path):
    path = tmp_path / "config.toml"
    path.write_text(small_config.as_toml())
    assert read_config(path) == small_config
    custom = ReportConfig(job=FitJobConfig(n_factors=7, seed=3, lambda_=2.5,
                                           methods=("als", "map")), crosscheck=False,
                          title='A "quoted" title')
    path.write_text(custom.as_toml())
    assert read_config(path) == custom


def test_a_config_file_with_a_byte_order_mark_reads_and_its_errors_name_its_keys(
        small_config, tmp_path, capsys):
    """Windows Notepad starts a UTF-8 file with a byte-order mark: the config still reads.
    `bayes-pmf report` names a bad setting by its key in the file (n_factors), not by
    `bayes-pmf fit`'s flag (--factors)."""
    from bayes_pmf.cli import main

    path = tmp_path / "config.toml"
    path.write_bytes(b"\xef\xbb\xbf" + small_config.as_toml().encode())
    assert read_config(path) == small_config
    path.write_bytes(b"\xef\xbb\xbf[job]\nn_factors = 'ten'\n")
    assert main(["report", "--config", str(path), "--out", str(tmp_path / "r")]) == 2
    assert capsys.readouterr().err.strip() == (
        "bayes-pmf report: error: n_factors must be a positive integer, got 'ten'")
    # settings given as flags are named as flags, as `bayes-pmf fit` names them
    assert main(["report", "--factors", "0", "--scale", "1", "5", "1", "--out",
                 str(tmp_path / "r")]) == 2
    assert capsys.readouterr().err.strip() == (
        "bayes-pmf report: error: --factors must be a positive integer, got 0")


@pytest.mark.parametrize("text, message", [
    ("[job]\nfactors = 3\n", r"unknown setting\(s\) \['factors'\]"),
    ("[job]\nn_factors = 0\n", "n_factors must be a positive integer"),
    ("[job]\nmethods = \"als\"\n", "methods must be a list"),
    ("[jobs]\n", r"unknown table\(s\) \['jobs'\]"),
    ("[job\n", "not valid TOML"),
])
def test_bad_config_files_are_named(tmp_path, text, message):
    path = tmp_path / "config.toml"
    path.write_text(text)
    with pytest.raises(bp.ConfigError, match=message):
        read_config(path)
    with pytest.raises(bp.ConfigError, match="not found"):
        read_config(tmp_path / "missing.toml")


def test_files_get_the_permissions_of_the_umask(small_report, tmp_path):
    """Run-folder files are created like open(path, "w") would: 0o666 less the umask
    (tempfile alone gives 0o600)."""
    import stat

    from bayes_pmf.fileio import atomic_write, default_file_mode

    for name in ("metrics.json", "results.csv", "report.md", "config.toml"):
        assert stat.S_IMODE((small_report / name).stat().st_mode) == default_file_mode()
    model = next((small_report / "models").glob("*.nc"))
    assert stat.S_IMODE(model.stat().st_mode) == default_file_mode()
    previous = os.umask(0o022)
    try:
        written = atomic_write(tmp_path / "a.json", "{}")
        assert stat.S_IMODE(written.stat().st_mode) == 0o644
        os.umask(0o077)
        assert stat.S_IMODE(atomic_write(tmp_path / "b.json", "{}").stat().st_mode) == 0o600
    finally:
        os.umask(previous)


def test_report_folder_holds_every_part(small_report):
    names = {p.name for p in small_report.iterdir()}
    assert {"report.md", "report.html", "config.toml", "metrics.json", "results.csv",
            "diagnostics.csv", "figures", "models"} <= names
    metrics = json.loads((small_report / "metrics.json").read_text())
    markdown = (small_report / "report.md").read_text()
    for heading in ("## Data", "## Split", "## Settings and seeds", "## Held-out accuracy",
                    "## RMSE by user activity", "## PyMC MAP against the NumPy ALS reference",
                    "## Convergence diagnostics", "## Figures", "## Software and machine"):
        assert heading in markdown
    als = next(r for r in metrics["results"] if r["method"] == "pmf-als")
    assert f"| pmf-als | {als['rmse']:.4f} |" in markdown
    assert metrics["dataset"]["sha256"] in markdown
    assert abs(metrics["crosscheck"]["objective_rel_diff"]) < 1e-8
    html = (small_report / "report.html").read_text()
    figures = metrics["figures"]
    assert len(figures) >= 6
    # every figure is embedded, none linked, so the HTML file stands alone
    assert html.count('<img src="data:image/png;base64,') == len(figures)
    assert 'src="figures/' not in html


def test_the_reports_data_table_shows_what_reading_the_data_said(small_report):
    """A run's data warnings (metrics.json dataset.warnings) are rows of the report's
    Data table; a run without any (the small report's synthetic data) has none."""
    from bayes_pmf.workflows.report import _data_blocks

    metrics = json.loads((small_report / "metrics.json").read_text())
    assert "warnings" not in metrics["dataset"]
    assert "warning on reading" not in (small_report / "report.md").read_text()
    metrics["dataset"]["warnings"] = ["user ids are kept as text: ...", "a second one"]
    table = next(block[1] for block in _data_blocks(metrics) if block[0] == "table")
    rows = table[table.iloc[:, 0] == "warning on reading"]
    assert list(rows["value"]) == metrics["dataset"]["warnings"]
    # given train and test files: each file's rows read, used and left out
    metrics["dataset"]["test_ingest"] = {"n_read": 12, "n_used": 10,
                                         "rejected": {"non-numeric ratings": 2}}
    table = next(block[1] for block in _data_blocks(metrics) if block[0] == "table")
    shown = dict(zip(table.iloc[:, 0], table["value"]))
    n_read = metrics["dataset"]["ingest"]["n_read"]
    assert shown["rows read / used (training file)"] == f"{n_read:,} / {n_read:,}"
    assert shown["rows rejected (training file)"] == "none"
    assert shown["rows read / used (test file)"] == "12 / 10"
    assert shown["rows rejected (test file)"] == "non-numeric ratings: 2"


def test_rerun_from_its_own_config_reproduces_the_numbers(small_report, tmp_path, capsys):
    from bayes_pmf.cli import main

    rerun = tmp_path / "rerun"
    assert main(["report", "--config", str(small_report / "config.toml"), "--out",
                 str(rerun), "--no-progress"]) == 0
    first = comparable_metrics(json.loads((small_report / "metrics.json").read_text()))
    second = comparable_metrics(json.loads((rerun / "metrics.json").read_text()))
    assert first == second  # bit-identical: same seeds, same machine
    assert main(["report", "--config", str(small_report / "config.toml"),
                 "--factors", "3"]) == 2
    assert "edit the file instead of giving --factors" in capsys.readouterr().err


def _chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


def test_html_report_renders_with_visible_figures(small_report, tmp_path):
    """Headless Chromium screenshots the HTML: the tables and text are grey/black, the
    figures are the only saturated colours, so a report whose figures failed to embed or
    display shows (almost) no coloured pixels."""
    import matplotlib.image as mpimg

    browser = _chromium()
    if browser is None:
        if os.environ.get("CI"):
            pytest.fail("CI must have chromium (.ci/run installs it)")
        pytest.skip("chromium not installed")
    shot = tmp_path / "report.png"
    proc = subprocess.run(
        [browser, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
         "--window-size=1000,9000", f"--screenshot={shot}",
         (small_report / "report.html").as_uri()],
        capture_output=True, text=True, timeout=120)
    assert shot.is_file(), proc.stderr[-1000:]
    pixels = mpimg.imread(shot)[..., :3]
    saturation = pixels.max(axis=2) - pixels.min(axis=2)
    colored = saturation > 0.25
    assert colored.mean() > 0.01  # measured 0.046 with 8 figures
    # and the colour is below the tables, where the figures section is
    first_colored_row = np.argmax(colored.any(axis=1))
    assert first_colored_row > 1000


def test_promises_are_as_strict_as_stated():
    """compare_metrics rejects what each promise rules out and accepts what it allows."""
    committed = json.loads((COMMITTED / "metrics.json").read_text())
    same = json.loads(json.dumps(committed))
    assert compare_metrics(same, committed, "identical").identical
    gibbs = next(i for i, r in enumerate(committed["results"])
                 if r["method"] == "bpmf-gibbs-ordinal")

    def moved(path_value):
        copy = json.loads(json.dumps(committed))
        path_value(copy)
        return copy

    als = next(i for i, r in enumerate(committed["results"]) if r["method"] == "pmf-als")
    last_bits = moved(lambda m: m["results"][als].update(rmse=m["results"][als]["rmse"]
                                                           * (1 + 3e-9)))
    assert compare_metrics(last_bits, committed, "identical").failures  # bits differ
    assert not compare_metrics(last_bits, committed, "kernels").failures
    # the PyMC cross-check, compiled anew in each process, may move in the last bit even
    # under "identical" (measured 5e-16); a real movement still fails
    map_bits = moved(lambda m: m["crosscheck"].update(
        objective_map=m["crosscheck"]["objective_map"] * (1 + 5e-16)))
    assert not compare_metrics(map_bits, committed, "identical").failures
    assert not compare_metrics(map_bits, committed, "identical").identical
    map_off = moved(lambda m: m["crosscheck"].update(
        objective_rel_diff=m["crosscheck"]["objective_rel_diff"] + 1e-9))
    assert compare_metrics(map_off, committed, "identical").failures
    als_off = moved(lambda m: m["results"][als].update(rmse=m["results"][als]["rmse"] + 1e-5))
    assert compare_metrics(als_off, committed, "kernels").failures  # ALS: no Monte Carlo
    # the sampled posterior under other kernels: another realisation (measured 3.1e-5 in
    # RMSE), held to Monte Carlo error as under other versions
    monte_carlo = moved(lambda m: m["results"][gibbs].update(rmse=m["results"][gibbs]["rmse"]
                                                               + 0.001))
    assert compare_metrics(monte_carlo, committed, "identical").failures
    assert not compare_metrics(monte_carlo, committed, "kernels").failures
    assert not compare_metrics(monte_carlo, committed, "versions").failures
    worse = moved(lambda m: m["results"][gibbs].update(rmse=m["results"][gibbs]["rmse"] + 0.01))
    assert compare_metrics(worse, committed, "versions").failures
    assert compare_metrics(worse, committed, "kernels").failures
    count = moved(lambda m: m["split"].update(n_test=m["split"]["n_test"] + 1))
    for level in ("identical", "kernels", "versions"):
        assert compare_metrics(count, committed, level).failures  # counts never move
    timing = moved(lambda m: m["results"][gibbs].update(fit_seconds=1e6))
    assert compare_metrics(timing, committed, "identical").identical  # timings ignored
    fingerprint = committed["numerics"]
    other_cpu = dict(fingerprint, cpu_model="another CPU")
    other_numpy = dict(fingerprint, versions=dict(fingerprint["versions"], numpy="0.0"))
    assert promise(fingerprint, dict(fingerprint)) == "identical"
    assert promise(other_cpu, fingerprint) == "kernels"
    assert promise(other_numpy, fingerprint) == "versions"
    assert promise(fingerprint, None) == "versions"


def test_a_report_can_show_the_posterior_model_selection(small_config, tmp_path):
    """[report] model_selection = true: the report cross-validates the posterior model's
    variants on the training part (4 variants, 3 folds, the job's short chains) and shows
    the comparison, best first, with the variant the report itself runs; the setting
    round-trips through config.toml."""
    from dataclasses import replace

    config = replace(small_config, crosscheck=False, model_selection=True)
    path = tmp_path / "config.toml"
    path.write_text(config.as_toml())
    assert read_config(path) == config
    out = write_report(config, tmp_path / "selected")
    metrics = json.loads((out / "metrics.json").read_text())
    selection = metrics["model_selection"]
    # the ordinal model with the job's thresholds (each user's own, the default)
    assert {row["model"] for row in selection["table"]} == {
        f"{lik}, implicit {imp}, d=2" for lik in ("gaussian", "ordinal (user thresholds)")
        for imp in ("none", "both")}
    assert selection["settings"] == {"draws": 30, "tune": 20, "chains": 2}  # the job's
    assert selection["run_model"] == "ordinal (user thresholds), implicit both, d=2"
    scores = [row["cv_rmse"] for row in selection["table"]]
    assert scores == sorted(scores) and selection["chosen"] == selection["table"][0]["model"]
    text = (out / "report.md").read_text()
    assert "## Model selection" in text and selection["chosen"] in text
    assert "this report's model is ordinal (user thresholds), implicit both, d=2" in text
    assert read_config(out / "config.toml").model_selection

"""The architecture is checked, not just drawn: the import graph of the package's own
modules stays shallow and sparse, and the held-out predictions of a run are computed
once per model."""

import importlib.util
from pathlib import Path

import numpy as np
import pytest

import bayes_pmf as bp

ROOT = Path(__file__).parents[1]


def _import_graph():
    path = ROOT / "tools" / "import_graph.py"
    spec = importlib.util.spec_from_file_location("import_graph", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_import_graph_is_at_most_8_layers_and_3_arrows_per_module():
    """Counted as the redesign issue counts: every import between the package's modules,
    re-exporting __init__ files looked through (tools/import_graph.py). The redesign
    left 110 arrows among 36 modules (3.06 each): new modules may add their own."""
    graph = _import_graph()
    nodes, edges = graph.build_graph("bayes_pmf")
    depth, chain = graph.layers(nodes, edges)
    assert depth <= 8, chain
    assert len(edges) <= 3.1 * len(nodes), (len(edges), len(nodes))
    # the counter sees what it should: a known arrow and a known chain
    assert ("bayes_pmf.engines.gibbs", "bayes_pmf.engines.ridge") in edges
    # (a longest chain ends in a module that imports none of the package's)
    assert chain[0] == "bayes_pmf.__main__"
    assert chain[-1] in ("bayes_pmf.errors", "bayes_pmf.engines.gather")


def test_the_counter_counts_function_level_and_reexported_imports(tmp_path, monkeypatch):
    """A function-level import and an import through a re-exporting __init__ both count
    as arrows to the defining module."""
    graph = _import_graph()
    package = tmp_path / "pkg"
    (package / "wing").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "wing" / "__init__.py").write_text("from .inner import thing\n")
    (package / "wing" / "inner.py").write_text("thing = 1\n")
    (package / "top.py").write_text("def f():\n    from .wing import thing\n    return thing\n")
    monkeypatch.setattr(graph, "ROOT", tmp_path)
    nodes, edges = graph.build_graph("pkg")
    assert edges == [("pkg.top", "pkg.wing.inner")]
    assert graph.layers(nodes, edges)[0] == 2


def test_a_fit_run_computes_held_out_predictions_once_per_model(tmp_path, monkeypatch):
    """The predictive draws and posterior-mean predictions of the held-out pairs are
    computed once per model in a whole `bayes-pmf fit` run (scores, diagnostics, every
    figure, the run folder), not once per consumer."""
    from bayes_pmf.result import predictive
    from bayes_pmf.result.result import PMFResult
    from bayes_pmf.workflows.config import FitJobConfig
    from bayes_pmf.workflows.report import run_fit

    calls = {"draws": 0, "means": []}
    sampled, gaussian = predictive._sampled_summaries, predictive._gaussian_interval_columns
    means = PMFResult.mean_prediction
    def counted(original):
        def wrapper(*args, **kwargs):
            calls["draws"] += 1
            return original(*args, **kwargs)
        return wrapper

    def counted_means(self, users, items, **kwargs):
        calls["means"].append(len(users))
        return means(self, users, items, **kwargs)

    monkeypatch.setattr(predictive, "_sampled_summaries", counted(sampled))
    monkeypatch.setattr(predictive, "_gaussian_interval_columns", counted(gaussian))
    monkeypatch.setattr(PMFResult, "mean_prediction", counted_means)
    fixtures = Path(__file__).parent / "fixtures"
    config = FitJobConfig(train=str(fixtures / "u1.base"), test=str(fixtures / "u1.test"),
                          n_factors=2, draws=20, tune=10, chains=2, progress=False)
    run = run_fit(config, tmp_path / "run")
    models = run.outcome.models
    with_predictive = sum(model.has_predictive for model in models.values())
    n_test = run.outcome.split.test.n_ratings
    assert calls["means"].count(n_test) == len(models)  # 7: the baselines, ALS twice, Gibbs
    assert calls["draws"] == with_predictive  # the mean baselines have no predictive
    assert {"ppc_ratings", "calibration", "pit", "rank_identifiable"} <= set(run.figures)
    # scored models the figures do not read keep no per-pair predictions (memory at 10^7)
    kept = {name for name, model in models.items() if model.held_out is not None}
    assert kept == {"bias-baseline", "pmf-als", "bpmf-gibbs-ordinal"}
    # and of those only the columns the figures and diagnostics read (every figure above
    # was drawn from them: a missing one would have raised or been recomputed, counted)
    columns = {name: set(models[name].held_out[1].columns) for name in kept}
    pairs = {"user", "item", "held_out_rating"}
    assert columns["bias-baseline"] == pairs | {"mean"}
    assert "lower_90" in columns["pmf-als"] and "prob_5.0" not in columns["pmf-als"]
    assert {"lpd", "pred_sd", "lower_90"} <= columns["bpmf-gibbs-ordinal"]
    assert "prob_5.0" not in columns["bpmf-gibbs-ordinal"]
    draws = {name: models[name].held_out[0].shape[0] for name in kept}
    assert draws["bias-baseline"] == draws["pmf-als"] == 0 < draws["bpmf-gibbs-ordinal"]


def test_every_engine_returns_a_pmf_result_named_by_its_run(synthetic):
    data = synthetic.data
    spec = bp.PMFSpec(n_factors=2, sigma=0.5)
    results = [bp.fit_global_mean(data), bp.fit_user_mean(data), bp.fit_item_mean(data),
               bp.fit_bias_baseline(data), bp.fit_als(data, spec, method="pmf-als",
                                                      progress=False),
               bp.sample_gibbs(data, spec, draws=4, tune=2, chains=1, method="bpmf-gibbs",
                               progress=False)]
    assert all(isinstance(r, bp.PMFResult) for r in results)
    assert [r.method for r in results] == ["global-mean", "user-mean", "item-mean",
                                           "bias-baseline", "pmf-als", "bpmf-gibbs"]
    users, items = data.id_pairs()
    for result in results:
        assert np.isfinite(result.predict(users[:5], items[:5])).all()


@pytest.mark.parametrize("engine", ["fit_als", "sample_gibbs", "fit_constrained"])
def test_engines_take_the_model_from_the_spec_only(synthetic, engine):
    """The model is the spec's: an engine refuses a spec it cannot fit, naming the spec
    that it can, instead of fitting another model under the same name."""
    data = synthetic.data
    wishart = bp.PMFSpec(n_factors=2, prior="wishart", noise="learned")
    if engine == "fit_als":
        with pytest.raises(bp.ConfigError, match="map_model"):
            bp.fit_als(data, wishart, progress=False)
        with pytest.raises(bp.ConfigError, match="implicit feedback"):
            bp.fit_als(data, bp.PMFSpec(n_factors=2, implicit_items=True), progress=False)
    elif engine == "sample_gibbs":
        with pytest.raises(bp.ConfigError, match="link"):
            bp.sample_gibbs(data, wishart.with_(link="logistic"), progress=False)
    else:
        with pytest.raises(bp.ConfigError, match="constrained=True"):
            bp.fit_constrained(data, bp.PMFSpec(n_factors=2), progress=False)
        with pytest.raises(bp.ConfigError, match="implicit_items"):
            bp.fit_constrained(data, bp.PMFSpec(n_factors=2, constrained=True,
                                                implicit_items=True), progress=False)
    with pytest.raises(bp.ConfigError, match="PMFSpec"):
        getattr(bp, engine)(data, None, progress=False)


def test_every_public_function_says_what_it_does():
    """A notebook user reads help(): every public callable of bayes_pmf and of
    bayes_pmf.plots has a docstring (rmse, mae and six plot functions had none)."""
    import inspect

    from bayes_pmf import plots

    public = [(f"bayes_pmf.{name}", getattr(bp, name)) for name in bp.__all__
              if callable(getattr(bp, name))]
    public += [(f"bayes_pmf.plots.{name}", function)
               for name, function in inspect.getmembers(plots, inspect.isfunction)
               if not name.startswith("_") and function.__module__ == plots.__name__]
    assert len(public) > 40
    assert [name for name, thing in public if not inspect.getdoc(thing)] == []


def test_the_api_reference_is_current():
    """docs/api.md is generated from the signatures and docstrings
    (tools/api_reference.py); a changed signature or docstring without a regenerated
    reference fails here."""
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).parents[1]
    proc = subprocess.run([sys.executable, str(root / "tools" / "api_reference.py"),
                           "--check"], capture_output=True, text=True, cwd=root)
    assert proc.returncode == 0, proc.stderr


def test_the_command_starts_without_arviz_and_a_fit_still_returns_inference_data():
    """ArviZ is imported when a result is first built, not with the package: it was
    1.2 s of the 2.7 s that ``bayes-pmf --help`` or a refused input file took to answer.
    A fit then gets its InferenceData as before, and ``idata.InferenceData`` is ArviZ's."""
    import subprocess
    import sys

    code = ("import sys, bayes_pmf; from bayes_pmf.cli import main; "
            "print('arviz' in sys.modules); "
            "from bayes_pmf.result import idata; import arviz; "
            "print(idata.InferenceData is arviz.InferenceData)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert out.stdout.split() == ["False", "True"]
    import arviz

    data = bp.make_synthetic(20, 15, 150, bp.PMFSpec(n_factors=2), rng=0).data
    result = bp.fit_als(data, bp.PMFSpec(n_factors=2), progress=False)
    assert isinstance(result.idata, arviz.InferenceData)

"""Sphinx configuration: the user guide (README), the architecture, the notebooks with
their stored outputs (never executed here) and the API reference from the docstrings.

    pip install ".[docs]" && sphinx-build -W -b html docs docs/_build/html

Before each build, the notebooks are copied in from ../notebooks (into _generated/), the
committed reports the README links from ../reports (into reports/), and the API pages are
written from tools/api_reference.py's sections (the same list docs/api.md is made from);
none of these copies is committed.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT / "tools"))  # api_reference.py: the reference's sections

project = "bayes_pmf"
author = "the bayes_pmf developers"
extensions = ["myst_nb", "sphinx.ext.autodoc", "sphinx.ext.napoleon"]
source_suffix = {".rst": "restructuredtext", ".md": "myst-nb", ".ipynb": "myst-nb"}
exclude_patterns = ["_build", "jupyter_execute", "**.ipynb_checkpoints"]
nb_execution_mode = "off"  # the notebooks' stored outputs are what the reader sees
myst_heading_anchors = 3
myst_enable_extensions = ["dollarmath"]
autodoc_member_order = "bysource"
autodoc_typehints = "signature"
napoleon_numpy_docstring = True
napoleon_google_docstring = False
html_theme = "alabaster"
html_title = "bayes_pmf"
html_static_path: list[str] = []


def _write_generated(_app) -> None:
    generated = HERE / "_generated"
    for folder in (generated, HERE / "reports"):
        shutil.rmtree(folder, ignore_errors=True)
    (generated / "notebooks").mkdir(parents=True)
    notebooks = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
    for notebook in notebooks:
        shutil.copy2(notebook, generated / "notebooks" / notebook.name)
    (generated / "notebooks.md").write_text(
        "# Notebooks\n\nExecuted notebooks with their stored outputs (the short setting, "
        "`BAYES_PMF_FAST=1`); the `.py` beside each in `notebooks/` is its reviewed source."
        "\n\n```{toctree}\n:maxdepth: 1\n\n"
        + "".join(f"notebooks/{n.stem}\n" for n in notebooks) + "```\n", encoding="utf-8")
    for report in ("movielens-default", "pmf-paper"):  # the README links them
        source, target = ROOT / "reports" / report, HERE / "reports" / report
        target.mkdir(parents=True)
        shutil.copy2(source / "report.md", target / "report.md")
        if (source / "figures").is_dir():
            shutil.copytree(source / "figures", target / "figures")
    import api_reference as reference
    title = "API reference"
    lines = [title, "=" * len(title), "",
             "Everything here is importable as ``bayes_pmf.<name>`` (``import bayes_pmf as "
             "bp``), the figures as ``bayes_pmf.plots.<name>``.", ""]
    for section, entries in reference.sections():
        section = section.replace("`", "``")
        lines += [section, "-" * len(section), ""]
        for qualified, thing in entries:
            kind = ("autoclass" if isinstance(thing, type) else "autofunction"
                    if callable(thing) else "automodule")
            lines += [f".. {kind}:: {qualified}"]
            lines += ["   :members:", ""] if kind != "autofunction" else [""]
    (generated / "reference.rst").write_text("\n".join(lines), encoding="utf-8")


def setup(app):
    app.connect("builder-inited", _write_generated)

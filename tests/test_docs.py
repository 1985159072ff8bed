"""The documentation builds with Sphinx, warnings as errors (issue #22 item 3): the user
guide (README), the architecture, the notebooks rendered from their stored outputs
(never executed at build time) and the API reference from the docstrings."""

import re
import subprocess
import sys
from pathlib import Path

import pytest

import bayes_pmf as bp

ROOT = Path(__file__).parents[1]


@pytest.mark.slow
def test_the_docs_build_without_a_warning_and_hold_every_public_name(tmp_path):
    out = tmp_path / "html"
    # the command README gives, into a temporary folder
    proc = subprocess.run([sys.executable, "-m", "sphinx", "-W", "--keep-going", "-q",
                           "-b", "html", str(ROOT / "docs"), str(out)],
                          capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, (proc.stdout[-3000:], proc.stderr[-3000:])
    assert "WARNING" not in proc.stderr, proc.stderr[-3000:]
    reference = (out / "_generated" / "reference.html").read_text()
    documented = set(re.findall(r'id="(?:module-)?(bayes_pmf\.[\w.]+)"', reference))
    missing = {f"bayes_pmf.{name}" for name in bp.__all__} - documented
    assert not missing, sorted(missing)
    assert "bayes_pmf.plots.plot_ppc_ratings" in documented
    notebooks = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
    assert len(notebooks) >= 6
    for notebook in notebooks:
        page = (out / "_generated" / "notebooks" / f"{notebook.stem}.html").read_text()
        # the stored figures are on the page: nothing was re-executed to make them
        assert page.count("<img") >= 1, notebook.name
    assert not (ROOT / "docs" / "jupyter_execute").exists()
    guide = (out / "guide.html").read_text()
    assert "Using it from Python" in guide
    assert (out / "reports" / "movielens-default" / "report.html").is_file()

"""Every notebook executes top to bottom (fast setting) and shows its figures.

Notebooks live as jupytext percent-format .py files (readable diffs, no outputs in git).
Set NOTEBOOK_FIGURES=DIR to keep the rendered figures (PNG) and executed notebooks.
"""

import base64
import os
from pathlib import Path

import pytest

NOTEBOOKS = sorted((Path(__file__).parents[1] / "notebooks").glob("[0-9][0-9]_*.py"))


def test_the_five_notebooks_exist():
    assert [p.stem[:2] for p in NOTEBOOKS] == ["01", "02", "03", "04", "05"]


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_executes(path, tmp_path, monkeypatch):
    jupytext = pytest.importorskip("jupytext")
    from nbclient import NotebookClient

    monkeypatch.setenv("BAYES_PMF_FAST", "1")
    monkeypatch.delenv("MPLBACKEND", raising=False)  # the kernel's inline backend shows figures
    notebook = jupytext.read(path)
    NotebookClient(notebook, timeout=900, kernel_name="python3",
                   resources={"metadata": {"path": str(tmp_path)}}).execute()
    images = [output["data"]["image/png"]
              for cell in notebook.cells if cell.cell_type == "code"
              for output in cell.get("outputs", []) if "image/png" in output.get("data", {})]
    assert len(images) >= 2, "each notebook draws figures"
    keep = os.environ.get("NOTEBOOK_FIGURES")
    if keep:
        folder = Path(keep)
        folder.mkdir(parents=True, exist_ok=True)
        for number, image in enumerate(images):
            (folder / f"{path.stem}_{number}.png").write_bytes(base64.b64decode(image))
        import nbformat

        nbformat.write(notebook, folder / f"{path.stem}.ipynb")

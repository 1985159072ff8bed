"""The notebooks: each ``notebooks/NN_name.py`` (jupytext percent format, the reviewed
source) has its executed twin ``NN_name.ipynb`` with outputs (tools/notebooks.py writes
it). Here: every pair is in sync (fast), and every notebook executes top to bottom with
the fast setting and reproduces its stored outputs (slow).

Set NOTEBOOK_FIGURES=DIR to keep the rendered figures (PNG) and executed notebooks.
"""

import base64
import importlib.util
import os
import shutil
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.py"))


def _tool():
    spec = importlib.util.spec_from_file_location("notebooks_tool",
                                                  ROOT / "tools" / "notebooks.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_six_notebooks_exist_with_their_executed_twins():
    assert [p.stem[:2] for p in NOTEBOOKS] == ["01", "02", "03", "04", "05", "06"]
    assert all(p.with_suffix(".ipynb").exists() for p in NOTEBOOKS)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_each_notebook_pair_is_in_sync(path):
    pytest.importorskip("jupytext")
    assert _tool().sync_problems(path) == []


def test_the_sync_check_sees_a_drifted_pair(tmp_path):
    """An edit to the .py not carried to the .ipynb, a missing .ipynb and an unexecuted
    cell are each reported."""
    pytest.importorskip("jupytext")
    import nbformat

    tool = _tool()
    source = NOTEBOOKS[0]
    py, ipynb = tmp_path / source.name, tmp_path / source.with_suffix(".ipynb").name
    shutil.copy(source, py)
    assert any("missing" in p for p in tool.sync_problems(py))
    shutil.copy(source.with_suffix(".ipynb"), ipynb)
    assert tool.sync_problems(py) == []
    py.write_text(py.read_text().replace("SEED = 0", "SEED = 1", 1))
    assert any("differs" in p for p in tool.sync_problems(py))
    shutil.copy(source, py)
    stored = nbformat.read(ipynb, as_version=4)
    code = next(c for c in stored.cells if c.cell_type == "code" and c.source.strip())
    code["execution_count"] = None
    nbformat.write(stored, ipynb)
    assert any("never executed" in p for p in tool.sync_problems(py))


def test_the_output_comparison_tolerates_rounding_and_catches_a_change():
    """Stored outputs against a copy: numbers moved by 1e-7 (another CPU's rounding) and
    timings pass; a number moved by 50 %, a changed word and a lost figure fail."""
    pytest.importorskip("jupytext")
    import nbformat

    tool = _tool()
    stored = nbformat.read(NOTEBOOKS[1].with_suffix(".ipynb"), as_version=4)
    assert tool.output_differences(stored, stored) == []

    def first_stdout(notebook):
        for cell in notebook.cells:
            for output in cell.get("outputs", []):
                if output.get("name") == "stdout" and any(c.isdigit() for c in output["text"]):
                    return output
        raise AssertionError("no printed number in the notebook")

    def changed(edit):
        copy = nbformat.from_dict(stored)
        edit(copy)
        return tool.output_differences(stored, copy)

    def move_first_number(change):
        def edit(notebook):
            output = first_stdout(notebook)
            match = next(m for m in tool._NUMBER.finditer(output["text"])
                         if any(c.isdigit() for c in m.group()))
            value = float(match.group().replace(",", "").replace("−", "-"))
            output["text"] = (output["text"][:match.start()] + repr(change(value))
                              + output["text"][match.end():])
        return edit

    assert changed(move_first_number(lambda x: x * (1 + 1e-7))) == []
    # 1.5 x + 1 is outside 10 % relative and 0.05 absolute for any x
    assert changed(move_first_number(lambda x: 1.5 * x + 1))

    def reword(notebook):
        output = first_stdout(notebook)
        output["text"] = "different words " + output["text"]

    assert changed(reword)

    def drop_figure(notebook):
        for cell in notebook.cells:
            outputs = cell.get("outputs", [])
            for index, output in enumerate(outputs):
                if "image/png" in output.get("data", {}):
                    del outputs[index]
                    return

    assert changed(drop_figure)
    # on other numerics only the structure counts: a reworded line passes, a lost one not
    loose = tool.output_differences(stored, (lambda nb: (reword(nb), nb)[1])(
        nbformat.from_dict(stored)), strict=False)
    assert loose == []

    def drop_line(notebook):
        output = first_stdout(notebook)
        output["text"] = output["text"].split("\n", 1)[1] if "\n" in output["text"] else ""

    dropped = nbformat.from_dict(stored)
    drop_line(dropped)
    assert tool.output_differences(stored, dropped, strict=False)
    assert tool._skeleton("fit in 12.5 s, RMSE 0.87") == tool._skeleton("fit in 3.1 s, RMSE 0.87")


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_executes_and_reproduces_its_stored_outputs(path):
    pytest.importorskip("jupytext")
    import nbformat

    tool = _tool()
    notebook = tool.execute(path, timeout=900)
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
        nbformat.write(notebook, folder / f"{path.stem}.ipynb")
    stored = nbformat.read(path.with_suffix(".ipynb"), as_version=4)
    # on the machine (numerics) that wrote it: text and numbers; elsewhere: structure
    strict = tool.promise_of(stored) == "identical"
    assert tool.output_differences(stored, notebook, strict=strict) == []


def test_prose_edits_keep_the_outputs_and_code_edits_are_refused(tmp_path):
    pytest.importorskip("jupytext")
    import nbformat

    tool = _tool()
    source = NOTEBOOKS[0]
    py, ipynb = tmp_path / source.name, tmp_path / source.with_suffix(".ipynb").name
    shutil.copy(source.with_suffix(".ipynb"), ipynb)
    py.write_text(source.read_text().replace("# # PMF from scratch", "# # PMF, from scratch", 1))
    assert tool.sync_problems(py)  # the heading differs
    rewritten = tool.carry_outputs(py)
    nbformat.write(rewritten, ipynb)
    assert tool.sync_problems(py) == []
    stored = nbformat.read(source.with_suffix(".ipynb"), as_version=4)
    assert [c.get("outputs") for c in rewritten.cells if c.cell_type == "code"] == \
        [c.get("outputs") for c in stored.cells if c.cell_type == "code"]
    py.write_text(py.read_text().replace("SEED = 0", "SEED = 1", 1))
    with pytest.raises(ValueError, match="code cells changed"):
        tool.carry_outputs(py)

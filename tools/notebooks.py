"""The notebooks as a reader opens them: execute each ``notebooks/NN_name.py`` (the
jupytext percent-format source that is reviewed) and write ``notebooks/NN_name.ipynb``
beside it, with its outputs (figures, tables, printed numbers).

    python tools/notebooks.py              # execute every notebook, write its .ipynb
    python tools/notebooks.py 02 04        # only these
    python tools/notebooks.py --check      # exit 1 if a .ipynb is missing, unexecuted
                                           # or its cells differ from its .py
    python tools/notebooks.py --prose      # after editing markdown only: carry the
                                           # stored outputs over (no execution)

The stored outputs come from the fast setting the test suite runs (``BAYES_PMF_FAST=1``:
fewer draws and a smaller grid; each notebook says so where it applies), so that CI can
execute every notebook in minutes and check that it reproduces the stored outputs
(tests/test_notebooks.py, :func:`output_differences`). The pair is kept by jupytext's
own pairing (``formats: ipynb,py:percent``): ``jupytext --sync notebooks/*.ipynb`` after
an edit in Jupyter writes the .py back.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = ROOT / "notebooks"
FORMATS = "ipynb,py:percent"
# Numbers in printed output: compared within NUMBER_TOLERANCE, not as text (see
# output_differences); timings are never compared.
_NUMBER = re.compile(r"[-+−]?(?:\d+(?:,\d{3})*(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?")
_TIMING = re.compile(r"(\d+(?:\.\d*)?)\s*(?:s\b|seconds|sec\b|ms\b|min\b|it/s|s/it)")
_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
_ADDRESS = re.compile(r"\b0x[0-9a-fA-F]+")  # object reprs' memory addresses


def sources() -> list[Path]:
    return sorted(NOTEBOOKS.glob("[0-9][0-9]_*.py"))


def paired(path: Path) -> Path:
    return path.with_suffix(".ipynb")


def read_source(path: Path):
    """The .py as a notebook (no outputs), with the pairing metadata and stable cell ids
    (nbformat would draw random ones, which would change the .ipynb on every run)."""
    import jupytext

    notebook = jupytext.read(path)
    notebook.metadata.setdefault("jupytext", {})["formats"] = FORMATS
    for number, cell in enumerate(notebook.cells):
        cell["id"] = f"cell-{number:02d}"
    return notebook


def execute(path: Path, timeout: int = 1800):
    """The notebook of ``path`` executed top to bottom in a fresh kernel, in a temporary
    folder, with the fast setting; raises nbclient's CellExecutionError on a failing
    cell."""
    from nbclient import NotebookClient

    notebook = read_source(path)
    saved = {name: os.environ.get(name) for name in ("BAYES_PMF_FAST", "MPLBACKEND")}
    os.environ["BAYES_PMF_FAST"] = "1"
    os.environ.pop("MPLBACKEND", None)  # the kernel's inline backend shows the figures
    try:
        with tempfile.TemporaryDirectory() as folder:
            NotebookClient(notebook, timeout=timeout, kernel_name="python3",
                           record_timing=False,
                           resources={"metadata": {"path": folder}}).execute()
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
    # the kernel's own description varies between machines; the pairing must not
    notebook.metadata.pop("language_info", None)
    # what decides the last bits of the outputs (see output_differences)
    from bayes_pmf.workflows.reproducibility import numerics_fingerprint

    notebook.metadata["bayes_pmf"] = {"setting": "BAYES_PMF_FAST=1",
                                      "numerics": numerics_fingerprint()}
    notebook.metadata["kernelspec"] = {"display_name": "Python 3", "language": "python",
                                       "name": "python3"}
    return notebook


def sync_problems(path: Path) -> list[str]:
    """Why ``path``'s .ipynb is not its executed twin: missing, cells that differ from the
    .py (type or source), code cells never executed, or errors stored in its outputs."""
    import nbformat

    ipynb = paired(path)
    if not ipynb.exists():
        return [f"{ipynb.name} is missing: run python tools/notebooks.py {path.stem[:2]}"]
    stored = nbformat.read(ipynb, as_version=4)
    source = read_source(path)
    problems = []
    if stored.metadata.get("jupytext", {}).get("formats") != FORMATS:
        problems.append(f"{ipynb.name} is not paired with its .py (jupytext formats "
                        f"{FORMATS!r})")
    if len(stored.cells) != len(source.cells):
        problems.append(f"{ipynb.name} has {len(stored.cells)} cells, {path.name} "
                        f"{len(source.cells)}")
    for number, (a, b) in enumerate(zip(stored.cells, source.cells)):
        if a.cell_type != b.cell_type or a.source != b.source:
            first = (b.source.splitlines() or [""])[0][:60]
            problems.append(f"cell {number} ({first!r}...) differs between {ipynb.name} "
                            f"and {path.name}")
        elif a.cell_type == "code":
            if a.get("execution_count") is None and a.source.strip():
                problems.append(f"{ipynb.name} cell {number} was never executed")
            errors = [o for o in a.get("outputs", []) if o.get("output_type") == "error"]
            if errors:
                problems.append(f"{ipynb.name} cell {number} stores an error: "
                                f"{errors[0].get('ename')}")
    if problems:
        problems.append(f"(re-run python tools/notebooks.py {path.stem[:2]})")
    return problems


# Numbers in text outputs may differ between runs on different CPUs: deterministic fits
# by floating-point rounding (1e-6 relative at most, README "What reproduces"), seeded
# chains by Monte Carlo error, which for the fast setting's short chains is up to a few
# per cent of a summary (an RMSE's MC error ~0.002, a posterior sd's ~5 %). 10 % relative
# (or 0.05 absolute, for values near zero) keeps every such difference in while a changed
# table, a different estimate or a new row fails.
NUMBER_TOLERANCE = (0.10, 0.05)


def _text_outputs(cell) -> list[tuple[str, str]]:
    """(kind, text) of a code cell's outputs: stdout and results as text; stderr (warnings,
    whose wording depends on library versions) and progress are left out."""
    texts = []
    for output in cell.get("outputs", []):
        kind = output.get("output_type")
        if kind == "stream":
            if output.get("name") == "stdout":
                texts.append(("stdout", output.get("text", "")))
        elif kind in ("execute_result", "display_data"):
            data = output.get("data", {})
            # a table's plain text rather than its HTML, whose markup changes with
            # pandas' version
            if "image/png" in data:
                texts.append(("image", ""))
            elif "text/plain" in data:
                texts.append(("text", data["text/plain"]))
            elif "text/html" in data:
                texts.append(("html", data["text/html"]))
        elif kind == "error":
            texts.append(("error", output.get("ename", "")))
    # stdout may arrive in several chunks: compare it as one text
    merged: list[tuple[str, str]] = []
    for kind, text in texts:
        text = "".join(text) if isinstance(text, list) else text
        if merged and kind == "stdout" and merged[-1][0] == "stdout":
            merged[-1] = ("stdout", merged[-1][1] + text)
        else:
            merged.append((kind, text))
    return merged


def _skeleton(text: str) -> tuple[str, list[float]]:
    """The text with timings masked and every number replaced by '#', and the numbers."""
    text = _ANSI.sub("", text)
    text = _ADDRESS.sub("<address>", text)
    text = _TIMING.sub("<time>", text)
    numbers = [float(n.replace(",", "").replace("−", "-")) for n in _NUMBER.findall(text)
               if any(c.isdigit() for c in n)]
    return _NUMBER.sub("#", text), numbers


def promise_of(stored) -> str:
    """The reproducibility promise (bayes_pmf.workflows.reproducibility) between this
    machine and the one that executed the stored notebook: "identical" when their
    numerics fingerprints are equal."""
    from bayes_pmf.workflows.reproducibility import numerics_fingerprint, promise

    recorded = stored.metadata.get("bayes_pmf", {}).get("numerics")
    return promise(numerics_fingerprint(), recorded)


def output_differences(stored, fresh, strict: bool = True) -> list[str]:
    """Where a fresh execution's outputs differ from the stored ones: the kinds of output
    per cell (texts, tables, figures) and the lines of each text always; with ``strict``
    (same numerics, promise "identical": the seeded chains are the same chains) also the
    text around the numbers exactly and the numbers within NUMBER_TOLERANCE. On another
    CPU the short chains of the fast setting end elsewhere, so a ranked list may order
    two close items the other way: only the structure is compared there."""
    relative, absolute = NUMBER_TOLERANCE
    problems = []
    for number, (a, b) in enumerate(zip(stored.cells, fresh.cells)):
        if a.cell_type != "code":
            continue
        old, new = _text_outputs(a), _text_outputs(b)
        if [k for k, _ in old] != [k for k, _ in new]:
            problems.append(f"cell {number}: outputs {[k for k, _ in new]}, stored "
                            f"{[k for k, _ in old]}")
            continue
        for (kind, old_text), (_, new_text) in zip(old, new):
            old_skeleton, old_numbers = _skeleton(old_text)
            new_skeleton, new_numbers = _skeleton(new_text)
            if not strict:
                if old_skeleton.count("\n") != new_skeleton.count("\n"):
                    problems.append(f"cell {number}: the {kind} output has "
                                    f"{new_skeleton.count(chr(10))} lines, stored "
                                    f"{old_skeleton.count(chr(10))}")
                continue
            if old_skeleton != new_skeleton:
                problems.append(f"cell {number}: the {kind} output's text changed:\n"
                                f"stored: {old_skeleton[:300]!r}\nnow:    {new_skeleton[:300]!r}")
                continue
            for x, y in zip(old_numbers, new_numbers):
                if abs(x - y) > max(relative * abs(x), absolute):
                    problems.append(f"cell {number}: {kind} number {y!r}, stored {x!r}")
                    break
    return problems


def carry_outputs(path: Path):
    """The .py as a notebook with the stored .ipynb's outputs carried over, for an edit
    of the prose only: every code cell must be unchanged (same sources in the same
    order), else ValueError says which to execute instead."""
    import nbformat

    stored = nbformat.read(paired(path), as_version=4)
    notebook = read_source(path)
    old_code = [c for c in stored.cells if c.cell_type == "code"]
    new_code = [c for c in notebook.cells if c.cell_type == "code"]
    if [c.source for c in old_code] != [c.source for c in new_code]:
        raise ValueError(f"{path.name}: code cells changed; execute it instead "
                         f"(python tools/notebooks.py {path.stem[:2]})")
    for old, new in zip(old_code, new_code):
        new["outputs"], new["execution_count"] = old.get("outputs", []), old.get(
            "execution_count")
    notebook.metadata = stored.metadata
    return notebook


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("only", nargs="*", help="notebook numbers (01, 02, ...); all if none")
    parser.add_argument("--check", action="store_true",
                        help="only check that every .ipynb is its .py executed")
    parser.add_argument("--prose", action="store_true",
                        help="markdown edits only: rewrite each .ipynb from its .py keeping "
                             "the stored outputs (refused if a code cell changed)")
    args = parser.parse_args(argv)
    paths = [p for p in sources() if not args.only or p.stem[:2] in args.only]
    if args.check:
        problems = [problem for path in paths for problem in sync_problems(path)]
        print("\n".join(problems) or f"{len(paths)} notebook pairs in sync")
        return 1 if problems else 0
    import nbformat

    for path in paths:
        if args.prose:
            nbformat.write(carry_outputs(path), paired(path))
            print(f"rewrote {paired(path).relative_to(ROOT)} (prose only)", flush=True)
            continue
        print(f"executing {path.name} ...", flush=True)
        notebook = execute(path)
        nbformat.write(notebook, paired(path))
        print(f"wrote {paired(path).relative_to(ROOT)} "
              f"({paired(path).stat().st_size / 1e6:.1f} MB)", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Every example script runs to the end (CI runs them; they must not rot)."""

import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = sorted((Path(__file__).parents[1] / "examples").glob("*.py"))


@pytest.mark.slow
@pytest.mark.parametrize("script", EXAMPLES, ids=[p.name for p in EXAMPLES])
def test_example_runs(script, tmp_path):
    args = [sys.executable, str(script)]
    if script.name in ("posterior_diagnostics.py", "write_report.py"):
        args.append(str(tmp_path))
    proc = subprocess.run(args, capture_output=True, text=True, timeout=600,
                          env={"MPLBACKEND": "Agg", **__import__("os").environ})
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip()

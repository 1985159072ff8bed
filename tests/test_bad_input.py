"""Each bad input of tests/bad_input_cases.py gets its error type and a message naming
the problem, the column or argument and one offending example; the CLI turns the same
errors into exit status 2 and one line on stderr; the README documents every case."""

import subprocess
import sys
from pathlib import Path

import pytest
from bad_input_cases import CASES, markdown_table

README = Path(__file__).parents[1] / "README.md"


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_bad_input_is_rejected_with_a_named_message(case, tmp_path):
    with pytest.raises(case.error) as info:
        case.run(tmp_path)
    message = str(info.value)
    missing = [word for word in case.words if word not in message]
    assert not missing, f"message lacks {missing}: {message}"


def test_readme_documents_every_case():
    text = README.read_text()
    for case in CASES:
        assert f"| {case.name} | `{case.entry}` | `{case.error.__name__}` |" in text, case.name


def test_readme_table_is_current():
    """The table in the README is exactly what the package says today."""
    assert markdown_table() in README.read_text()


@pytest.mark.parametrize("content, words", [
    ("user,item,rating\n1,1,4\n1,2,nan\n", ["NaN", "line 3"]),
    ("user,item,rating\n1,1,4\n1,1,5\n", ["duplicate", "user 1"]),
    ("", ["empty"]),
    ("user;item\n1;2\n", ["ratings", "['user', 'item']"]),
])
def test_cli_reports_bad_files_in_one_line(tmp_path, content, words):
    data = tmp_path / "bad.csv"
    data.write_text(content)
    proc = subprocess.run([sys.executable, "-m", "bayes_pmf", "fit", "--no-progress",
                           "--data", str(data), "--out", str(tmp_path / "o")],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
    for word in words:
        assert word in proc.stderr

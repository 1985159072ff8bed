"""Shared fixtures: tiny real fits are built once per session (bambi's pattern)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from bayes_pmf import PMFSpec, load_movielens, make_synthetic, random_split

FIXTURES = Path(__file__).parent / "fixtures"


@pytest.fixture(scope="session")
def fixtures() -> Path:
    return FIXTURES


@pytest.fixture(scope="session")
def main_job_run(tmp_path_factory):
    """The README's main job, ``bayes-pmf fit`` on the embedded MovieLens with every
    default, run once per session in its own process (it is the slowest thing the suite
    does): tests/test_cli.py checks what it prints and writes, tests/test_report.py that
    it reproduces the committed report."""
    out = tmp_path_factory.mktemp("main-job") / "run"
    proc = subprocess.run([sys.executable, "-m", "bayes_pmf", "fit", "--no-progress",
                           "--out", str(out)], capture_output=True, text=True, timeout=3600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return SimpleNamespace(out=out, stdout=proc.stdout,
                           metrics=json.loads((out / "metrics.json").read_text()))


@pytest.fixture(scope="session")
def movielens():
    return load_movielens()


@pytest.fixture(scope="session")
def movielens_split(movielens):
    return random_split(movielens, 0.1, rng=0)


@pytest.fixture(scope="session")
def synthetic():
    """Small data drawn from PMF with biases, known truth."""
    spec = PMFSpec(n_factors=3, sigma=0.3, sigma_u=0.8, sigma_v=0.8, biases=True,
                   sigma_user_bias=0.4, sigma_item_bias=0.4)
    return make_synthetic(120, 90, 4000, spec, rng=3)


@pytest.fixture()
def small_frame() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "user": ["a", "a", "b", "b", "c", "c", "c"],
            "item": [1, 2, 1, 3, 1, 2, 3],
            "rating": [4.0, 3.0, 5.0, 2.0, 1.0, 4.5, 3.5],
        }
    )


def random_params_rng(seed: int = 0) -> np.random.Generator:
    return np.random.default_rng(seed)

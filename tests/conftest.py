"""Shared fixtures: tiny real fits are built once per session (bambi's pattern)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
from interrupts import sigint_as_default

from bayes_pmf import PMFSpec, load_movielens, make_synthetic, random_split

FIXTURES = Path(__file__).parent / "fixtures"


@pytest.fixture(scope="session")
def fixtures() -> Path:
    return FIXTURES


MAIN_JOB = "main_job_run"
_background: dict[str, SimpleNamespace] = {}


def _nice_and_interruptible() -> None:
    """The main job's process: at nice 10, and stopped by SIGINT (session end) even when
    the test run was started with SIGINT ignored (tests/interrupts.py)."""
    os.nice(10)
    sigint_as_default()


def _start_main_job(folder: Path) -> SimpleNamespace:
    """``bayes-pmf fit`` with every default into ``folder / "run"``, started and not
    waited for; at nice 10, so that the tests running meanwhile keep their pace (their
    timeouts were measured without it) and it takes the CPU they leave idle (most of
    the suite runs on one of the two cores)."""
    out = folder / "run"
    stdout, stderr = folder / "stdout.txt", folder / "stderr.txt"
    with stdout.open("w") as out_file, stderr.open("w") as err_file:
        proc = subprocess.Popen([sys.executable, "-m", "bayes_pmf", "fit", "--no-progress",
                                 "--out", str(out)], stdout=out_file, stderr=err_file,
                                preexec_fn=_nice_and_interruptible)
    return SimpleNamespace(proc=proc, out=out, stdout=stdout, stderr=stderr)


def pytest_collection_modifyitems(session, config, items):
    """The tests that read the main job's run go last (a stable sort: the rest keep their
    order), so that the run started at the end of collection has the suite's time."""
    items.sort(key=lambda item: MAIN_JOB in getattr(item, "fixturenames", ()))


def pytest_collection_finish(session):
    """Start the main job in the background once the selected tests are known, if any of
    them reads it (``-m "not slow"`` selects none; ``--collect-only`` runs nothing)."""
    if session.config.option.collectonly or not any(
            MAIN_JOB in getattr(item, "fixturenames", ()) for item in session.items):
        return
    folder = Path(tempfile.mkdtemp(prefix="bayes-pmf-main-job-"))
    _background[MAIN_JOB] = _start_main_job(folder)


def pytest_sessionfinish(session, exitstatus):
    """A run still going when the session ends (Ctrl-C, -x) is stopped, its folder
    removed."""
    job = _background.pop(MAIN_JOB, None)
    if job is not None:
        if job.proc.poll() is None:
            job.proc.send_signal(signal.SIGINT)  # the CLI stops its chain processes
            try:
                job.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                job.proc.kill()
                job.proc.wait()
        shutil.rmtree(job.out.parent, ignore_errors=True)


@pytest.fixture(scope="session")
def main_job_run(tmp_path_factory):
    """The README's main job, ``bayes-pmf fit`` on the embedded MovieLens with every
    default, run once per session in its own process (it is the slowest thing the suite
    does, so it starts in the background when collection ends; see
    pytest_collection_finish): tests/test_main_job.py checks what it prints and writes,
    that it reproduces the committed report, and the README's commands on it."""
    job = _background.get(MAIN_JOB) or _background.setdefault(
        MAIN_JOB, _start_main_job(tmp_path_factory.mktemp("main-job")))
    returncode = job.proc.wait(timeout=3600)
    assert returncode == 0, job.stderr.read_text()[-3000:]
    return SimpleNamespace(out=job.out, stdout=job.stdout.read_text(),
                           metrics=json.loads((job.out / "metrics.json").read_text()))


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

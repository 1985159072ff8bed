"""Resident memory of running processes, sampled while a step runs: the one sampler the
benchmarks share (imported as ``from _memory import ResidentPeaks``; a script's own
folder is on its path when run as ``python benchmarks/NAME.py``, so no path is changed
and a child process still imports the package tree its ``PYTHONPATH`` names)."""

from __future__ import annotations

import threading
import time


def settle(seconds: float = 1.0) -> int:
    """Wait ``seconds`` (released arrays reach a Dask worker asynchronously), collect
    garbage and hand freed heap memory back to the system (glibc's ``malloc_trim``),
    so that a resident figure taken next starts from what the process really holds;
    returns the resident bytes. Run in each process measured (``client.run(settle)``
    on Dask workers)."""
    import ctypes
    import gc

    import psutil

    time.sleep(seconds)
    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except OSError:  # not glibc
        pass
    return psutil.Process().memory_info().rss


def released(client, seconds: float = 60.0) -> float:
    """Wait until every worker of the Dask ``client``'s cluster holds only data the client
    still refers to, and return the seconds it took. Dask releases a dropped future
    asynchronously (the client tells the scheduler, the scheduler the worker): a probe at
    10^7 users found both workers still holding a returned half-step's 2.5 GB design the
    moment it returned and nothing of it a second later, so a fixed wait before a
    reading raced the release. Raises TimeoutError after ``seconds``."""
    start = time.monotonic()
    while True:
        wanted = {str(key) for key in client.refcount}
        held = client.run(_worker_keys)
        if all(set(keys) <= wanted for keys in held.values()):
            return time.monotonic() - start
        if time.monotonic() - start > seconds:
            raise TimeoutError(f"the workers still hold {held} after {seconds} s")
        time.sleep(0.02)


def _worker_keys(dask_worker) -> list[str]:
    return [str(key) for key in dask_worker.data]


class ResidentPeaks:
    """The largest resident memory of each of ``pids`` while the context is open, sampled
    every ``interval`` seconds by a thread, as the rise above each one's resident memory
    on entry: ``rise_mb`` (a list, in the order of ``pids``) once the context is closed;
    ``before_mb`` and ``peak_mb`` the resident memory on entry and at the peak.

        with ResidentPeaks([os.getpid(), *worker_pids]) as peaks:
            run_the_step()
        print(max(peaks.rise_mb))
    """

    def __init__(self, pids, interval: float = 0.01) -> None:
        import psutil  # a dependency of distributed

        self._processes = [psutil.Process(pid) for pid in pids]
        self._interval = interval
        self.rise_mb: list[float] = []
        self.before_mb: list[float] = []
        self.peak_mb: list[float] = []

    def __enter__(self) -> ResidentPeaks:
        self._before = [p.memory_info().rss for p in self._processes]
        self._peak = list(self._before)
        self._done = threading.Event()
        self._sampler = threading.Thread(target=self._sample, daemon=True)
        self._sampler.start()
        return self

    def _sample(self) -> None:
        while not self._done.is_set():
            for k, process in enumerate(self._processes):
                self._peak[k] = max(self._peak[k], process.memory_info().rss)
            time.sleep(self._interval)

    def __exit__(self, *exc) -> None:
        self._done.set()
        self._sampler.join()
        self.rise_mb = [(p - b) / 2**20 for p, b in zip(self._peak, self._before)]
        self.before_mb = [b / 2**20 for b in self._before]
        self.peak_mb = [p / 2**20 for p in self._peak]

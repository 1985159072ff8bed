"""Resident memory of running processes, sampled while a step runs: the one sampler the
benchmarks share (imported as ``from _memory import ResidentPeaks``; a script's own
folder is on its path when run as ``python benchmarks/NAME.py``, so no path is changed
and a child process still imports the package tree its ``PYTHONPATH`` names)."""

from __future__ import annotations

import threading
import time


class ResidentPeaks:
    """The largest resident memory of each of ``pids`` while the context is open, sampled
    every ``interval`` seconds by a thread, as the rise above each one's resident memory
    on entry: ``rise_mb`` (a list, in the order of ``pids``) once the context is closed.

        with ResidentPeaks([os.getpid(), *worker_pids]) as peaks:
            run_the_step()
        print(max(peaks.rise_mb))
    """

    def __init__(self, pids, interval: float = 0.01) -> None:
        import psutil  # a dependency of distributed

        self._processes = [psutil.Process(pid) for pid in pids]
        self._interval = interval
        self.rise_mb: list[float] = []

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

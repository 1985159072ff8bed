"""The executor seam: where the engines' independent pieces of work run, and how their
progress is shown.

Two kinds of work are independent by construction:

* the row blocks of a half-step (ALS solves, Gibbs row draws): :func:`map_row_blocks`
  cuts the rows of a CSR matrix into blocks and hands them to ``executor.map_blocks``;
* the chains of a sampler: ``executor.run_chains``.

An executor decides where they run. :class:`LocalExecutor` (the default) runs row blocks
on threads once a half-step has enough work to repay them (the sparse products and
batched LAPACK calls release the GIL; BLAS itself is held to one thread meanwhile) and
chains in forked processes, each writing its draws into shared memory
(:func:`shared_empty`) and reporting progress through a queue. Engines never depend on
the schedule: every random number is drawn before work is split, so results are
bit-identical whatever executor ran them, as long as the rows are cut into the same
blocks. A half-step is described, not just run: :class:`RowBlocks` names a module-level
kernel, what every block shares (:class:`Prepared` for what each place computes itself)
and what is sliced per row or per rating, and :class:`Targets` is the recipe of the data
(ratings minus offsets) a block can compute where its ratings are. That is what lets
:class:`~bayes_pmf.engines.dask_executor.DaskExecutor` keep the rating blocks on Dask
workers for a whole fit.

Ctrl-C (KeyboardInterrupt) in the parent stops running and queued chains at once: the
chain processes are terminated, none is left behind.

Progress: :func:`sweep_progress` draws a bar (with rich, on stderr, switchable off) that
the engines advance once per sweep; chains in other processes report their sweeps
through a queue to the parent's bar.
"""

from __future__ import annotations

import mmap
import multiprocessing as mp
import os
import pickle
import signal
import threading
import traceback
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, replace
from queue import Empty
from typing import Callable, Iterator, Protocol

import numpy as np
import scipy.sparse as sp
import threadpoolctl
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from threadpoolctl import ThreadpoolController

from ..errors import ConfigError
from .gather import take_rows

_BLAS_THREADS = ThreadpoolController()

DEFAULT_BLOCK_ROWS = 4096
# Threads pay off once a half-step has real work: ratings x p^2 above this (measured:
# 1.7x at 10^5 ratings, p = 33, for the user half-step; no gain on the 90,000 MovieLens
# ratings at p = 11).
THREADING_MIN_WORK = 50_000_000
# Below this many (ratings x sweeps) per chain, starting processes costs more than it
# saves (measured: 4,000 ratings x 70 sweeps ran 0.58 s in one process, 0.75 s in two).
PROCESS_MIN_WORK = 2_000_000
# The share of the memory at hand a run may plan to use (the fit job's check against the
# machine's available memory; a chain against a Dask worker thread's share): the rest is
# slack for the estimates' error.
MEMORY_SHARE = 0.9


class Executor(Protocol):
    """Where row blocks and chains run."""

    def threads_for(self, work: float) -> int:
        """How many row blocks run at once for a half-step of ``work`` (ratings x p^2)."""

    def map_blocks(self, run_block: Callable[[int], None], n_blocks: int, work: float) -> None:
        """Call ``run_block(k)`` for k in range(n_blocks); each writes its own output."""

    def chain_processes(self, n_chains: int, work_per_chain: float) -> int:
        """How many chains :meth:`run_chains` runs at once."""

    def run_chains(self, run_chain: Callable[[int, object, "Executor"], None],
                   n_chains: int, work_per_chain: float, bar) -> None:
        """Call ``run_chain(chain, bar, inner)`` for every chain, ``inner`` being the
        executor for the chain's own row blocks; ``bar.advance(status)`` reports sweeps."""

    def run_row_blocks(self, plan: "RowBlocks") -> np.ndarray:
        """One half-step (:class:`RowBlocks`): the kernel's results for every row."""


def _release_blas_control() -> None:
    """Let any thread set OpenBLAS's limit next. threadpoolctl (from 3.7) lets only one
    "controlling" thread change OpenBLAS's process-wide pool and ignores the others'
    calls, silently; the first thread to set a limit keeps that role until its own
    limits end. Older threadpoolctl has no such role: nothing to do."""
    openblas = getattr(threadpoolctl, "OpenBLASController", None)
    release = getattr(openblas, "clear_controlling_thread", None)
    if release is not None:
        release(force=True)


class _BlasLimit:
    """BLAS held to one thread while any thread of this process is inside
    :func:`single_threaded_blas`. The limit is the process's (OpenBLAS has one pool), so
    the contexts of threads running at once (chains as threads of a Dask client, tasks
    on a worker of several threads) are counted: the first in sets it, the last out
    restores what was there, whichever threads they are. Before, each context set and
    restored the limit itself: the first chain to end put two BLAS threads back under
    the chains still sweeping (and threadpoolctl ignored the other chains' own limits),
    whose long dot products then summed in another order, so their draws depended on
    which chain ended first."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._holders = 0
        self._limiter = None

    def __enter__(self) -> None:
        with self._lock:
            if self._holders == 0:
                _release_blas_control()
                self._limiter = _BLAS_THREADS.limit(limits=1, user_api="blas")
                _release_blas_control()
            self._holders += 1

    def __exit__(self, *exc) -> None:
        with self._lock:
            self._holders -= 1
            if self._holders == 0:
                _release_blas_control()
                self._limiter.restore_original_limits()
                _release_blas_control()
                self._limiter = None


_SINGLE_THREADED_BLAS = _BlasLimit()


def single_threaded_blas() -> _BlasLimit:
    """Context holding BLAS to one thread. The batched LAPACK/BLAS calls here act on many
    small matrices, where BLAS's own threads only add contention (Cholesky of 6,666 33x33
    systems: 3x slower with 2 BLAS threads), and OpenBLAS's idle threads spin: a Gibbs
    chain on MovieLens used 170% CPU for the speed of 100%, halving a second chain's
    speed beside it. The parallelism is ours: across row blocks, or chains. It also keeps
    the numbers one: a long dot product sums in another order on two BLAS threads.
    Re-entrant and safe across threads (:class:`_BlasLimit`)."""
    return _SINGLE_THREADED_BLAS


class _QueueBar:
    """A chain process's progress bar: each sweep's status goes to the parent's queue."""

    def __init__(self, queue) -> None:
        self._queue = queue

    def advance(self, status: str = "") -> None:
        self._queue.put(("status", status))


# What forked chain processes inherit instead of receiving it pickled: the chain
# function closes over the training data, which can be large; fork shares it
# copy-on-write.
_INHERITED: dict = {}


def _die_with_parent(parent: int) -> None:
    """Ask Linux to kill this chain process when its parent dies (kill -9 included), so a
    killed run leaves no chain running on; elsewhere a no-op."""
    try:
        import ctypes

        ctypes.CDLL(None).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        return
    if os.getppid() != parent:  # the parent died before the request took effect
        os._exit(1)


def _chain_process(chain: int) -> None:
    _die_with_parent(_INHERITED["parent"])
    # the parent stops a chain with SIGTERM (Process.terminate): at once, whatever
    # handler the parent had (the command line's raises an interrupt)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    run_chain, queue = _INHERITED["run"], _INHERITED["queue"]
    code = 0
    try:
        run_chain(chain, _QueueBar(queue))
        queue.put(("done", chain))
    except BaseException as exc:  # reported to the parent, which re-raises it
        code = 1
        try:
            pickle.loads(pickle.dumps(exc))
        except Exception:  # an exception that does not pickle: send its text
            exc = RuntimeError(traceback.format_exc())
        queue.put(("error", chain, exc))
    queue.close()
    queue.join_thread()  # every message flushed before the process ends
    os._exit(code)


def _run_in_processes(run_chain, n_chains: int, processes: int, bar) -> None:
    """Run chains in forked processes, at most ``processes`` at a time, relaying their
    progress to ``bar``; re-raise the first chain's error; on any error or Ctrl-C,
    terminate every chain process before returning."""
    context = mp.get_context("fork")
    queue = context.Queue()
    _INHERITED.update(run=run_chain, queue=queue, parent=os.getpid())
    waiting, running, finished = list(range(n_chains)), {}, 0
    try:
        while finished < n_chains:
            while waiting and len(running) < processes:
                chain = waiting.pop(0)
                process = context.Process(target=_chain_process, args=(chain,), daemon=True)
                process.start()
                running[chain] = process
            try:
                message = queue.get(timeout=0.2)
            except Empty:
                dead = [c for c, p in running.items() if not p.is_alive() and p.exitcode]
                if dead:
                    raise RuntimeError(f"chain {dead[0]} ended without reporting (exit code "
                                       f"{running[dead[0]].exitcode}; out of memory?)")
                continue
            if message[0] == "status":
                bar.advance(message[1])
            elif message[0] == "error":
                raise message[2]
            else:
                running.pop(message[1]).join()
                finished += 1
    finally:
        for process in running.values():
            if process.is_alive():
                process.terminate()
        for process in running.values():
            process.join()
        _INHERITED.clear()
        queue.close()


class LocalExecutor:
    """This machine: row blocks on up to ``threads`` threads, chains in up to
    ``processes`` forked processes. ``None`` for either chooses by the work: threads
    (at most 2 here) once a half-step's ratings x p^2 reaches ``THREADING_MIN_WORK``,
    one process per chain and CPU core once a chain's ratings x sweeps reaches
    ``PROCESS_MIN_WORK``. Without ``fork`` (Windows, macOS' default), chains run one
    after another in this process."""

    def __init__(self, threads: int | None = None, processes: int | None = None) -> None:
        for name, value in (("threads", threads), ("processes", processes)):
            if value is not None and (isinstance(value, bool) or
                                      not isinstance(value, (int, np.integer)) or value < 1):
                raise ConfigError(f"{name} must be a positive integer, got {value!r}",
                                  setting=name)
        self.threads = threads
        self.processes = processes

    def __repr__(self) -> str:
        return f"LocalExecutor(threads={self.threads}, processes={self.processes})"

    def threads_for(self, work: float) -> int:
        if self.threads:
            return int(self.threads)
        return min(2, os.cpu_count() or 1) if work >= THREADING_MIN_WORK else 1

    def map_blocks(self, run_block, n_blocks: int, work: float) -> None:
        threads = self.threads_for(work)
        with single_threaded_blas():
            if threads == 1 or n_blocks == 1:
                for k in range(n_blocks):
                    run_block(k)
            else:
                with ThreadPoolExecutor(threads) as pool:
                    list(pool.map(run_block, range(n_blocks)))

    def chain_processes(self, n_chains: int, work_per_chain: float = np.inf) -> int:
        """How many chains run at once."""
        wanted = int(self.processes) if self.processes else (
            (os.cpu_count() or 1) if work_per_chain >= PROCESS_MIN_WORK else 1)
        if "fork" not in mp.get_all_start_methods():
            return 1
        return max(1, min(n_chains, wanted))

    def run_chains(self, run_chain, n_chains: int, work_per_chain: float, bar) -> None:
        processes = self.chain_processes(n_chains, work_per_chain)
        if processes == 1:
            for chain in range(n_chains):
                run_chain(chain, bar, self)
        else:
            # One process per core already: threads inside a chain would only compete.
            inner = LocalExecutor(threads=1, processes=1)
            _run_in_processes(lambda chain, bar: run_chain(chain, bar, inner), n_chains,
                              processes, bar)

    def run_row_blocks(self, plan: "RowBlocks") -> np.ndarray:
        return run_row_blocks_here(plan, self)


SERIAL = LocalExecutor(threads=1, processes=1)


def resolve(executor: Executor | None, cores: int | None = None) -> Executor:
    """The executor an engine uses: the one given, else a LocalExecutor (with ``cores``
    chain processes when given)."""
    if executor is not None:
        return executor
    if cores is not None and (isinstance(cores, bool) or not isinstance(cores, (int, np.integer))
                              or cores < 1):
        raise ConfigError(f"cores must be a positive integer, got {cores!r}", setting="cores")
    return LocalExecutor(processes=cores)


def block_size(n_rows: int, block_rows: int, workers: int) -> int:
    """Rows per block: never more than block_rows, and as many blocks as a multiple of
    the workers, so that each gets an equal number (a side of 10,000 rows cut at 4,096 in
    three blocks for two workers left one worker 59 % of the work every half-step)."""
    n_blocks = -(-max(-(-n_rows // block_rows), workers) // workers) * workers
    return max(1, -(-n_rows // n_blocks))


@dataclass(frozen=True)
class Prepared:
    """A shared input of a half-step's kernel that each place running blocks computes once
    per half-step, ``function(*args)``, from inputs that are cheaper to move than its
    result (the design's per-row outer products are p/2 times the design)."""

    function: Callable
    args: tuple

    def __call__(self):
        return self.function(*self.args)


def rating_rows(matrix: sp.csr_matrix, first_row: int = 0) -> np.ndarray:
    """The row of every stored rating of a CSR matrix, in storage order (numbered from
    ``first_row``: a block's rows in the whole matrix)."""
    return np.repeat(np.arange(first_row, first_row + matrix.shape[0]), np.diff(matrix.indptr))


def row_sums(matrix: sp.csr_matrix, values: np.ndarray, rows: np.ndarray | None = None
             ) -> np.ndarray:
    """Each row's sum of ``values`` (one per stored rating, in storage order; ``rows``:
    :func:`rating_rows` of the matrix if already at hand). Every row is summed alone, in
    storage order, so a row's sum does not depend on how the rows were cut into blocks."""
    rows = rating_rows(matrix) if rows is None else rows
    return np.bincount(rows, weights=values, minlength=matrix.shape[0])


@dataclass(frozen=True)
class Targets:
    """A half-step's data, rating by rating, as a recipe: ``base - mu - column_shift[j] -
    row_offsets[i] . column_factors[j] - row_shift[i]`` for the rating in row i, column j
    (``row_shift``: the rows' own biases' prior means, drawn as offsets). ``base`` None
    means the matrix's own stored data (the ratings, which must not change between
    half-steps: a distributed executor keeps them where the blocks run). Each term is
    optional. ``rows`` (optional) is the row of every stored rating, precomputed.

    Evaluated for the whole matrix (:meth:`full`) or one block of rows (:meth:`of_block`),
    the arithmetic of every rating is the same, so results agree bit for bit."""

    base: np.ndarray | None = None
    mu: float = 0.0
    column_shift: np.ndarray | None = None
    row_offsets: np.ndarray | None = None
    column_factors: np.ndarray | None = None
    rows: np.ndarray | None = None
    row_shift: np.ndarray | None = None

    def _values(self, base, indices, rows) -> np.ndarray:
        # take_rows: the recipe's arrays are read as sent, also when a Dask worker
        # received them misaligned (no whole copy per block)
        values = base - self.mu
        if self.column_shift is not None:
            values = values - take_rows(self.column_shift, indices)
        if self.row_offsets is not None:
            values = values - np.einsum("kl,kl->k", take_rows(self.row_offsets, rows()),
                                        take_rows(self.column_factors, indices))
        if self.row_shift is not None:
            values = values - take_rows(self.row_shift, rows())
        return values

    def full(self, matrix: sp.csr_matrix) -> np.ndarray:
        def rows():
            return self.rows if self.rows is not None else rating_rows(matrix)
        base = matrix.data if self.base is None else self.base
        return self._values(base, matrix.indices, rows)

    def of_block(self, block: sp.csr_matrix, first_row: int, base=None) -> np.ndarray:
        """The targets of ``block`` (rows from ``first_row`` on; ``base``: its slice of
        the base, or None for the block's own data)."""
        return self._values(block.data if base is None else base, block.indices,
                            lambda: rating_rows(block, first_row))

    def without_data(self) -> "Targets":
        """The recipe without its per-rating arrays (base, rows): what is shared by every
        block."""
        return replace(self, base=None, rows=None)


@dataclass(frozen=True)
class RowBlocks:
    """One half-step: ``kernel(block, **shared, **per_row[rows], **per_entry[entries])``
    for each block of consecutive rows of ``matrix`` holding ``targets``; each call
    returns (rows x width). ``kernel`` is a module-level function (it may run in another
    process); ``shared`` values that are :class:`Prepared` are computed where the blocks
    run; ``per_row`` arrays (or None) are sliced by the block's rows, ``per_entry``
    arrays by its stored ratings; a ``per_entry`` pair ``(values, offsets)`` holds values
    for some rows' ratings only, rows start..stop - 1 taking
    ``values[offsets[start]:offsets[stop]]`` (``offsets``: n_rows + 1 positions)."""

    matrix: sp.csr_matrix
    targets: Targets | np.ndarray
    kernel: Callable
    width: int
    shared: dict
    per_row: dict
    per_entry: dict
    block_rows: int = DEFAULT_BLOCK_ROWS

    @property
    def work(self) -> float:
        return float(self.matrix.nnz) * self.width**2

    def starts(self, workers: int) -> tuple[list[int], int]:
        size = block_size(self.matrix.shape[0], self.block_rows, workers)
        return list(range(0, self.matrix.shape[0], size)), size

    def parts(self, start: int, stop: int) -> tuple[dict, dict]:
        """The per-row and per-entry arrays of the block of rows start..stop - 1."""
        def entries(value):
            values, offsets = value if isinstance(value, tuple) else (value,
                                                                       self.matrix.indptr)
            return values[offsets[start]:offsets[stop]]

        return ({k: None if v is None else v[start:stop] for k, v in self.per_row.items()},
                {k: None if v is None else entries(v) for k, v in self.per_entry.items()})


def ready(shared: dict) -> dict:
    """A half-step's shared inputs with the :class:`Prepared` ones computed."""
    return {k: v() if isinstance(v, Prepared) else v for k, v in shared.items()}


def row_block(matrix: sp.csr_matrix, start: int, stop: int, data=None) -> sp.csr_matrix:
    """Rows start..stop - 1 of ``matrix`` as their own CSR matrix, holding ``data`` (in
    the matrix's CSR order; default the matrix's own) in place of the stored values."""
    lo, hi = matrix.indptr[start], matrix.indptr[stop]
    values = matrix.data if data is None else data
    return sp.csr_matrix((values[lo:hi], matrix.indices[lo:hi],
                          matrix.indptr[start:stop + 1] - lo),
                         shape=(stop - start, matrix.shape[1]))


def run_row_blocks_here(plan: RowBlocks, executor: "Executor") -> np.ndarray:
    """A half-step in this process (threads as ``executor.map_blocks`` decides)."""
    matrix = plan.matrix
    n_rows = matrix.shape[0]
    targets = plan.targets.full(matrix) if isinstance(plan.targets, Targets) else plan.targets
    shared = ready(plan.shared)
    starts, size = plan.starts(executor.threads_for(plan.work))
    out = np.empty((n_rows, plan.width))

    def run(k: int) -> None:
        start, stop = starts[k], min(starts[k] + size, n_rows)
        row_parts, entry_parts = plan.parts(start, stop)
        out[start:stop] = plan.kernel(row_block(matrix, start, stop, targets), **shared,
                                      **row_parts, **entry_parts)

    executor.map_blocks(run, len(starts), plan.work)
    return out


def map_row_blocks(
    matrix: sp.csr_matrix,
    targets: Targets | np.ndarray,
    kernel: Callable,
    width: int,
    block_rows: int = DEFAULT_BLOCK_ROWS,
    executor: Executor | None = None,
    *,
    shared: dict | None = None,
    per_row: dict | None = None,
    per_entry: dict | None = None,
) -> np.ndarray:
    """Apply ``kernel`` to each block of consecutive rows of ``matrix`` holding new data
    ``targets`` (an array in the matrix's CSR order, or a :class:`Targets` recipe) and
    stack the (rows x width) results (see :class:`RowBlocks`). The executor decides where
    blocks run; results do not depend on it. Memory stays
    O(workers * block_rows * width^2)."""
    executor = executor or LocalExecutor()
    plan = RowBlocks(matrix, targets, kernel, width, dict(shared or {}), dict(per_row or {}),
                     dict(per_entry or {}), block_rows)
    return executor.run_row_blocks(plan)


def shared_empty(shape, dtype=np.float64) -> np.ndarray:
    """An uninitialised array in anonymous shared memory: what a forked process writes
    into it, its parent reads, with nothing pickled through a pipe (one chain's draws of
    U and V on MovieLens are 300 MB)."""
    dtype = np.dtype(dtype)
    count = int(np.prod(shape))
    # Faulting the pages in up front, in one call, instead of page by page as the chains
    # first write them: 3 GB of draws took 7.5 s of page faults, 1.0 s this way.
    flags = mmap.MAP_SHARED | getattr(mmap, "MAP_POPULATE", 0)
    buffer = mmap.mmap(-1, max(count, 1) * dtype.itemsize, flags=flags)
    return np.frombuffer(buffer, dtype=dtype, count=count).reshape(shape)


# -- progress -------------------------------------------------------------------------------

class _Bar:
    def __init__(self, progress: Progress | None, task_id) -> None:
        self._progress = progress
        self._task_id = task_id

    def advance(self, status: str = "") -> None:
        if self._progress is not None:
            self._progress.update(self._task_id, advance=1, status=status)


@contextmanager
def sweep_progress(total: int, description: str, enabled: bool = True) -> Iterator[_Bar]:
    """Yield an object whose ``advance(status)`` moves the bar one sweep forward."""
    if not enabled:
        yield _Bar(None, None)
        return
    progress = Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        TextColumn("{task.fields[status]}"),
        transient=False,
        console=Console(stderr=True),  # keep stdout clean for --json
    )
    with progress:
        task_id = progress.add_task(description, total=total, status="")
        yield _Bar(progress, task_id)

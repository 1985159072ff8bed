"""The executor seam on a Dask cluster: every half-step's row blocks run as Dask tasks.

``DaskExecutor(client)`` plugs into the engines where :class:`~bayes_pmf.engines.parallel.
LocalExecutor` does (``fit_als(..., executor=...)``, ``sample_gibbs(..., executor=...)``)
and gives the same numbers, bit for bit: a block's kernel is the same function on the
same inputs wherever it runs, and every random number is drawn by the chain, on the
client, before the work is split.

What moves, and when:

* **Once per fit**: the rating blocks. The rows of each side's CSR matrix are cut into
  blocks of consecutive rows, and each worker is sent a contiguous share of them
  (its column indices and ratings), which stay there for the whole fit.
* **Per half-step**, to every worker: the other side's factors (the design, with the
  bias column), the prior's blocks and, for the ratings' offsets, the other side's biases
  (and, with implicit feedback, the offsets of this side's rows), inside the worker's
  task or, above ``SCATTER_ABOVE`` bytes, scattered ahead of the tasks (once to one
  worker; the others' tasks fetch it worker to worker); each worker prepares the
  design's outer products itself. To each block: its rows' noise (and, with
  overrelaxation, their current values; with the ordinal likelihood, the latent ratings
  of its entries). Back from each block: its rows' new values, plus, for the Gibbs
  sampler, one number per row towards the sum of squared residuals.
* Through the scheduler, as task arguments and results, unless ``direct``: then the
  rating blocks, the inputs scattered ahead and the large results go straight between
  the client and the workers (Dask's ``direct_to_workers``), half the bytes on the wire.
* With ``chain_tasks=False``, chains run in threads of the client, each submitting its
  own half-steps, so the cluster works on all chains at once.

``DaskExecutor(client, chain_tasks=True)`` runs the Gibbs sampler's chains the other way:
each chain whole, as one Dask task on one worker thread (its row blocks in that thread),
for data that fits a worker and at least as many chains as worker threads. The default,
``chain_tasks="auto"``, chooses one way or the other for each fit
(:func:`chain_placement`: tasks when the chains fill the threads and one chain fits a
thread's share of its worker's memory). The chains' shared
inputs (the ratings, the model, the start) go to every worker once; each
chain's own random stream goes with its task, so its draws are the in-process chain's,
bit for bit; back come the chain's draws, and every half second its sweep count, for
the progress bar (a Dask ``Variable`` per chain). A worker lost mid-chain makes Dask rerun
the chain elsewhere from its start: same stream, same draws. Ctrl-C sets a Dask
``Event`` that every chain checks between sweeps.

A lost worker (its process killed, its machine gone) loses the blocks it held; the
executor notices (the tasks fail, or a worker that holds blocks leaves the cluster),
sends the lost blocks again to the workers still there and reruns the half-step, which
gives the same numbers (its inputs are all still on the client). With no worker left,
or after ``retries`` attempts, it raises :class:`~bayes_pmf.errors.DistributedError`
naming the workers and the rows that were lost.

Dask is an optional extra (``pip install "bayes_pmf[dask]"``); this module imports it
only when an executor is made.
"""

from __future__ import annotations

import signal
import threading
import time
import uuid
import weakref
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from ..errors import ConfigError, DistributedError
from .gather import aligned
from .parallel import (
    MEMORY_SHARE,
    SERIAL,
    Prepared,
    RowBlocks,
    Targets,
    ready,
    row_block,
    single_threaded_blas,
)

# How long a half-step's wait lasts between checks that every worker holding its blocks
# is still in the cluster.
POLL_SECONDS = 0.5
# A send that failed with a connection error: how many polls the scheduler is given to
# notice that its worker was killed, before the error counts as the worker's own.
LOST_POLLS = 6
# How long chain tasks told to stop (Ctrl-C, another chain's error) are given to end
# before they are cancelled (they look every POLL_SECONDS, between sweeps).
STOP_SECONDS = 3.0
# How long sending a worker its rating blocks may take before the fit gives up.
SCATTER_SECONDS = 600
# A half-step's shared inputs (the other side's factors, ...) above this many bytes are
# scattered ahead of its tasks: sent once, to one worker, and copied on between workers,
# instead of inside every worker's task (Dask warns of task graphs above 10 MB, which the
# scheduler unpacks). Smaller ones ride in the tasks: one round trip fewer per half-step.
SCATTER_ABOVE = 8 * 2**20


def _require_distributed():
    try:
        import distributed
    except ImportError as exc:  # the extra is not installed
        raise ConfigError('Dask is an optional extra: pip install "bayes_pmf[dask]" '
                          f"({exc})", setting="dask") from None
    return distributed


# The signals whose Python handler stops a command: Ctrl-C, and (in the command line)
# SIGTERM.
_STOPPING = (signal.SIGINT, signal.SIGTERM)


@contextmanager
def _interrupt_held():
    """Ctrl-C (SIGINT) or SIGTERM inside the block, where a Python handler would raise, is
    held until the block ends: the list yielded then holds ``(signum, handler)``, which
    the caller hands on (``handler(signum, None)``) once it has cleaned up. A LocalCluster
    interrupted while its workers start cannot be closed: distributed's exit handler then
    fails on the half-started workers with a traceback, and their processes may outlive
    the command; so the cluster starts whole (a few seconds) and is stopped whole.
    Outside the main thread, or for a signal ignored or at its default action, nothing
    changes."""
    caught: list[tuple] = []
    if threading.current_thread() is not threading.main_thread():
        yield caught
        return
    held = {signum: signal.getsignal(signum) for signum in _STOPPING}
    held = {signum: handler for signum, handler in held.items() if callable(handler)}
    for signum, handler in held.items():
        signal.signal(signum, lambda number, frame, handler=handler:
                      caught.append((number, handler)))
    try:
        yield caught
    finally:
        for signum, handler in held.items():
            signal.signal(signum, handler)


# What a local worker process holds once it has run a task of the package (Python,
# NumPy, SciPy, pandas, distributed and the package): measured 355 MB here after an ALS
# fit of 6,000 ratings (62 MB before its first task).
WORKER_START_BYTES = 350 * 2**20


def _check_room_for_workers(n_workers: int) -> None:
    """A ConfigError, before any process starts, when ``n_workers`` local worker
    processes would not fit in this machine's available memory before holding any data
    (``--dask-local 1000`` would start processes needing some 340 GB)."""
    import psutil  # distributed's own dependency

    needed, available = n_workers * WORKER_START_BYTES, psutil.virtual_memory().available
    if needed > available:
        raise ConfigError(f"{n_workers} local Dask workers (n_workers) need about "
                          f"{_amount(needed)} before holding any data (about "
                          f"{_amount(WORKER_START_BYTES)} each) and this machine has "
                          f"{_amount(available)} available: give at most "
                          f"{max(1, available // WORKER_START_BYTES)}", setting="n_workers")


# How long a server at a tcp:// address may take to say its first words: a Dask
# scheduler says who it is as it accepts a connection; one that says nothing (a web
# server waits for a request) would hold distributed's connection forever.
HANDSHAKE_SECONDS = 10.0
# The most a Dask scheduler's first message (its handshake: versions, options) takes.
_HANDSHAKE_MAX_BYTES = 2**20


class _NotAScheduler(Exception):
    """What answered at an address is not a Dask scheduler (the message says why)."""


def _probe_scheduler(address: str) -> None:
    """Raise :class:`_NotAScheduler` unless the server at ``address`` (tcp://HOST:PORT)
    opens as a Dask scheduler does, with a message of a handshake's size: a web server
    (Dask's own dashboard, 8787) either says nothing, which distributed would wait for
    forever, or answers "HTTP/1.1 ...", which it would read as a message of 3.5e18
    bytes and fail to allocate (a MemoryError traceback). OSError: nothing listens
    there, or the network failed."""
    import socket
    from urllib.parse import urlsplit

    parts = urlsplit(address)
    try:
        host, port = parts.hostname, parts.port
    except ValueError:  # a port that is not a number
        host = port = None
    if not host or port is None:
        raise _NotAScheduler("names no HOST:PORT") from None
    head, closed = b"", False
    with socket.create_connection((host, port), timeout=HANDSHAKE_SECONDS) as sock:
        deadline = time.monotonic() + HANDSHAKE_SECONDS
        while len(head) < 8 and not closed and time.monotonic() < deadline:
            sock.settimeout(max(0.01, deadline - time.monotonic()))
            try:
                chunk = sock.recv(8 - len(head))
            except TimeoutError:
                break
            closed = not chunk
            head += chunk
    if head.startswith(b"HTTP"):
        raise _NotAScheduler("answered as a web server (HTTP)")
    if len(head) < 8:
        said = "nothing" if not head else f"only {head!r}"
        raise _NotAScheduler(f"closed the connection having said {said}" if closed else
                             f"said {said} within {HANDSHAKE_SECONDS:g} s of connecting"
                             + (" (a web server waits for a request)" if not head else ""))
    if not 0 < int.from_bytes(head, "little") <= _HANDSHAKE_MAX_BYTES:
        raise _NotAScheduler(f"answered {head!r} where a scheduler says who it is")


def _finished(futures: list, seconds: float, **kwargs) -> bool:
    """``distributed.wait(futures, timeout=seconds, **kwargs)``: whether it returned
    before the timeout. Its TimeoutError is dropped with its traceback: raised through
    distributed's ``sync``, whose frame holds the error in a closure cell while the
    error's traceback holds that frame and every frame it passed through, it kept the
    caller's frames, and so its futures (a half-step's design, bundles and results, all
    on the workers), alive in a reference cycle until the client's next cyclic garbage
    collection. Measured: at 10^7 users each worker still held the last half-step's
    2.5 GB design when the next one arrived."""
    distributed = _require_distributed()
    try:
        distributed.wait(futures, timeout=seconds, **kwargs)
    except TimeoutError as exc:
        exc.__traceback__ = None
        return False
    return True


def _drop_tracebacks(exc: BaseException) -> None:
    """Drop the tracebacks of ``exc`` and of the errors it was raised from: a lost-data
    error raised through distributed's ``sync`` (see :func:`_finished`) holds the frames
    it passed through in a reference cycle, and with them a failed half-step's futures,
    whose data (its design, bundles and results) then stayed on the workers beside the
    rerun's until the client's next cyclic garbage collection."""
    pending, seen = [exc], set()
    while pending:
        error = pending.pop()
        if error is None or id(error) in seen:
            continue
        seen.add(id(error))
        error.__traceback__ = None
        pending += [error.__cause__, error.__context__]


def _forget(executor_ref: weakref.ref, key) -> None:
    """A placed matrix was collected: its blocks are released on the workers."""
    executor = executor_ref()
    if executor is not None:
        executor._placements.pop(key, None)


def _aligned(value):
    """``value`` with every array in it (in a dict or tuple) whose data is misaligned for
    its type copied to an aligned one: the small shared inputs of a half-step and a
    block's own parts, which the kernels read whole.

    Dask delivers a large received array inside the buffer it read from the network, so
    its data often starts at an address that is not a multiple of 8 (measured: offsets
    2, 4 and 6), and numpy's ``take`` copies a misaligned source whole at every call.
    The large shared inputs are left as received, so that a worker holds them once: the
    other side's design (in a :class:`Prepared`) and the factors and biases of the
    targets' recipe (a :class:`Targets`) are read by row gathers that copy only the rows
    they take (``gather.take_rows``), and what is read whole (the whitened design's
    product, the narrow design's outer products) is copied where it is prepared
    (``gather.aligned``): benchmarks/README.md, "A 2.6 GB design on a worker"."""
    if isinstance(value, np.ndarray):
        return aligned(value)
    if type(value) is dict:
        return {k: _aligned(v) for k, v in value.items()}
    if type(value) is tuple:
        return tuple(_aligned(v) for v in value)
    return value


def _bundle(inputs: tuple) -> dict:
    """On a worker: the half-step's shared inputs (``(shared, recipe)``), the small ones
    aligned (:func:`_aligned`), the prepared ones computed."""
    shared, recipe = _aligned(inputs)
    with single_threaded_blas():
        return {"shared": ready(shared), "recipe": recipe}


def _worker_block(kernel, block, start, bundle, base, values, row_parts,
                  entry_parts) -> np.ndarray:
    """One block, on a worker: its targets from the recipe (or as sent), then the
    kernel."""
    recipe = bundle["recipe"]
    base, values, row_parts, entry_parts = _aligned((base, values, row_parts, entry_parts))
    with single_threaded_blas():
        data = recipe.of_block(block, start, base) if recipe is not None else values
        block = sp.csr_matrix((data, block.indices, block.indptr), shape=block.shape)
        return kernel(block, **bundle["shared"], **row_parts, **entry_parts)


class _ChainStopped(Exception):
    """A chain task saw the run's stop event (Ctrl-C, or another chain failed)."""


class _TaskBar:
    """A chain task's progress: its sweep count and last status, published to a Dask
    Variable at most every POLL_SECONDS; between sweeps it checks the run's stop event."""

    def __init__(self, variable, stop) -> None:
        self._variable, self._stop = variable, stop
        self._sweeps, self._status = 0, ""
        self._last = self._checked = time.monotonic()

    def advance(self, status: str = "") -> None:
        self._sweeps += 1
        self._status = status
        if time.monotonic() - self._last >= POLL_SECONDS:
            self.publish()
            self.check()

    def check(self) -> None:
        """Raise :class:`_ChainStopped` once the run's stop event is set (asked at most
        every POLL_SECONDS): between sweeps, and between the ALS sweeps of the chain's
        start, which on a busy machine can outlast the seconds a stop waits for."""
        if time.monotonic() - self._checked >= POLL_SECONDS:
            self._checked = time.monotonic()
            if self._stop.is_set():
                raise _ChainStopped("stopped: Ctrl-C, or another chain failed")

    def publish(self) -> None:
        self._variable.set((self._sweeps, self._status))
        self._last = time.monotonic()


def _chain_task(run_alone, rng, variable_name: str, stop_name: str) -> dict:
    """On a worker: one whole chain (its row blocks in this thread), its draws
    returned."""
    distributed = _require_distributed()
    bar = _TaskBar(distributed.Variable(variable_name), distributed.Event(stop_name))
    try:
        drawn = run_alone(rng, bar, SERIAL)
    except _ChainStopped:  # an ordinary end: a task cancelled or failing is logged by
        return None        # its worker, which the user would see after Ctrl-C
    bar.publish()
    return drawn


@dataclass
class _Placement:
    """Where one matrix's row blocks live: block k (rows starts[k]..) on workers[k]."""

    matrix: weakref.ref  # the placement is dropped when the matrix is collected
    size: int
    starts: list[int]
    workers: list[str]
    futures: list

    n_rows: int

    def rows_on(self, worker: str) -> list[tuple[int, int]]:
        n = self.n_rows
        return [(s, min(s + self.size, n)) for s, w in zip(self.starts, self.workers)
                if w == worker]


def _amount(size: float) -> str:
    """Bytes as a reader says them: GB from 1 GB on, else MB."""
    return f"{size / 2**30:.1f} GB" if size >= 2**30 else f"{size / 2**20:.0f} MB"


def chain_placement(chains: int, chain_bytes: float, threads: int,
                    thread_memory: float | None) -> tuple[bool, str]:
    """Where the Gibbs sampler's chains run on a cluster of ``threads`` worker threads
    with ``thread_memory`` bytes each (the smallest share of a worker's memory limit;
    None: no limit): ``(True, why)`` each chain whole as one task, ``(False, why)`` the
    chains in the client, every half-step's row blocks as tasks. Tasks when there are at
    least as many chains as threads (none idles) and one chain (``chain_bytes``) fits a
    thread's share with 10% to spare: the chains then run at in-process speed and the
    client holds only their draws. Otherwise row blocks: a single chain spreads over the
    whole cluster, and no chain has to fit one worker."""
    if chains < threads:
        return False, (f"{chains} chain{'s' if chains > 1 else ''} for {threads} worker "
                       "threads: as tasks some threads would idle, so every half-step's "
                       "row blocks are spread over all of them")
    if thread_memory is not None and chain_bytes > MEMORY_SHARE * thread_memory:
        return False, (f"one chain needs about {_amount(chain_bytes)} and a worker thread "
                       f"has {_amount(thread_memory)}: the chains stay in the client, their "
                       "row blocks on the workers")
    room = "no memory limit" if thread_memory is None else _amount(thread_memory)
    return True, (f"{chains} chains for {threads} worker threads, and one chain (about "
                  f"{_amount(chain_bytes)}) fits a thread's share of its worker ({room}): "
                  "each chain runs whole as one task; the client keeps only the draws")


class DaskExecutor:
    """Row blocks as tasks on the Dask cluster of ``client`` (a ``distributed.Client``).
    The Gibbs sampler's chains run in threads of this process, each submitting its
    half-steps' row blocks (``chain_tasks=False``), or each whole as one Dask task
    (``chain_tasks=True``); ``"auto"`` (the default) chooses per fit by
    :func:`chain_placement`, and :attr:`placed_chains` says what was chosen and why. See
    the module docstring. ``retries``: how many times a half-step is rerun after losing
    workers. ``direct``: whether the large transfers (the rating blocks, the shared
    inputs scattered ahead, a half-step's results above ``SCATTER_ABOVE`` bytes, a chain
    task's draws) go straight between this process and the workers instead of through
    the scheduler; None (the default) follows Dask's own switch, the client's
    ``direct_to_workers`` (configuration ``distributed.client.direct-to-workers``). Direct
    transfers need the workers reachable from the client. Use as a context manager, or
    call :meth:`close`, to release the blocks held on the workers (and, for :meth:`local`,
    to stop the cluster)."""

    remote = True

    def __init__(self, client, *, retries: int = 2,
                 chain_tasks: bool | str = "auto", direct: bool | None = None) -> None:
        _require_distributed()
        if isinstance(retries, bool) or not isinstance(retries, int) or retries < 0:
            raise ConfigError(f"retries must be a non-negative integer, got {retries!r}",
                              setting="retries")
        if not (isinstance(chain_tasks, bool) or chain_tasks == "auto"):
            raise ConfigError(f"chain_tasks must be True, False or 'auto', got "
                              f"{chain_tasks!r}", setting="chain_tasks")
        if not (direct is None or isinstance(direct, bool)):
            raise ConfigError(f"direct must be True, False or None, got {direct!r}",
                              setting="direct")
        self.client = client
        self.retries = retries
        self.chain_tasks = chain_tasks
        self.direct = bool(getattr(client, "direct_to_workers", False)) if direct is None \
            else direct
        # the last Gibbs fit's chains: {"run_as": "tasks" or "row blocks", "why": ...}
        self.placed_chains: dict | None = None
        self._placements: dict[int, _Placement] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._owned: list = []  # what close() shuts down (for local())
        self.bytes_sent = 0  # what this executor sent to workers, and got back
        self.bytes_received = 0
        self.recoveries = 0

    @classmethod
    def local(cls, n_workers: int, threads_per_worker: int = 1,
              memory_limit: str = "auto", **kwargs) -> "DaskExecutor":
        """A LocalCluster of ``n_workers`` worker processes on this machine, and its
        executor (closing the executor stops the cluster)."""
        distributed = _require_distributed()
        for name, value in (("n_workers", n_workers), ("threads_per_worker",
                                                        threads_per_worker)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"{name} must be a positive integer, got {value!r}",
                                  setting=name)
        _check_room_for_workers(n_workers)
        import dask

        # Dask's nannies set MALLOC_TRIM_THRESHOLD_=65536 in their workers, so that glibc
        # hands freed memory back at once; the row kernels' large temporaries are then
        # page-faulted in again on every call (an item block ran 1.55x slower than in
        # this process: benchmarks/README.md). BLAS stays at one thread per worker
        # thread, as Dask sets it.
        environ = dict(dask.config.get("distributed.nanny.pre-spawn-environ", {}))
        environ.pop("MALLOC_TRIM_THRESHOLD_", None)
        with _interrupt_held() as interrupted:
            with dask.config.set({"distributed.nanny.pre-spawn-environ": environ}):
                cluster = distributed.LocalCluster(n_workers=n_workers,
                                                   threads_per_worker=threads_per_worker,
                                                   processes=True, memory_limit=memory_limit,
                                                   dashboard_address=":0")
            try:
                client = distributed.Client(cluster)
            except BaseException:
                cluster.close()
                raise
        executor = cls(client, **kwargs)
        executor._owned = [client, cluster]
        if interrupted:  # Ctrl-C while it started: stopped whole, then the interrupt
            executor.close()
            signum, handler = interrupted[0]
            handler(signum, None)
        return executor

    @classmethod
    def connect(cls, address: str, **kwargs) -> "DaskExecutor":
        """The executor of an existing scheduler at ``address`` (tcp://HOST:PORT)."""
        distributed = _require_distributed()
        start = ("start one with `dask scheduler` and workers with `dask worker "
                 "tcp://HOST:PORT`")
        try:
            if address.startswith("tcp://"):
                _probe_scheduler(address)
            client = distributed.Client(address, timeout=10)
        except (OSError, TimeoutError) as exc:
            raise ConfigError(f"no Dask scheduler answered at {address!r} ({exc}); {start}",
                              setting="dask") from None
        except _NotAScheduler as exc:
            raise ConfigError(f"{address!r} is not a Dask scheduler: it {exc}; give the "
                              "address `dask scheduler` prints (port 8786 unless chosen; "
                              f"8787 is its dashboard), or {start}", setting="dask") from None
        executor = cls(client, **kwargs)
        executor._owned = [client]
        return executor

    def __enter__(self) -> "DaskExecutor":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        """Release the blocks held on the workers; stop what :meth:`local` started."""
        with self._lock:
            self._placements.clear()
        for owned in self._owned:
            owned.close()
        self._owned = []

    def __repr__(self) -> str:
        info = self.describe()
        return (f"DaskExecutor(scheduler={info['scheduler']!r}, workers={info['workers']}, "
                f"threads={info['threads']}"
                + (")" if self.chain_tasks == "auto" else
                   f", chain_tasks={self.chain_tasks})"))

    def _workers(self) -> dict[str, int]:
        """The cluster's workers now, and their threads."""
        return dict(self.client.nthreads())

    def _worker_info(self) -> dict:
        """What the scheduler knows of each worker now (threads, memory limit, ...): one
        round trip."""
        return self.client.scheduler_info(n_workers=-1)["workers"]

    def describe(self, workers: dict | None = None) -> dict:
        """The cluster, for a run's records: scheduler, workers, threads, memory
        (``workers``: the scheduler's worker records, asked for when not given)."""
        workers = self._worker_info() if workers is None else workers
        return {"scheduler": self.client.scheduler.address,
                "workers": len(workers),
                "threads": int(sum(w.get("nthreads", 1) for w in workers.values())),
                "memory_bytes": int(sum(w.get("memory_limit", 0) or 0
                                        for w in workers.values())),
                "transfers": "direct" if self.direct else "through the scheduler"}

    def place_chains(self, chains: int, chain_bytes: float) -> bool:
        """Whether a Gibbs fit's ``chains`` (``chain_bytes`` each, estimated) run as
        tasks: ``chain_tasks`` if it is True or False, else :func:`chain_placement` on
        this cluster. The choice and its reason are kept in :attr:`placed_chains`."""
        if self.chain_tasks == "auto":
            workers = self._worker_info()
            if not workers:
                raise DistributedError("the Dask cluster has no workers")
            tasks, why = chain_placement(chains, chain_bytes,
                                         self.describe(workers)["threads"],
                                         self.thread_memory(workers))
        else:
            tasks = self.chain_tasks
            why = f"asked for (chain_tasks={tasks})"
        self.placed_chains = {"run_as": "tasks" if tasks else "row blocks", "why": why}
        return tasks

    def thread_memory(self, workers: dict | None = None) -> float | None:
        """The smallest share of a worker's memory limit per worker thread (bytes), or
        None when no worker has a limit (``workers``: as for :meth:`describe`)."""
        workers = self._worker_info() if workers is None else workers
        shares = [w["memory_limit"] / max(w.get("nthreads", 1), 1) for w in workers.values()
                  if w.get("memory_limit")]
        return min(shares) if shares else None

    # -- the Executor protocol -----------------------------------------------------------

    def threads_for(self, work: float) -> int:
        workers = self._workers()
        if not workers:
            raise DistributedError("the Dask cluster has no workers")
        return int(sum(workers.values()))

    def map_blocks(self, run_block, n_blocks: int, work: float) -> None:
        # Work not expressed as RowBlocks (closures over local arrays) runs here.
        with single_threaded_blas():
            for k in range(n_blocks):
                run_block(k)

    def chain_processes(self, n_chains: int, work_per_chain: float = np.inf) -> int:
        return n_chains

    def run_chains(self, run_chain, n_chains: int, work_per_chain: float, bar) -> None:
        self._stop.clear()
        with ThreadPoolExecutor(n_chains, thread_name_prefix="chain") as pool:
            futures = [pool.submit(run_chain, chain, bar, self) for chain in range(n_chains)]
            try:
                # waits in short steps: Ctrl-C's signal may land on one of the client's
                # other threads, and a main thread blocked on a lock without a timeout
                # would then not see it until every chain had finished
                pending = futures
                while pending:
                    done, pending = wait(pending, timeout=POLL_SECONDS,
                                         return_when=FIRST_EXCEPTION)
                    for future in done:
                        if future.exception() is not None:
                            self._stop.set()
                            raise future.exception()
            except BaseException:  # Ctrl-C or a chain's error: stop the other chains
                self._stop.set()
                raise

    def run_chain_tasks(self, run_alone, rngs: list, bar, keep) -> None:
        """Every chain as one Dask task: ``run_alone(rng, bar, inner)`` on a worker with
        the chain's random stream, ``keep(chain, draws)`` here as each chain ends (see
        the module docstring)."""
        distributed = _require_distributed()
        if not self._workers():
            raise DistributedError("the Dask cluster has no workers")
        run = uuid.uuid4().hex
        stop = distributed.Event(f"bayes-pmf-stop-{run}", client=self.client)
        names = [f"bayes-pmf-chain-{run}-{chain}" for chain in range(len(rngs))]
        variables = [distributed.Variable(name, client=self.client) for name in names]
        for variable in variables:  # set before any read: a read never waits
            variable.set((0, ""))
        # the shared inputs once to every worker (scattered to one, the scheduler would
        # keep every chain beside it), not once per chain
        shared = self._scatter_everywhere(run_alone)
        self.bytes_sent += _nbytes(getattr(run_alone, "__self__", None)) * len(
            self._workers())
        futures = {self.client.submit(_chain_task, shared, rng, name, stop.name, pure=False,
                                      key=f"gibbs-chain-{chain}-{run}"): chain
                   for chain, (rng, name) in enumerate(zip(rngs, names))}
        shown = [0] * len(rngs)
        pending = set(futures)
        try:
            while pending:
                _finished(list(pending), POLL_SECONDS, return_when="FIRST_COMPLETED")
                for chain, variable in enumerate(variables):
                    self._show(variable, chain, shown, bar)
                for future in [f for f in pending if f.done()]:
                    pending.discard(future)
                    chain = futures[future]
                    # a chain's error is raised here; its draws straight from the worker
                    # when direct
                    drawn = self.client.gather(future, direct=self.direct)
                    self._show(variables[chain], chain, shown, bar)
                    keep(chain, drawn)
                    self.bytes_received += sum(a.nbytes for a in drawn.values())
        except BaseException as exc:  # Ctrl-C or a chain's error: stop the other chains
            stop.set()
            try:  # they see it within a sweep and half a second, and end
                distributed.wait(list(pending), timeout=STOP_SECONDS)
            except (Exception, KeyboardInterrupt):  # a second Ctrl-C: at once; or lost too
                pass
            finally:
                self.client.cancel(list(futures))
            if isinstance(exc, Exception) and _is_lost(exc):  # a chain's inputs or its
                raise DistributedError(                       # reruns lost with workers
                    f"Dask workers were lost while the chains ran and a chain could not be "
                    f"rerun ({type(exc).__name__}: {exc}); nothing was written: rerun when "
                    "the cluster is whole") from exc
            raise
        finally:
            for variable in variables:
                variable.delete()

    def _scatter_everywhere(self, value):
        """``value`` on every worker under one key, sent to each worker in turn (a worker
        lost meanwhile is left out; up to ``retries`` rounds when none took it). Not
        ``broadcast=True``: the scheduler's replication then copies to a fixed list of
        workers until each holds it, and with one of them killed meanwhile it never ends
        (Dask's ``Scheduler.replicate``; :meth:`_scatter_ahead` avoids it too). A copy on
        each worker, under one key, is what lets a chain rerun on any worker left."""
        key = f"bayes-pmf-shared-{uuid.uuid4().hex}"
        for _attempt in range(self.retries + 1):
            live = sorted(self._workers())
            if not live:
                raise DistributedError("the Dask cluster has no workers")
            held, failed = [], None
            for name in live:
                try:
                    held.append(self.client.scatter({key: value}, workers=[name],
                                                    hash=False, direct=self.direct,
                                                    timeout=SCATTER_SECONDS)[key])
                except Exception as exc:  # the worker went away before or during it
                    if not self._send_lost(exc, [name]):
                        raise DistributedError(f"sending the chains' inputs to the workers "
                                               f"failed: {exc}") from exc
                    failed = exc
            if failed is not None:
                self.recoveries += 1
            if held:
                return held[0]
            time.sleep(POLL_SECONDS)  # let the scheduler see the workers go
        raise DistributedError(f"sending the chains' inputs to the workers failed: every "
                               f"worker was lost ({failed})") from failed

    @staticmethod
    def _show(variable, chain: int, shown: list, bar) -> None:
        sweeps, status = variable.get()
        for _ in range(max(0, sweeps - shown[chain])):
            bar.advance(status)
        shown[chain] = max(shown[chain], sweeps)

    def run_row_blocks(self, plan: RowBlocks) -> np.ndarray:
        lost: list[str] = []
        for _attempt in range(self.retries + 1):
            try:
                return self._run(plan, self._placement(plan))
            except _WorkersLost as exc:
                lost.append(str(exc))
                _drop_tracebacks(exc)  # and with them the failed attempt's futures
                self.recoveries += 1
                with self._lock:  # every placement on a lost worker is placed again
                    for key in [k for k, p in self._placements.items()
                                if set(p.workers) & set(exc.workers)]:
                        del self._placements[key]
                    if not self._workers():
                        break
        why = "no worker left" if not self._workers() else f"{self.retries} retries used"
        raise DistributedError(
            f"Dask workers were lost during a half-step ({'; '.join(lost)}) and the rows "
            f"they held could not be recomputed ({why}); nothing was written: rerun when "
            "the cluster is whole")

    # -- internals ----------------------------------------------------------------------

    def _placement(self, plan: RowBlocks) -> _Placement:
        """The blocks of ``plan.matrix`` on the workers: sent on first use (or after a
        worker holding some of them left), kept while the matrix lives (the training
        data's, for the executor's life; an ordinal chain's latent ratings', for the
        chain's)."""
        matrix = plan.matrix
        key = (id(matrix), plan.block_rows)
        with self._lock:  # one placement per matrix, even for chains placing at once
            placed = self._placements.get(key)
            if placed is not None and placed.matrix() is matrix:
                return placed
            placed = self._place(plan)
            self._placements[key] = placed
            weakref.finalize(matrix, _forget, weakref.ref(self), key)
            return placed

    def _place(self, plan: RowBlocks) -> _Placement:
        matrix = plan.matrix
        live = self._workers()
        if not live:
            raise DistributedError("the Dask cluster has no workers")
        names = sorted(live)
        n_rows = matrix.shape[0]
        starts, size = plan.starts(int(sum(live.values())))
        # contiguous shares of about equal numbers of ratings per worker: a block goes to
        # the worker whose share holds the block's middle rating (by its first rating, a
        # side cut into as many blocks as threads put the second of two blocks on the
        # first worker too whenever the first held under half the ratings, the other
        # worker idle for the half-step)
        stops = np.minimum(np.asarray(starts) + size, n_rows)
        middles = matrix.indptr[starts] + matrix.indptr[stops]  # twice each middle rating
        share = np.minimum((middles * len(names)) // max(2 * matrix.nnz, 1), len(names) - 1)
        workers = [names[int(s)] for s in share]
        futures: list = [None] * len(starts)  # filled below, worker by worker
        placement = _Placement(weakref.ref(matrix), size, starts, workers, futures, n_rows)
        for name in names:
            mine = [k for k, w in enumerate(workers) if w == name]
            if not mine:
                continue
            # copies: a view would pickle the whole matrix's arrays with every block
            blocks = [row_block(matrix, starts[k], min(starts[k] + size, n_rows)).copy()
                      for k in mine]
            self.bytes_sent += sum(_nbytes(b) for b in blocks)
            try:
                sent = self.client.scatter(blocks, workers=[name], hash=False,
                                           direct=self.direct, timeout=SCATTER_SECONDS)
            except Exception as exc:  # the worker went away before or during the transfer
                if not self._send_lost(exc, [name]):
                    raise
                raise _WorkersLost([name], placement) from exc
            for k, future in zip(mine, sent):
                futures[k] = future
        return placement

    def _run(self, plan: RowBlocks, placement: _Placement) -> np.ndarray:
        matrix, indptr = plan.matrix, plan.matrix.indptr
        n_rows = matrix.shape[0]
        recipe = base = values = None
        if isinstance(plan.targets, Targets):
            recipe, base = plan.targets.without_data(), plan.targets.base
        else:
            values = plan.targets
        # what every block shares goes to each worker once, in one task, which also
        # prepares what is cheaper to compute there than to send
        bundle_size = _shared_bytes([recipe, *plan.shared.values()])
        workers = sorted(set(placement.workers))
        inputs = (plan.shared, recipe)
        if bundle_size > SCATTER_ABOVE:
            inputs = self._scatter_ahead(inputs, workers, placement)
            self.bytes_sent += bundle_size
        else:
            self.bytes_sent += bundle_size * len(workers)
        bundles = {worker: self.client.submit(_bundle, inputs, workers=[worker],
                                              allow_other_workers=False, pure=False)
                   for worker in workers}
        futures = []
        for k, start in enumerate(placement.starts):
            stop = min(start + placement.size, n_rows)
            lo, hi = indptr[start], indptr[stop]
            row_parts, entry_parts = plan.parts(start, stop)
            parts = (None if base is None else base[lo:hi],
                     None if values is None else values[lo:hi])
            self.bytes_sent += sum(_nbytes(v) for v in (*row_parts.values(),
                                                        *entry_parts.values(), *parts))
            worker = placement.workers[k]
            futures.append(self.client.submit(
                _worker_block, plan.kernel, placement.futures[k], start, bundles[worker],
                *parts, row_parts, entry_parts, workers=[worker], allow_other_workers=False,
                pure=False))
        # large results straight from the workers when direct; small ones through the
        # scheduler, which is quicker than a connection to every worker
        results = self._gather(futures, placement,
                               direct=self.direct and n_rows * plan.width * 8 > SCATTER_ABOVE)
        out = np.empty((n_rows, plan.width))
        for start, result in zip(placement.starts, results):
            out[start:start + len(result)] = result
            self.bytes_received += result.nbytes
        return out

    def _scatter_ahead(self, value, workers: list[str], placement: _Placement):
        """``value`` scattered to one of ``workers``; the tasks on the others fetch it from
        a worker that holds it (Dask's own worker-to-worker transfer). Not
        ``broadcast=True``: the scheduler then replicates to every worker named and, when
        one of them is killed meanwhile, kept trying for ever (a killed-worker test hung
        in 2 of 7 runs); a lost holder is a lost input of the tasks, which the half-step
        recovers from like any lost worker."""
        try:
            return self.client.scatter([value], workers=workers[:1], hash=False,
                                       direct=self.direct, timeout=SCATTER_SECONDS)[0]
        except Exception as exc:  # a worker went away during the transfer
            if not self._send_lost(exc, workers):
                raise
            gone = sorted(set(workers) - set(self._workers()))
            raise _WorkersLost(gone or workers, placement) from exc

    def _send_lost(self, exc: BaseException, names: list[str]) -> bool:
        """Whether a send to the workers ``names`` failed because one of them was lost:
        Dask's lost-data and comm errors, the scheduler's KeyError naming one of them, or
        one of them gone from the cluster. A connection error (OSError) is given the
        scheduler's time to notice a killed worker (sent directly, the client meets the
        dead address first); any other error of a live worker (a spill's "no space
        left") is its own, not a loss."""
        if _is_lost(exc) or any(_names_worker(exc, name) for name in names):
            time.sleep(POLL_SECONDS)  # let the scheduler see the worker go
            return True
        for _poll in range(LOST_POLLS):
            if set(names) - set(self._workers()):
                time.sleep(POLL_SECONDS)
                return True
            if not isinstance(exc, OSError):
                return False
            time.sleep(POLL_SECONDS)
        return False

    def _gather(self, futures: list, placement: _Placement, direct: bool = False) -> list:
        """The blocks' results, watching that the workers holding them stay (``direct``:
        fetched from the workers, not through the scheduler)."""
        needed = set(placement.workers)
        while True:
            if self._stop.is_set():
                self.client.cancel(futures)
                raise KeyboardInterrupt("stopped: another chain failed or Ctrl-C")
            try:
                finished = _finished(futures, POLL_SECONDS)
            except Exception as exc:  # a block's data lost with its worker
                if not _is_lost(exc):
                    raise
                raise self._lost(needed, placement, futures) from exc
            if not finished:
                # still running, failed, or waiting for a worker that has left
                finished = any(f.status in ("error", "cancelled", "lost") for f in futures)
                gone = sorted(needed - set(self._workers()))
                if gone:
                    self.client.cancel(futures)
                    raise _WorkersLost(gone, placement) from None
            if finished:
                try:
                    return self.client.gather(futures, direct=direct)
                except Exception as exc:  # the kernel's own error, or lost data
                    if not _is_lost(exc):
                        raise
                    raise self._lost(needed, placement, futures) from exc

    def _lost(self, needed: set, placement: _Placement, futures: list) -> "_WorkersLost":
        self.client.cancel(futures)
        time.sleep(POLL_SECONDS)  # let the scheduler see the worker go
        return _WorkersLost(sorted(needed - set(self._workers())) or sorted(needed),
                            placement)


class _WorkersLost(Exception):
    def __init__(self, workers: list[str], placement: _Placement) -> None:
        rows = [f"{w}: rows {', '.join(f'{a}-{b - 1}' for a, b in placement.rows_on(w))}"
                for w in workers]
        super().__init__("; ".join(rows))
        self.workers = workers


def _is_lost(exc: BaseException) -> bool:
    from concurrent.futures import CancelledError

    name = type(exc).__name__
    return isinstance(exc, CancelledError) or name in (
        "KilledWorker", "FutureCancelledError", "CommClosedError", "FutureLostError")


def _names_worker(exc: BaseException, name: str) -> bool:
    """The scheduler's answer to a scatter aimed at a worker it no longer has: a KeyError
    whose key is that worker's address (not any error that happens to mention it)."""
    return isinstance(exc, KeyError) and name in exc.args


def _shared_bytes(values: list) -> int:
    """The bytes of ``values`` (of a :class:`Prepared` value, its arguments) as one task
    sends them: an array given twice (the design both kernels' preparations take) is
    pickled once."""
    arrays = {id(a): a for v in values
              for a in (v.args if isinstance(v, Prepared) else (v,))}
    return sum(_nbytes(a) for a in arrays.values())


def _nbytes(value) -> int:
    if value is None or np.isscalar(value):
        return 0
    if isinstance(value, np.ndarray):
        return value.nbytes
    if sp.issparse(value):
        return value.data.nbytes + value.indices.nbytes + value.indptr.nbytes
    return sum(_nbytes(v) for v in getattr(value, "__dict__", {}).values())

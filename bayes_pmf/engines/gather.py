"""Row gathers that read arrays as a Dask worker receives them.

Dask delivers a large received array inside the buffer it read from the network, after
the message's small frames, so its data often starts at an address that is not a
multiple of 8 (measured: offsets 2, 4 and 6 for float64 arrays of 0.26-2.6 GB), and
numpy's ``take`` first copies a misaligned source whole, at every call. The kernels
gather rows through :func:`take_rows`, which reads them as raw bytes, so that a worker
holds what it received once; what a kernel reads whole is copied once where it is
prepared (:func:`aligned`). No imports from the package: the row kernels
(:mod:`bayes_pmf.engines.linalg`) and the targets' recipe
(:mod:`bayes_pmf.engines.parallel`) both read through it.
"""

from __future__ import annotations

import numpy as np


def aligned(array: np.ndarray) -> np.ndarray:
    """``array`` itself, or a copy when its data is misaligned for its type (as Dask
    delivers large received arrays: :func:`take_rows`)."""
    return array if array.flags.aligned else array.copy()


def take_rows(source: np.ndarray, indices, out: np.ndarray | None = None,
              mode: str = "raise") -> np.ndarray:
    """``np.take(source, indices, axis=0, out=out, mode=mode)``, the same bytes, also fast
    from a misaligned C-contiguous ``source``: each row is read as one raw element of its
    bytes (alignment 1), so only the rows taken are copied, as fast as from an aligned
    source (400,000 rows of a misaligned 2*10^6 x 33 array: 29.7 ms and 101 MB allocated,
    against 157 ms and 604 MB by ``np.take``). Gathering one block's design rows from a
    received 10^7 x 33 user design took 13 s instead of 0.2 s before the worker aligned
    it, and the aligned copy doubled the worker's memory (benchmarks/README.md, "A 2.6 GB
    design on a worker"). ``out`` (C-contiguous, ``source``'s type) is filled in place."""
    if source.flags.aligned or not source.flags.c_contiguous or source.size == 0:
        return np.take(source, indices, axis=0, out=out, mode=mode)
    indices = np.asarray(indices)
    width = source.size // len(source)  # values per row
    row = np.dtype((np.void, width * source.itemsize))
    if out is None:
        out = np.empty(indices.shape + source.shape[1:], dtype=source.dtype)
    if not (out.flags.c_contiguous and out.dtype == source.dtype
            and out.shape == indices.shape + source.shape[1:]):
        raise ValueError("take_rows: out must be C-contiguous, of the source's type and "
                         f"shape {indices.shape + source.shape[1:]}")
    np.take(source.reshape(len(source), width).view(row).reshape(len(source)), indices,
            out=out.reshape(-1, width).view(row).reshape(indices.shape), mode=mode)
    return out

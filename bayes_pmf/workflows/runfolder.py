"""A run folder: everything one main-job run measured, in files a reader can open, and
all of it from that one run.

:class:`RunFolder` reserves the folder before any work is done (the path is checked, a
lock taken), the run writes into a staging folder beside it, and :meth:`RunFolder.commit`
swaps the staging folder in at the end, atomically where the OS allows (Linux'
renameat2 exchange). A run that fails, is interrupted (Ctrl-C) or is killed leaves the
previous folder as it was; a second run into a folder that is being written waits for
nothing and fails at once; a folder that holds an earlier run is replaced only with
``overwrite=True``.

    metrics.json     every printed number, settings, seed, versions, data hash
    results.csv      the method / RMSE / MAE / coverage / seconds table
    diagnostics.csv  convergence verdict and held-out lpd of each sampled method
    figures/*.png    the pictures listed in metrics.json["figures"]
    models/*.nc      each fitted PMF result (InferenceData), loadable with load_result;
                     posteriors keep at most SAVED_DRAWS draws, evenly thinned per chain
                     (a 4 x 200-draw MovieLens posterior is 600 MB in full; every metric
                     was computed from all draws before saving)
"""

from __future__ import annotations

import ctypes
import errno
import json
import math
import os
import shutil
import time
import uuid
from pathlib import Path

import numpy as np
import pandas as pd

from ..errors import ConfigError
from ..result.result import save_result

SAVED_DRAWS = 200
TABLE_COLUMNS = ("method", "rmse", "mae", "log_score", "rps", "coverage_50", "coverage_90",
                 "fit_seconds")


def results_table(results: list[dict]) -> pd.DataFrame:
    """One row per method; coverage is NaN for baselines without a predictive."""
    return pd.DataFrame([{k: r.get(k, np.nan) for k in TABLE_COLUMNS} for r in results])


def default_run_dir(root: str | Path = "reports/runs") -> Path:
    """reports/runs/fit-<date>-<time>."""
    return Path(root) / time.strftime("fit-%Y%m%d-%H%M%S")


def _json_safe(value):
    """NaN/inf are not JSON; write them as null so every JSON reader accepts the file."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    return value


def metrics_json(metrics: dict) -> str:
    return json.dumps(_json_safe(metrics), indent=2, default=str)


def write_text(path: Path, text: str) -> None:
    """Write a text file of a run folder (UTF-8). Files are written into the staging
    folder of a :class:`RunFolder`, which appears whole or not at all."""
    path.write_text(text, encoding="utf-8")


def write_figures(figures: dict, out_dir: Path) -> list[str]:
    """Save each figure as PNG under out_dir/figures and close it; return the file names."""
    import matplotlib.pyplot as plt

    folder = out_dir / "figures"
    folder.mkdir(parents=True, exist_ok=True)
    names = []
    for name, figure in figures.items():
        figure.savefig(folder / f"{name}.png", dpi=110, format="png")
        plt.close(figure)
        names.append(f"figures/{name}.png")
    return names


def write_run_folder(metrics: dict, models: dict, out_dir: str | Path,
                     figures: dict | None = None) -> Path:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if figures:
        metrics = dict(metrics, figures=write_figures(figures, out))
    write_text(out / "metrics.json", metrics_json(metrics))
    write_text(out / "results.csv",
                      results_table(metrics["results"]).to_csv(index=False))
    if metrics.get("diagnostics"):
        import pandas as pd

        write_text(out / "diagnostics.csv",
                          pd.DataFrame(metrics["diagnostics"]).to_csv(index=False))
    for name, model in models.items():
        saved = model.thinned(SAVED_DRAWS).without_predictions()
        save_result(saved, out / "models" / f"{name}.nc")
    return out


# -- reserving and committing a run folder --------------------------------------------------

def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    return True


def _exchange(a: Path, b: Path) -> bool:
    """Swap two paths in one step (Linux renameat2 RENAME_EXCHANGE); False if the OS or
    file system cannot."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        renameat2 = libc.renameat2
    except (OSError, AttributeError):
        return False
    at_fdcwd, rename_exchange = -100, 2
    return renameat2(at_fdcwd, os.fsencode(str(a)), at_fdcwd, os.fsencode(str(b)),
                     rename_exchange) == 0


# What the operating system says when a write fails for want of room or of a working
# disk (as an OSError's errno, or in the text of a library's own error: h5py, writing a
# model, raises RuntimeError("... No space left on device ...")).
_WRITE_FAILURES = {errno.ENOSPC: "No space left on device", errno.EDQUOT: "Disk quota exceeded",
                   errno.EIO: "Input/output error", errno.EROFS: "Read-only file system"}


def _write_failure(error: BaseException | None) -> tuple[str, str] | None:
    """``(reason, file)`` when ``error`` or an error behind it is a failed write
    (:data:`_WRITE_FAILURES`), else None."""
    chain, seen = [], set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        chain.append(error)
        error = error.__cause__ or error.__context__
    for error in chain:  # the OS's own words first: they name the file
        if isinstance(error, OSError) and error.errno in _WRITE_FAILURES:
            return (error.strerror or _WRITE_FAILURES[error.errno],
                    str(error.filename or "a file"))
    for error in chain:
        text = str(error)
        for reason in _WRITE_FAILURES.values():
            if reason in text:
                named = text.split("filename = '", 1)[1].split("'", 1)[0] \
                    if "filename = '" in text else "a file"
                return reason, named
    return None


class RunFolder:
    """The output folder of one run (see the module docstring). Use as a context manager
    around the whole run; write into :attr:`staging`; call :meth:`commit` at the end.
    Leaving the block without committing (an error, Ctrl-C) removes the staging folder
    and releases the lock."""

    def __init__(self, path: str | Path, *, overwrite: bool = False) -> None:
        self.path = Path(path)
        self.run_id = uuid.uuid4().hex
        parent = self.path.parent
        if self.path.exists() and not self.path.is_dir():
            raise ConfigError(f"output folder {self.path} is a file, not a folder; choose "
                              "another path", setting="out")
        try:
            parent.mkdir(parents=True, exist_ok=True)
        except (NotADirectoryError, FileExistsError):
            raise ConfigError(f"cannot create output folder {self.path}: a part of its path "
                              "is a file", setting="out") from None
        except PermissionError:
            raise ConfigError(f"cannot create output folder {self.path}: permission denied",
                              setting="out") from None
        except OSError as exc:  # a read-only file system, /proc, ...
            raise ConfigError(f"cannot create output folder {self.path}: "
                              f"{exc.strerror or exc}", setting="out") from None
        if not os.access(parent, os.W_OK | os.X_OK):
            raise ConfigError(f"cannot write into {parent} (permission denied) for output "
                              f"folder {self.path}", setting="out")
        self._lock = parent / f".{self.path.name}.lock"
        self._take_lock()
        try:
            if self.path.is_dir() and any(self.path.iterdir()) and not overwrite:
                raise ConfigError(
                    f"output folder {self.path} already holds files (an earlier run?); pass "
                    "overwrite=True (--overwrite) to replace it whole, or choose another "
                    "folder", setting="out")
            self._clean_stale_staging(parent)
            self.staging = parent / f".{self.path.name}.staging-{os.getpid()}-{self.run_id[:8]}"
            try:
                self.staging.mkdir()
            except OSError as exc:
                raise ConfigError(f"cannot write into {parent} ({exc.strerror or exc}) for "
                                  f"output folder {self.path}", setting="out") from None
        except BaseException:
            self._release()
            raise
        self.committed = False

    def _take_lock(self) -> None:
        for _ in range(2):
            try:
                fd = os.open(self._lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                try:
                    holder = int(self._lock.read_text().strip() or 0)
                except (OSError, ValueError):
                    holder = 0
                if holder and _alive(holder):
                    raise ConfigError(f"another run (process {holder}) is writing output "
                                      f"folder {self.path}; wait for it or choose another "
                                      "folder", setting="out") from None
                self._lock.unlink(missing_ok=True)  # a killed run's lock
                continue
            except OSError as exc:  # root passes os.access, and still cannot write /proc
                raise ConfigError(f"cannot write into {self._lock.parent} "
                                  f"({exc.strerror or exc}) for output folder {self.path}",
                                  setting="out") from None
            with os.fdopen(fd, "w") as handle:
                handle.write(str(os.getpid()))
            return
        raise ConfigError(f"cannot lock output folder {self.path}", setting="out")

    def _clean_stale_staging(self, parent: Path) -> None:
        for stale in parent.glob(f".{self.path.name}.staging-*"):
            try:
                pid = int(stale.name.rsplit("staging-", 1)[1].split("-")[0])
            except ValueError:
                continue
            if not _alive(pid):
                shutil.rmtree(stale, ignore_errors=True)

    def _release(self) -> None:
        self._lock.unlink(missing_ok=True)

    def __enter__(self) -> "RunFolder":
        return self

    def __exit__(self, kind, value, traceback) -> None:
        if not self.committed:
            self.abort()
            failure = _write_failure(value)
            if failure is not None:
                reason, where = failure
                if where.startswith(f"{self.staging}{os.sep}"):  # as the run names it
                    where = os.path.relpath(where, self.staging)
                raise ConfigError(
                    f"cannot finish output folder {self.path}: {reason} (writing {where}): "
                    "free space or choose another folder; nothing was written and an "
                    "earlier run's folder is as it was", setting="out") from None

    def abort(self) -> None:
        """Drop the staging folder, keep the previous folder, release the lock."""
        shutil.rmtree(self.staging, ignore_errors=True)
        self._release()

    def commit(self) -> Path:
        """Put the staging folder in the run folder's place in one step and release the
        lock; the previous folder (if any) is removed."""
        try:
            if self.path.exists():
                if not _exchange(self.staging, self.path):
                    aside = self.path.parent / f".{self.path.name}.old-{self.run_id[:8]}"
                    os.rename(self.path, aside)
                    os.rename(self.staging, self.path)
                    shutil.rmtree(aside, ignore_errors=True)
                else:
                    shutil.rmtree(self.staging, ignore_errors=True)  # the old folder now
            else:
                os.rename(self.staging, self.path)
            self.committed = True
        finally:
            self._release()
        return self.path

"""What "reproducible" means for a bayes_pmf run, precisely, and how two runs are compared.

Two promises, tested (``tests/test_report.py``) and measured
(``benchmarks/cross_machine.py``):

1. **Same numerics, same numbers, bit for bit.** A rerun with the same settings and seeds
   on a machine whose *numerics fingerprint* (:func:`numerics_fingerprint`: package
   versions, the BLAS library and the CPU kernel it chose, NumPy's active CPU features,
   the CPU model and count) equals the first run's gives identical numbers, however many
   processes or threads ran the chains.
2. **Other floating-point kernels, the same numbers within a measured tolerance.**
   Another CPU makes OpenBLAS and NumPy pick other kernels, which sum in another order;
   the last bits of every sum change and iterative fits carry the change along. Rerunning
   the committed report with every kernel choice this machine kind offers
   (``OPENBLAS_CORETYPE`` = SkylakeX, Haswell, Zen, SandyBridge; NumPy's AVX-512 loops
   off) moved no reported number by more than the tolerances of
   :data:`CROSS_MACHINE_TOLERANCES` (benchmarks/README.md has the table of what moved by
   how much; each tolerance is about 100x the largest movement measured, and far below
   the 4 digits a report prints).

:func:`compare_metrics` applies promise 1 (``identical``) and promise 2 (``failures``)
to two metrics dictionaries, after :func:`comparable_metrics` has removed what measures
the machine rather than the model (timings, versions, paths).
"""

from __future__ import annotations

import fnmatch
import math
import os
import platform
from dataclasses import dataclass, field

from ..provenance import machine, package_versions

# Numbers that measure the machine, not the model: excluded when comparing two runs.
TIMING_KEYS = ("fit_seconds", "als_seconds", "model_build_compile_seconds", "map_seconds",
               "start_seconds", "seconds")
MACHINE_KEYS = ("versions", "machine", "figures", "numerics")


def comparable_metrics(metrics: dict) -> dict:
    """The metrics without timings, versions, machine and file paths (the data's SHA-256
    stays): what must reproduce."""
    def strip(value):
        if isinstance(value, dict):
            return {k: strip(v) for k, v in value.items()
                    if k not in TIMING_KEYS and k not in MACHINE_KEYS
                    and not (k in ("data", "train", "test") and isinstance(v, str))}
        if isinstance(value, list):
            return [strip(v) for v in value]
        return value

    return strip(metrics)


def _cpu_model() -> str | None:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            for line in handle:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or None


def _blas_kernels() -> list[dict]:
    import scipy.linalg  # noqa: F401  (loads SciPy's own BLAS, so it is listed too)

    try:
        from threadpoolctl import threadpool_info
    except ImportError:  # pragma: no cover - a core dependency
        return []
    return sorted(({"library": info.get("internal_api"), "version": info.get("version"),
                    "kernel": info.get("architecture")}
                   for info in threadpool_info() if info.get("user_api") == "blas"),
                  key=lambda info: (str(info["library"]), str(info["version"])))


def _numpy_features() -> list[str]:
    try:
        from numpy._core._multiarray_umath import __cpu_features__
    except ImportError:  # pragma: no cover - NumPy < 2
        from numpy.core._multiarray_umath import __cpu_features__
    return sorted(name for name, active in __cpu_features__.items() if active)


def environment() -> dict:
    """What metrics.json records of where a run ran: package versions, the machine and
    the numerics fingerprint."""
    return {"versions": package_versions(), "machine": machine(),
            "numerics": numerics_fingerprint()}


def numerics_fingerprint() -> dict:
    """Everything that decides the last bits of a floating-point result here: package
    versions, each BLAS library with the CPU kernel it chose, NumPy's active CPU
    features, the CPU model and count. Two runs with equal fingerprints and settings give
    bit-identical numbers."""
    return {
        "versions": package_versions(),
        "blas": _blas_kernels(),
        "numpy_cpu_features": _numpy_features(),
        "cpu_model": _cpu_model(),
        "cpu_count": os.cpu_count(),
        "machine": platform.machine(),
    }


# Cross-machine tolerances, first matching pattern wins (patterns on dotted paths such as
# "results[bpmf-gibbs].rmse"). ("rel", t): |a - b| <= t * |b|; ("abs", t): |a - b| <= t.
# Measured movements (benchmarks/README.md, "Reproducibility across machines") are at
# most ~1e-8 relative for every number that is not itself a difference of two nearly
# equal numbers; these tolerances leave about 100x headroom and stay far below the 4
# printed digits.
CROSS_MACHINE_TOLERANCES: tuple[tuple[str, str, float], ...] = (
    # differences between ALS and the PyMC MAP: tiny numbers whose size only has to stay
    # tiny (the cross-check's own pass criteria are 1e-8 relative and 1e-3 stars)
    ("crosscheck.objective_rel_diff", "abs", 1e-9),
    ("crosscheck.pred_max_abs_diff", "abs", 1e-4),
    ("crosscheck.pred_rms_diff", "abs", 1e-5),
    ("crosscheck.grad_norm_at_als", "abs", 0.05),
    # an iteration count at a convergence threshold can move by a sweep or two
    ("crosscheck.als_sweeps", "abs", 5),
    # shares of 10,000 held-out ratings inside an interval: one rating on the edge of an
    # interval can cross it (1e-4 each)
    ("*.coverage_*", "abs", 5e-4),
    # R-hat, ESS and the log predictive density of a converged posterior
    ("diagnostics*.max_rhat", "abs", 1e-6),
    ("diagnostics*.min_ess_*", "rel", 1e-5),
    ("*", "rel", 1e-6),
)


@dataclass
class Comparison:
    """Outcome of :func:`compare_metrics`."""

    identical: bool
    failures: list[str] = field(default_factory=list)
    max_rel_by_group: dict[str, float] = field(default_factory=dict)
    worst: dict[str, tuple[str, float]] = field(default_factory=dict)


def _tolerance(path: str) -> tuple[str, float]:
    for pattern, kind, value in CROSS_MACHINE_TOLERANCES:
        if fnmatch.fnmatchcase(path, pattern):
            return kind, value
    raise AssertionError("the last rule matches every path")  # pragma: no cover


def _group(path: str) -> str:
    if path.startswith("results["):
        method = path[len("results["):path.index("]")]
        if method in ("global-mean", "user-mean", "item-mean", "bias-baseline"):
            return "baselines"
        return method
    for prefix in ("diagnostics", "crosscheck"):
        if path.startswith(prefix):
            return prefix
    return "data, split, settings"


def _walk(actual, expected, path: str, out: list[tuple[str, object, object]]) -> None:
    if isinstance(expected, dict):
        if not isinstance(actual, dict) or set(actual) != set(expected):
            out.append((path, actual, expected))
            return
        for key in expected:
            _walk(actual[key], expected[key], f"{path}.{key}" if path else key, out)
    elif isinstance(expected, list):
        if not isinstance(actual, list) or len(actual) != len(expected):
            out.append((path, actual, expected))
            return
        for i, (a, e) in enumerate(zip(actual, expected)):
            label = e.get("method") if isinstance(e, dict) and "method" in e else i
            _walk(a, e, f"{path}[{label}]", out)
    else:
        out.append((path, actual, expected))


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def compare_metrics(actual: dict, expected: dict) -> Comparison:
    """Compare two runs' metrics (only what :func:`comparable_metrics` keeps).

    ``identical`` is promise 1 (every value equal, floats to the bit); ``failures`` lists
    each value outside the cross-machine tolerance of promise 2 (non-numbers must be
    equal under both); ``max_rel_by_group`` and ``worst`` say how far numbers moved."""
    leaves: list[tuple[str, object, object]] = []
    _walk(comparable_metrics(actual), comparable_metrics(expected), "", leaves)
    comparison = Comparison(identical=True)
    for path, a, e in leaves:
        if _is_number(e):
            comparison.max_rel_by_group.setdefault(_group(path), 0.0)
        if a == e or (isinstance(a, float) and isinstance(e, float)
                      and math.isnan(a) and math.isnan(e)):
            continue
        comparison.identical = False
        if not (_is_number(a) and _is_number(e)):
            comparison.failures.append(f"{path}: {a!r} != {e!r}")
            continue
        diff = abs(float(a) - float(e))
        rel = diff / abs(float(e)) if e else math.inf
        group = _group(path)
        if rel > comparison.max_rel_by_group.get(group, 0.0):
            comparison.max_rel_by_group[group] = rel
            comparison.worst[group] = (path, rel)
        kind, tol = _tolerance(path)
        allowed = tol * abs(float(e)) if kind == "rel" else tol
        if not diff <= allowed:
            comparison.failures.append(
                f"{path}: {a!r} vs {e!r} (difference {diff:.3g}, allowed {allowed:.3g} "
                f"= {kind} {tol:g})")
    return comparison

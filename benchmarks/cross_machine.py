"""How far the committed report's numbers move when the floating-point kernels change.

    python benchmarks/cross_machine.py [--variants baseline haswell ...] [--out FILE]

Reruns ``reports/movielens-default/config.toml`` (the committed report's settings) once per
variant in a fresh subprocess whose environment selects other low-level kernels, as a
different CPU of the same machine kind would:

* ``OPENBLAS_CORETYPE`` makes OpenBLAS (NumPy's and SciPy's) use another CPU's kernels
  (SkylakeX = AVX-512, Haswell = AVX2, Zen, SandyBridge = AVX), which sum dot products
  and matrix products in another order;
* ``NPY_DISABLE_CPU_FEATURES`` switches off NumPy's own AVX-512 loops (exp, log, sums,
  comparisons), as on a CPU without AVX-512.

For every number of ``comparable_metrics`` (the ones the committed-report test checks)
it records the largest relative difference from the committed metrics.json, grouped by
where the number comes from (deterministic counts and baselines, ALS, the Gibbs
posterior, convergence diagnostics, the MAP cross-check). The table in
benchmarks/README.md and the tolerances of ``bayes_pmf.reproducibility`` come from it.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bayes_pmf.workflows.reproducibility import compare_metrics  # noqa: E402

COMMITTED = ROOT / "reports" / "movielens-default"
NO_AVX512 = ("AVX512F AVX512CD AVX512_KNL AVX512_KNM AVX512_SKX AVX512_CLX AVX512_CNL "
             "AVX512_ICL AVX512_SPR AVX512FP16")
VARIANTS = {
    "baseline": {},
    "skylakex": {"OPENBLAS_CORETYPE": "SkylakeX"},
    "haswell": {"OPENBLAS_CORETYPE": "Haswell"},
    "zen": {"OPENBLAS_CORETYPE": "Zen"},
    "sandybridge": {"OPENBLAS_CORETYPE": "SandyBridge"},
    "haswell-no-avx512": {"OPENBLAS_CORETYPE": "Haswell", "NPY_DISABLE_CPU_FEATURES": NO_AVX512},
}

_CHILD = """
import json, sys
from dataclasses import replace
import matplotlib
matplotlib.use("Agg")
from bayes_pmf.workflows.config import read_config
from bayes_pmf.workflows.report import run_report_job
from bayes_pmf.workflows.runfolder import metrics_json
config = read_config(sys.argv[1])
config = replace(config, job=replace(config.job, progress=False))
metrics, _, _ = run_report_job(config)
sys.stdout.write(metrics_json(metrics))
"""


def run_variant(name: str) -> dict:
    env = dict(os.environ, **VARIANTS[name], MPLBACKEND="Agg")
    began = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", _CHILD, str(COMMITTED / "config.toml")],
                          env=env, capture_output=True, text=True, cwd=ROOT, check=False)
    if proc.returncode != 0:
        raise SystemExit(f"variant {name} failed:\n{proc.stderr[-3000:]}")
    metrics = json.loads(proc.stdout)
    return {"metrics": metrics, "seconds": time.perf_counter() - began}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument("--out",
                        default=str(ROOT / "benchmarks" / "results" / "cross_machine.json"))
    args = parser.parse_args(argv)
    committed = json.loads((COMMITTED / "metrics.json").read_text())
    rows = []
    for name in args.variants:
        run = run_variant(name)
        comparison = compare_metrics(run["metrics"], committed, "kernels")
        rows.append({"variant": name, "env": VARIANTS[name], "seconds": round(run["seconds"], 1),
                     "numerics": run["metrics"].get("numerics"),
                     "identical": comparison.identical,
                     "max_rel_by_group": comparison.max_rel_by_group,
                     "worst": comparison.worst,
                     "failures_under_kernel_tolerances": comparison.failures})
        print(f"{name:20s} identical={comparison.identical} "
              + " ".join(f"{g}={v:.1e}" for g, v in comparison.max_rel_by_group.items()),
              flush=True)
    Path(args.out).write_text(json.dumps({"committed": str(COMMITTED), "rows": rows}, indent=1))
    groups = sorted({g for r in rows for g in r["max_rel_by_group"]})
    print("\n| variant | bit-identical | " + " | ".join(groups) + " |")
    print("|---|---|" + "---|" * len(groups))
    for r in rows:
        cells = [f"{r['max_rel_by_group'].get(g, 0.0):.1e}" for g in groups]
        identical = "yes" if r["identical"] else "no"
        print(f"| {r['variant']} | {identical} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()

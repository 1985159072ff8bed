"""A run folder: everything one main-job run measured, in files a reader can open.

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

import json
import math
import time
from pathlib import Path

import numpy as np
import pandas as pd

from ..fileio import atomic_path, atomic_write
from ..result.result import save_result

SAVED_DRAWS = 200
TABLE_COLUMNS = ("method", "rmse", "mae", "coverage_50", "coverage_90", "fit_seconds")


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


def write_text_atomic(path: Path, text: str) -> None:
    atomic_write(path, text)


def write_figures(figures: dict, out_dir: Path) -> list[str]:
    """Save each figure as PNG under out_dir/figures and close it; return the file names."""
    import matplotlib.pyplot as plt

    folder = out_dir / "figures"
    folder.mkdir(parents=True, exist_ok=True)
    names = []
    for name, figure in figures.items():
        with atomic_path(folder / f"{name}.png") as tmp:
            figure.savefig(tmp, dpi=110, format="png")
        plt.close(figure)
        names.append(f"figures/{name}.png")
    return names


def write_run_folder(metrics: dict, models: dict, out_dir: str | Path,
                     figures: dict | None = None) -> Path:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if figures:
        metrics = dict(metrics, figures=write_figures(figures, out))
    write_text_atomic(out / "metrics.json", metrics_json(metrics))
    write_text_atomic(out / "results.csv",
                      results_table(metrics["results"]).to_csv(index=False))
    if metrics.get("diagnostics"):
        import pandas as pd

        write_text_atomic(out / "diagnostics.csv",
                          pd.DataFrame(metrics["diagnostics"]).to_csv(index=False))
    for name, model in models.items():
        saved = model.thinned(SAVED_DRAWS).without_predictions()
        save_result(saved, out / "models" / f"{name}.nc")
    return out

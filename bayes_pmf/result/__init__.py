"""Results: PMFResult around ArviZ InferenceData (the only ArviZ importer is ``idata``),
NetCDF files, and the held-out predictive computed once per model."""

from .predictive import (
                         held_out_predictions,
                         interval_coverage,
                         predictive_draws,
                         predictive_summary,
)
from .result import PMFResult, encode_pairs, load_result, point_result, save_result

__all__ = ["PMFResult", "encode_pairs", "held_out_predictions", "interval_coverage",
           "load_result", "point_result", "predictive_draws", "predictive_summary",
           "save_result"]

"""What a user runs end to end: the run settings (TOML), the main fit job, run folders,
figures, reproducibility reports and the PMF paper's reproduction."""

from .config import FitJobConfig, ReportConfig, read_config
from .fit_job import FitJobOutcome, run_fit_job
from .report import write_report

__all__ = ["FitJobConfig", "FitJobOutcome", "ReportConfig", "read_config", "run_fit_job",
           "write_report"]

"""Settings of a run as a TOML file, so a report can be rerun from its own folder.

    [job]                    # every field of FitJobConfig; absent keys take defaults
    n_factors = 10
    seed = 0
    methods = ["als", "gibbs"]
    ...
    [report]
    title = "PMF on the embedded MovieLens"
    crosscheck = true        # include the PyMC-MAP vs NumPy-ALS cross-check

Reading uses the standard library's ``tomllib``; writing needs only flat tables of
strings, numbers, booleans and lists of strings, so it is done here rather than by a
new dependency.
"""

from __future__ import annotations

import dataclasses
import math
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from .errors import ConfigError
from .jobs import FitJobConfig


@dataclass(frozen=True)
class ReportConfig:
    """A report: the main job's settings plus what the report adds."""

    job: FitJobConfig = field(default_factory=FitJobConfig)
    title: str = "Probabilistic Matrix Factorization: reproducibility report"
    crosscheck: bool = True

    def as_toml(self) -> str:
        job = {k: v for k, v in self.job.as_dict().items() if v is not None}
        for name in ("data", "train", "test"):
            if name in job:  # absolute, so the config reads the same from any folder
                job[name] = str(Path(job[name]).resolve())
        return ("# bayes_pmf report settings: rerun with\n"
                "#   bayes-pmf report --config config.toml --out DIR\n"
                + _table("job", job) + "\n"
                + _table("report", {"title": self.title, "crosscheck": self.crosscheck}))


def _value(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ConfigError(f"cannot write the non-finite setting {value!r} to TOML")
        return repr(value)
    if isinstance(value, str):
        escaped = value.replace("\\", "\\\\").replace('"', '\\"')
        return f'"{escaped}"'
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_value(v) for v in value) + "]"
    raise ConfigError(f"cannot write a setting of type {type(value).__name__} to TOML")


def _table(name: str, values: dict) -> str:
    return f"[{name}]\n" + "".join(f"{key} = {_value(v)}\n" for key, v in values.items())


def _job_from_table(table: dict, path: Path) -> FitJobConfig:
    known = {f.name for f in dataclasses.fields(FitJobConfig)} - {"progress"}
    unknown = sorted(set(table) - known)
    if unknown:
        raise ConfigError(f"{path}: unknown setting(s) {unknown} in [job]; "
                          f"known are {sorted(known)}")
    values = dict(table)
    if "methods" in values:
        if not isinstance(values["methods"], list):
            raise ConfigError(f"{path}: [job] methods must be a list such as [\"als\"], "
                              f"got {values['methods']!r}")
        values["methods"] = tuple(values["methods"])
    for name in ("test_fraction", "lambda_", "lambda_no_bias", "lambda_bias", "tol"):
        if isinstance(values.get(name), int) and not isinstance(values.get(name), bool):
            values[name] = float(values[name])
    for name in ("data", "train", "test"):
        # Paths in a config file are relative to the file, so a report folder can move.
        if isinstance(values.get(name), str) and not Path(values[name]).is_absolute():
            values[name] = str((path.parent / values[name]).resolve())
    try:
        return FitJobConfig(**values)
    except TypeError as exc:
        raise ConfigError(f"{path}: bad [job] settings: {exc}") from None


def read_config(path: str | Path) -> ReportConfig:
    """A :class:`ReportConfig` from a TOML file written by :meth:`ReportConfig.as_toml`
    (or by hand); unknown keys are errors, missing keys take the defaults."""
    path = Path(path)
    try:
        document = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"config file not found: {path}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path} is not valid TOML: {exc}") from None
    extra = sorted(set(document) - {"job", "report"})
    if extra:
        raise ConfigError(f"{path}: unknown table(s) {extra}; expected [job] and [report]")
    report = document.get("report", {})
    unknown = sorted(set(report) - {"title", "crosscheck"})
    if unknown:
        raise ConfigError(f"{path}: unknown setting(s) {unknown} in [report]")
    defaults = ReportConfig()
    return ReportConfig(job=_job_from_table(document.get("job", {}), path),
                        title=str(report.get("title", defaults.title)),
                        crosscheck=bool(report.get("crosscheck", defaults.crosscheck)))

"""The main job: load ratings, split, fit baselines and PMF, score, record everything.

``run_fit_job`` is what ``bayes-pmf fit`` runs; it returns the metrics dictionary written
to ``metrics.json`` and the fitted models, so notebooks can use it as well as the CLI.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

from .als import als_result, fit_als
from .baselines import fit_bias_baseline, fit_global_mean, fit_item_mean, fit_user_mean
from .data import RatingsData
from .datasets import load_movielens, load_ratings
from .errors import ConfigError
from .evaluation import score
from .priors import PMFSpec
from .provenance import machine, package_versions
from .reproducibility import numerics_fingerprint
from .split import Split, random_split

# Defaults chosen on an inner validation split of the training part of the embedded
# MovieLens (never on its test part): lambda 15 with biases, 10 without, d = 10.
DEFAULT_LAMBDA = 15.0
DEFAULT_LAMBDA_NO_BIAS = 10.0
DEFAULT_LAMBDA_BIAS = 5.0
# prior sd of constrained PMF's W: 1.0 beat 0.3 and 3.0 on MovieLens (reports/pmf-paper)
CONSTRAINED_SIGMA_W = 1.0


@dataclass(frozen=True)
class FitJobConfig:
    """Every setting of a main-job run (written into metrics.json as is)."""

    data: str | None = None  # None: the embedded MovieLens
    train: str | None = None
    test: str | None = None
    n_factors: int = 10
    seed: int = 0
    test_fraction: float = 0.1
    methods: tuple[str, ...] = ("als", "gibbs")
    lambda_: float = DEFAULT_LAMBDA
    lambda_no_bias: float = DEFAULT_LAMBDA_NO_BIAS
    lambda_bias: float = DEFAULT_LAMBDA_BIAS
    max_sweeps: int = 200
    tol: float = 1e-6
    # per chain, for the sampling methods: 4 Gibbs chains x (100 + 1,000) sweeps converge
    # on the embedded MovieLens in about a minute (benchmarks/convergence.py)
    draws: int = 1000
    tune: int = 100
    chains: int = 4
    thin: int = 1  # Gibbs keeps every thin-th sweep after burn-in
    progress: bool = field(default=True, compare=False)  # display only, not a setting

    def __post_init__(self) -> None:
        if (self.train is None) != (self.test is None):
            raise ConfigError("--train and --test go together: give both or neither")
        if self.data is not None and self.train is not None:
            raise ConfigError("give either --data or --train/--test, not both")
        if isinstance(self.n_factors, bool) or not isinstance(self.n_factors, int) \
                or self.n_factors < 1:
            raise ConfigError(f"--factors must be a positive integer, got {self.n_factors!r}")
        if not 0 < self.test_fraction < 1:
            raise ConfigError(f"--test-fraction must be in (0, 1), got {self.test_fraction!r}")
        for name in ("lambda_", "lambda_no_bias", "lambda_bias"):
            if not getattr(self, name) > 0:
                raise ConfigError(f"{name.rstrip('_')} must be > 0, got {getattr(self, name)!r}")
        if isinstance(self.thin, bool) or not isinstance(self.thin, int) or self.thin < 1:
            raise ConfigError(f"--thin must be a positive integer, got {self.thin!r}")
        unknown = set(self.methods) - set(METHODS)
        if unknown:
            raise ConfigError(f"unknown method(s) {sorted(unknown)}; choose from {sorted(METHODS)}")

    def as_dict(self) -> dict:
        settings = asdict(self)
        settings["methods"] = list(self.methods)
        settings.pop("progress")
        return settings

    @property
    def pmf_spec(self) -> PMFSpec:
        return PMFSpec.from_lambdas(self.n_factors, self.lambda_, biases=True,
                                    lambda_user_bias=self.lambda_bias,
                                    lambda_item_bias=self.lambda_bias)

    @property
    def pmf_spec_no_bias(self) -> PMFSpec:
        return PMFSpec.from_lambdas(self.n_factors, self.lambda_no_bias)


@dataclass
class FitJobOutcome:
    metrics: dict
    models: dict = field(default_factory=dict)
    split: Split | None = None


def load_split(config: FitJobConfig) -> tuple[Split, RatingsData | None]:
    """The train/test split the config asks for (and the full data when it was split)."""
    if config.train is not None:
        train, test = load_ratings(config.train), load_ratings(config.test)
        scale = train.scale if train.scale.min <= test.scale.min else test.scale
        if train.scale != test.scale:
            # One scale for both parts, so clipping and reports agree.
            train = load_ratings(config.train, scale=scale)
            test = load_ratings(config.test, scale=scale)
        return Split(train, test, "given", {"train": config.train, "test": config.test}), None
    data = load_ratings(config.data) if config.data else load_movielens()
    return random_split(data, config.test_fraction, rng=config.seed), data


def _timed(fit: Callable[[], object]) -> tuple[object, float]:
    start = time.perf_counter()
    model = fit()
    return model, time.perf_counter() - start


def _als_methods(config: FitJobConfig, split: Split) -> list[tuple[str, Callable]]:
    train = split.train

    def als(spec: PMFSpec, name: str):
        return lambda: als_result(
            fit_als(train, spec, max_sweeps=config.max_sweeps, tol=config.tol,
                    rng=config.seed, progress=config.progress), train, method=name)

    return [
        ("pmf-als", als(config.pmf_spec, "pmf-als")),
        ("pmf-als-nobias", als(config.pmf_spec_no_bias, "pmf-als-nobias")),
    ]


def _map_methods(config: FitJobConfig, split: Split) -> list[tuple[str, Callable]]:
    from .inference import fit_map  # imports PyMC: only when MAP is asked for

    train = split.train
    return [("pmf-map", lambda: fit_map(train, config.pmf_spec, start="als", rng=config.seed,
                                        progress=config.progress))]


def _gibbs_methods(config: FitJobConfig, split: Split) -> list[tuple[str, Callable]]:
    from .gibbs import sample_gibbs

    train, test = split.train, split.test
    # The held-out set is only watched (running RMSE per sample), never fitted to.
    return [("bpmf-gibbs", lambda: sample_gibbs(
        train, config.pmf_spec, draws=config.draws, tune=config.tune, chains=config.chains,
        thin=config.thin, hyper="wishart", held_out=test, rng=config.seed,
        progress=config.progress))]


def _nuts_methods(config: FitJobConfig, split: Split) -> list[tuple[str, Callable]]:
    from .inference import sample_nuts

    train = split.train
    return [("pmf-nuts", lambda: sample_nuts(
        train, config.pmf_spec, draws=config.draws, tune=config.tune,
        chains=min(config.chains, 2), rng=config.seed, progress=config.progress))]


def _advi_methods(config: FitJobConfig, split: Split) -> list[tuple[str, Callable]]:
    from .inference import fit_advi

    train = split.train
    return [("pmf-advi", lambda: fit_advi(train, config.pmf_spec, draws=config.draws,
                                          rng=config.seed, progress=config.progress))]


def _constrained_methods(config: FitJobConfig, split: Split) -> list[tuple[str, Callable]]:
    from .constrained import fit_constrained

    train = split.train
    return [("pmf-constrained", lambda: fit_constrained(
        train, config.pmf_spec, sigma_w=CONSTRAINED_SIGMA_W, rng=config.seed,
        progress=config.progress))]


METHODS: dict[str, Callable[[FitJobConfig, Split], list[tuple[str, Callable]]]] = {
    "als": _als_methods,
    "map": _map_methods,
    "gibbs": _gibbs_methods,
    "nuts": _nuts_methods,
    "advi": _advi_methods,
    "constrained": _constrained_methods,
}


def run_fit_job(config: FitJobConfig) -> FitJobOutcome:
    """Fit the baselines and each requested method on the training part; score them all
    on the held-out part with the same cold-start policy."""
    split, full = load_split(config)
    train, test = split.train, split.test
    fits: list[tuple[str, Callable]] = [
        ("global-mean", lambda: fit_global_mean(train)),
        ("user-mean", lambda: fit_user_mean(train)),
        ("item-mean", lambda: fit_item_mean(train)),
        ("bias-baseline", lambda: fit_bias_baseline(train, config.lambda_bias,
                                                    config.lambda_bias)),
    ]
    for method in config.methods:
        fits.extend(METHODS[method](config, split))
    results, models = [], {}
    for name, fit in fits:
        model, seconds = _timed(fit)
        models[name] = model
        results.append({"method": name, **score(model, train, test), "fit_seconds": seconds})
    metrics = {
        "dataset": (full or train).describe() | (
            {"test_source": test.source} if full is None else {}),
        "split": split.describe(),
        "settings": config.as_dict(),
        "seed": config.seed,
        "versions": package_versions(),
        "machine": machine(),
        "numerics": numerics_fingerprint(),
        "results": results,
    }
    if any(getattr(m, "n_samples", 1) > 1 for m in models.values()):
        from .figures import diagnostics_table

        table = diagnostics_table(models, split)
        metrics["diagnostics"] = table.to_dict(orient="records")
    return FitJobOutcome(metrics=metrics, models=models, split=split)


def default_run_dir(root: str | Path = "reports/runs") -> Path:
    return Path(root) / time.strftime("fit-%Y%m%d-%H%M%S")

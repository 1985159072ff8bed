"""Choosing λ and d for the non-adaptive model, and the posterior model itself (its
likelihood, implicit feedback, d), by k-fold cross-validation.

Only the ratings passed in (the training part) are ever split; the test part of a
hold-out never takes part, so the held-out score of the chosen setting stays honest.
Each (λ, d) is fitted by ALS on k-1 folds and scored by RMSE on the remaining fold
(ratings whose user or item is absent from those k-1 folds get the cold-start
prediction, as at test time). The choice is the smallest mean RMSE; the table also
reports the standard error over folds so a reader can see which settings are tied.

:func:`select_model` does the same for posterior models sampled by the Gibbs sampler
(#19: "choosing the model by held-out evidence, not by hand"): every variant on the same
folds with the same seed, scored by RMSE and by the log score (mean log probability of
the held-out rating's level on the rating grid, which puts Gaussian and ordinal models
on one footing, unlike their densities).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from itertools import product

import numpy as np
import pandas as pd

from ..data.split import kfold
from ..engines.als import fit_als
from ..engines.gibbs import sample_gibbs
from ..engines.parallel import sweep_progress
from ..errors import ConfigError, ConvergenceWarning
from ..model.spec import DEFAULT_LAMBDA_BIAS, PMFSpec
from .metrics import rmse, score


@dataclass(frozen=True)
class Selection:
    """The cross-validation table (one row per setting, best first) and the choice."""

    table: pd.DataFrame
    lambda_: float
    n_factors: int
    k: int
    seed: int | None

    def spec(self, **kwargs) -> PMFSpec:
        """The chosen setting as a PMFSpec (biases and bias penalty as in the search)."""
        return PMFSpec.from_lambdas(self.n_factors, self.lambda_, **kwargs)

    def as_dict(self) -> dict:
        return {"lambda": self.lambda_, "n_factors": self.n_factors, "k": self.k,
                "seed": self.seed, "table": self.table.to_dict(orient="records")}


def _check_grid(name: str, values, positive_int: bool = False) -> tuple:
    values = tuple(values)
    if not values:
        raise ConfigError(f"{name} must list at least one value", setting=name)
    for value in values:
        ok = (isinstance(value, (int, np.integer)) and not isinstance(value, bool)
              and value >= 1) if positive_int else (np.isfinite(value) and value > 0)
        if not ok:
            kind = "positive integers" if positive_int else "positive numbers"
            raise ConfigError(f"{name} must be {kind}, got {value!r}", setting=name)
    return values


def select_hyperparameters(
    train,
    *,
    lambdas=(1.0, 3.0, 10.0, 15.0, 30.0),
    dims=(5, 10, 20),
    k: int = 5,
    biases: bool = True,
    lambda_bias: float = DEFAULT_LAMBDA_BIAS,
    max_sweeps: int = 100,
    tol: float = 1e-5,
    rng: int | None = 0,
    progress: bool = True,
) -> Selection:
    """Mean and standard error of k-fold RMSE for every (λ, d) on ``train`` alone."""
    lambdas = _check_grid("lambdas", lambdas)
    dims = _check_grid("dims", dims, positive_int=True)
    folds = list(kfold(train, k, rng=rng))
    grid = list(product(lambdas, dims))
    rows = []
    with sweep_progress(len(grid) * k, "cross-validation fits", progress) as bar:
        for lam, d in grid:
            spec = PMFSpec.from_lambdas(d, lam, biases=biases, lambda_user_bias=lambda_bias,
                                        lambda_item_bias=lambda_bias)
            scores, unconverged = [], 0
            for fold in folds:
                with warnings.catch_warnings():
                    # counted in the table instead of one warning per fold
                    warnings.simplefilter("ignore", ConvergenceWarning)
                    fit = fit_als(fold.train, spec, max_sweeps=max_sweeps, tol=tol, rng=rng,
                                  progress=False)
                unconverged += not fit.attrs["settings"]["converged"]
                users, items = fold.test.id_pairs()
                predicted = fit.predict(users, items, unknown="prior")
                scores.append(rmse(fold.test.rating, predicted))
                bar.advance(f"lambda={lam:g} d={d} rmse={scores[-1]:.4f}")
            scores = np.array(scores)
            rows.append({"lambda": float(lam), "n_factors": int(d),
                         "cv_rmse": float(scores.mean()),
                         "cv_rmse_se": float(scores.std(ddof=1) / np.sqrt(k)),
                         "fold_rmse": scores.round(6).tolist(),
                         "unconverged_fits": int(unconverged)})
    table = pd.DataFrame(rows).sort_values(["cv_rmse", "n_factors", "lambda"],
                                           kind="stable").reset_index(drop=True)
    best = table.iloc[0]
    return Selection(table, float(best["lambda"]), int(best["n_factors"]), k,
                     int(rng) if isinstance(rng, (int, np.integer)) else None)


SELECTION_SCORES = {"rmse": "lower", "log_score": "higher"}


def check_model_selection(k, by: str) -> None:
    """A ConfigError naming ``k`` or ``by`` unless they are a valid fold count and score
    (callers check before reading data; the sampler checks its own settings)."""
    if not isinstance(k, (int, np.integer)) or isinstance(k, bool) or k < 2:
        raise ConfigError(f"k must be an integer >= 2 (the folds of the cross-validation), "
                          f"got {k!r}", setting="k")
    if by not in SELECTION_SCORES:
        raise ConfigError(f"by must be one of {sorted(SELECTION_SCORES)}, got {by!r}",
                          setting="by")


@dataclass(frozen=True)
class ModelSelection:
    """Cross-validation of posterior models: ``table`` (one row per variant, best first
    by ``by``) and the chosen variant's name."""

    table: pd.DataFrame
    chosen: str
    by: str
    k: int
    seed: int | None
    settings: dict

    def as_dict(self) -> dict:
        return {"chosen": self.chosen, "by": self.by, "k": self.k, "seed": self.seed,
                "settings": self.settings, "table": self.table.to_dict(orient="records")}


# select_model's Gibbs run on each fold (chains x (tune + draws) sweeps): a report's model
# selection uses these, or its job's own where those are fewer
SELECTION_SAMPLING = {"draws": 400, "tune": 200, "chains": 2}


def select_model(
    train,
    variants: dict,
    *,
    k: int = 3,
    by: str = "rmse",
    draws: int = SELECTION_SAMPLING["draws"],
    tune: int = SELECTION_SAMPLING["tune"],
    chains: int = SELECTION_SAMPLING["chains"],
    rng: int | None = 0,
    progress: bool = True,
) -> ModelSelection:
    """k-fold cross-validation of posterior models on ``train`` alone. ``variants`` maps
    a name to a :class:`PMFSpec` or to a function of a fold's training ratings returning
    one (for settings resolved from the data, such as implicit="auto"). Each variant is
    sampled on the same k-1 folds with the same seed (``chains`` x (``tune`` +
    ``draws``) Gibbs sweeps) and scored on the remaining fold by RMSE of the posterior
    mean (clipped to the scale; users or items absent from those folds get the model's
    cold-start prediction) and by the log score (NaN for ratings off a grid). The table
    gives each score's mean and standard error over folds, each fold's value and the
    sampling seconds; the choice is the best mean of ``by`` ("rmse" or "log_score")."""
    if not variants:
        raise ConfigError("variants must name at least one model", setting="variants")
    check_model_selection(k, by)
    on_grid = bool(train.scale.bounded and train.scale.step)
    if by == "log_score" and not on_grid:
        raise ConfigError("by='log_score' scores the predictive on the rating grid, and "
                          f"these ratings have none (min={train.scale.min}, max="
                          f"{train.scale.max}, step={train.scale.step}): choose by='rmse'",
                          setting="by")
    folds = list(kfold(train, k, rng=rng))
    rows = []
    with sweep_progress(len(variants) * k, "cross-validation fits", progress) as bar:
        for name, variant in variants.items():
            fold_scores = {"rmse": [], "log_score": []}
            seconds = 0.0
            for fold in folds:
                spec = variant(fold.train) if callable(variant) else variant
                result = sample_gibbs(fold.train, spec, draws=draws, tune=tune,
                                      chains=chains, rng=rng, held_out=fold.test,
                                      progress=False)
                seconds += float(result.settings["sampling_seconds"])
                scores = score(result, fold.train, fold.test)
                for key in fold_scores:  # no log score off a rating grid: NaN
                    fold_scores[key].append(float(scores.get(key, np.nan)))
                bar.advance(f"{name} rmse={fold_scores['rmse'][-1]:.4f}")
            row = {"model": name}
            for key, values in fold_scores.items():
                values = np.array(values)
                row[f"cv_{key}"] = float(values.mean())
                row[f"cv_{key}_se"] = float(values.std(ddof=1) / np.sqrt(k))
            row.update({f"fold_{key}": np.round(values, 6).tolist()
                        for key, values in fold_scores.items()})
            row["sampling_seconds"] = round(seconds, 1)
            rows.append(row)
    ascending = SELECTION_SCORES[by] == "lower"
    table = pd.DataFrame(rows).sort_values(f"cv_{by}", ascending=ascending,
                                           kind="stable").reset_index(drop=True)
    settings = {"draws": int(draws), "tune": int(tune), "chains": int(chains)}
    return ModelSelection(table, str(table.iloc[0]["model"]), by, int(k),
                          int(rng) if isinstance(rng, (int, np.integer)) else None, settings)

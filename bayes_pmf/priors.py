"""Model settings: latent dimension, which terms are present, and the prior scales.

This is the one place where the correspondence between prior standard deviations and
ridge penalties is derived:

    lambda_u = sigma^2 / sigma_u^2,      lambda_v = sigma^2 / sigma_v^2,
    lambda_user_bias = sigma^2 / sigma_user_bias^2,  lambda_item_bias = sigma^2 / sigma_item_bias^2,

so that the negative log-posterior of PMF with fixed sigmas equals E / sigma^2 plus a
constant, with the MAP objective

    E = 1/2 sum_ij I_ij (r_ij - mu - b_i - c_j - U_i.V_j)^2
        + lambda_u/2 sum_i |U_i|^2 + lambda_v/2 sum_j |V_j|^2
        + lambda_user_bias/2 sum_i b_i^2 + lambda_item_bias/2 sum_j c_j^2.

The global mean mu (when present) has a flat prior and is not penalised.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, replace
from typing import Literal

from .errors import ConfigError

Link = Literal["identity", "logistic"]


def _positive(name: str, value: float) -> None:
    if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
        raise ConfigError(f"{name} must be a positive finite number, got {value!r}")


@dataclass(frozen=True)
class PMFSpec:
    """Settings of a PMF model; frozen so a result can record exactly what was fitted.

    Parameters
    ----------
    n_factors : latent dimension d (0 gives the bias-only baseline model).
    sigma : observation noise sd, in rating units (stars).
    sigma_u, sigma_v : prior sd of each entry of the user / item factor vectors.
    global_mean : include a global offset mu (flat prior).
    biases : include per-user and per-item offsets b_i, c_j with Gaussian priors.
    sigma_user_bias, sigma_item_bias : prior sd of those offsets.
    link : "identity" (Gaussian on the rating scale) or "logistic" (the PMF paper's
        sigmoid of U_i.V_j on ratings mapped to [0, 1]).
    """

    n_factors: int = 10
    sigma: float = 0.9
    sigma_u: float = 0.3
    sigma_v: float = 0.3
    global_mean: bool = True
    biases: bool = False
    sigma_user_bias: float = 0.5
    sigma_item_bias: float = 0.5
    link: Link = "identity"

    def __post_init__(self) -> None:
        if isinstance(self.n_factors, bool) or not isinstance(self.n_factors, int) \
                or self.n_factors < 0:
            raise ConfigError(
                f"n_factors (latent dimension d) must be an integer >= 0, got {self.n_factors!r}"
            )
        for name in ("sigma", "sigma_u", "sigma_v", "sigma_user_bias", "sigma_item_bias"):
            _positive(name, getattr(self, name))
        if self.link not in ("identity", "logistic"):
            raise ConfigError(f"link must be 'identity' or 'logistic', got {self.link!r}")

    @classmethod
    def from_lambdas(
        cls,
        n_factors: int = 10,
        lambda_u: float = 10.0,
        lambda_v: float | None = None,
        *,
        sigma: float = 0.9,
        lambda_user_bias: float | None = None,
        lambda_item_bias: float | None = None,
        **kwargs,
    ) -> "PMFSpec":
        """Build from ridge penalties, the ALS way of speaking (lambda = sigma^2/sigma_prior^2)."""
        lambda_v = lambda_u if lambda_v is None else lambda_v
        lambda_user_bias = lambda_u if lambda_user_bias is None else lambda_user_bias
        lambda_item_bias = lambda_v if lambda_item_bias is None else lambda_item_bias
        for name, value in (("lambda_u", lambda_u), ("lambda_v", lambda_v),
                            ("lambda_user_bias", lambda_user_bias),
                            ("lambda_item_bias", lambda_item_bias)):
            _positive(name, value)
        _positive("sigma", sigma)
        return cls(
            n_factors=n_factors,
            sigma=sigma,
            sigma_u=sigma / math.sqrt(lambda_u),
            sigma_v=sigma / math.sqrt(lambda_v),
            sigma_user_bias=sigma / math.sqrt(lambda_user_bias),
            sigma_item_bias=sigma / math.sqrt(lambda_item_bias),
            **kwargs,
        )

    @property
    def lambda_u(self) -> float:
        return self.sigma**2 / self.sigma_u**2

    @property
    def lambda_v(self) -> float:
        return self.sigma**2 / self.sigma_v**2

    @property
    def lambda_user_bias(self) -> float:
        return self.sigma**2 / self.sigma_user_bias**2

    @property
    def lambda_item_bias(self) -> float:
        return self.sigma**2 / self.sigma_item_bias**2

    def with_(self, **changes) -> "PMFSpec":
        return replace(self, **changes)

    def as_dict(self) -> dict:
        settings = asdict(self)
        settings.update(
            lambda_u=self.lambda_u,
            lambda_v=self.lambda_v,
            lambda_user_bias=self.lambda_user_bias,
            lambda_item_bias=self.lambda_item_bias,
        )
        return settings

    @classmethod
    def from_dict(cls, settings: dict) -> "PMFSpec":
        fields = {k: settings[k] for k in cls.__dataclass_fields__ if k in settings}
        return cls(**fields)

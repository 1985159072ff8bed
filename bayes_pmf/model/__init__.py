"""The model: the spec every engine reads, the parameters and THE linear predictor, the
PyMC model (the only module declaring random variables), and synthetic data with known
truth."""

from .params import FactorParams, objective
from .spec import PMFSpec
from .synthetic import SyntheticRatings, draw_from_prior, make_synthetic

__all__ = ["FactorParams", "PMFSpec", "SyntheticRatings", "draw_from_prior", "make_synthetic",
           "objective"]

"""Ratings in: validated tables (ids <-> indices, scale, sparse views), files, the embedded
MovieLens, and seeded splits."""

from .files import (
    MOVIELENS_SOURCE,
    detect_layout,
    load_item_info,
    load_movielens,
    load_ratings,
    load_split,
    load_user_info,
)
from .ratings import INTEGER_STARS, MOVIELENS_SCALE, IngestReport, RatingScale, RatingsData
from .split import Split, kfold, per_user_split, random_split, temporal_split

__all__ = [
    "INTEGER_STARS", "MOVIELENS_SCALE", "MOVIELENS_SOURCE", "load_split", "IngestReport",
    "RatingScale", "RatingsData", "Split", "detect_layout", "kfold", "load_item_info",
    "load_user_info", "load_movielens",
    "load_ratings", "per_user_split", "random_split", "temporal_split",
]

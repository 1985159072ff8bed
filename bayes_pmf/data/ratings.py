"""Validated explicit ratings: external ids <-> contiguous indices, rating scale, sparse views.

`RatingsData` is the one container every solver reads. It is built from a pandas
DataFrame by :meth:`RatingsData.from_frame`, which refuses bad input with a
:class:`~bayes_pmf.errors.RatingsDataError` naming the column, the number of
offending rows and one example, unless the caller explicitly asks for rows to be
dropped, in which case every dropped row is counted by reason in
:class:`IngestReport` (rows read = rows used + rows rejected).

Notation (used across the package): user ``i`` in ``0..n-1``, item ``j`` in
``0..m-1``, rating ``r_ij``; the original ids are kept as ``user_ids`` /
``item_ids`` (pandas Index) and are the coords of every result.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass, field
from functools import cached_property
from typing import Literal

import numpy as np
import pandas as pd
import scipy.sparse as sp

from ..errors import RatingsDataError, plain_scalar, warn_caller

_STEP_CANDIDATES = (1.0, 0.5, 0.25, 0.2, 0.1, 0.05, 0.01)
_GRID_TOL = 1e-9
# An inferred grid of more levels than this is not checked for unused ones (a fine grid,
# 0.01 apart, is a continuous scale in practice), nor one with fewer ratings than
# _CHECKED_PER_LEVEL per level (a toy table leaves levels empty by chance).
_MAX_CHECKED_LEVELS = 100
_CHECKED_PER_LEVEL = 10


def _warn_unused_levels(scale: "RatingScale", levels: np.ndarray) -> None:
    """Warn when some levels of an inferred scale's grid hold no rating (``levels``:
    each rating's level, 0 at the scale's min)."""
    counts = np.bincount(levels, minlength=int(round(scale.width / scale.step)) + 1)
    unused = np.flatnonzero(counts == 0)
    if not len(unused):
        return
    values = scale.values()
    shown = ", ".join(f"{v:g}" for v in values[unused[:8]]) + (", ..." if len(unused) > 8
                                                                else "")
    rarest = int(np.argmin(counts[counts > 0]))
    rarest_value, rarest_count = values[counts > 0][rarest], counts[counts > 0][rarest]
    warn_caller(
        f"the rating scale inferred from the data, {scale.min:g} to {scale.max:g} in steps "
        f"of {scale.step:g}, has {len(unused)} level{'s' if len(unused) > 1 else ''} no "
        f"rating uses ({shown}); the rarest rating, {rarest_value:g}, appears "
        + (f"{rarest_count:,} times" if rarest_count > 1 else "once")
        + ". A stray rating may have stretched the scale: correct it, or give the scale, "
        "scale=(min, max, step)", setting="scale")


def whole_steps(low: float, high: float, step: float) -> bool:
    """Whether ``step`` divides ``high - low`` into whole steps (to rounding)."""
    levels = (high - low) / step
    return abs(levels - round(levels)) <= 1e-9 * max(1.0, levels)


@dataclass(frozen=True)
class RatingScale:
    """The range and granularity of ratings: ``min <= r <= max`` on a grid of ``step``.

    ``step=None`` means continuous ratings; infinite bounds mean an unbounded scale
    (synthetic data drawn from the Gaussian model).
    """

    min: float
    max: float
    step: float | None = None

    def __post_init__(self) -> None:
        if math.isnan(self.min) or math.isnan(self.max) or not self.min < self.max:
            raise RatingsDataError(
                f"rating scale needs min < max, got min={self.min}, max={self.max}"
            )
        if self.step is not None and not (self.step > 0 and math.isfinite(self.step)):
            raise RatingsDataError(f"rating scale step must be positive, got {self.step}")
        if self.step is not None and math.isfinite(self.max - self.min):
            if not whole_steps(self.min, self.max, self.step):
                raise RatingsDataError(
                    f"rating scale step {self.step:g} must divide max - min = "
                    f"{self.max - self.min:g} into whole steps, got min={self.min}, "
                    f"max={self.max}")

    @classmethod
    def of(cls, scale) -> "RatingScale":
        """``scale`` as a RatingScale: one already, or (min, max[, step])."""
        return scale if isinstance(scale, cls) else cls(*scale)

    @classmethod
    def unbounded(cls) -> "RatingScale":
        return cls(-math.inf, math.inf, None)

    @classmethod
    def infer(cls, ratings: np.ndarray) -> "RatingScale":
        """The observed min and max, and the coarsest common grid step (or None). Warns
        when levels of that grid between min and max hold no rating, in data of at least
        10 ratings per level: a stray rating (a 7 among 1-5 stars, one half star among
        whole ones) then stretched the scale."""
        ratings = np.asarray(ratings, dtype=float)
        lo, hi = float(ratings.min()), float(ratings.max())
        if lo == hi:  # constant ratings: keep a unit-wide scale around them
            return cls(lo - 0.5, hi + 0.5, None)
        step = None
        for candidate in _STEP_CANDIDATES:
            steps = (ratings - lo) / candidate
            if np.all(np.abs(steps - np.round(steps)) < 1e-6):
                step = candidate
                break
        scale = cls(lo, hi, step)
        levels = round((hi - lo) / step) + 1 if step is not None else 0
        if 0 < levels <= _MAX_CHECKED_LEVELS and len(ratings) >= _CHECKED_PER_LEVEL * levels:
            _warn_unused_levels(scale, np.round((ratings - lo) / step).astype(np.int64))
        return scale

    @property
    def bounded(self) -> bool:
        return math.isfinite(self.min) and math.isfinite(self.max)

    @property
    def width(self) -> float:
        return self.max - self.min

    def values(self) -> np.ndarray:
        """Every allowed rating (needs a bounded scale with a step)."""
        if not self.bounded or self.step is None:
            raise RatingsDataError("rating scale has no finite grid of values")
        count = int(round(self.width / self.step)) + 1
        return self.min + self.step * np.arange(count)

    def out_of_range(self, ratings: np.ndarray) -> np.ndarray:
        tol = _GRID_TOL * max(1.0, abs(self.min), abs(self.max)) if self.bounded else 0.0
        return (ratings < self.min - tol) | (ratings > self.max + tol)

    def off_grid(self, ratings: np.ndarray) -> np.ndarray:
        if self.step is None or not math.isfinite(self.min):
            return np.zeros(ratings.shape, dtype=bool)
        with np.errstate(invalid="ignore"):  # inf/NaN are reported as such, not here
            steps = (ratings - self.min) / self.step
            return np.abs(steps - np.round(steps)) > 1e-6

    def clip(self, predictions: np.ndarray) -> np.ndarray:
        return np.clip(predictions, self.min, self.max)

    def round(self, predictions: np.ndarray) -> np.ndarray:
        """Clip, then snap to the nearest allowed rating (the PMF paper's 'map back and round')."""
        clipped = self.clip(predictions)
        if self.step is None:
            return clipped
        return self.min + self.step * np.round((clipped - self.min) / self.step)

    def to_unit(self, ratings: np.ndarray) -> np.ndarray:
        """Map ratings to [0, 1] by (r - min) / (max - min) (the logistic link's scale)."""
        if not self.bounded:
            raise RatingsDataError("the logistic link needs a bounded rating scale")
        return (np.asarray(ratings, dtype=float) - self.min) / self.width

    def from_unit(self, unit: np.ndarray) -> np.ndarray:
        return self.min + self.width * np.asarray(unit, dtype=float)

    def as_dict(self) -> dict:
        return {"min": self.min, "max": self.max, "step": self.step}


# The scales of the MovieLens releases: half stars (ratings.csv, the embedded copy) and
# whole stars (100k u.data).
MOVIELENS_SCALE = RatingScale(0.5, 5.0, 0.5)
INTEGER_STARS = RatingScale(1.0, 5.0, 1.0)


@dataclass
class IngestReport:
    """What happened to every input row: ``n_read == n_used + sum(rejected.values())``."""

    n_read: int
    n_used: int
    rejected: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        total = self.n_used + sum(self.rejected.values())
        if total != self.n_read:  # an internal bookkeeping bug, never user error
            raise AssertionError(f"ingest counts do not add up: {self.n_read} != {total}")

    def as_dict(self) -> dict:
        return {"n_read": self.n_read, "n_used": self.n_used, "rejected": dict(self.rejected)}


DuplicatePolicy = Literal["error", "mean", "last"]
InvalidPolicy = Literal["error", "drop"]


def _describe_rows(frame: pd.DataFrame, mask: np.ndarray, column: str) -> str:
    """'3 rows, e.g. row 17 (value 'abc')' for the error messages."""
    positions = np.flatnonzero(mask)
    first = positions[0]
    label = plain_scalar(frame.index[first])
    value = plain_scalar(frame[column].iloc[first])
    noun = "row" if len(positions) == 1 else "rows"
    where = frame.index.name if frame.index.name == "line" else "row"  # file loaders
    return f"{len(positions)} {noun}, e.g. {where} {label!r} (value {value!r})"


def _check_id_column(frame: pd.DataFrame, column: str) -> None:
    ids = frame[column]
    missing = ids.isna().to_numpy()
    if missing.any():
        raise RatingsDataError(
            f"column {column!r} has missing ids: {_describe_rows(frame, missing, column)}"
        )
    kind = pd.api.types.infer_dtype(ids, skipna=False)
    types = ids.map(lambda v: type(v).__name__) if kind.startswith("mixed") else None
    if types is not None and types.nunique() > 1:
        first_type = types.iloc[0]
        other = (types != first_type).to_numpy()
        raise RatingsDataError(
            f"column {column!r} mixes id types ({', '.join(sorted(types.unique()))}): "
            f"first row is {first_type}, but {_describe_rows(frame, other, column)}; "
            "convert the ids to one type (e.g. all str) first"
        )
    if pd.api.types.is_float_dtype(ids.dtype):
        fractional = (ids.to_numpy() != np.round(ids.to_numpy()))
        if fractional.any():
            raise RatingsDataError(
                f"column {column!r} holds non-integer numeric ids: "
                f"{_describe_rows(frame, fractional, column)}"
            )
    if kind not in ("integer", "string", "floating", "empty"):
        # tuples, bytes, dates, ...: ids are saved with every result, as text or integers
        odd = ids.map(lambda v: not isinstance(v, (str, int, float, np.integer,
                                                   np.floating))).to_numpy()
        if not odd.any():
            odd = np.ones(len(ids), dtype=bool)
        raise RatingsDataError(
            f"column {column!r} holds ids of type {type(ids[odd].iloc[0]).__name__}: "
            f"{_describe_rows(frame, odd, column)}; expected strings or integers")
    if ids.dtype == object and kind == "integer":
        too_large = ids.map(lambda v: not -2**63 <= int(v) < 2**63).to_numpy()
        if too_large.any():
            raise RatingsDataError(
                f"column {column!r} holds integer ids beyond 64 bits: "
                f"{_describe_rows(frame, too_large, column)}; pass such ids as strings")


def _numeric_ratings(frame: pd.DataFrame, column: str, numbers: pd.Series | None = None
                     ) -> tuple[np.ndarray, np.ndarray]:
    """The ratings as float, and a mask of entries that are not numbers at all
    (``numbers``: the column's text already parsed, see :func:`valid_rows`)."""
    values = frame[column]
    if pd.api.types.is_bool_dtype(values.dtype):
        raise RatingsDataError(f"column {column!r} is boolean; expected numeric ratings")
    if pd.api.types.is_complex_dtype(values.dtype) or (
            values.dtype == object and values.map(lambda v: isinstance(v, complex)).any()):
        raise RatingsDataError(f"column {column!r} holds complex numbers; expected real "
                               "ratings")
    if pd.api.types.is_numeric_dtype(values.dtype):
        return values.to_numpy(dtype=float, na_value=np.nan), np.zeros(len(values), bool)
    converted = pd.to_numeric(values, errors="coerce") if numbers is None else numbers
    # text a reader would call a missing value ("nan", "NA") is counted as NaN, not as
    # a non-number
    missing_words = values.astype(str).str.strip().str.lower().isin(["nan", "na", "n/a"])
    not_numeric = (converted.isna() & values.notna() & ~missing_words).to_numpy()
    return converted.to_numpy(dtype=float, na_value=np.nan), not_numeric


def _reject(
    frame: pd.DataFrame,
    keep: np.ndarray,
    bad: np.ndarray,
    column: str,
    problem: str,
    expected: str,
    policy: InvalidPolicy,
    rejected: dict[str, int],
) -> None:
    bad = bad & keep
    if not bad.any():
        return
    if policy == "error":
        raise RatingsDataError(
            f"column {column!r} has {problem}: {_describe_rows(frame, bad, column)}; "
            f"expected {expected} (pass invalid='drop' to drop and count such rows)",
            setting="invalid")
    rejected[problem] = rejected.get(problem, 0) + int(bad.sum())
    keep &= ~bad


def check_policies(duplicates: str, invalid: str) -> None:
    """Refuse a ``duplicates=`` or ``invalid=`` policy that is not one of the known ones,
    before any row is read."""
    if duplicates not in ("error", "mean", "last"):
        raise RatingsDataError(
            f"duplicates must be 'error', 'mean' or 'last', got {duplicates!r}")
    if invalid not in ("error", "drop"):
        raise RatingsDataError(f"invalid must be 'error' or 'drop', got {invalid!r}")


def valid_rows(frame: pd.DataFrame, user_col, item_col, rating_col, timestamp_col,
               scale: RatingScale | tuple | None, invalid: InvalidPolicy, *,
               allow_empty: bool = False, numbers: pd.Series | None = None
               ) -> tuple[pd.DataFrame, RatingScale | None, dict[str, int]]:
    """A ratings table's rows checked as :meth:`RatingsData.from_frame` checks them
    (ids present and of one type; ratings numbers, finite and on the declared ``scale``):
    the rows kept as a table (user, item, rating[, timestamp]; the frame's row labels), the
    scale (a RatingScale, or None to infer) and the count of rows rejected per reason.
    Raises :class:`RatingsDataError` naming a bad row, unless ``invalid="drop"`` (and
    when no row is left, unless ``allow_empty``: one partition of several may be all
    bad). ``numbers``: the rating column already parsed (``pd.to_numeric(...,
    errors="coerce")``, aligned with the frame), when the caller has it."""
    n_read = len(frame)
    categorical = [c for c in (user_col, item_col)
                   if isinstance(frame[c].dtype, pd.CategoricalDtype)]
    if categorical:  # a pandas category column: its values, checked as any other column's
        frame = frame.copy(deep=False)
        for column in categorical:
            frame[column] = frame[column].astype(object)
    _check_id_column(frame, user_col)
    _check_id_column(frame, item_col)

    ratings, not_numeric = _numeric_ratings(frame, rating_col, numbers)
    rejected: dict[str, int] = {}
    keep = np.ones(n_read, dtype=bool)
    comma = not_numeric & frame[rating_col].astype(str).str.fullmatch(r"-?\d+,\d+").to_numpy(
        dtype=bool) if not_numeric.any() else not_numeric
    _reject(frame, keep, not_numeric, rating_col, "non-numeric ratings",
            "numbers" + (" with a decimal point (4.5, not 4,5)" if comma.any() else ""),
            invalid, rejected)
    _reject(frame, keep, np.isnan(ratings) & ~not_numeric, rating_col, "missing (NaN) ratings",
            "a finite rating in every row", invalid, rejected)
    _reject(frame, keep, np.isinf(ratings), rating_col, "infinite ratings",
            "finite ratings", invalid, rejected)
    if scale is not None:
        scale = RatingScale.of(scale)
        span = f"ratings in [{scale.min}, {scale.max}]"
        _reject(frame, keep, scale.out_of_range(ratings), rating_col,
                "ratings outside the declared scale", span, invalid, rejected)
        _reject(frame, keep, scale.off_grid(ratings) & ~scale.out_of_range(ratings),
                rating_col, "ratings off the scale's grid",
                f"multiples of {scale.step} from {scale.min}", invalid, rejected)
    if not keep.any() and not allow_empty:
        raise RatingsDataError(
            f"no valid ratings left: all {n_read} rows were rejected ({rejected})"
        )

    table = pd.DataFrame(
        {
            "user": _id_values(frame[user_col])[keep],
            "item": _id_values(frame[item_col])[keep],
            "rating": ratings[keep],
        },
        index=frame.index[keep],
    )
    if timestamp_col:
        table["timestamp"] = frame[timestamp_col].to_numpy()[keep]
    return table, scale, rejected


def _id_values(ids: pd.Series) -> np.ndarray:
    """A checked id column's values; Python ints held as objects (a column built from a
    list of mixed objects, a category column) become int64, as ids read from a file
    are, so that ``recommend(result, 7)`` finds user 7 either way."""
    values = ids.to_numpy()
    if values.dtype == object and pd.api.types.infer_dtype(ids, skipna=False) == "integer":
        return values.astype(np.int64)  # within 64 bits: _check_id_column
    return values


def factorize_ids(ids: pd.Series) -> tuple[np.ndarray, pd.Index]:
    """Codes 0..n-1 of ``ids`` and the n distinct ids, sorted where they can be."""
    try:
        codes, uniques = pd.factorize(ids, sort=True)
    except TypeError:  # unorderable ids: keep order of first appearance
        codes, uniques = pd.factorize(ids, sort=False)
    return codes.astype(np.int64), pd.Index(uniques)


class RatingsData:
    """Explicit ratings ``r_ij`` of users ``i`` for items ``j``, validated and indexed.

    Build with :meth:`from_frame` (or a loader in :mod:`bayes_pmf.datasets`). The
    arrays ``user_idx``, ``item_idx`` and ``rating`` have one entry per rating;
    ``user_ids[user_idx]`` gives back the original ids. Instances are treated as
    immutable: every method returns new objects.
    """

    def __init__(
        self,
        user_idx: np.ndarray,
        item_idx: np.ndarray,
        rating: np.ndarray,
        user_ids: pd.Index,
        item_ids: pd.Index,
        scale: RatingScale,
        *,
        timestamp: np.ndarray | None = None,
        item_info: pd.DataFrame | None = None,
        ingest: IngestReport | None = None,
        source: str = "in-memory",
        user_info: pd.DataFrame | None = None,
    ) -> None:
        self.user_idx = np.asarray(user_idx, dtype=np.int64)
        self.item_idx = np.asarray(item_idx, dtype=np.int64)
        self.rating = np.asarray(rating, dtype=np.float64)
        self.user_ids = pd.Index(user_ids)
        self.item_ids = pd.Index(item_ids)
        self.scale = scale
        self.timestamp = None if timestamp is None else np.asarray(timestamp)
        self.item_info = item_info
        self.user_info = user_info
        self.source = source
        n = len(self.rating)
        if n == 0:
            raise RatingsDataError("ratings table is empty: no ratings to fit or evaluate")
        if not (len(self.user_idx) == len(self.item_idx) == n):
            raise RatingsDataError("user_idx, item_idx and rating must have the same length")
        if self.timestamp is not None and len(self.timestamp) != n:
            raise RatingsDataError("timestamp must have one entry per rating")
        self.ingest = ingest if ingest is not None else IngestReport(n, n)
        for array in (self.user_idx, self.item_idx, self.rating):
            array.flags.writeable = False

    # -- construction ---------------------------------------------------------------

    @classmethod
    def from_frame(
        cls,
        frame: pd.DataFrame,
        *,
        user_col: str = "user",
        item_col: str = "item",
        rating_col: str = "rating",
        timestamp_col: str | None = None,
        scale: RatingScale | tuple | None = None,
        duplicates: DuplicatePolicy = "error",
        invalid: InvalidPolicy = "error",
        item_info: pd.DataFrame | None = None,
        source: str = "DataFrame",
        user_info: pd.DataFrame | None = None,
    ) -> "RatingsData":
        """Validate a long-format ratings table (one row per (user, item, rating)).

        ``scale`` is a :class:`RatingScale` or ``(min, max[, step])``; when omitted it is
        inferred from the data. ``duplicates`` decides what to do with repeated
        (user, item) pairs: ``"error"`` (default), ``"mean"`` (average them) or
        ``"last"`` (keep the last row). ``invalid="drop"`` drops rows with NaN/inf,
        non-numeric or off-scale ratings instead of raising, and counts them by reason.
        The caller's frame is never modified.
        """
        check_policies(duplicates, invalid)
        if not isinstance(frame, pd.DataFrame):
            raise RatingsDataError(
                f"expected a pandas DataFrame of ratings, got {type(frame).__name__}"
            )
        wanted = [user_col, item_col, rating_col] + ([timestamp_col] if timestamp_col else [])
        if len(set(wanted)) < len(wanted):
            raise RatingsDataError(
                f"user_col={user_col!r}, item_col={item_col!r}, rating_col={rating_col!r}"
                + (f", timestamp_col={timestamp_col!r}" if timestamp_col else "")
                + ": each role needs its own column")
        repeated = sorted({str(c) for c in frame.columns[frame.columns.duplicated()]})
        if repeated:
            raise RatingsDataError(f"ratings table has duplicate column name(s) {repeated}; "
                                   "name every column differently")
        missing = [c for c in wanted if c not in frame.columns]
        if missing:
            raise RatingsDataError(
                f"ratings table lacks column(s) {missing}; it has {list(frame.columns)}. "
                "Name the columns with user_col=, item_col=, rating_col="
            )
        if len(frame) == 0:
            raise RatingsDataError("ratings table is empty: 0 rows")
        n_read = len(frame)
        table, scale, rejected = valid_rows(frame, user_col, item_col, rating_col,
                                            timestamp_col, scale, invalid)
        if scale is None:  # the instrument's scale: of the ratings as given, before merging
            scale = RatingScale.infer(table["rating"].to_numpy())
        table = resolve_duplicates(table, duplicates, rejected, user_col, item_col, scale)
        user_idx, user_ids = factorize_ids(table["user"])
        item_idx, item_ids = factorize_ids(table["item"])
        user_ids.name, item_ids.name = "user", "item"
        if item_info is not None:
            item_info = item_info[item_info.index.isin(item_ids)]
        if user_info is not None:
            user_info = user_info[user_info.index.isin(user_ids)]
        ingest = IngestReport(n_read, len(table), rejected)
        return cls(
            user_idx, item_idx, table["rating"].to_numpy(), user_ids, item_ids, scale,
            timestamp=table["timestamp"].to_numpy() if timestamp_col else None,
            item_info=item_info, ingest=ingest, source=source, user_info=user_info,
        )

    @classmethod
    def from_arrays(cls, users, items, ratings, **kwargs) -> "RatingsData":
        """Same as :meth:`from_frame` for three parallel sequences."""
        lengths = {name: len(values) if hasattr(values, "__len__") else None
                   for name, values in (("users", users), ("items", items),
                                        ("ratings", ratings))}
        if None in lengths.values() or len(set(lengths.values())) > 1:
            raise RatingsDataError(f"users, items and ratings must be sequences of one "
                                   f"length, got lengths {lengths}")
        frame = pd.DataFrame({"user": list(users), "item": list(items), "rating": ratings})
        return cls.from_frame(frame, **kwargs)

    # -- sizes and views ------------------------------------------------------------

    @property
    def n_users(self) -> int:
        return len(self.user_ids)

    @property
    def n_items(self) -> int:
        return len(self.item_ids)

    @property
    def n_ratings(self) -> int:
        return len(self.rating)

    def __len__(self) -> int:
        return self.n_ratings

    def __repr__(self) -> str:
        return (
            f"RatingsData({self.n_ratings:,} ratings, {self.n_users:,} users, "
            f"{self.n_items:,} items, scale {self.scale.min}..{self.scale.max}, "
            f"source={self.source!r})"
        )

    @cached_property
    def user_counts(self) -> np.ndarray:
        """Number of ratings of each user (aligned with ``user_ids``)."""
        return np.bincount(self.user_idx, minlength=self.n_users)

    @cached_property
    def item_counts(self) -> np.ndarray:
        return np.bincount(self.item_idx, minlength=self.n_items)

    @cached_property
    def by_user(self) -> sp.csr_matrix:
        """Ratings as a CSR matrix, one row per user (built once, never densified)."""
        return sp.csr_matrix(
            (self.rating, (self.user_idx, self.item_idx)), shape=(self.n_users, self.n_items)
        )

    @cached_property
    def by_item(self) -> sp.csr_matrix:
        """Ratings as a CSR matrix, one row per item (the transpose of ``by_user``)."""
        return self.by_user.T.tocsr()

    @cached_property
    def mean_rating(self) -> float:
        return float(self.rating.mean())

    def to_frame(self) -> pd.DataFrame:
        """Long table with the original ids: columns user, item, rating (and timestamp)."""
        frame = pd.DataFrame(
            {
                "user": self.user_ids[self.user_idx],
                "item": self.item_ids[self.item_idx],
                "rating": self.rating,
            }
        )
        if self.timestamp is not None:
            frame["timestamp"] = self.timestamp
        return frame

    def id_pairs(self) -> tuple[np.ndarray, np.ndarray]:
        """Original (user ids, item ids) of every rating, in order."""
        return (np.asarray(self.user_ids[self.user_idx]), np.asarray(self.item_ids[self.item_idx]))

    def take(self, rows: np.ndarray) -> "RatingsData":
        """A subset of ratings (boolean mask or positions), with vocabularies compacted
        to the users and items present in it; ids stay the original ones."""
        rows = np.asarray(rows)
        if rows.dtype == bool:
            rows = np.flatnonzero(rows)
        if len(rows) == 0:
            raise RatingsDataError("the requested subset of ratings is empty")
        users, user_idx = np.unique(self.user_idx[rows], return_inverse=True)
        items, item_idx = np.unique(self.item_idx[rows], return_inverse=True)
        item_ids = self.item_ids[items]
        info = user_info = None
        if self.item_info is not None:
            info = self.item_info[self.item_info.index.isin(item_ids)]
        if self.user_info is not None:
            user_info = self.user_info[self.user_info.index.isin(self.user_ids[users])]
        return RatingsData(
            user_idx, item_idx, self.rating[rows], self.user_ids[users], item_ids, self.scale,
            timestamp=None if self.timestamp is None else self.timestamp[rows],
            item_info=info, source=self.source, user_info=user_info,
        )

    def encode_users(self, ids) -> np.ndarray:
        """Indices of the given user ids; -1 where the id is unknown."""
        return self.user_ids.get_indexer(pd.Index(ids))

    def encode_items(self, ids) -> np.ndarray:
        return self.item_ids.get_indexer(pd.Index(ids))

    @cached_property
    def fingerprint(self) -> str:
        """SHA-256 of the (user id, item id, rating) triples: the data hash in reports."""
        frame = self.to_frame()[["user", "item", "rating"]].astype(
            {"user": str, "item": str}
        )
        hashed = pd.util.hash_pandas_object(frame, index=False).to_numpy()
        digest = hashlib.sha256(hashed.tobytes())
        digest.update(repr(self.scale.as_dict()).encode())
        return digest.hexdigest()

    def describe(self) -> dict:
        """Counts and provenance, as written into metrics.json."""
        return {
            "source": self.source,
            "n_ratings": self.n_ratings,
            "n_users": self.n_users,
            "n_items": self.n_items,
            "density": self.n_ratings / (self.n_users * self.n_items),
            "mean_rating": self.mean_rating,
            "scale": self.scale.as_dict(),
            "sha256": self.fingerprint,
            "ingest": self.ingest.as_dict(),
        }


def resolve_duplicates(
    table: pd.DataFrame,
    policy: DuplicatePolicy,
    rejected: dict[str, int],
    user_col: str,
    item_col: str,
    scale: RatingScale | None = None,
    ids: tuple[pd.Index, pd.Index] | None = None,
) -> pd.DataFrame:
    """The table with each repeated (user, item) pair resolved by ``policy`` ("error":
    raise, naming the rows; "last"; "mean"), the merged rows counted in ``rejected``.
    A mean that falls between two levels of ``scale``'s grid (3 and 4 stars: 3.5) is
    rounded to the nearer level, a tie upwards, and said: a merged pair is not a new
    rating level (which would change the scale's grid, and the ordinal model's, for
    every rating). ``ids``: the user and item ids, when the table holds their codes."""
    repeated = table.duplicated(["user", "item"], keep=False).to_numpy()
    if not repeated.any():
        return table
    n_pairs = int(table[repeated].groupby(["user", "item"], sort=False).ngroups)
    if policy == "error":
        first = np.flatnonzero(repeated)[0]
        user = plain_scalar(table["user"].iloc[first])
        item = plain_scalar(table["item"].iloc[first])
        same_pair = (table["user"] == user).to_numpy() & (table["item"] == item).to_numpy()
        rows = [plain_scalar(r) for r in table.index[repeated & same_pair]]
        where = "lines" if table.index.name == "line" else "rows"  # file loaders: lines
        raise RatingsDataError(
            f"duplicate ({user_col!r}, {item_col!r}) pairs: {int(repeated.sum())} rows share "
            f"{n_pairs} pair{'s' if n_pairs > 1 else ''}, e.g. user {user!r} rated item "
            f"{item!r} in {where} {rows}; "
            "expected one rating per pair (pass duplicates='mean' or duplicates='last' to "
            "merge them)", setting="duplicates")
    n_before = len(table)
    if policy == "last":
        merged = table[~table.duplicated(["user", "item"], keep="last").to_numpy()]
    else:
        aggregations = {"rating": "mean"}
        if "timestamp" in table:
            aggregations["timestamp"] = "max"
        merged = table.groupby(["user", "item"], sort=False, as_index=False).agg(aggregations)
        if scale is not None and scale.step is not None:
            _round_merged_means(merged, scale, ids)
    rejected[f"duplicate pairs merged ({policy})"] = n_before - len(merged)
    return merged


def _round_merged_means(merged: pd.DataFrame, scale: RatingScale,
                        ids: tuple[pd.Index, pd.Index] | None) -> None:
    ratings = merged["rating"].to_numpy()
    steps = (ratings - scale.min) / scale.step
    # a tie (half a step) goes up; 1e-9 steps absorb the mean's rounding error
    rounded = scale.min + np.floor(steps + 0.5 + 1e-9) * scale.step
    moved = ~np.isclose(rounded, ratings, rtol=0, atol=1e-9 * scale.step)
    if moved.any():
        first = int(np.flatnonzero(moved)[0])
        user, item = merged["user"].iloc[first], merged["item"].iloc[first]
        if ids is not None:
            user, item = ids[0][user], ids[1][item]
        warn_caller(
            f"{int(moved.sum()):,} merged mean rating{'s' if moved.sum() > 1 else ''} fell "
            f"between levels of the scale's grid (steps of {scale.step:g}) and "
            f"{'were' if moved.sum() > 1 else 'was'} rounded to the nearer level, a tie "
            f"upwards (e.g. user {plain_scalar(user)!r}, item {plain_scalar(item)!r}: "
            f"{ratings[first]:g} -> "
            f"{rounded[first]:g}); pass duplicates='last' to keep the latest rating instead",
            setting="duplicates")
        merged["rating"] = np.where(moved, rounded, ratings)

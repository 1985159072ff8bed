"""The ``recommend`` and ``similar`` commands: read a run folder's saved model and print
tables (or JSON records) with the original ids. No modelling logic lives here."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pandas as pd

from ..errors import ConfigError, plain_scalar
from ..result.result import PMFResult, load_result

DEFAULT_MODELS = ("bpmf-gibbs-ordinal", "bpmf-gibbs", "pmf-als", "pmf-map-ordinal", "pmf-map")


def add_run_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--run", required=True, metavar="DIR", help="run folder of 'bayes-pmf fit'")
    parser.add_argument("--model", help="model name in DIR/models "
                                        f"(default: the first of {', '.join(DEFAULT_MODELS)})")
    parser.add_argument("--n", type=int, default=10, help="number of rows (default 10)")
    parser.add_argument("--json", action="store_true",
                        help="print a JSON list of records only")


def load_run_model(run: str, model: str | None) -> tuple[PMFResult, Path]:
    folder = Path(run)
    if folder.is_file():
        inside = " (the run folder is " + str(folder.parent) + ")" if (
            folder.parent / "models").is_dir() else ""
        raise ConfigError(f"--run {run} is a file; expected the folder of a run of "
                          f"'bayes-pmf fit'{inside}")
    if not folder.is_dir():
        raise ConfigError(f"--run {run}: no such folder; expected the folder of a run of "
                          f"'bayes-pmf fit --out {run}'")
    models = folder / "models"
    names = [model] if model else list(DEFAULT_MODELS)
    path = next((models / f"{n}.nc" for n in names if (models / f"{n}.nc").is_file()), None)
    if path is None:
        held = sorted(p.stem for p in models.glob("*.nc")) if models.is_dir() else []
        raise ConfigError(
            f"no model {' / '.join(names)} in {models}; "
            + (f"it holds {', '.join(held)}: name one with --model" if held else
               f"run 'bayes-pmf fit --out {run}' first"))
    return load_result(path), path


def typed_id(value: str, ids: pd.Index, flag: str):
    """A command-line id as the model stores it: the text itself for text ids; for
    integer ids the integer it writes ("7", never "007" or "7.0", which a data file
    would have kept as text)."""
    import re

    if ids.dtype.kind in "iuf":
        if not re.fullmatch(r"-?(?:0|[1-9][0-9]*)", value.strip()):
            raise ConfigError(f"{flag} {value!r}: this model's ids are integers (e.g. "
                              f"{plain_scalar(ids[0])!r}); write the id as one")
        return int(value)
    return value


def _read_item_csv(path: str, what: str, columns: tuple[str, ...]) -> pd.DataFrame:
    import csv

    try:
        frame = pd.read_csv(path, sep=None, engine="python", dtype=str,
                            encoding="utf-8-sig")
    except FileNotFoundError:
        raise ConfigError(f"{what} file not found: {path}") from None
    except (pd.errors.EmptyDataError, pd.errors.ParserError, csv.Error,
            UnicodeDecodeError) as exc:
        # csv.Error: the delimiter sniffer found nothing to go by (an empty file)
        raise ConfigError(f"cannot read {path} as a CSV of {','.join(columns)} rows: "
                          f"{exc}") from None
    except OSError as exc:  # a directory, a file this user may not read
        raise ConfigError(f"cannot read the {what} file {path}: {exc.strerror or exc}"
                          ) from None
    return frame


def read_rated_since(path: str, item_ids: pd.Index) -> list:
    """The items of a CSV with an ``item`` column (other columns ignored)."""
    frame = _read_item_csv(path, "rated-since", ("item",))
    if "item" not in frame.columns or frame.empty:
        raise ConfigError(f"{path}: expected a header with a column 'item' and at least one "
                          f"row; got columns {list(frame.columns)} and {len(frame)} rows")
    return [typed_id(str(value), item_ids, f"{path}: item") for value in frame["item"]]


def read_new_user_ratings(path: str, item_ids: pd.Index) -> tuple[list, list]:
    """A new user's ratings from a CSV with columns ``item`` and ``rating``."""
    frame = _read_item_csv(path, "new-user ratings", ("item", "rating"))
    missing = [c for c in ("item", "rating") if c not in frame.columns]
    if missing or frame.empty:
        raise ConfigError(f"{path}: expected a header with columns 'item' and 'rating' and at "
                          f"least one row; got columns {list(frame.columns)} and "
                          f"{len(frame)} rows")
    items = [typed_id(str(value), item_ids, f"{path}: item") for value in frame["item"]]
    ratings = pd.to_numeric(frame["rating"], errors="coerce")
    if ratings.isna().any():
        row = int(ratings.isna().to_numpy().argmax())
        raise ConfigError(f"{path}: column 'rating' must be numeric; line {row + 2} holds "
                          f"{frame['rating'].iloc[row]!r}")
    return items, ratings.tolist()


def print_table(table: pd.DataFrame, as_json: bool, header: str) -> None:
    if as_json:
        print(json.dumps(json.loads(table.to_json(orient="records")), indent=2))
        return
    print(header)
    print(table.to_string(index=False, float_format=lambda v: f"{v:.3f}"))


def run_recommend(args: argparse.Namespace) -> int:
    from ..analysis.recommend import recommend_many, recommend_new_user, recommend_with_feedback

    if args.rated_since and (args.new_user or len(args.user) != 1):
        raise ConfigError("--rated-since goes with one --user, the one who rated them")
    user_info = None
    if getattr(args, "user_info", None):
        if not args.new_user:
            raise ConfigError("--user-info describes the --new-user", setting="user_info")
        pairs = [value.partition("=") for value in args.user_info]
        bad = [f"{a}{b}{c}" for a, b, c in pairs if not (a.strip() and b)]
        if bad:
            raise ConfigError(f"--user-info takes COLUMN=VALUE, got {bad[0]!r}",
                              setting="user_info")
        user_info = {a.strip(): c.strip() for a, _, c in pairs}
    result, path = load_run_model(args.run, args.model)
    options = dict(n=args.n, score=args.score, threshold=args.threshold, rng=args.seed)
    if args.new_user:
        items, ratings = read_new_user_ratings(args.new_user, result.item_ids)
        table = recommend_new_user(result, items, ratings, user_info=user_info, **options)
        header = (f"model: {path.name}; a new user folded in from {len(items)} ratings "
                  f"in {args.new_user}; score: {args.score}")
        print_table(table.drop(columns=["user"]), args.json, header)
        return 0
    users = [typed_id(user, result.user_ids, "--user") for user in args.user]
    if args.rated_since:
        items = read_rated_since(args.rated_since, result.item_ids)
        table = recommend_with_feedback(result, users[0], items, **options)
        header = (f"model: {path.name}; user {users[0]} with {len(items)} items rated since "
                  f"the fit ({args.rated_since}) folded in; score: {args.score}")
        print_table(table if args.json else table.drop(columns=["user"]), args.json, header)
        return 0
    table = recommend_many(result, users, **options)
    cold = table.loc[table["cold_user"], "user"].unique()
    # ids as the data file wrote them, never a NumPy repr such as np.int64(99999)
    unknown = ", ".join(str(user) for user in cold)
    note = f" (unknown users {unknown}: prior-mean recommendations)" if len(cold) else ""
    header = f"model: {path.name}; score: {args.score}{note}"
    shown = table.drop(columns=["cold_user"] if len(users) > 1 else ["user", "cold_user"])
    print_table(table if args.json else shown, args.json, header)
    return 0


def run_similar(args: argparse.Namespace) -> int:
    from ..analysis.recommend import similar_items, similar_users

    result, path = load_run_model(args.run, args.model)
    if args.item is not None:
        item = typed_id(args.item, result.item_ids, "--item")
        table = similar_items(result, item, n=args.n)
        header = f"model: {path.name}; items most similar to {item!r} (cosine of latent vectors)"
    else:
        user = typed_id(args.user, result.user_ids, "--user")
        table = similar_users(result, user, n=args.n)
        header = f"model: {path.name}; users most similar to {user!r} (cosine of latent vectors)"
    print_table(table, args.json, header)
    return 0

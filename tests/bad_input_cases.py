"""Every bad input the package must reject, with the error type and the words the
message must contain (the problem, the column or argument, one offending example).

One table drives the tests (tests/test_bad_input.py) and the README's "Bad input"
section (``python tests/bad_input_cases.py`` prints it), so the two cannot drift apart.
"""

from __future__ import annotations

import gzip
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd

import bayes_pmf as bp

FIXTURES = Path(__file__).parent / "fixtures"


def frame(**overrides) -> pd.DataFrame:
    base = {"user": ["a", "a", "b", "b", "c"], "item": [1, 2, 1, 3, 2],
            "rating": [4.0, 3.0, 5.0, 2.0, 1.0]}
    base.update(overrides)
    return pd.DataFrame(base)


def _job_config(**settings):
    from bayes_pmf.workflows.config import FitJobConfig

    return FitJobConfig(**settings)


def _write(tmp: Path, name: str, text: str) -> Path:
    path = tmp / name
    path.write_text(text)
    return path


def _bytes(tmp: Path, name: str, content: bytes) -> Path:
    path = tmp / name
    path.write_bytes(content)
    return path


def _parts(tmp: Path, files: dict[str, str]) -> Path:
    folder = tmp / f"parts{len(list(tmp.glob('parts*')))}"  # one per case, in order
    folder.mkdir()
    for name, text in files.items():
        (folder / name).write_text(text)
    return folder


def _text(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def _job_main(argv: list[str]):
    """The fit job as the CLI configures it (the CLI prints its errors; this raises)."""
    from bayes_pmf.cli.main import _fit_job_config, build_parser
    from bayes_pmf.workflows.fit_job import run_fit_job

    return run_fit_job(_fit_job_config(build_parser().parse_args(argv)))


def _select_main(argv: list[str]):
    """The select command's flags as the CLI checks them, before any data is read."""
    from bayes_pmf.cli.main import _select_settings, build_parser

    return _select_settings(build_parser().parse_args(argv))


def _diagonal(tmp: Path, n: int) -> Path:
    """Ratings of n users on n items, user k on item k: n users and n items."""
    lines = "".join(f"{k},{k},{1 + k % 5}\n" for k in range(n))
    return _write(tmp, "diagonal.csv", "user,item,rating\n" + lines)


def _user_featured() -> bp.PMFResult:
    """A short Gibbs fit with a user feature ("job", values a-d)."""
    spec = bp.PMFSpec(n_factors=1, user_features="job", mu_prior=(3.0, 0.5))
    data = bp.draw_from_prior(spec, n_users=20, n_items=8, n_ratings=80, rng=0).data
    return bp.sample_gibbs(data, spec, draws=5, tune=5, chains=1, rng=0, progress=False)


def _fitted() -> bp.PMFResult:
    data = bp.RatingsData.from_frame(frame(), scale=(1, 5, 1))
    return bp.als_result(bp.fit_als(data, bp.PMFSpec(n_factors=1), progress=False), data)


def _folder(path: Path) -> Path:
    path.mkdir(exist_ok=True)
    return path


def _memory_hungry(tmp: Path):
    from unittest import mock

    from bayes_pmf.workflows.config import FitJobConfig, check_memory

    config = FitJobConfig(n_factors=100_000)
    split = bp.random_split(bp.RatingsData.from_frame(frame()), 0.4, rng=0)
    # the same 8 GB machine wherever the table is made, so the README stays current
    with mock.patch("bayes_pmf.workflows.config.available_memory", return_value=8 * 2**30):
        return check_memory(config, split)


def _run_folder(tmp: Path, state: str):
    from bayes_pmf.workflows.runfolder import RunFolder

    if state == "proc":  # a folder root may "write" (os.access) that takes no files
        return RunFolder(Path("/proc") / "bayes-pmf-run")
    home = tmp / state.replace(" ", "-")
    home.mkdir()
    out = home / "run"
    if state == "file":
        out.write_text("not a folder")
    elif state == "earlier run":
        out.mkdir()
        (out / "metrics.json").write_text("{}")
    else:  # a lock held by a live process (this one)
        (home / ".run.lock").write_text("1")  # process 1 is always alive
    return RunFolder(out)


@dataclass(frozen=True)
class Case:
    name: str  # what is wrong, as a reader would say it
    entry: str  # the public entry point
    run: Callable[[Path], object]  # raises; gets a temporary folder
    error: type
    words: tuple[str, ...]  # all must appear in the message


CASES = [
    Case("NaN rating", "RatingsData.from_frame", lambda t: bp.RatingsData.from_frame(
        frame(rating=[4.0, np.nan, 5.0, 2.0, 1.0])), bp.RatingsDataError,
         ("'rating'", "NaN", "row 1")),
    Case("infinite rating", "RatingsData.from_frame", lambda t: bp.RatingsData.from_frame(
        frame(rating=[4.0, np.inf, 5.0, 2.0, 1.0])), bp.RatingsDataError,
         ("'rating'", "inf", "row 1")),
    Case("rating off the declared scale", "RatingsData.from_frame",
         lambda t: bp.RatingsData.from_frame(frame(rating=[4.0, 3.0, 7.0, 2.0, 1.0]),
                                             scale=(1, 5, 1)),
         bp.RatingsDataError, ("'rating'", "7.0", "outside the declared scale", "[1, 5]")),
    Case("rating off the scale's grid", "RatingsData.from_frame",
         lambda t: bp.RatingsData.from_frame(frame(rating=[4.0, 3.3, 5.0, 2.0, 1.0]),
                                             scale=(1, 5, 0.5)),
         bp.RatingsDataError, ("'rating'", "3.3", "grid")),
    Case("non-numeric rating", "RatingsData.from_frame", lambda t: bp.RatingsData.from_frame(
        frame(rating=["4", "three", "5", "2", "1"])), bp.RatingsDataError,
         ("'rating'", "'three'", "numeric")),
    Case("duplicate (user, item) pair", "RatingsData.from_frame",
         lambda t: bp.RatingsData.from_frame(frame(item=[1, 1, 1, 3, 2])),
         bp.RatingsDataError, ("duplicate", "'a'", "duplicates=")),
    Case("empty table", "RatingsData.from_frame",
         lambda t: bp.RatingsData.from_frame(frame().iloc[:0]), bp.RatingsDataError,
         ("empty",)),
    Case("missing column", "RatingsData.from_frame",
         lambda t: bp.RatingsData.from_frame(frame().drop(columns="rating")),
         bp.RatingsDataError, ("['rating']", "lacks")),
    Case("mixed id types", "RatingsData.from_frame", lambda t: bp.RatingsData.from_frame(
        frame(user=["a", 1, "b", "b", "c"])), bp.RatingsDataError,
     ("'user'", "mixes id types", "(value 1)")),
    Case("missing id", "RatingsData.from_frame", lambda t: bp.RatingsData.from_frame(
        frame(item=[1, None, 1, 3, 2])), bp.RatingsDataError, ("'item'", "missing")),
    Case("ratings with a decimal comma", "load_ratings",
         lambda t: bp.load_ratings(_write(t, "r.csv", "user;item;rating\n1;2;4,5\n2;2;3\n")),
         bp.RatingsDataError, ("line 2", "'4,5'", "decimal point (4.5, not 4,5)")),
    Case("a gzip-compressed ratings file", "load_ratings",
         lambda t: bp.load_ratings(_bytes(t, "r.csv.gz", gzip.compress(b"user,item,rating\n"
                                                                     b"1,2,4\n"))),
         bp.RatingsFileError, ("r.csv.gz", "gzip-compressed", "gunzip r.csv.gz")),
    Case("a gzip-compressed items file", "load_split items",
         lambda t: bp.load_split(data=_write(t, "ri.csv", "user,item,rating\n1,2,4\n2,2,3\n"),
                                 items=_bytes(t, "movies.csv.gz",
                                              gzip.compress(b"movieId,genres\n2,Drama\n"))),
         bp.RatingsFileError, ("movies.csv.gz", "expected items as plain UTF-8 text")),
    Case("a UTF-16 ratings file (Excel's 'Unicode text')", "load_ratings",
         lambda t: bp.load_ratings(_bytes(t, "r16.csv",
                                          "user,item,rating\n1,2,4\n".encode("utf-16"))),
         bp.RatingsFileError, ("r16.csv", "UTF-16", "save it as UTF-8")),
    Case("empty file", "load_ratings", lambda t: bp.load_ratings(_write(t, "e.csv", "")),
         bp.RatingsFileError, ("empty", "e.csv")),
    Case("bad row in one partition of a directory", "load_ratings",
         lambda t: bp.load_ratings(_parts(t, {"p0.csv": "user,item,rating\n1,2,4\n",
                                              "p1.csv": "user,item,rating\n3,4,x\n"})),
         bp.RatingsDataError, ("p1.csv:2", "'x'")),
    Case("partitions in different layouts", "load_ratings",
         lambda t: bp.load_ratings(_parts(t, {"p0.csv": "user,item,rating\n1,2,4\n",
                                              "p1.csv": "1\t2\t4\t881250949\n"})),
         bp.RatingsFileError, ("p1.csv", "same layout")),
    Case("a .parquet file that is not Parquet", "load_ratings",
         lambda t: bp.load_ratings(_write(t, "r.parquet", "user,item,rating\n1,2,4\n")),
         bp.RatingsFileError, ("cannot read", "r.parquet", "as Parquet")),
    Case("a client that is not a Dask client", "load_ratings(client=)",
         lambda t: bp.load_ratings(_parts(t, {"p0.csv": "user,item,rating\n1,2,4\n"}),
                                   client="tcp://127.0.0.1:8786"),
         bp.ConfigError, ("client must be a Dask client", "got str")),
    Case("glob that matches no file", "load_ratings",
         lambda t: bp.load_ratings(str(t / "nothing-*.csv")),
         bp.RatingsFileError, ("no file matches", "nothing-*.csv")),
    Case("Dask scheduler that does not answer", "bayes-pmf fit --dask",
         lambda t: _job_main(["fit", "--dask", "tcp://127.0.0.1:9", "--out", str(t / "r")]),
         bp.ConfigError, ("no Dask scheduler answered", "tcp://127.0.0.1:9")),
    Case("header but no rows", "load_ratings",
         lambda t: bp.load_ratings(_write(t, "h.csv", "user,item,rating\n")),
         bp.RatingsFileError, ("no rows", "h.csv")),
    Case("wrong delimiter (one column)", "load_ratings",
         lambda t: bp.load_ratings(_write(t, "d.csv", "user item rating\n1 2 3\n4 5 6\n"
                                           .replace(" ", "#"))),
         bp.RatingsFileError, ("d.csv", "layout")),
    Case("unrecognised header", "load_ratings",
         lambda t: bp.load_ratings(_write(t, "w.csv", "who,what,score\n1,2,3\n")),
         bp.RatingsFileError, ("w.csv", "user ids", "['who', 'what', 'score']")),
    Case("bad value in a file names its line", "load_ratings",
         lambda t: bp.load_ratings(_write(t, "v.csv", "user,item,rating\n1,2,3\n1,3,x\n")),
         bp.RatingsDataError, ("'rating'", "line 3", "'x'")),
    Case("missing file", "load_ratings", lambda t: bp.load_ratings(t / "nope.csv"),
         bp.RatingsFileError, ("not found", "nope.csv")),
    Case("unknown user at prediction", "PMFResult.predict",
         lambda t: _fitted().predict(["a", "zoe"], [1, 2]), bp.UnknownIdError,
         ("user 'zoe'", "unknown='prior'")),
    Case("unknown item at prediction", "PMFResult.predict",
         lambda t: _fitted().predict(["a"], [99]), bp.UnknownIdError,
         ("item 99", "unknown='prior'")),
    Case("latent dimension d <= 0", "PMFSpec", lambda t: bp.PMFSpec(n_factors=-1),
         bp.ConfigError, ("n_factors", "-1")),
    Case("negative lambda", "PMFSpec.from_lambdas",
         lambda t: bp.PMFSpec.from_lambdas(5, -1.0), bp.ConfigError, ("lambda_u", "-1.0")),
    Case("sigma <= 0", "PMFSpec", lambda t: bp.PMFSpec(sigma=0.0), bp.ConfigError,
         ("sigma", "0.0")),
    Case("test fraction outside (0, 1)", "random_split",
         lambda t: bp.random_split(bp.RatingsData.from_frame(frame()), 1.5),
         bp.ConfigError, ("test_fraction", "1.5")),
    Case("split leaves a user without training ratings, when asked not to",
         "random_split(..., cold_users='error')",
         lambda t: bp.random_split(bp.RatingsData.from_frame(frame()), 0.5, rng=1,
                                   cold_users="error"),
         bp.ConfigError, ("no training ratings", "user")),
    Case("near-singular system (tiny lambda, rank-deficient data)", "fit_als",
         lambda t: bp.fit_als(bp.RatingsData.from_frame(frame()),
                              bp.PMFSpec.from_lambdas(4, 1e-300), progress=False),
         bp.NumericalError, ("not positive definite", "block row", "lambda")),
    Case("tuple ids", "RatingsData.from_arrays",
         lambda t: bp.RatingsData.from_arrays([(1, 2), (3, 4)], [1, 2], [3.0, 4.0]),
         bp.RatingsDataError, ("'user'", "tuple", "strings or integers")),
    Case("integer ids beyond 64 bits", "RatingsData.from_arrays",
         lambda t: bp.RatingsData.from_arrays([2**64, 1], [1, 2], [3.0, 4.0]),
         bp.RatingsDataError, ("'user'", "beyond 64 bits", "as strings")),
    Case("complex ratings", "RatingsData.from_arrays",
         lambda t: bp.RatingsData.from_arrays([1, 2], [1, 2], [3 + 1j, 4]),
         bp.RatingsDataError, ("'rating'", "complex")),
    Case("sequences of unequal length", "RatingsData.from_arrays",
         lambda t: bp.RatingsData.from_arrays([1, 2, 3], [1, 2], [3.0, 4.0]),
         bp.RatingsDataError, ("one length", "'users': 3")),
    Case("duplicate column names", "RatingsData.from_frame",
         lambda t: bp.RatingsData.from_frame(
             pd.DataFrame([[1, 2, 3.0]], columns=["user", "user", "rating"])),
         bp.RatingsDataError, ("duplicate column name", "'user'")),
    Case("one column for two roles", "RatingsData.from_frame",
         lambda t: bp.RatingsData.from_frame(frame(), rating_col="user"),
         bp.RatingsDataError, ("rating_col='user'", "own column")),
    Case("headerless file with 5 columns", "load_ratings",
         lambda t: bp.load_ratings(_write(t, "f.csv", "1,10,4,99,x\n2,10,3,98,y\n")),
         bp.RatingsFileError, ("f.csv", "headerless", "5 columns", "naming the columns")),
    Case("negative seed", "random_split",
         lambda t: bp.random_split(bp.RatingsData.from_frame(frame()), 0.2, rng=-1),
         bp.ConfigError, ("rng", "-1", "2**63")),
    Case("a spec the engine cannot fit", "fit_als",
         lambda t: bp.fit_als(bp.RatingsData.from_frame(frame()),
                              bp.PMFSpec(n_factors=1, prior="wishart"), progress=False),
         bp.ConfigError, ("ALS", "prior='wishart'", "map_model()")),
    Case("no model spec", "sample_gibbs",
         lambda t: bp.sample_gibbs(bp.RatingsData.from_frame(frame()), None, progress=False),
         bp.ConfigError, ("sample_gibbs", "PMFSpec", "NoneType")),
    Case("continuous ratings under the ordinal model (the main job's default)",
         "sample_gibbs",
         lambda t: bp.sample_gibbs(bp.RatingsData.from_frame(
             frame(rating=[4.123, 3.318, 4.977, 2.731, 1.259])),
             bp.PMFSpec.hierarchical(n_factors=1, likelihood="ordinal"), progress=False),
         bp.ConfigError, ("likelihood='ordinal'", "bounded grid", "likelihood='gaussian'")),
    Case("an implicit-feedback spec given to ALS", "fit_als",
         lambda t: bp.fit_als(bp.RatingsData.from_frame(frame()),
                              bp.PMFSpec(n_factors=1, implicit_items=True), progress=False),
         bp.ConfigError, ("ALS", "implicit feedback", "sample_gibbs")),
    Case("an unknown implicit-feedback setting", "FitJobConfig",
         lambda t: _job_config(implicit="yes"), bp.ConfigError,
         ("implicit", "'none'", "'yes'")),
    Case("implicit feedback asked for on data beyond its exact step (before any fit)",
         "fit --implicit both",
         lambda t: _job_main(["fit", "--data", str(_diagonal(t, 11_200)), "--implicit", "both",
                              "--no-progress", "--out", str(t / "d")]),
         bp.ConfigError, ("implicit", "10,000", "10,080", "--implicit none")),
    Case("item features asked for on data whose items have no such column (before any fit)",
         "fit --item-features genres",
         lambda t: _job_main(["fit", "--data", str(FIXTURES / "ratings.csv"),
                              "--item-features", "genres", "--no-progress",
                              "--out", str(t / "g")]),
         bp.ConfigError, ("item_features='genres'", "no item information")),
    Case("tag biases asked for on data without item or user features (before any fit)",
         "fit --tag-biases",
         lambda t: _job_main(["fit", "--data", str(FIXTURES / "ratings.csv"), "--tag-biases",
                              "--no-progress", "--out", str(t / "tb")]),
         bp.ConfigError, ("tag_biases", "no item or user features", "--tag-biases")),
    Case("a new user's value no training user had", "fold_in_user user_info",
         lambda t: bp.fold_in_user(_user_featured(), [0], [4.0],
                                   user_info={"job": "astronaut"}),
         bp.ConfigError, ("job='astronaut'", "no training user has this value",
                          "expected one of")),
    Case("item features of a column without a tag", "PMFSpec item_features",
         lambda t: bp.sample_gibbs(bp.RatingsData.from_frame(
             frame(), item_info=pd.DataFrame({"genres": ["", "(no genres listed)", None]},
                                             index=[1, 2, 3])),
             bp.PMFSpec(n_factors=1, item_features="genres"), progress=False),
         bp.ConfigError, ("item_features='genres'", "no training item has a tag")),
    Case("an items file with an item twice", "load_split items",
         lambda t: bp.load_split(FIXTURES / "ratings.csv", items=_text(
             t / "items.csv", "item,genres\n1,Comedy\n2,Drama\n1,War\n")),
         bp.RatingsFileError, ("item 1", "lines 2 and 4", "one row per item")),
    Case("an items file without an item id column", "load_split items",
         lambda t: bp.load_split(FIXTURES / "ratings.csv", items=_text(
             t / "items.csv", "name,genres\nx,Comedy\n")),
         bp.RatingsFileError, ("no item id column", "movieId", "['name', 'genres']")),
    Case("an items file with an item id beyond 64 bits", "load_split items",
         lambda t: bp.load_split(FIXTURES / "ratings.csv", items=_text(
             t / "items.csv", "item,genres\n1,Comedy\n123456789012345678901,Drama\n")),
         bp.RatingsFileError, ("line 3", "123456789012345678901", "64-bit")),
    Case("an items file describing none of the rated items", "load_split items",
         lambda t: bp.load_split(FIXTURES / "ratings.csv", items=_text(
             t / "items.csv", "item,genres\n99999,Comedy\n")),
         bp.RatingsFileError, ("none of the", "rated items has a row", "99999")),
    Case("a users file with a user twice", "load_split users",
         lambda t: bp.load_split(FIXTURES / "ratings.csv", users=_text(
             t / "users.csv", "userId,gender\n1,F\n2,M\n1,M\n")),
         bp.RatingsFileError, ("user 1", "lines 2 and 4", "one row per user")),
    Case("a MovieLens u.user with a text id among numbers", "load_split users",
         lambda t: bp.load_split(FIXTURES / "ratings.csv", users=_text(
             t / "u.user", "1|24|M|technician|85711\nx7|53|F|other|94043\n")),
         bp.RatingsFileError, ("line 2", "user id 'x7'", "integers")),
    Case("a users file describing none of the users who rated", "load_split users",
         lambda t: bp.load_split(FIXTURES / "ratings.csv", users=_text(
             t / "users.csv", "user,gender\n99999,F\n")),
         bp.RatingsFileError, ("none of the", "users who rated has a row", "99999")),
    Case("user features naming a column the users lack", "sample_gibbs",
         lambda t: bp.sample_gibbs(
             bp.RatingsData.from_arrays([1, 1, 2], [1, 2, 1], [3.0, 4.0, 5.0],
                                        user_info=pd.DataFrame({"gender": ["F", "M"]},
                                                               index=[1, 2])),
             bp.PMFSpec(n_factors=1, user_features="gender,income"), progress=False),
         bp.ConfigError, ("user_features='gender,income'", "'income'", "['gender']")),
    Case("saving a result onto a folder", "save_result",
         lambda t: bp.save_result(_fitted(), _folder(t / "models")), bp.ResultFileError,
         ("directory", "model.nc")),
    Case("a new user rates an item twice", "recommend_new_user",
         lambda t: bp.recommend_new_user(_fitted(), [1, 1], [4.0, 2.0]), bp.ConfigError,
         ("item 1", "more than once")),
    Case("a new user's rating off the scale", "recommend_new_user",
         lambda t: bp.recommend_new_user(_fitted(), [1, 2], [4.0, 500.0]), bp.ConfigError,
         ("500.0", "item 2", "[1, 5]")),
    Case("non-finite rating threshold", "recommend",
         lambda t: bp.recommend(_fitted(), "a", score="prob", threshold=float("nan")),
         bp.ConfigError, ("threshold", "nan")),
    Case("a rating threshold above the scale", "recommend (recommend --threshold)",
         lambda t: bp.recommend(_fitted(), "a", score="prob", threshold=9),
         bp.ConfigError, ("threshold 9 leaves nothing to rank", "from 1 to 5",
                          "above 1, up to 5")),
    Case("settings that cannot fit in memory", "workflows.config.check_memory",
         _memory_hungry, bp.ConfigError, ("GB", "available", "n_factors")),
    Case("output folder that is a file", "RunFolder (fit --out)",
         lambda t: _run_folder(t, "file"), bp.ConfigError, ("run", "is a file")),
    Case("output folder in a folder that takes no files (/proc)", "RunFolder (fit --out)",
         lambda t: _run_folder(t, "proc"), bp.ConfigError,
         ("cannot write into /proc", "/proc/bayes-pmf-run")),
    Case("output folder holding an earlier run", "RunFolder (fit --out)",
         lambda t: _run_folder(t, "earlier run"), bp.ConfigError,
         ("already holds", "--overwrite")),
    Case("output folder another run is writing", "RunFolder (fit --out)",
         lambda t: _run_folder(t, "locked"), bp.ConfigError,
         ("another run", "process", "run")),
    Case("a scale whose step does not divide it", "FitJobConfig (fit --scale)",
         lambda t: _job_config(data="r.csv", scale=(1, 5, 0.3)), bp.ConfigError,
         ("scale's step 0.3", "must divide max - min = 4", "(1, 5, 0.3)")),
    Case("a scale for the embedded MovieLens", "load_split (fit --scale)",
         lambda t: bp.load_split(scale=(1, 5, 1)), bp.ConfigError,
         ("scale (1, 5, 1)", "not the embedded MovieLens' (0.5, 5, 0.5)", "ratings file")),
    Case("a flag of ALS's grid with --posterior", "bayes-pmf select",
         lambda t: _select_main(["select", "--posterior", "--lambdas", "1"]),
         bp.ConfigError, ("--lambdas", "not with --posterior")),
    Case("a posterior-model flag without --posterior", "bayes-pmf select",
         lambda t: _select_main(["select", "--likelihoods", "ordinal"]),
         bp.ConfigError, ("--likelihoods", "add --posterior")),
    Case("one fold for model selection", "select_model",
         lambda t: bp.select_model(bp.RatingsData.from_frame(frame()),
                                   {"plain": bp.PMFSpec(n_factors=1)}, k=1),
         bp.ConfigError, ("k must be an integer >= 2", "1")),
    Case("feedback fold-in on a model without a user-side feedback term",
         "fold_in_feedback", lambda t: bp.fold_in_feedback(_fitted(), "a", [3]),
         bp.ConfigError, ("no user-side feedback term", "'users' or 'both'")),
    Case("truncated or foreign result file", "load_result",
         lambda t: bp.load_result(_write(t, "r.nc", "not netcdf")), bp.ResultFileError,
         ("r.nc", "not NetCDF")),
]


def markdown_table() -> str:
    import tempfile

    rows = ["| bad input | entry point | error | message (example) |", "|---|---|---|---|"]
    with tempfile.TemporaryDirectory() as folder:
        for case in CASES:
            try:
                case.run(Path(folder))
            except case.error as exc:
                message = (str(exc).replace(folder + "/", "").replace("|", "\\|")
                           .replace("\n", " "))
                rows.append(f"| {case.name} | `{case.entry}` | `{case.error.__name__}` | "
                            f"{message} |")
            else:
                raise AssertionError(f"{case.name}: no error")
    return "\n".join(rows)


if __name__ == "__main__":
    print(markdown_table())

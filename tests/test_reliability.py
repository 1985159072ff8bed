"""What a hostile user does to the main job: ids that look alike, headerless and BOM
files, folders that already hold a run, two runs into one folder, Ctrl-C and kill -9 in
the middle of a run. Every case here failed before the issue that asked for it."""

import contextlib
import io
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from interrupts import sigint_as_default

import bayes_pmf as bp
from bayes_pmf.workflows.runfolder import RunFolder

FIXTURES = Path(__file__).parent / "fixtures"


def _write(folder: Path, name: str, text: str, encoding: str = "utf-8") -> Path:
    path = folder / name
    path.write_bytes(text.encode(encoding))
    return path


# -- ids keep their identity -------------------------------------------------------------

def test_ids_that_look_alike_stay_apart(tmp_path):
    data = bp.load_ratings(_write(tmp_path, "r.csv", "user,item,rating\n"
                                  "u1,007,4\nu1,7,3\nu2,7,5\n1.0,7,2\n1,007,1\n"))
    assert sorted(data.item_ids) == ["007", "7"]  # "007" and "7": two items
    assert sorted(data.user_ids) == ["1", "1.0", "u1", "u2"]  # "1.0" and "1": two users
    assert data.n_ratings == 5


def test_a_text_id_among_integers_is_kept_and_said(tmp_path):
    """One 'abc' (or one '007') among integer ids keeps every id of that column text,
    as before, and now says so, naming the line: a stray row is the usual cause. Text
    ids throughout, or integers throughout, say nothing."""
    rows = "".join(f"{u},{i},{(u + i) % 5 + 1}\n" for u in range(1, 9) for i in range(1, 6))
    stray = _write(tmp_path, "stray.csv", "user,item,rating\n" + rows + "abc,1,3\n")
    with pytest.warns(UserWarning, match=r"user ids are kept as text: 1 of 41 rows has a "
                      r"user id not written as a plain integer \(e.g. line 42: 'abc'\)"):
        data = bp.load_ratings(stray)
    assert "abc" in list(data.user_ids) and "7" in list(data.user_ids)
    padded = _write(tmp_path, "padded.csv", "user,item,rating\n007,2,4\n" + rows)
    with pytest.warns(UserWarning, match=r"line 2: '007'\).*'007' and '7' are two users"):
        assert {"007", "7"} <= set(bp.load_ratings(padded).user_ids)
    # item ids are typed on their own: the items here are integers, and not named
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        bp.load_ratings(stray)
    assert [str(w.message).split(":")[0] for w in caught] == ["user ids are kept as text"]
    text = _write(tmp_path, "text.csv", "user,item,rating\nu1,a,4\nu2,b,3\nu1,b,5\n")
    whole = _write(tmp_path, "whole.csv", "user,item,rating\n" + rows)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        bp.load_ratings(text)
        bp.load_ratings(whole)
    # given train and test files: the line is named with its file
    test = _write(tmp_path, "test.csv", "user,item,rating\n1,1,4\nguest,2,3\n")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        bp.load_split(train=whole, test=test)
    assert any("(e.g. line test.csv:3: 'guest')" in str(w.message) for w in caught)
    # integers too wide for 64 bits keep the column text, silently: each is written as
    # the integer it is, and the strings keep every one of them exact
    wide = _write(tmp_path, "wide.csv", "user,item,rating\n" + rows
                  + f"{2**64 + 7},1,3\n")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ids = list(bp.load_ratings(wide).user_ids)
    assert str(2**64 + 7) in ids and "7" in ids and 7 not in ids


def test_a_stray_rating_that_stretches_the_inferred_scale_is_said(tmp_path):
    """A 7 among 1-5 stars, or one half star among whole stars, stretches the scale the
    data imply; the levels no rating uses are named, and the rarest rating. A scale whose
    every level is used, a given scale, or a toy table (under 10 ratings per level, where
    levels stay empty by chance) says nothing."""
    rows = "".join(f"{u},{i},{(u + i) % 5 + 1}\n" for u in range(1, 21) for i in range(1, 6))
    seven = _write(tmp_path, "seven.csv", "user,item,rating\n" + rows + "99,1,7\n")
    with pytest.warns(UserWarning, match=r"1 to 7 in steps of 1, has 1 level no rating uses "
                      r"\(6\); the rarest rating, 7, appears once"):
        assert bp.load_ratings(seven).scale == bp.RatingScale(1, 7, 1)
    half = _write(tmp_path, "half.csv", "user,item,rating\n" + rows + "99,1,3.5\n")
    with pytest.warns(UserWarning, match=r"has 3 levels no rating uses \(1.5, 2.5, 4.5\)"):
        bp.load_ratings(half)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        bp.load_ratings(_write(tmp_path, "whole.csv", "user,item,rating\n" + rows))
        bp.load_ratings(seven, scale=(1, 7, 1))
        toy = "user,item,rating\n" + "".join(f"{u},1,{u}\n" for u in (1, 2, 4, 5)) + "5,2,7\n"
        assert bp.load_ratings(_write(tmp_path, "toy.csv", toy)).scale.max == 7


def test_the_command_line_shows_the_librarys_warnings_as_one_line_each(tmp_path):
    """`bayes-pmf fit` prints a warning of the library as it prints an error, one line
    naming the command, not Python's "file:line: UserWarning" with a source line; ids
    are quoted as written (user 1, not np.int64(1))."""
    rows = "".join(f"{u},{i},{(u + i) % 5 + 1}\n" for u in range(1, 9) for i in range(1, 6))
    train = _write(tmp_path, "train.csv", "user,item,rating\n" + rows)
    test = _write(tmp_path, "test.csv", "user,item,rating\n1,1,3\nguest,2,4\n")
    proc = subprocess.run([sys.executable, "-m", "bayes_pmf", "fit", "--train", str(train),
                           "--test", str(test), "--method", "als", "--no-figures",
                           "--no-progress", "--out", str(tmp_path / "run")],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    lines = proc.stderr.splitlines()
    assert "bayes-pmf fit: warning: user ids are kept as text: 1 of 42 rows has a user " \
        "id not written as a plain integer (e.g. line test.csv:3: 'guest')" in proc.stderr
    assert "bayes-pmf fit: warning: 1 of the 2 test ratings (50%) are of (user, item) " \
        "pairs also rated in the training file, e.g. user '1', item 1:" in proc.stderr
    assert len(lines) == 2 and "UserWarning" not in proc.stderr, lines
    # the run keeps what its data said (metrics.json, and the report's Data table)
    said = json.loads((tmp_path / "run" / "metrics.json").read_text())["dataset"]["warnings"]
    assert [line.removeprefix("bayes-pmf fit: warning: ") for line in lines] == said
    # called from Python, main() shows them its way for the command's length only
    from bayes_pmf.cli.main import main

    shown_by_python = warnings.showwarning
    with contextlib.redirect_stderr(io.StringIO()) as err:
        assert main(["fit", "--train", str(train), "--test", str(test), "--method", "als",
                     "--no-figures", "--no-progress", "--out", str(tmp_path / "again")]) == 0
    assert err.getvalue().splitlines() == lines
    assert warnings.showwarning is shown_by_python
    # and SIGTERM's action is Python's again (the command raises Terminated meanwhile)
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL


def test_the_command_line_reads_a_file_with_a_given_scale_and_bad_rows_left_out(tmp_path):
    """--scale, --invalid and --duplicates: what load_ratings takes in Python, on the
    command line. A run with them fits, prints and records what it left out (counts in
    = used + left out, by reason) and the settings; without them the errors advise the
    flags, not Python's keywords."""
    rows = "".join(f"{u},{i},{(u + i) % 5 + 1}\n" for u in range(1, 13) for i in range(1, 7))
    bad = _write(tmp_path, "bad.csv", "user,item,rating\n" + rows
                 + "1,1,4\n"      # user 1 rated item 1 before: 3 -> mean 3.5 -> 4
                 + "2,1,x\n")     # not a number
    run = tmp_path / "run"
    proc = subprocess.run([sys.executable, "-m", "bayes_pmf", "fit", "--data", str(bad),
                           "--scale", "1", "5", "1", "--invalid", "drop", "--duplicates",
                           "mean", "--method", "als", "--no-figures", "--no-progress",
                           "--out", str(run)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "rows left out: 2 of 74 (non-numeric ratings: 1, duplicate pairs merged " \
        "(mean): 1)" in proc.stdout
    assert "bayes-pmf fit: warning: 1 merged mean rating fell between levels of the " \
        "scale's grid (steps of 1) and was rounded to the nearer level, a tie upwards " \
        "(e.g. user 1, item 1: 3.5 -> 4); pass --duplicates last to keep the latest " \
        "rating instead" in proc.stderr
    metrics = json.loads((run / "metrics.json").read_text())
    ingest = metrics["dataset"]["ingest"]
    assert ingest["n_read"] == 74 == ingest["n_used"] + sum(ingest["rejected"].values())
    assert metrics["dataset"]["scale"] == {"min": 1.0, "max": 5.0, "step": 1.0}
    settings = metrics["settings"]
    assert (settings["scale"], settings["invalid"], settings["duplicates"]) == (
        [1.0, 5.0, 1.0], "drop", "mean")

    from bayes_pmf.cli.main import main

    def error(*flags: str) -> str:
        with contextlib.redirect_stderr(io.StringIO()) as err:
            assert main(["fit", *flags, "--method", "als", "--no-figures", "--no-progress",
                         "--out", str(tmp_path / "never")]) == 2
        return err.getvalue()

    assert "(pass --invalid drop to drop and count such rows)" in error("--data", str(bad))
    assert "(pass --duplicates mean or --duplicates last to merge them)" in error(
        "--data", str(bad), "--invalid", "drop")
    clean = _write(tmp_path, "clean.csv", "user,item,rating\n" + rows)
    assert "(value '5'); expected ratings in [1.0, 4.0] (pass --invalid drop" in error(
        "--data", str(clean), "--scale", "1", "4", "1")
    assert "error: --scale must have min < max and a step > 0, got (min, max, step) = " \
        "(5.0, 1.0, 1.0)" in error("--data", str(bad), "--scale", "5", "1", "1")
    assert "error: --scale (1, 5, 1) is not the embedded MovieLens' (0.5, 5, 0.5): --scale " \
        "is for a ratings file; name one with --data, or leave --scale out" in error(
            "--scale", "1", "5", "1")
    assert not (tmp_path / "never").exists()
    # a stray half star stretches the inferred grid: the warning names the flag to use
    stray = "".join(f"{u},{i},{(u + i) % 5 + 1}\n" for u in range(1, 21) for i in range(1, 6))
    with contextlib.redirect_stderr(io.StringIO()) as err:
        assert main(["fit", "--data", str(_write(tmp_path, "stray.csv", "user,item,rating\n"
                                                 + stray + "99,1,3.5\n")),
                     "--method", "als", "--no-figures", "--no-progress", "--out",
                     str(tmp_path / "stray")]) == 0
    assert "or give the scale, --scale MIN MAX STEP" in err.getvalue()


def test_a_message_names_only_flags_its_command_has():
    """The library's advice (invalid='drop') becomes a flag where the command has it
    (fit, select, report, check-map, paper) and stays in the library's words where it has
    not (similar: no --invalid), or where the settings come from a file (report
    --config)."""
    from bayes_pmf.cli.main import _in_flags, build_parser, command_flags

    parser = build_parser()
    error = bp.RatingsDataError("bad row (pass invalid='drop' to drop it)", setting="invalid")
    said = {argv[0] + (" --config" if "--config" in argv else ""):
            _in_flags(str(error), error.setting, command_flags(parser, parser.parse_args(argv)))
            for argv in (["fit"], ["select"], ["report"], ["check-map"], ["paper"],
                         ["similar", "--run", "r", "--item", "1"],
                         ["report", "--config", "c.toml"])}
    assert {command for command, text in said.items() if "--invalid drop" in text} == {
        "fit", "select", "report", "check-map", "paper"}, said
    assert said["similar"] == said["report --config"] == str(error)
    assert command_flags(parser, parser.parse_args(["recommend", "--run", "r", "--user",
                                                    "1"]))["n"] == "--n"


def test_the_read_settings_go_through_a_config_file():
    """scale, invalid and duplicates are written to config.toml and read back; bad
    values are named."""
    from bayes_pmf.workflows.config import FitJobConfig, ReportConfig, read_config

    job = FitJobConfig(data="r.csv", scale=(1, 10, 1), invalid="drop", duplicates="last")
    text = ReportConfig(job=job).as_toml()
    assert "scale = [1, 10, 1]\ninvalid = \"drop\"\nduplicates = \"last\"\n" in text
    path = Path(tempfile.mkdtemp()) / "config.toml"
    path.write_text(text)
    back = read_config(path).job
    assert (back.scale, back.invalid, back.duplicates) == ((1, 10, 1), "drop", "last")
    assert "scale = " not in ReportConfig().as_toml()  # None: the layout's or inferred
    for settings, words in (({"scale": (1, 5)}, "scale must be three numbers"),
                            ({"scale": (1, 5, 0.3)}, "must divide max - min"),
                            ({"invalid": "skip"}, "invalid must be one of"),
                            ({"duplicates": "first"}, "duplicates must be one of")):
        with pytest.raises(bp.ConfigError, match=words):
            FitJobConfig(**settings)



def test_a_scale_whose_step_does_not_divide_it_is_refused_wherever_it_is_given(tmp_path):
    """1 to 5 in steps of 0.3 has no grid: refused by RatingScale itself, so by every
    reader (load_ratings, load_split: what paper uses), before a row is read, not only
    by the fit job's settings; rounding of a dividing step (0.1 to 0.7 by 0.2) is not
    taken for a remainder."""
    path = tmp_path / "r.csv"
    path.write_text("user,item,rating\n1,1,1\n1,2,5\n")
    for make in (lambda: bp.RatingScale(1, 5, 0.3),
                 lambda: bp.load_ratings(path, scale=(1, 5, 0.3)),
                 lambda: bp.load_split(path, scale=(1, 5, 0.3))):
        with pytest.raises(bp.RatingsDataError, match="step 0.3 must divide max - min = 4"):
            make()
    assert bp.RatingScale(0.1, 0.7, 0.2).step == 0.2

def test_a_file_in_movielens_layout_on_another_scale_is_read_on_its_own_scale(tmp_path):
    """A file laid out as MovieLens' (its ratings.csv header, or u.data's four tab-separated
    numbers) takes MovieLens' scale while every rating fits it: whole stars only still
    mean the 0.5-5 grid. Ratings off it (1-10) used to be refused row by row, with the
    advice to drop them; now the scale is inferred from the data, and the file named."""
    ratings = [(u, i, (3 * u + i) % 10 + 1) for u in range(1, 21) for i in range(1, 6)]
    csv_ten = _write(tmp_path, "ten.csv", "userId,movieId,rating,timestamp\n" + "".join(
        f"{u},{i},{r},100\n" for u, i, r in ratings))
    with pytest.warns(UserWarning, match=r"laid out as movielens \(ratings.csv\), whose "
                      r"scale is 0.5 to 5 in steps of 0.5, but 50 of them are off it \(e.g. "
                      r"line 3: '6'\): the scale is inferred from the data instead"):
        data = bp.load_ratings(csv_ten)
    assert data.scale == bp.RatingScale(1, 10, 1) and data.n_ratings == 100
    tsv_ten = _write(tmp_path, "u.data", "".join(f"{u}\t{i}\t{r}\t100\n"
                                                 for u, i, r in ratings))
    with pytest.warns(UserWarning, match=r"laid out as movielens-100k \(u.data\)"):
        assert bp.load_ratings(tsv_ten).scale == bp.RatingScale(1, 10, 1)
    whole = _write(tmp_path, "whole.csv", "userId,movieId,rating,timestamp\n" + "".join(
        f"{u},{i},{r % 5 + 1},100\n" for u, i, r in ratings))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert bp.load_ratings(whole).scale == bp.RatingScale(0.5, 5, 0.5)
        # a given scale is the scale: off it, a row is refused by name, as before
        with pytest.raises(bp.RatingsDataError, match="outside the declared scale"):
            bp.load_ratings(csv_ten, scale=(0.5, 5, 0.5))
    # given train and test files: the line is named with its file
    test = _write(tmp_path, "test.csv", "userId,movieId,rating,timestamp\n1,1,4,100\n"
                                        "2,2,4.5,100\n")
    with pytest.warns(UserWarning, match=r"off it \(e.g. line ten.csv:3: '6'\)"):
        split, _ = bp.load_split(train=csv_ten, test=test)
    assert split.train.scale == bp.RatingScale(1, 10, 0.5)


def test_a_bad_seed_on_the_command_line_is_named_by_its_flag_once(tmp_path, capsys):
    """The library's "seed must be ..." reads "--seed must be ..." on the command line;
    the flag's name replaces the setting's, not every word "seed" of the message."""
    from bayes_pmf.cli import main

    assert main(["fit", "--seed", "-1", "--out", str(tmp_path / "run")]) == 2
    assert capsys.readouterr().err.strip() == (
        "bayes-pmf fit: error: --seed must be an integer from 0 to 2**63 - 1 (or a numpy "
        "Generator), got -1")
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("argv, message", [
    (["--folds", "1"], "--folds must be an integer >= 2, got 1"),
    (["--folds", "1000"], "--folds must be at most the number of ratings to fold (36), got "
                          "1000"),
    (["--lambdas", "-1"], "--lambdas must be positive numbers, got -1.0"),
    (["--dims", "0"], "--dims must be positive integers, got 0"),
])
def test_select_names_its_own_flags(tmp_path, capsys, argv, message):
    """`bayes-pmf select` names the flag the user typed (--folds, not the library's k)."""
    from bayes_pmf.cli import main

    rows = "".join(f"{u},{i},{(u + i) % 5 + 1}\n" for u in range(1, 9) for i in range(1, 6))
    data = _write(tmp_path, "r.csv", "user,item,rating\n" + rows)
    assert main(["select", "--data", str(data), *argv]) == 2
    assert capsys.readouterr().err.strip() == f"bayes-pmf select: error: {message}"


def test_category_and_object_id_columns_read_as_their_values():
    """A pandas category column of ids (as `astype("category")` leaves it) used to be
    refused as "ids of type str ... expected strings"; integers held as Python objects
    stayed objects, so `recommend --user 1` ("1" typed for an object index) missed user 1."""
    ratings = [3.0, 4.0, 5.0, 4.0]
    named = bp.RatingsData.from_frame(pd.DataFrame({
        "user": pd.Categorical(["a", "b", "a", "c"]), "item": [1, 2, 3, 1],
        "rating": ratings}))
    plain = bp.RatingsData.from_frame(pd.DataFrame({
        "user": ["a", "b", "a", "c"], "item": [1, 2, 3, 1], "rating": ratings}))
    assert named.user_ids.equals(plain.user_ids) and named.fingerprint == plain.fingerprint
    numbered = bp.RatingsData.from_frame(pd.DataFrame({
        "user": pd.Categorical([7, 8, 7, 9]), "item": np.array([1, 2, 3, 1], dtype=object),
        "rating": ratings}))
    for ids in (numbered.user_ids, numbered.item_ids):
        assert ids.dtype == np.int64, ids
    assert list(numbered.user_ids) == [7, 8, 9] and numbered.n_ratings == 4


def test_ids_written_as_integers_are_integers(tmp_path):
    data = bp.load_ratings(_write(tmp_path, "r.csv", "user,item,rating\n1,10,4\n2,10,3\n"))
    assert data.user_ids.dtype.kind == "i" and list(data.item_ids) == [10]


def test_one_text_id_in_the_test_file_keeps_train_and_test_ids_alike(tmp_path):
    """A single 'guest' among numbers makes the ids text in BOTH files, so test user '2'
    is still training user '2' (it used to turn every test id into text and every test
    rating into a cold start)."""
    train = _write(tmp_path, "train.csv", "user,item,rating\n1,10,4\n2,10,3\n2,11,5\n1,11,2\n")
    test = _write(tmp_path, "test.csv", "user,item,rating\nguest,10,4\n2,11,4\n1,10,5\n")
    with pytest.warns(UserWarning, match="also rated in the training file"):
        split, _ = bp.load_split(train=train, test=test)
    assert split.describe()["cold_user_ratings"] == 1  # only the guest
    assert set(split.test.user_ids) == {"guest", "2", "1"}


def test_a_test_file_may_use_ratings_the_training_file_does_not(tmp_path):
    """No declared scale: the scale is the span of both parts (a 5.5 in test used to be
    rejected as 'outside the declared scale')."""
    train = _write(tmp_path, "train.csv", "user,item,rating\n1,10,4\n2,10,3\n2,11,5\n")
    test = _write(tmp_path, "test.csv", "user,item,rating\n1,11,5.5\n")
    split, _ = bp.load_split(train=train, test=test)
    assert split.train.scale == split.test.scale
    assert (split.train.scale.min, split.train.scale.max) == (3.0, 5.5)


def test_no_overlap_no_warning(tmp_path):
    train = _write(tmp_path, "train.csv", "user,item,rating\n1,10,4\n2,11,3\n")
    test = _write(tmp_path, "test.csv", "user,item,rating\n1,11,5\n")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        bp.load_split(train=train, test=test)


@pytest.mark.parametrize("encoding", ["utf-8-sig", "utf-8"], ids=["bom", "plain"])
@pytest.mark.parametrize("ids", ["numbers", "text"])
def test_headerless_files_are_read_from_their_first_line(tmp_path, encoding, ids):
    """A first line that reads like the others is data, whether the ids are numbers or
    text and whether the file starts with a byte-order mark."""
    lines = ("1,10,4\n2,10,3\n2,11,5\n" if ids == "numbers"
             else "alice,matrix,4\nbob,matrix,3\nbob,alien,5\n")
    data = bp.load_ratings(_write(tmp_path, "h.csv", lines, encoding))
    assert data.n_ratings == 3
    first_user = 1 if ids == "numbers" else "alice"
    assert first_user in set(data.user_ids)


def test_a_headerless_file_with_a_timestamp_column(tmp_path):
    data = bp.load_ratings(_write(tmp_path, "t.csv", "1,10,4,881250949\n2,10,3,881250950\n"))
    assert data.timestamp is not None and int(data.timestamp[1]) == 881250950


def test_command_line_ids_are_matched_as_written(tmp_path):
    from bayes_pmf.cli.recommend import typed_id

    assert typed_id("7", bp.RatingsData.from_arrays([7, 8], [1, 1], [3, 4]).user_ids,
                    "--user") == 7
    with pytest.raises(bp.ConfigError, match="integers"):
        typed_id("007", bp.RatingsData.from_arrays([7, 8], [1, 1], [3, 4]).user_ids, "--user")
    text = bp.RatingsData.from_arrays(["007", "7"], [1, 1], [3, 4]).user_ids
    assert typed_id("007", text, "--user") == "007"


# -- run folders are all one run or nothing -----------------------------------------------

def _marker_run(folder: RunFolder, text: str) -> Path:
    (folder.staging / "metrics.json").write_text(text)
    return folder.commit()


def test_a_run_folder_appears_whole_and_replaces_only_when_asked(tmp_path):
    out = tmp_path / "run"
    with RunFolder(out) as folder:
        _marker_run(folder, "first")
    assert (out / "metrics.json").read_text() == "first"
    with pytest.raises(bp.ConfigError, match="already holds"):
        RunFolder(out)
    with RunFolder(out, overwrite=True) as folder:
        (folder.staging / "metrics.json").write_text("second")
        assert (out / "metrics.json").read_text() == "first"  # untouched until commit
        folder.commit()
    assert (out / "metrics.json").read_text() == "second"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]  # no staging, no lock


def test_a_failed_run_leaves_the_previous_folder_and_nothing_else(tmp_path):
    out = tmp_path / "run"
    with RunFolder(out) as folder:
        _marker_run(folder, "good")
    with pytest.raises(KeyboardInterrupt):
        with RunFolder(out, overwrite=True) as folder:
            (folder.staging / "metrics.json").write_text("half")
            raise KeyboardInterrupt
    assert (out / "metrics.json").read_text() == "good"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]


def test_a_killed_runs_lock_and_staging_do_not_block_the_next(tmp_path):
    out = tmp_path / "run"
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True).stdout.strip()
    (tmp_path / ".run.lock").write_text(dead)
    (tmp_path / f".run.staging-{dead}-abcdef12").mkdir()
    with RunFolder(out) as folder:
        _marker_run(folder, "after")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]


def test_run_folder_permissions_follow_the_umask(tmp_path):
    import stat

    previous = os.umask(0o027)
    try:
        with RunFolder(tmp_path / "run") as folder:
            out = _marker_run(folder, "x")
    finally:
        os.umask(previous)
    assert stat.S_IMODE(out.stat().st_mode) == 0o750
    assert stat.S_IMODE((out / "metrics.json").stat().st_mode) == 0o640


# -- failures come before the fit -----------------------------------------------------------

def _cli(*args, timeout=600):
    began = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "bayes_pmf", *args], capture_output=True,
                          text=True, timeout=timeout)
    return proc, time.perf_counter() - began


@pytest.mark.parametrize("case", ["out is a file", "out under a file", "negative seed",
                                  "seed above 2**64", "out holds a run"])
def test_cli_refuses_before_fitting(tmp_path, case):
    """Each of these used to fit for the whole run and then crash; now the command stops
    before fitting (MovieLens with the Gibbs sampler takes minutes; these take seconds)."""
    (tmp_path / "file").write_text("x")
    (tmp_path / "done").mkdir()
    (tmp_path / "done" / "metrics.json").write_text("{}")
    args = {"out is a file": ["--out", str(tmp_path / "file")],
            "out under a file": ["--out", str(tmp_path / "file" / "run")],
            "negative seed": ["--seed", "-1", "--out", str(tmp_path / "o")],
            "seed above 2**64": ["--seed", str(2**64 + 1), "--out", str(tmp_path / "o")],
            "out holds a run": ["--out", str(tmp_path / "done")]}[case]
    proc, seconds = _cli("fit", "--no-progress", *args)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
    assert seconds < 60  # a fit would take minutes
    assert not (tmp_path / "o").exists()


def test_cli_refuses_settings_that_do_not_fit_in_memory(tmp_path):
    proc, _ = _cli("fit", "--no-progress", "--factors", "100000", "--out", str(tmp_path / "o"))
    assert proc.returncode == 2 and "GB of memory" in proc.stderr and "--factors" in proc.stderr
    assert not (tmp_path / "o").exists()


def _processes_mentioning(token: str) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if token in (entry / "cmdline").read_bytes().decode(errors="replace"):
                    found.append(int(entry.name))
            except OSError:
                continue
    return found


def _wait_for_chain_processes(proc, out: Path, timeout: float = 1200) -> None:
    """Until the run's chain processes (forked: they share its command line) are up (the
    fits before them take about a minute on an idle machine, many on a loaded one)."""
    deadline = time.monotonic() + timeout
    while len(_processes_mentioning(str(out))) < 2:
        assert proc.poll() is None, proc.communicate()[1][-2000:]
        assert time.monotonic() < deadline, "no chain process started"
        time.sleep(0.5)
    time.sleep(2)  # some sweeps in


@contextlib.contextmanager
def _killed_afterwards(out: Path):
    """Whatever the test's outcome, no process of the run on ``out`` outlives it (a
    failed assertion used to leave a whole Gibbs run going for the rest of the suite)."""
    try:
        yield
    finally:
        for pid in _processes_mentioning(str(out)):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


@pytest.mark.slow
@pytest.mark.parametrize(("signum", "status", "said"), [(signal.SIGINT, 130, "interrupted"),
                                                        (signal.SIGTERM, 143, "terminated")])
def test_ctrl_c_stops_a_gibbs_run_within_seconds_and_leaves_nothing(tmp_path, signum,
                                                                    status, said):
    """SIGINT (Ctrl-C) or SIGTERM (kill PID) in the middle of a 4-chain Gibbs run in 2
    processes: the command exits within a few seconds with the signal's status (130,
    143), no chain process is left, and no run folder, staging folder or lock remains
    (Ctrl-C took 72-137 s while queued chains finished; SIGTERM ended the command on the
    spot, leaving the staging folder and the lock for the next run to clear)."""
    out = tmp_path / "ctrl-c-run"
    with _killed_afterwards(out):
        proc = subprocess.Popen([sys.executable, "-m", "bayes_pmf", "fit", "--no-progress",
                                 "--method", "gibbs", "--out", str(out)],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                preexec_fn=sigint_as_default)
        _wait_for_chain_processes(proc, out)
        began = time.perf_counter()
        proc.send_signal(signum)
        _, stderr = proc.communicate(timeout=60)
        stopped = time.perf_counter() - began
    assert proc.returncode == status, stderr[-2000:]
    assert stopped < 10, stopped  # measured 1-6 s on a loaded 2-core machine
    assert stderr.strip().splitlines()[-1] == said and "Traceback" not in stderr, stderr
    time.sleep(0.5)
    assert _processes_mentioning(str(out)) == []
    assert list(tmp_path.iterdir()) == []


@pytest.mark.slow
def test_two_runs_into_one_folder_and_a_kill_mid_run(tmp_path):
    """A second run into a folder being written fails at once; killing the first with
    SIGKILL leaves the earlier, finished run's folder as it was; the next run proceeds."""
    out = tmp_path / "run"
    proc, _ = _cli("fit", "--no-progress", "--no-figures", "--method", "als", "--out", str(out))
    assert proc.returncode == 0, proc.stderr[-2000:]
    first_id = json.loads((out / "metrics.json").read_text())["run_id"]
    with _killed_afterwards(out):
        long_run = subprocess.Popen([sys.executable, "-m", "bayes_pmf", "fit",
                                     "--no-progress", "--method", "gibbs", "--overwrite",
                                     "--out", str(out)],
                                    stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        _wait_for_chain_processes(long_run, out)
        second, seconds = _cli("fit", "--no-progress", "--method", "als", "--overwrite",
                               "--out", str(out))
        assert second.returncode == 2 and "another run" in second.stderr and seconds < 60
        long_run.kill()
        long_run.wait(timeout=30)
    time.sleep(1)
    assert _processes_mentioning(str(out)) == []  # its chain processes died with it
    assert json.loads((out / "metrics.json").read_text())["run_id"] == first_id
    third, _ = _cli("fit", "--no-progress", "--no-figures", "--method", "als", "--overwrite",
                    "--out", str(out))
    assert third.returncode == 0, third.stderr[-2000:]
    assert json.loads((out / "metrics.json").read_text())["run_id"] != first_id
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]


def test_metrics_record_a_run_id_that_comparisons_ignore():
    from bayes_pmf.workflows.reproducibility import comparable_metrics

    assert comparable_metrics({"run_id": "abc", "seed": 0}) == {"seed": 0}


@pytest.mark.parametrize("command", ["python -m bayes_pmf", "bayes-pmf"])
@pytest.mark.parametrize("after", [0.3, 1.0])
def test_ctrl_c_while_the_command_starts_prints_no_traceback(tmp_path, command, after):
    """SIGINT while the command is still importing the package (2-4 s on an idle 2-core
    machine, 15 s on a loaded one; both delays land in it): one line, "interrupted", the
    SIGINT exit status, no traceback (there was a 40-line one from inside SciPy or ArviZ),
    no run folder."""
    script = Path(sys.executable).parent / "bayes-pmf"
    if command == "bayes-pmf" and not script.exists():
        pytest.skip("the console script is not installed next to this Python")
    argv = [sys.executable, "-m", "bayes_pmf"] if command != "bayes-pmf" else [str(script)]
    proc = subprocess.Popen([*argv, "fit", "--no-progress", "--out", str(tmp_path / "run")],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=sigint_as_default)
    time.sleep(after)
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode in (130, -signal.SIGINT), (proc.returncode, stderr[-2000:])
    assert "Traceback" not in stderr and stderr.strip().splitlines()[-1] == "interrupted", \
        stderr[-2000:]
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("raised", [
    "raise KeyboardInterrupt",
    # Ctrl-C inside a class body's __set_name__ (a CI run caught it in matplotlib's import)
    "class A:\n    def __set_name__(self, owner, name):\n        raise KeyboardInterrupt\n"
    "class B:\n    a = A()",
    "try:\n    raise KeyboardInterrupt\nexcept KeyboardInterrupt:\n    raise OSError('cleanup')",
])
def test_an_error_the_interrupt_caused_is_an_interrupt_too(raised):
    """Deterministic cases of the test above: the command's hook prints one line and
    exits by SIGINT for a bare KeyboardInterrupt and for errors it caused (it gave a
    traceback and status 1 for the wrapped one); any other error keeps its traceback."""
    def run(code):
        return subprocess.run([sys.executable, "-c", "from bayes_pmf._startup import "
                               "quiet_interrupt\nquiet_interrupt()\n" + code],
                              capture_output=True, text=True, timeout=60)

    proc = run(raised)
    assert proc.returncode in (130, -signal.SIGINT), (proc.returncode, proc.stderr)
    assert proc.stderr == "interrupted\n"
    other = run("raise OSError('disk full')")
    assert other.returncode == 1 and "Traceback" in other.stderr and "disk full" in other.stderr


# -- a disk that fills up ----------------------------------------------------------------

def test_a_full_disk_while_saving_a_model_is_one_line_and_leaves_nothing(tmp_path,
                                                                          monkeypatch):
    """No room for a model file (a 300 kB tmpfs in the first try, here a file system
    that reports 0 bytes free): the command says which file, how much it needed and
    what to do, in one line with status 2, and leaves no staging folder or lock. Before:
    h5py failed mid-write with a 30-line RuntimeError traceback, and more lines as its
    objects were freed."""
    import collections
    import shutil

    from bayes_pmf.cli.main import main

    rows = "".join(f"{u},{i},{(u * i) % 5 + 1}\n" for u in range(1, 30) for i in range(1, 12))
    data = _write(tmp_path, "r.csv", "user,item,rating\n" + rows)
    usage = collections.namedtuple("usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda path: usage(10**9, 10**9, 0))
    out = tmp_path / "out" / "run"
    with contextlib.redirect_stderr(io.StringIO()) as err:
        status = main(["fit", "--data", str(data), "--method", "als", "--no-progress",
                       "--no-figures", "--out", str(out)])
    said = err.getvalue().strip().splitlines()
    assert status == 2 and len(said) == 1, said
    assert said[0].startswith(f"bayes-pmf fit: error: cannot finish output folder {out}: "
                              "No space left on device (global-mean.nc holds "), said
    assert "(writing models/global-mean.nc): free space or choose another folder" in said[0]
    assert list((tmp_path / "out").iterdir()) == []


@pytest.mark.parametrize(("error", "said"), [
    (OSError(28, "No space left on device", "STAGING/metrics.json"),
     "No space left on device (writing metrics.json)"),
    (RuntimeError("Can't close dataset (file write failed: filename = 'STAGING/models/m.nc', "
                  "errno = 28, error message = 'No space left on device')"),
     "No space left on device (writing models/m.nc)"),
    (OSError(122, "Disk quota exceeded", "STAGING/figures/pit.png"),
     "Disk quota exceeded (writing figures/pit.png)")])
def test_a_write_that_fails_for_want_of_room_names_the_file(tmp_path, error, said):
    """However the failed write is told (the OS's OSError, or h5py's RuntimeError text),
    the run folder's error names the reason and the file as the run calls it; any other
    error passes unchanged."""
    with pytest.raises(bp.ConfigError) as caught:
        with RunFolder(tmp_path / "run") as run:
            if isinstance(error, OSError):
                error.filename = error.filename.replace("STAGING", str(run.staging))
            else:
                error.args = (error.args[0].replace("STAGING", str(run.staging)),)
            raise error
    assert str(caught.value).startswith(f"cannot finish output folder {tmp_path / 'run'}: "
                                        f"{said}"), caught.value
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(ValueError, match="not a write"):
        with RunFolder(tmp_path / "run"):
            raise ValueError("not a write")


def test_a_path_in_a_message_keeps_its_words(tmp_path, monkeypatch):
    """The command line writes a setting's name as its flag (out -> --out), but not
    inside a path: `--out out/run` onto a file said "output folder --out/run is a
    file"."""
    from bayes_pmf.cli.main import main

    monkeypatch.chdir(tmp_path)
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "run").write_text("a file")
    with contextlib.redirect_stderr(io.StringIO()) as err:
        assert main(["fit", "--method", "als", "--out", "out/run"]) == 2
    assert err.getvalue() == ("bayes-pmf fit: error: output folder out/run is a file, not a "
                              "folder; choose another path\n")


def test_a_model_file_is_written_when_its_compressed_size_may_fit(tmp_path, monkeypatch,
                                                                  synthetic):
    """The room check refuses only what cannot fit: with free space between half the
    arrays' bytes and all of them (zlib made a run's files 0.70-1.00 of their arrays)
    the file is written, and the same check with less than half refuses it."""
    import collections
    import shutil

    from bayes_pmf.result import idata as idata_io

    result = bp.fit_als(synthetic.data, bp.PMFSpec(n_factors=2), progress=False)
    arrays = sum(getattr(result.idata, g).nbytes for g in result.idata.groups())
    usage = collections.namedtuple("usage", "total used free")
    for share, written in ((0.8, True), (0.4, False)):
        monkeypatch.setattr(shutil, "disk_usage",
                            lambda path, share=share: usage(10**9, 0, int(share * arrays)))
        path = tmp_path / f"m{share}.nc"
        if written:
            bp.save_result(result, path)
        else:
            with pytest.raises(bp.ResultFileError, match="No space left on device"):
                bp.save_result(result, path)
        assert path.exists() == written
    assert idata_io.SMALLEST_COMPRESSION == 0.5
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m0.8.nc"]

import warnings

import numpy as np
import pandas as pd
import pytest

from bayes_pmf import RatingScale, RatingsData, RatingsDataError


def test_ids_round_trip_and_counts(small_frame):
    data = RatingsData.from_frame(small_frame)
    assert (data.n_users, data.n_items, data.n_ratings) == (3, 3, 7)
    back = data.to_frame()
    pd.testing.assert_frame_equal(back[["user", "item", "rating"]],
                                  small_frame.reset_index(drop=True), check_dtype=False)
    assert list(data.user_counts) == [2, 2, 3]
    assert data.ingest.as_dict() == {"n_read": 7, "n_used": 7, "rejected": {}}


def test_sparse_views_match_triples(small_frame):
    data = RatingsData.from_frame(small_frame)
    by_user = data.by_user
    assert by_user.shape == (3, 3)
    for u, i, r in zip(data.user_idx, data.item_idx, data.rating):
        assert by_user[u, i] == r
        assert data.by_item[i, u] == r
    assert by_user.nnz == data.by_item.nnz == 7


def test_caller_frame_is_not_modified(small_frame):
    before = small_frame.copy()
    RatingsData.from_frame(small_frame, duplicates="mean")
    pd.testing.assert_frame_equal(small_frame, before)


def test_scale_inferred_with_half_star_step(small_frame):
    data = RatingsData.from_frame(small_frame)
    assert data.scale == RatingScale(1.0, 5.0, 0.5)


@pytest.mark.parametrize(
    "column, value, message",
    [
        ("rating", np.nan, "missing (NaN) ratings"),
        ("rating", np.inf, "infinite ratings"),
        ("rating", "five", "non-numeric ratings"),
        ("rating", 7.0, "outside the declared scale"),
        ("rating", 2.25, "off the scale's grid"),
        ("user", None, "missing ids"),
    ],
)
def test_bad_values_raise_naming_column_row_and_value(small_frame, column, value, message):
    frame = small_frame.astype({column: object})
    frame.loc[4, column] = value
    with pytest.raises(RatingsDataError) as info:
        RatingsData.from_frame(frame, scale=(0.5, 5.0, 0.5))
    text = str(info.value)
    assert message in text
    assert repr(column) in text
    assert "row 4" in text


def test_drop_invalid_counts_every_row(small_frame):
    frame = small_frame.astype({"rating": object})
    frame.loc[0, "rating"] = np.nan
    frame.loc[1, "rating"] = "bad"
    frame.loc[2, "rating"] = 9.0
    data = RatingsData.from_frame(frame, scale=(0.5, 5.0, 0.5), invalid="drop")
    assert data.n_ratings == 4
    report = data.ingest
    assert report.n_read == 7
    assert report.rejected == {
        "non-numeric ratings": 1,
        "missing (NaN) ratings": 1,
        "ratings outside the declared scale": 1,
    }
    assert report.n_used + sum(report.rejected.values()) == report.n_read


def test_missing_columns_listed(small_frame):
    with pytest.raises(RatingsDataError, match=r"lacks column\(s\) \['stars'\]"):
        RatingsData.from_frame(small_frame, rating_col="stars")


def test_empty_input_rejected():
    with pytest.raises(RatingsDataError, match="empty"):
        RatingsData.from_frame(pd.DataFrame({"user": [], "item": [], "rating": []}))


def test_duplicates_error_by_default_and_merge_options(small_frame):
    frame = pd.concat([small_frame, small_frame.iloc[[0]].assign(rating=2.0)],
                      ignore_index=True)
    with pytest.raises(RatingsDataError, match=r"user 'a' rated item 1 in rows \[0, 7\]"):
        RatingsData.from_frame(frame)
    mean = RatingsData.from_frame(frame, duplicates="mean")
    last = RatingsData.from_frame(frame, duplicates="last")
    pick = lambda d: d.to_frame().set_index(["user", "item"]).loc[("a", 1), "rating"]
    assert pick(mean) == pytest.approx(3.0)
    assert pick(last) == 2.0
    assert mean.n_ratings == 7
    assert mean.ingest.rejected == {"duplicate pairs merged (mean)": 1}


def test_a_merged_mean_between_levels_is_rounded_to_the_grid_and_said():
    """duplicates='mean' of 3 and 4 stars is 3.5, which is no level of a whole-star
    scale: it used to be kept (off the declared grid), or, with the scale inferred after
    merging, to turn every rating's grid into half stars. The mean is rounded to the
    nearer level, a tie upwards, and the run says so; the grid is inferred from the
    ratings as given; 'last' and means on the grid are untouched."""
    frame = pd.DataFrame({"user": [1, 1, 2, 2, 3, 4, 5, 5, 5],
                          "item": [1, 1, 2, 2, 3, 4, 5, 5, 5],
                          "rating": [3, 4, 4, 5, 1, 2, 1, 2, 2]})
    for scale in ((1, 5, 1), None):
        with pytest.warns(UserWarning, match=r"3 merged mean ratings fell between levels "
                          r"of the scale's grid \(steps of 1\) and were rounded to the "
                          r"nearer level, a tie upwards \(e.g. user 1, item 1: 3.5 -> 4\); "
                          r"pass duplicates='last'") as said:
            data = RatingsData.from_frame(frame, scale=scale, duplicates="mean")
        assert said[0].message.setting == "duplicates"  # a front end names its own flag
        assert data.scale.step == 1
        rating = data.to_frame().set_index("user")["rating"]
        # 3.5 -> 4 and 4.5 -> 5 (ties up); 5/3 -> 2 (nearer level)
        assert rating.to_dict() == {1: 4.0, 2: 5.0, 3: 1.0, 4: 2.0, 5: 2.0}
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        last = RatingsData.from_frame(frame, duplicates="last")
        assert last.to_frame().set_index("user")["rating"][1] == 4.0
        on_grid = pd.DataFrame({"user": [1, 1, 2], "item": [1, 1, 2], "rating": [3, 5, 1]})
        assert sorted(RatingsData.from_frame(on_grid, scale=(1, 5, 1),
                                             duplicates="mean").rating) == [1.0, 4.0]


def test_mixed_id_types_rejected(small_frame):
    frame = small_frame.astype({"item": object})
    frame.loc[2, "item"] = "x"
    with pytest.raises(RatingsDataError, match="mixes id types"):
        RatingsData.from_frame(frame)


def test_boolean_ratings_rejected(small_frame):
    with pytest.raises(RatingsDataError, match="boolean"):
        RatingsData.from_frame(small_frame.assign(rating=True))


def test_take_compacts_vocabularies_and_keeps_ids(small_frame):
    data = RatingsData.from_frame(small_frame)
    part = data.take(data.user_ids[data.user_idx] != "a")
    assert list(part.user_ids) == ["b", "c"]
    assert part.n_ratings == 5
    assert set(part.to_frame()["user"]) == {"b", "c"}


def test_fingerprint_depends_on_content(small_frame):
    first = RatingsData.from_frame(small_frame).fingerprint
    again = RatingsData.from_frame(small_frame.copy()).fingerprint
    changed = RatingsData.from_frame(
        small_frame.assign(rating=small_frame.rating.replace(4.0, 4.5)))
    assert first == again
    assert changed.fingerprint != first


def test_scale_round_and_clip():
    scale = RatingScale(0.5, 5.0, 0.5)
    np.testing.assert_allclose(scale.round(np.array([-1.0, 3.26, 3.24, 7.0])), [0.5, 3.5, 3.0, 5.0])
    np.testing.assert_allclose(scale.to_unit(np.array([0.5, 5.0])), [0.0, 1.0])
    assert len(scale.values()) == 10


# -- partitioned data: a directory or a glob of files read as one table ---------------

def _write_parts(folder, parts):
    folder.mkdir()
    for name, text in parts.items():
        (folder / name).write_text(text)
    return folder


def test_a_directory_or_glob_of_partitions_reads_as_the_concatenated_file(tmp_path):
    import bayes_pmf as bp

    header = "userId,movieId,rating\n"
    rows = ["1,10,4.0", "2,10,3.5", "1,11,5.0", "3,12,2.0", "2,12,4.5"]
    whole = tmp_path / "all.csv"
    whole.write_text(header + "\n".join(rows) + "\n")
    folder = _write_parts(tmp_path / "parts", {
        "part-0.csv": header + "\n".join(rows[:2]) + "\n",
        "part-1.csv": header + "\n".join(rows[2:]) + "\n",
        "README.md": "not ratings, not read\n",
    })
    one = bp.load_ratings(whole)
    for source in (folder, str(folder / "part-*.csv")):
        parts = bp.load_ratings(source)
        assert parts.fingerprint == one.fingerprint and parts.n_ratings == 5
        assert "2 files" in parts.source


def test_parquet_partitions_read_as_the_same_csv(tmp_path):
    """Parquet files (pyarrow) are read as text, then typed and checked as a CSV's
    cells: the same data as the CSV of the same rows, a bad cell named by file and row,
    a file that is not Parquet refused by name."""
    pytest.importorskip("pyarrow")

    import bayes_pmf as bp
    from bayes_pmf.errors import RatingsFileError

    frame = pd.DataFrame({"user": [1, 2, 3, 4], "item": [10, 10, 11, 12],
                          "rating": [4.0, 3.5, 5.0, 2.0], "timestamp": [5, 6, 7, 8]})
    whole = tmp_path / "all.csv"
    frame.to_csv(whole, index=False)
    folder = tmp_path / "parquet"
    folder.mkdir()
    frame.iloc[:2].to_parquet(folder / "a.parquet")
    frame.iloc[2:].set_index("user").to_parquet(folder / "b.parquet")  # ids as an index
    parts, one = bp.load_ratings(folder), bp.load_ratings(whole)
    assert parts.fingerprint == one.fingerprint and parts.user_ids.dtype == np.int64
    assert parts.source == "file:parquet (2 files) [parquet]"
    text = frame.astype(str)
    text.loc[3, "rating"] = "oops"
    text.iloc[2:].to_parquet(folder / "b.parquet")
    with pytest.raises(RatingsDataError, match=r"b\.parquet:2.*'oops'"):
        bp.load_ratings(folder)
    (folder / "b.parquet").write_text("user,item,rating\n")
    with pytest.raises(RatingsFileError, match=r"cannot read .*b\.parquet as Parquet"):
        bp.load_ratings(folder)


def test_partition_errors_name_the_file_and_its_line(tmp_path):
    import bayes_pmf as bp

    header = "userId,movieId,rating\n"
    folder = _write_parts(tmp_path / "bad", {
        "a.csv": header + "1,10,4.0\n",
        "b.csv": header + "2,10,4.0\n3,11,oops\n",
    })
    with pytest.raises(RatingsDataError, match=r"b\.csv:3.*oops"):
        bp.load_ratings(folder)
    # the same pair in two partitions is a duplicate, named in both files
    dup = _write_parts(tmp_path / "dup", {"a.csv": header + "1,10,4.0\n",
                                          "b.csv": header + "1,10,3.0\n"})
    with pytest.raises(RatingsDataError, match=r"a\.csv:2|b\.csv:2"):
        bp.load_ratings(dup)


def test_partitions_with_other_layouts_or_nothing_to_read_are_refused(tmp_path):
    import bayes_pmf as bp
    from bayes_pmf.errors import RatingsFileError

    mixed = _write_parts(tmp_path / "mixed", {"a.csv": "userId,movieId,rating\n1,10,4\n",
                                              "b.csv": "1\t10\t4\t881250949\n"})
    with pytest.raises(RatingsFileError, match="same layout"):
        bp.load_ratings(mixed)
    empty = _write_parts(tmp_path / "empty", {"notes.md": "nothing\n"})
    with pytest.raises(RatingsFileError, match="without ratings files"):
        bp.load_ratings(empty)
    with pytest.raises(RatingsFileError, match="no file matches"):
        bp.load_ratings(str(tmp_path / "nowhere-*.csv"))

import numpy as np
import pytest

from bayes_pmf import PMFSpec, RatingScale, RatingsFileError, load_ratings, make_synthetic
from bayes_pmf.data.files import detect_layout


def test_embedded_movielens_counts(movielens):
    assert (movielens.n_ratings, movielens.n_users, movielens.n_items) == (100_004, 671, 9_066)
    assert movielens.scale == RatingScale(0.5, 5.0, 0.5)
    assert movielens.timestamp is not None
    assert "title" in movielens.item_info.columns
    assert movielens.item_info.loc[1, "title"].startswith("Toy Story")


@pytest.mark.parametrize(
    "name, layout, scale",
    [
        ("u.data", "movielens-100k", RatingScale(1, 5, 1)),
        ("u1.base", "movielens-100k", RatingScale(1, 5, 1)),  # detected from content
        ("ratings.dat", "movielens-1m", None),
        ("ratings.csv", "movielens (ratings.csv)", RatingScale(0.5, 5, 0.5)),
    ],
)
def test_movielens_layouts_detected_from_content(fixtures, name, layout, scale):
    assert detect_layout(fixtures / name).name.startswith(layout)
    data = load_ratings(fixtures / name)
    expected = 48 if name == "u1.base" else 60
    assert data.n_ratings == expected
    assert data.timestamp is not None
    if scale is not None:
        assert data.scale == scale


def test_all_layouts_read_the_same_ratings(fixtures):
    tables = [load_ratings(fixtures / n).to_frame().sort_values(["user", "item"])
              for n in ("u.data", "ratings.dat")]
    np.testing.assert_array_equal(tables[0]["rating"], tables[1]["rating"])
    np.testing.assert_array_equal(tables[0]["user"], tables[1]["user"])


def test_generic_csv_with_other_names_and_delimiter(fixtures):
    data = load_ratings(fixtures / "custom.csv")
    assert data.n_ratings == 60
    assert str(data.user_ids[0]).startswith("c")


def test_file_errors_are_clear(tmp_path):
    with pytest.raises(RatingsFileError, match="not found"):
        load_ratings(tmp_path / "nope.csv")
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    with pytest.raises(RatingsFileError, match="empty"):
        load_ratings(empty)
    header_only = tmp_path / "header.csv"
    header_only.write_text("user,item,rating\n")
    with pytest.raises(RatingsFileError, match="no rows"):
        load_ratings(header_only)
    unnamed = tmp_path / "unnamed.csv"
    unnamed.write_text("a,b,c\n1,2,3\n")
    with pytest.raises(RatingsFileError, match="which column holds the user ids"):
        load_ratings(unnamed)


def test_file_row_errors_name_the_line(tmp_path):
    path = tmp_path / "bad.csv"
    path.write_text("user,item,rating\n1,1,4\n1,2,abc\n2,1,3\n")
    with pytest.raises(Exception, match=r"line 3 \(value 'abc'\)"):
        load_ratings(path)


def test_synthetic_is_seeded_and_follows_the_model():
    spec = PMFSpec(n_factors=2, sigma=0.25, sigma_u=1.0, sigma_v=1.0)
    first = make_synthetic(300, 200, 8000, spec, rng=5)
    again = make_synthetic(300, 200, 8000, spec, rng=5)
    other = make_synthetic(300, 200, 8000, spec, rng=6)
    np.testing.assert_array_equal(first.data.rating, again.data.rating)
    assert not np.array_equal(first.data.rating, other.data.rating)
    data = first.data
    assert (data.n_users, data.n_items, data.n_ratings) == (300, 200, 8000)
    pairs = data.user_idx * data.n_items + data.item_idx
    assert len(np.unique(pairs)) == len(pairs)
    noise = data.rating - first.true_mean(data.user_idx, data.item_idx)
    assert noise.std() == pytest.approx(0.25, rel=0.05)
    # Power-law activity: the busiest tenth of users holds far more than a tenth of ratings.
    counts = np.sort(data.user_counts)[::-1]
    assert counts[:30].sum() > 0.25 * data.n_ratings

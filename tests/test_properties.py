"""Property-based tests (hypothesis) over random rating tables: nothing is lost, ids
round-trip, splits partition exactly, predictions come back aligned with the input."""

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import bayes_pmf as bp
from bayes_pmf.result.result import point_result

SETTINGS = settings(max_examples=60, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow])

user_ids = st.one_of(st.integers(-10**6, 10**6), st.text(min_size=1, max_size=6))
half_stars = st.integers(1, 10).map(lambda k: k / 2)


@st.composite
def rating_tables(draw, min_rows=1, max_rows=60):
    """Distinct (user, item) pairs with ids of one type per column, half-star ratings."""
    kind = draw(st.sampled_from(["int", "str"]))
    ids = st.integers(0, 30) if kind == "int" else st.text("abcdefg", min_size=1, max_size=3)
    pairs = draw(st.lists(st.tuples(ids, st.integers(0, 25)), min_size=min_rows,
                          max_size=max_rows, unique=True))
    ratings = draw(st.lists(half_stars, min_size=len(pairs), max_size=len(pairs)))
    return pd.DataFrame({"user": [p[0] for p in pairs], "item": [f"m{p[1]}" for p in pairs],
                         "rating": ratings})


def triples(frame: pd.DataFrame) -> set:
    return set(zip(frame["user"], frame["item"], frame["rating"]))


@SETTINGS
@given(rating_tables())
def test_ids_round_trip_and_nothing_is_lost(table):
    data = bp.RatingsData.from_frame(table, scale=(0.5, 5, 0.5))
    assert data.ingest.n_read == data.ingest.n_used == len(table)
    back = data.to_frame()
    pd.testing.assert_frame_equal(back[["user", "item", "rating"]].astype(object),
                                  table.astype(object), check_dtype=False)
    np.testing.assert_array_equal(data.encode_users(data.user_ids), np.arange(data.n_users))
    assert data.by_user.nnz == len(table)
    # the CSR view holds exactly the triples
    rows = np.repeat(np.arange(data.n_users), np.diff(data.by_user.indptr))
    assert set(zip(data.user_ids[rows], data.item_ids[data.by_user.indices],
                   data.by_user.data)) == triples(table)


@SETTINGS
@given(rating_tables(), st.lists(st.sampled_from(["nan", "inf", "off", "text"]),
                                 max_size=8))
def test_dropped_rows_are_counted_by_reason(table, bad_kinds):
    bad_values = {"nan": np.nan, "inf": np.inf, "off": 9.0, "text": "x"}
    table = table.astype({"rating": object})
    for position, kind in enumerate(bad_kinds[: len(table) - 1]):
        table.loc[position, "rating"] = bad_values[kind]
    data = bp.RatingsData.from_frame(table, scale=(0.5, 5, 0.5), invalid="drop")
    report = data.ingest
    assert report.n_read == len(table)
    assert report.n_read == report.n_used + sum(report.rejected.values())
    assert report.n_used == data.n_ratings


@SETTINGS
@given(rating_tables(min_rows=4), st.floats(0.05, 0.95), st.integers(0, 2**32 - 1))
def test_random_split_partitions_exactly(table, fraction, seed):
    data = bp.RatingsData.from_frame(table)
    n_test = int(round(fraction * len(table)))
    if n_test in (0, len(table)):
        with pytest.raises(bp.ConfigError):
            bp.random_split(data, fraction, rng=seed)
        return
    split = bp.random_split(data, fraction, rng=seed)
    train, test = triples(split.train.to_frame()), triples(split.test.to_frame())
    assert not train & test
    assert train | test == triples(table)
    assert split.train.n_ratings + split.test.n_ratings == len(table)
    assert split.describe()["cold_users"] == len(
        set(split.test.user_ids) - set(split.train.user_ids))


@SETTINGS
@given(rating_tables(min_rows=3), st.integers(2, 3), st.integers(0, 1000))
def test_kfold_test_parts_partition_the_data(table, k, seed):
    data = bp.RatingsData.from_frame(table)
    if k > len(table):
        return
    tests = [triples(s.test.to_frame()) for s in bp.kfold(data, k, rng=seed)]
    assert sum(len(t) for t in tests) == len(table)
    assert set().union(*tests) == triples(table)


@SETTINGS
@given(rating_tables(min_rows=2), st.integers(0, 1000), st.integers(1, 3))
def test_predictions_align_with_input_order_and_ids(table, seed, d):
    data = bp.RatingsData.from_frame(table)
    rng = np.random.default_rng(seed)
    params = bp.FactorParams(rng.normal(size=(data.n_users, d)),
                             rng.normal(size=(data.n_items, d)), 3.0)
    result = point_result(params, bp.PMFSpec(n_factors=d), data, method="hand", seed=seed)
    order = rng.permutation(len(table))
    pairs = table.iloc[order][["user", "item"]]
    pairs.index = rng.permutation(len(pairs)) * 7  # any index is kept as is
    frame = result.predict_frame(pairs)
    assert list(frame.index) == list(pairs.index)
    assert list(frame["user"]) == list(pairs["user"])
    users = data.encode_users(pairs["user"])
    items = data.encode_items(pairs["item"])
    expected = 3.0 + np.einsum("pk,pk->p", params.user_factors[users],
                               params.item_factors[items])
    np.testing.assert_allclose(frame["mean"].to_numpy(), expected)

import numpy as np
import pytest

from bayes_pmf import ConfigError, kfold, per_user_split, random_split, temporal_split


def _triples(data):
    frame = data.to_frame()
    return set(zip(frame["user"], frame["item"], frame["rating"]))


def _assert_partition(split, data):
    train, test = _triples(split.train), _triples(split.test)
    assert not train & test
    assert train | test == _triples(data)
    assert split.train.n_ratings + split.test.n_ratings == data.n_ratings


def test_random_split_partitions_and_is_reproducible(movielens):
    split = random_split(movielens, 0.1, rng=0)
    _assert_partition(split, movielens)
    assert split.test.n_ratings == 10_000
    again = random_split(movielens, 0.1, rng=0)
    np.testing.assert_array_equal(split.test.rating, again.test.rating)
    other = random_split(movielens, 0.1, rng=1)
    assert _triples(other.test) != _triples(split.test)


def test_random_split_counts_cold_start(movielens_split):
    info = movielens_split.describe()
    # Movies rated once whose only rating fell in the test part.
    assert info["cold_items"] > 0
    assert info["cold_ratings"] == int(np.sum(movielens_split.cold_user_mask
                                              | movielens_split.cold_item_mask))
    users = movielens_split.test.user_ids[movielens_split.test.user_idx]
    assert info["cold_user_ratings"] == int(np.sum(~np.isin(users, movielens_split.train.user_ids)))


def test_per_user_split_keeps_every_user_in_train(movielens):
    split = per_user_split(movielens, 0.2, rng=0)
    _assert_partition(split, movielens)
    assert split.describe()["cold_users"] == 0
    leave = per_user_split(movielens, None, leave_k_out=2, rng=0)
    counts = leave.test.to_frame().groupby("user").size()
    assert counts.max() == 2
    assert leave.train.n_users == movielens.n_users


def test_temporal_split_puts_latest_in_test(movielens):
    split = temporal_split(movielens, 0.1)
    _assert_partition(split, movielens)
    assert split.train.timestamp.max() <= split.test.timestamp.min()


def test_kfold_folds_partition_the_data(synthetic):
    folds = list(kfold(synthetic.data, 4, rng=2))
    tests = [_triples(f.test) for f in folds]
    assert sum(len(t) for t in tests) == synthetic.data.n_ratings
    assert set().union(*tests) == _triples(synthetic.data)
    for fold in folds:
        _assert_partition(fold, synthetic.data)


@pytest.mark.parametrize("fraction", [0, 1, -0.1, 1.5])
def test_bad_fraction_rejected(synthetic, fraction):
    with pytest.raises(ConfigError, match="test_fraction must be in"):
        random_split(synthetic.data, fraction)


def test_temporal_needs_timestamps(synthetic):
    with pytest.raises(ConfigError, match="timestamps"):
        temporal_split(synthetic.data)

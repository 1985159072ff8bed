"""Held-out splits of a ratings set, each seeded and each reporting its cold start.

Every split returns a :class:`Split`: train and test :class:`RatingsData` (vocabularies
compacted to the ids present in each part) that partition the input ratings exactly.

Cold start: a test rating whose user or item has no training rating cannot be predicted
from learned factors. No split drops such ratings; each :class:`Split` counts them
(``cold_users``, ``cold_items``, ``cold_ratings``), and evaluation scores them with an
explicit fallback (see ``unknown=`` in prediction).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

import numpy as np

from ..errors import ConfigError, check_seed, plain_scalar
from .ratings import RatingsData


@dataclass(frozen=True)
class Split:
    train: RatingsData
    test: RatingsData
    method: str
    settings: dict

    @property
    def cold_user_mask(self) -> np.ndarray:
        """Test ratings whose user never appears in training."""
        return self.train.encode_users(self.test.user_ids[self.test.user_idx]) < 0

    @property
    def cold_item_mask(self) -> np.ndarray:
        return self.train.encode_items(self.test.item_ids[self.test.item_idx]) < 0

    def describe(self) -> dict:
        cold_u, cold_i = self.cold_user_mask, self.cold_item_mask
        return {
            "method": self.method,
            **self.settings,
            "n_train": self.train.n_ratings,
            "n_test": self.test.n_ratings,
            "train_users": self.train.n_users,
            "train_items": self.train.n_items,
            "cold_users": int(len(np.unique(self.test.user_idx[cold_u]))),
            "cold_items": int(len(np.unique(self.test.item_idx[cold_i]))),
            "cold_ratings": int(np.sum(cold_u | cold_i)),
            "cold_user_ratings": int(cold_u.sum()),
            "cold_item_ratings": int(cold_i.sum()),
        }


def _check_fraction(test_fraction: float) -> None:
    if not (isinstance(test_fraction, (int, float)) and 0 < test_fraction < 1):
        raise ConfigError(f"test_fraction must be in (0, 1), got {test_fraction!r}")


def _seed_of(rng) -> int | None:
    return int(rng) if isinstance(rng, (int, np.integer)) else None


COLD_USER_POLICIES = ("keep", "error")


def _make(data: RatingsData, test_mask: np.ndarray, method: str, settings: dict,
          cold_users: str = "keep") -> Split:
    """The split; with ``cold_users="error"``, a ConfigError if some user's ratings all
    landed in the test part (by default they are kept and counted as cold start)."""
    if cold_users not in COLD_USER_POLICIES:
        raise ConfigError(f"cold_users must be one of {COLD_USER_POLICIES}, got {cold_users!r}")
    n_test = int(test_mask.sum())
    if n_test == 0 or n_test == len(test_mask):
        raise ConfigError(
            f"{method} split of {len(test_mask)} ratings left "
            f"{'no test' if n_test == 0 else 'no training'} ratings; change the fraction"
        )
    if cold_users == "error":
        in_train = np.bincount(data.user_idx[~test_mask], minlength=data.n_users)
        stranded = np.flatnonzero(in_train == 0)
        if len(stranded):
            raise ConfigError(
                f"{method} split leaves {len(stranded)} user(s) with no training ratings, "
                f"e.g. user {plain_scalar(data.user_ids[stranded[0]])!r}; use per_user_split "
                f"(keeps >= 1 training rating per user) or cold_users='keep' to score them "
                f"as cold start")
    return Split(data.take(~test_mask), data.take(test_mask), method, settings)



def random_split(data: RatingsData, test_fraction: float = 0.1, rng=0, *,
                 cold_users: str = "keep") -> Split:
    """Hold out exactly round(test_fraction * N) ratings chosen uniformly at random.

    Users or items whose only ratings land in test become cold-start cases (counted);
    ``cold_users="error"`` refuses a split that strands a user instead.
    """
    _check_fraction(test_fraction)
    check_seed(rng)
    generator = np.random.default_rng(rng)
    n_test = int(round(test_fraction * data.n_ratings))
    test_mask = np.zeros(data.n_ratings, dtype=bool)
    test_mask[generator.permutation(data.n_ratings)[:n_test]] = True
    return _make(data, test_mask, "random",
                 {"test_fraction": test_fraction, "seed": _seed_of(rng)}, cold_users)


def per_user_split(
    data: RatingsData,
    test_fraction: float | None = 0.1,
    *,
    leave_k_out: int | None = None,
    min_train: int = 1,
    rng=0,
) -> Split:
    """Hold out a fraction (or exactly ``leave_k_out``) of each user's ratings.

    Each user keeps at least ``min_train`` training ratings (users with too few ratings
    keep all of theirs in train), so no test user is cold; items can still be cold.
    """
    if (test_fraction is None) == (leave_k_out is None):
        raise ConfigError("give exactly one of test_fraction or leave_k_out")
    if test_fraction is not None:
        _check_fraction(test_fraction)
    if leave_k_out is not None and (not isinstance(leave_k_out, int) or leave_k_out < 1):
        raise ConfigError(f"leave_k_out must be a positive integer, got {leave_k_out!r}")
    if min_train < 1:
        raise ConfigError(f"min_train must be >= 1, got {min_train}")
    check_seed(rng)
    generator = np.random.default_rng(rng)
    # Random order within each user: sort by (user, random key); rank = position in user.
    key = generator.random(data.n_ratings)
    order = np.lexsort((key, data.user_idx))
    counts = data.user_counts
    starts = np.r_[0, np.cumsum(counts)[:-1]]
    rank = np.empty(data.n_ratings, dtype=np.int64)
    rank[order] = np.arange(data.n_ratings) - np.repeat(starts, counts)
    if leave_k_out is not None:
        n_out = np.full(data.n_users, leave_k_out)
    else:
        n_out = np.round(test_fraction * counts).astype(np.int64)
    n_out = np.clip(n_out, 0, np.maximum(counts - min_train, 0))
    test_mask = rank < n_out[data.user_idx]
    settings = {"test_fraction": test_fraction, "leave_k_out": leave_k_out,
                "min_train": min_train, "seed": _seed_of(rng)}
    return _make(data, test_mask, "per-user", settings)


def temporal_split(data: RatingsData, test_fraction: float = 0.1, *,
                   cold_users: str = "keep") -> Split:
    """The latest ``test_fraction`` of ratings by timestamp are the test set (ties broken
    by input order, so the split is deterministic). Needs timestamps."""
    _check_fraction(test_fraction)
    if data.timestamp is None:
        raise ConfigError("temporal split needs timestamps; load data with a timestamp column")
    n_test = int(round(test_fraction * data.n_ratings))
    order = np.argsort(data.timestamp, kind="stable")
    test_mask = np.zeros(data.n_ratings, dtype=bool)
    test_mask[order[data.n_ratings - n_test:]] = True
    cutoff = data.timestamp[order[data.n_ratings - n_test]]
    return _make(data, test_mask, "temporal",
                 {"test_fraction": test_fraction, "cutoff_timestamp": cutoff.item()},
                 cold_users)


def kfold(data: RatingsData, k: int = 5, rng=0, *, cold_users: str = "keep") -> Iterator[Split]:
    """k random folds; fold f is the test set of the f-th split. Folds partition the data."""
    if not isinstance(k, int) or k < 2:
        raise ConfigError(f"k must be an integer >= 2, got {k!r}", setting="k")
    if k > data.n_ratings:
        raise ConfigError(f"k must be at most the number of ratings to fold "
                          f"({data.n_ratings}), got {k}", setting="k")
    check_seed(rng)
    generator = np.random.default_rng(rng)
    fold_of = np.empty(data.n_ratings, dtype=np.int64)
    fold_of[generator.permutation(data.n_ratings)] = np.arange(data.n_ratings) % k
    for fold in range(k):
        yield _make(data, fold_of == fold, "k-fold",
                    {"k": k, "fold": fold, "seed": _seed_of(rng)}, cold_users)

import numpy as np
import pytest

import bayes_pmf as bp
from bayes_pmf.analysis.recommend import model_scores, popularity_scores, ranking_metrics


@pytest.fixture()
def tiny():
    train = bp.RatingsData.from_arrays(["u", "u", "v", "v", "w"], ["a", "b", "a", "c", "d"],
                                       [5, 3, 4, 2, 1], scale=(1, 5, 1))
    test = bp.RatingsData.from_arrays(["u", "u", "v"], ["c", "d", "b"], [5, 4, 2],
                                      scale=(1, 5, 1))
    return train, test


def test_metrics_by_hand(tiny):
    train, test = tiny
    # items in train: a, b, c, d. Fixed scores: d > c > b > a.
    scores = lambda user: np.array([0.0, 1.0, 2.0, 3.0])
    result = ranking_metrics(scores, train, test, k=2, threshold=4)
    # Only u has relevant items {c, d}; u saw a, b, so top-2 = [d, c]: perfect.
    assert result["n_users"] == 1
    assert result["precision@2"] == 1.0 and result["recall@2"] == 1.0
    assert result["ndcg@2"] == pytest.approx(1.0) and result["map@2"] == 1.0
    assert result["catalog_coverage"] == 0.5
    reverse = ranking_metrics(lambda user: np.array([3.0, 2.0, 0.0, 1.0]), train, test, k=1,
                              threshold=4)
    # u's unseen items are c (0) and d (1): top-1 = d, relevant -> hit; recall 1/2.
    assert reverse["recall@1"] == 0.5 and reverse["hit_rate@1"] == 1.0
    miss = ranking_metrics(lambda user: np.array([0.0, 0.0, 1.0, 0.0]), train, test, k=2,
                           threshold=5)
    # relevant {c}; top-2 of unseen [c, d] by score = [c, d]: hit at rank 1.
    assert miss["ndcg@2"] == pytest.approx(1.0) and miss["precision@2"] == 0.5


def test_seen_items_never_recommended(tiny):
    train, test = tiny
    result = ranking_metrics(popularity_scores(train), train, test, k=4, threshold=4)
    # u has seen a and b; only c and d can be in its list, so precision@4 <= 2/4.
    assert result["precision@4"] == 0.5


def test_model_scores_align_with_predictions(synthetic):
    als = bp.als_result(bp.fit_als(synthetic.data, synthetic.spec, progress=False),
                        synthetic.data)
    scores = model_scores(als, synthetic.data)(3)
    expected = als.predict(np.full(synthetic.data.n_items, 3), synthetic.data.item_ids)
    np.testing.assert_allclose(scores, expected)

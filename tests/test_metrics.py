import numpy as np
import pytest

from bayes_pmf import ConfigError, RatingsData, mae, rmse, rmse_by_activity
from bayes_pmf.engines.als import fit_global_mean, fit_item_mean, fit_user_mean


def test_rmse_mae_by_hand():
    actual = np.array([1.0, 2.0, 4.0])
    predicted = np.array([2.0, 2.0, 2.0])
    assert rmse(actual, predicted) == pytest.approx(np.sqrt(5 / 3))
    assert mae(actual, predicted) == pytest.approx(1.0)
    with pytest.raises(ConfigError, match="NaN"):
        rmse(actual, np.array([1.0, np.nan, 2.0]))


def test_rmse_by_activity_buckets():
    actual = np.array([3.0, 3.0, 3.0, 3.0])
    predicted = np.array([4.0, 3.0, 1.0, 3.0])
    counts = np.array([0, 3, 7, 500])
    table = rmse_by_activity(actual, predicted, counts).set_index("bucket")
    assert table.loc["0 (cold)", "rmse"] == 1.0
    assert table.loc["1-5", "rmse"] == 0.0
    assert table.loc["6-10", "rmse"] == 2.0
    assert table.loc[">160", "n_test"] == 1
    assert table.loc["11-20", "n_test"] == 0
    assert list(table.index)[1:] == ["1-5", "6-10", "11-20", "21-40", "41-80", "81-160", ">160"]


def test_mean_baselines_by_hand(small_frame):
    data = RatingsData.from_frame(small_frame)
    assert fit_global_mean(data).predict(["a"], [9])[0] == pytest.approx(23 / 7)
    assert fit_user_mean(data).predict(["c"], [1])[0] == pytest.approx(3.0)
    assert fit_item_mean(data).predict(["a"], [3])[0] == pytest.approx(2.75)
    fallback = fit_user_mean(data).predict(["zed"], [1], unknown="prior")[0]
    assert fallback == pytest.approx(23 / 7)

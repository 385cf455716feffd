"""floss_core/stats.py and fmt.py: the statistics and number formats the summaries, views, report and CLI share."""
import math

import pandas as pd
import pytest

from floss_core import fmt, stats


@pytest.mark.parametrize("value, missing", [(None, True), (pd.NA, True), (math.nan, True), (float("nan"), True),
                                            (pd.NaT, True), (0, False), (0.0, False), (math.inf, False),
                                            ("nan", False), (False, False)])
def test_is_missing(value, missing):
    assert stats.is_missing(value) is missing


def test_mean_and_quantile_skip_missing_values():
    assert stats.mean([1.0, None, 3.0, math.nan, pd.NA]) == 2.0
    assert math.isnan(stats.mean([None, math.nan]))
    assert stats.quantile([1.0, 2.0, 3.0, 4.0, 5.0], 0.25) == 2.0 and stats.quantile([7.0], 0.75) == 7.0
    assert math.isnan(stats.quantile([], 0.5))


def test_success_rate_is_the_rate_and_its_wilson_interval():
    assert stats.success_rate(5, 10) == (0.5, *stats.wilson_interval(5, 10))
    assert stats.wilson_interval(5, 10) == pytest.approx((0.2366, 0.7634), abs=1e-4)
    assert all(math.isnan(x) for x in stats.success_rate(0, 0))


def test_finite_or_nan():
    assert stats.finite_or_nan(3) == 3.0 and math.isnan(stats.finite_or_nan(None))


@pytest.mark.parametrize("seconds, text", [(0.534, "0.53 s"), (42, "42 s"), (600, "10.0 min"), (7200, "2.0 h"),
                                           (math.inf, "∞"), (math.nan, "-"), (None, "-")])
def test_duration(seconds, text):
    assert fmt.duration(seconds) == text

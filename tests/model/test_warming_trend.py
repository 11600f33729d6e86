"""The multi-week warming-trend measurement (benchmarks/warming_trend.py) on the real 2013 weeks: a warming of
+3 F a week accumulating over consecutive weeks passes the trend threshold learned from the reference weeks inside
the reference's season, the real unmodified weeks do not, and extrapolating the seasonal expectation past the
reference's calendar alarms on real weeks (why the rule was not merged into the monitor)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pytest

from benchmarks.warming_trend import departure, fit_seasonal, measure, running


@pytest.fixture(scope="module")
def found() -> dict[str, Any]:
    return measure([4], r2=0.85, period="sweep", columns=["temp", "dewp"])


def _variant(found: dict[str, Any], scope: str) -> dict[str, Any]:
    return next(v for v in found["variants"] if v["scope"] == scope)


def test_the_seasonal_expectation_explains_the_weather_not_the_schedule(found: dict[str, Any]) -> None:
    assert found["r2"]["temp"] > 0.9 and found["r2"]["dewp"] > 0.85
    assert found["r2"]["hour"] < 0.5 and found["r2"]["pressure"] < 0.5
    assert 3 < found["sd"]["temp"] < 8   # a weekly mean's weather: several F around its season


def test_a_warming_week_after_week_alarms_inside_the_season_and_real_weeks_do_not(found: dict[str, Any]) -> None:
    inside = _variant(found, "in span")
    assert inside["control_alarms"] == {} and inside["later_alarms"] == {}
    caught = [name for name, moved in inside["warmings"].items() if moved]
    assert {"2013-03-18 +12 F", "2013-03-18 +15 F"} <= set(caught)
    assert all(moved[0].split()[1].startswith("+") for moved in inside["warmings"].values() if moved)  # warmer


def test_extrapolating_the_season_alarms_on_real_weeks(found: dict[str, Any]) -> None:
    everywhere = _variant(found, "all")
    assert everywhere["control_alarms"] or everywhere["later_alarms"]


def test_one_warm_week_moves_one_term_of_the_running_mean() -> None:
    weeks = pd.date_range("2013-01-07", periods=20, freq="7D", tz="UTC")
    day = (weeks + pd.Timedelta(days=3.5)).dayofyear.to_numpy()
    rng = np.random.default_rng(3)
    means = pd.Series(55 - 22 * np.cos(2 * np.pi * (day - 20) / 365.25) + rng.normal(0, 4, len(weeks)), index=weeks)
    seasonal = fit_seasonal(means)
    warm = means.copy()
    warm.iloc[-1] += 12
    single = departure(seasonal, weeks[-4:], warm.iloc[-4:].to_numpy()).mean()
    steady = departure(seasonal, weeks[-4:], (means.iloc[-4:] + [3, 6, 9, 12]).to_numpy()).mean()
    base = departure(seasonal, weeks[-4:], means.iloc[-4:].to_numpy()).mean()
    assert single - base == pytest.approx(12 / 4 / seasonal.sd)
    assert steady - base == pytest.approx(7.5 / seasonal.sd)
    assert running(seasonal.loo, 4).notna().sum() == len(weeks) - 3

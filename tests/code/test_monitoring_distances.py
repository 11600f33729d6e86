"""The distances calibration computes on counts equal Evidently's own stat tests (what the live report runs), and a
reference week drawn again does not pass a threshold learned from itself."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from pipelines.config import parse_params
from pipelines.monitor.calibration import calibrate, evidently_distance, leave_one_out, window_draws
from pipelines.monitor.distances import ReferenceSide, code_column, distance
from support.params import params_dict


def _direct(reference: pd.Series, current: pd.Series, numeric: bool) -> float:
    coded = code_column(reference, [current], numeric)
    return distance(coded, ReferenceSide.of(coded, coded.counts(coded.reference)), coded.counts(coded.windows[0]))


@pytest.mark.parametrize("case", ["continuous", "ties", "missing_and_infinite", "constant_reference", "shifted"])
def test_wasserstein_on_counts_is_evidentlys(case):
    rng = np.random.default_rng(3)
    reference = pd.Series(rng.normal(50, 10, 3000))
    current = pd.Series(rng.normal(52, 12, 700))
    if case == "ties":  # weather is recorded to 0.1 or whole degrees: many equal values
        reference, current = reference.round(0), current.round(0)
    elif case == "missing_and_infinite":
        reference[::7] = np.nan
        current[::5] = np.nan
        current[3] = np.inf
    elif case == "constant_reference":  # Evidently's norm floor of 0.001
        reference = pd.Series(np.full(500, 4.0))
    elif case == "shifted":
        current = current + 40
    assert _direct(reference, current, True) == pytest.approx(evidently_distance("wasserstein", reference, current),
                                                              rel=1e-9, abs=1e-12)


@pytest.mark.parametrize("case", ["same_categories", "unseen_category", "missing", "one_category"])
def test_jensen_shannon_on_counts_is_evidentlys(case):
    rng = np.random.default_rng(5)
    reference = pd.Series(rng.choice(["AA", "B6", "DL", "UA"], 2000, p=[0.4, 0.3, 0.2, 0.1]))
    current = pd.Series(rng.choice(["AA", "B6", "DL", "UA"], 500, p=[0.25, 0.25, 0.25, 0.25]))
    if case == "unseen_category":  # in the window only: a category the reference never had
        current[:50] = "ZZ"
    elif case == "missing":
        reference[::9] = None
        current[::4] = None
    elif case == "one_category":
        current = pd.Series(["AA"] * 300)
    assert _direct(reference, current, False) == pytest.approx(
        evidently_distance("jensenshannon", reference, current), rel=1e-9, abs=1e-12)


def test_the_reference_without_a_window_is_its_counts_minus_the_windows():
    """Leaving a window's rows out of the reference by subtracting counts gives the distance to the rest."""
    rng = np.random.default_rng(7)
    reference = pd.Series(rng.integers(0, 40, 2000).astype(float))
    inside = np.zeros(len(reference), dtype=bool)
    inside[:300] = True
    current = pd.Series(rng.integers(5, 45, 400).astype(float))
    coded = code_column(reference, [current], True)
    rest = coded.counts(coded.reference) - coded.counts(coded.reference[inside])
    direct = distance(coded, ReferenceSide.of(coded, rest), coded.counts(coded.windows[0]))
    assert direct == pytest.approx(evidently_distance("wasserstein", reference[~inside], current), rel=1e-9)


def test_a_window_is_drawn_as_live_then_resampled(tmp_path):
    params = parse_params(params_dict(tmp_path, {"monitor.window_sample_rows": 100,
                                                 "monitor.calibration_resamples": 4}))
    draws = window_draws(250, params.monitor, 3)
    assert len(draws) == 4 and all(len(d) == 100 for d in draws)
    assert len(set(draws[0])) == 100            # the live-sized sample: no row twice
    assert any(len(set(d)) < 100 for d in draws[1:])  # bootstrap draws: rows drawn with replacement
    assert window_draws(60, params.monitor, 3)[0].tolist() == list(range(60))  # a small window is used whole


def _weeks(weeks: int = 10, rows: int = 400, extreme: int = 6) -> pd.DataFrame:
    """Weekly windows of one numeric column; week `extreme` sits well above the others."""
    rng = np.random.default_rng(11)
    frames = []
    for week in range(weeks):
        start = pd.Timestamp("2013-01-07", tz="UTC") + pd.Timedelta(days=7 * week)
        x = rng.normal(2.0 if week == extreme else 0.3 * rng.standard_normal(), 1.0, rows)
        frames.append(pd.DataFrame({"time_hour": start + pd.to_timedelta(np.arange(rows) % 168, unit="h"),
                                    "c": "A", "x": x, "probability": 0.3 + 0.0 * x}))
    return pd.concat(frames, ignore_index=True)


@pytest.mark.parametrize("resamples", [1, 8])
def test_the_extreme_reference_week_drawn_again_stays_under_its_threshold(tmp_path, resamples):
    """The threshold of ~10 weekly windows at 0.95 is the highest week's value. With one draw per week, that week
    drawn again (a bootstrap of its rows) passes it about half the time; with the prediction bound of eight draws,
    it stays under."""
    params = parse_params(params_dict(tmp_path, {
        "features.categorical": ["c"], "features.numeric": ["x"], "features.time_parts": [],
        "monitor.min_window_rows": 50, "monitor.window_sample_rows": 400, "monitor.calibration_resamples": resamples}))
    period = _weeks()
    calibration = calibrate(period, period, params.features, "time_hour", params.monitor, {"c": 0.0, "x": 1.0},
                            {"c": ["A"]})
    week = period.iloc[6 * 400:7 * 400]
    rest = period.drop(week.index)
    rng = np.random.default_rng(0)
    passes = [evidently_distance("wasserstein", rest["x"], week["x"].iloc[rng.integers(0, 400, 400)])
              > calibration.columns["x"] for _ in range(60)]
    if resamples == 1:
        assert 0.2 < np.mean(passes) < 0.8
    else:
        assert np.mean(passes) < 0.1
    assert calibration.resamples == resamples
    estimate = leave_one_out(calibration, params.monitor)
    assert estimate is not None and estimate.windows == 10
    assert 0 <= estimate.low <= estimate.rate <= estimate.high <= 1
    # The extreme week, judged by the thresholds of the nine others, is beyond them: the honest rate is not 0.
    assert estimate.by_check.get("data_drift", 0) >= 1 and estimate.alarms >= 1

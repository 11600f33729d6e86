"""The drift calibration on a reference of known variation (known thresholds), the importance weighting, and the
routing of data-quality faults away from retraining."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from pipelines.config import parse_params
from pipelines.contracts import (
    ColumnDrift,
    MissingShare,
    NewCategories,
    PredictionDrift,
    RangeCheck,
    WindowSummary,
)
from pipelines.monitor.calibration import (
    MIN_DISTANCE,
    calibrate,
    calibration_start,
    conformal_quantile,
    drift_index,
    gain_shares,
    prediction_bound,
    reference_windows,
)
from pipelines.monitor.decision import decide_retrain
from pipelines.monitor.drift import alarm_reasons
from support.monitoring import window_record
from support.params import params_dict

WEEKS = 8
ROWS = 200


@pytest.fixture
def params(tmp_path):
    return parse_params(params_dict(tmp_path, {
        "features.categorical": ["c"], "features.numeric": ["x", "y"], "features.time_parts": [],
        "monitor.window_days": 7, "monitor.min_window_rows": 50, "monitor.window_sample_rows": 10_000,
        "monitor.calibration_quantile": 0.5, "monitor.calibration_resamples": 1}))


@pytest.mark.parametrize(("values", "quantile", "expected"), [
    (list(range(1, 20)), 0.95, 19),      # ceil(20 x 0.95) = 19th of 19
    (list(range(1, 20)), 0.5, 10),       # ceil(10) = 10th
    (list(range(1, 11)), 0.95, 10),      # ceil(10.45) = 11 > 10: the largest
    ([3.0, float("nan"), 1.0], 0.5, 3.0),  # NaN ignored: ceil(1.5) = 2nd of [1, 3]
])
def test_conformal_quantile(values, quantile, expected):
    assert conformal_quantile(values, quantile) == expected


def test_prediction_bound_is_conformal_with_enough_values_and_gaussian_with_few():
    many = [float(v) for v in range(1, 21)]                   # 20 >= 0.95 / 0.05: the conformal quantile
    assert prediction_bound(many, 0.95) == conformal_quantile(many, 0.95) == 20
    few = [float(v) for v in range(7)]                        # mean 3, sd sqrt(14/3): t(0.95, 6) = 1.9432
    expected = 3 + stats.t.ppf(0.95, 6) * np.sqrt(14 / 3) * np.sqrt(1 + 1 / 7)
    assert prediction_bound(few, 0.95) == pytest.approx(expected) and expected == pytest.approx(7.487, abs=1e-3)
    assert prediction_bound([0.0] * 6 + [10.0], 0.95) == 10.0  # never below a value already seen
    assert prediction_bound([0.04, float("nan")], 0.95) == 0.04
    assert np.isnan(prediction_bound([], 0.95))


def _period() -> pd.DataFrame:
    """Eight Monday-aligned weeks. x: the same 200 values moved by +i in week i (known variation); y: the same
    values every week (no variation); c: category "B" on i% of week i's rows; x missing on 10% of week 3."""
    rng = np.random.default_rng(0)
    base = rng.normal(size=ROWS)
    frames = []
    for week in range(WEEKS):
        start = pd.Timestamp("2013-01-07", tz="UTC") + pd.Timedelta(days=7 * week)
        x = base + week
        if week == 3:
            x = np.where(np.arange(ROWS) < 20, np.nan, x)
        frames.append(pd.DataFrame({
            "time_hour": start + pd.to_timedelta(np.arange(ROWS) % (7 * 24), unit="h"),
            "c": np.where(np.arange(ROWS) < 2 * week, "B", "A"), "x": x, "y": base,
            "probability": 0.2 + 0.01 * week + 0.0 * base}))
    return pd.concat(frames, ignore_index=True)


def test_a_reference_of_known_variation_gives_known_thresholds(params):
    period = _period()
    weights = {"c": 0.2, "x": 0.7, "y": 0.1}
    calibration = calibrate(period, period, params.features, "time_hour", params.monitor, weights, {"c": ["A"]})
    assert calibration.windows == WEEKS == len(reference_windows(period, "time_hour", params.monitor))
    # x: each week against the other seven, normed Wasserstein computed here with scipy, not Evidently.
    expected = []
    for week in range(WEEKS):
        in_week = (period["time_hour"] - pd.Timestamp("2013-01-07", tz="UTC")).dt.days // 7 == week
        current, rest = period.loc[in_week, "x"].dropna(), period.loc[~in_week, "x"].dropna()
        expected.append(stats.wasserstein_distance(rest, current) / np.std(rest))
    assert calibration.values["columns"]["x"] == pytest.approx(expected, abs=1e-5)
    # Quantile 0.5 of 8 windows: the ceil(9 x 0.5) = 5th smallest.
    assert calibration.columns["x"] == pytest.approx(sorted(expected)[4], abs=1e-6)
    # y never varies between weeks: its distances are 0 and its threshold the noise floor.
    assert calibration.values["columns"]["y"] == [0.0] * WEEKS
    assert calibration.columns["y"] == MIN_DISTANCE
    # Missing x: 10% of week 3, so every other week's rise is 0 - 20/1400; the 5th smallest is that.
    assert calibration.missing_rise["x"] == pytest.approx(-20 / 1400, abs=1e-6)
    # Category "B" (outside the vocabulary ["A"]) on 0, 1, ..., 7 % of the weeks' rows: the 5th smallest is 4%.
    assert calibration.values["new_categories"]["c"] == pytest.approx([w * 2 / ROWS for w in range(WEEKS)])
    assert calibration.new_categories["c"] == pytest.approx(4 * 2 / ROWS)
    # The weekly means of y are all equal; x's run from its week 0 to week 7 mean.
    assert calibration.means["y"][0] == pytest.approx(calibration.means["y"][1])
    assert calibration.means["x"][1] - calibration.means["x"][0] == pytest.approx(7, abs=0.2)
    assert calibration.drift_index > 0 and calibration.weights == weights


def test_calibration_needs_two_reference_windows(params):
    period = _period().head(ROWS)
    with pytest.raises(ValueError, match="at least 2 reference windows of monitor.window_days=7"):
        calibrate(period, period, params.features, "time_hour", params.monitor, {"c": 1.0}, {"c": ["A"]})


def test_the_drift_index_counts_each_column_by_the_models_reliance():
    thresholds = {"important": 0.25, "unused": 0.5}
    weights = {"important": 0.9, "unused": 0.1}
    assert drift_index({"important": 0.5, "unused": 5.0}, thresholds, weights) == pytest.approx(0.9 * 2 + 0.1 * 10)
    # A column the model never uses adds nothing, however far it moves.
    assert drift_index({"important": 0.25, "unused": 500.0}, thresholds, {"important": 1.0, "unused": 0.0}) == 1.0
    # A big shift of the important column alone passes an index threshold of ~1 (every column at its threshold).
    assert drift_index({"important": 1.0, "unused": 0.0}, thresholds, weights) > 3


class _Booster:
    def feature_importance(self, importance_type: str) -> list[float]:
        assert importance_type == "gain"
        return [30.0, 50.0, 0.0, 20.0]


def test_gain_shares_are_over_the_monitored_columns():
    shares = gain_shares(dict(zip(["c", "x", "y", "day_of_week"], _Booster().feature_importance("gain"), strict=True)),
                         ["c", "x", "y"])
    assert shares == {"c": 0.375, "x": 0.625, "y": 0.0}


def _summary(*, drifted: bool = False, index: float = 0.5, missing: bool = False, unit: bool = False,
             new: bool = False, beyond: bool = False, rows: int = 5000) -> WindowSummary:
    return WindowSummary(
        rows=rows, first="2013-09-02T00:00:00+00:00", last="2013-09-08T23:00:00+00:00", model_tags=["m:1"],
        drift_share=0.5 if drifted else 0.0, drifted_columns=["hour"] if drifted else [],
        columns={"hour": ColumnDrift(score=0.9 if drifted else 0.01, method="wasserstein", threshold=0.03,
                                     drifted=drifted, weight=0.16)},
        prediction_drift=PredictionDrift(score=0.1, method="wasserstein", threshold=0.9, drifted=False,
                                         mean_current=0.2, mean_reference=0.2),
        missing={"temp": MissingShare(reference=0.0, current=0.3 if missing else 0.0, surge=missing,
                                      threshold=0.02)},
        new_categories={"carrier": NewCategories(share=0.1 if new else 0.0, examples=["Q9"] if new else [],
                                                 surge=new, threshold=0.02)},
        ranges={"pressure": RangeCheck(outside=1.0 if unit else 0.0, outside_threshold=0.02,
                                       mean=30.0 if unit else 1017.0, mean_band=[990.0, 1040.0],
                                       out_of_range=unit, unit_change=unit,
                                       beyond=1.0 if unit else 0.13 if beyond else 0.0, beyond_threshold=0.02,
                                       observed=[990.0, 1040.0], beyond_range=unit or beyond)},
        drift_index=index, drift_index_threshold=0.7)


def _judged(summary: WindowSummary, params) -> WindowSummary:
    summary.reasons = alarm_reasons(summary, params.monitor)
    return summary


END = datetime(2013, 9, 9, tzinfo=UTC)


def test_drift_alarms_and_retrains(params):
    summary = _judged(_summary(drifted=True, index=5.0), params)
    assert summary.quality_reasons == [] and summary.retrain_reasons[0].kind == "data_drift"
    assert summary.retrain_reasons[0].text.startswith("data drift")
    assert "hour (x30.0 its threshold, gain share 16%)" in summary.retrain_reasons[0].text
    assert decide_retrain(summary, END, None, params.monitor).retrain is True


def test_a_drifted_column_under_the_index_is_reported_without_alarm(params):
    summary = _judged(_summary(drifted=True, index=0.6), params)
    assert summary.drifted_columns == ["hour"] and summary.drift is False
    assert decide_retrain(summary, END, None, params.monitor).reason == "no alarm"


@pytest.mark.parametrize(("fault", "words", "kind"), [
    ({"missing": True}, "missing-value surge in temp 0.0% -> 30.0%", "missing_surge"),
    ({"new": True}, "categories outside the champion's vocabulary in carrier 10.0% of rows", "new_category"),
    ({"unit": True}, "mean far outside every reference window (a unit change?) in pressure mean 30", "mean_outside"),
])
def test_data_quality_faults_alarm_as_data_quality_and_refuse_the_retrain(params, fault, words, kind):
    summary = _judged(_summary(drifted=True, index=5.0, **fault), params)
    assert summary.drift is True
    assert len(summary.quality_reasons) == 1 and summary.quality_reasons[0].text.startswith("data quality: ")
    assert words in summary.quality_reasons[0].text
    assert summary.quality_reasons[0].kind == kind and summary.quality_reasons[0].quality
    assert summary.quality_reasons[0].label == f"data quality ({kind.replace('_', ' ')})"
    assert [reason.kind for reason in summary.retrain_reasons] == ["data_drift"]
    decision = decide_retrain(summary, END, None, params.monitor)
    assert decision.retrain is False and decision.reason.startswith("data quality fault, not retraining on it")
    # The stored JSON form, read back, is decided the same way.
    assert decide_retrain(WindowSummary.model_validate(summary.to_json_dict()), END, None, params.monitor) == decision


def test_values_beyond_the_observed_range_ask_for_a_retrain_not_a_quality_fault(params):
    """A summer's dew points past spring's highest: the model never saw them, and a retrain on this data learns them
    (not a fault: the mean moved within a unit's margin and no value lies far outside)."""
    summary = _judged(_summary(beyond=True), params)
    assert summary.drift is True and summary.quality_reasons == []
    assert [reason.kind for reason in summary.retrain_reasons] == ["beyond_range"]
    assert "pressure 13.0% of rows outside [990, 1040] (limit 2.0%)" in summary.retrain_reasons[0].text
    assert decide_retrain(summary, END, None, params.monitor).retrain is True


def test_values_far_outside_are_a_fault_not_also_new_values(params):
    summary = _judged(_summary(unit=True), params)
    assert "beyond_range" not in [reason.kind for reason in summary.reasons]
    assert decide_retrain(summary, END, None, params.monitor).retrain is False


def test_decide_retrain_itself_refuses_a_small_window(params):
    summary = _judged(_summary(drifted=True, index=5.0, rows=params.monitor.min_window_rows - 1), params)
    decision = decide_retrain(summary, END, None, params.monitor)
    assert decision.retrain is False and "monitor.min_window_rows=50" in decision.reason


def test_a_summary_stored_before_calibration_still_decides(params):
    """A window stored before calibration and kinds: no drift index, ranges, relations or weights, its reasons
    sentences; read back, it decides by the kind its words name."""
    stored = window_record(True, rows=5000).to_json_dict()
    for key in ("drift_index", "drift_index_threshold", "ranges", "relations", "integrity"):
        stored.pop(key, None)
    for column in stored["columns"].values():
        column.pop("weight")
    stored.update(drift=True, reasons=["data drift: 12 of 21 columns"])
    summary = WindowSummary.model_validate(stored)
    assert [reason.kind for reason in summary.reasons] == ["data_drift"]
    assert decide_retrain(summary, END, None, params.monitor).retrain is True


def test_auc_drops_are_the_weekly_spread_below_the_held_out_auc(params):
    """Week 1 ranks perfectly, week 2 at random: their drops from the AUC of both weeks together."""
    from sklearn.metrics import roc_auc_score

    from pipelines.monitor.calibration import auc_drops

    rng = np.random.default_rng(1)
    weeks = []
    for week, perfect in enumerate((True, False)):
        label = np.arange(ROWS) % 2
        probability = label * 0.5 + 0.25 if perfect else rng.random(ROWS)
        start = pd.Timestamp("2013-01-07", tz="UTC") + pd.Timedelta(days=7 * week)
        weeks.append(pd.DataFrame({"time_hour": start + pd.to_timedelta(np.arange(ROWS) % 168, unit="h"),
                                   "label": label, "probability": probability}))
    frame = pd.concat(weeks, ignore_index=True)
    overall = roc_auc_score(frame["label"], frame["probability"])
    drops = auc_drops(frame, "time_hour", params.monitor)
    assert drops == pytest.approx([overall - 1.0, overall - roc_auc_score(weeks[1]["label"],
                                                                          weeks[1]["probability"])])
    assert drops[0] < 0 < drops[1]


@pytest.mark.parametrize(("cap", "first_week"), [(3, 5), (8, 0), (20, 0), (None, 0)])
def test_calibration_starts_at_the_latest_full_windows(params, cap, first_week):
    """Eight full weeks, then a partial ninth (under min_window_rows: not counted as a window)."""
    period = _period()
    tail = pd.DataFrame({"time_hour": [pd.Timestamp("2013-03-04", tz="UTC")] * 10, "c": "A", "x": 0.0, "y": 0.0,
                         "probability": 0.2})
    stamps = pd.concat([period, tail], ignore_index=True)["time_hour"]
    monitor = params.monitor.model_copy(update={"calibration_windows": cap})
    assert calibration_start(stamps, monitor) == first_week * ROWS

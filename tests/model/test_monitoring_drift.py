"""Real Evidently on real flights: no alarm on same-distribution traffic, a clear alarm on a constructed shift,
and live quality once outcomes arrive."""

from __future__ import annotations

import pytest

from pipelines.config import parse_params
from pipelines.monitor.drift import analyse_window, live_quality
from pipelines.monitor.log import predictions_frame
from pipelines.monitor.reference import sample_reference
from pipelines.prediction_log import LogRead, PredictionRecord
from tests.conftest import SMALL_WINDOW, params_dict
from tests.monitoring_support import into_week, log_records, shift, train_small

pytestmark = pytest.mark.model

OVERRIDES = {**SMALL_WINDOW, "monitor.reference_rows": 15000, "monitor.min_window_rows": 500}


@pytest.fixture(scope="module")
def setup(tmp_path_factory, small_table):
    root = tmp_path_factory.mktemp("drift")
    params = parse_params(params_dict(root, OVERRIDES))
    trained = train_small(root, params, small_table)
    reference = sample_reference(trained.train, params.features, "time_hour", params.monitor)
    reference = reference.assign(probability=trained.model.predict_proba(reference))
    # Held-out: training-split rows that are not in the reference sample.
    held_out = trained.train.drop(trained.train.sample(params.monitor.reference_rows,
                                                       random_state=params.monitor.seed).index)
    return params, trained, reference, held_out


def _window(params, trained, rows):
    records = log_records(rows, trained.model, params.features.raw_columns, "time_hour")
    log = LogRead([PredictionRecord.model_validate(record) for record in records])
    parsed = predictions_frame(log, params.features, "time_hour")
    assert parsed.skipped_total == 0
    return parsed.frame


def test_same_distribution_traffic_raises_no_alarm(setup):
    params, trained, reference, held_out = setup
    rows = into_week(held_out.sample(3000, random_state=7), "2013-09-02", "time_hour", 1, "same")
    window = _window(params, trained, rows)
    result = analyse_window(window, reference, params.features, "time_hour", params.monitor)
    summary = result.summary
    assert summary["drift"] is False, summary["reasons"]
    assert result.report.drift is False and result.report.drift_share == summary["drift_share"]
    for column in params.features.raw_columns:  # Evidently's MissingValueCount, on both datasets
        assert summary["missing"][column]["current"] == pytest.approx(window[column].isna().mean(), abs=1e-5)
        assert summary["missing"][column]["reference"] == pytest.approx(reference[column].isna().mean(), abs=1e-5)
    assert summary["drift_share"] < 0.15
    assert summary["prediction_drift"]["score"] < params.monitor.prediction_drift


def test_shifted_traffic_raises_a_clear_alarm_naming_the_columns(setup):
    params, trained, reference, held_out = setup
    rows = shift(into_week(held_out.sample(3000, random_state=8), "2013-09-02", "time_hour", 2, "shift"))
    summary = analyse_window(_window(params, trained, rows), reference, params.features, "time_hour",
                             params.monitor).summary
    assert summary["drift"] is True
    assert summary["drift_share"] >= params.monitor.drift_share
    assert {"temp", "distance", "dest", "carrier"} <= set(summary["drifted_columns"])
    assert summary["new_categories"]["dest"]["surge"] and summary["new_categories"]["dest"]["examples"] == ["XYZ"]
    assert any(reason.startswith("data drift") for reason in summary["reasons"])


def test_live_quality_compares_with_the_champion_figures(setup):
    params, trained, reference, held_out = setup
    rows = into_week(held_out.sample(2000, random_state=9), "2013-09-02", "time_hour", 3, "q")
    frame = _window(params, trained, rows)
    outcomes = rows[["request_id", "label"]].rename(columns={"label": "actual"})
    half = live_quality(frame, outcomes.iloc[:1000], {"roc_auc": 0.99}, params.monitor)
    assert half.model_dump(exclude_none=True) == {"labelled": 1000, "labelled_share": 0.5, "complete": False}
    summary = analyse_window(frame, reference, params.features, "time_hour", params.monitor,
                             outcomes=outcomes, expected={"roc_auc": 0.99, "log_loss": 0.5}).summary
    quality = summary["quality"]
    assert quality["complete"] and quality["labelled"] == 2000
    assert 0.5 < quality["metrics"]["roc_auc"] < 0.99
    assert quality["decayed"] is True
    assert any(reason.startswith("performance decay") for reason in summary["reasons"])


def test_a_missing_value_surge_is_an_alarm_naming_the_column(setup):
    params, trained, reference, held_out = setup
    rows = into_week(held_out.sample(2000, random_state=10), "2013-09-02", "time_hour", 5, "gap")
    window = _window(params, trained, rows)
    window.loc[window.index[: len(window) // 2], "temp"] = float("nan")  # half the temperatures stop arriving
    summary = analyse_window(window, reference, params.features, "time_hour", params.monitor).summary
    assert summary["missing"]["temp"]["surge"] is True
    assert summary["missing"]["temp"]["current"] == pytest.approx(window["temp"].isna().mean(), abs=1e-5)
    assert any(reason.startswith("missing-value surge") and "temp" in reason for reason in summary["reasons"])

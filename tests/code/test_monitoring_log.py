"""Unit tests of the pure monitoring pieces: the tolerant log reader, windows, the retrain decision, history."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from pipelines.config import parse_params
from pipelines.contracts import LiveQuality, Reason, RetrainRequest, WindowRecord
from pipelines.monitor.decision import decide_retrain
from pipelines.monitor.history import plot_history, summarise_history
from pipelines.monitor.log import predictions_frame
from pipelines.monitor.prediction_log import PredictionLog, prediction_record, read_prediction_log
from pipelines.monitor.replay import request_records, row_keys
from pipelines.monitor.windows import plan_windows
from support.monitoring import window_record
from support.params import params_dict


@pytest.fixture
def params(tmp_path):
    return parse_params(params_dict(tmp_path, {"monitor.min_window_rows": 2, "monitor.window_days": 7}))


def _record(params, request_id="a", time_hour="2013-09-02T10:00:00+00:00", **change):
    inputs = {name: "UA" for name in params.features.categorical}
    inputs.update({name: 1.0 for name in params.features.numeric})
    inputs["time_hour"] = time_hour
    record = prediction_record(request_id=request_id, ts="2024-01-01T00:00:00+00:00", model_tag="m:1",
                               inputs=inputs, probability=0.3, label=0, threshold=0.4)
    record.update(change)
    return record


def _write(directory, records, garbage=(), hour=1378044000.0, rotate_bytes=1 << 30):
    """Records through the service's writer (one write each, so size rotation can split them), then raw lines."""
    log = PredictionLog(directory, rotate_hourly=True, rotate_bytes=rotate_bytes, clock=lambda: hour)
    for record in records:
        log.write([record])
    path = log.path
    log.close()
    with open(path, "a") as handle:
        handle.writelines(line + "\n" for line in garbage)
    return path


def test_garbage_lines_are_counted_by_reason_and_skipped(params, tmp_path):
    bad_inputs = _record(params, "c")
    bad_inputs["inputs"]["distance"] = "far"
    path = _write(tmp_path, [_record(params, "a"), _record(params, "b"), bad_inputs,
                             _record(params, "e", time_hour="yesterday")],     # unparsable time
                  garbage=[json.dumps(_record(params, "t"))[:37],              # truncated line after a kill
                           json.dumps({"hello": "world"}),                     # wrong schema
                           json.dumps(_record(params, "p", probability="high")),  # wrong type
                           json.dumps(_record(params, "q", probability=1.7)),     # impossible probability
                           json.dumps(_record(params, "l", label=True)),          # a bool is not a label
                           "[1, 2]", ""])
    with open(path, "a") as handle:
        handle.write(json.dumps(_record(params, "z")))                         # torn last line: no newline
    parsed = predictions_frame(read_prediction_log(tmp_path), params.features, "time_hour")
    assert sorted(parsed.frame["request_id"]) == ["a", "b"]
    assert dict(parsed.skipped) == {"invalid_json": 1, "missing_request_id": 1, "bad_type_probability": 1,
                                    "bad_number_distance": 1, "bad_time": 1, "probability_out_of_range": 1,
                                    "bad_type_label": 1, "not_an_object": 1, "incomplete_line": 1}
    assert parsed.skipped_total == 9
    assert any(f"{path.name}:5: invalid_json" in example for example in parsed.examples)
    assert str(parsed.frame["time_hour"].dtype) == "datetime64[ns, UTC]"


def test_a_log_without_a_feature_skips_every_row_and_says_which(params, tmp_path):
    record = _record(params)
    del record["inputs"]["carrier"]
    _write(tmp_path, [record])
    parsed = predictions_frame(read_prediction_log(tmp_path), params.features, "time_hour")
    assert parsed.frame.empty
    assert parsed.skipped == {"inputs_missing_carrier": 1}


def test_a_request_logged_twice_keeps_its_latest_record_across_rotations(params, tmp_path):
    """A retried request lands in a later rotation (`.10` after `.9`): its latest answer is the one kept."""
    records = [_record(params, f"r{i}", ts=f"2024-01-01T00:00:{i:02d}+00:00") for i in range(40)]
    records.append(_record(params, "r3", ts="2024-01-01T00:01:00+00:00", probability=0.9))
    _write(tmp_path, records, rotate_bytes=1024)
    assert any(path.name.endswith(".10.jsonl") for path in tmp_path.iterdir())
    parsed = predictions_frame(read_prediction_log(tmp_path), params.features, "time_hour")
    assert len(parsed.frame) == 40
    assert parsed.frame.set_index("request_id").loc["r3", "probability"] == 0.9


def test_windows_wait_until_traffic_moves_past_them(params):
    """Ready once a window's worth of traffic (min_window_rows rows) is past its end plus the grace: one request
    for a flight far ahead does not move the clock (pipelines/monitor/windows.py; more in test_monitoring_windows)."""
    stamps = pd.to_datetime(["2013-09-02 01:00", "2013-09-03 00:00", "2013-09-08 23:00", "2013-09-09 07:00",
                             "2013-09-09 08:00", "2013-09-30 00:00"], utc=True)
    frame = pd.DataFrame({"time_hour": stamps})
    plans = plan_windows(frame, "time_hour", params.monitor)
    assert [(p.start.date().isoformat(), p.rows, p.ready) for p in plans] == [
        ("2013-09-02", 3, True), ("2013-09-09", 2, False), ("2013-09-30", 1, False)]
    assert plans[1].reason.startswith("still filling") and plans[2].reason.startswith("still filling")
    done = plan_windows(frame, "time_hour", params.monitor, done=[plans[0].start.isoformat()])
    assert not done[0].ready and done[0].reason == "already analysed"


def _summary(drift: bool) -> WindowRecord:
    return window_record(drift, rows=5000)


@pytest.mark.parametrize(("drift", "last", "expected", "why"), [
    (False, None, False, "no alarm"),
    (True, None, True, "data drift"),
    (True, "2013-09-09T00:00:00+00:00", False, "cooldown"),
    (True, "2013-08-01T00:00:00+00:00", True, "data drift"),
])
def test_retrain_decision(params, drift, last, expected, why):
    end = datetime(2013, 9, 16, tzinfo=UTC)
    decision = decide_retrain(_summary(drift), end, last, params.monitor)
    assert decision.retrain is expected
    assert why in decision.reason


def _stored(directory: Path, start: str, drift: bool, retrained: bool, auc: float | None) -> Path:
    """A window as the monitoring flow stores it (`WindowRecord.save`): the verdict plus the flow's bookkeeping."""
    record = window_record(
        drift, datetime.fromisoformat(start), retrain=RetrainRequest(started=retrained, reason="test"),
        quality=None if auc is None else LiveQuality(labelled=10, labelled_share=1.0, complete=True,
                                                     metrics={"roc_auc": auc}, expected={"roc_auc": 0.68}))
    return record.save(directory)


def test_history_marks_retrains(params, tmp_path):
    _stored(tmp_path, "2013-09-02T00:00:00+00:00", True, True, 0.61)
    _stored(tmp_path, "2013-08-26T00:00:00+00:00", False, False, None)
    history = summarise_history(WindowRecord.read_all(tmp_path))
    assert list(history["retrained"]) == [False, True]
    assert list(history["alarm"]) == [False, True]
    assert history["live_auc"].iloc[1] == pytest.approx(0.61) and np.isnan(history["live_auc"].iloc[0])
    figure = plot_history(history, params.monitor)
    assert figure.axes


def test_history_names_each_reason_by_its_kind_without_breaking_a_markdown_row(tmp_path):
    record = window_record(True, reasons=[
        Reason(kind="relation_broken", text="data quality: values no longer fit the other columns (...) in temp"),
        Reason(kind="data_drift", text="data drift: importance-weighted drift index 1.2 > calibrated 0.9 | x")])
    record.save(tmp_path)
    (stored,) = WindowRecord.read_all(tmp_path)
    assert stored.reasons == record.reasons and stored.drift
    history = summarise_history([stored])
    assert history["reasons"].iloc[0] == "data quality (relation broken); data drift"
    assert "|" not in history["reasons"].iloc[0]


def test_a_window_stored_before_reasons_had_kinds_is_read_with_the_kinds_its_words_name(params, tmp_path):
    """Old window-*.json files (reasons as sentences, `drift`, `quality_reasons`/`retrain_reasons`, the flow's
    extras untyped) stay readable: the history, the retry of a suppressed retrain and the decision read them."""
    old = window_record(True).to_json_dict()
    old.update(drift=True, reasons=[
        "data quality: categories outside the champion's vocabulary in carrier 9.0% of rows (limit 2.0%; e.g. Q9)",
        "data drift: importance-weighted drift index 1.60 > calibrated 0.90; beyond their reference spread: temp"],
        quality_reasons=["data quality: categories outside the champion's vocabulary in carrier 9.0% of rows"],
        retrain_reasons=["data drift: importance-weighted drift index 1.60 > calibrated 0.90"],
        retrain={"started": False, "reason": "data quality fault, not retraining on it: ..."})
    (tmp_path / "window-20130909.json").write_text(json.dumps(old))
    (record,) = WindowRecord.read_all(tmp_path)
    assert [reason.kind for reason in record.reasons] == ["new_category", "data_drift"]
    assert record.reasons[0].text == old["reasons"][0] and record.drift
    assert summarise_history([record])["reasons"].iloc[0] == "data quality (new category); data drift"
    decision = decide_retrain(record, datetime(2013, 9, 16, tzinfo=UTC), None, params.monitor)
    assert decision.retrain is False and decision.reason.startswith("data quality fault")


def test_replay_requests_carry_raw_fields_iso_time_and_stable_ids(params):
    frame = pd.DataFrame({"time_hour": pd.to_datetime(["2013-09-01 05:00", "2013-09-01 05:00"], utc=True),
                          "carrier": ["UA", "UA"], "flight": [1, 1], "origin": ["EWR", "EWR"]})
    for name in params.features.raw_columns:
        frame[name] = frame.get(name, pd.Series([None, 2.5]))
    keys = row_keys(frame, "time_hour", params.source.key_columns)  # carrier, flight, time_hour
    assert list(keys) == ["20130901T0500-UA-1", "20130901T0500-UA-1-1"]
    records = request_records(frame, params.features.raw_columns, "time_hour", keys)
    assert records[0]["time_hour"] == "2013-09-01T05:00:00+00:00"
    assert records[0]["distance"] is None and records[1]["distance"] == 2.5
    assert records[1]["request_id"] == "20130901T0500-UA-1-1"
    json.dumps(records)  # plain JSON values only


def test_replay_ids_follow_the_tables_own_keys_and_fit_the_service() -> None:
    """A user's table keys its rows by source.key_columns (or, without any, by time and position); an id past
    the service's REQUEST_ID_MAX is its digest, so the service never refuses a replayed row for its id."""
    from pipelines.config import REQUEST_ID_MAX

    frame = pd.DataFrame({"date": pd.to_datetime(["2017-01-01 06:00:42", "2017-01-01 06:00:42"], utc=True),
                          "idNum": ["17-000003", "17-000005"], "note": ["x" * 300, "x" * 300]})
    assert list(row_keys(frame, "date", ["idNum"])) == ["20170101T0600-17-000003", "20170101T0600-17-000005"]
    assert list(row_keys(frame, "date", [])) == ["20170101T0600-0", "20170101T0600-1"]
    long = row_keys(frame, "date", ["note"])
    assert long.str.len().max() <= REQUEST_ID_MAX and long.iloc[0] != long.iloc[1]  # digest, then made unique

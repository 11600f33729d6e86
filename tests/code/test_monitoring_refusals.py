"""Traffic the service refuses is monitored (#38 item 3): a refused body becomes one entry per row sent (the fields at
fault, the scheduled time as sent, never the values), the service's refusal log keeps them beside the prediction
log, and a window's refused share past `monitor.refused_surge` is a data-quality alarm naming the fields. Beside it
(item 2), outcomes that fit the probabilities worse than any held-out window are named: a label shift (data quality)
when the inputs did not move, calibration decay when they did."""

from __future__ import annotations

import orjson
import pandas as pd
import pytest

from pipelines import io as catalog
from pipelines.contracts import RefusedTraffic
from pipelines.monitor.drift import data_quality_reasons, refused_traffic
from pipelines.monitor.prediction_log import RefusalLog, read_refusals
from services.refusals import refused_rows
from support.monitoring import window_record

BATCH = {"flights": [{"time_hour": "2013-09-09T07:00:00Z", "distance": 500},
                     {"time_hour": "2013-09-09T08:00:00Z", "distance": -5, "carrier": "TOO LONG"},
                     {"time_hour": "2013-09-10T08:00:00Z", "distance": 700}]}


@pytest.fixture
def params(make_params):
    return make_params()


def test_a_refused_batch_becomes_one_entry_per_row_with_its_fields_at_fault():
    errors = [{"loc": ("flights", 1, "distance", "gt"), "msg": "x"}, {"loc": ("flights", 1, "carrier"), "msg": "x"}]
    rows = refused_rows(orjson.dumps(BATCH), errors, "flight", "flights", "time_hour")
    assert rows == [([], "2013-09-09T07:00:00Z"), (["carrier", "distance"], "2013-09-09T08:00:00Z"),
                    ([], "2013-09-10T08:00:00Z")]
    single = refused_rows(orjson.dumps({"flight": BATCH["flights"][1]}), [{"loc": ("flight", "distance")}],
                          "flight", "flights", "time_hour")
    assert single == [(["distance"], "2013-09-09T08:00:00Z")]
    assert refused_rows(b"{not json", [], "flight", "flights", "time_hour") == [(["body"], None)]
    assert refused_rows(b"[1, 2]", [], "flight", "flights", "time_hour") == [(["body"], None)]


def test_the_refusal_log_keeps_field_names_and_times_never_values(tmp_path):
    log = RefusalLog(tmp_path, rotate_hourly=True, rotate_bytes=1 << 20, clock=lambda: 1_378_710_000.0)
    log.record("/predict_batch", refused_rows(orjson.dumps(BATCH), [{"loc": ("flights", 1, "distance")}],
                                              "flight", "flights", "time_hour"))
    log.close()
    assert (tmp_path / catalog.REFUSAL_LOG_DIR).is_dir()
    read = read_refusals(tmp_path)
    assert [(r.fields, r.scheduled) for r in read.records] == [
        ([], "2013-09-09T07:00:00Z"), (["distance"], "2013-09-09T08:00:00Z"), ([], "2013-09-10T08:00:00Z")]
    assert {r.route for r in read.records} == {"/predict_batch"} and read.skipped_total == 0
    text = "".join(path.read_text() for path in (tmp_path / catalog.REFUSAL_LOG_DIR).rglob("*") if path.is_file())
    assert "TOO LONG" not in text and "-5" not in text  # the values sent are never written


def test_a_refused_share_past_the_limit_alarms_as_data_quality_naming_the_fields(params):
    monitor = params.monitor  # refused_surge 0.02
    refused = pd.DataFrame({"fields": [["distance"]] * 25 + [[]] * 5})
    traffic = refused_traffic(refused, 970, monitor)
    assert traffic == RefusedTraffic(rows=30, share=0.03, threshold=monitor.refused_surge,
                                     fields={"distance": 25, "(batch)": 5}, surge=True)
    calm = refused_traffic(pd.DataFrame({"fields": [["distance"]] * 5}), 995, monitor)
    assert calm.share == 0.005 and calm.surge is False
    assert refused_traffic(None, 1000, monitor) is None  # no refusal log read: nothing said
    assert refused_traffic(pd.DataFrame({"fields": []}), 1000, monitor).rows == 0
    reasons = data_quality_reasons(window_record(False, refused=traffic))
    assert [(r.kind, r.columns) for r in reasons] == [("refused", ["distance"])]
    assert reasons[0].quality and "refused 30 of the window's rows (3.0%, limit 2.0%" in reasons[0].text
    assert data_quality_reasons(window_record(False, refused=calm)) == []


# --- label faults (#38 item 2): named as such, data quality when the inputs did not move -----------------------------

def _labelled(drift: bool, beyond: bool):
    from pipelines.contracts import LabelCheck, LiveQuality

    check = LabelCheck(value=0.21, reference=0.01, departure=0.20, limit=0.08, beyond=beyond)
    quality = LiveQuality(labelled=6000, labelled_share=0.92, complete=True,
                          metrics={"roc_auc": 0.70, "log_loss": 0.74, "positive_rate": 0.41},
                          expected={"roc_auc": 0.72}, auc_drop=0.02, auc_drop_limit=0.06, decayed=False,
                          labels={"log_loss_excess": check})
    return window_record(drift, quality=quality)


def test_outcomes_that_moved_alone_are_a_label_shift_and_with_moved_inputs_calibration_decay(params):
    from pipelines.monitor.drift import alarm_reasons

    shifted = alarm_reasons(_labelled(False, beyond=True), params.monitor)
    assert [r.kind for r in shifted] == ["label_shift"] and shifted[0].quality
    assert "log loss over what its probabilities expect +0.210 (held-out +0.010, limit +0.080)" in shifted[0].text
    assert "observed positive rate 0.410" in shifted[0].text
    decayed = {r.kind: r.text for r in alarm_reasons(_labelled(True, beyond=True), params.monitor)}
    assert "calibration_decay" in decayed and "label_shift" not in decayed
    # The held-out windows are monitor.window_days long, not weeks on every table.
    assert "worse than on any held-out window: " in decayed["calibration_decay"]
    assert alarm_reasons(_labelled(False, beyond=False), params.monitor) == []


def test_a_performance_decay_names_the_window_to_window_drop_not_a_week(params):
    from pipelines.monitor.drift import alarm_reasons

    record = _labelled(False, beyond=False)
    decayed = record.model_copy(update={"quality": record.quality.model_copy(update={
        "metrics": {"roc_auc": 0.60, "log_loss": 0.74}, "auc_drop": 0.12, "decayed": True})})
    (reason,) = [r for r in alarm_reasons(decayed, params.monitor) if r.kind == "performance_decay"]
    assert "the champion's own calibrated window-to-window drop, whichever is larger" in reason.text

"""The monitoring flow's bookkeeping, events, review snapshot and dashboard, without a server: pure functions."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
import pytest

from flows import automations
from pipelines.contracts import MonitorState, RetrainBooking, RetrainRequest, WindowBooking
from pipelines.monitor import bookkeeping as book
from pipelines.monitor import dashboard as board
from support.monitoring import window_record

START = datetime(2013, 9, 9, tzinfo=UTC)
END = START + timedelta(days=7)


@pytest.fixture
def params(make_params):
    return make_params()


def _summary(drift: bool, **more):
    return window_record(drift, START, **more)


def test_a_drifted_window_is_booked_with_a_retrain_request_and_the_input_state_is_kept(params):
    state = MonitorState(windows={"2013-09-02T00:00:00+00:00": WindowBooking(drift=False, retrain=False)})
    before = state.model_copy(deep=True)
    booked = book.book_window(state, START, END, _summary(True), params.monitor)
    assert state == before
    assert booked.decision.retrain and booked.retrain.started is True
    assert booked.retrain.data_end == END.isoformat() and booked.retrain.event == book.DRIFT_DETECTED
    assert booked.state.windows[START.isoformat()] == WindowBooking(drift=True, retrain=True, rows=6512, analyses=1)
    assert list(booked.state.windows) == ["2013-09-02T00:00:00+00:00", START.isoformat()]
    # The alarm kinds it answers are kept with it: a back-off counts the gate's refusals per kind.
    assert booked.state.retrains == [RetrainBooking(window_end=END.isoformat(), reason=booked.decision.reason,
                                                    kinds=["data_drift", "prediction_drift"])]
    assert booked.retrain.kinds == ["data_drift", "prediction_drift"]


@pytest.mark.parametrize(("drift", "last_end", "trigger", "started", "why"), [
    (False, None, True, False, "no alarm"),
    (True, (END - timedelta(days=7)).isoformat(), True, False, "cooldown"),
    (True, (END - timedelta(days=60)).isoformat(), True, True, "data drift"),
    (True, None, False, False, "would retrain, trigger disabled"),
])
def test_cooldown_in_traffic_time_and_dry_runs(params, drift, last_end, trigger, started, why):
    state = MonitorState(retrains=[RetrainBooking(window_end=last_end, reason="x")] if last_end else [])
    booked = book.book_window(state, START, END, _summary(drift), params.monitor, trigger=trigger)
    assert booked.retrain.started is started
    assert why in booked.retrain.reason
    assert len(booked.state.retrains) == len(state.retrains) + started
    assert START.isoformat() in booked.state.windows  # booked either way: analysed once


def test_every_window_gets_an_analysed_event_and_only_a_requested_retrain_a_drift_event(params):
    booked = book.book_window(book.empty_state(), START, END, _summary(True), params.monitor)
    analysed, drift = book.window_events(_summary(True), START, END, booked.retrain)
    assert analysed.event == "flightops.window.analysed" and drift.event == "flightops.drift.detected"
    assert drift.resource["prefect.resource.id"] == "flightops.monitoring.window.20130909"
    assert drift.resource["flightops.window.end"] == END.isoformat()
    assert drift.resource["flightops.model.tag"] == "flight-delay:bbb"
    assert drift.related == [{"prefect.resource.id": "flightops.model.flight-delay:bbb",
                              "prefect.resource.role": "model", "prefect.resource.name": "flight-delay:bbb"}]
    assert drift.payload["window_end"] == END.isoformat() and drift.payload["model_tag"] == "flight-delay:bbb"
    assert drift.payload["reasons"] == [reason.text for reason in _summary(True).reasons]
    assert drift.payload["alarm_kinds"] == analysed.payload["alarm_kinds"] == ["data_drift", "prediction_drift"]
    assert analysed.payload["alarm"] is True and analysed.payload["retrain_requested"] is True
    assert analysed.payload["quality_reasons"] == [] and analysed.payload["log_skipped"] == {"invalid_json": 2,
                                                                                            "bad_time": 1}
    # All resource labels are strings (Prefect's Resource model requires it).
    assert all(isinstance(v, str) for v in drift.resource.values())
    clean = book.book_window(book.empty_state(), START, END, _summary(False), params.monitor)
    assert [e.event for e in book.window_events(_summary(False), START, END, clean.retrain)] == [
        "flightops.window.analysed"]


def test_the_automation_reacts_to_the_drift_event_with_the_window_end(params):
    from prefect.events.actions import RunDeployment

    deployment_id = uuid.uuid4()
    automation = automations.retrain_on_drift(deployment_id, params)
    assert automation.trigger.expect == {book.DRIFT_DETECTED}
    assert automation.trigger.match.model_dump() == {"prefect.resource.id": book.WINDOW_RESOURCE_PREFIX + "*"}
    assert automation.trigger.threshold == 1
    (action,) = automation.actions
    assert isinstance(action, RunDeployment) and action.deployment_id == deployment_id
    assert action.parameters["data_end"]["template"] == "{{ event.payload.window_end }}"
    # The payload key the template reads is the one the monitor writes.
    assert "window_end" in book.drift_event(_summary(True), START, END, "m").payload


def test_the_summary_line_says_alarm_why_and_which_model():
    line = board.summary_line(_summary(True), RetrainRequest(started=True, reason="drift"), "flight-delay:bbb",
                              "flights")
    assert line.startswith("**ALARM** for the window 2013-09-09 .. 2013-09-16 (model `flight-delay:bbb`")
    assert "data drift: 12 of 21 columns" in line and "Retraining requested" in line
    calm = board.summary_line(_summary(False), RetrainRequest(started=False, reason="no alarm"),
                              "flight-delay:bbb", "flights")
    assert calm.startswith("**No alarm**") and "no threshold passed" in calm and "Retraining: no (no alarm)" in calm


def test_the_summary_line_and_the_run_s_artifact_name_the_table_s_rows():
    """Live quality is said on the table's own rows (project.entity_plural), not on "flights" whatever the table."""
    from flows.monitoring import _artifact_markdown
    from pipelines.contracts import LiveQuality

    quality = LiveQuality(labelled=180, labelled_share=1.0, complete=True,
                          metrics={"roc_auc": 0.81, "log_loss": 0.5, "brier": 0.17}, expected={"roc_auc": 0.8})
    record = _summary(False, quality=quality)
    calm = RetrainRequest(started=False, reason="no alarm")
    line = board.summary_line(record, calm, "rain-classifier:a", "days")
    assert "on 180 labelled days (champion's test AUC 0.800)" in line and "flight" not in line
    page = _artifact_markdown(record, {"html": "w.html", "json": "w.json"}, calm, "days")
    assert "Live quality on 180 labelled days: ROC AUC 0.810" in page and "flight" not in page


def _drift_snapshot():
    from evidently import DataDefinition, Dataset, Report
    from evidently.metrics import MissingValueCount, ValueDrift
    from evidently.presets import DataDriftPreset

    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"temp": rng.normal(size=300), "probability": rng.random(300),
                          "request_id": [f"r{i}" for i in range(300)]})
    definition = DataDefinition(numerical_columns=["temp", "probability"])
    data = Dataset.from_pandas(frame[["temp", "probability"]], data_definition=definition)
    report = Report([DataDriftPreset(columns=["temp"]), ValueDrift(column="probability"),
                     MissingValueCount(column="temp")])
    return frame, report.run(current_data=data, reference_data=data, name="window-20130909")


def test_the_review_snapshot_is_dated_by_the_window_tagged_and_opens_with_the_summary(tmp_path):
    frame, drift = _drift_snapshot()
    outcomes = pd.DataFrame({"request_id": frame["request_id"], "actual": (frame["probability"] > 0.5).astype("int8")})
    quality = board.quality_report(frame, outcomes, min_labelled_share=0.8)
    summary = _summary(True)
    snapshot = board.review_snapshot(drift, quality, summary, RetrainRequest(started=True, reason="drift"),
                                     "flight-delay:bbb", START, "flights")
    model = snapshot.to_snapshot_model()
    assert model.timestamp == datetime(2013, 9, 9)
    assert model.tags == ["alarm", "retrain", "model:flight-delay:bbb"]
    assert model.metadata["rows"] == "6512" and model.metadata["skipped_log_lines"] == "3"
    assert model.metadata["reasons"].startswith("data drift")
    assert model.metadata["alarm_kinds"] == "data_drift, prediction_drift"
    types = {r.metric_value_location.metric.params["type"] for r in model.metric_results.values()
             if hasattr(r, "metric_value_location") and r.metric_value_location}
    assert {"evidently:metric_v2:RowCount", "evidently:metric_v2:RocAuc", "evidently:metric_v2:ValueDrift"} <= types
    auc = next(r for r in model.metric_results.values()
               if getattr(r, "metric_value_location", None)
               and r.metric_value_location.metric.params["type"].endswith(":RocAuc"))
    assert auc.value == pytest.approx(1.0)  # the outcome is the probability thresholded: perfectly ranked
    html = tmp_path / "r.html"
    snapshot.save_html(str(html))
    text = html.read_text()
    assert "ALARM" in text and "flight-delay:bbb" in text
    assert model.widgets[0].type == "text" and model.widgets[0].params["text"].startswith("**ALARM**")


def test_no_auc_until_enough_outcomes_arrived():
    frame, _ = _drift_snapshot()
    few = pd.DataFrame({"request_id": frame["request_id"][:100], "actual": np.int8(1)})
    model = board.quality_report(frame, few, min_labelled_share=0.8).to_snapshot_model()
    types = [r.metric_value_location.metric.params["type"] for r in model.metric_results.values()]
    assert types == ["evidently:metric_v2:RowCount"]


def test_the_dashboard_is_the_same_every_time_and_has_the_panels_a_reviewer_needs(params):
    first = board.dashboard(params.monitor.key_features, params.features.raw_columns)
    again = board.dashboard(params.monitor.key_features, params.features.raw_columns)
    assert first.dict() == again.dict()
    titles = [p.title for p in first.panels]
    assert titles == ["Share of drifted feature columns", "Prediction drift", "Drift of key features",
                      "Missing-value share", "Live ROC AUC", "Predictions per window",
                      "Acknowledged data-quality alarms", "Retraining: what the gate decided"]
    # The two text panels say so when there is nothing to list yet.
    texts = {p.title: p.subtitle for p in first.panels if p.title in titles[-2:]}
    assert texts["Acknowledged data-quality alarms"].startswith("none: every data-quality alarm blocks retraining")
    assert texts["Retraining: what the gate decided"] == "no retrain has finished yet"
    key = next(p for p in first.panels if p.title == "Drift of key features")
    assert [v.metric_labels["column"] for v in key.values] == list(params.monitor.key_features)


def test_unknown_key_features_are_refused_by_name_before_anything_runs(make_params):
    """Refused by the loader, not when the first window is ready or the stack starts: a user's own data with the
    flights' key features (the README's walkthrough before it named them) failed only then."""
    from pipelines.config import ParamsError

    with pytest.raises(ParamsError, match=r"monitor.key_features \['tmep'\] are not raw feature columns"):
        make_params({"monitor.key_features": ["temp", "tmep"]})


def test_ensure_dashboard_writes_once(make_params):
    from pipelines.monitor import store as monitoring_store

    params = make_params()
    assert monitoring_store.ensure_dashboard(params) is True
    assert monitoring_store.ensure_dashboard(params) is False


def test_the_model_panels_draw_one_line_per_champion_named_in_the_legend(make_params):
    """The legend names the champion (the title names the metric): each line is the windows one model served."""
    from pipelines.monitor import store as monitoring_store

    params = make_params()
    board_model = board.dashboard(params.monitor.key_features, params.features.raw_columns,
                                  ["delay-classifier:one", "delay-classifier:two"])
    for title in ("Live ROC AUC", "Prediction drift", "Share of drifted feature columns", "Predictions per window"):
        panel = next(p for p in board_model.panels if p.title == title)
        assert [(v.legend, v.tags) for v in panel.values] == [
            ("delay-classifier:one", ["model:delay-classifier:one"]),
            ("delay-classifier:two", ["model:delay-classifier:two"])], title
    key = next(p for p in board_model.panels if p.title == "Drift of key features")
    assert [v.legend for v in key.values] == list(params.monitor.key_features)
    # The workspace's dashboard follows the models that served analysed windows, then the champion.
    from support.monitoring import window_record

    window_record(False, model_tags=["m:first"]).save(params.paths.monitoring_dir)
    assert monitoring_store.ensure_dashboard(params, "m:second") is True
    assert monitoring_store.ensure_dashboard(params, "m:second") is False
    from evidently.ui.workspace import Workspace

    workspace = Workspace(str(params.paths.evidently_workspace))
    project = workspace.search_project(monitoring_store.PROJECT_NAME)[0]
    auc = next(p for p in workspace.get_dashboard(project.id).panels if p.title == "Live ROC AUC")
    assert [v.legend for v in auc.values] == ["m:first", "m:second"]


def test_a_retrain_nothing_would_run_is_not_booked_and_the_reason_gives_the_command(params):
    """`python -m flows.monitoring` by hand (Prefect's temporary server: no Automation, no deployment): a drifted
    window that asks for a retrain books none — no cooldown started, no request pending forever — and its reason
    says so with the command that retrains on it, which the retraining CLI reads back as the window's end."""
    import shlex

    from flows.retraining import cli_parameters

    nobody = book.RetrainRoute(False, "this run's Prefect server is a temporary one")
    booked = book.book_window(book.empty_state(), START, END, _summary(True), params.monitor, route=nobody)
    assert booked.decision.retrain and booked.retrain.started is False and booked.state.retrains == []
    assert booked.state.windows[START.isoformat()].retrain is False  # analysed once, no retrain asked
    assert booked.retrain.reason.startswith(f"{book.NOT_BOOKED}: this run's Prefect server is a temporary one; "
                                            "to retrain on this window by hand: python -m flows.retraining "
                                            f"--data-end {END.isoformat()} (")
    command = booked.retrain.reason.split("by hand: ")[1].split(" (")[0]
    assert cli_parameters(shlex.split(command)[3:])["data_end"] == END.isoformat()
    # No event asks for it either: only `flightops.window.analysed`.
    record = _summary(True).model_copy(update={"retrain": booked.retrain})
    assert [spec.event for spec in book.window_events(record, START, END, booked.retrain)] == [book.WINDOW_ANALYSED]
    # A paused Automation still books it (resuming must not replay a backlog); a window without an alarm is unchanged.
    paused = book.RetrainRoute(True, "the Automation is paused")
    kept = book.book_window(book.empty_state(), START, END, _summary(True), params.monitor, route=paused)
    assert kept.retrain.started and len(kept.state.retrains) == 1
    calm = book.book_window(book.empty_state(), START, END, _summary(False), params.monitor, route=nobody)
    assert calm.retrain.reason == "no alarm"


def test_a_hand_run_on_the_temporary_prefect_server_has_no_route_for_a_retrain(params):
    from prefect.settings import PREFECT_API_URL, temporary_settings

    from flows.monitoring import retrain_route

    with temporary_settings({PREFECT_API_URL: None}):
        route = retrain_route.fn(params)
    assert not route.automated and "PREFECT_API_URL is not set" in route.note

"""Drift -> retrain the Prefect way, against a real Prefect server: the monitoring flow emits its events, the
Automation from `flows/automations.py` runs the retraining deployment once per drift event, the deployment's own
concurrency limit keeps it to one at a time (CANCEL_NEW: the others are cancelled), and a paused Automation means
drift is still reported but nothing retrains. Real Evidently, real model, log records in the service's format
(garbage lines included); the retraining flow is a served stand-in that sleeps (tests/integration/slow_retraining.py).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from datetime import datetime
from typing import Any

import httpx
import pandas as pd
import pytest
import yaml

from pipelines.config import parse_params
from pipelines.contracts import Reason
from pipelines.monitor import bookkeeping as monitoring_bookkeeping
from pipelines.monitor import store as monitoring_store
from support.monitoring import into_week, later_schedules, log_records, train_small, window_record, write_log
from support.params import REPO_ROOT, SMALL_WINDOW, params_dict
from support.servers import poll_until

pytestmark = pytest.mark.integration

SLEEP_S = 45  # how long the stand-in retrain "runs": long enough to send three more events meanwhile
TERMINAL = {"COMPLETED", "FAILED", "CRASHED", "CANCELLED"}


@pytest.fixture(scope="module")
def prefect_api(prefect_api):
    """The session's real server, as this module's client API (flows, events and the Automation read it)."""
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with temporary_settings(updates={PREFECT_API_URL: prefect_api}):
        yield prefect_api


@pytest.fixture(scope="module")
def scenario(tmp_path_factory, small_table, prefect_api):
    from flows.automations import apply_automations

    root = tmp_path_factory.mktemp("trigger")
    deployment = f"retraining-test-{uuid.uuid4().hex[:8]}"
    data = params_dict(root, {**SMALL_WINDOW, "monitor.reference_rows": 15000, "monitor.min_window_rows": 500,
                              "monitor.retraining_deployment": f"retraining/{deployment}"})
    params_file = root / "params.yaml"
    params_file.write_text(yaml.safe_dump(data))
    params = parse_params(data)
    trained = train_small(root, params, small_table)
    env = {**os.environ, "PREFECT_API_URL": prefect_api, "SLOW_RETRAINING_SECONDS": str(SLEEP_S)}
    log = open(root / "runner.log", "w")  # noqa: SIM115 - closed in the finally below
    runner = subprocess.Popen([sys.executable, "-m", "tests.integration.slow_retraining", str(params_file), deployment],
                              cwd=REPO_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deployment_id = _wait_for_deployment(prefect_api, f"retraining/{deployment}", runner, root / "runner.log")
        automation = apply_automations(params)
        again = apply_automations(params)  # idempotent: the same Automation, updated in place
        assert again.id == automation.id
        held_out = trained.train.sample(frac=1.0, random_state=3)
        yield {"params": params, "file": str(params_file), "trained": trained, "held_out": held_out,
               "deployment_id": str(deployment_id), "api": prefect_api, "automation_id": automation.id,
               "log": root / "runner.log"}
    finally:
        from support.servers import stop

        stop(runner)
        log.close()


def _wait_for_deployment(api: str, name: str, runner: subprocess.Popen, log) -> str:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if runner.poll() is not None:
            raise RuntimeError(f"runner exited {runner.returncode}:\n{log.read_text()[-3000:]}")
        response = httpx.get(f"{api}/deployments/name/{name}", timeout=10)
        if response.status_code == 200:
            return response.json()["id"]
        time.sleep(1)
    raise TimeoutError(f"deployment {name} not registered:\n{log.read_text()[-3000:]}")


def _log_week(scenario, week: str, shifted: bool, seed: int, garbage=()) -> None:
    params, trained = scenario["params"], scenario["trained"]
    rows = into_week(scenario["held_out"].iloc[seed * 1000:(seed + 1) * 1000], week, "time_hour", seed, f"w{seed}")
    rows = later_schedules(rows) if shifted else rows  # a drift, not a data fault: a data fault never retrains
    marker = into_week(scenario["held_out"].iloc[[-seed - 1]], week, "time_hour", seed, f"m{seed}")
    marker = marker.assign(time_hour=marker["time_hour"] + pd.Timedelta(days=7))
    records = log_records(rows, trained.model, params.features.raw_columns, "time_hour")
    records += log_records(marker, trained.model, params.features.raw_columns, "time_hour")
    write_log(params.paths.prediction_log_dir, records, garbage=list(garbage), hour=f"{week.replace('-', '')}T00")
    # The monitor's clock: a day past the week's end (one early request no longer makes a week ready).
    scenario["clock"] = (pd.Timestamp(week, tz="UTC") + pd.Timedelta(days=8)).isoformat()


def _runs(scenario) -> list[dict[str, Any]]:
    response = httpx.post(f"{scenario['api']}/flow_runs/filter", timeout=10,
                          json={"deployments": {"id": {"any_": [scenario["deployment_id"]]}},
                                "sort": "EXPECTED_START_TIME_ASC"})
    response.raise_for_status()
    return response.json()


def _events(scenario, name: str, resource_id: str) -> list[dict[str, Any]]:
    response = httpx.post(f"{scenario['api']}/events/filter", timeout=10, json={"filter": {
        "event": {"name": [name]}, "resource": {"id": [resource_id]},
        "occurred": {"since": "2000-01-01T00:00:00Z"}}, "limit": 50})
    response.raise_for_status()
    return response.json()["events"]


def _wait(check, timeout: float, what: str, scenario, poll: float = 0.5):
    return poll_until(check, timeout, lambda: f"{what}; runs: {[(r['name'], r['state_name']) for r in _runs(scenario)]}"
                                              f"\nrunner log:\n{scenario['log'].read_text()[-2000:]}", poll)


def _monitor(scenario, **overrides):
    from flows.monitoring import monitoring_flow

    return monitoring_flow(params_file=scenario["file"], overrides={f"monitor.{k}": v for k, v in overrides.items()},
                           clock=scenario["clock"])


def test_clean_window_is_reported_and_retrains_nothing(scenario):
    _log_week(scenario, "2013-09-02", shifted=False, seed=1,
              garbage=['{"request_id": "x", "ts": "2013', '{"wrong": "schema"}'])
    results = _monitor(scenario)
    assert [r["window_start"][:10] for r in results] == ["2013-09-02"]
    assert results[0]["drift"] is False and results[0]["retrain"]["started"] is False
    assert results[0]["log_skipped"] == {"invalid_json": 1, "missing_request_id": 1}
    resource = "flightops.monitoring.window.20130902"
    (event,) = _wait(lambda: _events(scenario, "flightops.window.analysed", resource), 30, "window event", scenario)
    assert event["payload"]["alarm"] is False and event["payload"]["rows"] == results[0]["rows"]
    assert _events(scenario, "flightops.drift.detected", resource) == []
    time.sleep(3)
    assert _runs(scenario) == []
    written = monitoring_store.read_summaries(scenario["params"])
    assert [s.window_start[:10] for s in written] == ["2013-09-02"]
    assert _monitor(scenario) == []  # nothing new: the window is not analysed twice


def test_drift_event_starts_exactly_one_retraining_run_with_the_window_end(scenario):
    _log_week(scenario, "2013-09-09", shifted=True, seed=2)
    results = _monitor(scenario)
    assert results[0]["drift"] is True and results[0]["retrain"]["started"] is True
    (event,) = _wait(lambda: _events(scenario, "flightops.drift.detected", "flightops.monitoring.window.20130909"),
                     30, "drift event", scenario)
    assert event["payload"]["window_end"] == "2013-09-16T00:00:00+00:00"
    assert event["payload"]["model_tag"] == "delay-classifier:test"
    assert event["resource"]["flightops.model.tag"] == "delay-classifier:test"
    running = _wait(lambda: [r for r in _runs(scenario) if r["state_type"] == "RUNNING"], 60,
                    "a running retraining run", scenario)
    runs = _runs(scenario)
    assert len(runs) == 1 and len(running) == 1
    assert runs[0]["parameters"]["data_end"] == "2013-09-16T00:00:00+00:00"
    assert runs[0]["parameters"]["params_file"] == scenario["file"]  # the deployment's default, kept
    assert "prediction drift" in runs[0]["parameters"]["reason"] or "data drift" in runs[0]["parameters"]["reason"]
    state = monitoring_store.load_state(scenario["params"])
    assert [r.window_end for r in state.retrains] == ["2013-09-16T00:00:00+00:00"]


def test_three_more_drift_events_while_it_runs_leave_one_running_and_the_rest_cancelled(scenario):
    from prefect.events import emit_event

    first = _runs(scenario)[0]
    assert first["state_type"] == "RUNNING"
    for week in ("2013-09-16", "2013-09-23", "2013-09-30"):
        start = datetime.fromisoformat(f"{week}T00:00:00+00:00")
        spec = monitoring_bookkeeping.drift_event(
            window_record(True, start, rows=1000, drift_share=0.9, model_tags=[],
                          reasons=[Reason(kind="data_drift", text="data drift: test")]),
            start, start + pd.Timedelta(days=7), "delay-classifier:test")
        emit_event(event=spec.event, resource=spec.resource, related=spec.related, payload=spec.payload)

    def settled():
        runs = _runs(scenario)
        assert sum(r["state_type"] == "RUNNING" for r in runs) <= 1, [(r["name"], r["state_name"]) for r in runs]
        return runs if len(runs) == 4 and all(r["state_type"] in TERMINAL for r in runs[1:]) else None

    runs = _wait(settled, SLEEP_S, "three more runs, all refused by the concurrency limit", scenario)
    assert [r["state_type"] for r in runs[1:]] == ["CANCELLED"] * 3
    assert {r["id"] for r in runs if r["state_type"] == "RUNNING"} <= {first["id"]}
    assert sorted(r["parameters"]["data_end"][:10] for r in runs[1:]) == ["2013-09-23", "2013-09-30", "2013-10-07"]
    done = _wait(lambda: [r for r in _runs(scenario) if r["id"] == first["id"] and r["state_type"] in TERMINAL],
                 SLEEP_S + 60, "the first run to finish", scenario)
    assert done[0]["state_type"] == "COMPLETED"


def test_a_paused_automation_reports_drift_but_retrains_nothing(scenario):
    from prefect.automations import Automation

    automation = Automation.read(id=scenario["automation_id"])
    automation.disable()
    try:
        before = len(_runs(scenario))
        _log_week(scenario, "2013-10-14", shifted=True, seed=4)
        results = _monitor(scenario, cooldown_days=0)
        assert results[0]["drift"] is True and results[0]["retrain"]["started"] is True
        _wait(lambda: _events(scenario, "flightops.drift.detected", "flightops.monitoring.window.20131014"), 30,
              "the drift event", scenario)
        time.sleep(10)  # the server had time to act on it, had the Automation been enabled
        assert len(_runs(scenario)) == before
        # Re-applying the Automation (a redeploy) keeps the operator's pause.
        from flows.automations import apply_automations

        assert apply_automations(scenario["params"]).enabled is False
        assert Automation.read(id=scenario["automation_id"]).enabled is False
    finally:
        Automation.read(id=scenario["automation_id"]).enable()


def test_the_workspace_holds_one_snapshot_per_window_dated_by_the_window(scenario):
    from evidently.ui.workspace import Workspace

    workspace = Workspace(str(scenario["params"].paths.evidently_workspace))
    project = workspace.search_project(monitoring_store.PROJECT_NAME)[0]
    snapshots = [workspace.get_run(project.id, run_id) for run_id in workspace.list_runs(project.id)]
    assert sorted(s.timestamp.date().isoformat() for s in snapshots) == ["2013-09-02", "2013-09-09", "2013-10-14"]
    by_day = {s.timestamp.date().isoformat(): s for s in snapshots}
    assert by_day["2013-09-02"].tags == ["model:delay-classifier:test"]
    assert by_day["2013-09-09"].tags == ["alarm", "retrain", "model:delay-classifier:test"]
    assert by_day["2013-09-09"].metadata["window_end"] == "2013-09-16T00:00:00+00:00"
    assert by_day["2013-09-02"].metadata["skipped_log_lines"] == "2"
    assert [p.title for p in workspace.get_dashboard(project.id).panels][:2] == [
        "Share of drifted feature columns", "Prediction drift"]


def test_a_run_by_hand_on_a_temporary_prefect_server_books_no_retrain_and_says_how_to_run_it(scenario):
    """`python -m flows.monitoring` outside the stack (no PREFECT_API_URL: Prefect's temporary server, gone with the
    run): nothing would run a retrain it asked for, so none is booked (no cooldown, nothing pending) and the
    window's record gives the command instead."""
    from prefect.settings import PREFECT_API_URL, temporary_settings

    before, asked = len(_runs(scenario)), monitoring_store.load_state(scenario["params"]).retrains
    _log_week(scenario, "2013-10-21", shifted=True, seed=5)
    with temporary_settings({PREFECT_API_URL: None}):
        results = _monitor(scenario, cooldown_days=0)
    assert results[0]["drift"] is True and results[0]["retrain"]["started"] is False
    reason = results[0]["retrain"]["reason"]
    assert reason.startswith("would retrain, not booked: this run's Prefect server is a temporary one"), reason
    assert "by hand: python -m flows.retraining --data-end 2013-10-28T00:00:00+00:00" in reason, reason
    assert monitoring_store.load_state(scenario["params"]).retrains == asked
    assert len(_runs(scenario)) == before

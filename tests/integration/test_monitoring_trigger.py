"""The monitoring flow against a real Prefect server: a drift window starts exactly one retraining run, a clean
window none, a run already in flight blocks a second, and the cooldown holds. Real Evidently, real model, log
records in the service's format (garbage lines included)."""

from __future__ import annotations

import json
import uuid

import pytest
import yaml

from pipelines.config import parse_params
from pipelines.monitor import store as monitoring_store
from tests.conftest import SMALL_WINDOW, params_dict
from tests.monitoring_support import into_week, log_records, shift, train_small, write_log

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def prefect_api(prefect_api):
    """The session's real server, as this module's client API (run_deployment and flows read the setting)."""
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with temporary_settings(updates={PREFECT_API_URL: prefect_api}):
        yield prefect_api


@pytest.fixture(scope="module")
def scenario(tmp_path_factory, small_table, prefect_api):
    from flows.retraining import retraining

    root = tmp_path_factory.mktemp("trigger")
    deployment = f"retraining-test-{uuid.uuid4().hex[:8]}"
    data = params_dict(root, {**SMALL_WINDOW, "monitor.reference_rows": 15000, "monitor.min_window_rows": 500,
                              "monitor.retraining_deployment": f"retraining/{deployment}"})
    params_file = root / "params.yaml"
    params_file.write_text(yaml.safe_dump(data))
    params = parse_params(data)
    trained = train_small(root, params, small_table)
    # A cheap deployment with no worker: a triggered run stays Scheduled, which is all these tests need.
    deployment_id = retraining.to_deployment(name=deployment).apply()
    held_out = trained.train.sample(frac=1.0, random_state=3)
    return {"params": params, "file": str(params_file), "trained": trained, "held_out": held_out,
            "deployment_id": deployment_id}


def _log_week(scenario, week: str, shifted: bool, seed: int, garbage=()) -> None:
    params, trained = scenario["params"], scenario["trained"]
    rows = into_week(scenario["held_out"].iloc[seed * 1000:(seed + 1) * 1000], week, "time_hour", seed, f"w{seed}")
    rows = shift(rows) if shifted else rows
    marker = into_week(scenario["held_out"].iloc[[-seed - 1]], week, "time_hour", seed, f"m{seed}")
    marker = marker.assign(time_hour=marker["time_hour"] + __import__("pandas").Timedelta(days=7))
    records = log_records(rows, trained.model, params.features.raw_columns, "time_hour")
    records += log_records(marker, trained.model, params.features.raw_columns, "time_hour")
    write_log(params.paths.prediction_log_dir, records, garbage=list(garbage), hour=f"{week.replace('-', '')}T00")


def _runs(scenario):
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterId

    with get_client(sync_client=True) as client:
        return client.read_flow_runs(deployment_filter=DeploymentFilter(
            id=DeploymentFilterId(any_=[scenario["deployment_id"]])))


def _monitor(scenario, **overrides):
    from flows.monitoring import monitoring_flow

    return monitoring_flow(params_file=scenario["file"], overrides={f"monitor.{k}": v for k, v in overrides.items()})


def test_clean_window_triggers_nothing_and_garbage_is_counted(scenario):
    _log_week(scenario, "2013-09-02", shifted=False, seed=1,
              garbage=['{"request_id": "x", "ts": "2013', '{"wrong": "schema"}'])
    results = _monitor(scenario)
    assert [r["window_start"][:10] for r in results] == ["2013-09-02"]
    assert results[0]["drift"] is False and results[0]["retrain"]["started"] is False
    assert results[0]["log_skipped"] == {"invalid_json": 1, "missing_request_id": 1}
    assert _runs(scenario) == []
    written = json.loads((scenario["params"].paths.monitoring_dir / "window-20130902.json").read_text())
    assert written["drift"] is False
    assert (scenario["params"].paths.monitoring_dir / "window-20130902.html").stat().st_size > 10_000
    assert _monitor(scenario) == []  # nothing new: the window is not analysed twice


def test_drift_window_triggers_exactly_one_retraining_run(scenario):
    _log_week(scenario, "2013-09-09", shifted=True, seed=2)
    results = _monitor(scenario)
    assert [r["window_start"][:10] for r in results] == ["2013-09-09"]
    assert results[0]["drift"] is True and results[0]["retrain"]["started"] is True
    runs = _runs(scenario)
    assert len(runs) == 1
    assert str(runs[0].id) == results[0]["retrain"]["flow_run_id"]
    assert runs[0].parameters["data_end"] == "2013-09-16T00:00:00+00:00"
    state = monitoring_store.load_state(scenario["params"])
    assert [r["flow_run_id"] for r in state["retrains"]] == [str(runs[0].id)]


def test_a_retrain_in_flight_is_not_started_twice(scenario):
    _log_week(scenario, "2013-09-16", shifted=True, seed=3)
    results = _monitor(scenario, cooldown_days=0)  # only the in-flight guard can stop it
    assert results[0]["drift"] is True and results[0]["retrain"]["started"] is False
    assert "already scheduled" in results[0]["retrain"]["reason"]
    assert len(_runs(scenario)) == 1


def test_cooldown_holds_after_the_run_finished(scenario):
    from prefect.client.orchestration import get_client
    from prefect.states import Cancelled

    with get_client(sync_client=True) as client:
        client.set_flow_run_state(_runs(scenario)[0].id, Cancelled(), force=True)
    _log_week(scenario, "2013-09-23", shifted=True, seed=4)
    results = _monitor(scenario)
    assert results[0]["drift"] is True and results[0]["retrain"]["started"] is False
    assert "cooldown" in results[0]["retrain"]["reason"]
    assert len(_runs(scenario)) == 1
    history = monitoring_store.read_summaries(scenario["params"])
    from pipelines.monitor.history import summarise_history

    table = summarise_history(history)
    assert list(table["retrained"]) == [False, True, False, False]
    workspace = scenario["params"].paths.evidently_workspace
    from evidently.ui.workspace import Workspace

    project = Workspace(str(workspace)).search_project(monitoring_store.PROJECT_NAME)[0]
    assert len(Workspace(str(workspace)).list_runs(project.id)) == 4

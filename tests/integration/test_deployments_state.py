"""What the operator set in the Prefect UI survives a redeploy (prefect#19302), against a real Prefect server:
`flows.deployments.apply_all` is what the deployments process runs at every start (so at every `ops.stack up`).
The UI's actions are replayed through the same API endpoints the UI calls."""

from __future__ import annotations

import httpx
import pytest
import yaml

from support.params import params_dict

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def api(request):
    """The same checks on a server on SQLite (the default) and on PostgreSQL (prefect.database: postgres)."""
    from prefect.settings import PREFECT_API_URL, temporary_settings

    url = request.getfixturevalue("prefect_api" if request.param == "sqlite" else "prefect_api_postgres")
    with temporary_settings(updates={PREFECT_API_URL: url}):
        yield url


def _deployment(api: str, name: str) -> dict:
    response = httpx.get(f"{api}/deployments/name/{name}/{name}", timeout=10)
    response.raise_for_status()
    return response.json()


def test_paused_deployments_schedules_and_automation_survive_a_redeploy(api, tmp_path):
    from prefect.automations import Automation

    from flows.automations import RETRAIN_ON_DRIFT
    from flows.deployments import apply_all, build_deployments

    params_file = tmp_path / "params.yaml"
    params_file.write_text(yaml.safe_dump(params_dict(tmp_path, {"deployments.training.cron": "15 4 * * 2"})))
    apply_all(params_file)
    training, monitoring = _deployment(api, "training"), _deployment(api, "monitoring")
    assert not training["paused"] and [s["active"] for s in training["schedules"]] == [True]
    assert [s["slug"] for s in training["schedules"]] == ["training-cron"]
    retraining = _deployment(api, "retraining")
    assert retraining["global_concurrency_limit"]["limit"] == 1
    assert retraining["concurrency_options"]["collision_strategy"] == "CANCEL_NEW"

    # Control: what Prefect 3.9 itself does on redeploy (prefect#19302) — a paused schedule comes back active.
    schedule_id = training["schedules"][0]["id"]
    httpx.patch(f"{api}/deployments/{training['id']}/schedules/{schedule_id}", json={"active": False},
                timeout=10).raise_for_status()
    for deployment in build_deployments(params_file):  # no operator state passed: plain redeploy
        deployment.apply()
    assert [s["active"] for s in _deployment(api, "training")["schedules"]] == [True]

    # The operator pauses in the UI: the training schedule, the whole monitoring deployment, the Automation.
    schedule_id = _deployment(api, "training")["schedules"][0]["id"]
    httpx.patch(f"{api}/deployments/{training['id']}/schedules/{schedule_id}", json={"active": False},
                timeout=10).raise_for_status()
    httpx.post(f"{api}/deployments/{monitoring['id']}/pause_deployment", timeout=10).raise_for_status()
    Automation.read(name=RETRAIN_ON_DRIFT).disable()

    # A redeploy the way the stack does it, with an edited cron: state kept, timing from params.
    params_file.write_text(yaml.safe_dump(params_dict(tmp_path, {"deployments.training.cron": "30 5 * * 3"})))
    apply_all(params_file)
    training, monitoring = _deployment(api, "training"), _deployment(api, "monitoring")
    assert [(s["schedule"]["cron"], s["active"]) for s in training["schedules"]] == [("30 5 * * 3", False)]
    assert monitoring["paused"] is True
    assert Automation.read(name=RETRAIN_ON_DRIFT).enabled is False

    # Resumed in the UI, it stays resumed.
    httpx.patch(f"{api}/deployments/{training['id']}/schedules/{training['schedules'][0]['id']}",
                json={"active": True}, timeout=10).raise_for_status()
    httpx.post(f"{api}/deployments/{monitoring['id']}/resume_deployment", timeout=10).raise_for_status()
    Automation.read(name=RETRAIN_ON_DRIFT).enable()
    apply_all(params_file)
    assert [s["active"] for s in _deployment(api, "training")["schedules"]] == [True]
    assert _deployment(api, "monitoring")["paused"] is False
    assert Automation.read(name=RETRAIN_ON_DRIFT).enabled is True

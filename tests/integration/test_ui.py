"""The stack as a user meets it: `python -m ops.stack up` on free ports, then headless Debian chromium checks the
Prefect UI (deployments and schedules, a Quick run of training that completes, the drift Automation), the Evidently
UI (a project with a real snapshot; the monitoring project's dashboard filled by real replayed traffic and the
monitoring deployment, a new snapshot showing after a reload) and the Bento OpenAPI page; a paused schedule
survives `down` + `up`; `down` at the end must leave no process behind.

Screenshots go to pytest's temp dir (the path is printed; run with -s to see it) for people to look at.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pandas as pd
import pytest
import yaml

from support.params import SMALL_WINDOW
from support.project_copy import copy_project
from support.servers import free_port, poll_until, ready_timeout_s, work_timeout_s

pytestmark = [pytest.mark.integration, pytest.mark.browser]

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic"]
DESCRIPTION_START = {"training": "The training DAG", "monitoring": "Compares the latest window",
                     "retraining": "The training DAG on a newer window",
                     "acknowledge": "Accept a data-quality alarm as the new normal"}
EVIDENTLY_PROJECT = "flightops drift (browser test)"
# Evidently renders a report or a dashboard in the browser; on a loaded 2-core machine that passes expect's 5 s
# (and, at load 12, 60 s): the project's one readiness bound, as for the servers themselves.
SLOW_UI_MS = ready_timeout_s() * 1000


@dataclass
class Stack:
    params_file: Path
    params: dict[str, Any]
    state: dict[str, Any]
    screenshots: Path
    env: dict[str, str]

    def url(self, component: str) -> str:
        return next(c["url"] for c in self.state["components"] if c["name"] == component).removesuffix(
            "/deployments")

    def has(self, component: str) -> bool:
        return any(c["name"] == component for c in self.state["components"])

    @property
    def api(self) -> str:
        return f"{self.url('prefect')}/api"


def _stack(command: str, params_file: Path, env: dict[str, str], timeout: float) -> subprocess.CompletedProcess:
    """`python -m ops.stack` in the project the params file belongs to (the flows run its DVC stages)."""
    return subprocess.run([sys.executable, "-m", "ops.stack", command, "--params", str(params_file)],
                          cwd=params_file.parent, env=env, capture_output=True, text=True, timeout=timeout)


def _add_drift_snapshot(workspace: Path, table: Any) -> None:
    """A real Evidently data-drift snapshot (March vs May of the real data) in the stack's workspace.

    Stands in for the monitoring flow's snapshots on a branch without it; the UI cannot tell the difference.
    """
    from evidently import Report
    from evidently.presets import DataDriftPreset
    from evidently.ui.workspace import Workspace

    columns = ["carrier", "origin", "distance", "temp", "wind_speed", "hour"]
    month = table["time_hour"].dt.month
    reference, current = table.loc[month == 3, columns], table.loc[month == 5, columns]
    snapshot = Report([DataDriftPreset()]).run(current_data=current.sample(2000, random_state=0),
                                              reference_data=reference.sample(2000, random_state=0))
    space = Workspace(str(workspace))
    project = space.create_project(EVIDENTLY_PROJECT, description="created by tests/integration/test_ui.py")
    space.add_run(project.id, snapshot, name="drift March vs May")


def _seed_champion(params_file: Path, env: dict[str, str]) -> None:
    """Train on the small window and make it the champion through the gate, with its monitoring reference attached
    (the `reference` stage), so `up` starts the Bento service and the monitoring flow can judge windows.

    Runs in a subprocess because BENTOML_HOME (a temp store) must be set before bentoml is imported.
    """
    script = (
        "import sys\n"
        "from pipelines.config import load_params\n"
        "from pipelines import stages\n"
        "p = load_params(sys.argv[1])\n"
        "for stage in ('collect', 'validate', 'preprocess', 'train', 'evaluate', 'gate_and_promote', 'reference'):\n"
        "    getattr(stages, f'run_{stage}')(p)\n")
    subprocess.run([sys.executable, "-c", script, str(params_file)], cwd=params_file.parent, env=env, check=True,
                   timeout=work_timeout_s())


# The stack's Prefect set-up here: the defaults (SQLite, the serve process), or, to run this whole file on the
# scale-out set-up, FLIGHTOPS_TEST_PREFECT_DATABASE=postgres and/or FLIGHTOPS_TEST_PREFECT_RUNNER=workers.
PREFECT_SETUP = {"prefect.database": os.environ.get("FLIGHTOPS_TEST_PREFECT_DATABASE", "sqlite"),
                 "prefect.runner": os.environ.get("FLIGHTOPS_TEST_PREFECT_RUNNER", "serve")}


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, small_table: Any) -> Iterator[Stack]:
    from support.servers import private_folder

    # PostgreSQL runs as `postgres` when the tests run as root: its folder must not sit in pytest's 0700 temp dir.
    postgres = PREFECT_SETUP["prefect.database"] == "postgres"
    root = private_folder("ui-stack-") if postgres else tmp_path_factory.mktemp("stack")
    # A git+DVC copy of the project: the training flow runs its DVC stages there, as a user's clone would.
    # Replayed traffic: May 2013, after the small window's training months (the model is trained on Mar-May).
    repo = copy_project(root / "project", {
        **SMALL_WINDOW, "replay.start": "2013-05-06", "replay.end": "2013-05-24", "stack.prefect_port": free_port(),
        "stack.evidently_port": free_port(), "serve.port": free_port(), **PREFECT_SETUP})
    params_file = repo / "params.yaml"
    data = yaml.safe_load(params_file.read_text())
    data["paths"] = {key: str(repo / value) for key, value in data["paths"].items()}  # the test reads them
    env = {**os.environ, "BENTOML_HOME": str(root / "bentoml"), "PREFECT_SERVER_ANALYTICS_ENABLED": "false"}
    env.pop("PREFECT_API_URL", None)
    _add_drift_snapshot(Path(data["paths"]["evidently_workspace"]), small_table)
    if importlib.util.find_spec("services.service") is not None:
        _seed_champion(params_file, env)
    started = _stack("up", params_file, env, timeout=work_timeout_s())
    state_file = Path(data["paths"]["stack_dir"]) / "stack.json"
    state = json.loads(state_file.read_text()) if state_file.exists() else {"components": []}
    screenshots = tmp_path_factory.mktemp("screenshots")
    print(f"\nscreenshots: {screenshots}\nstack logs: {Path(data['paths']['stack_dir']) / 'logs'}")
    try:
        assert started.returncode == 0, f"stack up failed:\n{started.stdout}\n{started.stderr}"
        yield Stack(params_file=params_file, params=data, state=state, screenshots=screenshots, env=env)
    finally:
        stopped = _stack("down", params_file, env, timeout=ready_timeout_s())
        from ops.stack import process_tree

        left = {c["name"]: sorted(process_tree(c["pid"])) for c in state["components"] if process_tree(c["pid"])}
        assert stopped.returncode == 0, f"stack down failed:\n{stopped.stdout}\n{stopped.stderr}"
        assert not left, f"processes left after down: {left}"
        assert not state_file.exists()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} not found: install Debian's chromium (apt-get install -y chromium; "
                    "scripts/test.sh does it)")
    with sync_playwright() as playwright:
        instance = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield instance
        instance.close()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1920, "height": 1080})
    context.set_default_timeout(60_000)
    page = context.new_page()
    yield page
    context.close()


def _shot(page: Any, stack: Stack, name: str) -> Path:
    path = stack.screenshots / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    print(f"screenshot: {path}")
    return path


def _deployment(stack: Stack, name: str) -> dict[str, Any]:
    response = httpx.get(f"{stack.api}/deployments/name/{name}/{name}", timeout=10)
    response.raise_for_status()
    return response.json()


def test_prefect_ui_lists_the_deployments_with_their_schedules(stack: Stack, page: Any) -> None:
    from playwright.sync_api import expect

    from flows.deployments import FLOWS

    names = list(FLOWS)
    page.goto(f"{stack.url('prefect')}/deployments")
    expect(page.get_by_text(f"{len(names)} Deployment")).to_be_visible()
    for name in names:
        expect(page.get_by_role("link", name=name, exact=True).first).to_be_visible()
    _shot(page, stack, "prefect-deployments")
    # Each deployment's page lists its schedule by the slug flows.deployments gives it (Prefect's UI shows a named
    # schedule by name, with its on/off toggle); the cadence itself is checked through the API below.
    from flows.deployments import SCHEDULE_SLUGS

    expected = {name: SCHEDULE_SLUGS.get(name) for name in names}  # retraining: no schedule
    for name in names:
        page.goto(f"{stack.url('prefect')}/deployments/deployment/{_deployment(stack, name)['id']}")
        expect(page.get_by_text("Schedules").first).to_be_visible()
        _shot(page, stack, f"prefect-deployment-{name}")  # before the check: a failure leaves the page to look at
        if expected[name]:
            expect(page.get_by_text(expected[name]).first).to_be_visible()
        page.get_by_text("Description", exact=True).first.click()
        expect(page.get_by_text(DESCRIPTION_START[name]).first).to_be_visible()
    # The API agrees with what the page shows: the schedule from params, active, with the params file.
    training = _deployment(stack, "training")
    assert [s["schedule"]["cron"] for s in training["schedules"]] == [stack.params["deployments"]["training"]["cron"]]
    assert training["parameters"]["params_file"] == str(stack.params_file)
    assert not training["paused"]


def test_quick_run_of_training_from_the_ui_completes(stack: Stack, page: Any) -> None:
    from playwright.sync_api import expect

    deployment = _deployment(stack, "training")
    page.goto(f"{stack.url('prefect')}/deployments/deployment/{deployment['id']}")
    expect(page.get_by_text("training").first).to_be_visible()
    created = _quick_run(page, stack, deployment["id"])
    run = _wait_for_flow_run(stack, created["id"], timeout=work_timeout_s())
    assert run["state_type"] == "COMPLETED", (run["state_name"], _tail(stack, "deployments"))
    page.goto(f"{stack.url('prefect')}/runs/flow-run/{run['id']}")
    expect(page.get_by_text("Completed").first).to_be_visible()
    _shot(page, stack, "prefect-training-run-completed")
    assert Path(stack.params["paths"]["metrics_dir"], "evaluate.json").exists()
    # The run wrote the model card and linked it from its Artifacts tab.
    card = Path(stack.params["paths"]["model_card"]).with_suffix(".html")
    assert card.exists()
    page.get_by_text("Artifacts", exact=True).first.click()
    expect(page.get_by_text("model-card").first).to_be_visible()
    _shot(page, stack, "prefect-training-run-artifacts")
    page.goto(card.as_uri())
    expect(page.get_by_text("Test split: model vs naive baselines")).to_be_visible()
    _shot(page, stack, "model-card")


def _quick_run(page: Any, stack: Stack, deployment_id: str) -> dict[str, Any]:
    """Click Run -> Quick run on the deployment's page and return the flow run the UI created (its POST to
    /deployments/<id>/create_flow_run). Once in three full-suite runs the click sent no request at all and the test
    waited out work_timeout_s for a run that never existed: a click that sends nothing within the readiness bound
    (and left no manual run on the server) is made again, once, after a reload (each miss leaves a screenshot); a
    request the server refuses fails with its status and body."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    def creates_a_run(response: Any) -> bool:
        return response.request.method == "POST" and response.url.endswith("/create_flow_run")

    for attempt in (1, 2):
        page.get_by_role("button", name="Run", exact=True).click()
        try:
            with page.expect_response(creates_a_run, timeout=ready_timeout_s() * 1000) as response:
                page.get_by_text("Quick run", exact=True).click()
        except PlaywrightTimeout:
            print(f"Quick run sent no request (attempt {attempt}): {_shot(page, stack, f'quick-run-miss-{attempt}')}")
            runs = httpx.post(f"{stack.api}/flow_runs/filter", timeout=10,
                              json={"deployments": {"id": {"any_": [deployment_id]}}}).json()
            manual = [run for run in runs if not run["auto_scheduled"]]
            if manual:  # the request went out but its response was late: that run is the click's
                return manual[0]
            page.reload()
            continue
        assert response.value.ok, (response.value.status, response.value.text())
        return response.value.json()
    raise AssertionError("two Run -> Quick run clicks sent no create_flow_run request; screenshots: "
                         f"{stack.screenshots}/quick-run-miss-*.png")


def _wait_for_flow_run(stack: Stack, run_id: str, timeout: float) -> dict[str, Any]:
    run: dict[str, Any] = {}

    def finished() -> dict[str, Any] | None:
        nonlocal run
        run = httpx.get(f"{stack.api}/flow_runs/{run_id}", timeout=10).json()
        return run if run.get("state_type") in ("COMPLETED", "FAILED", "CRASHED", "CANCELLED") else None

    return poll_until(finished, timeout, lambda: f"the Quick run {run_id} to finish (5 x start_timeout_s): "
                      f"{run.get('name')} is {run.get('state_name')}\n{_tail(stack, 'deployments')}", poll=2)


def _tail(stack: Stack, component: str) -> str:
    log = Path(stack.params["paths"]["stack_dir"]) / "logs" / f"{component}.log"
    return "\n".join(log.read_text(errors="replace").splitlines()[-40:]) if log.exists() else "(no log)"


def test_evidently_ui_shows_the_project_with_a_drift_snapshot(stack: Stack, page: Any) -> None:
    from playwright.sync_api import expect

    page.goto(stack.url("evidently"))
    expect(page.get_by_text(EVIDENTLY_PROJECT).first).to_be_visible()
    _shot(page, stack, "evidently-projects")
    page.get_by_text(EVIDENTLY_PROJECT).first.click()
    page.get_by_text("Reports", exact=True).first.click()
    expect(page.get_by_text("drift March vs May").first).to_be_visible()
    _shot(page, stack, "evidently-project-reports")
    page.get_by_text("View", exact=True).first.click()
    expect(page.get_by_text("Data Drift Summary").first).to_be_visible()
    expect(page.get_by_text("temp", exact=True).first).to_be_visible()
    _shot(page, stack, "evidently-drift-report")


def test_bento_openapi_page_loads(stack: Stack, page: Any) -> None:
    from playwright.sync_api import expect

    assert stack.has("bento"), "the fixture seeded a champion, so the stack should have started the Bento service"
    # BentoML's own Swagger UI (bundled, no CDN) at the root; FastAPI's /docs would fetch its assets from a CDN.
    page.goto(f"{stack.url('bento')}/")
    expect(page.get_by_text("/predict").first).to_be_visible()
    _shot(page, stack, "bento-openapi")


def test_prefect_automations_page_lists_the_drift_automation(stack: Stack, page: Any) -> None:
    from playwright.sync_api import expect

    from flows.automations import RETRAIN_ON_DRIFT

    page.goto(f"{stack.url('prefect')}/automations")
    expect(page.get_by_text(RETRAIN_ON_DRIFT).first).to_be_visible()
    # Its description (from flows/automations.py) names the event it reacts to; the toggle pauses it.
    expect(page.get_by_text("when the monitoring flow emits flightops.drift.detected").first).to_be_visible()
    _shot(page, stack, "prefect-automations")


def _replay_and_monitor(stack: Stack, start: str, end: str) -> list[dict[str, Any]]:
    """Real traffic through the stack's Bento, then one run of the stack's monitoring deployment (as scheduled)."""
    from prefect.deployments import run_deployment
    from prefect.settings import PREFECT_API_URL, temporary_settings

    from pipelines.config import load_params
    from pipelines.monitor.replay import collect_replay, replay

    params = load_params(stack.params_file)
    traffic = collect_replay(params)
    week = traffic[(traffic["time_hour"] >= pd.Timestamp(start, tz="UTC"))
                   & (traffic["time_hour"] < pd.Timestamp(end, tz="UTC"))]
    replay(week, params, stack.url("bento"))

    def monitor() -> Any:
        with temporary_settings(updates={PREFECT_API_URL: stack.api}):
            return run_deployment("monitoring/monitoring", parameters={"params_file": str(stack.params_file)},
                                  timeout=work_timeout_s())

    # In a thread of its own: Playwright's sync API runs an event loop in this one, which makes Prefect's
    # dual sync/async functions return coroutines.
    with ThreadPoolExecutor(1) as pool:
        run = pool.submit(monitor).result()
    assert run.state is not None and run.state.is_completed(), (run.state, _tail(stack, "deployments"))
    return sorted(Path(stack.params["paths"]["monitoring_dir"]).glob("window-*.json"))


def test_evidently_dashboard_fills_from_monitoring_and_a_new_snapshot_shows_after_reload(stack: Stack,
                                                                                      page: Any) -> None:
    from playwright.sync_api import expect

    from pipelines.monitor.store import PROJECT_NAME

    assert stack.has("bento")
    # A week is judged once the traffic clock (the scheduled time the last min_window_rows logged rows reach) is
    # past its end plus monitor.window_grace_hours: three more days of traffic make the week of 05-06 ready and
    # leave the week of 05-13 open.
    written = _replay_and_monitor(stack, "2013-05-06", "2013-05-17")
    assert [p.name for p in written] == ["window-20130506.json"]
    page.goto(stack.url("evidently"))
    expect(page.get_by_text(PROJECT_NAME).first).to_be_visible(timeout=SLOW_UI_MS)
    page.get_by_text(PROJECT_NAME).first.click()
    page.get_by_text("Reports", exact=True).first.click()
    expect(page.get_by_text("window-20130506").first).to_be_visible(timeout=SLOW_UI_MS)
    expect(page.get_by_text("window-20130513")).to_have_count(0, timeout=SLOW_UI_MS)
    _shot(page, stack, "evidently-monitoring-reports-before")
    # The UI keeps running; the monitoring deployment writes the next window's snapshot into its workspace.
    written = _replay_and_monitor(stack, "2013-05-17", "2013-05-24")
    assert [p.name for p in written] == ["window-20130506.json", "window-20130513.json"]
    page.reload()
    expect(page.get_by_text("window-20130513").first).to_be_visible(timeout=SLOW_UI_MS)
    _shot(page, stack, "evidently-monitoring-reports-after-reload")
    # The report opens with the summary line, then Evidently's sections.
    page.get_by_text("window-20130513").first.click()
    _click_if_present(page, "View")
    expect(page.get_by_text("for the window 2013-05-13 .. 2013-05-20").first).to_be_visible(timeout=SLOW_UI_MS)
    _shot(page, stack, "evidently-monitoring-report-summary")
    # The project's dashboard: the panels created in code, with points dated in the replayed month.
    page.goto(stack.url("evidently"))
    page.get_by_text(PROJECT_NAME).first.click()
    _click_if_present(page, "Dashboard")
    titles = ["Share of drifted feature columns", "Prediction drift", "Drift of key features",
              "Missing-value share", "Live ROC AUC", "Predictions per window",
              # the text panels (#38): what operators accepted, and what the retrains came to
              "Acknowledged data-quality alarms", "Retraining: what the gate decided"]
    for title in titles:
        expect(page.get_by_text(title, exact=True).first).to_be_visible(timeout=SLOW_UI_MS)
    # Each panel is a chart (role img) whose time axis names the replayed weeks, not the day the test ran.
    charts = page.get_by_role("img").filter(has_text="2013-05-13")
    expect(charts.first).to_be_visible(timeout=SLOW_UI_MS)
    _shot(page, stack, "evidently-monitoring-dashboard")
    assert charts.count() >= 5, page.get_by_role("img").all_text_contents()
    assert all("2013-05-06" in (text or "") for text in charts.all_text_contents())


def _click_if_present(page: Any, text: str) -> None:
    """Click a tab or button whose presence depends on the Evidently UI's layout (a page may open on it)."""
    target = page.get_by_text(text, exact=True)
    if target.count():
        target.first.click()


def test_a_paused_training_schedule_stays_paused_after_stack_down_and_up(stack: Stack) -> None:
    """Last in the module: restarts the stack. The pause goes through the endpoint the UI's toggle calls."""
    training = _deployment(stack, "training")
    schedule = training["schedules"][0]
    httpx.patch(f"{stack.api}/deployments/{training['id']}/schedules/{schedule['id']}", json={"active": False},
                timeout=10).raise_for_status()
    assert _stack("down", stack.params_file, stack.env, timeout=ready_timeout_s()).returncode == 0
    started = _stack("up", stack.params_file, stack.env, timeout=work_timeout_s())
    assert started.returncode == 0, started.stdout + started.stderr
    after = _deployment(stack, "training")
    assert [(s["schedule"]["cron"], s["active"]) for s in after["schedules"]] == [
        (stack.params["deployments"]["training"]["cron"], False)]

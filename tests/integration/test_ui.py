"""The stack as a user meets it: `python -m flows.stack up` on free ports, then headless Debian chromium checks the
Prefect UI (deployments and schedules, a Quick run of training that completes), the Evidently UI (a project with
a real snapshot) and the Bento OpenAPI page; `down` at the end must leave no process behind.

Screenshots go to pytest's temp dir (the path is printed; run with -s to see it) for people to look at.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from tests.conftest import REPO_ROOT, SMALL_WINDOW, params_dict
from tests.servers import free_port

pytestmark = [pytest.mark.integration, pytest.mark.browser]

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic"]
DESCRIPTION_START = {"training": "The training DAG", "monitoring": "Compares the latest window",
                     "retraining": "The training DAG on a newer window"}
EVIDENTLY_PROJECT = "flightops drift (browser test)"


@dataclass
class Stack:
    params_file: Path
    params: dict[str, Any]
    state: dict[str, Any]
    screenshots: Path

    def url(self, component: str) -> str:
        return next(c["url"] for c in self.state["components"] if c["name"] == component).removesuffix(
            "/deployments")

    def has(self, component: str) -> bool:
        return any(c["name"] == component for c in self.state["components"])

    @property
    def api(self) -> str:
        return f"{self.url('prefect')}/api"


def _stack(command: str, params_file: Path, env: dict[str, str], timeout: float) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "flows.stack", command, "--params", str(params_file)], cwd=REPO_ROOT,
                          env=env, capture_output=True, text=True, timeout=timeout)


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
    """Train on the small window and make it the champion, so `up` starts the Bento service.

    Runs in a subprocess because BENTOML_HOME (a temp store) must be set before bentoml is imported.
    """
    script = (
        "import sys\n"
        "from pipelines.config import load_params\n"
        "from pipelines import stages, registry\n"
        "p = load_params(sys.argv[1])\n"
        "for stage in ('collect', 'validate', 'preprocess', 'train', 'evaluate'):\n"
        "    getattr(stages, f'run_{stage}')(p)\n"
        "tag = registry.save_model(p.paths.model_dir, {'source': 'tests/integration/test_ui.py'},\n"
        "                          name=p.project.model_name)\n"
        "registry.set_champion(p.paths.registry_dir, tag, reason='browser test seed')\n")
    subprocess.run([sys.executable, "-c", script, str(params_file)], cwd=REPO_ROOT, env=env, check=True,
                   timeout=300)


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, small_table: Any) -> Iterator[Stack]:
    root = tmp_path_factory.mktemp("stack")
    data = params_dict(root, SMALL_WINDOW)
    data["stack"].update(prefect_port=free_port(), evidently_port=free_port())
    data["serve"]["port"] = free_port()
    params_file = root / "params.yaml"
    params_file.write_text(yaml.safe_dump(data))
    env = {**os.environ, "BENTOML_HOME": str(root / "bentoml"), "PREFECT_SERVER_ANALYTICS_ENABLED": "false"}
    env.pop("PREFECT_API_URL", None)
    _add_drift_snapshot(Path(data["paths"]["evidently_workspace"]), small_table)
    if importlib.util.find_spec("services.service") is not None:
        _seed_champion(params_file, env)
    started = _stack("up", params_file, env, timeout=600)
    state_file = Path(data["paths"]["stack_dir"]) / "stack.json"
    state = json.loads(state_file.read_text()) if state_file.exists() else {"components": []}
    screenshots = tmp_path_factory.mktemp("screenshots")
    print(f"\nscreenshots: {screenshots}\nstack logs: {Path(data['paths']['stack_dir']) / 'logs'}")
    try:
        assert started.returncode == 0, f"stack up failed:\n{started.stdout}\n{started.stderr}"
        yield Stack(params_file=params_file, params=data, state=state, screenshots=screenshots)
    finally:
        stopped = _stack("down", params_file, env, timeout=300)
        from flows.stack import process_tree

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
    # Each deployment's page shows its schedule in words (the wording is Prefect's, so match loosely).
    expected = {"training": "only on Monday", "monitoring": "hour", "retraining": None}
    for name in names:
        page.goto(f"{stack.url('prefect')}/deployments/deployment/{_deployment(stack, name)['id']}")
        expect(page.get_by_text("Schedules").first).to_be_visible()
        if expected[name]:
            expect(page.get_by_text(expected[name]).first).to_be_visible()
        _shot(page, stack, f"prefect-deployment-{name}")
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
    page.get_by_role("button", name="Run", exact=True).click()
    page.get_by_text("Quick run", exact=True).click()
    run = _wait_for_flow_run(stack, deployment["id"], timeout=300)
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


def _wait_for_flow_run(stack: Stack, deployment_id: str, timeout: float) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    runs: list[dict[str, Any]] = []
    while time.monotonic() < deadline:
        response = httpx.post(f"{stack.api}/flow_runs/filter", timeout=10,
                              json={"deployments": {"id": {"any_": [deployment_id]}}})
        runs = response.json()
        final = [r for r in runs if r["state_type"] in ("COMPLETED", "FAILED", "CRASHED", "CANCELLED")]
        if final:
            return final[0]
        time.sleep(2)
    raise AssertionError(f"no finished run of the training deployment after {timeout}s: "
                         f"{[(r['name'], r['state_name']) for r in runs]}\n{_tail(stack, 'deployments')}")


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

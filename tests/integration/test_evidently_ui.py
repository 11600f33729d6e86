"""The stack's Evidently UI (`python -m ops.evidently_ui`, a real `evidently ui`) keeps showing what the monitoring
flow writes into its workspace, even when it reads a file mid-write.

Evidently 0.7's watcher thread read a project's metadata.json on its creation event, before it was written, and died
on the JSONDecodeError: the running UI never showed another project or snapshot (the stack's UI test hit it on a
busy machine). Here the race is made certain: the file is created empty, the watcher reads it, and only then is it
filled.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pandas as pd
import pytest

from support.servers import free_port, poll_until, ready_timeout_s, stop, wait_for

pytestmark = pytest.mark.integration


def _ui(workspace: Path, log: Path, env: dict[str, str]) -> tuple[subprocess.Popen, str]:
    port = free_port()
    process = subprocess.Popen([sys.executable, "-m", "ops.evidently_ui", "--workspace", str(workspace),
                                "--host", "127.0.0.1", "--port", str(port)],
                               stdout=log.open("w"), stderr=subprocess.STDOUT, env=env, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    wait_for(f"{url}/", process, ready_timeout_s(), log)
    # The UI builds its project store, and starts watching the workspace, on the first API call.
    httpx.get(f"{url}/api/projects", timeout=30).raise_for_status()
    return process, url


def _projects(url: str) -> dict[str, str]:
    return {p["name"]: p["id"] for p in httpx.get(f"{url}/api/projects", timeout=10).json()}


def _snapshot() -> Any:
    from evidently import Report
    from evidently.metrics import RowCount

    return Report([RowCount()]).run(current_data=pd.DataFrame({"x": [1.0, 2.0, 3.0]}))


def test_a_project_read_mid_write_still_shows_and_the_ui_keeps_watching(tmp_path: Path) -> None:
    from evidently.ui.workspace import Workspace

    served, elsewhere, log = tmp_path / "served", tmp_path / "elsewhere", tmp_path / "ui.log"
    env = {k: v for k, v in os.environ.items() if k != "FLIGHTOPS_PARAMS"}
    process, url = _ui(served, log, env)
    try:
        # What another process writes: a project (metadata.json) and, later, a snapshot of it.
        source = Workspace(str(elsewhere))
        project = source.create_project("written while the UI runs")
        folder = served / str(project.id)
        (folder / "snapshots").mkdir(parents=True)
        metadata = folder / "metadata.json"
        metadata.touch()                      # the creation event, with nothing in the file yet
        time.sleep(1.5)                       # the watcher reads it now: empty
        metadata.write_text((elsewhere / str(project.id) / "metadata.json").read_text())
        poll_until(lambda: "written while the UI runs" in _projects(url), ready_timeout_s(),
                   lambda: f"projects {_projects(url)}; UI log:\n{log.read_text()[-3000:]}")
        # The watcher is still alive: a snapshot written afterwards shows up too.
        source.add_run(project.id, _snapshot())
        written = next((elsewhere / str(project.id) / "snapshots").glob("*.json"))
        shutil.copy(written, folder / "snapshots" / written.name)

        def listed() -> list[Any]:
            return httpx.get(f"{url}/api/projects/{project.id}/snapshots", timeout=10).json()

        poll_until(lambda: len(listed()) == 1, ready_timeout_s(),
                   lambda: f"snapshots {listed()}; UI log:\n{log.read_text()[-3000:]}")
        assert "reloading" in log.read_text(), "the failed read should be logged, then recovered"
    finally:
        stop(process)


def test_the_monitoring_project_and_dashboard_exist_before_the_ui_starts(tmp_path: Path) -> None:
    import yaml

    from pipelines.monitor.store import PROJECT_NAME
    from support.params import params_dict

    params_file = tmp_path / "params.yaml"
    params_file.write_text(yaml.safe_dump(params_dict(tmp_path)))
    workspace = tmp_path / "workspace"
    process, url = _ui(workspace, tmp_path / "ui.log", {**os.environ, "FLIGHTOPS_PARAMS": str(params_file)})
    try:
        projects = _projects(url)
        assert PROJECT_NAME in projects, projects
        board = httpx.get(f"{url}/api/v2/dashboards/{projects[PROJECT_NAME]}", timeout=10).json()
        titles = {panel.get("title") for panel in board.get("panels", [])}
        assert len(titles) >= 5 and "Share of drifted feature columns" in titles, board
    finally:
        stop(process)

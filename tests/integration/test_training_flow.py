"""The `training` Prefect flow runs the DVC project's stages: a validation failure stops the flow (with the failed
column in its message) before anything is trained, and the flow runs without a server too (Prefect's ephemeral
API). The full run against a real server, and what it leaves in the repo, is tests/integration/test_versioning.py."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from support.params import SMALL_WINDOW
from support.project_copy import copy_project, venv_env

pytestmark = pytest.mark.integration


async def _task_runs(flow_run_id) -> dict[str, str]:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    async with get_client() as client:
        runs = await client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id])))
        return {run.name: run.state.type.value for run in runs}


def test_failed_validation_stops_the_flow_before_training(prefect_api: str, tmp_path: Path,
                                                         small_table: pd.DataFrame) -> None:
    from prefect.settings import PREFECT_API_URL, temporary_settings

    from flows.training import training

    corrupt = tmp_path / "corrupt.parquet"
    small_table.assign(distance=-small_table["distance"]).to_parquet(corrupt)
    repo = copy_project(tmp_path / "project", {**SMALL_WINDOW, "source.kind": "file", "source.path": str(corrupt)})
    with temporary_settings({PREFECT_API_URL: prefect_api}):
        state = training(params_file=str(repo / "params.yaml"), return_state=True)
        runs = asyncio.run(_task_runs(state.state_details.flow_run_id))
    assert state.is_failed()
    message = str(state.result(raise_on_failure=False))
    assert "validate" in message and "distance" in message, message
    assert runs["collect"] == "COMPLETED" and runs["validate"] == "FAILED", runs
    assert not any(name.startswith(("train", "preprocess", "gate")) for name in runs)
    assert not (repo / "models").exists()


def test_training_flow_runs_without_a_server(tmp_path: Path) -> None:
    """No PREFECT_API_URL: Prefect boots an ephemeral API for the run, as a first-time user gets."""
    repo = copy_project(tmp_path / "project", {**SMALL_WINDOW, "search.strategy": "none"})
    env = {key: value for key, value in venv_env().items() if not key.startswith("PREFECT_")}
    env.update(PREFECT_HOME=str(tmp_path / "prefect-home"), PREFECT_SERVER_ANALYTICS_ENABLED="false")
    code = "from flows.training import training; training(params_file='params.yaml')"
    done = subprocess.run([sys.executable, "-c", code], cwd=repo, env=env, capture_output=True, text=True,
                          timeout=1200)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "Finished in state Completed" in done.stdout + done.stderr
    assert json.loads((repo / "metrics" / "evaluate.json").read_text())["model"]["roc_auc"] > 0.55
    status = subprocess.run(["dvc", "status"], cwd=repo, env=env, capture_output=True, text=True)
    assert "up to date" in status.stdout, status.stdout
    assert os.path.exists(repo / "dvc.lock")

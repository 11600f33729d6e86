"""The `training` Prefect flow against a real Prefect server: task states, outputs, artifact, and a validation
failure that stops the flow before anything is trained."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pandas as pd
import pytest
import yaml

from tests.conftest import SMALL_WINDOW, params_dict
from tests.servers import work_timeout_s

pytestmark = pytest.mark.integration


def _params_file(root: Path, overrides: dict | None = None) -> Path:
    path = root / "params.yaml"
    path.write_text(yaml.safe_dump(params_dict(root, {**SMALL_WINDOW, **(overrides or {})})))
    return path


async def _task_runs(flow_run_id) -> dict[str, str]:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    async with get_client() as client:
        runs = await client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id])))
        return {run.name: run.state.type.value for run in runs}


async def _artifact(key: str):
    from prefect.client.orchestration import get_client

    async with get_client() as client:
        return await client.read_latest_artifacts() if key is None else [
            a for a in await client.read_latest_artifacts() if a.key == key]


def test_training_flow_runs_every_stage_against_a_real_server(prefect_api: str, tmp_path: Path) -> None:
    from prefect.settings import PREFECT_API_URL, temporary_settings

    from flows.training import training

    params_file = _params_file(tmp_path)
    with temporary_settings({PREFECT_API_URL: prefect_api}):
        state = training(params_file=str(params_file), return_state=True)
        assert state.is_completed(), state
        summary = state.result()
        runs = asyncio.run(_task_runs(state.state_details.flow_run_id))
        artifacts = asyncio.run(_artifact("training-summary"))
    names = {name.split("-")[0].split(" ")[0]: status for name, status in runs.items()}
    assert {"collect", "validate", "preprocess", "plan", "select", "evaluate", "gate", "promote"} <= set(names)
    assert all(status == "COMPLETED" for status in runs.values()), runs
    assert any(name.startswith("collect 2013-03-01..2013-06-01") for name in runs)
    assert summary["evaluate"]["model"]["roc_auc"] > 0.55
    assert json.loads((tmp_path / "metrics" / "evaluate.json").read_text()) == summary["evaluate"]
    assert artifacts and "baseline: prior" in artifacts[0].data


def test_failed_validation_stops_the_flow_before_training(prefect_api: str, tmp_path: Path,
                                                         small_table: pd.DataFrame) -> None:
    from prefect.settings import PREFECT_API_URL, temporary_settings

    from flows.training import training

    corrupt = tmp_path / "corrupt.parquet"
    small_table.assign(distance=-small_table["distance"]).to_parquet(corrupt)
    params_file = _params_file(tmp_path, {"source.kind": "file", "source.path": str(corrupt)})
    with temporary_settings({PREFECT_API_URL: prefect_api}):
        state = training(params_file=str(params_file), return_state=True)
        runs = asyncio.run(_task_runs(state.state_details.flow_run_id))
    assert state.is_failed()
    assert "distance" in state.message or "distance" in str(state.result(raise_on_failure=False))
    assert {name.split(" ")[0].split("-")[0]: s for name, s in runs.items()}["validate"] == "FAILED"
    assert not any(name.startswith(("train", "preprocess")) for name in runs)
    assert not (tmp_path / "models").exists()


def test_training_flow_runs_without_a_server(tmp_path: Path) -> None:
    """No PREFECT_API_URL: Prefect boots an ephemeral API for the run, as a first-time user gets."""
    import os
    import subprocess
    import sys

    from tests.conftest import REPO_ROOT

    params_file = _params_file(tmp_path)
    env = {key: value for key, value in os.environ.items() if not key.startswith("PREFECT_")}
    env.update(PREFECT_HOME=str(tmp_path / "prefect-home"), PREFECT_SERVER_ANALYTICS_ENABLED="false")
    code = f"from flows.training import training; training(params_file={str(params_file)!r})"
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, env=env, capture_output=True, text=True,
                          timeout=work_timeout_s())
    assert done.returncode == 0, done.stderr[-3000:]
    assert "Finished in state Completed" in done.stdout + done.stderr
    assert json.loads((tmp_path / "metrics" / "evaluate.json").read_text())["model"]["roc_auc"] > 0.55

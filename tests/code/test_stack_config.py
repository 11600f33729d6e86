"""The `deployments:` and `stack:` params, the deployments built from them, and the stack's refusals that come
before anything starts (a port in use, nothing to stop)."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

from pipelines.config import Params, ParamsError
from support.params import REPO_ROOT, params_dict


def test_stack_ports_must_differ(make_params: Callable[..., Params]) -> None:
    with pytest.raises(ParamsError, match="stack ports must differ"):
        make_params({"serve.port": 4200})


def test_training_cron_must_have_five_fields(make_params: Callable[..., Params]) -> None:
    with pytest.raises(ParamsError, match=r"deployments\.training\.cron: must be a 5-field cron"):
        make_params({"deployments.training.cron": "weekly"})


def test_deployments_carry_schedules_parameters_and_tags_from_params(tmp_path: Path) -> None:
    from flows.deployments import build_deployments

    params_file = tmp_path / "params.yaml"
    params_file.write_text(yaml.safe_dump(params_dict(tmp_path, {"deployments.training.cron": "15 4 * * 2",
                                                                  "deployments.training.paused": True})))
    deployments = {d.name: d for d in build_deployments(params_file)}
    training = deployments["training"]
    assert training.schedules[0].schedule.cron == "15 4 * * 2"
    assert training.schedules[0].schedule.timezone == "UTC"
    assert training.paused is True
    assert training.parameters == {"params_file": str(params_file.resolve())}
    assert training.tags == ["flightops", "training"]
    assert training.entrypoint == "flows.training.training"
    assert deployments["monitoring"].schedules[0].schedule.interval.total_seconds() == 3600
    assert deployments["retraining"].schedules == []
    assert deployments["retraining"].parameters["data_end"] is None


def _stack(command: str, params_file: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "ops.stack", command, "--params", str(params_file)],
                          cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)


@pytest.mark.integration  # runs `python -m ops.stack` as a process
def test_up_refuses_a_port_in_use_naming_the_param_before_starting_anything(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        data = params_dict(tmp_path, {"stack.evidently_port": port})
        params_file = tmp_path / "params.yaml"
        params_file.write_text(yaml.safe_dump(data))
        result = _stack("up", params_file)
    assert result.returncode == 1
    assert f"port {port} on 127.0.0.1 is already in use" in result.stderr
    assert "set stack.evidently_port" in result.stderr
    assert not (tmp_path / "var" / "stack" / "stack.json").exists()
    assert not (tmp_path / "var" / "stack" / "logs").exists()


@pytest.mark.integration  # runs `python -m ops.stack` as a process
def test_down_and_status_when_the_stack_is_not_up(tmp_path: Path) -> None:
    params_file = tmp_path / "params.yaml"
    params_file.write_text(yaml.safe_dump(params_dict(tmp_path)))
    assert _stack("down", params_file).returncode == 0
    status = _stack("status", params_file)
    assert status.returncode == 1 and "the stack is not up" in status.stdout


@pytest.mark.integration  # starts processes
def test_stop_tree_ends_the_group_and_descendants_that_left_it() -> None:
    """A component's tree: its process group, plus a child that moved to a session of its own (as Prefect's flow
    runs do). All are found, and all are gone after stop_tree."""
    from ops.stack import alive, process_tree, stop_tree

    leader = subprocess.Popen(["bash", "-c", "sleep 60 & setsid sleep 61 & wait"], start_new_session=True)
    try:
        deadline = time.monotonic() + 30
        while len(process_tree(leader.pid)) < 3 and time.monotonic() < deadline:
            time.sleep(0.1)
        tree = process_tree(leader.pid)
        assert len(tree) == 3 and leader.pid in tree
        assert stop_tree(leader.pid, timeout=10) == set()
        leader.wait(timeout=10)
        assert not any(alive(pid) for pid in tree)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(leader.pid, signal.SIGKILL)

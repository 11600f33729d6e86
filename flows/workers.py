"""Flow runs taken by Prefect workers (`prefect.runner: workers`), and what happens to a run whose process dies.

Work pool: the deployments are registered on the `process` work pool `prefect.work_pool`; each `prefect worker start
--pool <pool>` process, on this machine or another, polls the server and runs what it takes as a subprocess of its
own. Nothing is copied: a worker runs the flow from its own checkout at the same path (`working_dir`, as the Dask
workers read data/prepared at the same path; the deployments' parameters name the params file by its absolute
path), with its own environment (`uv sync --frozen`). `worker_argv` is the command, for the stack and for a
second machine.

Crashed runs, with Prefect's own machinery (no watchdog of ours):
- every flow run sends a `prefect.flow-run.heartbeat` event every `prefect.heartbeat_s`
  (PREFECT_FLOWS_HEARTBEAT_FREQUENCY, set in the runs' environment);
- the Automation CRASH_SILENT ("zombie flow" detection, docs.prefect.io/v3/advanced/detect-zombie-flows): a
  proactive trigger that expects, after each heartbeat of a flow run, another flow-run event within
  `prefect.crashed_after_s`; when none comes the server sets the run Crashed. A worker that dies alone leaves its
  flow run process running (it keeps its heartbeats and finishes); a run is crashed when its process dies (the
  machine is lost, the OOM killer, kill -9 of the worker's process group);
- the Automation RETRY_CRASHED: on a Crashed event of a run of this project's deployments (by tag) whose attempt
  count (`prefect.run-count`) is at most `prefect.crash_retries`, the server moves it to Scheduled/AwaitingRetry,
  the transition the UI's Retry button makes (Prefect allows it for deployment runs and counts the attempt), and
  any live worker of the pool (or the serve process) takes it.
Flow-level `retries` are a different thing: they re-run a run that *failed* inside its still-living process.

Both Automations are found by name and updated in place, keeping the operator's enabled/paused state.
"""

from __future__ import annotations

import socket
import sys
from datetime import timedelta
from pathlib import Path
from typing import Any

from pipelines.config import Params

REPO_ROOT = Path(__file__).resolve().parents[1]
CRASH_SILENT = "flightops: crash silent flow runs"
RETRY_CRASHED = "flightops: retry crashed flow runs"
HEARTBEAT_ENV = "PREFECT_FLOWS_HEARTBEAT_FREQUENCY"


def run_environment(params: Params, params_file: Path) -> dict[str, str]:
    """What every flow run's process gets, whoever starts it: the params file, the checkout on its import path, the
    heartbeat period, and dependencies left alone (the worker's environment is already `uv sync --frozen`)."""
    from flows.stack import PARAMS_ENV, QUIET_ENV

    return {**QUIET_ENV, PARAMS_ENV: str(Path(params_file).resolve()), "PYTHONPATH": str(REPO_ROOT),
            HEARTBEAT_ENV: str(params.prefect.heartbeat_s), "PREFECT_RUNNER_AUTO_INSTALL_DEPENDENCIES": "false"}


def job_variables(params: Params, params_file: Path) -> dict[str, Any]:
    """The deployments' job variables on the process pool: run in this checkout, with `run_environment`."""
    return {"working_dir": str(REPO_ROOT), "env": run_environment(params, params_file)}


def worker_name(index: int, host: str | None = None) -> str:
    """`<hostname>-<n>`: unique per machine and stable across restarts, so the UI's Workers tab reads as a list of
    machines."""
    return f"{host or socket.gethostname()}-{index}"


def worker_argv(params: Params, name: str, healthcheck: bool = False) -> list[str]:
    """`prefect worker start` for the project's pool; `deployments.limit` flow runs at once per worker."""
    argv = [str(Path(sys.executable).parent / "prefect"), "worker", "start", "--pool", params.prefect.work_pool,
            "--type", "process", "--name", name, "--limit", str(params.deployments.limit)]
    return [*argv, "--with-healthcheck"] if healthcheck else argv


def ensure_work_pool(params: Params) -> Any:
    """Create the process work pool once; an existing one is left as the operator configured it (paused, limits)."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import WorkPoolCreate
    from prefect.exceptions import ObjectAlreadyExists, ObjectNotFound

    with get_client(sync_client=True) as client:
        try:
            pool = client.read_work_pool(params.prefect.work_pool)
        except ObjectNotFound:
            try:
                return client.create_work_pool(WorkPoolCreate(
                    name=params.prefect.work_pool, type="process",
                    description="flightops deployments; `prefect worker start --pool "
                                f"{params.prefect.work_pool}` on any machine with the checkout (docs/scale-out.md)"))
            except ObjectAlreadyExists:  # created meanwhile by another process
                return client.read_work_pool(params.prefect.work_pool)
        if pool.type != "process":
            raise RuntimeError(f"work pool {pool.name!r} (prefect.work_pool) has type {pool.type!r}, not 'process': "
                               "name another pool or delete that one")
        return pool


def _tags(params: Params) -> dict[str, Any]:
    """Related-resource filter: the flow run carries one of the project's deployment tags."""
    return {"prefect.resource.role": "tag",
            "prefect.resource.id": [f"prefect.tag.{tag}" for tag in params.deployments.tags]}


def crash_silent_runs(params: Params) -> Any:
    """Prefect's zombie-flow Automation: a running flow run with no event for `crashed_after_s` -> Crashed."""
    from prefect.automations import Automation
    from prefect.client.schemas.objects import StateType
    from prefect.events.actions import ChangeFlowRunState
    from prefect.events.schemas.automations import EventTrigger, Posture

    return Automation(
        name=CRASH_SILENT,
        description=(f"A flow run of the flightops deployments sends a heartbeat every {params.prefect.heartbeat_s}s; "
                     f"silent for {params.prefect.crashed_after_s}s (its process died with its machine or worker), "
                     "it is marked Crashed. Declared in flows/workers.py (prefect.* in params.yaml)."),
        tags=list(params.deployments.tags),
        trigger=EventTrigger(
            after={"prefect.flow-run.heartbeat"},
            # Any event of the run (a heartbeat or a state change, whatever the state's name) shows it is alive.
            expect={"prefect.flow-run.*"},
            match={"prefect.resource.id": "prefect.flow-run.*"},
            match_related=_tags(params) if params.deployments.tags else {},
            for_each={"prefect.resource.id"},
            posture=Posture.Proactive,
            threshold=1,
            within=timedelta(seconds=params.prefect.crashed_after_s),
        ),
        actions=[ChangeFlowRunState(
            state=StateType.CRASHED,
            message=f"No heartbeat for {params.prefect.crashed_after_s}s: the flow run's process is gone "
                    f"(Automation {CRASH_SILENT!r})")],
    )


def retry_crashed_runs(params: Params) -> Any:
    """A crashed deployment run back to Scheduled/AwaitingRetry (the UI's Retry), at most `crash_retries` times."""
    from prefect.automations import Automation
    from prefect.client.schemas.objects import StateType
    from prefect.events.actions import ChangeFlowRunState
    from prefect.events.schemas.automations import EventTrigger, Posture

    attempts = [str(n) for n in range(1, params.prefect.crash_retries + 1)]
    return Automation(
        name=RETRY_CRASHED,
        description=(f"A crashed run of the flightops deployments is queued again (AwaitingRetry) for any worker, "
                     f"up to {params.prefect.crash_retries} time(s). Declared in flows/workers.py."),
        enabled=params.prefect.crash_retries > 0,
        tags=list(params.deployments.tags),
        trigger=EventTrigger(
            expect={"prefect.flow-run.Crashed"},
            # The attempt that crashed: run-count 1 is the first attempt; attempts past crash_retries stay Crashed.
            match={"prefect.resource.id": "prefect.flow-run.*", "prefect.run-count": attempts or ["none"]},
            match_related=_tags(params) if params.deployments.tags else {},
            posture=Posture.Reactive,
            threshold=1,
        ),
        actions=[ChangeFlowRunState(
            state=StateType.SCHEDULED, name="AwaitingRetry",
            message=f"Crashed; queued again for any worker (Automation {RETRY_CRASHED!r})")],
    )


def _apply(wanted: Any, keep_enabled: bool = True) -> Any:
    from prefect.automations import Automation

    try:
        existing = Automation.read(name=wanted.name)
    except ValueError:  # Prefect's "Automation with name ... not found"
        return wanted.create()
    wanted.id = existing.id
    if keep_enabled:
        wanted.enabled = existing.enabled  # the operator's pause survives every redeploy
    wanted.update()
    return wanted


def apply_crash_automations(params: Params) -> list[Any]:
    """Create or update both Automations (idempotent); `crash_retries: 0` disables the retry one."""
    return [_apply(crash_silent_runs(params)),
            _apply(retry_crashed_runs(params), keep_enabled=params.prefect.crash_retries > 0)]


def worker_environment(params: Params, params_file: Path, healthcheck_port: int | None = None) -> dict[str, str]:
    """A worker's own environment beyond PREFECT_API_URL: its health endpoint on stack.host only."""
    env = run_environment(params, params_file)
    if healthcheck_port is not None:
        env |= {"PREFECT_WORKER_WEBSERVER_HOST": params.stack.host,
                "PREFECT_WORKER_WEBSERVER_PORT": str(healthcheck_port)}
    return env


"""Flow runs taken by Prefect workers (`prefect.runner: workers`), and what happens to a run whose process dies.

Work pool: the deployments are registered on the `process` work pool `prefect.work_pool`; each `prefect worker start
--pool <pool>` process, on this machine or another, polls the server and runs what it takes as a subprocess of its
own, with its own environment (`uv sync --frozen`). Where the run's code and files come from is
`prefect.code_source` (flows/deployments.py): this checkout at the same path (`checkout`: `working_dir`, the params
file by its absolute path), or a clone of the deployments' commit in the run's own temporary working directory
(`git`: nothing shared but the Prefect API, the git remote, the DVC remote and the registry remote).
`worker_argv` is the command, for the stack and for a second machine.

Crashed runs, with Prefect's own machinery (no watchdog of ours):
- every flow run sends a `prefect.flow-run.heartbeat` event every `prefect.heartbeat_s`
  (PREFECT_FLOWS_HEARTBEAT_FREQUENCY, set in the runs' environment);
- the Automation CRASH_SILENT ("zombie flow" detection, docs.prefect.io/v3/advanced/detect-zombie-flows): a
  proactive trigger that expects, after each heartbeat of a flow run, another flow-run event within
  `prefect.crashed_after_s`; when none comes the server sets the run Crashed. A run is crashed when its process
  dies: the machine is lost, the OOM killer, kill -9 of the worker's process group, and also a worker killed alone:
  its orphaned run writes its output to a pipe nobody reads any more and dies at its next write (observed, see
  docs/scale-out.md); only a run that writes nothing until it ends finishes unnoticed;
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
from pathlib import Path

from pipelines.config import Params

REPO_ROOT = Path(__file__).resolve().parents[1]


def worker_name(index: int, host: str | None = None) -> str:
    """`<hostname>-<n>`: unique per machine and stable across restarts, so the UI's Workers tab reads as a list of
    machines."""
    return f"{host or socket.gethostname()}-{index}"


def worker_argv(params: Params, name: str, healthcheck: bool = False) -> list[str]:
    """`prefect worker start` for the project's pool; `deployments.limit` flow runs at once per worker."""
    argv = [str(Path(sys.executable).parent / "prefect"), "worker", "start", "--pool", params.prefect.work_pool,
            "--type", "process", "--name", name, "--limit", str(params.deployments.limit)]
    return [*argv, "--with-healthcheck"] if healthcheck else argv


def worker_environment(params: Params, params_file: Path, healthcheck_port: int | None = None) -> dict[str, str]:
    """A worker's own environment beyond PREFECT_API_URL: its health endpoint on loopback only (the stack that
    started it probes it there; nothing else has a reason to)."""
    from flows.deployments import run_environment

    env = run_environment(params, params_file)
    if healthcheck_port is not None:
        env |= {"PREFECT_WORKER_WEBSERVER_HOST": "127.0.0.1",
                "PREFECT_WORKER_WEBSERVER_PORT": str(healthcheck_port)}
    return env


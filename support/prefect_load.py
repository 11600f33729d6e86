"""N flow runs at once against a Prefect server, and the stack around it: the load that
tests/integration/test_scale_out.py asserts on and `python -m benchmarks.prefect_load` times (one implementation).

Each run is a process of its own (`python -m support.prefect_load --one-run TASKS`) running one flow run of TASKS
concurrent tasks against PREFECT_API_URL (every state change of every task is a write to the server's database). The
processes import Prefect first and are released together by a barrier file, so the runs overlap whatever each
interpreter's start-up took. Database errors: lines of the Prefect server's log naming a database failure
("database is locked", OperationalError, asyncpg/SQLAlchemy errors) plus runs that did not complete.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
# What a failing database looks like in the Prefect server's log (SQLite's lock, SQLAlchemy, asyncpg).
DATABASE_ERROR = re.compile(r"database is locked|OperationalError|sqlalchemy\.exc\.|asyncpg\.exceptions|"
                            r"DBAPIError|TimeoutError: QueuePool", re.IGNORECASE)


@dataclass(frozen=True)
class LoadResult:
    database: str
    runs: int
    tasks: int
    completed: int
    wall_s: float           # all runs released at once -> the last one's process exited
    span_s: float           # first run's start -> last run's end, as the server recorded them
    slowest_run_s: float
    database_errors: int    # error lines in the server log + runs that did not complete
    error_lines: tuple[str, ...]


def _one_run(tasks: int, barrier: Path, timeout: float) -> None:
    """One flow run of `tasks` concurrent tasks (threads), in its own process against PREFECT_API_URL. It imports
    Prefect, says it is ready (`barrier/ready-<pid>`) and starts when `barrier/go` appears, so the runs overlap
    whatever each interpreter's start-up took."""
    from prefect import flow, task

    @task
    def step(index: int) -> int:
        return index * index

    @flow(name="prefect-load", log_prints=False)
    def load(tasks: int) -> int:
        return sum(step.map(range(tasks)).result())

    (barrier / f"ready-{os.getpid()}").touch()
    deadline = time.monotonic() + timeout
    while not (barrier / "go").exists():
        if time.monotonic() > deadline:
            raise TimeoutError(f"no {barrier / 'go'} within {timeout:.0f}s")
        time.sleep(0.02)
    load(tasks)


def run_load(api: str, runs: int, tasks: int, server_log: Path, database: str, timeout: float,
             auth: str | None = None) -> LoadResult:
    """Start `runs` processes at once, each one flow run; wait for all; read the runs and the server log. `auth`:
    the server's basic-auth string (the stack's server has one), given to the runs as PREFECT_API_AUTH_STRING."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowFilter, FlowFilterName, FlowRunFilter, FlowRunFilterStartTime

    log_offset = server_log.stat().st_size if server_log.exists() else 0
    env = {**os.environ, "PREFECT_API_URL": api, "PYTHONPATH": str(REPO_ROOT)}
    if auth is not None:
        env["PREFECT_API_AUTH_STRING"] = auth
    started = time.time()
    barrier = Path(tempfile.mkdtemp(prefix="prefect-load-barrier-"))
    processes = [subprocess.Popen([sys.executable, "-m", "support.prefect_load", "--one-run", str(tasks),
                                   "--barrier", str(barrier), "--timeout", str(timeout)],
                                  cwd=REPO_ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
                 for _ in range(runs)]
    # stdout goes to pipes read only at the end: the runs print little (Prefect's few log lines per run).
    deadline = time.monotonic() + timeout
    while len(list(barrier.glob("ready-*"))) < runs and time.monotonic() < deadline:
        if any(p.poll() is not None for p in processes):
            break
        time.sleep(0.05)
    (barrier / "go").touch()
    go = time.time()
    outputs = []
    for process in processes:
        try:
            outputs.append(process.communicate(timeout=max(1.0, timeout - (time.time() - started)))[0].decode())
        except subprocess.TimeoutExpired:
            process.kill()
            outputs.append(process.communicate()[0].decode() + "\n(killed: timeout)")
    wall = time.time() - go
    shutil.rmtree(barrier, ignore_errors=True)
    with get_client(sync_client=True) as client:
        flow_runs = client.read_flow_runs(
            flow_filter=FlowFilter(name=FlowFilterName(any_=["prefect-load"])),
            flow_run_filter=FlowRunFilter(start_time=FlowRunFilterStartTime(
                after_=datetime.fromtimestamp(started - 1, UTC))))
    done = [r for r in flow_runs if r.state and r.state.is_completed()]
    with server_log.open(errors="replace") as log:
        log.seek(log_offset)
        lines = tuple(line.rstrip() for line in log if DATABASE_ERROR.search(line))
    failed_processes = [out[-2000:] for process, out in zip(processes, outputs, strict=True) if process.returncode]
    starts = [r.start_time for r in done if r.start_time]
    ends = [r.end_time for r in done if r.end_time]
    span = (max(ends) - min(starts)).total_seconds() if starts and ends else float("nan")
    slowest = max(((r.end_time - r.start_time).total_seconds() for r in done), default=float("nan"))
    return LoadResult(database=database, runs=runs, tasks=tasks, completed=len(done), wall_s=round(wall, 2),
                      span_s=round(span, 2), slowest_run_s=round(slowest, 2),
                      database_errors=len(lines) + (runs - len(done)),
                      error_lines=lines[:20] + tuple(failed_processes[:3]))


def stack_params(root: Path, overrides: dict) -> Path:
    """params.yaml with its paths under `root`, free ports for the stack's servers, and `overrides`."""
    import yaml

    from support.params import params_dict
    from support.servers import free_port

    data = params_dict(root, {"stack.prefect_port": free_port(), "stack.evidently_port": free_port(),
                              "serve.port": free_port(), **overrides})
    path = root / "params.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def stack(command: str, params_file: Path, timeout: float) -> subprocess.CompletedProcess:
    env = {**os.environ, "PREFECT_SERVER_ANALYTICS_ENABLED": "false"}
    env.pop("PREFECT_API_URL", None)
    return subprocess.run([sys.executable, "-m", "ops.stack", command, "--params", str(params_file)], cwd=REPO_ROOT,
                          env=env, capture_output=True, text=True, timeout=timeout)


def main(argv: list[str] | None = None) -> int:
    """The entry point of one load process (`run_load` starts them)."""
    parser = argparse.ArgumentParser(prog="python -m support.prefect_load")
    parser.add_argument("--one-run", type=int, metavar="TASKS", required=True)
    parser.add_argument("--barrier", type=Path, required=True)
    parser.add_argument("--timeout", type=float, default=600.0)
    args = parser.parse_args(argv)
    _one_run(args.one_run, args.barrier, args.timeout)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

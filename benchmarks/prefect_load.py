"""Benchmark: N flow runs at once against the stack's Prefect server, on SQLite and on PostgreSQL.

    .venv/bin/python -m benchmarks.prefect_load [--runs 8] [--tasks 30] [--databases sqlite postgres]

For each database: `python -m flows.stack up` on a params file in a temp folder (free ports, `prefect.database` set,
the rest as in params.yaml), then `--runs` processes started together, each running one flow run of `--tasks`
concurrent tasks against the server's API (every state change of every task is a write to the database), then
`flows.stack down`. The processes import Prefect first and are then released together (a barrier file), so the
runs overlap. Printed per database: wall time from the release to the last process's exit, the slowest run (its
start to end on the server), runs Completed, and database errors: lines of the
Prefect server's log naming a database failure ("database is locked", OperationalError, asyncpg/SQLAlchemy
errors) plus runs that did not complete. tests/integration/test_scale_out.py runs the same load (`run_load`).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
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


def run_load(api: str, runs: int, tasks: int, server_log: Path, database: str, timeout: float) -> LoadResult:
    """Start `runs` processes at once, each one flow run; wait for all; read the runs and the server log."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowFilter, FlowFilterName, FlowRunFilter, FlowRunFilterStartTime

    log_offset = server_log.stat().st_size if server_log.exists() else 0
    env = {**os.environ, "PREFECT_API_URL": api, "PYTHONPATH": str(REPO_ROOT)}
    started = time.time()
    barrier = Path(tempfile.mkdtemp(prefix="prefect-load-barrier-"))
    processes = [subprocess.Popen([sys.executable, "-m", "benchmarks.prefect_load", "--one-run", str(tasks),
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
    from datetime import UTC, datetime

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
    slowest = max(((r.end_time - r.start_time).total_seconds() for r in done), default=float("nan"))
    return LoadResult(database=database, runs=runs, tasks=tasks, completed=len(done), wall_s=round(wall, 2),
                      slowest_run_s=round(slowest, 2), database_errors=len(lines) + (runs - len(done)),
                      error_lines=lines[:20] + tuple(failed_processes[:3]))


def private_folder(prefix: str) -> Path:
    """A temp folder the stack's PostgreSQL can reach when the stack runs as root (it then runs as `postgres`):
    searchable, not listable, by others (pytest's own temp folders are 0700)."""
    folder = Path(tempfile.mkdtemp(prefix=prefix))
    folder.chmod(0o711)
    return folder


def stack_params(root: Path, overrides: dict) -> Path:
    """params.yaml with its paths under `root`, free ports for the stack's servers, and `overrides`."""
    import yaml

    from tests.conftest import params_dict
    from tests.servers import free_port

    data = params_dict(root, {"stack.prefect_port": free_port(), "stack.evidently_port": free_port(),
                              "serve.port": free_port(), **overrides})
    path = root / "params.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def stack(command: str, params_file: Path, timeout: float) -> subprocess.CompletedProcess:
    env = {**os.environ, "PREFECT_SERVER_ANALYTICS_ENABLED": "false"}
    env.pop("PREFECT_API_URL", None)
    return subprocess.run([sys.executable, "-m", "flows.stack", command, "--params", str(params_file)], cwd=REPO_ROOT,
                          env=env, capture_output=True, text=True, timeout=timeout)


def measure(database: str, runs: int, tasks: int) -> LoadResult:
    from pipelines.config import load_params

    root = private_folder(f"prefect-load-{database}-")
    try:
        params_file = stack_params(root, {"prefect.database": database})
        params = load_params(params_file)
        bound = 5 * params.stack.start_timeout_s
        up = stack("up", params_file, bound)
        try:
            if up.returncode:
                raise RuntimeError(f"stack up failed:\n{up.stdout}\n{up.stderr}")
            api = f"http://{params.stack.host}:{params.stack.prefect_port}/api"
            from prefect.settings import PREFECT_API_URL, temporary_settings

            with temporary_settings(updates={PREFECT_API_URL: api}):
                return run_load(api, runs, tasks, params.paths.stack_dir / "logs" / "prefect.log", database, bound)
        finally:
            stack("down", params_file, bound)
    finally:
        shutil.rmtree(root, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.prefect_load", description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=8)
    parser.add_argument("--tasks", type=int, default=30)
    parser.add_argument("--databases", nargs="+", default=["sqlite", "postgres"], choices=["sqlite", "postgres"])
    parser.add_argument("--one-run", type=int, metavar="TASKS", help=argparse.SUPPRESS)
    parser.add_argument("--barrier", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--timeout", type=float, default=600.0, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.one_run is not None:
        _one_run(args.one_run, args.barrier, args.timeout)
        return 0
    results = []
    for database in args.databases:
        result = measure(database, args.runs, args.tasks)
        results.append(result)
        print(f"{database:9s} {result.runs} runs x {result.tasks} tasks: wall {result.wall_s:7.2f} s, slowest run "
              f"{result.slowest_run_s:7.2f} s, completed {result.completed}/{result.runs}, database errors "
              f"{result.database_errors}", flush=True)
        for line in result.error_lines[:5]:
            print(f"    {line[:300]}")
    print(json.dumps([asdict(r) for r in results], indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Past one machine, for real on 127.0.0.1 (issue 21, items 2 and 3).

- `ops.stack up` with `prefect.database: postgres` runs its own PostgreSQL (Debian's package, initdb'd in the
  stack's folder, a generated 0600 password that never reaches stack.json) and the Prefect server on it, with
  `prefect.runner: workers` (deployments on the process pool, two `prefect worker` processes); 8 flow runs at
  once against it complete with no database error. The same load on the default SQLite stack is measured beside it
  (its errors are reported, not asserted: SQLite may or may not lock under this load on a given machine).
- Two workers on one pool share the runs; SIGKILL of one worker's whole process tree (the machine is lost) leaves
  its run silent: Prefect's zombie-flow Automation marks it Crashed from the missing heartbeats, and the retry
  Automation queues it again (AwaitingRetry), so the other worker runs it to completion.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from support.params import params_dict
from support.prefect_load import run_load, stack, stack_params
from support.servers import poll_until, private_folder, ready_timeout_s, stop, work_timeout_s

pytestmark = pytest.mark.integration
RUNS = 8


def _flow_rows(params, port: int) -> int:
    """Flow runs in the stack's PostgreSQL, read with the stack's own credentials: proof the server writes there."""
    import asyncio

    import asyncpg

    from ops import postgres

    async def count() -> int:
        connection = await asyncpg.connect(host=params.prefect.database_host, port=port, user=postgres.USER,
                                           password=postgres.ensure_password(postgres.folder(params)),
                                           database=postgres.DATABASE)
        try:
            return await connection.fetchval("SELECT count(*) FROM flow_run")
        finally:
            await connection.close()

    return asyncio.run(count())


@pytest.mark.parametrize("database", ["postgres", "sqlite"])
def test_stack_database_takes_8_concurrent_flow_runs(database: str) -> None:
    from pipelines.config import load_params

    root = private_folder(f"stack-{database}-")
    overrides = {"prefect.database": database}
    if database == "postgres":
        overrides["prefect.runner"] = "workers"
    params_file = stack_params(root, overrides)
    params = load_params(params_file)
    state_file = params.paths.stack_dir / "stack.json"
    up = stack("up", params_file, work_timeout_s())
    state = json.loads(state_file.read_text()) if state_file.exists() else {"components": []}
    try:
        assert up.returncode == 0, f"stack up failed:\n{up.stdout}\n{up.stderr}"
        from ops.stack import prefect_api, prefect_auth_headers, prefect_client_settings
        from pipelines.credentials import ensure_prefect_auth

        names = [c["name"] for c in state["components"]]
        api, auth = prefect_api(params), prefect_auth_headers(params)
        assert httpx.get(f"{api}/deployments/name/training/training", timeout=10).status_code == 401
        if database == "postgres":
            assert names[:2] == ["postgres", "prefect"] and {"worker-1", "worker-2"} <= set(names)
            assert "deployments" not in names  # the workers run the flow runs, no serve process
            password_file = params.paths.stack_dir / "postgres" / "password"
            assert password_file.stat().st_mode & 0o777 == 0o600
            assert password_file.read_text().strip() not in state_file.read_text()
            training = httpx.get(f"{api}/deployments/name/training/training", timeout=10, headers=auth).json()
            assert training["work_pool_name"] == params.prefect.work_pool
            workers = httpx.post(f"{api}/work_pools/{params.prefect.work_pool}/workers/filter", json={},
                                 timeout=10, headers=auth).json()
            assert len({w["name"] for w in workers}) == 2
        else:
            assert "postgres" not in names and "deployments" in names
        from prefect.settings import temporary_settings

        with temporary_settings(updates=prefect_client_settings(params)):
            result = run_load(api, RUNS, 30, params.paths.stack_dir / "logs" / "prefect.log", database,
                              work_timeout_s(), auth=ensure_prefect_auth(params))
        print(f"\n{database}: {RUNS} concurrent flow runs x 30 tasks: wall {result.wall_s} s, span {result.span_s} s, "
              f"slowest run "
              f"{result.slowest_run_s} s, completed {result.completed}, database errors {result.database_errors}")
        if database == "postgres":
            assert result.completed == RUNS and result.database_errors == 0, result.error_lines
            postgres_port = next(c["port"] for c in state["components"] if c["name"] == "postgres")
            assert _flow_rows(params, postgres_port) >= RUNS
        else:
            assert result.completed + result.database_errors >= RUNS  # every run is accounted for
    finally:
        down = stack("down", params_file, ready_timeout_s())
        from ops.stack import process_tree

        left = {c["name"]: sorted(process_tree(c["pid"])) for c in state["components"] if process_tree(c["pid"])}
        shutil.rmtree(root, ignore_errors=True)
        assert down.returncode == 0, f"stack down failed:\n{down.stdout}\n{down.stderr}"
        assert not left, f"processes left after down: {left}"


def _start_worker(argv: list[str], env: dict[str, str], log: Path) -> subprocess.Popen:
    with open(log, "w") as out:
        return subprocess.Popen(argv, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
                                cwd="/")  # nothing from the test's cwd: the deployment says where to run


def _records(folder: Path, run_id: str) -> list[dict]:
    path = folder / f"{run_id}.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def _wait(what: str, check, timeout: float, logs: list[Path], poll: float = 2.0):
    def failure() -> str:
        return what + "".join(f"\n--- {log}\n{log.read_text(errors='replace')[-2000:]}" for log in logs if log.exists())

    return poll_until(check, timeout, failure, poll)


@dataclass
class _Pool:
    """A work pool on the test's Prefect server with the probe flow deployed on it, and the workers started on it."""

    params: Any
    records: Path
    client: Any
    workers: dict[str, subprocess.Popen] = field(default_factory=dict)
    logs: list[Path] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    folder: Path = Path()

    def start(self, name: str) -> None:
        from ops.workers import worker_argv

        self.logs.append(self.folder / f"{name}.log")
        self.workers[name] = _start_worker(worker_argv(self.params, name), self.env, self.logs[-1])


@contextmanager
def _probe_pool(prefect_api: str, tmp_path: Path, pool: str, deployment: str) -> Iterator[_Pool]:
    """The pool `pool` with the probe flow deployed as `probe/<deployment>` and the crash Automations applied; every
    worker started on it is stopped on the way out."""
    from prefect.client.orchestration import get_client
    from prefect.deployments.runner import EntrypointType
    from prefect.settings import PREFECT_API_URL, temporary_settings

    from flows.automations import apply_crash_automations
    from flows.deployments import ensure_work_pool, job_variables
    from pipelines.config import parse_params
    from tests.integration.scale_flows import probe

    data = params_dict(tmp_path, {"prefect.work_pool": pool, "prefect.crashed_after_s": 60})
    params_file = tmp_path / "params.yaml"
    params_file.write_text(yaml.safe_dump(data))
    params = parse_params(data)
    records = tmp_path / "records"
    records.mkdir()
    with temporary_settings(updates={PREFECT_API_URL: prefect_api}), get_client(sync_client=True) as client:
        ensure_work_pool(params)
        apply_crash_automations(params)
        probe.to_deployment(name=deployment, tags=list(params.deployments.tags),
                            entrypoint_type=EntrypointType.MODULE_PATH, work_pool_name=params.prefect.work_pool,
                            job_variables=job_variables(params, params_file)).apply()
        state = _Pool(params, records, client, env={**os.environ, "PREFECT_API_URL": prefect_api}, folder=tmp_path)
        try:
            yield state
        finally:
            for process in state.workers.values():
                stop(process)


def test_two_workers_share_runs_and_a_lost_workers_run_is_crashed_and_retried(prefect_api: str,
                                                                               tmp_path: Path) -> None:
    from prefect.deployments import run_deployment

    from flows.automations import CRASH_SILENT, RETRY_CRASHED
    from ops.stack import process_tree
    from ops.workers import worker_name

    with _probe_pool(prefect_api, tmp_path, "scale-test", "probe") as pool:
        client, records, workers, logs = pool.client, pool.records, pool.workers, pool.logs
        for index in (1, 2):
            pool.start(worker_name(index, "scale-test"))

        # 1. Runs spread over both workers (each takes deployments.limit = 1 run at a time).
        runs = [run_deployment("probe/probe", parameters={"seconds": 8, "record_dir": str(records)}, timeout=0)
                for _ in range(4)]
        _wait("4 probe runs completed", lambda: all(client.read_flow_run(r.id).state.is_completed()
                                                     for r in runs), work_timeout_s(), logs)
        ran_on = {_records(records, str(r.id))[0]["worker"] for r in runs}
        assert ran_on == set(workers), f"runs went to {ran_on}, workers {set(workers)}"

        # 2. A run hangs on its first attempt; its worker's machine is lost (SIGKILL to the worker and the flow
        # run process it started, all at once).
        hung = run_deployment("probe/probe", parameters={"seconds": 3600, "record_dir": str(records)},
                              timeout=0)
        first = _wait("the hung run started", lambda: _records(records, str(hung.id)), work_timeout_s(), logs)[0]
        assert client.read_flow_run(hung.id).state.is_running()
        lost = workers.pop(first["worker"])
        tree = process_tree(lost.pid)
        assert first["pid"] in tree, "the flow run process is the lost worker's descendant"
        # Frozen first, so that no process of the lost machine outlives another: killed in a set's order, a
        # worker whose flow run died a moment before it did could report the exit (-9) itself, which a lost
        # machine never does (seen once on a loaded machine).
        for pid in tree:
            os.kill(pid, signal.SIGSTOP)
        for pid in tree:
            os.kill(pid, signal.SIGKILL)
        lost.wait(timeout=30)

        def finished():
            run = client.read_flow_run(hung.id)
            return run if run.state.is_final() and run.run_count >= 2 else None

        final = _wait("the crashed run retried and completed", finished,
                      work_timeout_s() + pool.params.prefect.crashed_after_s, logs, poll=5)
        assert final.state.is_completed(), final.state
        states = client.read_flow_run_states(hung.id)
        names = [s.name for s in states]
        crashed = [s for s in states if s.type.value == "CRASHED"]
        assert len(crashed) == 1 and CRASH_SILENT in (crashed[0].message or ""), names
        after = states[states.index(crashed[0]) + 1]
        assert after.name == "AwaitingRetry" and RETRY_CRASHED in (after.message or ""), names
        attempts = _records(records, str(hung.id))
        survivor = next(iter(workers))
        assert [(a["worker"], a["run_count"]) for a in attempts] == [(first["worker"], 1), (survivor, 2)]


def test_a_worker_killed_alone_leaves_its_run_to_be_crashed_and_retried(prefect_api: str, tmp_path: Path) -> None:
    """SIGKILL of the worker alone (its flow run process lives on, orphaned): what happens to the run, as
    docs/scale-out.md says. The run's output went to the dead worker through a pipe (stream_output), so the orphan
    dies at its next write, on a broken pipe, and goes silent; the zombie Automation marks it Crashed and the retry
    Automation queues it for the surviving worker."""
    from prefect.deployments import run_deployment

    from flows.automations import RETRY_CRASHED
    from ops.stack import alive
    from ops.workers import worker_name

    with _probe_pool(prefect_api, tmp_path, "scale-alone", "probe-alone") as pool:
        client, records, workers, logs = pool.client, pool.records, pool.workers, pool.logs
        name = worker_name(1, "alone")
        pool.start(name)
        # The first attempt works for 20 s, then writes (Prefect logs its end to the console); a retry is short.
        run = run_deployment("probe/probe-alone", parameters={"seconds": 30, "record_dir": str(records),
                                                              "chatter": True}, timeout=0)
        first = _wait("the run started", lambda: _records(records, str(run.id)), work_timeout_s(), logs)[0]
        killed = workers.pop(name)
        os.kill(killed.pid, signal.SIGKILL)  # the worker alone: its flow run process is not touched
        killed.wait(timeout=30)
        assert alive(first["pid"]), "the flow run process outlives its worker"
        survivor = worker_name(2, "alone")
        pool.start(survivor)

        def finished():
            current = client.read_flow_run(run.id)
            return current if current.state.is_final() and (current.state.is_completed()
                                                             or current.run_count >= 2) else None

        final = _wait("the orphaned run reached a final state", finished,
                      work_timeout_s() + pool.params.prefect.crashed_after_s, logs, poll=5)
        states = client.read_flow_run_states(run.id)
        names = [s.name for s in states]
        attempts = [(a["worker"], a["run_count"]) for a in _records(records, str(run.id))]
        crashed = [s for s in states if s.type.value == "CRASHED"]
        print(f"\nworker killed alone: states {names}, attempts {attempts}, crashed: "
              f"{[c.message for c in crashed]}")
        assert final.state.is_completed(), names
        assert len(crashed) == 1, names
        after = states[states.index(crashed[0]) + 1]
        assert after.name == "AwaitingRetry" and RETRY_CRASHED in (after.message or ""), names
        assert attempts == [(name, 1), (survivor, 2)], attempts
        assert not alive(first["pid"]), "the orphaned first attempt is gone"

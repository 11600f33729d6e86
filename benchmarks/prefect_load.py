"""Benchmark: N flow runs at once against the stack's Prefect server, on SQLite and on PostgreSQL.

    .venv/bin/python -m benchmarks.prefect_load [--runs 8] [--tasks 30] [--databases sqlite postgres]

For each database: `python -m ops.stack up` on a params file in a temp folder (free ports, `prefect.database` set,
the rest as in params.yaml), then `--runs` processes released together, each running one flow run of `--tasks`
concurrent tasks against the server's API (`support/prefect_load.py`, the load tests/integration/test_scale_out.py
asserts on), then `ops.stack down`. Printed per database: wall time from the release to the last process's exit,
the span from the first run's start to the last run's end as the server recorded them, the slowest run, runs
Completed, database errors (server log lines naming a database failure, plus runs that did not complete), and the
machine's load average (other work on the machine moves these figures).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
from dataclasses import asdict

from support.prefect_load import LoadResult, run_load, stack, stack_params
from support.servers import private_folder


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
            from prefect.settings import temporary_settings

            from ops.stack import prefect_api, prefect_client_settings
            from pipelines.credentials import ensure_prefect_auth

            with temporary_settings(updates=prefect_client_settings(params)):
                return run_load(prefect_api(params), runs, tasks, params.paths.stack_dir / "logs" / "prefect.log",
                                database, bound, auth=ensure_prefect_auth(params))
        finally:
            stack("down", params_file, bound)
    finally:
        shutil.rmtree(root, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.prefect_load", description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=8)
    parser.add_argument("--tasks", type=int, default=30)
    parser.add_argument("--databases", nargs="+", default=["sqlite", "postgres"], choices=["sqlite", "postgres"])
    args = parser.parse_args(argv)
    print(f"load average before: {' '.join(f'{x:.1f}' for x in os.getloadavg())}", flush=True)
    results = []
    for database in args.databases:
        result = measure(database, args.runs, args.tasks)
        results.append(result)
        print(f"{database:9s} {result.runs} runs x {result.tasks} tasks: wall {result.wall_s:7.2f} s, span on the "
              f"server {result.span_s:7.2f} s, slowest run {result.slowest_run_s:7.2f} s, completed "
              f"{result.completed}/{result.runs}, database errors {result.database_errors}, load average "
              f"{os.getloadavg()[0]:.1f}", flush=True)
        for line in result.error_lines[:5]:
            print(f"    {line[:300]}")
    print(json.dumps([asdict(r) for r in results], indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

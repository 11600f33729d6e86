"""Real servers for integration tests: started as subprocesses on 127.0.0.1 with free ports, always stopped."""

from __future__ import annotations

import contextlib
import functools
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

import httpx

T = TypeVar("T")


@functools.cache
def ready_timeout_s() -> float:
    """How long a test waits for a real server to answer: the project's one readiness bound, stack.start_timeout_s.

    Tests share it with the stack and Prefect's ephemeral server (prefect.toml), so a loaded machine that is slow
    to start a server is slow for all of them alike, and raising the bound is one edit in params.yaml.
    """
    from pipelines.config import load_params

    return load_params().stack.start_timeout_s


def work_timeout_s() -> float:
    """How long a test lets real work take (a training run, a stack start, `dvc repro`, the replay loop) before it
    fails: five readiness bounds. Derived, not a second setting, so one edit of stack.start_timeout_s moves every
    bound; a loaded 2-core machine (load 15-35 here) made fixed 300-900 s bounds fail on work that was only slow."""
    return 5 * ready_timeout_s()


def poll_until(check: Callable[[], T], timeout: float, failure: Callable[[], str], poll: float = 1.0) -> T:
    """`check()`'s first truthy value within `timeout` seconds; else an AssertionError with `failure()` (what was
    awaited and the state a reader needs to see why: logs, runs)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(poll)
    raise AssertionError(f"not within {timeout:.0f}s: {failure()}")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for(url: str, process: subprocess.Popen, timeout: float, log: Path) -> None:
    """Poll `url` until it answers 200; fail at once if the server exits, or after `timeout` seconds."""
    started = time.monotonic()
    deadline = started + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode}:\n{log.read_text()[-3000:]}")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(url, timeout=2).status_code == 200:
                return
        time.sleep(0.3)
    raise TimeoutError(f"{url} did not answer 200 within {timeout:.0f}s (stack.start_timeout_s; waited "
                       f"{time.monotonic() - started:.0f}s); server log {log}:\n{log.read_text()[-3000:]}")


def stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def private_folder(prefix: str) -> Path:
    """A temp folder the stack's PostgreSQL can reach when the stack runs as root (it then runs as `postgres`):
    searchable, not listable, by others (pytest's own temp folders are 0700)."""
    folder = Path(tempfile.mkdtemp(prefix=prefix))
    folder.chmod(0o711)
    return folder


@contextlib.contextmanager
def postgres_database() -> Iterator[str]:
    """The stack's own PostgreSQL (`python -m ops.postgres serve`, then `ensure-database`) in a temp folder, on a
    free port; yields Prefect's connection URL for it. Stopped (SIGTERM: a clean shutdown) and removed after."""
    import shutil

    import yaml

    from ops import postgres
    from pipelines.config import parse_params
    from support.params import params_dict

    root = private_folder("prefect-postgres-")
    data = params_dict(root)
    params_file = root / "params.yaml"
    params_file.write_text(yaml.safe_dump(data))
    params, port, log = parse_params(data), free_port(), root / "postgres.log"
    with open(log, "w") as out:
        process = subprocess.Popen([sys.executable, "-m", "ops.postgres", "serve", "--params", str(params_file),
                                    "--port", str(port)], stdout=out, stderr=subprocess.STDOUT,
                                   start_new_session=True)
    try:
        postgres.ensure_database(params, port, ready_timeout_s())
        yield postgres.connection_url("127.0.0.1", port, postgres.ensure_password(postgres.folder(params)))
    except Exception as error:
        raise RuntimeError(f"{error}\npostgres log:\n{log.read_text()[-3000:]}") from error
    finally:
        stop(process)
        shutil.rmtree(root, ignore_errors=True)


@contextlib.contextmanager
def prefect_server(home: Path, database_url: str | None = None, auth_string: str | None = None) -> Iterator[str]:
    """A real `prefect server start` (SQLite under `home`, or the database at `database_url`; with `auth_string`,
    Prefect's basic auth: `server.api.auth_string`, every client then needs `api.auth_string`); yields its API URL."""
    port = free_port()
    env = {**os.environ, "PREFECT_HOME": str(home), "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
           "PREFECT_UI_ENABLED": "true", "PREFECT_API_URL": f"http://127.0.0.1:{port}/api"}
    if database_url:
        env["PREFECT_API_DATABASE_CONNECTION_URL"] = database_url
    if auth_string:
        env["PREFECT_SERVER_API_AUTH_STRING"] = auth_string
    log = home / "server.log"
    home.mkdir(parents=True, exist_ok=True)
    with open(log, "w") as out:
        process = subprocess.Popen(
            [str(Path(sys.executable).parent / "prefect"), "server", "start", "--host", "127.0.0.1", "--port",
             str(port)], env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        wait_for(f"http://127.0.0.1:{port}/api/health", process, timeout=ready_timeout_s(), log=log)
        yield f"http://127.0.0.1:{port}/api"
    finally:
        stop(process)

"""The local stack in one command: `python -m ops.stack up|down|status [--params params.yaml]`.

`up` starts, each in its own process group on `stack.host`, and waits for each to answer before the next:
with `prefect.database: postgres` a PostgreSQL of its own (`ops/postgres.py`, on a free port), the Prefect server
(on that PostgreSQL, or SQLite under PREFECT_HOME in `paths.stack_dir`), then either the process that serves the
deployments (`prefect.runner: serve`, `python -m flows.deployments`) or, with `prefect.runner: workers`, the
registration of the deployments on the work pool and `prefect.workers` `prefect worker start` processes
(`ops/workers.py`; each with a health endpoint on a free port), the Bento service (`bentoml serve services`,
only when a champion exists; with `--bento-image IMAGE`, that OCI image run by buildah with the registry mounted:
`deploy/container.py`) and the Evidently UI over `paths.evidently_workspace`; then it prints the URLs. PIDs,
commands and URLs are recorded in `<stack_dir>/stack.json` and each server logs to `<stack_dir>/logs/<name>.log`.
`down` stops every recorded process group and the descendants that left it (Prefect starts each flow run in a
session of its own): SIGTERM, then SIGKILL after `stack.stop_timeout_s`, and checks nothing is left.

Every port is checked before anything starts: a port in use is reported with the param key that sets it. A
component's set-up commands (creating the database, registering the deployments) run before it starts; secrets
(the database URL with its password) go to the process's environment only, never to stack.json.

Nothing is open by default (`pipelines/credentials.py` makes the secrets once, 0600, in
`<stack_dir>/credentials/`): the Prefect server takes its basic-auth string as `server.api.auth_string` and every
client the stack starts (the deployments process or the workers, and the flow runs they start) as `api.auth_string`,
through their environment; the UI asks for it once per browser (`python -m ops.stack credentials` says where it
is). The Bento's admin routes need the admin token; its workers run as `serve.worker_user` (the service sees to it
when started as root). The Evidently UI, which has no login, listens on 127.0.0.1 unless
`stack.evidently_behind_auth_proxy` says an authenticating proxy fronts it. Each server's stdout and stderr go
through `ops/logs.py`, rotated at `stack.log_max_bytes` with `stack.log_backups` old files kept.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psutil
from pydantic import ConfigDict, Field, model_validator

from flows.deployments import FLOWS, QUIET_ENV, REPO_ROOT, run_environment
from pipelines import credentials, io
from pipelines.config import PARAMS_ENV, Params, load_params
from pipelines.contracts import StackComponent, StackState

LOCAL_HOST = "127.0.0.1"  # what only this machine's stack talks to (the workers' health endpoints)


class StackError(RuntimeError):
    """The stack cannot be started or stopped as asked; the message says why and what to change."""


class Component(StackComponent):
    """A component being started: its `StackComponent` record, which `up` fills in (pid, log) as it goes, plus the
    environment that must not be written to stack.json (a database password, the Prefect auth string)."""

    model_config = ConfigDict(frozen=False, extra="forbid")
    secret_env: dict[str, str] = Field(default_factory=dict, exclude=True, repr=False)

    @model_validator(mode="before")
    @classmethod
    def _no_secret_env(cls, data: Any) -> Any:
        return data  # here they are held; `record` drops them and StackComponent refuses them

    def record(self) -> StackComponent:
        """What stack.json keeps: everything but the secrets (the contract refuses them)."""
        return StackComponent.model_validate(self.model_dump())


# --- processes ----------------------------------------------------------------------------------------------------

def alive(pid: int) -> bool:
    """Whether `pid` runs; a zombie (exited, not yet reaped) counts as gone."""
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def process_tree(pid: int) -> set[int]:
    """`pid`, every live process in its process group, and all their descendants (whatever their session)."""
    roots = set()
    for proc in psutil.process_iter():
        with contextlib.suppress(OSError):  # gone meanwhile
            if proc.pid == pid or os.getpgid(proc.pid) == pid:
                roots.add(proc)
    found = set()
    for proc in roots:
        with contextlib.suppress(psutil.Error):
            found |= {proc.pid} | {child.pid for child in proc.children(recursive=True)}
    return {p for p in found if alive(p)}


def _signal_all(pids: set[int], sig: signal.Signals) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, sig)


def stop_tree(pid: int, timeout: float) -> set[int]:
    """SIGTERM `pid`'s tree, SIGKILL what is left after `timeout`; returns pids still alive (should be empty)."""
    tree = process_tree(pid)
    if not tree:
        return set()
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGTERM)
    _signal_all(tree, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and any(alive(p) for p in tree):
        time.sleep(0.2)
    # Catch anything started while stopping (e.g. a flow run subprocess) before the hard kill.
    tree |= {p for p in tree if alive(p) for p in process_tree(p)}
    survivors = {p for p in tree if alive(p)}
    if survivors:
        _signal_all(survivors, signal.SIGKILL)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and any(alive(p) for p in survivors):
            time.sleep(0.1)
    return {p for p in tree if alive(p)}


def port_in_use(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return True
    return False


# --- the plan -----------------------------------------------------------------------------------------------------

def _bin(name: str) -> str:
    return str(Path(sys.executable).parent / name)


def free_port(host: str) -> int:
    """A port nothing listens on now, for the stack's internal servers (the database, the workers' health)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def _database(params: Params, params_file: Path) -> tuple[list[Component], list[list[str]], dict[str, str]]:
    """With `prefect.database: postgres`: the PostgreSQL component, the Prefect server's set-up step (create the
    database) and its secret environment (the connection URL). SQLite: nothing (Prefect's default, in PREFECT_HOME)."""
    if params.prefect.database == "sqlite":
        return [], [], {}
    from ops import postgres

    postgres.binaries()  # refuse now, with the apt command, rather than after the Prefect server failed
    # Only the Prefect server, beside it, talks to the database: loopback unless prefect.database_host says otherwise.
    host = params.prefect.database_host
    port = free_port(host)
    password = postgres.ensure_password(postgres.folder(params))
    flag = ["--params", str(params_file), "--port", str(port)]
    component = Component(name="postgres", argv=[sys.executable, "-m", "ops.postgres", "serve", *flag],
                          health_url=f"tcp://{host}:{port}", url=f"postgresql://{host}:{port}/{postgres.DATABASE}",
                          host=host, port=port, env={**QUIET_ENV, "PYTHONPATH": str(REPO_ROOT)})
    setup = [[sys.executable, "-m", "ops.postgres", "ensure-database", *flag]]
    return [component], setup, {"PREFECT_API_DATABASE_CONNECTION_URL": postgres.connection_url(host, port, password)}


def _runners(params: Params, params_file: Path, prefect_env: dict[str, str],
             client_secrets: dict[str, str]) -> list[Component]:
    """Who runs the flow runs: the `serve` process, or the work pool's registration and `prefect.workers` workers."""
    from ops.workers import worker_argv, worker_environment, worker_name

    host, port = params.stack.host, params.stack.prefect_port
    env = {**prefect_env, **run_environment(params, params_file)}
    flows = list(FLOWS)
    if params.prefect.runner == "serve":
        return [Component(
            name="deployments", argv=[sys.executable, "-m", "flows.deployments", "--params", str(params_file)],
            # Ready once the last deployment is registered (they are applied in order).
            health_url=f"http://{host}:{port}/api/deployments/name/{flows[-1]}/{flows[-1]}",
            url=f"http://{host}:{port}/deployments", env=env, secret_env=client_secrets, health_needs_auth=True)]
    register = [sys.executable, "-m", "flows.deployments", "--params", str(params_file), "--register-only"]
    workers = []
    for index in range(1, params.prefect.workers + 1):
        health = free_port(LOCAL_HOST)  # the stack's own health check: loopback whatever stack.host is
        workers.append(Component(
            name=f"worker-{index}", argv=worker_argv(params, worker_name(index), healthcheck=True),
            health_url=f"http://{LOCAL_HOST}:{health}/health",
            url=f"http://{host}:{port}/work-pools/work-pool/{params.prefect.work_pool}", host=LOCAL_HOST, port=health,
            env={**env, **worker_environment(params, params_file, health)}, secret_env=client_secrets,
            setup=[register] if index == 1 else []))
    return workers


def plan(params: Params, params_file: Path, bento_image: str | None = None) -> tuple[list[Component], list[str]]:
    """The components to start, in order, and notes on those left out and why. With `bento_image` the Bento is
    served from that OCI image (`python -m deploy.container run`: buildah, the registry and model store mounted
    read-only, so promotions reach it as they reach `bentoml serve`) instead of `bentoml serve` of this checkout."""
    stack, notes = params.stack, []
    host, home = stack.host, params.paths.stack_dir.resolve()
    api = f"http://{host}:{stack.prefect_port}/api"
    common = {**QUIET_ENV, PARAMS_ENV: str(params_file), "PYTHONPATH": str(REPO_ROOT)}
    prefect_env = {**common, "PREFECT_HOME": str(home / "prefect"), "PREFECT_API_URL": api,
                   "PREFECT_UI_ENABLED": "true"}
    database, database_setup, database_env = _database(params, params_file)
    auth = credentials.ensure_prefect_auth(params)
    credentials.ensure_service_credentials(params)
    components = [
        *database,
        Component(name="prefect",
                  argv=[_bin("prefect"), "server", "start", "--host", host, "--port", str(stack.prefect_port)],
                  health_url=f"{api}/health", url=f"http://{host}:{stack.prefect_port}",
                  host=host, port_key="stack.prefect_port", port=stack.prefect_port, env=prefect_env,
                  setup=database_setup, secret_env={**database_env, "PREFECT_SERVER_API_AUTH_STRING": auth}),
        *_runners(params, params_file, prefect_env, {"PREFECT_API_AUTH_STRING": auth}),
    ]
    from pipelines.release.registry import champion_tag, open_registry

    store = open_registry(params)
    if champion_tag(store) is None:
        notes.append(f"Bento service skipped: no champion in {store.location} yet "
                     "(run the training deployment; the gate promotes one), then `up` again")
    else:
        serve = params.serve  # the Bento's own address, the one the service and the replay use
        if bento_image:
            argv = [sys.executable, "-m", "deploy.container", "run", bento_image, "--params", str(params_file),
                    "--port", str(serve.port), "--follow-registry"]
        else:
            argv = [_bin("bentoml"), "serve", "services.service:FlightDelay", "--working-dir", str(REPO_ROOT),
                    "--host", serve.host, "--port", str(serve.port)]
        components.append(Component(
            name="bento", argv=argv,
            health_url=f"http://{serve.host}:{serve.port}/readyz", url=f"http://{serve.host}:{serve.port}",
            host=serve.host, port_key="serve.port", port=serve.port, env=common))
    workspace = params.paths.evidently_workspace.resolve()
    ui_host = evidently_host(params)
    if ui_host != host:
        notes.append(f"Evidently UI on {ui_host} only: it has no login (stack.evidently_behind_auth_proxy: true once "
                     "an authenticating proxy fronts it; docs/operations.md)")
    components.append(Component(
        name="evidently", argv=[sys.executable, "-m", "ops.evidently_ui", "--workspace", str(workspace),
                                "--host", ui_host, "--port", str(stack.evidently_port)],
        health_url=f"http://{ui_host}:{stack.evidently_port}/", url=f"http://{ui_host}:{stack.evidently_port}",
        host=ui_host, port_key="stack.evidently_port", port=stack.evidently_port, env=common))
    return components, notes


LOOPBACK = ("127.", "::1", "localhost")


def evidently_host(params: Params) -> str:
    """Where the Evidently UI listens: stack.host when that is loopback or an authenticating proxy fronts the UI,
    else 127.0.0.1 (the UI has no login of its own)."""
    host = params.stack.host
    if host.startswith(LOOPBACK) or params.stack.evidently_behind_auth_proxy:
        return host
    return "127.0.0.1"


def prefect_api(params: Params) -> str:
    return f"http://{params.stack.host}:{params.stack.prefect_port}/api"


def prefect_auth_headers(params: Params) -> dict[str, str]:
    """The Authorization header of the stack's Prefect API (basic auth with the generated string)."""
    import base64

    token = base64.b64encode(credentials.ensure_prefect_auth(params).encode()).decode()
    return {"Authorization": f"Basic {token}"}


def prefect_client_settings(params: Params) -> dict:
    """Prefect settings for a client of the stack's server (`prefect.settings.temporary_settings(updates=...)`):
    its API URL and the auth string."""
    from prefect.settings import PREFECT_API_AUTH_STRING, PREFECT_API_URL

    return {PREFECT_API_URL: prefect_api(params), PREFECT_API_AUTH_STRING: credentials.ensure_prefect_auth(params)}


# --- state --------------------------------------------------------------------------------------------------------

def state_path(params: Params) -> Path:
    return StackState.path(params.paths.stack_dir)


def read_state(params: Params) -> StackState | None:
    return StackState.load(params.paths.stack_dir)


def _write_state(params: Params, params_file: Path, components: list[Component]) -> None:
    StackState(params_file=str(params_file), updated=datetime.now(UTC).isoformat(),
               components=[c.record() for c in components]).save(params.paths.stack_dir)


def running_components(params: Params) -> list[StackComponent]:
    state = read_state(params)
    return [] if state is None else [c for c in state.components if any(alive(pid) for pid in c.pids)]


# --- commands -----------------------------------------------------------------------------------------------------

def _console():  # rich is imported on use: `status` and errors answer fast
    from rich.console import Console

    return Console(highlight=False)


def probe(url: str, headers: dict[str, str] | None = None) -> str:
    """'200' when the component answers: an HTTP GET for http URLs; for `tcp://host:port` (a database, which speaks
    no HTTP) a TCP connection. Otherwise the HTTP status or the error's name."""
    import httpx

    if url.startswith("tcp://"):
        host, _, port = url.removeprefix("tcp://").rpartition(":")
        try:
            with socket.create_connection((host, int(port)), timeout=3):
                return "200"
        except OSError as error:
            return type(error).__name__
    try:
        return str(httpx.get(url, timeout=3, headers=headers).status_code)
    except httpx.HTTPError as error:
        return type(error).__name__


def _run_setup(component: Component, timeout: float, out: Any) -> None:
    env = {**os.environ, **component.env, **component.secret_env}
    for argv in component.setup:
        try:
            done = subprocess.run(argv, cwd=REPO_ROOT, env=env, stdin=subprocess.DEVNULL, stdout=out,
                                  stderr=subprocess.STDOUT, timeout=timeout, check=False)
        except subprocess.TimeoutExpired:
            raise StackError(f"{component.name}: set-up `{' '.join(argv[1:4])} ...` did not finish within "
                             f"{timeout:.0f}s (stack.start_timeout_s); log {component.log}:\n"
                             f"{_tail(component.log)}") from None
        if done.returncode != 0:
            raise StackError(f"{component.name}: set-up `{' '.join(argv[1:4])} ...` failed with code "
                             f"{done.returncode}; log {component.log}:\n{_tail(component.log)}")


def _health_headers(params: Params, component: Component | StackComponent) -> dict[str, str] | None:
    return prefect_auth_headers(params) if component.health_needs_auth else None


def _wait_healthy(component: Component, process: subprocess.Popen, timeout: float,
                  headers: dict[str, str] | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise StackError(f"{component.name} exited with code {process.returncode} before it was ready; "
                             f"log {component.log}:\n{_tail(component.log)}")
        if probe(component.health_url, headers) == "200":
            return
        time.sleep(0.5)
    raise StackError(f"{component.name} did not answer {component.health_url} within {timeout:.0f}s "
                     f"(stack.start_timeout_s); log {component.log}:\n{_tail(component.log)}")


def _tail(log: str, lines: int = 30) -> str:
    with contextlib.suppress(FileNotFoundError):
        return "\n".join(Path(log).read_text(errors="replace").splitlines()[-lines:])
    return "(no log)"


def up(params_file: Path, bento_image: str | None = None) -> int:
    params_file = Path(params_file).resolve()  # the servers run elsewhere (cwd, subprocesses): one absolute file
    console = _console()
    params = load_params(params_file)
    running = running_components(params)
    if running:
        console.print(f"[yellow]the stack is already up[/] ({state_path(params)}); `down` first to restart it")
        return status(params_file)
    components, notes = plan(params, params_file, bento_image)
    busy = [c for c in components if c.port and port_in_use(c.host, c.port)]
    if busy:
        raise StackError("; ".join(f"port {c.port} on {c.host} is already in use: {c.name} cannot "
                                   f"start (set {c.port_key} in {params_file})" for c in busy))
    for note in notes:
        console.print(f"[yellow]note:[/] {note}")
    logs = params.paths.stack_dir.resolve() / io.STACK_LOGS_DIR
    logs.mkdir(parents=True, exist_ok=True)
    started: list[Component] = []
    try:
        for component in components:
            component.log = str(logs / f"{component.name}{io.LOG_SUFFIX}")
            with console.status(f"starting {component.name}: waiting for {component.health_url}"):
                begin = time.monotonic()
                writer = _log_writer(params, component)
                started.append(component)
                _write_state(params, params_file, started)
                try:
                    _run_setup(component, params.stack.start_timeout_s, writer.stdin)
                    env = {**os.environ, **component.env, **component.secret_env}
                    process = subprocess.Popen(component.argv, cwd=REPO_ROOT, env=env, stdin=subprocess.DEVNULL,
                                               stdout=writer.stdin, stderr=subprocess.STDOUT, start_new_session=True)
                finally:
                    writer.stdin.close()  # the server (and what it starts) holds the pipe's only writing end now
                component.pid = process.pid
                _write_state(params, params_file, started)
                _wait_healthy(component, process, params.stack.start_timeout_s, _health_headers(params, component))
            console.print(f"[green]✓[/] {component.name} (pid {component.pid}) ready in "
                          f"{time.monotonic() - begin:.1f}s")
    except (StackError, KeyboardInterrupt, OSError):
        console.print("[red]start failed[/]: stopping what was started")
        _stop(params, console)
        raise
    _print_urls(console, started, params_file)
    return 0


def _print_urls(console, components: list[Component], params_file: Path) -> None:
    from rich.table import Table

    table = Table(title="flightops stack")
    table.add_column("component")
    table.add_column("url", no_wrap=True)
    table.add_column("pid")
    for c in components:
        table.add_row(c.name, c.url, str(c.pid))
    console.print(table)
    console.print(f"logs: {Path(components[0].log).parent}")
    console.print(f"stop it with: python -m ops.stack down --params {params_file}")


def _log_writer(params: Params, component: Component) -> subprocess.Popen:
    """The `ops.logs` process that writes the component's output to its log, rotated at stack.log_max_bytes."""
    writer = subprocess.Popen(
        [sys.executable, "-m", "ops.logs", component.log, "--max-bytes", str(params.stack.log_max_bytes),
         "--backups", str(params.stack.log_backups)],
        cwd=REPO_ROOT, env={**os.environ, "PYTHONPATH": str(REPO_ROOT)}, stdin=subprocess.PIPE,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    component.log_pid = writer.pid
    return writer


def _stop_log_writer(pid: int | None, timeout: float) -> set[int]:
    """A log writer ends once its input does (its server is stopped); one still held open by a stray is stopped."""
    if not pid:
        return set()
    deadline = time.monotonic() + min(timeout, 5)
    while time.monotonic() < deadline and alive(pid):
        time.sleep(0.1)
    return stop_tree(pid, timeout) if alive(pid) else set()


def _stop(params: Params, console) -> list[int]:
    state = read_state(params)
    if state is None:
        return []
    left: list[int] = []
    for component in reversed(state.components):
        pid = component.pid
        survivors = stop_tree(pid, params.stack.stop_timeout_s) if pid else set()
        survivors |= _stop_log_writer(component.log_pid, params.stack.stop_timeout_s)
        if not component.pids:
            continue
        if survivors:
            console.print(f"[red]✗[/] {component.name}: processes {sorted(survivors)} would not stop")
            left.extend(survivors)
        else:
            console.print(f"[green]✓[/] stopped {component.name} (pid {pid})")
    if not left:
        state_path(params).unlink(missing_ok=True)
    return left


def down(params_file: Path) -> int:
    console = _console()
    params = load_params(params_file)
    if read_state(params) is None:
        console.print(f"the stack is not up (no {state_path(params)})")
        return 0
    left = _stop(params, console)
    if left:
        raise StackError(f"processes still alive after SIGKILL: {sorted(left)}")
    console.print("stack stopped")
    return 0


def status(params_file: Path) -> int:
    from rich.table import Table

    console = _console()
    params = load_params(params_file)
    state = read_state(params)
    if state is None:
        console.print(f"the stack is not up (no {state_path(params)})")
        return 1
    table = Table(title=f"flightops stack ({state_path(params)})")
    for column in ("component", "pid", "process", "health"):
        table.add_column(column)
    table.add_column("url", no_wrap=True)
    healthy = True
    for c in state.components:
        running = bool(c.pid) and alive(c.pid)
        answer = probe(c.health_url, _health_headers(params, c)) if running else "-"
        healthy &= running and answer == "200"
        table.add_row(c.name, str(c.pid), "[green]running[/]" if running else "[red]gone[/]", answer, c.url)
    console.print(table)
    return 0 if healthy else 1


def show_credentials(params_file: Path) -> int:
    """Make the stack's credentials if they are missing and say where they are (never the secrets themselves)."""
    console = _console()
    params = load_params(params_file)
    credentials.ensure_prefect_auth(params)
    credentials.ensure_service_credentials(params)
    ui = f"http://{params.stack.host}:{params.stack.prefect_port}"
    console.print(f"Prefect UI login ({ui}): the text of {credentials.prefect_auth_file(params).resolve()} "
                  f"(`cat` it; the form takes it whole, `{credentials.PREFECT_USER}:<password>`)")
    console.print(f"Service admin token (/reload, /metadata): {credentials.admin_token_file(params).resolve()}")
    for name in params.serve.api_keys:
        console.print(f"API key {name!r} (/predict*): {credentials.api_key_file(params, name).resolve()}")
    console.print("the token and keys are sent as `Authorization: Bearer <token>`; to rotate a secret, delete its file "
                  "and restart (`down`, `up`)")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ops.stack", description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=["up", "down", "status", "credentials"])
    parser.add_argument("--params", default=io.PARAMS_FILE, help=f"params file (default: {io.PARAMS_FILE})")
    parser.add_argument("--bento-image", metavar="IMAGE",
                        help="up: serve the Bento from this OCI image (python -m deploy.package --containerize)")
    args = parser.parse_args(argv)
    params_file = Path(args.params).resolve()
    try:
        if args.command == "up" and args.bento_image:
            return up(params_file, bento_image=args.bento_image)
        return {"up": up, "down": down, "status": status, "credentials": show_credentials}[args.command](params_file)
    except (StackError, ValueError) as error:  # ParamsError is a ValueError: both carry a message for the user
        print(f"error: stack {args.command}: {error}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    raise SystemExit(main())

"""Process- and connection-level guards BentoML 1.4 has no setting for: each one closes a hole found by attacking
the running service (issue 15), and each is applied by `services/service.py` when BentoML imports it.

- `private_process_manager`: BentoML starts circus (its process manager) with its control and pub/sub endpoints on
  `tcp://127.0.0.1:<random port>`, unauthenticated: any local process could send `add` and run a program as the
  service's user. This moves both to `ipc://` Unix sockets in a fresh 0700 directory (sockets 0600), so only the
  service's user can reach them. It replaces the `Arbiter` class BentoML's `create_standalone_arbiter` looks up
  when it is called, which happens after the service module was imported (by `bentoml serve`, `bentoml serve
  <bento>` and the container's entry point alike), so no other launcher is needed.
- `respawn_workers`: inside BentoML's image circus does not replace a worker that dies (BentoML leaves that to an
  orchestrator, which never sees it: the container stays up); the same arbiter class turns respawn back on.
- `die_with_parent`: circus workers outlive a `kill -9` of the main process and keep serving on the inherited
  socket (a restart then fails with EADDRINUSE). Each worker asks the kernel for SIGTERM when its parent dies.
- `close_idle_connections`: uvicorn arms its keep-alive timer only after a response, so a connection that never
  completes a request head (idle from the start, or dripping header bytes) is held forever. Each worker's uvicorn
  gets a protocol class that closes such a connection after `serve.idle_timeout_s`.
- Workers never run as root: `bentoml serve` started as root (by hand, or by the stack) had its workers, which
  parse every request, run as root. The same arbiter class starts them as `serve.worker_user` instead (circus
  sets the user of each process it spawns), after making the folders they write theirs and checking, as that
  user, that they can read what they need; the container image already runs everything as its own user.
- `bounded_heap` / `release_free_memory`: a flood of request bodies left a worker's heap grown for good (glibc
  keeps freed 64 KB chunks, and raises its mmap threshold after the first large free); each worker fixes the
  threshold and hands free pages back after a flood (`services.limits.MemoryKeeper`).
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import functools
import json
import logging
import os
import shutil
import signal
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click

log = logging.getLogger(__name__)

_PR_SET_PDEATHSIG = 1
CONTROL_SOCKET = "control.sock"
PUBSUB_SOCKET = "pubsub.sock"


# --- circus's control endpoint --------------------------------------------------------------------------------

@dataclass(frozen=True)
class WorkerUser:
    """Who the workers run as when the server starts as root, and what they must write and read."""

    name: str
    writable: tuple[Path, ...] = ()
    readable: tuple[Path, ...] = ()


class WorkerUserError(click.ClickException, RuntimeError):
    """The workers cannot run as `serve.worker_user`; the message names the user, the path and the fix.

    A click error: raised while `bentoml serve` starts, its CLI prints `Error: <message>` and exits 1, not a
    traceback through click and BentoML with the message at its end."""


def private_process_manager(workers_as: WorkerUser | None = None) -> None:
    """Make BentoML's circus arbiter listen on owner-only Unix sockets instead of loopback TCP ports, and (started
    as root) start its workers as `workers_as`."""
    from bentoml._internal.utils import circus as bentoml_circus

    if getattr(bentoml_circus.Arbiter, "_flightops_private", False):
        return
    bentoml_circus.Arbiter = _private(bentoml_circus.Arbiter, workers_as)
    bentoml_circus.ThreadedArbiter = _private(bentoml_circus.ThreadedArbiter, workers_as)


def _private(base: type, workers_as: WorkerUser | None) -> type:
    class PrivateArbiter(base):  # type: ignore[misc, valid-type]
        _flightops_private = True

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            directory = Path(tempfile.mkdtemp(prefix="flightops-circus-"))  # mode 0700, owned by this user
            kwargs["endpoint"] = f"ipc://{directory / CONTROL_SOCKET}"
            kwargs["pubsub_endpoint"] = f"ipc://{directory / PUBSUB_SOCKET}"
            super().__init__(*args, **kwargs)
            respawn_workers(self.watchers)
            self.control_dir = directory
            self.exit_stack.callback(shutil.rmtree, directory, ignore_errors=True)
            if workers_as is not None and os.geteuid() == 0:
                try:
                    unprivileged_workers(self.watchers, workers_as)
                except Exception:
                    shutil.rmtree(directory, ignore_errors=True)
                    raise

        def start(self, cb: Any = None) -> None:
            def started(result: Any) -> Any:
                for name in (CONTROL_SOCKET, PUBSUB_SOCKET):
                    with contextlib.suppress(FileNotFoundError):
                        os.chmod(self.control_dir / name, 0o600)
                return cb(result) if cb is not None else None

            return super().start(started)

    PrivateArbiter.__name__ = PrivateArbiter.__qualname__ = f"Private{base.__name__}"
    return PrivateArbiter


def respawn_workers(watchers: Any) -> None:
    """Have circus replace a worker that dies, in a container too. BentoML turns circus's respawn off when it runs
    inside its own image (`BENTOML_CONTAINERIZED`, set by its Dockerfile), leaving restarts to an orchestrator; but
    a dead worker does not stop the container: a `kill -9` (or the OOM killer) of one of the image's two workers
    left one serving for good, `/readyz` still 200, and no orchestrator ever restarts a container that is up (here
    `deploy.container run` has none at all). `bentoml serve` outside an image respawns (~5 s), and circus's
    `max_retry` still stops a watcher whose workers die as they start."""
    for watcher in watchers:
        watcher.respawn = True


# --- workers as an unprivileged user -----------------------------------------------------------------------------

_ACCESS_CHECK = """
import json, os, sys
wants = json.loads(sys.argv[1])
missing = [path for path, mode in wants if not os.access(path, mode)]
print(json.dumps(missing))
"""


def unprivileged_workers(watchers: Any, workers_as: WorkerUser) -> tuple[int, int]:
    """Have circus start every watcher's processes as `workers_as` (root's own processes stay root): the folders
    the workers write (and BentoML's metrics folder) are created and given to that user, then what they read and
    write is checked by a process running as that user, so a gap is one clear error now rather than a worker
    crashing in a restart loop. Returns (uid, gid)."""
    import pwd
    import subprocess

    try:
        entry = pwd.getpwnam(workers_as.name)
    except KeyError:
        raise WorkerUserError(f"serve.worker_user {workers_as.name!r} does not exist on this machine: create it "
                              f"(useradd --system --no-create-home {workers_as.name}) or name another "
                              "unprivileged user") from None
    uid, gid = entry.pw_uid, entry.pw_gid
    if uid == 0:
        raise WorkerUserError(f"serve.worker_user {workers_as.name!r} is root: name an unprivileged user")
    metrics = {Path(w.env["PROMETHEUS_MULTIPROC_DIR"]) for w in watchers
               if (w.env or {}).get("PROMETHEUS_MULTIPROC_DIR")}
    writable = [*workers_as.writable, *sorted(metrics)]
    for folder in writable:
        folder.mkdir(parents=True, exist_ok=True)
        for path in [folder, *folder.rglob("*")]:
            with contextlib.suppress(FileNotFoundError):
                os.chown(path, uid, gid, follow_symlinks=False)
    wants = [(str(path), os.R_OK | (os.X_OK if path.is_dir() else 0)) for path in workers_as.readable
             if path.exists()]
    wants += [(str(path), os.R_OK | os.W_OK | os.X_OK) for path in writable]
    try:
        done = subprocess.run([sys.executable, "-I", "-S", "-c", _ACCESS_CHECK, json.dumps(wants)], user=uid,
                              group=gid, extra_groups=[], capture_output=True, text=True, timeout=60, cwd="/")
    except PermissionError:
        raise WorkerUserError(
            f"`bentoml serve` runs as root, so its workers run as serve.worker_user {workers_as.name!r}, who cannot "
            f"run this Python ({os.path.realpath(sys.executable)}, e.g. a pyenv one in root's 0700 home): build the "
            "environment on an interpreter every user can run (as root, scripts/bootstrap.sh picks "
            "/usr/bin/python3.11; or PYTHON=<interpreter> bash scripts/bootstrap.sh), or start the server as an "
            "unprivileged user") from None
    if done.returncode != 0:
        raise WorkerUserError(f"could not check what serve.worker_user {workers_as.name!r} can read: "
                              f"{done.stderr.strip()[-500:]}")
    missing = json.loads(done.stdout)
    if missing:
        raise WorkerUserError(
            f"`bentoml serve` runs as root, so its workers run as serve.worker_user {workers_as.name!r}, who cannot "
            f"reach: {', '.join(missing)}. Make these readable by that user (a folder in a 0700 home or temp "
            "folder cannot be: e.g. BENTOML_HOME=$PWD/var/bentoml, not ~/bentoml of root; a model folder that "
            "`bentoml models import` made 0700: chmod -R a+rX on it), or start the server as that user.")
    for watcher in watchers:
        watcher.uid, watcher.gid = uid, gid
    log.info("workers run as %s (uid %d)", workers_as.name, uid)
    return uid, gid


# --- the heap after a flood -------------------------------------------------------------------------------------

_M_MMAP_THRESHOLD = -3
_M_ARENA_MAX = -8


@functools.cache
def _libc() -> Any | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return libc if hasattr(libc, "malloc_trim") and hasattr(libc, "mallopt") else None
    except OSError:
        return None


def bounded_heap(mmap_threshold: int = 256 * 1024, arenas: int = 2) -> bool:
    """Fix glibc's mmap threshold (an allocation above it, a joined request body, is its own mapping, unmapped when
    freed; glibc would otherwise raise the threshold after the first such free and keep later bodies in the heap)
    and cap its arenas (each thread that allocates may get its own, each keeping freed memory). False off glibc."""
    libc = _libc()
    if libc is None:
        return False
    return bool(libc.mallopt(_M_MMAP_THRESHOLD, mmap_threshold)) and bool(libc.mallopt(_M_ARENA_MAX, arenas))


def release_free_memory() -> bool:
    """`malloc_trim(0)`: give the heap's free pages back to the system (False off glibc)."""
    libc = _libc()
    if libc is None:
        return False
    libc.malloc_trim(0)
    return True


# --- workers end with the main process --------------------------------------------------------------------------

def die_with_parent(sig: int = signal.SIGTERM) -> bool:
    """Ask the kernel to send `sig` to this process when its parent exits (Linux; False elsewhere).

    Called in a worker while it starts: if the parent already died before the request was made, the worker
    signals itself at once rather than serve as an orphan.
    """
    if not sys.platform.startswith("linux"):
        return False
    parent = os.getppid()
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(_PR_SET_PDEATHSIG, int(sig), 0, 0, 0) != 0:
        log.warning("prctl(PR_SET_PDEATHSIG) failed: errno %s", ctypes.get_errno())
        return False
    if parent == 1 or os.getppid() != parent:
        os.kill(os.getpid(), sig)
    return True


# --- idle connections --------------------------------------------------------------------------------------------

def close_idle_connections(idle_timeout_s: float) -> None:
    """Have this process's uvicorn (BentoML's worker server) close connections without a request head in time."""
    import uvicorn.config
    from uvicorn.protocols.http.auto import AutoHTTPProtocol

    global GuardedHTTPProtocol
    GuardedHTTPProtocol = _with_head_timeout(AutoHTTPProtocol, idle_timeout_s)
    uvicorn.config.HTTP_PROTOCOLS["auto"] = f"{__name__}:GuardedHTTPProtocol"


GuardedHTTPProtocol: type | None = None


def _with_head_timeout(base: type, timeout_s: float) -> type:
    """`base` (uvicorn's httptools or h11 protocol) that notes when a connection starts waiting for a request head
    (when it opens, and after each answer) and stops waiting once a head has been parsed (uvicorn then starts a new
    request cycle). One sweep per worker closes the connections that waited too long, rather than a timer per
    request (arming and cancelling one costs ~10 us on a loaded machine; these are two attribute writes). The
    body's own deadline is the ASGI guard's (`serve.body_timeout_s`)."""

    class HeadTimeoutProtocol(base):  # type: ignore[misc, valid-type]
        idle_timeout_s = timeout_s
        _sweeps: dict[asyncio.AbstractEventLoop, asyncio.Task[None]] = {}

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            self._timed_cycle: Any = None
            super().connection_made(transport)
            self._waiting_since: float | None = self.loop.time()
            sweep = self._sweeps.get(self.loop)
            if sweep is None or sweep.done():
                self._sweeps[self.loop] = self.loop.create_task(_sweep(self.connections, self.idle_timeout_s))

        def data_received(self, data: bytes) -> None:
            super().data_received(data)
            cycle = getattr(self, "cycle", None)
            if cycle is not None and cycle is not self._timed_cycle:
                self._timed_cycle = cycle  # a request head arrived: the request is the body guard's now
                self._waiting_since = None

        def on_response_complete(self) -> None:
            super().on_response_complete()
            self._waiting_since = self.loop.time()

    HeadTimeoutProtocol.__name__ = HeadTimeoutProtocol.__qualname__ = f"HeadTimeout{base.__name__}"
    return HeadTimeoutProtocol


async def _sweep(connections: set[Any], timeout_s: float) -> None:
    """Close this worker's connections that have waited longer than `timeout_s` for a complete request head."""
    loop = asyncio.get_running_loop()
    while True:
        await asyncio.sleep(min(1.0, timeout_s / 4))
        now = loop.time()
        for connection in list(connections):
            since = getattr(connection, "_waiting_since", None)
            if since is not None and now - since > timeout_s and not connection.transport.is_closing():
                connection.transport.close()

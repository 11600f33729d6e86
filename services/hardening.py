"""Process- and connection-level guards BentoML 1.4 has no setting for: each one closes a hole found by attacking
the running service (issue 15), and each is applied by `services/service.py` when BentoML imports it.

- `private_process_manager`: BentoML starts circus (its process manager) with its control and pub/sub endpoints on
  `tcp://127.0.0.1:<random port>`, unauthenticated: any local process could send `add` and run a program as the
  service's user. This moves both to `ipc://` Unix sockets in a fresh 0700 directory (sockets 0600), so only the
  service's user can reach them. It replaces the `Arbiter` class BentoML's `create_standalone_arbiter` looks up
  when it is called, which happens after the service module was imported (by `bentoml serve`, `bentoml serve
  <bento>` and the container's entry point alike), so no other launcher is needed.
- `die_with_parent`: circus workers outlive a `kill -9` of the main process and keep serving on the inherited
  socket (a restart then fails with EADDRINUSE). Each worker asks the kernel for SIGTERM when its parent dies.
- `close_idle_connections`: uvicorn arms its keep-alive timer only after a response, so a connection that never
  completes a request head (idle from the start, or dripping header bytes) is held forever. Each worker's uvicorn
  gets a protocol class that closes such a connection after `serve.idle_timeout_s`.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import logging
import os
import shutil
import signal
import sys
import tempfile
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

_PR_SET_PDEATHSIG = 1
CONTROL_SOCKET = "control.sock"
PUBSUB_SOCKET = "pubsub.sock"


# --- circus's control endpoint --------------------------------------------------------------------------------

def private_process_manager() -> None:
    """Make BentoML's circus arbiter listen on owner-only Unix sockets instead of loopback TCP ports."""
    from bentoml._internal.utils import circus as bentoml_circus

    if getattr(bentoml_circus.Arbiter, "_flightops_private", False):
        return
    bentoml_circus.Arbiter = _private(bentoml_circus.Arbiter)
    bentoml_circus.ThreadedArbiter = _private(bentoml_circus.ThreadedArbiter)


def _private(base: type) -> type:
    class PrivateArbiter(base):  # type: ignore[misc, valid-type]
        _flightops_private = True

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            directory = Path(tempfile.mkdtemp(prefix="flightops-circus-"))  # mode 0700, owned by this user
            kwargs["endpoint"] = f"ipc://{directory / CONTROL_SOCKET}"
            kwargs["pubsub_endpoint"] = f"ipc://{directory / PUBSUB_SOCKET}"
            super().__init__(*args, **kwargs)
            self.control_dir = directory
            self.exit_stack.callback(shutil.rmtree, directory, ignore_errors=True)

        def start(self, cb: Any = None) -> None:
            def started(result: Any) -> Any:
                for name in (CONTROL_SOCKET, PUBSUB_SOCKET):
                    with contextlib.suppress(FileNotFoundError):
                        os.chmod(self.control_dir / name, 0o600)
                return cb(result) if cb is not None else None

            return super().start(started)

    PrivateArbiter.__name__ = PrivateArbiter.__qualname__ = f"Private{base.__name__}"
    return PrivateArbiter


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

"""`evidently ui` for the stack: the monitoring project exists before the UI loads its workspace, and the UI's
workspace watcher survives a file that is still being written.

    python -m ops.evidently_ui --workspace DIR --host 127.0.0.1 --port 8000    # `evidently ui`'s own options

Why: Evidently 0.7's UI sees what other processes write into its workspace (the monitoring flow's projects and
snapshots) through a watchdog thread. That thread reads a project's `metadata.json` on the file's *creation*
event, before the writer has filled it; the `JSONDecodeError` ends the thread, and from then on the running UI never
shows a new project or snapshot until it is restarted (the stack's UI test hit it at load ~5; upstream users report
the symptom as "the UI does not pick up new snapshots", evidently#1042). Two fixes, both here:
- the project and its dashboard are written before the UI starts (`ensure_dashboard`, from the stack's params), so
  the UI loads them from disk at start and the monitoring flow only ever adds snapshot files (whose half-written
  reads Evidently's own handler already tolerates);
- a handler error (any file the UI reads mid-write) is logged and, once writes have settled, the workspace is
  reloaded from disk, instead of ending the watcher.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
from collections.abc import Sequence
from typing import Any

log = logging.getLogger("flightops.evidently_ui")

# A half-written file is complete a moment later: reload then, once, however many events failed meanwhile; a file
# still incomplete by then is tried again, up to RELOAD_ATTEMPTS times.
RELOAD_DELAY_S = 1.0
RELOAD_ATTEMPTS = 30


def keep_watcher_alive() -> None:
    """Make Evidently's workspace watcher log a failed event and reload the workspace, rather than die."""
    from evidently.ui.service.storage.local import watcher

    handler_class = watcher.WorkspaceDirHandler
    if getattr(handler_class, "_flightops_resilient", False):
        return
    dispatch = handler_class.dispatch
    pending: dict[int, threading.Timer] = {}
    lock = threading.Lock()

    def schedule(handler: Any, attempt: int) -> None:
        with lock:
            if attempt == 1 and id(handler) in pending:
                return
            timer = threading.Timer(RELOAD_DELAY_S, reload, args=(handler, attempt))
            timer.daemon = True
            pending[id(handler)] = timer
            timer.start()

    def reload(handler: Any, attempt: int) -> None:
        try:
            handler.state.reload()
        except Exception as error:  # noqa: BLE001 - a file still being written: try again shortly
            if attempt < RELOAD_ATTEMPTS:
                schedule(handler, attempt + 1)
            else:
                with lock:
                    pending.pop(id(handler), None)
                log.error("workspace reload failed %d times (%s: %s); restart the UI to see new files",
                          attempt, type(error).__name__, error)
            return
        with lock:
            pending.pop(id(handler), None)
        log.info("workspace reloaded from disk after a file was read mid-write")

    def resilient_dispatch(self: Any, event: Any) -> None:
        try:
            dispatch(self, event)
        except Exception as error:  # noqa: BLE001 - any error here would end the watcher thread for good
            log.warning("workspace event %s on %s failed (%s: %s); reloading in %.0f s", event.event_type,
                        event.src_path, type(error).__name__, error, RELOAD_DELAY_S)
            schedule(self, 1)

    handler_class.dispatch = resilient_dispatch
    handler_class._flightops_resilient = True


def prepare_workspace(params_file: str | None, workspace: str | None) -> None:
    """The monitoring project and its dashboard, written before the UI reads the workspace (`workspace`, the UI's
    own `--workspace`, wins over the params' path: it is the folder this UI serves)."""
    if not params_file:
        return
    from pathlib import Path

    from pipelines.config import load_params
    from pipelines.monitor.store import ensure_dashboard

    params = load_params(params_file)
    if workspace:
        params = params.model_copy(update={"paths": params.paths.model_copy(
            update={"evidently_workspace": Path(workspace)})})
    ensure_dashboard(params)


def _option(args: Sequence[str], name: str) -> str | None:
    for i, arg in enumerate(args):
        if arg == name and i + 1 < len(args):
            return args[i + 1]
        if arg.startswith(f"{name}="):
            return arg.split("=", 1)[1]
    return None


def main(argv: Sequence[str] | None = None) -> None:
    from pipelines.config import PARAMS_ENV

    args = list(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    prepare_workspace(os.environ.get(PARAMS_ENV), _option(args, "--workspace"))
    keep_watcher_alive()
    from evidently.cli import app

    sys.argv = ["evidently", "ui", *args]
    app()


if __name__ == "__main__":
    main()

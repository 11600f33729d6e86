"""The old import path of the monitor's I/O shell, kept for flows/monitoring.py (which the issue-17 work rewrites)
and branches in flight. It lives in `pipelines.monitor.store`: import from there."""

from pipelines.monitor.store import (
    PROJECT_NAME,
    add_to_workspace,
    last_retrain_window_end,
    load_state,
    read_outcomes,
    read_predictions,
    read_summaries,
    save_state,
    save_window,
    state_path,
    window_id,
)

__all__ = ["PROJECT_NAME", "add_to_workspace", "last_retrain_window_end", "load_state", "read_outcomes",
           "read_predictions", "read_summaries", "save_state", "save_window", "state_path", "window_id"]

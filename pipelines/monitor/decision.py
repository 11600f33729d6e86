"""Whether a window's alarm starts a retrain: the guards that stop retrain storms."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from pipelines.config import MonitorParams
from pipelines.monitor.drift import WindowSummary


@dataclass(frozen=True)
class RetrainDecision:
    retrain: bool
    reason: str


def decide_retrain(summary: WindowSummary | Mapping[str, Any], window_end: datetime,
                   last_retrain_window_end: str | None, retrain_in_flight: bool,
                   monitor: MonitorParams) -> RetrainDecision:
    """Retrain on an alarm, unless one is already running or the cooldown (in traffic time) has not passed.

    The cooldown counts days of scheduled traffic, not wall time: a replay pushes weeks of traffic through in
    minutes, and a retrain started on one drifted week should see a cooldown's worth of new data before the next.
    `summary` is the window's `WindowSummary`, or its stored JSON form.
    """
    drift, reasons = ((summary.drift, summary.reasons) if isinstance(summary, WindowSummary)
                      else (bool(summary["drift"]), list(summary["reasons"])))
    if not drift:
        return RetrainDecision(False, "no alarm")
    if retrain_in_flight:
        return RetrainDecision(False, "a retraining run is already scheduled, pending or running")
    if last_retrain_window_end is not None:
        last = datetime.fromisoformat(last_retrain_window_end)
        if window_end - last < timedelta(days=monitor.cooldown_days):
            return RetrainDecision(False, f"cooldown: last retrain on traffic up to {last:%Y-%m-%d}, "
                                          f"less than monitor.cooldown_days={monitor.cooldown_days:g} before "
                                          f"{window_end:%Y-%m-%d}")
    return RetrainDecision(True, "; ".join(reasons))

"""Whether a window's alarm asks for a retrain: only drift a retrain can answer, on enough rows of sound data,
and not again within the cooldown that stops retrain storms."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from pipelines.config import MonitorParams
from pipelines.contracts import WindowSummary, reason_texts


@dataclass(frozen=True)
class RetrainDecision:
    retrain: bool
    reason: str


def decide_retrain(summary: WindowSummary, window_end: datetime,
                   last_retrain_window_end: str | None, monitor: MonitorParams) -> RetrainDecision:
    """Retrain on an alarm a retrain can answer, unless the window is too small, its data is faulty, or the
    cooldown (in traffic time) has not passed.

    - A window under `monitor.min_window_rows` is never acted on, whoever planned it (too noisy to act on).
    - A data-quality fault (unit change, missing surge, unknown categories on many rows) is refused: a model
      retrained on corrupted data learns the corruption; the fault is for a person to fix upstream.
    - The cooldown counts days of scheduled traffic, not wall time: a replay pushes weeks of traffic through in
      minutes, and a retrain started on one drifted week should see a cooldown's worth of new data before the next.

    `summary` is the window's `WindowSummary` (or its stored `WindowRecord`), whose reasons say by their kind
    which alarms a retrain answers. "Not while one is running" is not decided here: the retraining deployment's own
    concurrency limit enforces it (flows/deployments.py).
    """
    rows = summary.rows
    if rows < monitor.min_window_rows:
        return RetrainDecision(False, f"window of {rows} rows < monitor.min_window_rows={monitor.min_window_rows}: "
                                      f"not acted on")
    if summary.quality_reasons:
        return RetrainDecision(False, "data quality fault, not retraining on it: "
                               + reason_texts(summary.quality_reasons))
    if not summary.retrain_reasons:
        return RetrainDecision(False, "no alarm")
    if last_retrain_window_end is not None:
        last = datetime.fromisoformat(last_retrain_window_end)
        if window_end - last < timedelta(days=monitor.cooldown_days):
            return RetrainDecision(False, f"cooldown: last retrain on traffic up to {last:%Y-%m-%d}, "
                                          f"less than monitor.cooldown_days={monitor.cooldown_days:g} before "
                                          f"{window_end:%Y-%m-%d}")
    return RetrainDecision(True, reason_texts(summary.retrain_reasons))

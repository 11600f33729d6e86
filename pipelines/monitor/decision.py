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


def cooldown_days(monitor: MonitorParams, refusals: int) -> float:
    """The cooldown after `refusals` retrains in a row the gate refused for the same kind of alarm:
    `cooldown_days` x `retrain_backoff` ** refusals, at most `retrain_backoff_max_days` (never below the plain
    cooldown)."""
    if refusals <= 0:
        return monitor.cooldown_days
    backed = monitor.cooldown_days * monitor.retrain_backoff ** refusals
    return max(monitor.cooldown_days, min(backed, monitor.retrain_backoff_max_days))


def decide_retrain(summary: WindowSummary, window_end: datetime,
                   last_retrain_window_end: str | None, monitor: MonitorParams, refusals: int = 0,
                   refused_gate: str | None = None) -> RetrainDecision:
    """Retrain on an alarm a retrain can answer, unless the window is too small, its data is faulty, or the
    cooldown (in traffic time) has not passed.

    - A window under `monitor.min_window_rows` is never acted on, whoever planned it (too noisy to act on).
    - A data-quality fault (unit change, missing surge, unknown categories on many rows) is refused: a model
      retrained on corrupted data learns the corruption; the fault is for a person to fix upstream.
    - The cooldown counts days of scheduled traffic, not wall time: a replay pushes weeks of traffic through in
      minutes, and a retrain started on one drifted week should see a cooldown's worth of new data before the next.

    - A decay that retraining cannot fix backs off: after `refusals` retrains in a row that the gate refused for
      the same kinds of alarm (no better model on the newest data; `refused_gate` is the last refusal in words),
      the cooldown grows by `monitor.retrain_backoff` each time (`cooldown_days`), and the decision says so.

    `summary` is the window's `WindowSummary` (or its stored `WindowRecord`), whose reasons say by their kind
    which alarms a retrain answers (an acknowledged data-quality fault among them: the operator accepted it as the
    new normal). "Not while one is running" is not decided here: the retraining deployment's own concurrency limit
    enforces it (flows/deployments.py).
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
        days = cooldown_days(monitor, refusals)
        if window_end - last < timedelta(days=days):
            if refusals:
                return RetrainDecision(False, (
                    f"backing off: the last {refusals} retrain(s) for this alarm were refused by the gate (no "
                    f"better model on the newest data{': ' + refused_gate if refused_gate else ''}); retraining "
                    f"has not fixed it, next retrain not before {last + timedelta(days=days):%Y-%m-%d} "
                    f"(monitor.cooldown_days={monitor.cooldown_days:g} x monitor.retrain_backoff="
                    f"{monitor.retrain_backoff:g}^{refusals}, at most {monitor.retrain_backoff_max_days:g} days)"))
            return RetrainDecision(False, f"cooldown: last retrain on traffic up to {last:%Y-%m-%d}, "
                                          f"less than monitor.cooldown_days={monitor.cooldown_days:g} before "
                                          f"{window_end:%Y-%m-%d}")
    reason = reason_texts(summary.retrain_reasons)
    if refusals:
        reason += (f" (after {refusals} retrain(s) the gate refused for it: tried again after "
                   f"{cooldown_days(monitor, refusals):g} days)")
    return RetrainDecision(True, reason)

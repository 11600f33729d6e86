"""The old import path of the monitor, kept for code written against it (flows/monitoring.py, which the
issue-17 work rewrites, and branches in flight). The pieces live in `pipelines.monitor`: import from there."""

from pipelines.monitor.decision import RetrainDecision, decide_retrain
from pipelines.monitor.drift import WindowResult, WindowSummary, alarm_reasons, analyse_window, live_quality
from pipelines.monitor.history import plot_history, summarise_history
from pipelines.monitor.log import ACTUAL, PROBABILITY, REQUEST_ID, PredictionFrame, outcomes_frame, predictions_frame
from pipelines.monitor.reference import sample_reference
from pipelines.monitor.windows import WINDOW_ORIGIN, WindowPlan, plan_windows, window_rows, window_starts

__all__ = ["ACTUAL", "PROBABILITY", "REQUEST_ID", "WINDOW_ORIGIN", "PredictionFrame", "RetrainDecision",
           "WindowPlan", "WindowResult", "WindowSummary", "alarm_reasons", "analyse_window", "decide_retrain",
           "live_quality", "outcomes_frame", "plan_windows", "plot_history", "predictions_frame", "sample_reference",
           "summarise_history", "window_rows", "window_starts"]

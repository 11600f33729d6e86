"""The demo's view across windows: one row per analysed window, and a plot of drift and live quality."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import pandas as pd

from pipelines.config import MonitorParams
from pipelines.contracts import WindowRecord

HISTORY_COLUMNS = ["window_start", "rows", "model_tags", "drift_share", "drifted_columns", "drift_index",
                   "drift_index_threshold", "prediction_drift", "live_auc", "expected_auc", "alarm", "reasons",
                   "retrained"]


def summarise_history(records: Iterable[WindowRecord]) -> pd.DataFrame:
    """One row per analysed window (the records the monitoring flow stored): drift share, prediction drift, live
    AUC, alarm (by kind), retrain started."""
    rows = []
    for s in records:
        quality = s.quality
        rows.append({
            "window_start": pd.Timestamp(s.window_start),
            "rows": s.rows,
            "model_tags": ",".join(s.model_tags),
            "drift_share": s.drift_share,
            "drifted_columns": len(s.drifted_columns),
            "drift_index": _number(s.drift_index),
            "drift_index_threshold": _number(s.drift_index_threshold),
            "prediction_drift": s.prediction_drift.score,
            "live_auc": _number((quality.metrics or {}).get("roc_auc") if quality else None),
            "expected_auc": _number((quality.expected or {}).get("roc_auc") if quality else None),
            "alarm": s.drift,
            "reasons": "; ".join(reason.label for reason in s.reasons),  # "|" would split a markdown row
            "retrained": bool(s.retrain and s.retrain.started),
        })
    return pd.DataFrame(rows, columns=HISTORY_COLUMNS).sort_values("window_start").reset_index(drop=True)


def _number(value: float | None) -> float:
    return float("nan") if value is None else float(value)


def plot_history(history: pd.DataFrame, monitor: MonitorParams) -> Any:
    """Drift index and live AUC per window, the calibrated threshold dashed, retrain points marked; returns the
    figure."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, drift_axis = plt.subplots(figsize=(10, 4.5))
    x = history["window_start"]
    drift_axis.plot(x, history["drift_index"], marker="o", color="tab:red", label="drift index")
    drift_axis.plot(x, history["drift_index_threshold"], color="tab:red", linestyle="--", linewidth=1,
                    label="calibrated threshold")
    drift_axis.set_ylim(bottom=0)
    drift_axis.set_ylabel("importance-weighted drift index")
    auc_axis = drift_axis.twinx()
    auc_axis.plot(x, history["live_auc"], marker="s", color="tab:blue", label="live ROC AUC")
    auc_axis.set_ylabel("live ROC AUC")
    for when in x[history["retrained"]]:
        drift_axis.axvline(when, color="tab:green", linewidth=2, alpha=0.6)
    if history["retrained"].any():
        drift_axis.plot([], [], color="tab:green", linewidth=2, label="retrain started")
    handles = drift_axis.get_legend_handles_labels()[0] + auc_axis.get_legend_handles_labels()[0]
    drift_axis.legend(handles=handles, loc="upper left", fontsize=8)
    drift_axis.set_title("Monitoring windows: drift vs the training reference, live quality, retrains")
    figure.autofmt_xdate()
    figure.tight_layout()
    return figure

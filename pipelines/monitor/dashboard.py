"""What a reviewer sees of each window: the report's opening line, the workspace snapshot, the dashboard.

Pure functions: a window's Evidently snapshot, its summary and decision in; the snapshot people review (stamped
with the window's start, tagged, with metadata and a summary line on top) and the project's dashboard out. Writing
them to the workspace is `pipelines.monitor.store`'s job.

Why the snapshot is rebuilt rather than written as Evidently returned it:
- Evidently stamps a run with the wall clock; the dashboard plots over snapshot time, so a replay of 2013 would
  pile every week onto today. The window's *start* is its time.
- The tags (`alarm`, `retrain`, `model:<tag>`) and metadata (rows, skipped lines, reasons) are known only after the
  decision, and they are what a reviewer filters by in the UI.
- Row counts and live ROC AUC are not part of the drift report; a small second report computes them with
  Evidently's own metrics (`RowCount`, `RocAuc`) so the dashboard plots them like any other metric.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import pandas as pd

from pipelines.contracts import ACTUAL, PROBABILITY, REQUEST_ID, RetrainRequest, WindowRecord, reason_texts

TAG_ALARM = "alarm"
TAG_RETRAIN = "retrain"
TAG_ACKNOWLEDGED = "acknowledged"
TAG_MODEL_PREFIX = "model:"
# Panel ids are derived from their titles, so re-creating the dashboard replaces panels instead of adding copies.
_PANEL_NAMESPACE = uuid.UUID("6f1c3a52-9d8e-4b7a-a1f0-2c5d7e9b1a43")


# --- the summary line ---------------------------------------------------------------------------------------------

def summary_line(record: WindowRecord, retrain: RetrainRequest, model_tag: str | None, entity_plural: str) -> str:
    """One paragraph a reviewer reads before Evidently's sections: alarm or not, why, which model, what next; the
    rows named as the table's (`project.entity_plural`)."""
    start, end = record.window_start[:10], record.window_end[:10]
    model = f"model `{model_tag}`" if model_tag else "no model tag in the log"
    head = f"**{'ALARM' if record.drift else 'No alarm'}** for the window {start} .. {end} ({model}, " \
           f"{record.rows:,} predictions)."
    if record.drift:
        why = " Why: " + reason_texts(record.reasons) + "."
        accepted = record.acknowledged_reasons
        if accepted:
            why += " Accepted as the new normal: " + "; ".join(f"{r.label} {r.acknowledged}" for r in accepted) + "."
    else:
        prediction = record.prediction_drift
        index = record.drift_index
        why = (f" {len(record.drifted_columns)} of {len(record.columns)} feature columns beyond their "
               f"calibrated threshold"
               + (f", drift index {index:.2f} (threshold {record.drift_index_threshold:.2f})"
                  if index is not None else "")
               + f", prediction drift {prediction.score:.3f} (threshold {prediction.threshold}): "
                 "no threshold passed.")
    quality = record.quality
    if quality is not None and quality.metrics:
        expected = (quality.expected or {}).get("roc_auc")
        why += f" Live ROC AUC {quality.metrics['roc_auc']:.3f} on {quality.labelled:,} labelled {entity_plural}" \
               + (f" (champion's test AUC {expected:.3f})." if expected else ".")
    action = (" Retraining requested (event `flightops.drift.detected`)." if retrain.started
              else f" Retraining: no ({retrain.reason}).")
    if retrain.outcome:
        action += f" Outcome: {retrain.outcome}" + (f" ({retrain.gate})." if retrain.gate else ".")
    return head + why + action


# --- the workspace snapshot ---------------------------------------------------------------------------------------

def quality_report(current: pd.DataFrame, outcomes: pd.DataFrame | None, min_labelled_share: float) -> Any:
    """Evidently `RowCount` of the window and, once enough outcomes arrived, `RocAuc` on the labelled rows."""
    from evidently import BinaryClassification, DataDefinition, Dataset, Report
    from evidently.metrics import RocAuc, RowCount

    rows = Report([RowCount()]).run(current_data=Dataset.from_pandas(
        current[[PROBABILITY]], data_definition=DataDefinition(numerical_columns=[PROBABILITY])))
    if outcomes is None or outcomes.empty or current.empty:
        return rows
    labelled = current[[REQUEST_ID, PROBABILITY]].merge(outcomes, on=REQUEST_ID, how="inner")
    if len(labelled) / len(current) < min_labelled_share or labelled[ACTUAL].nunique() < 2:
        return rows
    definition = DataDefinition(numerical_columns=[PROBABILITY], categorical_columns=[ACTUAL],
                                classification=[BinaryClassification(target=ACTUAL, prediction_probas=PROBABILITY)])
    auc = Report([RocAuc()]).run(current_data=Dataset.from_pandas(
        labelled[[PROBABILITY, ACTUAL]].astype({ACTUAL: int}), data_definition=definition))
    return merge_snapshots([rows, auc])


def merge_snapshots(snapshots: Sequence[Any]) -> Any:
    """One Evidently snapshot holding the metrics, widgets and tests of several (in order)."""
    from evidently.core.report import Snapshot
    from evidently.core.serialization import ReportModel, SnapshotModel

    models = [s.to_snapshot_model() for s in snapshots]
    first = models[0]
    merged = SnapshotModel(
        report=ReportModel(items=[]), name=first.name, timestamp=first.timestamp, metadata=dict(first.metadata),
        tags=list(first.tags),
        metric_results={k: v for m in models for k, v in m.metric_results.items()},
        top_level_metrics=[k for m in models for k in m.top_level_metrics],
        widgets=[w for m in models for w in m.widgets], tests_widgets=[w for m in models for w in m.tests_widgets])
    return Snapshot.load_model(merged)


def snapshot_tags(record: WindowRecord, retrain: RetrainRequest, model_tag: str | None) -> list[str]:
    tags = [TAG_ALARM] if record.drift else []
    if retrain.started:
        tags.append(TAG_RETRAIN)
    if record.acknowledged_reasons:
        tags.append(TAG_ACKNOWLEDGED)
    if model_tag:
        tags.append(f"{TAG_MODEL_PREFIX}{model_tag}")
    return tags


def snapshot_metadata(record: WindowRecord, retrain: RetrainRequest, model_tag: str | None) -> dict[str, str]:
    """Plain strings (Evidently filters metadata by equality): what a reviewer wants beside the report's name."""
    return {"window_start": record.window_start, "window_end": record.window_end,
            "model_tag": model_tag or "", "rows": str(record.rows), "alarm": str(record.drift).lower(),
            "retrain": str(retrain.started).lower(),
            "skipped_log_lines": str(sum(record.log_skipped.values())),
            "alarm_kinds": ", ".join(reason.kind for reason in record.reasons),
            "reasons": reason_texts(record.reasons) or "no threshold passed",
            "acknowledged": "; ".join(f"{r.kind}: {r.acknowledged}" for r in record.acknowledged_reasons)}


def review_snapshot(drift: Any, quality: Any | None, summary: WindowRecord, retrain: RetrainRequest,
                    model_tag: str | None, timestamp: datetime, entity_plural: str) -> Any:
    """The snapshot people review: summary line first, then Evidently's sections; window time, tags, metadata."""
    from evidently.core.report import Snapshot
    from evidently.legacy.renderers.html_widgets import text_widget

    merged = merge_snapshots([drift, quality] if quality is not None else [drift]).to_snapshot_model()
    headline = text_widget(text=summary_line(summary, retrain, model_tag, entity_plural), title="Summary")
    model = merged.copy(update={
        "name": drift.get_name(), "timestamp": timestamp.replace(tzinfo=None) if timestamp.tzinfo else timestamp,
        "tags": snapshot_tags(summary, retrain, model_tag),
        "metadata": snapshot_metadata(summary, retrain, model_tag),
        "widgets": [headline, *merged.widgets]})
    return Snapshot.load_model(model)


# --- the dashboard ------------------------------------------------------------------------------------------------

def _panel(title: str, subtitle: str, values: list[Any], plot_type: str = "line", size: str = "half") -> Any:
    from evidently.sdk.models import DashboardPanelPlot

    return DashboardPanelPlot(id=uuid.uuid5(_PANEL_NAMESPACE, title), title=title, subtitle=subtitle, size=size,
                              values=values, plot_params={"plot_type": plot_type})


def dashboard(key_features: Sequence[str], missing_columns: Sequence[str], models: Sequence[str] = (),
              acknowledged: Sequence[str] = (), retrains: Sequence[str] = ()) -> Any:
    """The project's dashboard: one tab of panels over window time, ids fixed by title (so it is idempotent).

    The panels of the model's own numbers (drift share, prediction drift, live ROC AUC, rows) draw one line per
    champion that served, from its snapshots' `model:<tag>` tag, with the champion as the legend: a retrain that
    was promoted starts a new line, so a reviewer sees which model each point belongs to (the title already names
    the metric). `models` are those tags (oldest first); with none yet, one line for every window. Per-column
    panels name the columns. The snapshots list filters by the same tags. Two text panels say what the plots
    cannot: the data-quality alarms operators accepted (`acknowledged`, one line each: what, who, when, why) and
    what the latest retrains came to (`retrains`: the gate's verdict, written back by the monitoring flow).
    """
    from evidently.sdk.models import DashboardModel, DashboardTabModel, PanelMetric

    def per_model(metric: str, labels: dict[str, str] | None = None) -> list[Any]:
        return [PanelMetric(legend=tag, tags=[f"{TAG_MODEL_PREFIX}{tag}"], metric=metric,
                            metric_labels=dict(labels or {})) for tag in models] or [
            PanelMetric(legend="every window", metric=metric, metric_labels=dict(labels or {}))]

    panels = [
        _panel("Share of drifted feature columns",
               "beyond each column's calibrated threshold (reported; the alarm is the drift index)",
               per_model("DriftedColumnsCount", {"value_type": "share"})),
        _panel("Prediction drift", "drift score of the predicted probability vs the reference",
               per_model("ValueDrift", {"column": PROBABILITY})),
        _panel("Drift of key features", "per-column drift score (method chosen by Evidently per column)",
               [PanelMetric(legend=name, metric="ValueDrift", metric_labels={"column": name})
                for name in key_features]),
        _panel("Missing-value share", "share of missing values per column in the window",
               [PanelMetric(legend=name, metric="MissingValueCount",
                            metric_labels={"column": name, "value_type": "share"}) for name in missing_columns]),
        _panel("Live ROC AUC", "on the window's rows whose outcomes arrived (monitor.min_labelled_share)",
               per_model("RocAuc")),
        _panel("Predictions per window", "rows of the prediction log analysed", per_model("RowCount"),
               plot_type="bar"),
        _panel("Acknowledged data-quality alarms", "\n".join(acknowledged) or
               "none: every data-quality alarm blocks retraining (python -m pipelines monitor ack, or the "
               "acknowledge deployment, accepts one as the new normal)", [], plot_type="text", size="full"),
        _panel("Retraining: what the gate decided", "\n".join(retrains) or "no retrain has finished yet", [],
               plot_type="text", size="full"),
    ]
    tab = DashboardTabModel(id=uuid.uuid5(_PANEL_NAMESPACE, "tab:monitoring"), title="Monitoring",
                            panels=[p.id for p in panels])
    return DashboardModel(tabs=[tab], panels=panels)

"""One window against the reference: Evidently's data drift, prediction drift, missing-value and new-category
surges, live quality once outcomes arrive, and the alarm's reasons in words.

Drift flags come from Evidently's own per-column tests (the method is chosen per column type and size by
Evidently), missing-value shares from its `MissingValueCount` on both datasets; results are read by metric type
and column name, never by position. The verdict is a `WindowSummary`: the typed form every reader uses (alarm
reasons, the retrain decision, the history); its JSON form is what is stored per window.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import pandas as pd
from pydantic import BaseModel, ConfigDict

from pipelines.config import FeaturesParams, MonitorParams
from pipelines.monitor.log import ACTUAL, PROBABILITY, REQUEST_ID


class _Part(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ColumnDrift(_Part):
    score: float
    method: str | None
    threshold: float | None
    drifted: bool


class PredictionDrift(ColumnDrift):
    mean_current: float
    mean_reference: float


class MissingShare(_Part):
    reference: float
    current: float
    surge: bool


class NewCategories(_Part):
    share: float
    examples: list[str]
    surge: bool


class LiveQuality(_Part):
    labelled: int
    labelled_share: float
    complete: bool
    metrics: dict[str, float | None] | None = None  # NaN (null when stored): undefined on this window (one class)
    expected: dict[str, float] | None = None
    auc_drop: float | None = None
    decayed: bool | None = None


class WindowSummary(BaseModel):
    """One window's verdict. The monitoring flow adds its bookkeeping (window bounds, skipped log lines, the retrain
    it started) to the stored form; those keys are kept as extras."""

    model_config = ConfigDict(extra="allow")

    rows: int
    first: str
    last: str
    model_tags: list[str]
    drift_share: float
    drifted_columns: list[str]
    columns: dict[str, ColumnDrift]
    prediction_drift: PredictionDrift
    missing: dict[str, MissingShare]
    new_categories: dict[str, NewCategories]
    quality: LiveQuality | None = None
    reasons: list[str] = []
    drift: bool = False

    def to_json_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="json")


@dataclass
class WindowResult:
    """`report` is the typed verdict, `summary` its JSON form (stored, and what the flow adds to), `snapshot`
    Evidently's run (HTML, workspace)."""

    report: WindowSummary
    summary: dict[str, Any]
    snapshot: Any


def _evidently_results(snapshot: Any, columns: list[str]) -> tuple[dict[str, dict[str, Any]], dict[str, tuple]]:
    """Per-column drift (score, method, threshold, verdict) and missing shares (reference, current), found by
    metric type and column name."""
    as_dict = snapshot.dict()
    drift: dict[str, dict[str, Any]] = {}
    for metric in as_dict["metrics"]:
        config = metric.get("config", {})
        if config.get("type", "").endswith(":ValueDrift") and config.get("column") in columns:
            drift[config["column"]] = {"score": float(metric["value"]), "method": config.get("method"),
                                       "threshold": config.get("threshold")}
    for test in as_dict.get("tests", []):
        params = test.get("metric_config", {}).get("params", {})
        if params.get("type", "").endswith(":ValueDrift") and params.get("column") in drift:
            drift[params["column"]]["drifted"] = test["status"] == "FAIL"
    absent = [name for name in columns if name not in drift or "drifted" not in drift[name]]
    if absent:
        raise RuntimeError(f"Evidently returned no drift result for column(s) {absent}")
    missing: dict[str, tuple] = {}
    for metric_id, result in snapshot.metric_results.items():
        config = result.metric_value_location.metric.params
        if config.get("type", "").endswith(":MissingValueCount") and config.get("column") in columns:
            reference = snapshot.context.get_reference_metric_result(metric_id)
            missing[config["column"]] = (float(reference.share.value), float(result.share.value))
    return drift, missing


def _new_categories(current: pd.DataFrame, reference: pd.DataFrame, features: FeaturesParams,
                    monitor: MonitorParams) -> dict[str, NewCategories]:
    new = {}
    for name in features.categorical:
        known = set(reference[name].dropna())
        values = current[name].dropna()
        unseen = values[~values.isin(known)]
        share = float(len(unseen) / len(current)) if len(current) else 0.0
        new[name] = NewCategories(share=round(share, 5), examples=sorted(unseen.unique().tolist())[:5],
                                  surge=share > monitor.new_category_surge)
    return new


def live_quality(window: pd.DataFrame, outcomes: pd.DataFrame, expected: Mapping[str, float] | None,
                 monitor: MonitorParams) -> LiveQuality:
    """The model's quality on the window's flights whose outcomes arrived, against its evaluation figures."""
    from pipelines.evaluate import score

    joined = window[[REQUEST_ID, PROBABILITY, "threshold"]].merge(outcomes, on=REQUEST_ID, how="inner")
    labelled_share = len(joined) / len(window) if len(window) else 0.0
    quality = LiveQuality(labelled=len(joined), labelled_share=round(labelled_share, 4),
                          complete=labelled_share >= monitor.min_labelled_share)
    if not quality.complete:
        return quality
    figures = score(joined[ACTUAL].to_numpy(), joined[PROBABILITY].to_numpy(), float(joined["threshold"].iloc[0]))
    metrics: dict[str, float | None] = {k: figures[k] for k in ("roc_auc", "log_loss", "brier", "f1", "positive_rate")}
    # Calibration in one number: mean predicted minus observed rate (positive = the model over-predicts delays).
    metrics["calibration_gap"] = float(joined[PROBABILITY].mean() - joined[ACTUAL].mean())
    quality.metrics = metrics
    if expected:
        quality.expected = {k: expected[k] for k in ("roc_auc", "log_loss", "brier") if k in expected}
        if "roc_auc" in expected and not math.isnan(metrics["roc_auc"]):
            quality.auc_drop = float(expected["roc_auc"]) - metrics["roc_auc"]
            quality.decayed = quality.auc_drop > monitor.auc_drop
    return quality


def analyse_window(current: pd.DataFrame, reference: pd.DataFrame, features: FeaturesParams, time_column: str,
                   monitor: MonitorParams, outcomes: pd.DataFrame | None = None,
                   expected: Mapping[str, float] | None = None, name: str | None = None) -> WindowResult:
    """Evidently's data drift (per-column tests), prediction drift, missing/new-category surges, live quality.

    `current` is a window of the prediction frame (raw inputs + probability); `reference` the sampled training
    rows with the champion's probability on them. Drift is decided by `monitor` thresholds; the reasons list says
    in words which threshold each alarm passed.
    """
    from evidently import DataDefinition, Dataset, Report
    from evidently.metrics import MissingValueCount, ValueDrift
    from evidently.presets import DataDriftPreset

    columns = features.raw_columns
    definition = DataDefinition(numerical_columns=[*features.numeric, PROBABILITY],
                                categorical_columns=list(features.categorical))
    keep = [*columns, PROBABILITY]
    report = Report(
        [DataDriftPreset(columns=list(columns), drift_share=monitor.drift_share),
         ValueDrift(column=PROBABILITY, method="wasserstein", threshold=monitor.prediction_drift),
         *[MissingValueCount(column=column) for column in columns]],
        include_tests=True,
    )
    snapshot = report.run(current_data=Dataset.from_pandas(current[keep], data_definition=definition),
                          reference_data=Dataset.from_pandas(reference[keep], data_definition=definition),
                          name=name)
    drift, missing = _evidently_results(snapshot, [*columns, PROBABILITY])
    prediction = drift.pop(PROBABILITY)
    drifted = sorted(column for column, r in drift.items() if r["drifted"])
    stamps = current[time_column]
    summary = WindowSummary(
        rows=len(current),
        first=stamps.min().isoformat(),
        last=stamps.max().isoformat(),
        model_tags=sorted(current["model_tag"].dropna().unique().tolist()) if "model_tag" in current else [],
        drift_share=round(len(drifted) / len(columns), 4),
        drifted_columns=drifted,
        columns={column: ColumnDrift(**{k: (round(v, 5) if isinstance(v, float) else v) for k, v in r.items()})
                 for column, r in drift.items()},
        prediction_drift=PredictionDrift(score=round(prediction["score"], 5), method=prediction["method"],
                                         threshold=prediction["threshold"], drifted=prediction["drifted"],
                                         mean_current=float(current[PROBABILITY].mean()),
                                         mean_reference=float(reference[PROBABILITY].mean())),
        missing={column: MissingShare(reference=round(ref, 5), current=round(cur, 5),
                                      surge=cur - ref > monitor.missing_surge)
                 for column, (ref, cur) in ((c, missing[c]) for c in columns)},
        new_categories=_new_categories(current, reference, features, monitor),
        quality=live_quality(current, outcomes, expected, monitor) if outcomes is not None else None,
    )
    summary.reasons = alarm_reasons(summary, monitor)
    summary.drift = bool(summary.reasons)
    return WindowResult(report=summary, summary=summary.to_json_dict(), snapshot=snapshot)


def alarm_reasons(summary: WindowSummary, monitor: MonitorParams) -> list[str]:
    """Plain-words reasons a window passed a threshold; empty means no alarm."""
    reasons = []
    if summary.drift_share >= monitor.drift_share:
        reasons.append(f"data drift: {len(summary.drifted_columns)} of {len(summary.columns)} columns "
                       f"({summary.drift_share:.0%} >= monitor.drift_share {monitor.drift_share:.0%}): "
                       f"{', '.join(summary.drifted_columns)}")
    prediction = summary.prediction_drift
    if prediction.drifted:
        reasons.append(f"prediction drift: {prediction.method} {prediction.score:.3f} >= "
                       f"monitor.prediction_drift {monitor.prediction_drift} (mean probability "
                       f"{prediction.mean_reference:.3f} -> {prediction.mean_current:.3f})")
    surging = [name for name, m in summary.missing.items() if m.surge]
    if surging:
        reasons.append(f"missing-value surge (> +{monitor.missing_surge:.0%}) in: {', '.join(surging)}")
    unseen = [name for name, m in summary.new_categories.items() if m.surge]
    if unseen:
        reasons.append(f"new categories (> {monitor.new_category_surge:.0%} of rows) in: {', '.join(unseen)}")
    quality = summary.quality
    if quality is not None and quality.decayed:
        reasons.append(f"performance decay: live ROC AUC {quality.metrics['roc_auc']:.3f} is "
                       f"{quality.auc_drop:.3f} below the champion's {quality.expected['roc_auc']:.3f} "
                       f"(> monitor.auc_drop {monitor.auc_drop})")
    return reasons

"""monitor: compare a window of logged live traffic with the reference the champion was trained on.

Pure functions: log lines, frames and params in; frames, summaries and Evidently snapshots out. Reading files,
writing reports and the workspace live in `pipelines.monitoring_store`; deciding and triggering in the flows.

Why the pieces look the way they do:
- The prediction log is written by another process that can be killed mid-line, and by code that can change;
  the reader keeps every good line, counts every bad one by reason, and never raises on content.
- Windows are cut by the flights' *scheduled* time (the time column), not by when the request was logged: a replay
  compresses months into minutes, and in production a late batch still belongs to the week it describes.
- Drift flags come from Evidently's own per-column tests (the method is chosen per column type and size by
  Evidently); results are read by metric type and column name, never by position.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd

from pipelines.config import FeaturesParams, MonitorParams
from pipelines.prediction_log import LogRead, OutcomeRecord, PredictionRecord

PROBABILITY = "probability"
ACTUAL = "actual"
REQUEST_ID = "request_id"
WINDOW = "window_start"
# Windows are aligned to a Monday so that 7-day windows are calendar weeks (1970-01-05 was a Monday).
WINDOW_ORIGIN = pd.Timestamp("1970-01-05", tz="UTC")


# --- reading the log ----------------------------------------------------------------------------------------------

@dataclass
class PredictionFrame:
    """The log's good predictions as a typed frame, and every skipped line counted by reason."""

    frame: pd.DataFrame
    skipped: Counter = field(default_factory=Counter)
    examples: list[str] = field(default_factory=list)

    @property
    def skipped_total(self) -> int:
        return int(sum(self.skipped.values()))


def predictions_frame(log: LogRead[PredictionRecord], features: FeaturesParams, time_column: str) -> PredictionFrame:
    """Flatten the log records: one row per prediction, the raw inputs as columns, typed like the reference.

    A record whose inputs lack a feature or the time column, or whose time or numbers do not parse, is skipped
    and counted here (a wrong-schema row must not poison a whole window). A request logged twice (a retried
    call) keeps its latest record by log time, then write order.
    """
    columns = [REQUEST_ID, "ts", "model_tag", time_column, *features.raw_columns, PROBABILITY, "label", "threshold"]
    if not log.records:
        return PredictionFrame(pd.DataFrame(columns=columns), Counter(log.skipped), log.examples)
    records = log.records
    inputs = pd.DataFrame([record.inputs for record in records])
    skipped = Counter(log.skipped)
    keep = np.ones(len(records), dtype=bool)
    for name in [time_column, *features.raw_columns]:
        if name not in inputs.columns:
            skipped[f"inputs_missing_{name}"] += len(records)
            return PredictionFrame(pd.DataFrame(columns=columns), skipped, log.examples)
    stamps = pd.to_datetime(inputs[time_column], utc=True, errors="coerce", format="ISO8601")
    bad_time = stamps.isna().to_numpy()
    skipped["bad_time"] += int((bad_time & keep).sum())
    keep &= ~bad_time
    frame = pd.DataFrame({REQUEST_ID: [r.request_id for r in records], "ts": [r.ts for r in records],
                          "model_tag": [r.model_tag for r in records], time_column: stamps})
    for name in features.numeric:
        values = pd.to_numeric(inputs[name], errors="coerce")
        bad = (values.isna() & inputs[name].notna()).to_numpy()
        skipped[f"bad_number_{name}"] += int((bad & keep).sum())
        keep &= ~bad
        frame[name] = values.astype(float)
    for name in features.categorical:
        frame[name] = inputs[name].map(lambda v: None if v is None or (isinstance(v, float) and math.isnan(v))
                                       else str(v))
    frame[PROBABILITY] = np.fromiter((r.probability for r in records), float, len(records))
    frame["label"] = np.fromiter((r.label for r in records), int, len(records))
    frame["threshold"] = np.fromiter((r.threshold for r in records), float, len(records))
    skipped = Counter({k: v for k, v in skipped.items() if v})
    logged = pd.to_datetime(frame["ts"], utc=True, errors="coerce", format="ISO8601")
    order = logged.sort_values(kind="stable", na_position="first").index
    frame = frame.loc[order[keep[order]]].drop_duplicates(REQUEST_ID, keep="last")
    return PredictionFrame(frame.sort_index().reset_index(drop=True), skipped, log.examples)


def outcomes_frame(log: LogRead[OutcomeRecord]) -> pd.DataFrame:
    """Outcomes by request id; a re-delivered outcome replaces the earlier one (file order)."""
    frame = pd.DataFrame({REQUEST_ID: pd.Series([r.request_id for r in log.records], dtype=object),
                          ACTUAL: pd.Series([r.actual for r in log.records], dtype="int8")})
    return frame.drop_duplicates(REQUEST_ID, keep="last").reset_index(drop=True)


# --- windows ------------------------------------------------------------------------------------------------------

def window_starts(stamps: pd.Series, window_days: int) -> pd.Series:
    """The start of the window each scheduled time falls in (windows aligned to WINDOW_ORIGIN)."""
    width = pd.Timedelta(days=window_days)
    return WINDOW_ORIGIN + ((stamps - WINDOW_ORIGIN) // width) * width


@dataclass(frozen=True)
class WindowPlan:
    start: pd.Timestamp
    end: pd.Timestamp
    rows: int
    ready: bool
    reason: str


def plan_windows(frame: pd.DataFrame, time_column: str, monitor: MonitorParams,
                 done: Iterable[str] = ()) -> list[WindowPlan]:
    """Every window in the log, and whether it is ready for analysis now.

    A window is ready when traffic has moved past its end (the log holds a later scheduled time), it holds at
    least `min_window_rows` rows, and it was not analysed before. The last, still-filling window waits.
    """
    if frame.empty:
        return []
    done = set(done)
    starts = window_starts(frame[time_column], monitor.window_days)
    latest = frame[time_column].max()
    width = pd.Timedelta(days=monitor.window_days)
    plans = []
    for start, rows in starts.value_counts().sort_index().items():
        end = start + width
        if start.isoformat() in done:
            plans.append(WindowPlan(start, end, int(rows), False, "already analysed"))
        elif latest < end:
            plans.append(WindowPlan(start, end, int(rows), False, "still filling"))
        elif rows < monitor.min_window_rows:
            plans.append(WindowPlan(start, end, int(rows), False,
                                    f"{rows} rows < monitor.min_window_rows={monitor.min_window_rows}"))
        else:
            plans.append(WindowPlan(start, end, int(rows), True, "ready"))
    return plans


def window_rows(frame: pd.DataFrame, time_column: str, start: pd.Timestamp, end: pd.Timestamp) -> pd.DataFrame:
    stamps = frame[time_column]
    return frame.loc[(stamps >= start) & (stamps < end)].reset_index(drop=True)


# --- the reference ------------------------------------------------------------------------------------------------

def sample_reference(train: pd.DataFrame, features: FeaturesParams, time_column: str,
                     monitor: MonitorParams) -> pd.DataFrame:
    """A seeded sample of the training split the champion saw, raw columns only (the service's input form)."""
    columns = [time_column, *features.raw_columns]
    missing = [name for name in columns if name not in train.columns]
    if missing:
        raise ValueError(f"the training split lacks column(s) {missing} needed for the monitoring reference")
    frame = train[columns]
    if len(frame) > monitor.reference_rows:
        frame = frame.sample(monitor.reference_rows, random_state=monitor.seed)
    frame = frame.sort_values(time_column, kind="stable").reset_index(drop=True)
    return frame.assign(**{name: _as_category_strings(frame[name]) for name in features.categorical})


def _as_category_strings(values: pd.Series) -> pd.Series:
    return values.map(lambda v: None if v is None or (isinstance(v, float) and math.isnan(v)) else str(v))


# --- analysis -----------------------------------------------------------------------------------------------------

@dataclass
class WindowResult:
    """One window's verdict. `summary` is plain JSON; `snapshot` is Evidently's run (HTML, workspace)."""

    summary: dict[str, Any]
    snapshot: Any


def _surges(current: pd.DataFrame, reference: pd.DataFrame, features: FeaturesParams,
            monitor: MonitorParams) -> tuple[dict[str, Any], dict[str, Any]]:
    missing: dict[str, Any] = {}
    for name in features.raw_columns:
        ref_share = float(reference[name].isna().mean())
        cur_share = float(current[name].isna().mean())
        missing[name] = {"reference": round(ref_share, 5), "current": round(cur_share, 5),
                         "surge": cur_share - ref_share > monitor.missing_surge}
    new: dict[str, Any] = {}
    for name in features.categorical:
        known = set(reference[name].dropna())
        values = current[name].dropna()
        unseen = values[~values.isin(known)]
        share = float(len(unseen) / len(current)) if len(current) else 0.0
        new[name] = {"share": round(share, 5), "examples": sorted(unseen.unique().tolist())[:5],
                     "surge": share > monitor.new_category_surge}
    return missing, new


def _drift_results(snapshot_dict: dict[str, Any], columns: list[str]) -> dict[str, dict[str, Any]]:
    """Per-column drift score, method, threshold and verdict, found by metric type and column name."""
    scores = {}
    for metric in snapshot_dict["metrics"]:
        config = metric.get("config", {})
        if config.get("type", "").endswith(":ValueDrift") and config.get("column") in columns:
            scores[config["column"]] = {"score": float(metric["value"]), "method": config.get("method"),
                                        "threshold": config.get("threshold")}
    for test in snapshot_dict.get("tests", []):
        params = test.get("metric_config", {}).get("params", {})
        if params.get("type", "").endswith(":ValueDrift") and params.get("column") in scores:
            scores[params["column"]]["drifted"] = test["status"] == "FAIL"
    absent = [name for name in columns if name not in scores or "drifted" not in scores[name]]
    if absent:
        raise RuntimeError(f"Evidently returned no drift result for column(s) {absent}")
    return scores


def live_quality(window: pd.DataFrame, outcomes: pd.DataFrame, expected: Mapping[str, float] | None,
                 monitor: MonitorParams) -> dict[str, Any]:
    """The model's quality on the window's flights whose outcomes arrived, against its evaluation figures."""
    from pipelines.evaluate import score

    joined = window[[REQUEST_ID, PROBABILITY, "threshold"]].merge(outcomes, on=REQUEST_ID, how="inner")
    labelled_share = len(joined) / len(window) if len(window) else 0.0
    result: dict[str, Any] = {"labelled": len(joined), "labelled_share": round(labelled_share, 4),
                              "complete": labelled_share >= monitor.min_labelled_share}
    if not result["complete"]:
        return result
    threshold = float(joined["threshold"].iloc[0])
    metrics = score(joined[ACTUAL].to_numpy(), joined[PROBABILITY].to_numpy(), threshold)
    result["metrics"] = {k: metrics[k] for k in ("roc_auc", "log_loss", "brier", "f1", "positive_rate")}
    # Calibration in one number: mean predicted minus observed rate (positive = the model over-predicts delays).
    result["metrics"]["calibration_gap"] = float(joined[PROBABILITY].mean() - joined[ACTUAL].mean())
    if expected:
        result["expected"] = {k: expected[k] for k in ("roc_auc", "log_loss", "brier") if k in expected}
        if "roc_auc" in expected and not math.isnan(metrics["roc_auc"]):
            drop = float(expected["roc_auc"]) - metrics["roc_auc"]
            result["auc_drop"] = drop
            result["decayed"] = drop > monitor.auc_drop
    return result


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
    results = _drift_results(snapshot.dict(), [*columns, PROBABILITY])
    prediction = results.pop(PROBABILITY)
    drifted = sorted(column for column, r in results.items() if r["drifted"])
    share = len(drifted) / len(columns)
    missing, new = _surges(current, reference, features, monitor)
    stamps = current[time_column]
    summary: dict[str, Any] = {
        "rows": len(current),
        "first": stamps.min().isoformat(),
        "last": stamps.max().isoformat(),
        "model_tags": sorted(current["model_tag"].dropna().unique().tolist()) if "model_tag" in current else [],
        "drift_share": round(share, 4),
        "drifted_columns": drifted,
        "columns": {column: {k: (round(v, 5) if isinstance(v, float) else v) for k, v in r.items()}
                    for column, r in results.items()},
        "prediction_drift": {"score": round(prediction["score"], 5), "method": prediction["method"],
                             "threshold": prediction["threshold"], "drifted": prediction["drifted"],
                             "mean_current": float(current[PROBABILITY].mean()),
                             "mean_reference": float(reference[PROBABILITY].mean())},
        "missing": missing,
        "new_categories": new,
    }
    if outcomes is not None:
        summary["quality"] = live_quality(current, outcomes, expected, monitor)
    summary["reasons"] = alarm_reasons(summary, monitor)
    summary["drift"] = bool(summary["reasons"])
    return WindowResult(summary=summary, snapshot=snapshot)


def alarm_reasons(summary: Mapping[str, Any], monitor: MonitorParams) -> list[str]:
    """Plain-words reasons a window passed a threshold; empty means no alarm."""
    reasons = []
    if summary["drift_share"] >= monitor.drift_share:
        reasons.append(f"data drift: {len(summary['drifted_columns'])} of {len(summary['columns'])} columns "
                       f"({summary['drift_share']:.0%} >= monitor.drift_share {monitor.drift_share:.0%}): "
                       f"{', '.join(summary['drifted_columns'])}")
    prediction = summary["prediction_drift"]
    if prediction["drifted"]:
        reasons.append(f"prediction drift: {prediction['method']} {prediction['score']:.3f} >= "
                       f"monitor.prediction_drift {monitor.prediction_drift} (mean probability "
                       f"{prediction['mean_reference']:.3f} -> {prediction['mean_current']:.3f})")
    surging = [name for name, m in summary["missing"].items() if m["surge"]]
    if surging:
        reasons.append(f"missing-value surge (> +{monitor.missing_surge:.0%}) in: {', '.join(surging)}")
    unseen = [name for name, m in summary["new_categories"].items() if m["surge"]]
    if unseen:
        reasons.append(f"new categories (> {monitor.new_category_surge:.0%} of rows) in: {', '.join(unseen)}")
    quality = summary.get("quality") or {}
    if quality.get("decayed"):
        reasons.append(f"performance decay: live ROC AUC {quality['metrics']['roc_auc']:.3f} is "
                       f"{quality['auc_drop']:.3f} below the champion's {quality['expected']['roc_auc']:.3f} "
                       f"(> monitor.auc_drop {monitor.auc_drop})")
    return reasons


# --- the retrain decision -----------------------------------------------------------------------------------------

@dataclass(frozen=True)
class RetrainDecision:
    retrain: bool
    reason: str


def decide_retrain(summary: Mapping[str, Any], window_end: datetime, last_retrain_window_end: str | None,
                   retrain_in_flight: bool, monitor: MonitorParams) -> RetrainDecision:
    """Retrain on an alarm, unless one is already running or the cooldown (in traffic time) has not passed.

    The cooldown counts days of scheduled traffic, not wall time: a replay pushes weeks of traffic through in
    minutes, and a retrain started on one drifted week should see a cooldown's worth of new data before the next.
    """
    if not summary["drift"]:
        return RetrainDecision(False, "no alarm")
    if retrain_in_flight:
        return RetrainDecision(False, "a retraining run is already scheduled, pending or running")
    if last_retrain_window_end is not None:
        last = datetime.fromisoformat(last_retrain_window_end)
        if window_end - last < timedelta(days=monitor.cooldown_days):
            return RetrainDecision(False, f"cooldown: last retrain on traffic up to {last:%Y-%m-%d}, "
                                          f"less than monitor.cooldown_days={monitor.cooldown_days:g} before "
                                          f"{window_end:%Y-%m-%d}")
    return RetrainDecision(True, "; ".join(summary["reasons"]))


# --- history for the demo loop ------------------------------------------------------------------------------------

def summarise_history(summaries: Iterable[Mapping[str, Any]]) -> pd.DataFrame:
    """One row per analysed window: drift share, prediction drift, live AUC, alarm, retrain started."""
    rows = []
    for s in summaries:
        quality = s.get("quality") or {}
        rows.append({
            "window_start": pd.Timestamp(s["window_start"]),
            "rows": s["rows"],
            "model_tags": ",".join(s.get("model_tags", [])),
            "drift_share": s["drift_share"],
            "drifted_columns": len(s["drifted_columns"]),
            "prediction_drift": s["prediction_drift"]["score"],
            "live_auc": (quality.get("metrics") or {}).get("roc_auc", float("nan")),
            "expected_auc": (quality.get("expected") or {}).get("roc_auc", float("nan")),
            "alarm": bool(s["drift"]),
            "retrained": bool((s.get("retrain") or {}).get("started", False)),
        })
    columns = ["window_start", "rows", "model_tags", "drift_share", "drifted_columns", "prediction_drift",
               "live_auc", "expected_auc", "alarm", "retrained"]
    return pd.DataFrame(rows, columns=columns).sort_values("window_start").reset_index(drop=True)


def plot_history(history: pd.DataFrame, monitor: MonitorParams) -> Any:
    """Drift share and live AUC per window, the drift threshold dashed, retrain points marked; returns the figure."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, drift_axis = plt.subplots(figsize=(10, 4.5))
    x = history["window_start"]
    drift_axis.plot(x, history["drift_share"], marker="o", color="tab:red", label="drift share")
    drift_axis.axhline(monitor.drift_share, color="tab:red", linestyle="--", linewidth=1,
                       label="monitor.drift_share")
    drift_axis.set_ylim(0, 1)
    drift_axis.set_ylabel("share of drifted columns")
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


def utc_now() -> datetime:
    return datetime.now(UTC)

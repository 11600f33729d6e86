"""Helpers for the monitoring tests: a small real trained model, prediction-log records and outcomes written by the
real writers (`pipelines.monitor.prediction_log`), so the monitor is tested on what the service writes, and window
records of the real contract (`pipelines.contracts.WindowRecord`)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from pipelines.config import Params
from pipelines.contracts import ColumnDrift, OutcomeRecord, PredictionDrift, Reason, WindowRecord
from pipelines.model.seam import TrainedModel
from pipelines.monitor.prediction_log import PredictionLog, prediction_record

DRIFT_REASONS = (Reason(kind="data_drift", text="data drift: 12 of 21 columns"),
                 Reason(kind="prediction_drift", text="prediction drift: wasserstein 0.61"))


def window_record(drift: bool, start: datetime = datetime(2013, 9, 9, tzinfo=UTC), **fields: Any) -> WindowRecord:
    """A week's `WindowRecord` as the monitoring flow stores it, alarmed (data and prediction drift) or calm;
    `fields` replace any of its values."""
    values: dict[str, Any] = {
        "rows": 6512, "first": start.isoformat(), "last": (start + timedelta(days=7, hours=-1)).isoformat(),
        "model_tags": ["flight-delay:aaa", "flight-delay:bbb"], "drift_share": 0.57 if drift else 0.19,
        "drifted_columns": ["temp"] if drift else [],
        "columns": {"temp": ColumnDrift(score=0.3, method="wasserstein", threshold=0.1, drifted=drift, weight=0.2),
                    "dewp": ColumnDrift(score=0.01, method="wasserstein", threshold=0.1, drifted=False)},
        "prediction_drift": PredictionDrift(score=0.61 if drift else 0.12, method="wasserstein", threshold=0.5,
                                            drifted=drift, mean_current=0.3, mean_reference=0.25),
        "missing": {}, "new_categories": {}, "drift_index": 1.6 if drift else 0.3, "drift_index_threshold": 0.9,
        "reasons": list(DRIFT_REASONS) if drift else [],
        "window_start": start.isoformat(), "window_end": (start + timedelta(days=7)).isoformat(),
        "log_skipped": {"invalid_json": 2, "bad_time": 1}}
    return WindowRecord(**{**values, **fields})


@dataclass(frozen=True)
class Trained:
    model_dir: Path
    prepared_dir: Path
    train: pd.DataFrame
    model: TrainedModel


def train_small(root: Path, params: Params, table: pd.DataFrame) -> Trained:
    """Prepare and train on the small real window, saving train.parquet and the model where params say."""
    from pipelines import io
    from pipelines.data.preprocess import prepare
    from pipelines.model.train import train_model

    prepared = prepare(table, params.source, params.features, params.split, keep=params.evaluate.slices)
    model = train_model(prepared.train, prepared.valid, prepared.schema, params.train)
    model.save(params.paths.model_dir)
    io.write_parquet(io.prepared_path(params.paths, "train"), prepared.train)
    io.write_parquet(io.prepared_path(params.paths, "valid"), prepared.valid)
    return Trained(params.paths.model_dir, params.paths.prepared_dir, prepared.train, model)


def log_records(frame: pd.DataFrame, model: TrainedModel, raw_columns: list[str], time_column: str,
                model_tag: str = "delay-classifier:test") -> list[dict[str, Any]]:
    """Score real rows in-process and build the service's log records (contract format)."""
    proba = model.predict_proba(frame)
    now = datetime.now(UTC).isoformat()
    records = []
    for index, (_, row) in enumerate(frame.iterrows()):
        inputs = {name: (None if pd.isna(row[name]) else (row[name].item() if hasattr(row[name], "item")
                                                          else row[name])) for name in raw_columns}
        inputs[time_column] = row[time_column].isoformat()
        records.append(prediction_record(
            request_id=str(row.get("request_id", f"req-{index}")), ts=now, model_tag=model_tag, inputs=inputs,
            probability=float(proba[index]), label=int(proba[index] >= model.threshold), threshold=model.threshold))
    return records


def write_log(directory: Path, records: list[dict[str, Any]], garbage: list[str] = (), hour: str = "20130901T00"
              ) -> Path:
    """The records through the service's own writer, its clock set to `hour` (the file name's); then garbage lines."""
    clock = datetime.strptime(hour, "%Y%m%dT%H").replace(tzinfo=UTC).timestamp()
    writer = PredictionLog(directory, rotate_hourly=True, rotate_bytes=1 << 40, clock=lambda: clock)
    writer.write(records)
    path = writer.path
    writer.close()
    with open(path, "a") as handle:
        for line in garbage:
            handle.write(line + "\n")
    return path


def write_outcomes(directory: Path, frame: pd.DataFrame, label: str = "label") -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"outcomes-test-{os.getpid()}.jsonl"
    delivered = datetime.now(UTC).isoformat()
    with open(path, "a") as handle:
        for key, actual in zip(frame["request_id"], frame[label], strict=True):
            handle.write(OutcomeRecord(request_id=key, actual=int(actual), delivered_at=delivered).model_dump_json()
                         + "\n")
    return path


def into_week(frame: pd.DataFrame, week_start: str, time_column: str, seed: int, prefix: str) -> pd.DataFrame:
    """Held-out rows moved into one week of scheduled time (features untouched), with unique request ids.

    Why: a single real week's weather always differs from a months-long reference (measured, see docs); to test
    "same distribution, no alarm" the window must hold rows drawn from the reference's distribution.
    """
    rng = np.random.default_rng(seed)
    hours = rng.integers(0, 7 * 24, size=len(frame))
    stamps = pd.Timestamp(week_start, tz="UTC") + pd.to_timedelta(hours, unit="h")
    return frame.assign(**{time_column: stamps, "request_id": [f"{prefix}-{i}" for i in range(len(frame))]})


def shift(frame: pd.DataFrame) -> pd.DataFrame:
    """A constructed shift: a hot, humid, windy season on new routes, older planes, later schedules."""
    return frame.assign(temp=frame["temp"] + 35, dewp=frame["dewp"] + 30, humid=(frame["humid"] * 0.3),
                        wind_speed=frame["wind_speed"] * 3, pressure=frame["pressure"] - 25,
                        distance=frame["distance"] * 2.5, plane_year=frame["plane_year"] - 25,
                        hour=np.minimum(frame["hour"] + 6, 23), dest="XYZ", carrier="ZZ",
                        visib=frame["visib"] * 0.2, plane_seats=frame["plane_seats"] * 2,
                        sched_arr_time=np.minimum(frame["sched_arr_time"] + 600, 2359))


def later_schedules(frame: pd.DataFrame) -> pd.DataFrame:
    """A real-looking drift, no data fault: every flight rescheduled four hours later (inside the day, so inside the
    reference's ranges), the arrival times with it. The departure hour is the model's most used feature."""
    return frame.assign(hour=np.minimum(frame["hour"] + 4, 23),
                        sched_arr_time=np.minimum(frame["sched_arr_time"] + 400, 2359))

"""The reference a window is compared with: a seeded sample of the data the champion was fitted on (its train and
validation splits), and the drift thresholds calibrated on that period, both stored with the model at
registration (so after a retrain, windows are compared with the data the *new* champion saw, by its thresholds)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from pipelines.config import FeaturesParams, MonitorParams
from pipelines.contracts import PROBABILITY
from pipelines.monitor.calibration import (
    Calibration,
    auc_drops,
    calibrate,
    calibration_start,
    gain_shares,
    prediction_bound,
    size_windows,
    sizing_text,
)
from pipelines.monitor.labels import calibrate_labels
from pipelines.monitor.log import as_category_strings


def sample_reference(train: pd.DataFrame, features: FeaturesParams, time_column: str,
                     monitor: MonitorParams) -> pd.DataFrame:
    """`monitor.reference_rows` seeded rows, raw columns only (the service's input form), in time order.

    `train` is the reference period: the splits the model was fitted and early-stopped on (a validation week is
    part of what the model learned from; leaving it out made every validation-month week look drifted)."""
    columns = [time_column, *features.raw_columns]
    missing = [name for name in columns if name not in train.columns]
    if missing:
        raise ValueError(f"the training split lacks column(s) {missing} needed for the monitoring reference")
    frame = train[columns]
    if len(frame) > monitor.reference_rows:
        frame = frame.sample(monitor.reference_rows, random_state=monitor.seed)
    frame = frame.sort_values(time_column, kind="stable").reset_index(drop=True)
    return frame.assign(**{name: as_category_strings(frame[name]) for name in features.categorical})


def period_order(splits: list[pd.DataFrame], time_column: str) -> pd.Series:
    """The splits' scheduled times (taken as one table, in split order) in time order, ties in table order; the
    index holds each row's position in that table."""
    return pd.concat([split[time_column] for split in splits], ignore_index=True).sort_values(kind="stable")


def period_rows(splits: list[pd.DataFrame], features: FeaturesParams, time_column: str,
                selections: list[np.ndarray]) -> list[pd.DataFrame]:
    """For each selection (positions as `period_order` counts them, in that order) its rows of the splits, raw
    columns in the service's form. Column by column, each column of the period joined once for every selection,
    so only the chosen rows are ever held twice, not the whole period."""
    data: list[dict[str, pd.Series]] = [{} for _ in selections]
    for name in [time_column, *features.raw_columns]:
        column = pd.concat([split[name] for split in splits], ignore_index=True)
        for chosen, rows in zip(data, selections, strict=True):
            values = column.take(rows).reset_index(drop=True)
            chosen[name] = as_category_strings(values) if name in features.categorical else values
    return [pd.DataFrame(chosen) for chosen in data]


def build_reference(splits: list[pd.DataFrame], model: Any, features: FeaturesParams, time_column: str,
                    monitor: MonitorParams, labelled: list[pd.DataFrame] = ()) -> tuple[pd.DataFrame, Calibration]:
    """The stored reference sample, scored by `model` (a `pipelines.model.seam.TrainedModel`; its probabilities are
    stored with it, so a
    monitoring run does not re-predict 50,000 rows), and the model's calibration: windows of the reference period
    against the sample, weighted by the model's gain shares, judged against its vocabulary. `labelled` (prepared
    splits with their `label`: validation and test) calibrates the performance-decay and label-quality limits.

    Only the sample's rows and the latest `monitor.calibration_windows` windows' rows are built and scored, so the
    cost stops growing with the period past those windows (a big table's train split spans years).
    `monitor.window_days` / `min_window_rows` `auto` are resolved here from the period (`size_windows`) and kept in
    the calibration, which live windows are then cut by."""
    stamps = period_order(splits, time_column)
    labels = pd.concat([split["label"] for split in splits], ignore_index=True) if all(
        "label" in split for split in splits) else None
    asked = (monitor.window_days, monitor.min_window_rows)
    monitor = size_windows(stamps.reset_index(drop=True), monitor, labels)
    order = stamps.index.to_numpy()
    drawn = order
    if len(order) > monitor.reference_rows:  # the draw `DataFrame.sample(random_state=seed)` makes of the period
        drawn = order[np.random.RandomState(monitor.seed).choice(len(order), monitor.reference_rows, replace=False)]
    sample, period = period_rows(splits, features, time_column, [drawn, order[calibration_start(stamps, monitor):]])
    reference = sample_reference(sample, features, time_column, monitor)
    scored = reference.assign(**{PROBABILITY: model.predict_proba(reference)})
    weights = gain_shares(model.importance("weight"), features.raw_columns)
    calibration = calibrate(period.assign(**{PROBABILITY: model.predict_proba(period)}), scored, features,
                            time_column, monitor, weights, model.schema.categorical)
    calibration = calibration.model_copy(update={"sizing": sizing_text(asked, monitor.window_days,
                                                                       monitor.min_window_rows)})
    held_out = [split for split in labelled if len(split) and "label" in split]
    if held_out:
        frame = pd.concat([split[[time_column, *features.raw_columns, "label"]] for split in held_out],
                          ignore_index=True)
        frame = frame.assign(**{PROBABILITY: model.predict_proba(frame)})
        drops = auc_drops(frame, time_column, monitor)
        if drops:
            calibration = calibration.model_copy(update={
                "auc_drop": round(prediction_bound(drops, monitor.calibration_quantile), 5),
                "auc_windows": len(drops)})
        calibration = calibration.model_copy(update={"labels": calibrate_labels(frame, time_column, monitor)})
    return scored, calibration

"""The reference a window is compared with: a seeded sample of the data the champion was fitted on (its train and
validation splits), and the drift thresholds calibrated on that period, both stored with the model at
registration (so after a retrain, windows are compared with the data the *new* champion saw, by its thresholds)."""

from __future__ import annotations

from typing import Any

import pandas as pd

from pipelines.config import FeaturesParams, MonitorParams
from pipelines.monitor.calibration import Calibration, calibrate, gain_shares
from pipelines.monitor.log import PROBABILITY, as_category_strings


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


def reference_period(splits: list[pd.DataFrame], features: FeaturesParams, time_column: str) -> pd.DataFrame:
    """The splits the model was fitted on, raw columns in the service's form, in time order."""
    frame = pd.concat([split[[time_column, *features.raw_columns]] for split in splits], ignore_index=True)
    frame = frame.sort_values(time_column, kind="stable").reset_index(drop=True)
    return frame.assign(**{name: as_category_strings(frame[name]) for name in features.categorical})


def build_reference(splits: list[pd.DataFrame], model: Any, features: FeaturesParams, time_column: str,
                    monitor: MonitorParams) -> tuple[pd.DataFrame, Calibration]:
    """The stored reference sample and the model's calibration: windows of the reference period against the
    sample, scored by `model` (a `TrainedModel`), weighted by its gain shares, judged against its vocabulary."""
    period = reference_period(splits, features, time_column)
    reference = sample_reference(period, features, time_column, monitor)
    scored = reference.assign(**{PROBABILITY: model.predict_proba(reference)})
    weights = gain_shares(model.booster, model.schema.feature_names, features.raw_columns)
    calibration = calibrate(period.assign(**{PROBABILITY: model.predict_proba(period)}), scored, features,
                            time_column, monitor, weights, model.schema.categorical)
    return reference, calibration

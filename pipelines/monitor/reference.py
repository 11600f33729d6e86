"""The reference a window is compared with: a seeded sample of the training split the champion saw, stored with
the model at registration (so after a retrain, windows are compared with the data the *new* champion saw)."""

from __future__ import annotations

import pandas as pd

from pipelines.config import FeaturesParams, MonitorParams
from pipelines.monitor.log import as_category_strings


def sample_reference(train: pd.DataFrame, features: FeaturesParams, time_column: str,
                     monitor: MonitorParams) -> pd.DataFrame:
    """`monitor.reference_rows` seeded rows, raw columns only (the service's input form), in time order."""
    columns = [time_column, *features.raw_columns]
    missing = [name for name in columns if name not in train.columns]
    if missing:
        raise ValueError(f"the training split lacks column(s) {missing} needed for the monitoring reference")
    frame = train[columns]
    if len(frame) > monitor.reference_rows:
        frame = frame.sample(monitor.reference_rows, random_state=monitor.seed)
    frame = frame.sort_values(time_column, kind="stable").reset_index(drop=True)
    return frame.assign(**{name: as_category_strings(frame[name]) for name in features.categorical})

"""Windows of live traffic, cut by the flights' *scheduled* time (the time column), not by when a request was
logged: a replay compresses months into minutes, and in production a late batch still belongs to the week it
describes."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import pandas as pd

from pipelines.config import MonitorParams

# Windows are aligned to a Monday so that 7-day windows are calendar weeks (1970-01-05 was a Monday).
WINDOW_ORIGIN = pd.Timestamp("1970-01-05", tz="UTC")


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

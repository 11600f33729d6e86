"""Windows of live traffic, cut by the flights' *scheduled* time (the time column), not by when a request was
logged: a replay compresses months into minutes, and in production a late batch still belongs to the week it
describes."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

import pandas as pd

from pipelines.config import MonitorParams

if TYPE_CHECKING:
    from pipelines.monitor.calibration import Calibration

# The window minimum of a calibration made before `auto` sizing recorded its own (the params default then).
LEGACY_MIN_WINDOW_ROWS = 1000

# Windows are aligned to a Monday so that 7-day windows are calendar weeks (1970-01-05 was a Monday).
WINDOW_ORIGIN = pd.Timestamp("1970-01-05", tz="UTC")


def calibrated_windows(monitor: MonitorParams, calibration: Calibration) -> MonitorParams:
    """`monitor` with `window_days` / `min_window_rows` `auto` taken from the champion's calibration: live windows
    are cut as the reference windows its thresholds were learned on (`calibration.size_windows` chose them)."""
    update: dict[str, int] = {}
    if monitor.window_days == "auto":
        update["window_days"] = calibration.window_days
    if monitor.min_window_rows == "auto":
        update["min_window_rows"] = calibration.min_window_rows or LEGACY_MIN_WINDOW_ROWS
    return monitor.model_copy(update=update) if update else monitor


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
    late_rows: int = 0       # rows that arrived after the window was analysed
    reanalysis: bool = False
    skipped: bool = False    # never judged: a partial first window too small once the next one has started


def traffic_clock(stamps: pd.Series, monitor: MonitorParams) -> pd.Timestamp:
    """How far the traffic has moved, robustly: the scheduled time that `min_window_rows` logged rows reach or
    pass. One request for a flight weeks ahead (or a few hundred) cannot move it; a window's worth of traffic can."""
    count = min(monitor.min_window_rows, len(stamps))
    return stamps.nlargest(count).iloc[-1]


def monitor_clock(stamps: pd.Series, monitor: MonitorParams,
                  now: pd.Timestamp | None = None) -> tuple[pd.Timestamp, str]:
    """The monitor's "now" and which clock it is: the wall clock (`now`; "wall"), or the traffic clock when that is
    earlier ("traffic": a replay pushes 2013 through in 2026, so only the traffic says which of its weeks are over)."""
    wall = now if now is not None else pd.Timestamp.now(tz="UTC")
    traffic = traffic_clock(stamps, monitor)
    return (traffic, "traffic") if traffic <= wall else (wall, "wall")


# The command that judges windows as of a given time (a backfill, or the last window of a replay that has ended).
JUDGE_AS_OF = "python -m flows.monitoring --clock"


def still_filling(start: pd.Timestamp, end: pd.Timestamp, rows: int, clock: pd.Timestamp, clock_kind: str,
                  monitor: MonitorParams) -> str:
    """Why a window is not judged yet, in words that say which clock held it back and what moves it.

    `clock_kind`: "traffic" (the replayed or live traffic's own time has not reached the window's end: more traffic
    moves it, and a replay that has ended never will), "wall" (the traffic is stamped ahead of real time: real time
    moves it) or "given" (the flow's `clock` parameter)."""
    due = end + pd.Timedelta(hours=monitor.window_grace_hours)
    head = (f"still filling: the window {start:%Y-%m-%d} .. {end:%Y-%m-%d} is judged from {due:%Y-%m-%d %H:%M} UTC "
            f"(its end + monitor.window_grace_hours={monitor.window_grace_hours:g}), ")
    short = (f"; it holds {rows} rows, under monitor.min_window_rows={monitor.min_window_rows}, so it would still "
             "wait" if rows < monitor.min_window_rows else "")
    if clock_kind == "given":
        return head + f"and the clock given to the flow is {clock:%Y-%m-%d %H:%M}: give a later one" + short
    if clock_kind == "wall":
        return (head + f"and it is now {clock:%Y-%m-%d %H:%M} UTC: the traffic is stamped ahead of real time, so the "
                f"window waits for real time to pass its end; to judge it now: {JUDGE_AS_OF} {due:%Y-%m-%dT%H:%M}"
                + short)
    return (head + f"and the traffic has reached {clock:%Y-%m-%d %H:%M} (the traffic clock: the time the latest "
            f"monitor.min_window_rows={monitor.min_window_rows} logged rows reach, not the wall clock). It is judged "
            f"once {monitor.min_window_rows} logged rows are past {due:%Y-%m-%d %H:%M}; if the traffic has ended "
            f"(the last window of a replay, e.g. replay.end before {due:%Y-%m-%d}), judge the window on the rows it "
            "has with "
            f"{JUDGE_AS_OF} {due:%Y-%m-%dT%H:%M}" + short)


def plan_windows(frame: pd.DataFrame, time_column: str, monitor: MonitorParams,
                 done: Mapping[str, int | None] | Iterable[str] = (), now: pd.Timestamp | None = None,
                 clock: pd.Timestamp | None = None) -> list[WindowPlan]:
    """Every window in the log, and whether it is ready for analysis now.

    A window is ready when the monitor's clock (`monitor_clock`) has passed its end plus
    `monitor.window_grace_hours` and it holds at least `min_window_rows` rows. The first window of traffic that
    starts mid-window (a replay from a Sunday, a service switched on on a Wednesday) is judged like any other when
    it holds enough rows; when it does not, it is *skipped* once its end has passed (`partial_first_window`): the
    rows before the traffic began will never come, so it is said to be partial, not left waiting. `done` maps each
    analysed window's start to the rows it had when analysed: rows that arrived since are counted, and past
    `monitor.late_rows_share` of them the window is ready again (re-analysed with all its rows). `now` is the wall
    clock (default: the real one); `clock` replaces the monitor's clock altogether (a backfill or a test judging
    "as of" a time).
    """
    if frame.empty:
        return []
    analysed = dict(done) if isinstance(done, Mapping) else dict.fromkeys(done)
    starts = window_starts(frame[time_column], monitor.window_days)
    clock, clock_kind = (clock, "given") if clock is not None else monitor_clock(frame[time_column], monitor, now)
    width = pd.Timedelta(days=monitor.window_days)
    grace = pd.Timedelta(hours=monitor.window_grace_hours)
    first = frame[time_column].min()
    plans = []
    for start, rows in starts.value_counts().sort_index().items():
        end, rows = start + width, int(rows)
        key = start.isoformat()
        if key in analysed:
            before = analysed[key]
            late = max(rows - before, 0) if before is not None else 0
            if before and late > monitor.late_rows_share * before:
                plans.append(WindowPlan(start, end, rows, True, f"{late} late rows since analysed on {before} "
                                        f"(> monitor.late_rows_share={monitor.late_rows_share:g}): re-analyse",
                                        late_rows=late, reanalysis=True))
            else:
                plans.append(WindowPlan(start, end, rows, False, "already analysed", late_rows=late))
        elif clock < end + grace:
            plans.append(WindowPlan(start, end, rows, False,
                                    still_filling(start, end, rows, clock, clock_kind, monitor)))
        elif rows < monitor.min_window_rows and start < first:
            plans.append(WindowPlan(start, end, rows, False, partial_first_window(start, first, rows, monitor),
                                    skipped=True))
        elif rows < monitor.min_window_rows:
            plans.append(WindowPlan(start, end, rows, False,
                                    f"{rows} rows < monitor.min_window_rows={monitor.min_window_rows}"))
        else:
            plans.append(WindowPlan(start, end, rows, True, "ready"))
    return plans


def partial_first_window(start: pd.Timestamp, first: pd.Timestamp, rows: int, monitor: MonitorParams) -> str:
    """Why the first window is skipped: the traffic began inside it (`first`, the earliest scheduled time logged),
    so it covers only part of its days and too few rows to be judged against a calibration made on whole windows;
    the next window has started, so no more of its rows are coming."""
    days = (start + pd.Timedelta(days=monitor.window_days) - first) / pd.Timedelta(days=1)
    return (f"partial first window, skipped: the traffic starts {first:%Y-%m-%d %H:%M}, inside it, so it covers "
            f"{days:.1f} of its {monitor.window_days} days; {rows} rows < monitor.min_window_rows="
            f"{monitor.min_window_rows} and the next window has started. Windows from the next one are judged")


def window_rows(frame: pd.DataFrame, time_column: str, start: pd.Timestamp, end: pd.Timestamp) -> pd.DataFrame:
    stamps = frame[time_column]
    return frame.loc[(stamps >= start) & (stamps < end)].reset_index(drop=True)

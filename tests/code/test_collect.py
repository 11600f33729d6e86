"""collect: the join, the window, and clear errors for a bad source."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
import pytest

from pipelines.data.collect import (
    PARSE_ERRORS,
    WINDOW_ROWS,
    FlightTables,
    SourceError,
    collect,
    join_flights,
    parse_time,
    read_table,
    select_window,
)

UTC = UTC


def _tables() -> FlightTables:
    flights = pd.DataFrame({
        "origin": ["JFK", "JFK", "LGA"], "time_hour": ["2013-01-01T10:00:00Z"] * 3,
        "tailnum": ["N1", None, "N2"], "arr_delay": [20.0, 0.0, None],
    })
    weather = pd.DataFrame({"origin": ["JFK"], "time_hour": ["2013-01-01T10:00:00Z"], "temp": [30.0],
                            **{c: [1.0] for c in ["dewp", "humid", "wind_dir", "wind_speed", "wind_gust",
                                                  "precip", "pressure", "visib"]}})
    planes = pd.DataFrame({"tailnum": ["N1"], "year": [2004.0], "type": ["t"], "manufacturer": ["EMBRAER"],
                           "model": ["m"], "engines": [2], "seats": [55], "engine": ["Turbo-fan"]})
    return FlightTables(flights=flights, weather=weather, planes=planes)


def test_join_keeps_every_flight_and_adds_weather_and_plane() -> None:
    joined = join_flights(_tables())
    assert len(joined) == 3
    assert joined["temp"].tolist()[:2] == [30.0, 30.0]
    assert pd.isna(joined.loc[2, "temp"])  # LGA has no observation at that hour: missing, not dropped
    assert joined.loc[0, "plane_manufacturer"] == "EMBRAER"
    assert pd.isna(joined.loc[1, "plane_seats"])


def test_window_is_half_open_and_sorted() -> None:
    frame = parse_time(pd.DataFrame({"t": ["2013-01-02", "2013-01-01", "2013-01-03"], "x": [2, 1, 3]}), "t")
    window = select_window(frame, "t", datetime(2013, 1, 1, tzinfo=UTC), datetime(2013, 1, 3, tzinfo=UTC))
    assert window["x"].tolist() == [1, 2]


def test_empty_window_names_the_params_and_the_data_span() -> None:
    frame = parse_time(pd.DataFrame({"t": ["2013-01-01"]}), "t")
    with pytest.raises(SourceError, match=r"\(collect.start .. collect.end\) holds no rows; the table's 't' spans"):
        select_window(frame, "t", datetime(2014, 1, 1, tzinfo=UTC), datetime(2014, 2, 1, tzinfo=UTC))
    with pytest.raises(SourceError, match=r"holds no rows; the table has no rows$"):  # a header-only file
        select_window(frame.iloc[:0], "t", datetime(2013, 1, 1, tzinfo=UTC), datetime(2013, 2, 1, tzinfo=UTC))


def test_bad_time_values_are_counted_with_examples_not_raised() -> None:
    frame = parse_time(pd.DataFrame({"t": ["2013-01-01", "yesterday-ish", None]}), "t")
    assert frame["t"].isna().tolist() == [False, True, True]
    assert frame.attrs[PARSE_ERRORS] == {"t": {"type": "datetime", "count": 1, "examples": ["yesterday-ish"]}}


def test_cells_that_do_not_parse_as_their_type_become_null_and_are_counted(tmp_path: Path) -> None:
    path = tmp_path / "mine.csv"
    path.write_text("n,code,free\n1,a,x\nfar,b,2\n 3 ,,y\n,c,z\n12km,d,w\n")
    frame = read_table(path, {"n": "numeric", "code": "str"})
    assert frame["n"].isna().tolist() == [False, True, False, True, True]  # "far", the empty cell, "12km"
    assert frame["n"].dropna().tolist() == [1.0, 3.0]
    assert frame.attrs[PARSE_ERRORS] == {"n": {"type": "numeric", "count": 2, "examples": ["far", "12km"]}}
    assert frame["code"].tolist()[:2] == ["a", "b"] and frame["code"].isna().tolist()[2]
    # a Parquet column of text where the suite says numeric is parsed the same way, and the result is writable
    pd.DataFrame({"n": ["1", "x"]}).to_parquet(tmp_path / "mine.parquet")
    parsed = read_table(tmp_path / "mine.parquet", {"n": "numeric"})
    assert parsed.attrs[PARSE_ERRORS]["n"]["examples"] == ["x"]
    parsed.to_parquet(tmp_path / "out.parquet")
    assert pd.read_parquet(tmp_path / "out.parquet").attrs[PARSE_ERRORS]["n"]["count"] == 1


def test_package_source_reads_the_real_window(make_params) -> None:
    params = make_params()
    table = collect(params.source, params.collect)
    assert table["time_hour"].min() >= params.collect.start
    assert table["time_hour"].max() < params.collect.end
    assert {"carrier", "temp", "plane_seats", "arr_delay"} <= set(table.columns)
    assert table["time_hour"].is_monotonic_increasing


@pytest.mark.parametrize("suffix", [".csv", ".parquet", ".csv.gz", ".CSV.ZIP", ".csv.xz"])
def test_user_file_source(make_params, tmp_path: Path, small_table: pd.DataFrame, suffix: str) -> None:
    """A CSV may come compressed (pandas reads it by its suffix); the rows are the plain CSV's."""
    path = tmp_path / f"mine{suffix}"
    sample = small_table.head(500)
    sample.to_parquet(path) if suffix == ".parquet" else sample.to_csv(path, index=False)
    params = make_params({"source.kind": "file", "source.path": str(path)})
    table = collect(params.source, params.collect)
    assert len(table) == 500
    pd.testing.assert_series_equal(table["dep_delay"], sample["dep_delay"].reset_index(drop=True),
                                   check_dtype=False)


def test_rows_outside_the_window_are_counted_through_to_the_validation_summary(
        make_params, tmp_path: Path, small_table: pd.DataFrame) -> None:
    """Rows collect leaves out are configuration, not corruption, but the count must reach the report."""
    from pipelines import io, stages
    from pipelines.data.suite import ValidationSummary

    later = small_table.head(30).assign(time_hour=small_table["time_hour"].head(30) + pd.Timedelta(days=800))
    no_time = small_table.head(4).assign(time_hour=pd.NaT)
    path = tmp_path / "mine.parquet"
    pd.concat([small_table.head(500), later, no_time], ignore_index=True).to_parquet(path)
    params = make_params({"source.kind": "file", "source.path": str(path), "validate.fail_on_error": False})
    collected = stages.run_collect(params)
    assert (collected["rows"], collected["source_rows"], collected["outside_window"]) == (500, 534, 34)
    assert io.read_parquet(params.paths.raw_table, "collect").attrs[WINDOW_ROWS] == {
        "source_rows": 534, "outside_window": 34}
    stages.run_validate(params)
    summary = ValidationSummary.read(params.paths.validation_dir / io.VALIDATION_SUMMARY_FILE)
    assert summary.collected == {"source_rows": 534, "outside_window": 34}
    assert summary.rows == 500


def test_missing_file_and_corrupt_file_and_missing_target(make_params, tmp_path: Path) -> None:
    params = make_params({"source.kind": "file", "source.path": str(tmp_path / "none.csv")})
    with pytest.raises(SourceError, match="source file not found"):
        collect(params.source, params.collect)
    corrupt = tmp_path / "bad.parquet"
    corrupt.write_bytes(b"PAR1 this is not parquet")
    params = make_params({"source.kind": "file", "source.path": str(corrupt)})
    with pytest.raises(SourceError, match=r"cannot read source file .*bad.parquet"):
        collect(params.source, params.collect)
    no_target = tmp_path / "no_target.csv"
    pd.DataFrame({"time_hour": ["2013-03-02"], "x": [1]}).to_csv(no_target, index=False)
    params = make_params({"source.kind": "file", "source.path": str(no_target)})
    with pytest.raises(SourceError, match="source.target: 'arr_delay' is not a column of the table"):
        collect(params.source, params.collect)


def test_an_empty_window_names_the_section_it_came_from() -> None:
    """The replay's window is `replay.start .. replay.end`, not collect's (the replay command's log and errors)."""
    from datetime import UTC, datetime

    import pandas as pd

    from pipelines.data.collect import SourceError, select_window

    frame = pd.DataFrame({"t": pd.to_datetime(["2013-01-05", "2013-01-06"], utc=True), "x": [1, 2]})
    start, end = datetime(2014, 1, 1, tzinfo=UTC), datetime(2014, 2, 1, tzinfo=UTC)
    try:
        select_window(frame, "t", start, end, section="replay")
    except SourceError as error:
        assert "(replay.start .. replay.end) holds no rows" in str(error)
    else:
        raise AssertionError("an empty window must be refused")

"""Reading a user's table is never silent: times in one decided order of day and month (source.time_format /
source.dayfirst), CSV options (source.read), and the mistakes a person makes with a file named by their cause, with
the key that fixes them. A refused collect writes nothing (the previous table stays).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from pipelines import stages
from pipelines.config import Params, ParamsError
from pipelines.data.collect import SourceError, TimeFormat, parse_stamps, read_table
from pipelines.features import date_only

# The first twelve days of July, August and September 2016: every numeric date is valid day first and month first.
DAYS = [day for day in pd.date_range("2016-07-01", "2016-09-30", freq="D") if day.day <= 12]
ROWS = len(DAYS)


def _params(make_params: Callable[..., Params], path: Path, **overrides: Any) -> Params:
    return make_params({
        "source.kind": "file", "source.path": str(path), "source.time_column": "day", "source.target": "y",
        "source.positive_above": None, "source.positive_class": None, "source.key_columns": [],
        "collect.start": "2016-07-01", "collect.end": "2016-10-01", "features.categorical": ["shop"],
        "features.numeric": ["price"], "features.time_parts": ["day_of_week"], "features.forbidden": [],
        "evaluate.slices": [], "monitor.key_features": [], **overrides})


def _dates(fmt: str) -> list[str]:
    return [stamp.strftime(fmt) for stamp in DAYS]


def _write(path: Path, days: list[str], delimiter: str = ",", decimal: str = ".", encoding: str = "utf-8") -> Path:
    lines = [delimiter.join(["day", "shop", "price", "y"])]
    for number, day in enumerate(days):
        price = f"{10 + number / 4:.2f}".replace(".", decimal)
        lines.append(delimiter.join([day, ("Café", "Bäckerei", "")[number % 3], price, str(int(number % 7 == 0))]))
    path.write_bytes(("\n".join(lines) + "\n").encode(encoding))
    return path


# --- time parsing ---------------------------------------------------------------------------------------------------

def test_day_first_dates_with_both_orders_valid_are_refused_with_examples_and_the_keys(make_params, tmp_path) -> None:
    """01/07/16 .. 12/09/16: every value is valid both ways round; pandas read them month first with a warning."""
    path = _write(tmp_path / "shop.csv", _dates("%d/%m/%y"))
    params = _params(make_params, path)
    with pytest.raises(SourceError) as refused:
        stages.run_collect(params)
    text = str(refused.value)
    assert "time column 'day'" in text and "either way round" in text
    assert "'01/07/16', '02/07/16', '03/07/16'" in text  # three values that differ by order
    assert "day first: 1 July; month first: 7 January" in text
    assert "source.dayfirst" in text and "source.time_format" in text
    assert not params.paths.raw_table.exists()  # nothing half-written


@pytest.mark.parametrize("overrides", [{"source.dayfirst": True}, {"source.time_format": "%d/%m/%y"}])
def test_the_order_set_by_a_key_reads_every_date_right(make_params, tmp_path, overrides) -> None:
    path = _write(tmp_path / "shop.csv", _dates("%d/%m/%y"))
    stages.run_collect(_params(make_params, path, **overrides))
    table = pd.read_parquet(_params(make_params, path).paths.raw_table)
    assert table["day"].tolist() == [day.tz_localize("UTC") for day in DAYS]


def test_dates_that_prove_their_order_need_no_key(make_params) -> None:
    """A first number above 12 is a day: the whole column is day first, and a value that is not is bad, never
    turned round on its own (dateutil's per-cell parse reads 13/02 day first and 02/13 month first)."""
    text = pd.Series(["13/07/16", "02/07/16", "02/13/16"], dtype="string")
    parsed = parse_stamps(text, TimeFormat())
    assert parsed[:2].tolist() == [pd.Timestamp("2016-07-13", tz="UTC"), pd.Timestamp("2016-07-02", tz="UTC")]
    assert pd.isna(parsed[2])
    assert parse_stamps(pd.Series(["07/13/16", "07/02/16"], dtype="string"), TimeFormat()).tolist() == [
        pd.Timestamp("2016-07-13", tz="UTC"), pd.Timestamp("2016-07-02", tz="UTC")]


def test_a_value_against_time_format_is_a_named_bad_value(make_params, tmp_path) -> None:
    days = _dates("%d/%m/%Y")
    days[5] = "2016-07-06"
    path = _write(tmp_path / "shop.csv", days)
    with pytest.raises(SourceError, match=r"time column 'day' \(source.time_column\) has 1 of 36 values that do not "
                                          r"parse as dates, e.g. '2016-07-06'"):
        stages.run_collect(_params(make_params, path, **{"source.time_format": "%d/%m/%Y"}))


def test_iso_dates_are_date_only() -> None:
    parsed = parse_stamps(pd.Series(["2016-07-02", "2016-07-03"], dtype="string"), TimeFormat())
    assert date_only(parsed)
    assert not date_only(parse_stamps(pd.Series(["2016-07-02 10:00"], dtype="string"), TimeFormat()))


@pytest.mark.parametrize(("overrides", "message"), [
    ({"source.time_format": "%d/%m/%y", "source.dayfirst": True}, "source.time_format and source.dayfirst are both"),
    ({"source.time_format": "dd/mm/yy"}, "source.time_format 'dd/mm/yy' has no strftime directive"),
    ({"source.read.encoding": "latin-9x"}, "source.read.encoding: unknown text encoding 'latin-9x'"),
    ({"source.read.delimiter": ";;"}, "source.read.delimiter"),
    ({"source.read.decimal": "'"}, "source.read.decimal"),
])
def test_reading_keys_are_checked_by_the_loader(make_params, tmp_path, overrides, message) -> None:
    with pytest.raises(ParamsError, match=message):
        _params(make_params, tmp_path / "shop.csv", **overrides)


# --- CSV reading ------------------------------------------------------------------------------------------------------

def test_a_semicolon_file_read_with_commas_is_named_with_the_key(make_params, tmp_path) -> None:
    path = _write(tmp_path / "shop.csv", _dates("%Y-%m-%d"), delimiter=";", decimal=",")
    params = _params(make_params, path)
    with pytest.raises(SourceError, match=r"reads as one column 'day;shop;price;y' .*';'-delimited \(4 columns: "
                                          r"\['day', 'shop', 'price', 'y'\]\): set source.read.delimiter: ';' "
                                          r"\(and source.read.decimal: ','"):
        stages.run_collect(params)
    assert not params.paths.raw_table.exists()


def test_delimiter_decimal_and_encoding_read_a_european_export(make_params, tmp_path) -> None:
    path = _write(tmp_path / "shop.csv", _dates("%Y-%m-%d"), delimiter=";", decimal=",", encoding="cp1252")
    table = read_table(path, {"price": "numeric", "day": "datetime"},
                       reading=_params(make_params, path, **{"source.read.delimiter": ";", "source.read.decimal": ",",
                                                             "source.read.encoding": "cp1252"}).source.read)
    assert table["price"].tolist()[:3] == [10.0, 10.25, 10.5]
    assert table["shop"].tolist()[:3] == ["Café", "Bäckerei", None]
    assert str(table["day"].dtype) == "datetime64[ns, UTC]"


def test_a_wrong_encoding_names_the_key_and_the_byte(make_params, tmp_path) -> None:
    path = _write(tmp_path / "shop.csv", _dates("%Y-%m-%d"), encoding="latin-1")
    with pytest.raises(SourceError, match=r"as utf-8 \(source.read.encoding\): byte b'\\xe9' .*set "
                                          r"source.read.encoding"):
        stages.run_collect(_params(make_params, path))


def test_skip_rows_skips_a_title_line(make_params, tmp_path) -> None:
    path = _write(tmp_path / "shop.csv", _dates("%Y-%m-%d"))
    path.write_text("Export of 2016-10-01\n" + path.read_text())
    params = _params(make_params, path, **{"source.read.skip_rows": 1})
    assert stages.run_collect(params)["rows"] == ROWS


def test_a_repeated_header_row_is_named_with_its_line(make_params, tmp_path) -> None:
    path = _write(tmp_path / "shop.csv", _dates("%Y-%m-%d"))
    lines = path.read_text().splitlines()
    path.write_text("\n".join([*lines[:20], lines[0], *lines[20:]]) + "\n")  # two exports concatenated
    with pytest.raises(SourceError, match=r"repeats its header row 1 time\(s\) inside the data \(line\(s\) 21: "
                                          r"\['day', 'shop', 'price', 'y'\]"):
        stages.run_collect(_params(make_params, path))


# --- date-only tables ---------------------------------------------------------------------------------------------

def test_a_date_only_time_column_is_drafted_so_and_the_service_takes_dates(make_params, tmp_path) -> None:
    """Dates without a time of day: the suite says so on the time column's type check, and the request schema then
    takes 2016-07-02 (midnight UTC) as the table held it; a table with times keeps asking for an offset."""
    import pydantic

    from pipelines.data.draft import draft_suite
    from pipelines.data.suite import suite_date_only
    from services.schemas import flight_model

    frame = pd.DataFrame({"day": pd.to_datetime(_dates("%Y-%m-%d"), utc=True), "price": range(ROWS)})
    suite = draft_suite(frame, "shop", time_column="day", period="week")
    assert suite_date_only(suite, "day") and not suite_date_only(suite, "price")
    with_times = frame.assign(day=frame["day"] + pd.Timedelta(hours=9))
    assert not suite_date_only(draft_suite(with_times, "shop", time_column="day", period="week"), "day")
    features = _params(make_params, tmp_path / "shop.csv").features
    dates = pydantic.TypeAdapter(flight_model(features, "day", date_only=True))
    row = {"shop": "Café", "price": 10.5}
    assert dates.validate_python({**row, "day": "2016-07-02"})["day"] == pd.Timestamp("2016-07-02", tz="UTC")
    assert dates.validate_python({**row, "day": "2016-07-02T10:00:00Z"})["day"].hour == 10
    with pytest.raises(pydantic.ValidationError, match="ISO 8601 date"):
        dates.validate_python({**row, "day": "02/07/2016"})
    with pytest.raises(pydantic.ValidationError, match="with a UTC offset"):
        pydantic.TypeAdapter(flight_model(features, "day")).validate_python({**row, "day": "2016-07-02"})


def test_a_table_without_time_of_day_gets_a_day_of_week_baseline_not_the_hour() -> None:
    """Every time a midnight: the hour-of-day rate would be the prior again (silently); the day-of-week rate replaces
    it, with a note. A table with times keeps the hour."""
    from pipelines.model.evaluate import baseline_note, baseline_predictions

    days = pd.date_range("2016-07-04", periods=140, freq="D", tz="UTC")
    train = pd.DataFrame({"day": days[:112], "label": (days[:112].dayofweek >= 5).astype("int8")})
    test = pd.DataFrame({"day": days[112:], "label": (days[112:].dayofweek >= 5).astype("int8")})
    baselines = baseline_predictions(train, test, "day")
    assert set(baselines) == {"prior", "day_of_week_rate"}
    assert baselines["day_of_week_rate"].tolist() == test["label"].astype(float).tolist()  # weekends learned
    assert "no time of day" in baseline_note(baselines)
    timed = train.assign(day=train["day"] + pd.to_timedelta(train.index % 24, unit="h"))
    assert set(baseline_predictions(timed, test, "day")) == {"prior", "hour_of_day_rate"}
    assert baseline_note(baseline_predictions(timed, test, "day")) is None

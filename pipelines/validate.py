"""validate: check the collected table against a reviewed Great Expectations suite before anything learns.

The suite is a JSON file under `expectations/`, reviewed like code. `validate_table` runs it with GX 1.x on
the in-memory frame (an ephemeral context: nothing is written outside `report_dir`), writes the full GX
result, a small summary and GX's own Data Docs HTML, and raises `DataValidationError` naming every failed
expectation. It is a gate: with `validate.fail_on_error: false` it only warns.

`draft_suite` writes a first suite for a user's new dataset from a reference table; a person reviews its
bounds before it is committed.

`great_expectations` takes seconds to import, so it is imported inside the functions that need it: the CLI
and the flows import this module for free.
"""

from __future__ import annotations

import json
import logging
import math
import os
import shutil
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from datetime import date, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

log = logging.getLogger(__name__)

RESULT_FILE = "result.json"
SUMMARY_FILE = "summary.json"
DATA_DOCS_DIR = "data_docs"
MAX_OFFENDING_VALUES = 5
# Numeric columns may be ints or floats: an integer column that gains one null becomes float64 in pandas.
NUMERIC_TYPES = ["int64", "int32", "float64", "float32"]
# Expectations GX 1.24 cannot run through a ValidationDefinition: their result holds a NumPy bool that the
# validation-results store fails to serialise ("Object of type bool is not JSON serializable"), which
# aborts the whole run. Rejected when the suite is read, with the alternative.
_UNSUPPORTED = {
    "expect_column_quantile_values_to_be_between": (
        "GX 1.24 crashes storing its result (a NumPy bool in `success`); bound a share of values with "
        "expect_column_values_to_be_between and `mostly` instead (see label_rate_expectations)"
    ),
}
_SITE_NAME = "flightops_validation"
_DEFAULT_SITE = "local_site"  # the ephemeral context's own site, which builds into a fresh temp dir


class DataValidationError(ValueError):
    """The table failed its suite; the message names every failed expectation and the HTML report."""


class SuiteError(ValueError):
    """The suite file cannot be used (missing, not JSON, or an expectation GX cannot build)."""


@dataclass(frozen=True)
class FailedExpectation:
    """One failed expectation, read from the GX result by its type and column."""

    expectation: str
    column: str | None
    kwargs: dict[str, Any]
    expected: str
    observed: str
    offending_values: list[Any] = field(default_factory=list)
    unexpected_count: int | None = None
    notes: str | None = None

    def describe(self) -> str:
        where = f" on column {self.column!r}" if self.column else ""
        line = f"{self.expectation}{where}: expected {self.expected}; {self.observed}"
        if self.offending_values:
            line += "; e.g. " + ", ".join(repr(value) for value in self.offending_values)
        if self.notes:
            line += f" (why: {self.notes})"
        return line


@dataclass(frozen=True)
class ValidationSummary:
    """What a caller (the DAG, the CLI, a flow) needs to know; the full GX result is in `result.json`."""

    success: bool
    suite: str
    rows: int
    evaluated: int
    failed: int
    failures: list[FailedExpectation]
    report: str
    result_path: str

    def to_dict(self) -> dict[str, Any]:
        return _jsonable(asdict(self))

    def message(self) -> str:
        """The error text: one line per failed expectation, then where the HTML report is."""
        head = (f"data validation failed: {self.failed} of {self.evaluated} expectations in suite "
                f"{self.suite!r} failed on {self.rows:,} rows")
        lines = [head, *(f"  - {failure.describe()}" for failure in self.failures), f"report: {self.report}"]
        return "\n".join(lines)


# --- the suite file -----------------------------------------------------------------------------------------

def read_suite(path: Path) -> dict[str, Any]:
    """The suite JSON as a dict, with an error naming the file when it is missing or malformed."""
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise SuiteError(f"expectation suite not found: {path} (validate.suite)") from None
    except json.JSONDecodeError as error:
        raise SuiteError(f"expectation suite {path} is not valid JSON: {error}") from None
    if not isinstance(data, dict) or not isinstance(data.get("expectations"), list):
        raise SuiteError(f"expectation suite {path} must be a JSON object with an 'expectations' list")
    for number, item in enumerate(data["expectations"], start=1):
        if not isinstance(item, dict) or "type" not in item:
            hint = " (GX 0.x suites used 'expectation_type': rename it to 'type')" if (
                isinstance(item, dict) and "expectation_type" in item) else ""
            raise SuiteError(f"expectation #{number} in {path} has no 'type'{hint}")
        if item["type"] in _UNSUPPORTED:
            why = _UNSUPPORTED[item["type"]]
            raise SuiteError(f"expectation #{number} in {path} ({item['type']}): {why}")
    data.setdefault("name", path.stem)
    return data


@dataclass(frozen=True)
class ColumnBounds:
    """A column's whole-table value range from the suite; `None` is an open side. Strict sides exclude the bound."""

    column: str
    min_value: float | None = None
    max_value: float | None = None
    strict_min: bool = False
    strict_max: bool = False


_BETWEEN = "expect_column_values_to_be_between"


def column_bounds(suite: Mapping[str, Any], columns: Iterable[str]) -> dict[str, ColumnBounds]:
    """Each column's hard range from the suite's `expect_column_values_to_be_between` expectations.

    The service refuses request values outside the range the training data was validated against (one source of
    truth for "what a plausible value is"). Only expectations every value must meet count: one with `mostly`
    below 1 (a share, e.g. a label rate) or a `row_condition` (a subset, e.g. one period) is not a bound on a
    single value. Several hard ranges for one column intersect. Found by type and column, never by position.
    """
    wanted = set(columns)
    found: dict[str, ColumnBounds] = {}
    for item in suite.get("expectations", []):
        kwargs = item.get("kwargs") or {}
        column = kwargs.get("column")
        if item.get("type") != _BETWEEN or column not in wanted:
            continue
        if kwargs.get("mostly", 1) < 1 or kwargs.get("row_condition"):
            continue
        lo, hi = kwargs.get("min_value"), kwargs.get("max_value")
        current = found.get(column, ColumnBounds(column))
        if lo is not None and (current.min_value is None or lo > current.min_value
                               or (lo == current.min_value and kwargs.get("strict_min"))):
            current = replace(current, min_value=float(lo), strict_min=bool(kwargs.get("strict_min")))
        if hi is not None and (current.max_value is None or hi < current.max_value
                               or (hi == current.max_value and kwargs.get("strict_max"))):
            current = replace(current, max_value=float(hi), strict_max=bool(kwargs.get("strict_max")))
        found[column] = current
    return found


def write_suite(suite: Mapping[str, Any], path: Path) -> Path:
    """Write a suite dict as reviewable JSON (indented, keys in the order drafted)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(_jsonable(suite), indent=2) + "\n")
    return path


def _build_suite(gx: Any, data: Mapping[str, Any], origin: Path) -> Any:
    # ExpectationSuite(expectations=[dict, ...]) logs and DROPS an expectation it cannot build: a typo would
    # silently weaken the gate. Each one is built here instead, and a bad one stops the run.
    from great_expectations.expectations.expectation_configuration import ExpectationConfiguration

    expectations = []
    for number, item in enumerate(data["expectations"], start=1):
        try:
            config = ExpectationConfiguration(type=item["type"], kwargs=dict(item.get("kwargs") or {}),
                                              meta=item.get("meta"), notes=item.get("notes"))
            expectations.append(config.to_domain_obj())
        except Exception as error:  # GX raises pydantic, KeyError or its own errors for a bad expectation
            raise SuiteError(f"expectation #{number} in {origin} ({item['type']}) is invalid: "
                             f"{' '.join(str(error).split())}") from None
    return gx.ExpectationSuite(name=str(data["name"]), expectations=expectations,
                               meta=dict(data.get("meta") or {}), notes=data.get("notes"))


# --- running GX ---------------------------------------------------------------------------------------------

def _import_gx() -> Any:
    # GX 1.24 ships no telemetry client; the variable is set for older or future versions that do.
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
    # At INFO, GX logs ~170 lines while importing (its docs decorators) and more per context; keep its
    # warnings unless the caller configured the "great_expectations" logger itself.
    gx_logger = logging.getLogger("great_expectations")
    if gx_logger.level == logging.NOTSET:
        gx_logger.setLevel(logging.WARNING)
    import great_expectations as gx

    return gx


def _quiet_context(gx: Any, docs_dir: Path) -> Any:
    from great_expectations.data_context.types.base import ProgressBarsConfig

    context = gx.get_context(mode="ephemeral")
    # tqdm "Calculating Metrics" bars on stderr for every run, unless switched off in the context.
    context.variables.progress_bars = ProgressBarsConfig(globally=False, metric_calculations=False)
    if _DEFAULT_SITE in context.list_data_docs_sites():
        context.delete_data_docs_site(_DEFAULT_SITE)
    context.add_data_docs_site(_SITE_NAME, {
        "class_name": "SiteBuilder",
        "show_how_to_buttons": False,
        "store_backend": {"class_name": "TupleFilesystemStoreBackend", "base_directory": str(docs_dir)},
        "site_index_builder": {"class_name": "DefaultSiteIndexBuilder"},
    })
    return context


def _run_suite(frame: pd.DataFrame, suite_data: Mapping[str, Any], suite_path: Path, docs_dir: Path) -> Any:
    gx = _import_gx()
    context = _quiet_context(gx, docs_dir)
    suite = context.suites.add(_build_suite(gx, suite_data, suite_path))
    batch = (context.data_sources.add_pandas("table").add_dataframe_asset("frame")
             .add_batch_definition_whole_dataframe("whole"))
    definition = context.validation_definitions.add(
        gx.ValidationDefinition(name=f"{suite.name}_on_table", data=batch, suite=suite))
    result = definition.run(batch_parameters={"dataframe": frame}, result_format="SUMMARY")
    if docs_dir.exists():
        shutil.rmtree(docs_dir)  # one run per site: no stale pages from earlier runs
    context.build_data_docs(site_names=[_SITE_NAME])
    return result


def validate_table(frame: pd.DataFrame, suite_path: Path, report_dir: Path,
                   fail_on_error: bool = True) -> ValidationSummary:
    """Validate `frame` against the suite at `suite_path`; write `result.json`, `summary.json` and Data Docs.

    Raises `DataValidationError` when an expectation fails and `fail_on_error` (the message lists each
    failure: expectation, column, what was expected, what was observed, a few offending values, and the HTML
    report); otherwise logs a warning and returns the summary. Raises `SuiteError` for a missing or malformed
    suite. The frame is not changed.
    """
    suite_path, report_dir = Path(suite_path), Path(report_dir)
    suite_data = read_suite(suite_path)
    report_dir.mkdir(parents=True, exist_ok=True)
    docs_dir = (report_dir / DATA_DOCS_DIR).resolve()

    result = _run_suite(frame, suite_data, suite_path, docs_dir)

    result_path = report_dir / RESULT_FILE
    result_path.write_text(json.dumps(_jsonable(result.to_json_dict()), indent=2, allow_nan=False) + "\n")
    # GX returns results in no fixed order: table-level failures first, then by column, for a stable message.
    failures = sorted((_read_failure(item, frame) for item in result.results if not item.success),
                      key=lambda f: (f.column is not None, f.column or "", f.expectation))
    summary = ValidationSummary(
        success=bool(result.success) and not failures,
        suite=str(suite_data["name"]),
        rows=len(frame),
        evaluated=len(result.results),
        failed=len(failures),
        failures=failures,
        # The index (it links to this run's page) keeps summary.json, a DVC metric, stable across identical runs.
        report=str(report_dir / DATA_DOCS_DIR / "index.html"),
        result_path=str(result_path),
    )
    (report_dir / SUMMARY_FILE).write_text(json.dumps(summary.to_dict(), indent=2, allow_nan=False) + "\n")

    if summary.success:
        log.info("validated %d rows against suite %r: all %d expectations passed (report: %s)",
                 summary.rows, summary.suite, summary.evaluated, summary.report)
        return summary
    if fail_on_error:
        raise DataValidationError(summary.message())
    log.warning("%s\n(validate.fail_on_error is false: continuing)", summary.message())
    return summary


# --- reading a GX result ------------------------------------------------------------------------------------

def _read_failure(item: Any, frame: pd.DataFrame) -> FailedExpectation:
    config = item.expectation_config
    kind = str(config.type)
    kwargs = {key: value for key, value in dict(config.kwargs).items() if key != "batch_id"}
    column = kwargs.get("column")
    result = dict(item.result or {})
    meta = dict(config.meta or {})
    notes = meta.get("notes") or (config.notes if isinstance(config.notes, str) else None)
    offending: list[Any] = []
    unexpected_count = result.get("unexpected_count")

    if column is not None and column not in frame.columns:
        observed = f"column {column!r} is not in the table"
    elif _raised(item):
        dtype = f" (column {column!r} has dtype {frame[column].dtype})" if column is not None else ""
        observed = f"could not be evaluated: {_exception_message(item)}{dtype}"
    elif kind in ("expect_column_values_to_be_in_type_list", "expect_column_values_to_be_of_type",
                  "expect_column_type_to_be") and column is not None:
        observed = f"observed dtype {frame[column].dtype}"
        offending = _type_offenders(frame[column], kwargs)
    elif kind == "expect_table_columns_to_match_set":
        mismatched = (result.get("details") or {}).get("mismatched") or {}
        parts = [f"missing columns {sorted(mismatched['missing'])}"] if mismatched.get("missing") else []
        if kwargs.get("exact_match", True) and mismatched.get("unexpected"):
            parts.append(f"unexpected columns {sorted(mismatched['unexpected'])}")
        observed = "; ".join(parts) or f"observed columns {result.get('observed_value')}"
    elif unexpected_count is not None:
        observed = _unexpected_text(result, kwargs)
        offending = _offending_values(result)
    else:
        observed = f"observed {_short(result.get('observed_value'))}"
    return FailedExpectation(expectation=kind, column=column, kwargs=_jsonable(kwargs),
                             expected=_expected_text(kind, kwargs), observed=observed,
                             offending_values=_jsonable(offending),
                             unexpected_count=int(unexpected_count) if unexpected_count is not None else None,
                             notes=notes)


def _raised(item: Any) -> bool:
    info = item.exception_info or {}
    if "raised_exception" in info:
        return bool(info["raised_exception"])
    return any(isinstance(value, dict) and value.get("raised_exception") for value in info.values())


def _exception_message(item: Any) -> str:
    info = item.exception_info or {}
    messages = [info.get("exception_message")] if "exception_message" in info else [
        value.get("exception_message") for value in info.values() if isinstance(value, dict)]
    return "; ".join(sorted({str(message) for message in messages if message})) or "unknown error"


def _unexpected_text(result: Mapping[str, Any], kwargs: Mapping[str, Any]) -> str:
    count = int(result.get("unexpected_count") or 0)
    total = int(result.get("element_count") or 0)
    missing = int(result.get("missing_count") or 0)
    percent = result.get("unexpected_percent_nonmissing", result.get("unexpected_percent"))
    text = f"{count:,} of {total - missing:,} non-null values ({float(percent or 0):.2f}%) do not"
    if kwargs.get("mostly") is not None:
        met, needed = 100 - float(percent or 0), float(kwargs["mostly"])
        text += f", so {met:.2f}% meet it where at least {needed:.2%} must"
    return text


def _offending_values(result: Mapping[str, Any]) -> list[Any]:
    counts = result.get("partial_unexpected_counts")
    values = [entry["value"] for entry in counts] if counts else result.get("partial_unexpected_list") or []
    return _distinct(values)[:MAX_OFFENDING_VALUES]


def _type_offenders(series: pd.Series, kwargs: Mapping[str, Any]) -> list[Any]:
    values = series.dropna()
    wanted = kwargs.get("type_list") or [kwargs.get("type_")]
    if set(wanted) & set(NUMERIC_TYPES):  # a numeric column holding text: show the text, not the numbers
        values = values[pd.to_numeric(values, errors="coerce").isna()]
    elif "str" in wanted:
        values = values[[not isinstance(value, str) for value in values]]
    return _distinct(values.head(1000).tolist())[:MAX_OFFENDING_VALUES]


def _distinct(values: Iterable[Any]) -> list[Any]:
    seen: list[Any] = []
    for value in values:
        if not any(value is other or value == other for other in seen):
            seen.append(value)
    return seen


def _bounds(kwargs: Mapping[str, Any], low: str = "min_value", high: str = "max_value") -> str:
    lo, hi = kwargs.get(low), kwargs.get(high)
    left = "(" if kwargs.get("strict_min") or lo is None else "["
    right = ")" if kwargs.get("strict_max") or hi is None else "]"
    return f"{left}{'-inf' if lo is None else _short(lo)}, {'inf' if hi is None else _short(hi)}{right}"


def _expected_text(kind: str, kwargs: Mapping[str, Any]) -> str:
    share = f" for at least {float(kwargs['mostly']):.0%} of non-null values" if kwargs.get("mostly") else ""
    if kind == "expect_column_values_to_be_between":
        return f"values in {_bounds(kwargs)}{share}"
    if kind == "expect_column_values_to_be_in_set":
        return f"values in {_short(sorted(map(str, kwargs.get('value_set') or [])))}{share}"
    if kind == "expect_column_values_to_not_be_null":
        return f"at least {float(kwargs['mostly']):.0%} non-null" if kwargs.get("mostly") else "no nulls"
    if kind == "expect_column_values_to_be_in_type_list":
        return f"dtype in {kwargs.get('type_list')}"
    if kind in ("expect_column_values_to_be_of_type", "expect_column_type_to_be"):
        return f"type {kwargs.get('type_')!r}"
    if kind == "expect_table_columns_to_match_set":
        how = "exactly" if kwargs.get("exact_match", True) else "at least"
        return f"{how} the {len(kwargs.get('column_set') or [])} columns of the suite"
    if kind == "expect_table_row_count_to_be_between":
        return f"row count in {_bounds(kwargs)}"
    if kind.startswith("expect_column_") and kind.endswith("_to_be_between"):
        statistic = kind.removeprefix("expect_column_").removesuffix("_to_be_between")
        return f"{statistic} in {_bounds(kwargs)}"
    if kind == "expect_column_values_to_match_regex":
        return f"values matching {kwargs.get('regex')!r}{share}"
    rest = {key: value for key, value in kwargs.items() if key != "column"}
    return _short(rest)


def _short(value: Any, limit: int = 160) -> str:
    if isinstance(value, float):
        return f"{value:g}"
    text = repr(_jsonable(value))
    return text if len(text) <= limit else text[:limit - 5] + " ...]"


def _jsonable(value: Any) -> Any:
    """Plain JSON types: NumPy scalars unwrapped, NaN/inf as null, dates as ISO strings."""
    if isinstance(value, Mapping):
        return {str(key): _jsonable(item) for key, item in value.items()}
    if isinstance(value, list | tuple | set | frozenset | np.ndarray | pd.Index):
        return [_jsonable(item) for item in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, bool | int | str) or value is None:
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, pd.Timestamp | datetime | date):
        return None if pd.isna(value) else value.isoformat()
    if value is pd.NaT or value is pd.NA:
        return None
    if isinstance(value, Path):
        return str(value)
    if hasattr(value, "to_json_dict"):
        return _jsonable(value.to_json_dict())
    return str(value)


# --- drafting a suite for a new dataset ---------------------------------------------------------------------

def _expectation(kind: str, notes: str | None = None, **kwargs: Any) -> dict[str, Any]:
    kept = {key: value for key, value in kwargs.items() if value is not None}
    item: dict[str, Any] = {"type": kind, "kwargs": kept}
    if notes:
        item["meta"] = {"notes": notes}
    return item


def label_rate_expectations(column: str, min_rate: float, max_rate: float, *,
                            positive_above: float | None = None) -> list[dict[str, Any]]:
    """Expectations bounding the share of positive labels to [min_rate, max_rate].

    A 0/1 (or boolean) label column: its mean is the rate, so `expect_column_mean_to_be_between`.
    A derived label (`label = column > positive_above`, e.g. arr_delay > 15): GX has no "share of values
    above t" expectation, so the share is bounded exactly with two `expect_column_values_to_be_between` and
    `mostly` (GX counts `mostly` over non-null values, as training drops rows without a target): at least
    `min_rate` of values are > t, and at least `1 - max_rate` are <= t.
    """
    if not 0 <= min_rate <= max_rate <= 1:
        raise ValueError(f"label rate bounds must satisfy 0 <= min_rate <= max_rate <= 1, "
                         f"got {min_rate}, {max_rate}")
    if positive_above is None:
        notes = f"label rate (mean of the 0/1 column {column!r}) in [{min_rate:g}, {max_rate:g}]"
        return [_expectation("expect_column_mean_to_be_between", notes,
                             column=column, min_value=min_rate, max_value=max_rate)]
    items = []
    if min_rate > 0:
        items.append(_expectation(
            "expect_column_values_to_be_between",
            f"label rate lower bound: at least {min_rate:.0%} of non-null {column} are > {positive_above:g} "
            f"(the positive label)",
            column=column, min_value=positive_above, max_value=None, strict_min=True, mostly=min_rate))
    if max_rate < 1:
        items.append(_expectation(
            "expect_column_values_to_be_between",
            f"label rate upper bound: at least {1 - max_rate:.0%} of non-null {column} are "
            f"<= {positive_above:g} (so at most {max_rate:.0%} are positive)",
            column=column, min_value=None, max_value=positive_above, mostly=round(1 - max_rate, 6)))
    return items


def _column_type_expectation(name: str, series: pd.Series) -> dict[str, Any] | None:
    dtype = series.dtype
    if pd.api.types.is_bool_dtype(dtype):
        return _expectation("expect_column_type_to_be", column=name, type_=str(dtype))
    if pd.api.types.is_numeric_dtype(dtype):
        return _expectation("expect_column_values_to_be_in_type_list", column=name,
                            type_list=list(NUMERIC_TYPES))
    if isinstance(dtype, pd.CategoricalDtype) or pd.api.types.is_datetime64_any_dtype(dtype):
        return _expectation("expect_column_type_to_be", column=name, type_=str(dtype))
    values = series.dropna()
    if len(values) and all(isinstance(value, str) for value in values):
        return _expectation("expect_column_values_to_be_of_type", column=name, type_="str")
    return None  # mixed object columns: nothing honest to say about their type


def _widened(low: float, high: float, margin: float, integer: bool) -> tuple[float, float]:
    span = high - low or abs(high) or 1.0
    lo, hi = low - margin * span, high + margin * span
    if low >= 0:
        lo = max(lo, 0.0)  # a non-negative column stays non-negative
    if integer:  # whole numbers, never inside the observed range: [0, 1] stays [0, 1], not [0, 2]
        return float(min(low, round(lo))), float(max(high, round(hi)))
    return float(f"{lo:.6g}"), float(f"{hi:.6g}")


def draft_suite(frame: pd.DataFrame, suite_name: str, *, categorical_max_unique: int = 50,
                category_tolerance: float = 0.01, range_margin: float = 0.1, null_tolerance: float = 0.05,
                row_count_factor: float = 2.0, exact_columns: bool = False, label_column: str | None = None,
                positive_above: float | None = None, label_rate_factor: float = 2.0) -> dict[str, Any]:
    """Draft a suite (the JSON dict) from a reference table, for a person to review before committing it.

    It expects: the reference's columns (`exact_columns`: no others either); per column a type (numeric
    columns any int/float dtype, strings `str`, datetimes and categoricals their exact dtype); no nulls where
    the reference had none, else a non-null share at most `null_tolerance` below the reference's; numeric
    min/max widened by `range_margin` of the observed span (never below 0 for a non-negative column); for
    string columns with at most `categorical_max_unique` values, those values for `1 - category_tolerance`
    of rows; a row count within `row_count_factor` of the reference's; and, when `label_column` is given, a
    label rate within `label_rate_factor` of the reference's (see `label_rate_expectations`;
    `positive_above` for a derived label). Datetime columns get no range: new data is later by nature.
    """
    if frame.empty:
        raise ValueError("cannot draft a suite from an empty table")
    rows = len(frame)
    expectations = [
        _expectation("expect_table_columns_to_match_set", column_set=[str(name) for name in frame.columns],
                     exact_match=exact_columns),
        _expectation("expect_table_row_count_to_be_between", f"reference had {rows:,} rows",
                     min_value=int(rows // row_count_factor),
                     max_value=int(math.ceil(rows * row_count_factor))),
    ]
    for name in frame.columns:
        series = frame[name]
        type_expectation = _column_type_expectation(str(name), series)
        if type_expectation:
            expectations.append(type_expectation)
        non_null = float(series.notna().mean())
        if non_null == 1.0:
            expectations.append(_expectation("expect_column_values_to_not_be_null", column=str(name)))
        elif non_null - null_tolerance > 0:
            expectations.append(_expectation(
                "expect_column_values_to_not_be_null", f"reference was {non_null:.1%} non-null",
                column=str(name), mostly=math.floor((non_null - null_tolerance) * 100) / 100))
        values = series.dropna()
        if values.empty:
            continue
        dtype = series.dtype
        if pd.api.types.is_numeric_dtype(dtype) and not pd.api.types.is_bool_dtype(dtype):
            low, high = _widened(float(values.min()), float(values.max()), range_margin,
                                 pd.api.types.is_integer_dtype(dtype))
            expectations.append(_expectation(
                "expect_column_values_to_be_between",
                f"reference range [{_short(float(values.min()))}, {_short(float(values.max()))}] "
                f"widened by {range_margin:.0%}", column=str(name), min_value=low, max_value=high))
        elif (isinstance(dtype, pd.CategoricalDtype) or type_expectation
              and type_expectation["kwargs"].get("type_") == "str"):
            categories = sorted({str(value) for value in values.unique()})
            if len(categories) <= categorical_max_unique:
                expectations.append(_expectation(
                    "expect_column_values_to_be_in_set",
                    f"the {len(categories)} values seen in the reference",
                    column=str(name), value_set=categories, mostly=round(1 - category_tolerance, 6)))
    if label_column is not None:
        expectations.extend(_drafted_label_rate(frame, label_column, positive_above, label_rate_factor))
    return {"name": suite_name, "expectations": expectations,
            "meta": {"notes": f"Drafted by pipelines.validate.draft_suite from a reference table of "
                              f"{rows:,} rows. Review every bound before committing."}}


def _drafted_label_rate(frame: pd.DataFrame, column: str, positive_above: float | None,
                        factor: float) -> list[dict[str, Any]]:
    if column not in frame.columns:
        raise ValueError(f"label column {column!r} is not in the table")
    values = frame[column].dropna()
    if values.empty:
        raise ValueError(f"label column {column!r} has no values")
    if positive_above is None:
        if not set(pd.unique(values.astype(float))) <= {0.0, 1.0}:
            raise ValueError(f"label column {column!r} is not 0/1; pass positive_above for a derived label")
        rate = float(values.astype(float).mean())
    else:
        rate = float((values > positive_above).mean())
    # The positive share may shrink, and the negative share may shrink, by up to `factor`.
    low, high = rate / factor, 1 - (1 - rate) / factor
    return label_rate_expectations(column, round(low, 4), round(high, 4), positive_above=positive_above)


__all__: Sequence[str] = (
    "DataValidationError", "FailedExpectation", "SuiteError", "ValidationSummary", "draft_suite",
    "label_rate_expectations", "read_suite", "validate_table", "write_suite",
)

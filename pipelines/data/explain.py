"""Explaining a failed validation: each failed GX expectation as one line a person can act on.

Reads GX results by expectation type and column (never by position) and says what was expected, what was observed
and a few offending values, and for a per-period expectation, which period. Pure: GX result objects in, plain
dataclasses and text out; nothing here imports GX or writes a file.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np
import pandas as pd

from pipelines.data.collect import reading_hint
from pipelines.data.suite import INFINITE, NUMERIC_TYPES, FailedExpectation
from pipelines.io import to_jsonable

MAX_OFFENDING_VALUES = 5
# What a failure that no GX expectation reports is called: cells that collect could not parse as their type.
PARSE_CHECK = "collect_cells_parse_as_column_type"
# The per-period check that a column is not stuck at one value (drafted with min_value 2).
STUCK_CHECK = "expect_column_unique_value_count_to_be_between"


def parse_failures(parse_errors: Mapping[str, Mapping[str, Any]]) -> list[FailedExpectation]:
    """Cells collect could not parse as their column's type (nulled there, counted here): each column a failure."""
    return [FailedExpectation(
        expectation=PARSE_CHECK, column=column, kwargs={"column": column, "type": str(info.get("type"))},
        expected=f"every cell parses as {info.get('type')}",
        observed=f"{int(info['count']):,} cells did not (read as null){reading_hint(info)}",
        offending_values=list(info.get("examples") or [])[:MAX_OFFENDING_VALUES],
        unexpected_count=int(info["count"]),
    ) for column, info in sorted(parse_errors.items())]


def explain_failure(item: Any, frame: pd.DataFrame, period: str | None = None) -> FailedExpectation:
    """One failed GX expectation result as a `FailedExpectation`; `frame` is the batch it ran on."""
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
    elif raised(item):
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
    elif kind == STUCK_CHECK and column is not None:
        offending = frame[column].dropna().unique()[:MAX_OFFENDING_VALUES].tolist()  # distinct already
        count = result.get("observed_value")
        observed = f"observed {count} distinct value{'' if count == 1 else 's'}" + (
            " (no non-null value in the batch)" if count == 0 else "")
    elif unexpected_count is not None:
        observed = _unexpected_text(result, kwargs)
        offending = _offending_values(result)
    else:
        observed = f"observed {short(result.get('observed_value'))}"
    return FailedExpectation(expectation=kind, column=column, kwargs=to_jsonable(kwargs),
                             expected=expected_text(kind, kwargs), observed=observed,
                             offending_values=to_jsonable([_infinite_as_text(value) for value in offending]),
                             unexpected_count=int(unexpected_count) if unexpected_count is not None else None,
                             notes=notes, period=period)


def raised(item: Any) -> bool:
    """Whether GX caught an exception evaluating the expectation: its result then holds no counts to read."""
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


def _infinite_as_text(value: Any) -> Any:
    if isinstance(value, float | np.floating) and math.isinf(value):
        return INFINITE[0] if value > 0 else INFINITE[1]
    return value


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
    return f"{left}{'-inf' if lo is None else short(lo)}, {'inf' if hi is None else short(hi)}{right}"


def expected_text(kind: str, kwargs: Mapping[str, Any]) -> str:
    share = f" for at least {float(kwargs['mostly']):.0%} of non-null values" if kwargs.get("mostly") else ""
    if kind == "expect_column_values_to_be_between":
        return f"values in {_bounds(kwargs)}{share}"
    if kind == "expect_column_values_to_be_in_set":
        return f"values in {short(sorted(map(str, kwargs.get('value_set') or [])))}{share}"
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
    if kind == STUCK_CHECK and kwargs.get("max_value") is None:
        return f"at least {short(kwargs.get('min_value'))} distinct values (a column stuck at one value fails)"
    if kind.startswith("expect_column_") and kind.endswith("_to_be_between"):
        statistic = kind.removeprefix("expect_column_").removesuffix("_to_be_between")
        return f"{statistic} in {_bounds(kwargs)}"
    if kind == "expect_compound_columns_to_be_unique":
        columns = list(kwargs.get("column_list") or [])
        if kwargs.get("mostly") is not None and float(kwargs["mostly"]) < 1:
            return (f"at most {1 - float(kwargs['mostly']):.2%} of rows repeating another row on its "
                    f"{len(columns)} columns (exact duplicates)")
        return f"each ({', '.join(columns)}) unique (the table's key)"
    if kind == "expect_column_values_to_be_unique":
        return f"unique values{share}"
    if kind == "expect_column_values_to_match_regex":
        return f"values matching {kwargs.get('regex')!r}{share}"
    rest = {key: value for key, value in kwargs.items() if key != "column"}
    return short(rest)


def short(value: Any, limit: int = 160) -> str:
    if isinstance(value, float):
        return f"{value:g}"
    text = repr(to_jsonable(value))
    return text if len(text) <= limit else text[:limit - 5] + " ...]"

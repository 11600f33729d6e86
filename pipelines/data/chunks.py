"""Whole-table checks on a table too big for one GX batch: run them on chunks of rows, add the counts up exactly.

GX's pandas engine copies the batch for each column check it filters (every column of the frame, not only the
checked one), and its duplicate-row check copies the checked columns and their codes: on the flights ~0.8 KB per
row at the peak, more than the table itself. Run on chunks of at most `validate.chunk_rows` rows, the peak is one
chunk's worth, and the whole-table verdicts stay exact because each check kept here adds up:

- row-wise checks (each row judged alone: nulls, ranges, sets, patterns, value types): the unexpected, missing and
  element counts sum, and `mostly` is judged on the sums, as GX judges it on one batch;
- the row count sums and is judged against the bounds;
- uniqueness of a key that holds the time column: chunks are cut between distinct timestamps (time-sorted, rows
  without a time in the first chunk), so equal keys always fall in one chunk;
- checks of the table's shape (its columns, a column's dtype) see the same columns and dtypes in every chunk.

Anything else (a mean, a quantile, the set of distinct values, a key without the time column) runs on the whole
table in one batch, as before. A table within one chunk is validated in one batch, exactly as without chunking.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from pipelines.data.explain import raised
from pipelines.features import time_order

# Expectations whose verdict on a table follows from their counts on disjoint parts of it.
ROW_WISE = frozenset({
    "expect_column_values_to_not_be_null", "expect_column_values_to_be_null",
    "expect_column_values_to_be_between", "expect_column_values_to_be_in_set",
    "expect_column_values_to_not_be_in_set", "expect_column_values_to_match_regex",
    "expect_column_values_to_not_match_regex", "expect_column_values_to_match_regex_list",
    "expect_column_values_to_not_match_regex_list", "expect_column_values_to_match_like_pattern",
    "expect_column_values_to_not_match_like_pattern", "expect_column_values_to_be_of_type",
    "expect_column_values_to_be_in_type_list", "expect_column_values_to_match_strftime_format",
    "expect_column_values_to_be_dateutil_parseable", "expect_column_values_to_be_json_parseable",
    "expect_column_value_lengths_to_be_between", "expect_column_value_lengths_to_equal",
    "expect_column_pair_values_to_be_equal", "expect_column_pair_values_a_to_be_greater_than_b",
    "expect_column_pair_values_to_be_in_set", "expect_multicolumn_sum_to_equal",
    "expect_select_column_values_to_be_unique_within_record",
})
SHAPE = frozenset({
    "expect_table_columns_to_match_set", "expect_table_columns_to_match_ordered_list", "expect_column_to_exist",
    "expect_table_column_count_to_equal", "expect_table_column_count_to_be_between", "expect_column_type_to_be",
})
ROW_COUNT = frozenset({"expect_table_row_count_to_be_between", "expect_table_row_count_to_equal"})
KEYED = frozenset({"expect_compound_columns_to_be_unique", "expect_column_values_to_be_unique"})
MAX_PARTIAL = 20  # GX's partial_unexpected_list length


def chunkable(item: Mapping[str, Any], time_column: str) -> bool:
    """Whether a suite item's whole-table verdict can be added up from chunks cut between timestamps."""
    kind = item.get("type")
    if kind in ROW_WISE or kind in SHAPE or kind in ROW_COUNT:
        return True
    if kind in KEYED:
        kwargs = item.get("kwargs") or {}
        return time_column in (kwargs.get("column_list") or [kwargs.get("column")])
    return False


def time_chunks(frame: pd.DataFrame, time_column: str, chunk_rows: int) -> Iterator[pd.DataFrame]:
    """The frame in time order, cut into parts of about `chunk_rows` rows, never between equal timestamps.

    A time-sorted frame (what collect writes) is cut into row slices (views, no copy); otherwise each part is taken
    by positions, in the frame's own row order. Rows without a time go to the first part. One timestamp with more
    rows than `chunk_rows` makes a bigger part.
    """
    ticks, positions, missing = time_order(frame[time_column])
    bounds, start, total = [], 0, len(ticks)
    while start < total:
        stop = min(start + chunk_rows, total)
        if stop < total:
            stop = int(np.searchsorted(ticks, ticks[stop], side="left"))
            if stop <= start:  # one timestamp holds more than chunk_rows rows: keep them together
                stop = int(np.searchsorted(ticks, ticks[start], side="right"))
        bounds.append((start, stop))
        start = stop
    for number, (start, stop) in enumerate(bounds or [(0, 0)]):
        if positions is None:
            yield frame.iloc[start:stop]
        else:
            part = positions[start:stop]
            if number == 0:
                part = np.concatenate([np.flatnonzero(missing), part])
            yield frame.take(np.sort(part))


def merge_suite_results(parts: Sequence[Any], suite_name: str, extra: Sequence[Any] = ()) -> Any:
    """One GX suite result for the whole table from the same suite's results on its chunks (and `extra` results of
    checks run on the whole table)."""
    from great_expectations.core.expectation_validation_result import ExpectationSuiteValidationResult
    from great_expectations.validator.validator import calc_validation_statistics

    by_expectation: dict[Any, list[Any]] = {}
    for part in parts:
        for number, item in enumerate(part.results):
            key = item.expectation_config.id or (item.expectation_config.type, number)
            by_expectation.setdefault(key, []).append(item)
    results = [*(merge_results(items) for items in by_expectation.values()), *extra]
    statistics = calc_validation_statistics(results)
    return ExpectationSuiteValidationResult(
        success=statistics.success, results=results, suite_name=suite_name,
        statistics={"evaluated_expectations": statistics.evaluated_expectations,
                    "successful_expectations": statistics.successful_expectations,
                    "unsuccessful_expectations": statistics.unsuccessful_expectations,
                    "success_percent": statistics.success_percent},
        meta={**dict(parts[-1].meta), "chunks": len(parts)}, batch_id=parts[-1].batch_id)


def merge_results(parts: Sequence[Any]) -> Any:
    """One expectation's result on the whole table from its results on disjoint chunks of it."""
    from great_expectations.core.expectation_validation_result import ExpectationValidationResult

    first = parts[0]
    failed = next((item for item in parts if not item.success), None)
    if any(raised(item) for item in parts) or len(parts) == 1:
        return failed or first
    config = first.expectation_config
    kwargs = dict(config.kwargs)
    results = [dict(item.result or {}) for item in parts]
    if config.type in ROW_COUNT:
        observed = sum(int(result.get("observed_value") or 0) for result in results)
        merged, success = {**results[0], "observed_value": observed}, _row_count_success(observed, kwargs)
    elif all("unexpected_count" in result and "element_count" in result for result in results):
        merged = _merge_counts(results)
        considered = merged["element_count"] - merged.get("missing_count", 0)
        mostly = float(kwargs.get("mostly", 1.0))
        success = considered == 0 or (considered - merged["unexpected_count"]) / considered >= mostly
    else:  # the table's shape, the same in every chunk
        return failed or first
    return ExpectationValidationResult(success=bool(success), expectation_config=config, result=merged,
                                       meta=first.meta, exception_info=first.exception_info)


def _merge_counts(results: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    element = sum(int(result["element_count"]) for result in results)
    unexpected = sum(int(result["unexpected_count"]) for result in results)
    merged: dict[str, Any] = {"element_count": element, "unexpected_count": unexpected}
    has_missing = all("missing_count" in result for result in results)
    missing = sum(int(result["missing_count"]) for result in results) if has_missing else 0
    considered = element - missing
    merged["unexpected_percent"] = (unexpected / considered * 100) if considered else None
    if has_missing:
        merged["missing_count"] = missing
        merged["missing_percent"] = missing / element * 100 if element else None
        merged["unexpected_percent_total"] = unexpected / element * 100 if element else None
        merged["unexpected_percent_nonmissing"] = merged["unexpected_percent"]
    # What GX's BASIC format (validate.RESULT_FORMAT) holds besides the counts: the first unexpected values.
    merged["partial_unexpected_list"] = [value for result in results
                                         for value in result.get("partial_unexpected_list") or []][:MAX_PARTIAL]
    return merged


def _row_count_success(observed: int, kwargs: Mapping[str, Any]) -> bool:
    if "value" in kwargs:
        return observed == kwargs["value"]
    lo, hi = kwargs.get("min_value"), kwargs.get("max_value")
    above = lo is None or (observed > lo if kwargs.get("strict_min") else observed >= lo)
    below = hi is None or (observed < hi if kwargs.get("strict_max") else observed <= hi)
    return above and below

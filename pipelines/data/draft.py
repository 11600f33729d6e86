"""Drafting a suite: a first Great Expectations suite for a dataset, from a reference table, for a person to review.

Pure: a frame in, the suite as a dict out (`pipelines.data.validate.write_suite` writes it). It drafts whole-table
expectations (columns, types, nulls, ranges, categories, row count, label rate, the key, exact duplicates) and a
`per_period` section that `pipelines.data.validate` runs on each period of the window (row count per day, label rate,
non-null shares, categories and columns stuck at one value per period), so a constant label or a missing week in one
period is caught even when the whole table looks fine.
"""

from __future__ import annotations

import math
from typing import Any

import pandas as pd

from pipelines.data.explain import STUCK_CHECK, short
from pipelines.data.suite import DATE_ONLY, HARD, NUMERIC_TYPES, OBSERVED
from pipelines.data.validate import (
    DUPLICATES_PARAMETER,
    PERIOD_MAX_ROWS,
    PERIOD_MIN_ROWS,
    split_periods,
)
from pipelines.io import to_jsonable


def _expectation(kind: str, notes: str | None = None, *, constraint: str = OBSERVED, **kwargs: Any) -> dict[str, Any]:
    """One drafted item; `constraint` says whether it is a hard constraint (a type, a key, a physically impossible
    value: the service refuses a request that breaks it) or what the reference happened to show (observed: judged on
    training tables, never a request limit). A reviewer makes a category set closed by setting it to "hard"."""
    kept = {key: value for key, value in kwargs.items() if value is not None}
    item: dict[str, Any] = {"type": kind, "kwargs": kept, "meta": {"constraint": constraint}}
    if notes:
        item["meta"]["notes"] = notes
    return item



def _category_set(name: Any, values: pd.Series, max_unique: int, tolerance: float, note_prefix: str) -> list[dict]:
    """The values seen in the reference as an allowed set (none past `max_unique`: an id, not a category), with
    `tolerance` for values the reference did not hold. Drafted the same way for the whole table and per period."""
    categories = sorted({str(value) for value in values.unique()})
    if len(categories) > max_unique:
        return []
    return [_expectation("expect_column_values_to_be_in_set",
                         f"{note_prefix}the {len(categories)} values seen in the reference",
                         column=str(name), value_set=categories, mostly=round(1 - tolerance, 6))]

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
        return _expectation("expect_column_type_to_be", column=name, type_=str(dtype), constraint=HARD)
    if pd.api.types.is_numeric_dtype(dtype):
        return _expectation("expect_column_values_to_be_in_type_list", column=name,
                            type_list=list(NUMERIC_TYPES), constraint=HARD)
    if isinstance(dtype, pd.CategoricalDtype) or pd.api.types.is_datetime64_any_dtype(dtype):
        return _expectation("expect_column_type_to_be", column=name, type_=str(dtype), constraint=HARD)
    values = series.dropna()
    if len(values) and all(isinstance(value, str) for value in values):
        return _expectation("expect_column_values_to_be_of_type", column=name, type_="str", constraint=HARD)
    return None  # mixed object columns: nothing honest to say about their type


def draft_suite(frame: pd.DataFrame, suite_name: str, *, categorical_max_unique: int = 50,
                category_tolerance: float = 0.01, null_tolerance: float = 0.05,
                row_count_factor: float = 2.0, exact_columns: bool = False, label_column: str | None = None,
                positive_above: float | None = None, label_rate_factor: float = 2.0,
                key_columns: list[str] | None = None, time_column: str | None = None, period: str = "month",
                rows_per_day_margin: float = 0.1, positive_class: str | None = None) -> dict[str, Any]:
    """Draft a suite (the JSON dict) from a reference table, for a person to review before committing it.

    It expects: the reference's columns (`exact_columns`: no others either); per column a type (numeric
    columns any int/float dtype, strings `str`, datetimes and categoricals their exact dtype); no nulls where
    the reference had none, else a non-null share at most `null_tolerance` below the reference's; a numeric column
    never negative in the reference stays non-negative (a hard constraint: a count, a distance; review it). The
    observed range of a numeric column is no constraint here: it is learned behaviour (`draft_behaviour`, the
    calibration beside the suite), judged per period with a tolerance, and never a request limit. For
    string columns with at most `categorical_max_unique` values, those values for `1 - category_tolerance`
    of rows; a row count within `row_count_factor` of the reference's; and, when `label_column` is given, a
    label rate within `label_rate_factor` of the reference's (see `label_rate_expectations`;
    `positive_above` or `positive_class` for a derived label, as in source.*). Datetime columns get no range:
    new data is later by nature. `key_columns` must be unique (checked on the reference); exact duplicate rows
    are bounded by the run-time parameter `validate.max_duplicate_share`. With `time_column`, a `per_period`
    section is drafted too (`draft_period_checks`).
    """
    if frame.empty:
        raise ValueError("cannot draft a suite from an empty table")
    rows = len(frame)
    expectations = [
        _expectation("expect_table_columns_to_match_set", column_set=[str(name) for name in frame.columns],
                     exact_match=exact_columns, constraint=HARD),
        _expectation("expect_table_row_count_to_be_between", f"reference had {rows:,} rows",
                     min_value=int(rows // row_count_factor),
                     max_value=int(math.ceil(rows * row_count_factor))),
    ]
    keys = set(key_columns or [])
    for name in frame.columns:
        series = frame[name]
        type_expectation = _column_type_expectation(str(name), series)
        if type_expectation and name == time_column and pd.api.types.is_datetime64_any_dtype(series.dtype):
            from pipelines.features import date_only

            if date_only(series):  # dates without a time of day: the service then takes date-only values too
                type_expectation["meta"].update({DATE_ONLY: True, "notes": "every value is a date (midnight UTC): "
                                                                           "the table has no time of day"})
        if type_expectation:
            expectations.append(type_expectation)
        non_null = float(series.notna().mean())
        if non_null == 1.0:
            expectations.append(_expectation(
                "expect_column_values_to_not_be_null", "a key column: never null" if name in keys else None,
                column=str(name), constraint=HARD if name in keys else OBSERVED))
        elif non_null - null_tolerance > 0:
            expectations.append(_expectation(
                "expect_column_values_to_not_be_null", f"reference was {non_null:.1%} non-null",
                column=str(name), mostly=math.floor((non_null - null_tolerance) * 100) / 100))
        values = series.dropna()
        if values.empty:
            continue
        dtype = series.dtype
        if pd.api.types.is_numeric_dtype(dtype) and not pd.api.types.is_bool_dtype(dtype):
            if float(values.min()) >= 0 and name != label_column:
                expectations.append(_expectation(
                    "expect_column_values_to_be_between",
                    f"never negative in the reference (observed {short(float(values.min()))}.."
                    f"{short(float(values.max()))}): a negative value is taken as impossible; drop this check if "
                    f"the column can be negative", column=str(name), min_value=0, constraint=HARD))
        elif (isinstance(dtype, pd.CategoricalDtype) or type_expectation
              and type_expectation["kwargs"].get("type_") == "str"):
            expectations.extend(_category_set(name, values, categorical_max_unique, category_tolerance, ""))
    if label_column is not None:
        expectations.extend(_drafted_label_rate(frame, label_column, positive_above, label_rate_factor,
                                                positive_class))
    expectations.extend(key_and_duplicate_expectations(frame, key_columns or []))
    suite: dict[str, Any] = {
        "name": suite_name, "expectations": expectations,
        "meta": {"notes": f"Drafted by pipelines.data.draft.draft_suite from a reference table of "
                          f"{rows:,} rows. Review every bound before committing."}}
    if time_column is not None:
        suite["per_period"] = draft_period_checks(
            frame, time_column=time_column, period=period, label_column=label_column, positive_above=positive_above,
            positive_class=positive_class, label_rate_factor=label_rate_factor, null_tolerance=null_tolerance,
            categorical_max_unique=categorical_max_unique, category_tolerance=category_tolerance,
            rows_per_day_margin=rows_per_day_margin)
    return suite


def _drafted_label_rate(frame: pd.DataFrame, column: str, positive_above: float | None,
                        factor: float, positive_class: str | None = None) -> list[dict[str, Any]]:
    if column not in frame.columns:
        raise ValueError(f"label column {column!r} is not in the table")
    values = frame[column].dropna()
    if values.empty:
        raise ValueError(f"label column {column!r} has no values")
    positive = _positive_values(values, column, positive_class)
    rate = _label_rate(values, column, positive_above, positive)
    return _label_rate_within(column, rate, rate, positive_above, factor, positive)


def _positive_values(values: pd.Series, column: str, positive_class: str | None) -> list[Any] | None:
    """The column's own values whose text is `positive_class` (GX compares raw values: `2` for an integer
    column, `"YES"` for text), or None for a threshold or 0/1 label."""
    if positive_class is None:
        return None
    from pipelines.features import category_text

    positive = [value for value in pd.unique(values) if category_text(value) == positive_class]
    if not positive:
        raise ValueError(f"source.positive_class {positive_class!r} is not a value of {column!r}")
    return to_jsonable(positive)


def _label_rate(values: pd.Series, column: str, positive_above: float | None,
                positive: list[Any] | None = None) -> float:
    if positive is not None:
        return float(values.isin(positive).mean())
    if positive_above is None:
        numbers = pd.to_numeric(values, errors="coerce") if not pd.api.types.is_bool_dtype(values) else values
        if pd.isna(numbers).any() or not set(pd.unique(numbers.astype(float))) <= {0.0, 1.0}:
            from pipelines.features import category_texts

            classes = sorted(set(category_texts(values.head(100_000)).dropna()))
            shown = ", ".join(repr(value) for value in classes[:10]) + (" ..." if len(classes) > 10 else "")
            raise ValueError(f"label column {column!r} (source.target) is not 0/1 but has {len(classes)} values "
                             f"({shown}): set source.positive_class to the value that is positive (the other "
                             "values are the negative class, one-vs-rest), or source.positive_above to a threshold "
                             "for a numeric target")
        return float(numbers.astype(float).mean())
    return float((values > positive_above).mean())


def _label_rate_within(column: str, low_rate: float, high_rate: float, positive_above: float | None,
                       factor: float, positive: list[Any] | None = None) -> list[dict[str, Any]]:
    # The positive share may shrink, and the negative share may shrink, by up to `factor`.
    low, high = round(low_rate / factor, 4), round(1 - (1 - high_rate) / factor, 4)
    if positive is not None:
        return class_rate_expectations(column, low, high, positive)
    return label_rate_expectations(column, low, high, positive_above=positive_above)


def class_rate_expectations(column: str, min_rate: float, max_rate: float,
                            positive: list[Any]) -> list[dict[str, Any]]:
    """Bounds on the share of a named positive class (source.positive_class), `positive` being its raw values:
    at least `min_rate` of non-null values are in the class, at least `1 - max_rate` are not."""
    shown = ", ".join(repr(value) for value in positive)
    items = []
    if min_rate > 0:
        items.append(_expectation(
            "expect_column_values_to_be_in_set",
            f"label rate lower bound: at least {min_rate:.2%} of non-null {column} are {shown} (the positive class)",
            column=column, value_set=list(positive), mostly=min_rate))
    if max_rate < 1:
        items.append(_expectation(
            "expect_column_values_to_not_be_in_set",
            f"label rate upper bound: at least {1 - max_rate:.2%} of non-null {column} are not {shown} (so at most "
            f"{max_rate:.2%} are positive)", column=column, value_set=list(positive), mostly=round(1 - max_rate, 6)))
    return items


def key_and_duplicate_expectations(frame: pd.DataFrame, key_columns: list[str]) -> list[dict[str, Any]]:
    """The key (`source.key_columns`) unique, and exact duplicate rows within `validate.max_duplicate_share`.

    The duplicate share is a run-time parameter (`mostly` is `$PARAMETER` min_distinct_row_share, set from
    params by the validate stage), so the threshold has one home, params.yaml. Raises when the reference itself
    repeats a key: such a key is not one.
    """
    items = []
    if key_columns:
        missing = [name for name in key_columns if name not in frame.columns]
        if missing:
            raise ValueError(f"key columns {missing} (source.key_columns) are not in the table")
        repeated = frame.duplicated(key_columns, keep=False)
        if repeated.any():
            example = frame.loc[repeated, key_columns].head(2).to_dict("records")
            raise ValueError(f"source.key_columns {key_columns} are not unique in the reference: "
                             f"{int(repeated.sum()):,} rows share a key, e.g. {example}")
        items.append(_unique(list(key_columns), "the table's key (source.key_columns): one row per key",
                             constraint=HARD))
    items.append(_unique([str(name) for name in frame.columns],
                         "exact duplicate rows: at most validate.max_duplicate_share of rows may have a copy",
                         mostly={"$PARAMETER": DUPLICATES_PARAMETER}))
    return items


def _unique(columns: list[str], notes: str, **kwargs: Any) -> dict[str, Any]:
    # GX's compound expectation needs two columns or more; one column has its own.
    if len(columns) == 1:
        return _expectation("expect_column_values_to_be_unique", notes, column=columns[0], **kwargs)
    return _expectation("expect_compound_columns_to_be_unique", notes, column_list=columns, **kwargs)


def _varies_every_day(frame: pd.DataFrame, time_column: str, exclude: set[Any]) -> set[Any]:
    """The columns that held at least two distinct non-null values on every day of the reference that has rows.

    A day, not a period: the window's first and last periods can be clipped to a single day, and a check drafted
    per period must hold on those too. Precipitation (zero on most days) or visibility (ten miles on calm days)
    are constant on some days, and a column null for a stretch of the reference (a field recorded only from some
    date on) has days without values: none of these gets the check, so the suite passes its own reference.
    """
    columns = [name for name in frame.columns if name not in exclude]
    if not columns:
        return set()
    distinct = frame[columns].groupby(frame[time_column].dt.floor("D"), sort=False).nunique()
    return {name for name in columns if bool((distinct[name] >= 2).all())}


def draft_period_checks(frame: pd.DataFrame, *, time_column: str, period: str = "month",
                        label_column: str | None = None, positive_above: float | None = None,
                        positive_class: str | None = None, label_rate_factor: float = 2.0, null_tolerance: float = 0.05,
                        categorical_max_unique: int = 50, category_tolerance: float = 0.01,
                        rows_per_day_margin: float = 0.1) -> dict[str, Any]:
    """The suite's `per_period` section, from the reference's own periods (validate.period: month or week).

    Rows: the reference periods' rows per day, widened by `rows_per_day_margin`; the runner multiplies them by the
    days each period covers (a partial period at the window's edge is held to its share), so a missing or
    doubled week fails. Label rate: within `label_rate_factor` of the lowest and highest period rates (a
    constant label in any period fails). Non-null share: per column with nulls in the reference, at most
    `null_tolerance` below its lowest period (a column null for one period fails). Categories: as the
    whole-table set, per period (a new category on most rows of one period fails). Not stuck: at least two
    distinct values per period, for each column that varied on every reference day (`_varies_every_day`: a
    column set to one value for a period, in range and non-null, fails).
    """
    periods = [part for part in split_periods(frame, time_column, period) if part.rows]
    if not periods:
        raise ValueError("cannot draft per-period checks from an empty table")
    varying = _varies_every_day(frame, time_column, exclude={time_column, label_column})
    per_day = [part.rows / part.days for part in periods]
    expectations = [_expectation(
        "expect_table_row_count_to_be_between",
        f"rows per {period}: the section's rows_per_day times the days the period covers in the window",
        min_value={"$PARAMETER": PERIOD_MIN_ROWS}, max_value={"$PARAMETER": PERIOD_MAX_ROWS})]
    for name in frame.columns:
        if name == time_column:
            continue
        shares = [float(part.frame[name].notna().mean()) for part in periods]
        if min(shares) < 1.0 and min(shares) - null_tolerance > 0:
            expectations.append(_expectation(
                "expect_column_values_to_not_be_null",
                f"non-null share per {period}: the reference's periods had {min(shares):.1%}..{max(shares):.1%}",
                column=str(name), mostly=math.floor((min(shares) - null_tolerance) * 100) / 100))
        elif min(shares) == 1.0 and name == label_column:
            expectations.append(_expectation("expect_column_values_to_not_be_null",
                                             f"the label in every {period}", column=str(name)))
        series = frame[name]
        if (pd.api.types.is_object_dtype(series.dtype) or isinstance(series.dtype, pd.CategoricalDtype)
                or pd.api.types.is_string_dtype(series.dtype)) and name != label_column:
            values = series.dropna()
            if len(values) and all(isinstance(value, str) for value in values.head(1000)):
                expectations.extend(_category_set(name, values, categorical_max_unique, category_tolerance,
                                                  f"categories per {period}: "))
        if name in varying:
            expectations.append(_expectation(
                STUCK_CHECK,
                f"not stuck at one value in any {period} (a join filled with a default, a frozen feed): the "
                f"reference held two or more distinct values on each of its days",
                column=str(name), min_value=2))
    if label_column is not None:
        positive = _positive_values(frame[label_column].dropna(), label_column, positive_class)
        rates = [_label_rate(part.frame[label_column].dropna(), label_column, positive_above, positive)
                 for part in periods if part.frame[label_column].notna().any()]
        if rates:
            for item in _label_rate_within(label_column, min(rates), max(rates), positive_above,
                                           label_rate_factor, positive):
                item.setdefault("meta", {})["notes"] = (
                    f"per {period}: {item['meta']['notes']}; the reference's periods had "
                    f"{min(rates):.1%}..{max(rates):.1%}")
                expectations.append(item)
    return {
        "period": period,
        "time_column": time_column,
        "rows_per_day": {"min_value": float(f"{min(per_day) * (1 - rows_per_day_margin):.6g}"),
                         "max_value": float(f"{max(per_day) * (1 + rows_per_day_margin):.6g}")},
        "meta": {"notes": f"drafted from {len(periods)} {period}s of the reference: "
                          f"{min(per_day):,.1f}..{max(per_day):,.1f} rows per day"},
        "expectations": expectations,
    }


def window_shortfalls(frame: pd.DataFrame, section: dict[str, Any], *, time_column: str,
                      window: tuple[Any, Any]) -> list[str]:
    """The periods of the collect `window` whose rows the drafted `per_period` section's row-count check refuses.

    validate cuts the whole window into periods (an empty one is a missing month), while the section's rows per
    day were drafted from the table's own periods: a window wider than the table would fail on the very table
    it was drafted from. Each shortfall reads `2020-01 (0 rows, at least 2,884)`.
    """
    rows = section.get("rows_per_day")
    if not rows:
        return []
    shortfalls = []
    for part in split_periods(frame, time_column, section["period"], window):
        least = int(math.floor(float(rows["min_value"]) * part.days))
        if part.rows < least:
            shortfalls.append(f"{part.label} ({part.rows:,} rows, at least {least:,})")
    return shortfalls


__all__ = ["class_rate_expectations", "draft_period_checks", "draft_suite", "key_and_duplicate_expectations",
           "label_rate_expectations", "window_shortfalls"]

"""Folding the suite's per_period section: each period's metric of each expectation, measured in pandas at once.

GX spends ~5 ms per expectation before it reads a row (it deep-copies each configuration and builds a metric graph
per expectation), so the per_period section run as one GX batch per period cost periods x expectations of that:
8 months x 40 expectations, ~2 s, on the flights. Here the metric that decides each of those expectations (a row
count, a distinct count, the share of values that meet it) is measured for every period in pandas, by GX's own
rules (`great_expectations.expectations.expectation._mostly_success`, vacuous truth on an empty batch), into one
table that GX validates with one expectation per expectation type (`validate._run_folded`).

Only what GX would pass is settled here: a period where any folded expectation fails, or one that cannot be
measured (a missing column, a dtype GX compares value by value), is run by GX on its own batch as before, so every
failure line, offending value and count is GX's own. An expectation of a type (or with an argument) not folded here
runs per period in GX as before.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

# What each folded type's metric is, as the Data Docs name it; the arguments each may carry (any other argument,
# e.g. row_condition or a strict bound on a count, leaves the expectation to GX per period).
FOLDED = {
    "expect_table_row_count_to_be_between": ("the period's row count within [min_value, max_value]",
                                             {"min_value", "max_value"}),
    "expect_column_unique_value_count_to_be_between": ("the period's distinct non-null values within "
                                                       "[min_value, max_value]", {"column", "min_value", "max_value"}),
    "expect_column_values_to_not_be_null": ("the period's non-null share, at least mostly (default 1)",
                                            {"column", "mostly"}),
    "expect_column_values_to_be_in_set": ("the share of the period's non-null values in value_set, at least mostly",
                                          {"column", "value_set", "mostly"}),
    "expect_column_values_to_be_between": ("the share of the period's non-null values within the bounds, at least "
                                           "mostly", {"column", "min_value", "max_value", "strict_min", "strict_max",
                                                      "mostly"}),
}
_PARAMETER = "$PARAMETER"


@dataclass(frozen=True)
class Measured:
    """One expectation on one period: the metric GX would decide it by, and the band it must fall in."""

    observed: float  # NaN: vacuously true in GX (no row, or no non-null value, to judge)
    low: float
    high: float

    @property
    def excess(self) -> float:
        """How far the metric is beyond its band (0 within it); > 0 exactly when GX fails the expectation."""
        if math.isnan(self.observed):
            return 0.0
        return max(self.low - self.observed, self.observed - self.high, 0.0)


def resolve(kwargs: Mapping[str, Any], parameters: Mapping[str, Any]) -> dict[str, Any] | None:
    """The kwargs with each {"$PARAMETER": name} replaced by its run-time value; None if one is not given."""
    resolved = {}
    for key, value in kwargs.items():
        if isinstance(value, Mapping) and set(value) == {_PARAMETER}:
            if value[_PARAMETER] not in parameters:
                return None
            value = parameters[value[_PARAMETER]]
        resolved[key] = value
    return resolved


def foldable(item: Mapping[str, Any]) -> bool:
    """Whether `item` is decided by a metric `measure` takes (its type is folded, with only the arguments known)."""
    kind = FOLDED.get(str(item["type"]))
    return kind is not None and set(item.get("kwargs") or {}) <= kind[1]


def measure(item: Mapping[str, Any], frame: pd.DataFrame, parameters: Mapping[str, Any]) -> Measured | None:
    """The metric GX decides a foldable `item` by on `frame`, or None where GX's answer is not certain from it."""
    kwargs = resolve(item.get("kwargs") or {}, parameters)
    if kwargs is None:
        return None
    kind = str(item["type"])
    column = kwargs.get("column")
    if column is not None and column not in frame.columns:
        return None
    bounds = _number(kwargs.get("min_value"), -math.inf), _number(kwargs.get("max_value"), math.inf)
    if None in bounds:
        return None
    if kind == "expect_table_row_count_to_be_between":
        return Measured(float(len(frame)), *bounds)  # type: ignore[arg-type]
    values = frame[column]
    if kind == "expect_column_unique_value_count_to_be_between":
        return Measured(float(values.nunique()), *bounds)  # type: ignore[arg-type]
    mostly = _number(kwargs.get("mostly"), 1.0)
    if mostly is None:
        return None
    if kind == "expect_column_values_to_not_be_null":
        # GX: (rows - nulls) / rows >= mostly; an empty batch passes.
        nulls = int(values.isna().sum())
        return Measured(_share(len(values), nulls), mostly, math.inf)
    present = values.dropna()
    if kind == "expect_column_values_to_be_in_set":
        if kwargs.get("value_set") is None:
            return None
        unexpected = int((~present.isin(kwargs["value_set"])).sum())
    else:  # expect_column_values_to_be_between: vectorized in GX only on int64 and float64 columns
        low, high = kwargs.get("min_value"), kwargs.get("max_value")
        if present.dtype not in (np.dtype("int64"), np.dtype("float64")) or (low is None and high is None) or (
                bounds[0] > bounds[1]):  # type: ignore[operator]
            return None
        inside = pd.Series(True, index=present.index)
        if low is not None:  # GX's comparisons, with the bounds as given
            inside &= (low < present) if kwargs.get("strict_min") else (low <= present)
        if high is not None:
            inside &= (present < high) if kwargs.get("strict_max") else (present <= high)
        unexpected = int((~inside).sum())
    # GX: (non-null - unexpected) / non-null >= mostly; no row or no non-null value passes.
    return Measured(_share(len(present), unexpected), mostly, math.inf)


def _share(considered: int, unexpected: int) -> float:
    """GX's success ratio (`_mostly_success`), NaN where GX calls the expectation vacuously true."""
    if considered == 0:
        return math.nan
    return (float(considered) - float(unexpected)) / float(considered)


def _number(value: Any, default: float) -> float | None:
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int | float | np.integer | np.floating):
        return None
    return float(value)


@dataclass
class Folded:
    """The per_period section measured on every period: the table GX validates, and what GX must still run."""

    table: pd.DataFrame  # one row per (period, folded expectation), a column of excesses per expectation type
    kinds: list[str]  # the folded types present, in the section's order: one GX expectation each
    rest: list[int]  # the section's expectations GX runs per period (not folded), by position
    unsettled: list[str]  # the periods GX runs the whole section on: a folded check fails or cannot be measured


def fold(items: Sequence[Mapping[str, Any]], periods: Sequence[tuple[str, pd.DataFrame]],
         parameters: Callable[[int], Mapping[str, Any]]) -> Folded:
    """Measure every foldable expectation of `items` on every (label, frame) of `periods`.

    `parameters(number)` gives the run-time parameters of the period at that position (its row-count bounds).
    """
    folded = [number for number, item in enumerate(items) if foldable(item)]
    rows: list[dict[str, Any]] = []
    unsettled = []
    for position, (label, frame) in enumerate(periods):
        values = parameters(position)
        settled = True
        for number in folded:
            item = items[number]
            measured = measure(item, frame, values)
            settled = settled and measured is not None and measured.excess == 0.0
            rows.append({"period": label, "expectation": number, "type": str(item["type"]),
                         "column": (item.get("kwargs") or {}).get("column"),
                         **({"observed": math.nan, "low": math.nan, "high": math.nan, "excess": math.nan}
                            if measured is None else
                            {"observed": measured.observed, "low": measured.low, "high": measured.high,
                             "excess": measured.excess})})
        if not settled:
            unsettled.append(label)
    table = pd.DataFrame(rows, columns=["period", "expectation", "type", "column", "observed", "low", "high",
                                        "excess"])
    kinds = list(dict.fromkeys(str(items[number]["type"]) for number in folded))
    # One column of excesses per type (null on the other types' rows, which GX counts as missing). A check that
    # could not be measured has a null excess here: its period is among `unsettled`, judged by GX on its batch.
    table = table.assign(**{kind: table["excess"].where(table["type"] == kind) for kind in kinds})
    return Folded(table=table, kinds=kinds, rest=[number for number in range(len(items)) if number not in folded],
                  unsettled=unsettled)

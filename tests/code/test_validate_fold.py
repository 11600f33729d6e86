"""The per_period section folded (pipelines.data.fold): the same summary, failure lines included, as GX on one batch
per period, and GX runs a period's batch only where a folded check fails, cannot be measured, or is not folded."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd
import pytest

import pipelines.data.fold as fold
from pipelines.data.validate import run_validation


def _frame() -> pd.DataFrame:
    """Three weeks of hourly rows (Mon 2013-01-07 on), two per hour."""
    rng = np.random.default_rng(1)
    hours = pd.date_range("2013-01-07", periods=21 * 24, freq="h", tz="UTC").repeat(2)
    rows = len(hours)
    return pd.DataFrame({
        "time_hour": hours,
        "carrier": np.tile(["AA", "DL", "UA", "B6"], rows // 4),
        "count": rng.integers(0, 50, rows),
        "delay": rng.normal(5, 20, rows),
        "temp": rng.normal(50, 10, rows),
    })


SECTION = {"period": "week", "time_column": "time_hour", "rows_per_day": {"min_value": 40, "max_value": 56},
           "expectations": [
               {"type": "expect_table_row_count_to_be_between",
                "kwargs": {"min_value": {"$PARAMETER": "period_min_rows"},
                           "max_value": {"$PARAMETER": "period_max_rows"}}},
               {"type": "expect_column_values_to_be_in_set",
                "kwargs": {"column": "carrier", "value_set": ["AA", "DL", "UA", "B6"], "mostly": 0.9}},
               *({"type": "expect_column_unique_value_count_to_be_between",
                  "kwargs": {"column": column, "min_value": 2}} for column in ("carrier", "temp")),
               {"type": "expect_column_values_to_not_be_null", "kwargs": {"column": "temp", "mostly": 0.9}},
               {"type": "expect_column_values_to_not_be_null", "kwargs": {"column": "delay"}},
               {"type": "expect_column_values_to_be_between",
                "kwargs": {"column": "delay", "min_value": 15, "strict_min": True, "mostly": 0.1}},
               {"type": "expect_column_values_to_be_between", "kwargs": {"column": "delay", "max_value": 15,
                                                                        "mostly": 0.5}},
               {"type": "expect_column_values_to_be_between", "kwargs": {"column": "count", "min_value": 0,
                                                                        "max_value": 49}},
           ]}


def _second_week(frame: pd.DataFrame) -> pd.Series:
    return (frame["time_hour"] >= "2013-01-14") & (frame["time_hour"] < "2013-01-21")


CORRUPTIONS: dict[str, Callable[[pd.DataFrame], pd.DataFrame]] = {
    "clean": lambda frame: frame,
    "temp-null-in-week-2": lambda frame: frame.assign(temp=frame["temp"].mask(_second_week(frame))),
    "temp-stuck-in-week-2": lambda frame: frame.assign(temp=frame["temp"].mask(_second_week(frame), 0.0)),
    "week-2-missing": lambda frame: frame[~_second_week(frame)],
    "week-2-doubled": lambda frame: pd.concat([frame, frame[_second_week(frame)]]).sort_values(
        "time_hour", kind="stable"),
    "new-carrier-in-week-2": lambda frame: frame.assign(carrier=frame["carrier"].mask(_second_week(frame), "ZZ")),
    "all-late-in-week-2": lambda frame: frame.assign(delay=frame["delay"].mask(_second_week(frame), 60.0)),
    "count-out-of-range": lambda frame: frame.assign(count=frame["count"].mask(frame.index % 97 == 0, 50)),
    "delay-as-text": lambda frame: frame.assign(delay=frame["delay"].astype(object).mask(frame.index % 5 == 0,
                                                                                          "late")),
    "temp-dropped": lambda frame: frame.drop(columns=["temp"]),
}


def _run(frame: pd.DataFrame, section: dict[str, Any]) -> Any:
    suite = {"name": "folded", "expectations": [
        {"type": "expect_table_row_count_to_be_between", "kwargs": {"min_value": 1}}], "per_period": section}
    return run_validation(frame, suite, period="week", window=(pd.Timestamp("2013-01-07"),
                                                               pd.Timestamp("2013-01-28")))


@pytest.mark.parametrize("kind", list(CORRUPTIONS))
def test_folded_summary_is_gxs_per_batch_summary(kind: str, monkeypatch: pytest.MonkeyPatch) -> None:
    frame = CORRUPTIONS[kind](_frame())
    folded = _run(frame, SECTION)
    with monkeypatch.context() as patch:  # nothing folds: every period on its own GX batch, as before the fold
        patch.setattr(fold, "foldable", lambda item: False)
        per_batch = _run(frame, SECTION)
    assert folded.summary.to_dict() == per_batch.summary.to_dict()
    assert per_batch.per_period is None and len(per_batch.results) == 1 + 3
    failing = {failure.period for failure in folded.summary.failures if failure.period}
    ran = {label for label, _ in folded.results[1:]}
    # GX ran a batch only for a period with a failure (or a folded check it could not measure: a text column).
    assert failing <= ran and (ran == failing or kind == "delay-as-text")
    assert bool(folded.per_period.success) == (kind in ("clean", "delay-as-text", "temp-dropped") or not failing)
    if kind == "clean":
        assert folded.summary.success and ran == set() and folded.summary.evaluated == 1 + 3 * 9


def test_an_expectation_not_folded_still_runs_on_every_period() -> None:
    regex = {"type": "expect_column_values_to_match_regex", "kwargs": {"column": "carrier", "regex": "^[A-Z0-9]{2}$"}}
    frame = _frame()
    frame = frame.assign(carrier=frame["carrier"].mask(_second_week(frame) & (frame.index % 20 == 0), "b6"))
    run = _run(frame, {**SECTION, "expectations": [*SECTION["expectations"], regex]})
    # Every folded check passes (5 % of week 2 outside the set is within mostly 0.9): GX runs only the regex, per week.
    assert [label for label, _ in run.results[1:]] == ["2013-01-07", "2013-01-14", "2013-01-21"]
    assert [len(outcome.results) for _, outcome in run.results[1:]] == [1, 1, 1]
    assert [failure.describe().split(":")[0] for failure in run.summary.failures] == [
        "[period 2013-01-14] expect_column_values_to_match_regex on column 'carrier'"]
    assert run.summary.evaluated == 1 + 3 * 10

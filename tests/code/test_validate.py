"""validate: real GX on tiny inline frames; a failure message names the expectation, column and a value."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from pipelines.validate import (
    NUMERIC_TYPES,
    DataValidationError,
    SuiteError,
    validate_table,
    write_suite,
)
from pipelines.validate_draft import draft_suite, label_rate_expectations

SUITE: dict[str, Any] = {
    "name": "tiny",
    "expectations": [
        {"type": "expect_table_columns_to_match_set",
         "kwargs": {"column_set": ["carrier", "distance", "temp"], "exact_match": False}},
        {"type": "expect_table_row_count_to_be_between", "kwargs": {"min_value": 5, "max_value": 100}},
        {"type": "expect_column_values_to_be_of_type", "kwargs": {"column": "carrier", "type_": "str"}},
        {"type": "expect_column_values_to_not_be_null", "kwargs": {"column": "carrier"}},
        {"type": "expect_column_values_to_be_in_set",
         "kwargs": {"column": "carrier", "value_set": ["AA", "DL", "UA"], "mostly": 0.8}},
        {"type": "expect_column_values_to_be_in_type_list",
         "kwargs": {"column": "distance", "type_list": NUMERIC_TYPES}},
        {"type": "expect_column_values_to_be_between",
         "kwargs": {"column": "distance", "min_value": 0, "max_value": 5000, "strict_min": True},
         "meta": {"notes": "miles"}},
        {"type": "expect_column_values_to_be_between",
         "kwargs": {"column": "temp", "min_value": -30, "max_value": 120}},
    ],
}


def _frame() -> pd.DataFrame:
    return pd.DataFrame({
        "carrier": ["AA", "DL", "UA", "AA", "DL", "UA", "AA", "DL"],
        "distance": [200, 950, 1400, 2475, 187, 733, 1096, 4983],
        "temp": [30.0, 41.5, None, 77.0, 12.2, 55.0, 60.1, 99.9],
        "arr_delay": [-5.0, 20.0, 3.0, None, 45.0, -12.0, 0.0, 16.0],
    })


@pytest.fixture
def suite_file(tmp_path: Path) -> Path:
    return write_suite(SUITE, tmp_path / "expectations" / "tiny.json")


def test_passing_frame_passes_and_writes_every_report(suite_file: Path, tmp_path: Path) -> None:
    frame = _frame()
    before = frame.copy()
    report_dir = tmp_path / "reports"
    summary = validate_table(frame, suite_file, report_dir)

    assert summary.success and summary.failed == 0 and summary.failures == []
    assert summary.evaluated == len(SUITE["expectations"]) and summary.rows == len(frame)
    assert summary.suite == "tiny"
    pd.testing.assert_frame_equal(frame, before)  # the input is not changed
    result = json.loads((report_dir / "result.json").read_text())
    assert result["success"] is True and len(result["results"]) == len(SUITE["expectations"])
    written = json.loads((report_dir / "summary.json").read_text())
    assert written == summary.to_dict()
    assert (report_dir / "data_docs" / "index.html").exists()
    assert Path(summary.report).exists() and Path(summary.report).suffix == ".html"


def _drop_distance(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.drop(columns=["distance"])


def _text_in_distance(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.assign(distance=frame["distance"].astype(object).where(frame.index != 3, "far"))


def _negative_distance(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.assign(distance=frame["distance"].where(frame.index != 2, -7))


def _carrier_flood(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.assign(carrier=frame["carrier"].where(frame.index < 4, "ZZ"))


def _too_few_rows(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.head(2)


@pytest.mark.parametrize(("corrupt", "expected"), [
    (_drop_distance, ["expect_table_columns_to_match_set", "missing columns ['distance']",
                      "expect_column_values_to_be_between on column 'distance'",
                      "column 'distance' is not in the table"]),
    (_text_in_distance, ["expect_column_values_to_be_in_type_list on column 'distance'", "dtype object",
                         "'far'"]),
    (_negative_distance, ["expect_column_values_to_be_between on column 'distance'", "values in (0, 5000]",
                          "-7", "why: miles"]),
    (_carrier_flood, ["expect_column_values_to_be_in_set on column 'carrier'", "'ZZ'",
                      "at least 80.00% must"]),
    (_too_few_rows, ["expect_table_row_count_to_be_between", "row count in [5, 100]", "observed 2"]),
], ids=["missing-column", "wrong-dtype", "out-of-range", "unknown-categories", "too-few-rows"])
def test_bad_frame_raises_naming_expectation_column_and_value(
    corrupt: Callable[[pd.DataFrame], pd.DataFrame], expected: list[str], suite_file: Path, tmp_path: Path,
) -> None:
    with pytest.raises(DataValidationError) as raised:
        validate_table(corrupt(_frame()), suite_file, tmp_path / "reports")
    message = str(raised.value)
    assert message.startswith("data validation failed:")
    for text in expected:
        assert text in message, f"{text!r} not in:\n{message}"
    report = message.rsplit("report: ", 1)[1].strip()
    assert Path(report).exists()
    assert isinstance(raised.value, ValueError)


def test_without_fail_on_error_warns_and_returns_the_failures(
    suite_file: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.WARNING, logger="pipelines.validate"):
        summary = validate_table(_negative_distance(_frame()), suite_file, tmp_path / "reports",
                                 fail_on_error=False)
    assert not summary.success and summary.failed == 1
    (failure,) = summary.failures
    assert (failure.expectation, failure.column) == ("expect_column_values_to_be_between", "distance")
    assert failure.offending_values == [-7] and failure.unexpected_count == 1
    assert "data validation failed" in caplog.text and "distance" in caplog.text
    written = json.loads((tmp_path / "reports" / "summary.json").read_text())
    assert written["success"] is False and written["failures"][0]["column"] == "distance"


@pytest.mark.parametrize(("content", "expected"), [
    (None, "expectation suite not found"),
    ("{not json", "is not valid JSON"),
    ("[1, 2]", "must be a JSON object with an 'expectations' list"),
    (json.dumps({"expectations": [{"expectation_type": "expect_column_to_exist", "kwargs": {}}]}),
     "rename it to 'type'"),
    (json.dumps({"expectations": [{"type": "expect_column_to_be_nice", "kwargs": {"column": "x"}}]}),
     "expectation #1"),
    (json.dumps({"expectations": [{"type": "expect_column_values_to_be_between", "kwargs": {}}]}),
     "expect_column_values_to_be_between) is invalid"),
    (json.dumps({"expectations": [{"type": "expect_column_quantile_values_to_be_between", "kwargs": {}}]}),
     "GX 1.24 crashes"),
], ids=["missing", "garbage", "not-a-suite", "gx0-format", "unknown-type", "bad-kwargs", "unsupported"])
def test_unusable_suite_file_gives_a_clear_error(content: str | None, expected: str, tmp_path: Path) -> None:
    path = tmp_path / "suite.json"
    if content is not None:
        path.write_text(content)
    with pytest.raises(SuiteError) as raised:
        validate_table(_frame(), path, tmp_path / "reports")
    assert expected in str(raised.value)
    assert str(path) in str(raised.value)


def test_drafted_suite_passes_its_reference_and_fails_a_corrupted_copy(tmp_path: Path) -> None:
    frame = _frame().assign(time_hour=pd.date_range("2013-01-01", periods=8, freq="h", tz="UTC"),
                            label=[0, 1, 0, 0, 1, 0, 0, 1])
    suite = draft_suite(frame, "drafted", label_column="label")
    kinds = {(item["type"], item["kwargs"].get("column")) for item in suite["expectations"]}
    assert ("expect_column_values_to_be_in_set", "carrier") in kinds
    assert ("expect_column_values_to_be_between", "distance") in kinds
    assert ("expect_column_values_to_not_be_null", "distance") in kinds
    assert ("expect_column_type_to_be", "time_hour") in kinds
    assert ("expect_column_mean_to_be_between", "label") in kinds
    path = write_suite(suite, tmp_path / "drafted.json")
    assert json.loads(path.read_text()) == suite

    assert validate_table(frame, path, tmp_path / "ok").success

    corrupted = frame.assign(carrier="XX", distance=-frame["distance"], label=1)
    with pytest.raises(DataValidationError) as raised:
        validate_table(corrupted, path, tmp_path / "bad")
    message = str(raised.value)
    assert "on column 'carrier'" in message and "'XX'" in message
    assert "on column 'distance'" in message and "-4983" in message
    assert "expect_column_mean_to_be_between on column 'label'" in message


def test_drafted_bounds_are_widened_and_categories_tolerant() -> None:
    frame = pd.DataFrame({"n": [10, 20, 30], "code": ["a", "b", "a"], "free": ["x", "y", "z"]})
    suite = draft_suite(frame, "s", categorical_max_unique=2, category_tolerance=0.05, range_margin=0.5)
    by_key = {(item["type"], item["kwargs"].get("column")): item["kwargs"] for item in suite["expectations"]}
    assert by_key[("expect_column_values_to_be_between", "n")] == {
        "column": "n", "min_value": 0.0, "max_value": 40.0}
    assert by_key[("expect_column_values_to_be_in_set", "code")] == {
        "column": "code", "value_set": ["a", "b"], "mostly": 0.95}
    assert ("expect_column_values_to_be_in_set", "free") not in by_key  # 3 values > categorical_max_unique
    assert by_key[("expect_table_row_count_to_be_between", None)] == {"min_value": 1, "max_value": 6}


def test_label_rate_of_a_derived_label_is_bounded_exactly(tmp_path: Path) -> None:
    # 3 of 7 known delays are > 15 (43%); the null is not counted, as training drops it.
    frame = _frame()
    for (low, high), passes in {(0.3, 0.5): True, (0.5, 0.9): False, (0.1, 0.4): False}.items():
        path = write_suite({"name": "rate", "expectations": label_rate_expectations(
            "arr_delay", low, high, positive_above=15)}, tmp_path / f"rate_{low}_{high}.json")
        summary = validate_table(frame, path, tmp_path / f"r_{low}_{high}", fail_on_error=False)
        assert summary.success is passes, (low, high, summary.message())


def test_label_rate_rejects_bounds_out_of_order() -> None:
    with pytest.raises(ValueError, match="min_rate <= max_rate"):
        label_rate_expectations("y", 0.5, 0.1)


def test_importing_the_module_does_not_import_great_expectations() -> None:
    code = "import sys, pipelines.validate; sys.exit('great_expectations' in sys.modules)"
    repo = Path(__file__).resolve().parents[2]
    assert subprocess.run([sys.executable, "-c", code], cwd=repo).returncode == 0

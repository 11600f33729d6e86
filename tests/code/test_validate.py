"""validate: real GX on tiny inline frames; a failure message names the expectation, column and a value."""

from __future__ import annotations

import json
import logging
import re
import subprocess
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from pipelines import io
from pipelines.contracts import SplitLineage
from pipelines.data.draft import draft_suite, label_rate_expectations
from pipelines.data.explain import STUCK_CHECK
from pipelines.data.suite import (
    NUMERIC_TYPES,
    ColumnBounds,
    NotValidatedError,
    SuiteError,
    column_bounds,
    require_validated,
    write_suite,
)
from pipelines.data.validate import DataValidationError, split_periods, validate_table
from pipelines.io import file_md5

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


def _infinite_temp(frame: pd.DataFrame) -> pd.DataFrame:
    # A float column's infinities: out of range, and named as such (strict JSON has no inf to carry them).
    return frame.assign(temp=frame["temp"].where(frame.index != 1, float("inf")).where(frame.index != 4,
                                                                                       float("-inf")))


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
    (_infinite_temp, ["expect_column_values_to_be_between on column 'temp'", "2 of 7 non-null values",
                      "e.g. inf, -inf"]),
    (_carrier_flood, ["expect_column_values_to_be_in_set on column 'carrier'", "'ZZ'",
                      "at least 80.00% must"]),
    (_too_few_rows, ["expect_table_row_count_to_be_between", "row count in [5, 100]", "observed 2"]),
], ids=["missing-column", "wrong-dtype", "out-of-range", "infinite", "unknown-categories", "too-few-rows"])
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
    with caplog.at_level(logging.WARNING, logger="pipelines.data.validate"):
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
    assert ("expect_column_values_to_be_between", "distance") in kinds  # never negative: hard
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
    assert "on column 'distance'" in message and "-200" in message  # the first offending values, in table order
    assert "expect_column_mean_to_be_between on column 'label'" in message


def test_drafted_ranges_are_hard_only_where_impossible_and_categories_tolerant() -> None:
    """Issue 36.1: the observed range is no constraint of the suite (it is learned behaviour, judged per period with
    a tolerance); a column never negative in the reference stays non-negative, as a hard constraint, and only hard
    ranges bound a request."""
    frame = pd.DataFrame({"n": [10, 20, 30], "signed": [-1.5, 2.0, 3.0], "code": ["a", "b", "a"],
                          "free": ["x", "y", "z"]})
    suite = draft_suite(frame, "s", categorical_max_unique=2, category_tolerance=0.05, key_columns=["free"])
    items = {(item["type"], item["kwargs"].get("column")): item for item in suite["expectations"]}
    by_key = {key: item["kwargs"] for key, item in items.items()}
    assert by_key[("expect_column_values_to_be_between", "n")] == {"column": "n", "min_value": 0}
    assert items[("expect_column_values_to_be_between", "n")]["meta"]["constraint"] == "hard"
    assert ("expect_column_values_to_be_between", "signed") not in by_key  # no observed range in the suite
    assert items[("expect_column_values_to_be_in_set", "code")]["meta"]["constraint"] == "observed"
    assert items[("expect_column_values_to_not_be_null", "free")]["meta"]["constraint"] == "hard"  # a key
    assert items[("expect_column_values_to_not_be_null", "n")]["meta"]["constraint"] == "observed"
    assert column_bounds(suite, ["n", "signed"]) == {"n": ColumnBounds("n", 0.0, None)}
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
    code = "import sys, pipelines.data.validate; sys.exit('great_expectations' in sys.modules)"
    repo = Path(__file__).resolve().parents[2]
    assert subprocess.run([sys.executable, "-c", code], cwd=repo).returncode == 0


# --- per period, keys, duplicates, parse failures, the guard ---------------------------------------------------------

def _daily(days: int = 90, per_day: int = 10, start: str = "2013-01-01") -> pd.DataFrame:
    """`per_day` flights a day with a 30% late rate in every month, carriers AA/DL, a unique key."""
    stamps = pd.DatetimeIndex([pd.Timestamp(start, tz="UTC") + pd.Timedelta(days=i // per_day, hours=i % per_day)
                               for i in range(days * per_day)])
    index = pd.RangeIndex(len(stamps))
    return pd.DataFrame({"time_hour": stamps, "flight": index, "carrier": ["AA", "DL"] * (len(stamps) // 2),
                         "arr_delay": [30.0 if i % 10 < 3 else 0.0 for i in index]})


def _drafted(frame: pd.DataFrame, tmp_path: Path, **options: Any) -> Path:
    suite = draft_suite(frame, "daily", label_column="arr_delay", positive_above=15, key_columns=["carrier", "flight"],
                        time_column="time_hour", **options)
    return write_suite(suite, tmp_path / "daily.json")


def test_split_periods_clips_to_the_window_and_keeps_empty_periods() -> None:
    frame = _daily(days=40, start="2013-01-20")
    months = split_periods(frame, "time_hour", "month")
    assert [(p.label, p.days, p.rows) for p in months] == [("2013-01", 12.0, 120), ("2013-02", 28.0, 280)]
    weeks = split_periods(frame, "time_hour", "week",
                          window=(datetime(2013, 1, 7, tzinfo=UTC), datetime(2013, 3, 4, tzinfo=UTC)))
    assert weeks[0].label == "2013-01-07" and weeks[0].rows == 0  # a period of the window without rows is kept
    assert all(p.start.dayofweek == 0 for p in weeks[1:]) and weeks[-1].label == "2013-02-25"


def test_a_constant_label_in_one_period_fails_per_period_though_the_whole_table_passes(tmp_path: Path) -> None:
    frame = _daily()
    path = _drafted(frame, tmp_path)
    assert validate_table(frame, path, tmp_path / "ok").success
    february = frame["time_hour"].dt.month == 2
    corrupted = frame.assign(arr_delay=frame["arr_delay"].where(~february, 0.0))
    with pytest.raises(DataValidationError) as raised:
        validate_table(corrupted, path, tmp_path / "bad")
    lines = str(raised.value).splitlines()[1:-1]
    assert lines and all(line.startswith("  - [period 2013-02] ") for line in lines), lines  # only February
    assert "label rate lower bound" in str(raised.value)


def test_a_column_stuck_at_one_value_for_a_period_fails_by_name(tmp_path: Path) -> None:
    """Drafted per day: a column constant on some reference days (rain: zero on dry days) or without values on some
    (recorded only from January 6th on) gets no such check, so the suite passes its reference and a window whose last
    period is one dry day; a column that varied every day may not stop varying."""
    frame = _daily()
    day, late = frame["time_hour"].dt.day, frame["time_hour"] >= pd.Timestamp("2013-01-06", tz="UTC")
    frame = frame.assign(temp=40.0 + (frame.index % 7) + day, precip=(frame.index % 3 * 0.1).where(day % 2 == 0, 0.0),
                         citation=(frame.index % 2).astype(float).where(late))
    suite = draft_suite(frame, "daily", label_column="arr_delay", positive_above=15, time_column="time_hour")
    checked = {item["kwargs"]["column"] for item in suite["per_period"]["expectations"] if item["type"] == STUCK_CHECK}
    assert checked == {"flight", "carrier", "temp"}  # not the label either: its rate has its own check
    path = write_suite(suite, tmp_path / "daily.json")
    assert validate_table(frame, path, tmp_path / "ok").success
    to_march_first = frame[frame["time_hour"] < pd.Timestamp("2013-03-02", tz="UTC")]  # March: one dry day
    summary = validate_table(to_march_first, path, tmp_path / "edge",
                             window=(datetime(2013, 1, 1, tzinfo=UTC), datetime(2013, 3, 2, tzinfo=UTC)))
    assert summary.success and summary.periods[-1] == {"period": "2013-03", "rows": 10, "days": 1.0, "failed": 0}

    february = frame["time_hour"].dt.month == 2
    stuck = frame.assign(temp=frame["temp"].where(~february, 55.0), carrier=frame["carrier"].where(~february, "AA"))
    with pytest.raises(DataValidationError) as raised:
        validate_table(stuck, path, tmp_path / "bad")
    lines = str(raised.value).splitlines()[1:-1]
    assert [line.split(":")[0] for line in lines] == [f"  - [period 2013-02] {STUCK_CHECK} on column '{name}'"
                                                     for name in ("carrier", "temp")]
    assert "expected at least 2 distinct values (a column stuck at one value fails); observed 1 distinct value; " \
           "e.g. 55.0" in lines[1]


def test_a_missing_week_and_duplicates_and_a_repeated_key_fail_by_name(tmp_path: Path) -> None:
    frame = _daily()
    path = _drafted(frame, tmp_path)
    day = frame["time_hour"].dt.tz_convert(None).dt.normalize()
    with pytest.raises(DataValidationError, match=r"\[period 2013-02\] expect_table_row_count_to_be_between"):
        validate_table(frame[~day.between("2013-02-04", "2013-02-10")], path, tmp_path / "week")
    doubled = pd.concat([frame, frame.iloc[:50]], ignore_index=True)
    with pytest.raises(DataValidationError) as raised:
        validate_table(doubled, path, tmp_path / "dup", max_duplicate_share=0.01)
    assert "exact duplicates" in str(raised.value) and "the table's key" in str(raised.value)
    # the same rows, 100 of 950 repeated: within a generous max_duplicate_share, the key still fails
    summary = validate_table(doubled, path, tmp_path / "dup2", max_duplicate_share=0.2, fail_on_error=False)
    assert [f.describe().split(":")[0] for f in summary.failures if f.expectation.startswith("expect_compound")] == [
        "expect_compound_columns_to_be_unique"]


def test_the_suite_period_must_match_validate_period(tmp_path: Path) -> None:
    path = _drafted(_daily(), tmp_path)
    with pytest.raises(SuiteError, match="drafted per month, but validate.period is 'week'"):
        validate_table(_daily(), path, tmp_path / "r", period="week")


def test_drafting_refuses_a_key_that_is_not_unique() -> None:
    frame = _daily(days=3).assign(flight=1)
    with pytest.raises(ValueError, match=r"source.key_columns \['flight'\] are not unique"):
        draft_suite(frame, "s", key_columns=["flight"])


def test_parse_failures_from_collect_fail_validation_with_examples(suite_file: Path, tmp_path: Path) -> None:
    errors = {"distance": {"type": "numeric", "count": 3, "examples": ["far", "12km"]}}
    with pytest.raises(DataValidationError) as raised:
        validate_table(_frame(), suite_file, tmp_path / "r", parse_errors=errors)
    assert ("collect_cells_parse_as_column_type on column 'distance': expected every cell parses as numeric; "
            "3 cells did not (read as null); e.g. 'far', '12km'") in str(raised.value)


def test_the_guard_refuses_a_table_validation_did_not_pass(suite_file: Path, tmp_path: Path) -> None:
    table, reports = tmp_path / "table.parquet", tmp_path / "validation"
    _frame().to_parquet(table)
    digest = file_md5(table)
    with pytest.raises(NotValidatedError, match=f"train: table {digest} has not passed validation .*is missing"):
        require_validated(table, reports, "train")
    validate_table(_frame(), suite_file, reports, table=table, table_md5=digest)
    assert require_validated(table, reports, "train").table_md5 == digest

    _negative_distance(_frame()).to_parquet(table)  # a new table under the old summary
    changed = file_md5(table)
    with pytest.raises(NotValidatedError, match=f"table {changed} has not passed validation .* says it validated "
                                                f"table {digest}, not this one"):
        require_validated(table, reports, "preprocess")
    validate_table(_negative_distance(_frame()), suite_file, reports, fail_on_error=False, table=table,
                   table_md5=changed)
    # warn-only: readable while the params in force say so (with a warning naming the checks) ...
    assert require_validated(table, reports, "evaluate", warn_only=True).success is False
    with pytest.raises(NotValidatedError, match="says success: false, 1 failed check"):
        require_validated(table, reports, "register", strict=True, warn_only=True)  # ... but never registered
    with pytest.raises(NotValidatedError, match=r"accepted under validate.fail_on_error: false, which the params "
                                                r"no longer say"):
        require_validated(table, reports, "evaluate")  # ... and refused once they say true again
    prepared = tmp_path / "prepared"
    SplitLineage(raw_table_md5=digest, validation_success=True, suite="suite", rows=3).save(prepared)
    with pytest.raises(NotValidatedError, match=f"prepared data was made from table {digest}, not from"):
        require_validated(table, reports, "train", derived=prepared, warn_only=True)
    (prepared / io.LINEAGE_FILE).write_text(json.dumps({"raw_table_md5": changed}))  # not preprocess's shape
    with pytest.raises(NotValidatedError, match=f"{prepared / io.LINEAGE_FILE} cannot be read .*not a valid "
                                                "SplitLineage record"):
        require_validated(table, reports, "train", derived=prepared, warn_only=True)


def test_a_refused_table_leaves_the_last_validation_as_it_was(suite_file: Path, tmp_path: Path) -> None:
    """Issue 36.11: a failed validation writes its reports beside the stage's outputs (`failed/`), never over those
    of the last table that passed, so the workspace is as before the run (`dvc status`: validate stale, nothing
    else); the guard still names the failure by the new table's hash."""
    table, reports = tmp_path / "table.parquet", tmp_path / "validation"
    _frame().to_parquet(table)
    validate_table(_frame(), suite_file, reports, table=table, table_md5=file_md5(table))
    before = {path: path.read_bytes() for path in (reports / "summary.json", reports / "result.json")}
    pages = sorted((reports / "data_docs").rglob("*.html"))

    _negative_distance(_frame()).to_parquet(table)
    changed = file_md5(table)
    with pytest.raises(DataValidationError) as raised:
        validate_table(_negative_distance(_frame()), suite_file, reports, table=table, table_md5=changed)
    assert f"report: {reports / 'failed' / 'data_docs' / 'index.html'}" in str(raised.value)
    assert {path: path.read_bytes() for path in before} == before
    assert sorted((reports / "data_docs").rglob("*.html")) == pages
    failed = json.loads((reports / "failed" / "summary.json").read_text())
    assert failed["success"] is False and failed["table_md5"] == changed
    with pytest.raises(NotValidatedError, match=re.escape(f"table {changed} has not passed validation "
                                                          f"({reports / 'failed' / 'summary.json'} says success: "
                                                          f"false, 1 failed check(s), first:")):
        require_validated(table, reports, "preprocess")

    _frame().to_parquet(table)  # the clean table again: it passes, and the old refusal goes
    validate_table(_frame(), suite_file, reports, table=table, table_md5=file_md5(table))
    assert not (reports / "failed").exists()


def test_the_same_table_writes_the_same_result_json(suite_file: Path, tmp_path: Path) -> None:
    """result.json is a DVC out: the same table and suite must write the same bytes (GX's run ids and clocks are
    left out), or a fresh clone's `dvc pull` finds no copy of the hash the committed dvc.lock names."""
    first, second = tmp_path / "first", tmp_path / "second"
    validate_table(_frame(), suite_file, first)
    validate_table(_frame(), suite_file, second)
    assert (first / "result.json").read_bytes() == (second / "result.json").read_bytes()
    assert (first / "summary.json").read_text().replace(str(first), "") == \
        (second / "summary.json").read_text().replace(str(second), "")
    text = (first / "result.json").read_text()
    assert "run_time" not in text and "validation_time" not in text and '"id": "' not in text

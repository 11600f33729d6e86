"""Whole-table checks added up over chunks: the same verdicts and counts as one GX batch, on tiny inline frames."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from pipelines.data.chunks import chunkable, time_chunks
from pipelines.data.validate import run_validation, write_reports

KEY = ["carrier", "flight", "time_hour"]


def _frame(rows: int = 60, seed: int = 0) -> pd.DataFrame:
    """Hourly flights, three per hour, in time order; 20 rows per chunk of 20 cut at hour boundaries."""
    rng = np.random.default_rng(seed)
    hours = pd.date_range("2013-01-01", periods=rows // 3, freq="h", tz="UTC").repeat(3)
    return pd.DataFrame({
        "time_hour": hours,
        "carrier": np.tile(["AA", "DL", "UA"], rows // 3),
        "flight": np.arange(rows) % 7 + 100,
        "distance": rng.integers(100, 3000, rows).astype(float),
        "temp": rng.normal(50, 10, rows),
    })


def _suite(*extra: dict[str, Any]) -> dict[str, Any]:
    return {"name": "chunked", "expectations": [
        {"type": "expect_table_columns_to_match_set", "kwargs": {"column_set": ["time_hour", "carrier", "flight",
                                                                               "distance", "temp"]}},
        {"type": "expect_table_row_count_to_be_between", "kwargs": {"min_value": 50, "max_value": 100}},
        {"type": "expect_column_values_to_be_of_type", "kwargs": {"column": "carrier", "type_": "str"}},
        {"type": "expect_column_values_to_not_be_null", "kwargs": {"column": "temp", "mostly": 0.8}},
        {"type": "expect_column_values_to_be_between",
         "kwargs": {"column": "distance", "min_value": 0, "max_value": 5000, "strict_min": True}},
        {"type": "expect_column_values_to_be_in_set", "kwargs": {"column": "carrier", "value_set": ["AA", "DL", "UA"],
                                                                 "mostly": 0.9}},
        {"type": "expect_compound_columns_to_be_unique", "kwargs": {"column_list": KEY}},
        *extra,
    ]}


def _both(frame: pd.DataFrame, suite: dict[str, Any], tmp_path: Path) -> tuple[Any, Any]:
    """The summary of one batch and of chunks of at most 20 rows, both written as reports."""
    summaries = []
    for chunk_rows in (None, 20):
        run = run_validation(frame, suite, time_column="time_hour", chunk_rows=chunk_rows)
        summaries.append(write_reports(run, tmp_path / f"reports_{chunk_rows}"))
    return summaries


def _lines(summary: Any) -> list[str]:
    return [failure.describe() for failure in summary.failures]


def test_chunks_cover_every_row_once_and_never_split_a_timestamp() -> None:
    frame = _frame(61 * 3).sample(frac=1, random_state=1)  # out of time order
    frame.loc[frame.index[:4], "time_hour"] = pd.NaT
    chunks = list(time_chunks(frame, "time_hour", 20))
    assert sorted(np.concatenate([chunk.index.to_numpy() for chunk in chunks])) == sorted(frame.index)
    assert chunks[0]["time_hour"].isna().sum() == 4 and all(c["time_hour"].notna().all() for c in chunks[1:])
    spans = [(chunk["time_hour"].min(), chunk["time_hour"].max()) for chunk in chunks]
    assert all(earlier[1] < later[0] for earlier, later in zip(spans, spans[1:], strict=False))  # disjoint hours
    assert max(chunk["time_hour"].notna().sum() for chunk in chunks) <= 20


def test_a_sorted_frame_is_cut_into_views_and_one_crowded_timestamp_stays_whole() -> None:
    frame = _frame(60)
    crowded = pd.concat([frame.iloc[:30], frame.iloc[[30] * 27].assign(flight=range(27)), frame.iloc[33:]],
                        ignore_index=True)  # 27 flights in one hour
    sizes = [len(chunk) for chunk in time_chunks(crowded, "time_hour", 20)]
    assert sizes == [18, 12, 27, 18, 9]  # cut before the hour that would be split; the crowded hour is one part
    first = next(time_chunks(frame, "time_hour", 20))
    assert np.shares_memory(first["distance"].to_numpy(), frame["distance"].to_numpy())  # a view, not a copy


def test_only_checks_that_add_up_are_chunked() -> None:
    assert chunkable({"type": "expect_column_values_to_be_between", "kwargs": {"column": "temp"}}, "time_hour")
    assert chunkable({"type": "expect_compound_columns_to_be_unique", "kwargs": {"column_list": KEY}}, "time_hour")
    assert not chunkable({"type": "expect_compound_columns_to_be_unique",
                          "kwargs": {"column_list": ["carrier", "flight"]}}, "time_hour")
    assert not chunkable({"type": "expect_column_mean_to_be_between", "kwargs": {"column": "temp"}}, "time_hour")


def test_a_clean_table_passes_in_chunks_with_the_same_counts(tmp_path: Path) -> None:
    one, chunked = _both(_frame(), _suite(), tmp_path)
    assert one.success and chunked.success and one.evaluated == chunked.evaluated


def test_mostly_is_judged_on_the_whole_table_not_on_each_chunk(tmp_path: Path) -> None:
    # 6 of the last 20 rows have no temperature: that chunk alone misses mostly=0.8, the table (10%) meets it.
    frame = _frame()
    frame.loc[frame.index[-6:], "temp"] = np.nan
    one, chunked = _both(frame, _suite(), tmp_path)
    assert one.success and chunked.success, _lines(chunked)
    # 13 more in the first rows: 19 of 60 missing (68% present) fails, with the same count both ways.
    frame.loc[frame.index[:13], "temp"] = np.nan
    one, chunked = _both(frame, _suite(), tmp_path / "worse")
    assert not chunked.success and _lines(chunked) == _lines(one)
    assert [failure.unexpected_count for failure in chunked.failures] == [19]


def test_the_row_count_adds_up_and_out_of_range_values_are_counted_over_every_chunk(tmp_path: Path) -> None:
    frame = _frame()
    frame.loc[frame.index[[2, 25, 59]], "distance"] = -1.0
    one, chunked = _both(frame, _suite(), tmp_path)
    assert _lines(chunked) == _lines(one)
    (failure,) = chunked.failures
    assert failure.column == "distance" and failure.unexpected_count == 3 and -1.0 in failure.offending_values
    short = _frame().iloc[:45]  # the table's 45 rows are under the 50 the suite needs (60 pass: test above)
    one, chunked = _both(short, _suite(), tmp_path / "short")
    assert [failure.expectation for failure in chunked.failures] == ["expect_table_row_count_to_be_between"]
    assert _lines(chunked) == _lines(one)


def test_a_repeated_key_is_found_within_its_hour_and_others_run_on_the_whole_table(tmp_path: Path) -> None:
    frame = _frame()
    doubled = pd.concat([frame, frame.iloc[[21]]]).sort_values("time_hour", kind="stable", ignore_index=True)
    across = {"type": "expect_compound_columns_to_be_unique", "kwargs": {"column_list": ["carrier", "time_hour",
                                                                                        "distance", "flight"]}}
    mean = {"type": "expect_column_mean_to_be_between", "kwargs": {"column": "distance", "min_value": 0,
                                                                   "max_value": 100}}
    timeless = {"type": "expect_compound_columns_to_be_unique", "kwargs": {"column_list": ["carrier", "flight"]}}
    one, chunked = _both(doubled, _suite(across, mean, timeless), tmp_path)
    assert _lines(chunked) == _lines(one)
    counts = {(failure.expectation, tuple(failure.kwargs.get("column_list") or [])): failure.unexpected_count
              for failure in chunked.failures}
    assert counts[("expect_compound_columns_to_be_unique", tuple(KEY))] == 2  # the row and its copy
    assert counts[("expect_compound_columns_to_be_unique", ("carrier", "time_hour", "distance", "flight"))] == 2
    assert counts[("expect_column_mean_to_be_between", ())] is None
    # (carrier, flight) pairs repeat across hours, so across chunks: judged on the whole table, every row repeats
    assert counts[("expect_compound_columns_to_be_unique", ("carrier", "flight"))] == len(doubled)


@pytest.mark.parametrize("rows", [60, 61 * 3])
def test_the_report_holds_one_whole_table_result_either_way(rows: int, tmp_path: Path) -> None:
    run = run_validation(_frame(rows), _suite(), time_column="time_hour", chunk_rows=20)
    write_reports(run, tmp_path)
    where = tmp_path if run.summary.accepted else tmp_path / "failed"  # a refused table's reports: beside the outputs
    pages = list((where / "data_docs" / "validations").rglob("*.html"))
    assert len(pages) == 1 and run.results[0][1].statistics["evaluated_expectations"] == len(_suite()["expectations"])


def _results(run: Any) -> list[tuple[str, str, str, bool, str]]:
    import json

    rows = []
    for label, outcome in run.results:
        for item in outcome.results:
            data = item.to_json_dict()
            config = data["expectation_config"]
            rows.append((label or "", config["type"], json.dumps(config["kwargs"], sort_keys=True, default=str),
                         data["success"], json.dumps(data["result"], sort_keys=True, default=str)))
    return sorted(rows)


def test_gx_gets_a_consolidated_copy_with_the_same_results_and_the_callers_frame_is_untouched(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The batch copy (one block per dtype) is a speed-up only: every GX result is the one the frame gives as read."""
    import pipelines.data.validate as validate
    from pipelines.io import parquet_frame

    frame = _frame(61 * 3)
    frame.loc[frame.index[[2, 25, 59]], "distance"] = -1.0
    frame.loc[frame.index[100:130], "temp"] = np.nan
    frame.loc[frame.index[140:150], "carrier"] = "ZZ"
    frame.to_parquet(tmp_path / "table.parquet", index=False)
    read = parquet_frame(tmp_path / "table.parquet")  # as the stage reads it: Arrow's one block per column
    assert read._mgr.nblocks == len(read.columns)
    suite = {**_suite(), "per_period": {"period": "week", "expectations": [
        {"type": "expect_column_values_to_not_be_null", "kwargs": {"column": "temp", "mostly": 0.9}},
        {"type": "expect_column_values_to_be_in_set", "kwargs": {"column": "carrier", "value_set": ["AA", "DL"],
                                                                 "mostly": 0.5}}]}}
    before = read.copy()
    copied = validate._gx_batch(read, None)
    assert copied._mgr.nblocks < read._mgr.nblocks and copied.equals(read)
    assert validate._gx_batch(read, 20) is read  # longer than a chunk: passed as it is, never a second table

    for chunk_rows in (None, 20):
        consolidated = run_validation(read, suite, time_column="time_hour", chunk_rows=chunk_rows)
        with monkeypatch.context() as patch:
            patch.setattr(validate, "_gx_batch", lambda batch, limit: batch)
            as_read = run_validation(read, suite, time_column="time_hour", chunk_rows=chunk_rows)
        assert not consolidated.summary.success and consolidated.summary.failed >= 3
        assert _results(consolidated) == _results(as_read)
        assert consolidated.summary.to_dict() == as_read.summary.to_dict()
    pd.testing.assert_frame_equal(read, before)
    assert read._mgr.nblocks == len(read.columns)  # not consolidated in place either

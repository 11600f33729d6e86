"""Callers kept apart in the prediction log: ids namespaced by caller, a byte budget per caller and hour, and what
the budget left out counted per caller."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from pipelines import io
from pipelines.contracts import MalformedRecord, OverBudgetCount, OverBudgetLog
from pipelines.monitor.prediction_log import (
    PredictionLog,
    logged_id,
    prediction_record,
    read_over_budget,
    read_prediction_log,
)


def _records(prefix: str, n: int) -> list[dict]:
    return [prediction_record(request_id=f"{prefix}-{i}", ts="2013-06-01T10:00:00+00:00", model_tag="m:1",
                              inputs={"hour": 10.0, "carrier": "UA"}, probability=0.25, label=0, threshold=0.5)
            for i in range(n)]


def test_an_id_is_logged_in_its_callers_namespace() -> None:
    assert logged_id("peer:127.0.0.1", "flight-1") == "peer:127.0.0.1/flight-1"
    assert logged_id("key:alice", "a/b") == "key:alice/a/b"  # a caller never holds a "/": the first one splits
    assert logged_id("", "flight-1") == "flight-1"


def _size(records: list[dict]) -> int:
    import orjson

    return sum(len(orjson.dumps(record)) + 1 for record in records)


def test_a_caller_past_its_hourly_budget_is_left_out_and_counted_others_are_not(tmp_path: Path) -> None:
    from datetime import UTC, datetime

    now = [3600.0 * 400_000 + 10]
    batch = _size(_records("junk0", 10))  # every junk batch is this size
    log = PredictionLog(tmp_path, rotate_hourly=True, rotate_bytes=10**9, clock=lambda: now[0],
                        caller_budget_bytes=3 * batch)
    for number in range(5):
        log.write(_records(f"junk{number}", 10), caller="peer:10.0.0.9")
    log.write(_records("innocent", 10), caller="peer:10.0.0.1")
    log.write_groups({"peer:10.0.0.9": _records("late", 10), "peer:10.0.0.2": _records("mixed", 10)})
    hour = datetime.fromtimestamp(now[0], UTC).strftime("%Y-%m-%dT%H")
    now[0] += 3600  # a new hour: a new budget
    log.write(_records("next-hour", 10), caller="peer:10.0.0.9")
    log.close()
    ids = [record.request_id for record in read_prediction_log(tmp_path).records]
    assert sum(i.startswith("junk") for i in ids) == 30 and sum(i.startswith("next-hour") for i in ids) == 10
    assert sum(i.startswith("innocent") for i in ids) == 10 and sum(i.startswith("mixed") for i in ids) == 10
    assert not any(i.startswith("late") for i in ids)
    assert read_over_budget(tmp_path) == [OverBudgetCount(hour=hour, caller="peer:10.0.0.9", rows=30,
                                                          bytes=2 * batch + _size(_records("late", 10)))]


def test_without_a_budget_or_a_caller_everything_is_written(tmp_path: Path) -> None:
    log = PredictionLog(tmp_path, rotate_hourly=False, rotate_bytes=10**9)
    for batch in range(20):
        log.write(_records(f"b{batch}", 50), caller="peer:10.0.0.9")
    log.close()
    assert len(read_prediction_log(tmp_path).records) == 1000 and read_over_budget(tmp_path) == []


def test_a_writers_new_file_is_never_a_name_the_cap_freed(tmp_path: Path) -> None:
    """After the cap deleted a writer's first files, its next file is still the last of its pid in write order, so
    another worker's trim (which keeps each live writer's last file) never deletes the file being written."""
    from pipelines.io import PREDICTION_LOG_GLOB as FILE_GLOB
    from pipelines.monitor.prediction_log import trim_prediction_log

    size = _size(_records("r", 10))
    log = PredictionLog(tmp_path, rotate_hourly=False, rotate_bytes=size, background_trim=False,
                        max_total_bytes=3 * size)
    for batch in range(12):
        log.write(_records(f"r{batch:02d}", 10))
        current = log.path
        trim_prediction_log(tmp_path, 3 * size)  # another worker's trim: it knows nothing of this writer's file
        assert current is not None and current.exists(), f"batch {batch}: the file being written was deleted"
    log.close()
    assert len(list(tmp_path.glob(FILE_GLOB))) <= 4
    ids = [record.request_id for record in read_prediction_log(tmp_path).records]
    assert ids[-10:] == [f"r11-{i}" for i in range(10)]


def test_records_are_written_one_per_line_whatever_their_strings_hold() -> None:
    """The whole list is dumped at once and split between records: a value holding the separator's text (escaped in
    JSON) or a record of another shape never merges two lines."""
    import orjson

    from pipelines.monitor.prediction_log import jsonl

    tricky = _records("x", 3)
    tricky[1]["inputs"] = {"carrier": '},{"request_id":"forged"}\n', "hour": 1.0}
    data = jsonl(tricky)
    assert data.count(b"\n") == 3 and [orjson.loads(line) for line in data.splitlines()] == tricky
    other = [{"a": 1}, {"request_id": "b"}]
    assert jsonl(other) == b'{"a":1}\n{"request_id":"b"}\n'
    assert jsonl(_records("y", 1000)) == b"".join(orjson.dumps(r) + b"\n" for r in _records("y", 1000))


def test_the_over_budget_counts_of_every_writer_are_summed_and_a_damaged_file_is_named(tmp_path: Path) -> None:
    """Each worker saves its own `over-budget-<pid>.json` (as `PredictionLog` does, under its own pid); the reader sums
    them per hour and caller, oldest hour first, and refuses a file that is not a writer's counts, naming it."""
    early, late = "2013-06-01T10", "2013-06-01T11"
    OverBudgetLog(counts=[OverBudgetCount(hour=late, caller="peer:a", rows=2, bytes=200),
                          OverBudgetCount(hour=early, caller="peer:a", rows=1, bytes=100)]).save(tmp_path, 7)
    written = OverBudgetLog(counts=[OverBudgetCount(hour=late, caller="peer:a", rows=5, bytes=500)]).save(
        tmp_path, os.getpid())
    assert written == tmp_path / io.over_budget_name(os.getpid()) and isinstance(json.loads(written.read_text()), list)
    assert read_over_budget(tmp_path) == [OverBudgetCount(hour=early, caller="peer:a", rows=1, bytes=100),
                                          OverBudgetCount(hour=late, caller="peer:a", rows=7, bytes=700)]
    written.write_text(json.dumps([{"hour": late, "caller": "peer:a", "rows": 5}]))
    with pytest.raises(MalformedRecord, match=rf"{written} is not a valid OverBudgetLog record \(0\.bytes"):
        read_over_budget(tmp_path)

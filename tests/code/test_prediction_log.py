"""The prediction log writer: format, one line per record, hourly and size rotation, reading back."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from pipelines.monitor.prediction_log import PredictionLog, PredictionRecord, prediction_record, read_prediction_log


def _record(i: int) -> dict:
    stamp = "2013-09-01T14:00:00+00:00"
    return prediction_record(request_id=f"r{i}", ts=stamp, model_tag="delay-classifier:abc",
                             inputs={"carrier": "UA", "distance": None, "time_hour": stamp},
                             probability=np.float64(0.25), label=0, threshold=0.3)


class _Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def test_lines_are_the_documented_record(tmp_path: Path) -> None:
    log = PredictionLog(tmp_path, rotate_hourly=True, rotate_bytes=10_000_000, clock=_Clock(1378044000.0))
    log.write([_record(1), _record(2)])
    log.close()
    files = list(tmp_path.glob("*.jsonl"))
    assert [f.name for f in files] == [f"predictions-20130901T14-{os.getpid()}.jsonl"]
    lines = files[0].read_text().splitlines()
    assert [json.loads(line) for line in lines] == [
        {"request_id": f"r{i}", "ts": "2013-09-01T14:00:00+00:00", "model_tag": "delay-classifier:abc",
         "inputs": {"carrier": "UA", "distance": None, "time_hour": "2013-09-01T14:00:00+00:00"},
         "probability": 0.25, "label": 0, "threshold": 0.3, "served": "full"} for i in (1, 2)]


def test_rotates_each_hour_and_by_size(tmp_path: Path) -> None:
    clock = _Clock(1378044000.0)  # 2013-09-01 14:00 UTC
    log = PredictionLog(tmp_path, rotate_hourly=True, rotate_bytes=1024, clock=clock)
    for i in range(30):  # ~200 bytes a line: several size rotations within the hour
        log.write([_record(i)])
    clock.now += 3600
    log.write([_record(99)])
    log.close()
    names = sorted(p.name for p in tmp_path.glob("*.jsonl"))
    pid = os.getpid()
    assert f"predictions-20130901T14-{pid}.jsonl" in names
    assert f"predictions-20130901T14-{pid}.1.jsonl" in names
    assert f"predictions-20130901T15-{pid}.jsonl" in names
    assert all(p.stat().st_size <= 1024 for p in tmp_path.glob("*T14*.jsonl"))
    assert [r.request_id for r in read_prediction_log(tmp_path).records] == [*(f"r{i}" for i in range(30)), "r99"]


def test_reopening_appends_and_a_torn_last_line_is_skipped(tmp_path: Path) -> None:
    clock = _Clock(1378044000.0)
    first = PredictionLog(tmp_path, rotate_hourly=False, rotate_bytes=10_000_000, clock=clock)
    first.write([_record(1)])
    first.close()
    second = PredictionLog(tmp_path, rotate_hourly=False, rotate_bytes=10_000_000, clock=clock)
    second.write([_record(2)])
    with open(second.path, "ab") as handle:  # what a full disk could leave behind
        handle.write(b'{"request_id": "torn"')
    second.close()
    read = read_prediction_log(tmp_path)
    assert [r.request_id for r in read.records] == ["r1", "r2"]
    assert read.skipped == {"incomplete_line": 1}


def test_the_writer_record_is_the_reader_model() -> None:
    """The writer's dict and the reader's model spell the same fields; what one writes the other accepts."""
    record = _record(1)
    assert set(record) == set(PredictionRecord.model_fields)
    assert PredictionRecord.model_validate(record).request_id == "r1"


def test_rotated_files_are_read_in_numeric_order(tmp_path: Path) -> None:
    """Twelve size rotations in one hour: `.10` and `.11` come after `.2`, as they were written."""
    log = PredictionLog(tmp_path, rotate_hourly=False, rotate_bytes=1024, clock=_Clock(1378044000.0))
    for i in range(60):
        log.write([_record(i)])
    log.close()
    assert any(p.name.endswith(".10.jsonl") for p in tmp_path.glob("*.jsonl"))
    assert [r.request_id for r in read_prediction_log(tmp_path).records] == [f"r{i}" for i in range(60)]

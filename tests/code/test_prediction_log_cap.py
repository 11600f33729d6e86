"""The prediction log's size cap: oldest closed files go first, open files never, and what went is listed."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from pipelines.contracts import DroppedFile
from pipelines.monitor.prediction_log import (
    PredictionLog,
    prediction_record,
    read_dropped,
    read_prediction_log,
    trim_prediction_log,
)


def _records(n: int, start: int = 0) -> list[dict]:
    return [prediction_record(request_id=f"r{i}", ts=f"2013-09-01T14:00:{i % 60:02d}+00:00",
                              model_tag="m:1", inputs={"carrier": "UA" * 20}, probability=0.5, label=1,
                              threshold=0.3) for i in range(start, start + n)]


def _dead_pid() -> int:
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def _write_file(directory: Path, name: str, records: list[dict]) -> Path:
    import orjson

    path = directory / name
    path.write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in records))
    return path


def test_oldest_closed_files_are_dropped_first_and_listed(tmp_path: Path) -> None:
    dead = _dead_pid()
    oldest = _write_file(tmp_path, f"predictions-20130901T12-{dead}.jsonl", _records(30, 0))
    older = _write_file(tmp_path, f"predictions-20130901T13-{dead}.jsonl", _records(30, 30))
    mine_closed = _write_file(tmp_path, f"predictions-20130901T14-{os.getpid()}.jsonl", _records(30, 60))
    mine_open = _write_file(tmp_path, f"predictions-20130901T14-{os.getpid()}.1.jsonl", _records(30, 90))
    size = oldest.stat().st_size
    cap = mine_closed.stat().st_size + mine_open.stat().st_size  # fits once the two oldest are gone
    dropped = trim_prediction_log(tmp_path, max_total_bytes=cap, keep={mine_open},
                                  now=lambda: "2013-09-01T15:00:00+00:00")
    assert [entry.file for entry in dropped] == [oldest.name, older.name]
    assert not oldest.exists() and not older.exists() and mine_closed.exists() and mine_open.exists()
    assert dropped[0] == DroppedFile(file=oldest.name, bytes=size, rows=30, first_ts="2013-09-01T14:00:00+00:00",
                                     last_ts="2013-09-01T14:00:29+00:00", dropped_at="2013-09-01T15:00:00+00:00")
    assert read_dropped(tmp_path) == dropped
    # Under the cap now: nothing more goes, and the manifest keeps what it had.
    assert trim_prediction_log(tmp_path, max_total_bytes=cap) == []
    assert len(read_dropped(tmp_path)) == 2
    assert {r.request_id for r in read_prediction_log(tmp_path).records} == {f"r{i}" for i in range(60, 120)}


def test_a_live_writers_newest_file_is_never_dropped(tmp_path: Path) -> None:
    only = _write_file(tmp_path, f"predictions-20130901T12-{os.getpid()}.jsonl", _records(50))
    assert trim_prediction_log(tmp_path, max_total_bytes=1024) == []
    assert only.exists()


def test_the_writer_keeps_the_directory_under_its_cap(tmp_path: Path) -> None:
    log = PredictionLog(tmp_path, rotate_hourly=False, rotate_bytes=4096, max_total_bytes=20_000,
                        background_trim=False)
    written = 0
    for i in range(100):
        batch = _records(5, 5 * i)
        log.write(batch)
        written += len(batch)
        total = sum(p.stat().st_size for p in tmp_path.glob("predictions-*.jsonl"))
        assert total <= 20_000 + 2_000 + 4096, total  # one check interval (a tenth of the cap) + one file
    log.close()
    dropped = read_dropped(tmp_path)
    assert dropped, "the cap was reached, so files were dropped"
    assert len(read_prediction_log(tmp_path).records) + sum(d.rows for d in dropped) == written


def test_files_of_killed_writers_empty_or_torn(tmp_path: Path) -> None:
    """A writer killed after creating its file leaves it empty (nothing lost: deleted, not listed); one killed
    mid-line leaves a torn line (listed with its bytes and no complete rows)."""
    dead = _dead_pid()
    empty = tmp_path / f"predictions-20130901T12-{dead}.jsonl"
    empty.write_bytes(b"")
    torn = tmp_path / f"predictions-20130901T12-{dead}.1.jsonl"
    torn.write_bytes(b'{"request_id": "half')
    kept = _write_file(tmp_path, f"predictions-20130901T14-{os.getpid()}.jsonl", _records(30))
    dropped = trim_prediction_log(tmp_path, max_total_bytes=kept.stat().st_size, keep={kept})
    assert not empty.exists() and not torn.exists() and kept.exists()
    assert dropped == read_dropped(tmp_path) and [entry.file for entry in dropped] == [torn.name]
    assert dropped[0].rows == 0 and dropped[0].bytes == len(b'{"request_id": "half')
    assert dropped[0].first_ts is None and dropped[0].last_ts is None

"""The columnar prediction-log reader gives exactly the line reader's frame, skip counts and examples.

Real flights (one day of 2013) are logged through the service's writer across several files, with the garbage a
killed or buggy writer leaves: every kind of bad line, wrong types inside inputs, blank lines, a request logged
twice, a torn last line. Chunks are made tiny so Arrow's fast path, the bisection and the line-by-line fallback all
run on a small log.
"""

from __future__ import annotations

import json
import os

import numpy as np
import pandas as pd
import pytest

from pipelines.config import parse_params
from pipelines.data.collect import collect
from pipelines.monitor import columnar
from pipelines.monitor.columnar import CACHE_DIR, read_predictions_columnar
from pipelines.monitor.log import predictions_frame
from pipelines.monitor.prediction_log import PredictionLog, prediction_record, read_prediction_log
from pipelines.monitor.replay import request_records, row_keys
from support.params import params_dict

_PARSE_FILE = columnar.parse_file


@pytest.fixture(scope="module")
def params(tmp_path_factory):
    root = tmp_path_factory.mktemp("params")
    return parse_params(params_dict(root, {"collect.start": "2013-09-02", "collect.end": "2013-09-03"}))


@pytest.fixture(scope="module")
def flights(params):
    table = collect(params.source, params.collect).head(600)
    columns = [*params.features.raw_columns]
    return request_records(table, columns, "time_hour", row_keys(table, "time_hour", params.source.key_columns))


def _record(row: dict, index: int, **change) -> dict:
    inputs = {key: value for key, value in row.items() if key != "request_id"}
    record = prediction_record(request_id=row["request_id"], ts=f"2024-01-01T00:{index // 60:02d}:{index % 60:02d}"
                               "+00:00", model_tag="delay-classifier:v1", inputs=inputs,
                               probability=float(np.clip((index % 97) / 97, 0, 1)), label=index % 2, threshold=0.4)
    record.update(change)
    return record


def _log_with_garbage(directory, flights) -> None:
    """~600 real flights over several rotated files, with garbage between and after them."""
    writer = PredictionLog(directory, rotate_hourly=True, rotate_bytes=60_000, clock=lambda: 1378044000.0)
    for start in range(0, len(flights), 50):
        writer.write([_record(row, start + i) for i, row in enumerate(flights[start:start + 50])])
    writer.write([_record(flights[3], 999, probability=0.99)])  # a retried request: its latest record wins
    path = writer.path
    writer.close()
    row = flights[7]
    odd = [
        json.dumps(_record(row, 1))[:50],                                # truncated line after a kill
        json.dumps({"hello": "world"}),                                  # wrong schema
        json.dumps(_record(row, 2, request_id="p", probability="high")),  # wrong type
        json.dumps(_record(row, 3, request_id="q", probability=1.7)),    # impossible probability
        json.dumps(_record(row, 4, request_id="n", probability=float("nan"))),
        json.dumps(_record(row, 5, request_id="l", label=True)),         # a bool is not a label
        json.dumps(_record(row, 6, request_id="f", label=1.0)),          # nor is a float
        json.dumps(_record(row, 7, request_id="i", model_tag=7)),
        "[1, 2]", "", "   ", "\x0c",
        json.dumps(_record(row, 8, request_id="s", inputs={**row, "distance": "1400"})),  # a number as text: kept
        json.dumps(_record(row, 9, request_id="d", inputs={**row, "distance": "far"})),   # bad number
        json.dumps(_record(row, 10, request_id="t", inputs={**row, "time_hour": "yesterday"})),  # bad time
        json.dumps(_record(row, 11, request_id="k", inputs={**row, "carrier": 7})),       # category as a number
        json.dumps(_record(row, 12, request_id="x", inputs={**row, "temp": None, "plane_engine": None})),
        json.dumps(_record(row, 13, request_id="m", inputs={k: v for k, v in row.items() if k != "origin"})),
        json.dumps(_record(row, 14, request_id="e", ts="not a time")),
    ]
    with open(path, "a") as handle:
        handle.writelines(line + "\n" for line in odd)
        handle.write(json.dumps(_record(flights[8], 15)))               # torn last line: no newline
    first = sorted(directory.glob("predictions-*.jsonl"))[0]
    with open(first, "a") as handle:                                    # garbage in the middle of a file too
        handle.write("{not json}\n" + json.dumps(_record(flights[9], 16, request_id="mid")) + "\n")


def _assert_same(fast, slow) -> None:
    pd.testing.assert_frame_equal(fast.frame, slow.frame)
    assert dict(fast.skipped) == dict(slow.skipped)
    assert fast.examples == slow.examples


def test_columnar_reader_equals_the_line_reader_on_a_log_with_garbage(params, flights, tmp_path, monkeypatch):
    monkeypatch.setattr(columnar, "CHUNK_LINES", 128)
    monkeypatch.setattr(columnar, "LEAF_LINES", 4)
    _log_with_garbage(tmp_path, flights)
    slow = predictions_frame(read_prediction_log(tmp_path), params.features, "time_hour")
    fast = read_predictions_columnar(tmp_path, params.features, "time_hour")
    _assert_same(fast, slow)
    # The log really holds what the comparison is about.
    assert len(list(tmp_path.glob("predictions-*.jsonl"))) >= 3
    assert len(slow.frame) > 550
    assert {"incomplete_line", "invalid_json", "missing_request_id", "bad_type_probability",
            "probability_out_of_range", "bad_type_label", "bad_type_model_tag", "not_an_object", "bad_time",
            "bad_number_distance"} <= set(slow.skipped)
    assert {"s", "k", "x", "m", "mid"} <= set(fast.frame["request_id"])
    assert fast.frame.set_index("request_id").loc[flights[3]["request_id"], "probability"] == 0.99


def test_sidecars_are_reused_refreshed_and_removed_with_their_file(params, flights, tmp_path, monkeypatch):
    monkeypatch.setattr(columnar, "CHUNK_LINES", 128)
    _log_with_garbage(tmp_path, flights)
    first = read_predictions_columnar(tmp_path, params.features, "time_hour")
    sidecars = sorted((tmp_path / CACHE_DIR).glob(f"*{columnar.SIDECAR_SUFFIX}"))
    assert len(sidecars) == len(list(tmp_path.glob("predictions-*.jsonl")))

    parsed = []
    monkeypatch.setattr(columnar, "parse_file", lambda path, *args: parsed.append(path) or _PARSE_FILE(path, *args))
    _assert_same(read_predictions_columnar(tmp_path, params.features, "time_hour"), first)
    assert parsed == []  # every file came from its sidecar

    newest = sorted(tmp_path.glob("predictions-*.jsonl"))[-1]
    with open(newest, "a") as handle:  # a file that grew is parsed again
        handle.write(json.dumps(_record(flights[20], 20, request_id="late")) + "\n")
    grown = read_predictions_columnar(tmp_path, params.features, "time_hour")
    assert parsed == [newest] and "late" in set(grown.frame["request_id"])
    _assert_same(grown, predictions_frame(read_prediction_log(tmp_path), params.features, "time_hour"))

    oldest = sorted(tmp_path.glob("predictions-*.jsonl"))[0]
    os.unlink(oldest)  # the size cap deleted it: its sidecar goes too
    read_predictions_columnar(tmp_path, params.features, "time_hour")
    assert not (tmp_path / CACHE_DIR / f"{oldest.name}{columnar.SIDECAR_SUFFIX}").exists()


def test_a_log_without_a_feature_skips_every_row_and_says_which(params, flights, tmp_path):
    row = {key: value for key, value in flights[0].items() if key != "carrier"}
    writer = PredictionLog(tmp_path, rotate_hourly=True, rotate_bytes=1 << 30, clock=lambda: 1378044000.0)
    writer.write([_record(row, 0), _record({**row, "request_id": "b"}, 1)])
    writer.close()
    fast = read_predictions_columnar(tmp_path, params.features, "time_hour", cache=False)
    assert fast.frame.empty and fast.skipped == {"inputs_missing_carrier": 2}
    _assert_same(fast, predictions_frame(read_prediction_log(tmp_path), params.features, "time_hour"))


def test_an_empty_or_missing_log_reads_as_no_rows(params, tmp_path):
    for directory in (tmp_path, tmp_path / "absent"):
        fast = read_predictions_columnar(directory, params.features, "time_hour")
        _assert_same(fast, predictions_frame(read_prediction_log(directory), params.features, "time_hour"))


def test_repeated_requests_keep_their_latest_record_across_files_even_when_every_hash_collides(
        params, flights, tmp_path, monkeypatch):
    """The duplicate rule runs on the rows whose id hash repeats; with every hash equal (all rows suspects) and
    with the real hashes, a request retried in a later file with an earlier log time, and one with an unreadable
    log time, keep the record the line reader keeps."""
    monkeypatch.setattr(columnar, "CHUNK_LINES", 128)
    writer = PredictionLog(tmp_path, rotate_hourly=True, rotate_bytes=20_000, clock=lambda: 1378044000.0)
    rows = flights[:120]
    writer.write([_record(row, index) for index, row in enumerate(rows)])
    writer.write([_record(rows[5], 0, ts="2023-12-31T00:00:00+00:00", probability=0.01),  # older: loses
                  _record(rows[6], 0, ts="2024-01-01T05:00:00+00:00", probability=0.02),  # newer: wins
                  _record(rows[7], 0, ts="garbled", probability=0.03)])  # no time: sorts first, loses
    writer.close()
    assert len(list(tmp_path.glob("predictions-*.jsonl"))) >= 2
    slow = predictions_frame(read_prediction_log(tmp_path), params.features, "time_hour")
    _assert_same(read_predictions_columnar(tmp_path, params.features, "time_hour", cache=False), slow)
    probability = slow.frame.set_index("request_id")["probability"]
    assert probability[rows[6]["request_id"]] == 0.02
    assert {probability[rows[5]["request_id"]], probability[rows[7]["request_id"]]}.isdisjoint({0.01, 0.03})
    monkeypatch.setattr(columnar, "_id_hashes", lambda chunks: np.zeros(sum(map(len, chunks)), dtype=np.uint64))
    _assert_same(read_predictions_columnar(tmp_path, params.features, "time_hour", cache=False), slow)


def test_id_hashes_are_equal_exactly_for_equal_ids_of_any_length():
    import pyarrow as pa

    ids = ["req-0001", "req-0002", "", "req-0001", "a", "é", "req-00010", "b", "a", "é", "req-0002x"]
    chunks = pa.chunked_array([pa.array(ids[:4]), pa.array(["drop", *ids[4:]]).slice(1)])  # an offset chunk
    fixed = pa.chunked_array([pa.array([f"req-{i:06d}" for i in range(500)] + ["req-000007"])])
    for column, values in ((chunks, ids), (fixed, fixed.to_pylist())):
        hashes = columnar._id_hashes(column.chunks)
        assert hashes.dtype == np.uint64 and len(hashes) == len(values)
        for i, first in enumerate(values):
            for j, second in enumerate(values):
                assert (hashes[i] == hashes[j]) == (first == second), (first, second)


def test_the_frame_is_typed_as_the_monitor_expects_also_when_every_row_is_dropped(params, flights, tmp_path):
    writer = PredictionLog(tmp_path, rotate_hourly=True, rotate_bytes=1 << 30, clock=lambda: 1378044000.0)
    writer.write([_record({**row, "time_hour": "yesterday"}, index) for index, row in enumerate(flights[:5])])
    writer.close()
    slow = predictions_frame(read_prediction_log(tmp_path), params.features, "time_hour")
    fast = read_predictions_columnar(tmp_path, params.features, "time_hour")
    assert fast.frame.empty and fast.skipped == {"bad_time": 5}
    _assert_same(fast, slow)
    _assert_same(read_predictions_columnar(tmp_path, params.features, "time_hour"), slow)  # from the sidecar


def test_dtypes_are_those_of_the_line_reader(params, flights, tmp_path):
    _log_with_garbage(tmp_path, flights)
    read_predictions_columnar(tmp_path, params.features, "time_hour")  # writes the sidecars
    fast = read_predictions_columnar(tmp_path, params.features, "time_hour").frame
    dtypes = fast.dtypes.astype(str).to_dict()
    assert dtypes == predictions_frame(read_prediction_log(tmp_path), params.features,
                                       "time_hour").frame.dtypes.astype(str).to_dict()
    assert dtypes["time_hour"] == "datetime64[ns, UTC]" and dtypes["label"] == "int64"
    for name in ("request_id", "ts", "model_tag", *params.features.categorical):
        assert dtypes[name] == "object"
        assert {type(value) for value in fast[name]} <= {str, type(None)}
    assert all(dtypes[name] == "float64" for name in (*params.features.numeric, "probability", "threshold"))


def test_texts_are_kept_as_dictionaries_only_where_they_repeat_and_read_back_the_same(params, flights, tmp_path):
    """A file of one-row requests (a log time per row) keeps its log times plain; a file of batched requests (one
    log time per batch) keeps them as a dictionary; the frame over both equals the line reader's."""
    import pyarrow as pa

    for hour, records in ((0, [_record(row, index) for index, row in enumerate(flights[:60])]),  # one a row
                          (1, [_record(row, 0, ts="2024-01-02T00:00:00+00:00") for row in flights[60:200]])):
        writer = PredictionLog(tmp_path, rotate_hourly=True, rotate_bytes=1 << 30,
                               clock=lambda hour=hour: 1378044000.0 + 3600 * hour)
        writer.write(records)
        writer.close()
    slow = predictions_frame(read_prediction_log(tmp_path), params.features, "time_hour")
    _assert_same(read_predictions_columnar(tmp_path, params.features, "time_hour"), slow)
    _assert_same(read_predictions_columnar(tmp_path, params.features, "time_hour"), slow)  # from the sidecars
    kinds = {}
    for sidecar in sorted((tmp_path / CACHE_DIR).glob(f"*{columnar.SIDECAR_SUFFIX}")):
        schema = pa.ipc.open_file(pa.OSFile(str(sidecar))).schema
        kinds[sidecar.name] = [schema.field(name).type for name in ("ts", "model_tag", "request_id")]
    assert len(kinds) == 2
    assert all(tag != pa.string() and ids == pa.string() for _, tag, ids in kinds.values())
    assert sorted(str(ts) for ts, _, _ in kinds.values()) == [
        "dictionary<values=string, indices=int32, ordered=0>", "string"]


def test_sidecars_of_an_earlier_format_are_removed_and_the_file_parsed_again(params, flights, tmp_path):
    writer = PredictionLog(tmp_path, rotate_hourly=True, rotate_bytes=1 << 30, clock=lambda: 1378044000.0)
    writer.write([_record(row, index) for index, row in enumerate(flights[:20])])
    name = writer.path.name
    writer.close()
    (tmp_path / CACHE_DIR).mkdir()
    old = tmp_path / CACHE_DIR / f"{name}.parquet"
    old.write_bytes(b"PAR1 an earlier version's sidecar")
    _assert_same(read_predictions_columnar(tmp_path, params.features, "time_hour"),
                 predictions_frame(read_prediction_log(tmp_path), params.features, "time_hour"))
    assert not old.exists()
    assert (tmp_path / CACHE_DIR / f"{name}{columnar.SIDECAR_SUFFIX}").exists()

"""Reading a week of logged predictions into the monitor: the line reader vs the columnar reader (issue 19 item 4).

    python -m benchmarks.scale_log 10000000 [--seed S] [--dir DIR] [--no-line]   # via benchmarks.scale --log-rows

Writes N predictions of real flights (the Sep-Dec 2013 replay rows, cycled, each with its own request id and its
own log time, as one-row requests over a week would have them) through
the service's writer (`PredictionLog`, 100 MB rotation) into a temp directory, then, each in a fresh process:
the line reader (`read_prediction_log` + `predictions_frame`) on the first files up to 1M rows (its rows/s gives its
time for N), the columnar reader cold (no sidecars: every file parsed, sidecars written) and warm (every closed
file from its sidecar). Prints one JSON line: seconds and peak RSS of each read.

`--dir DIR` keeps the log: written there when DIR holds no log files yet, reused as it is otherwise (its sidecars
are deleted before the cold read), so the reads can be timed again without writing 5 GiB. `--no-line` skips the
line reader (~30 s per million rows).
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from support.memory import peak_rss_bytes

LINE_READER_ROWS = 1_000_000
WEEK_S = 7 * 24 * 3600
BATCH = 1000


def write_log(directory: Path, rows: int, seed: int) -> dict[str, Any]:
    import numpy as np

    from pipelines.config import load_params
    from pipelines.data.collect import collect
    from pipelines.monitor.prediction_log import PredictionLog, prediction_record
    from pipelines.monitor.replay import request_records, row_keys

    params = load_params("params.yaml", {"collect.start": "2013-09-01", "collect.end": "2014-01-01"})
    table = collect(params.source, params.collect)
    pool = request_records(table, params.features.raw_columns, params.source.time_column,
                           row_keys(table, params.source.time_column, params.source.key_columns))
    for row in pool:
        row.pop("request_id")
    rng = np.random.default_rng(seed)
    probabilities = rng.beta(2, 6, 100_003).tolist()
    writer = PredictionLog(directory, rotate_hourly=False, rotate_bytes=100_000_000, clock=lambda: 1_700_000_000.0)
    for start in range(0, rows, BATCH):
        batch = []
        for index in range(start, min(start + BATCH, rows)):
            probability = probabilities[index % len(probabilities)]
            # One-row requests spread over a week, each stamped by the service (`utc_now_iso`): a log time per row.
            stamp = datetime.fromtimestamp(1_700_000_000 + index * WEEK_S / rows, UTC).isoformat()
            batch.append(prediction_record(request_id=f"req-{index:010d}", ts=stamp,
                                           model_tag="delay-classifier:bench", inputs=pool[index % len(pool)],
                                           probability=probability, label=int(probability >= 0.3), threshold=0.3))
        writer.write(batch)
    writer.close()
    files = sorted(directory.glob("predictions-*.jsonl"))
    return {"files": len(files), "bytes": sum(path.stat().st_size for path in files)}


def read_once(kind: str, directory: Path) -> dict[str, Any]:
    from pipelines.config import load_params

    params = load_params("params.yaml")
    started, cpu = time.perf_counter(), time.process_time()
    if kind == "line":
        from pipelines.contracts import PredictionRecord
        from pipelines.io import PREDICTION_LOG_GLOB as FILE_GLOB
        from pipelines.monitor.log import predictions_frame
        from pipelines.monitor.prediction_log import log_files, read_records

        files, rows = [], 0
        for path in log_files(directory, FILE_GLOB):
            files.append(path)
            rows += path.read_bytes().count(b"\n")
            if rows >= LINE_READER_ROWS:
                break
        started, cpu = time.perf_counter(), time.process_time()
        frame = predictions_frame(read_records(files, PredictionRecord), params.features, params.source.time_column)
    else:
        from pipelines.monitor.columnar import read_predictions_columnar

        frame = read_predictions_columnar(directory, params.features, params.source.time_column)
    return {"kind": kind, "rows": len(frame.frame), "seconds": time.perf_counter() - started,
            "cpu_s": time.process_time() - cpu,
            "peak_rss": peak_rss_bytes()}


def _in_child(kind: str, directory: Path) -> dict[str, Any]:
    done = subprocess.run([sys.executable, "-m", "benchmarks.scale_log", "--read", kind, str(directory)],
                          capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"{kind} read failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> int:
    if sys.argv[1] == "--read":
        print(json.dumps(read_once(sys.argv[2], Path(sys.argv[3]))))
        return 0
    parser = argparse.ArgumentParser()
    parser.add_argument("rows", type=int)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--dir", type=Path, help="keep the log here (write it if absent, else reuse it)")
    parser.add_argument("--no-line", action="store_true", help="skip the line reader")
    args = parser.parse_args()
    rows = args.rows
    with tempfile.TemporaryDirectory(prefix="bench-log-") as temp:
        directory = args.dir or Path(temp)
        directory.mkdir(parents=True, exist_ok=True)
        existing = sorted(directory.glob("predictions-*.jsonl"))
        if existing:
            written = {"files": len(existing), "bytes": sum(path.stat().st_size for path in existing),
                       "write_s": None}
            shutil.rmtree(directory / ".columnar", ignore_errors=True)  # the cold read parses every file
            print(f"reusing {directory}: {written['files']} files", file=sys.stderr, flush=True)
        else:
            started = time.perf_counter()
            written = write_log(directory, rows, args.seed)
            written["write_s"] = time.perf_counter() - started
            print(f"wrote {rows:,} predictions, {written['files']} files, {written['bytes'] / 2**30:.2f} GiB "
                  f"in {written['write_s']:.0f} s", file=sys.stderr, flush=True)
        line = None if args.no_line else _in_child("line", directory)
        cold = _in_child("columnar", directory)
        warm = _in_child("columnar", directory)
    assert cold["rows"] == warm["rows"] == rows, (cold["rows"], warm["rows"], rows)
    read_s = {"columnar, cold (parse + write sidecars)": cold["seconds"], "columnar, warm (sidecars)": warm["seconds"]}
    cpu_s = {"cold": cold["cpu_s"], "warm": warm["cpu_s"]}
    peak_rss = {"cold": cold["peak_rss"], "warm": warm["peak_rss"]}
    if line is not None:
        scale = rows / line["rows"]
        read_s = {f"line reader (measured on {line['rows']:,} rows, scaled to {rows:,})": line["seconds"] * scale,
                  **read_s}
        cpu_s = {"line (scaled)": line["cpu_s"] * scale, **cpu_s}
        peak_rss = {"line": line["peak_rss"], **peak_rss}
    print(json.dumps({"rows": rows, **written, "read_s": read_s, "cpu_s": cpu_s, "peak_rss": peak_rss}))
    return 0


if __name__ == "__main__":
    sys.exit(main())

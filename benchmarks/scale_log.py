"""Reading a week of logged predictions into the monitor: the line reader vs the columnar reader (issue 19 item 4).

    python -m benchmarks.scale_log 10000000 [seed]      # run by `python -m benchmarks.scale --log-rows N`

Writes N predictions of real flights (the Sep-Dec 2013 replay rows, cycled, each with its own request id) through
the service's writer (`PredictionLog`, 100 MB rotation) into a temp directory, then, each in a fresh process:
the line reader (`read_prediction_log` + `predictions_frame`) on the first files up to 1M rows (its rows/s gives its
time for N), the columnar reader cold (no sidecars: every file parsed, sidecars written) and warm (every closed
file from its sidecar). Prints one JSON line: seconds and peak RSS of each read.
"""

from __future__ import annotations

import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

LINE_READER_ROWS = 1_000_000
BATCH = 1000


def write_log(directory: Path, rows: int, seed: int) -> dict[str, Any]:
    import numpy as np

    from pipelines.collect import collect
    from pipelines.config import load_params
    from pipelines.prediction_log import PredictionLog, prediction_record
    from pipelines.replay import flight_keys, request_records

    params = load_params("params.yaml", {"collect.start": "2013-09-01", "collect.end": "2014-01-01"})
    table = collect(params.source, params.collect)
    pool = request_records(table, params.features.raw_columns, params.source.time_column,
                           flight_keys(table, params.source.time_column))
    for row in pool:
        row.pop("request_id")
    rng = np.random.default_rng(seed)
    probabilities = rng.beta(2, 6, 100_003).tolist()
    writer = PredictionLog(directory, rotate_hourly=False, rotate_bytes=100_000_000, clock=lambda: 1_700_000_000.0)
    for start in range(0, rows, BATCH):
        batch = []
        for index in range(start, min(start + BATCH, rows)):
            probability = probabilities[index % len(probabilities)]
            batch.append(prediction_record(request_id=f"req-{index:010d}", ts="2023-11-14T22:13:20.123456+00:00",
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
        from pipelines.monitor.log import predictions_frame
        from pipelines.prediction_log import FILE_GLOB, PredictionRecord, log_files, read_records

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
            "peak_rss": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024}


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
    rows, seed = int(sys.argv[1]), int(sys.argv[2]) if len(sys.argv) > 2 else 0
    with tempfile.TemporaryDirectory(prefix="bench-log-") as temp:
        directory = Path(temp)
        started = time.perf_counter()
        written = write_log(directory, rows, seed)
        written["write_s"] = time.perf_counter() - started
        print(f"wrote {rows:,} predictions, {written['files']} files, {written['bytes'] / 2**30:.2f} GiB "
              f"in {written['write_s']:.0f} s", file=sys.stderr, flush=True)
        line = _in_child("line", directory)
        cold = _in_child("columnar", directory)
        warm = _in_child("columnar", directory)
    assert cold["rows"] == warm["rows"] == rows, (cold["rows"], warm["rows"], rows)
    line_for_all = line["seconds"] * rows / line["rows"]
    scale = rows / line["rows"]
    print(json.dumps({"rows": rows, **written,
                      "read_s": {f"line reader (measured on {line['rows']:,} rows, scaled to {rows:,})":
                                 line_for_all, "columnar, cold (parse + write sidecars)": cold["seconds"],
                                 "columnar, warm (sidecars)": warm["seconds"]},
                      "cpu_s": {"line (scaled)": line["cpu_s"] * scale, "cold": cold["cpu_s"], "warm": warm["cpu_s"]},
                      "peak_rss": {"line": line["peak_rss"], "cold": cold["peak_rss"], "warm": warm["peak_rss"]}}))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Benchmark: the validate stage on the collected window at 1x and 10x its rows, against the time to read the table.

    .venv/bin/python -m benchmarks.validate [--factors 1 10] [--period month]

The 1x table is what `collect` writes for params.yaml's window (real flights); the 10x table is ten copies of it,
each shifted by a further 52 weeks (same weekdays, unique keys), so the window holds ten times the rows and periods.
Each size runs in its own subprocess: read time (`pipelines.io.parquet_frame` of the file, the stage's read),
validation time (GX on the whole table and on each period, plus writing result.json, summary.json and Data Docs),
and the process's own peak RSS (VmHWM, `support.memory`) before and after validation. GX's import (seconds) is
done before timing. Prints one line per size and a JSON summary. Goal (issue 14): validation within 2x the read
time, linear in rows. It also prints GX's own cost per check (the suite on the table's first 10 rows) times the
checks the run evaluates (the whole-table checks plus the per-period checks times the periods): the time GX takes
before the data's size counts, to set against the read.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

FLOOR_ROWS = 10  # rows of the table that measure GX's cost per check apart from the data


def _write_tables(workdir: Path, factors: list[int]) -> dict[int, tuple[Path, str, str]]:
    import pandas as pd

    from pipelines.config import load_params
    from pipelines.data.collect import collect

    params = load_params("params.yaml")
    table = collect(params.source, params.collect)
    tables = {}
    for factor in factors:
        shift = pd.Timedelta(weeks=52)
        copies = [table.assign(time_hour=table["time_hour"] + shift * k) for k in range(factor)]
        frame = pd.concat(copies, ignore_index=True) if factor > 1 else table
        path = workdir / f"table_{factor}x.parquet"
        frame.to_parquet(path, index=False)
        end = params.collect.end + (factor - 1) * shift
        tables[factor] = (path, params.collect.start.isoformat(), end.isoformat())
    return tables


def _one(path: Path, start: str, end: str, period: str) -> dict:
    from datetime import datetime

    from pipelines.config import load_params
    from pipelines.data.suite import read_suite
    from pipelines.data.validate import _import_gx, run_validation, write_reports
    from pipelines.io import file_md5, parquet_frame
    from support.memory import peak_rss_mib

    params = load_params("params.yaml")
    _import_gx()  # import time is not validation time
    suite = read_suite(params.validate_.suite)
    started = time.perf_counter()
    frame = parquet_frame(path)  # the read the validate stage does
    read_s = time.perf_counter() - started
    rss_before = peak_rss_mib()
    started = time.perf_counter()
    run = run_validation(frame, suite, origin=params.validate_.suite, time_column=params.source.time_column,
                         period=period, window=(datetime.fromisoformat(start), datetime.fromisoformat(end)),
                         max_duplicate_share=params.validate_.max_duplicate_share,
                         chunk_rows=params.validate_.chunk_rows)
    checked_s = time.perf_counter() - started
    with tempfile.TemporaryDirectory() as reports:
        summary = write_reports(run, Path(reports), table=path, table_md5=file_md5(path))
    validate_s = time.perf_counter() - started
    peak_mb = peak_rss_mib()
    # GX's own cost per check, apart from the rows: the same suite on the table's first FLOOR_ROWS rows.
    started = time.perf_counter()
    tiny = run_validation(frame.iloc[:FLOOR_ROWS], suite, origin=params.validate_.suite,
                          time_column=params.source.time_column, period=period,
                          max_duplicate_share=params.validate_.max_duplicate_share)
    per_check_s = (time.perf_counter() - started) / tiny.summary.evaluated
    floor_s = per_check_s * summary.evaluated
    return {"rows": len(frame), "periods": len(summary.periods), "checks": summary.evaluated,
            "success": summary.success, "read_s": round(read_s, 2), "gx_s": round(checked_s, 2),
            "validate_s": round(validate_s, 2), "ratio_to_read": round(validate_s / read_s, 1),
            "gx_ms_per_check": round(per_check_s * 1000, 2), "gx_floor_s": round(floor_s, 2),
            "floor_ratio_to_read": round(floor_s / read_s, 1),
            "rss_before_mb": round(rss_before), "peak_rss_mb": round(peak_mb)}


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--factors", type=int, nargs="+", default=[1, 10])
    parser.add_argument("--period", default="month", choices=["month", "week"])
    parser.add_argument("--one", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(_one(Path(args.one[0]), args.one[1], args.one[2], args.period)))
        return 0
    results = []
    with tempfile.TemporaryDirectory(prefix="bench-validate-") as workdir:
        for factor, (path, start, end) in _write_tables(Path(workdir), args.factors).items():
            done = subprocess.run([sys.executable, "-m", "benchmarks.validate", "--period", args.period,
                                   "--one", str(path), start, end], capture_output=True, text=True, check=True)
            result = {"factor": factor, **json.loads(done.stdout.strip().splitlines()[-1])}
            results.append(result)
            print(f"{factor:>3}x {result['rows']:>10,} rows, {result['periods']:>3} periods: read "
                  f"{result['read_s']:6.2f} s, validate {result['validate_s']:7.2f} s (GX {result['gx_s']:.2f} s) "
                  f"= {result['ratio_to_read']:.0f}x read; peak RSS {result['peak_rss_mb']:,} MB", flush=True)
            print(f"     GX's own cost: {result['gx_ms_per_check']:.1f} ms a check on {FLOOR_ROWS} rows x "
                  f"{result['checks']:,} checks = {result['gx_floor_s']:.2f} s before any row is read "
                  f"(= {result['floor_ratio_to_read']:.0f}x read)", flush=True)
    if len(results) > 1:
        first, last = results[0], results[-1]
        scale = (last["validate_s"] / first["validate_s"]) / (last["rows"] / first["rows"])
        print(f"time per row at {last['factor']}x vs {first['factor']}x: {scale:.2f} (1.00 = linear)")
    print(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())

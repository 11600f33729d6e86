"""Benchmark: one window's monitoring report (Evidently drift + surges) for 10k, 50k and 200k logged rows against a
200k-row reference; wall time and peak memory (VmHWM, `support.memory`), each size in its own subprocess.

    .venv/bin/python benchmarks/monitoring.py [--sizes 10000 50000 200000] [--reference 200000]

Rows are real flights (all of 2013, resampled with replacement to reach the size); probabilities are random
(scoring is not what is measured). Prints one line per size and a JSON summary.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time


def _one(rows: int, reference_rows: int) -> dict:
    import numpy as np

    from pipelines.config import load_params
    from pipelines.data.collect import collect
    from pipelines.monitor.drift import analyse_window
    from pipelines.monitor.reference import sample_reference
    from support.memory import peak_rss_mib

    params = load_params("params.yaml", {"collect.end": "2014-01-01"})
    table = collect(params.source, params.collect)
    base = sample_reference(table, params.features, "time_hour",
                                       params.monitor.model_copy(update={"reference_rows": len(table)}))
    rng = np.random.default_rng(0)
    reference = base.sample(reference_rows, replace=True, random_state=1).reset_index(drop=True)
    reference["probability"] = rng.beta(2, 6, len(reference))
    current = base.sample(rows, replace=True, random_state=2).reset_index(drop=True)
    current = current.assign(probability=rng.beta(2, 6, rows), model_tag="bench", request_id=range(rows))
    # Thresholds as registration would learn them: the reference's own weeks against the rest (timed separately
    # by benchmarks/drift_scenarios.py); equal weights, the reference's own categories as the vocabulary.
    from pipelines.monitor.calibration import calibrate, size_windows

    params = params.model_copy(update={"monitor": size_windows(reference["time_hour"], params.monitor)})
    weights = {name: 1 / len(params.features.raw_columns) for name in params.features.raw_columns}
    vocabulary = {name: sorted(base[name].dropna().unique()) for name in params.features.categorical}
    calibration = calibrate(reference, reference, params.features, "time_hour",
                            params.monitor, weights, vocabulary)
    import evidently.presets  # noqa: F401  (import time is not report time)

    before = peak_rss_mib()
    started = time.perf_counter()
    result = analyse_window(current, reference, params.features, "time_hour", params.monitor, calibration)
    seconds = time.perf_counter() - started
    html_started = time.perf_counter()
    html = result.snapshot.get_html_str(as_iframe=False)
    html_seconds = time.perf_counter() - html_started
    return {"rows": rows, "reference_rows": reference_rows, "report_s": round(seconds, 2),
            "html_s": round(html_seconds, 2), "html_mb": round(len(html) / 2**20, 1),
            "rss_before_report_mb": round(before), "peak_rss_mb": round(peak_rss_mib()),
            "drift_share": result.report.drift_share}


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 50_000, 200_000])
    parser.add_argument("--reference", type=int, default=200_000)
    parser.add_argument("--one", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(_one(args.one, args.reference)))
        return 0
    results = []
    for size in args.sizes:
        out = subprocess.run([sys.executable, __file__, "--one", str(size), "--reference", str(args.reference)],
                             capture_output=True, text=True, check=True)
        result = json.loads(out.stdout.strip().splitlines()[-1])
        results.append(result)
        print(f"{size:>7} logged rows vs {args.reference} reference: report {result['report_s']:6.2f} s, "
              f"HTML {result['html_s']:5.2f} s ({result['html_mb']} MB), peak RSS {result['peak_rss_mb']} MB "
              f"(before report {result['rss_before_report_mb']} MB)", flush=True)
    print(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())

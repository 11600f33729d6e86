"""Inference figures per variant and runtime, on the same rows in one run: what each costs and what it loses.

    python -m pipelines optimize          # the variants (paths.variants_dir), once
    python -m benchmarks.inference [--taskset 0] [--rows 2000] [--out table.md]

Per predictor: its file's size, load time, single-row latency p50/p99, rows/s on 1,000-row batches, peak memory,
test ROC AUC and its delta to the full model's, and the largest |probability difference| from the full model's
`Booster.predict` on the first 1,000 test rows. Each predictor is measured in a fresh child process
(`--one NAME`), so its load time and peak memory are its own and no predictor warms another's caches; with
`--taskset CPU` every child is pinned to that one core (`taskset -c`). Every predictor is called on one thread
on the encoded matrix (the model call the service makes after `pipelines.features.encode`; encoding is the same
for all and not timed here). The predictors: LightGBM's `Booster.predict`, lleaves' compiled forest (what the
service uses, services/compiled.py), TL2cgen's C built by gcc as a shared library, onnxruntime on the ONNX file,
the quantised ONNX file, and "compact": TL2cgen's C with quantised thresholds built by `cc -Os`, stripped, called
one row at a time through ctypes (`lightgbm_exchange.compact_predictor`), each for the full model and for the
variants `optimize` made (`leaves`: the refit with fewer leaves per tree).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

# (name, variant, runtime): variant as `optimize` names it ("full": paths.model_dir), runtime how it is run.
PREDICTORS = [
    ("booster full", "full", "booster"), ("lleaves full", "full", "lleaves"), ("tl2cgen full", "full", "tl2cgen"),
    ("onnxruntime full", "full", "onnx"), ("onnxruntime quantised", "quantised", "onnx"),
    ("booster trees", "trees", "booster"), ("lleaves trees", "trees", "lleaves"),
    ("booster pruned", "pruned", "booster"), ("lleaves pruned", "pruned", "lleaves"),
    ("tl2cgen pruned", "pruned", "tl2cgen"), ("onnxruntime pruned", "pruned", "onnx"),
    ("compact full", "full", "compact"), ("booster leaves", "leaves", "booster"),
    ("lleaves leaves", "leaves", "lleaves"), ("compact leaves", "leaves", "compact"),
]
PROBE_ROWS = 1000
BATCH_ROWS = 1000
BATCH_REPEATS = 20


def _compact_library(params: Any, variant: str) -> Path:
    """The compact library of `variant` in paths.variants_dir/bench, built once per model file (its MD5 names it):
    building it is compiling, not loading, so it happens before the timed load."""
    from pipelines import contracts, io
    from pipelines.model.catalog import load_model
    from pipelines.model.families import lightgbm_exchange as exchange
    from pipelines.model.optimize import variant_dir

    directory = params.paths.model_dir if variant == "full" else variant_dir(params, variant)
    md5 = io.file_md5(contracts.model_file(directory))
    library = params.paths.variants_dir / "bench" / f"{variant}-{md5[:8]}-compact{io.SHARED_LIBRARY_SUFFIX}"
    return library if library.exists() else exchange.compact_library(load_model(directory), library)


def _loader(params: Any, variant: str, runtime: str) -> tuple[Callable[[np.ndarray], np.ndarray], Path, Any]:
    """(predict, its file, the model whose schema encodes its rows), loaded as a caller of that runtime would."""
    from pipelines import contracts, io
    from pipelines.model.catalog import load_model
    from pipelines.model.families import lightgbm_exchange as exchange
    from pipelines.model.optimize import variant_dir

    directory = params.paths.model_dir if variant in ("full", "quantised") else variant_dir(params, variant)
    model = load_model(directory)
    if runtime == "booster":
        return (lambda matrix: model.predict_matrix(matrix, 1)), contracts.model_file(directory), model
    if runtime == "lleaves":
        from services.compiled import load_compiled_model

        forest = load_compiled_model(model, directory, params.paths.compiled_dir)
        return forest.predict, forest.object_file, model
    if runtime == "tl2cgen":
        library = params.paths.variants_dir / "bench" / f"{variant}{io.SHARED_LIBRARY_SUFFIX}"
        library.parent.mkdir(parents=True, exist_ok=True)
        return exchange.c_library_predictor(model, library), library, model
    if runtime == "compact":
        library = _compact_library(params, variant)
        return exchange.compact_predictor(library, len(model.schema.feature_names)), library, model
    if runtime == "onnx":
        onnx_file = variant_dir(params, variant if variant == "quantised" else "onnx") / io.ONNX_FILE
        if variant not in ("full", "quantised"):  # a pruned variant's ONNX, converted here once
            onnx_file = params.paths.variants_dir / "bench" / f"{variant}-{io.ONNX_FILE}"
            if not onnx_file.exists():
                data = exchange.onnx_bytes(model)
                io.write_atomic(onnx_file, lambda temp: Path(temp).write_bytes(data))
        return exchange.onnx_predictor(onnx_file.read_bytes()), onnx_file, model
    raise ValueError(f"unknown runtime {runtime!r}")


def _rss_mib() -> float:
    import psutil

    return psutil.Process().memory_info().rss / 2**20


def measure_one(params: Any, name: str, single_rows: int) -> dict[str, Any]:
    """One predictor's figures, in this (fresh) process."""
    import pandas as pd

    from pipelines import io
    from pipelines.features import LABEL, encode_frame
    from pipelines.model.optimize import roc_auc
    from support.memory import peak_rss_mib

    _, variant, runtime = next(entry for entry in PREDICTORS if entry[0] == name)
    test = pd.read_parquet(io.prepared_path(params.paths, "test"))
    before = _rss_mib()
    started = time.perf_counter()
    predict, file, model = _loader(params, variant, runtime)
    load_s = time.perf_counter() - started
    matrix = encode_frame(test, model.schema)
    started = time.perf_counter()
    predict(matrix[:1])  # a first call: lazily built state is part of loading
    load_s += time.perf_counter() - started
    latencies = []
    for i in range(single_rows):
        row = matrix[i % len(matrix): i % len(matrix) + 1]
        began = time.perf_counter()
        predict(row)
        latencies.append(time.perf_counter() - began)
    batch = matrix[:BATCH_ROWS]
    timings = []
    for _ in range(BATCH_REPEATS):
        began = time.perf_counter()
        predict(batch)
        timings.append(time.perf_counter() - began)
    proba = predict(matrix)
    peak = peak_rss_mib()
    return {"name": name, "variant": variant, "runtime": runtime, "file": str(file), "bytes": file.stat().st_size,
            "trees": getattr(model, "trees", None), "features": len(model.schema.feature_names),
            "load_s": load_s, "p50_us": float(np.percentile(latencies, 50)) * 1e6,
            "p99_us": float(np.percentile(latencies, 99)) * 1e6,
            "rows_per_s": BATCH_ROWS / float(np.median(timings)),
            "peak_mib": peak, "added_mib": peak - before,
            "test_roc_auc": roc_auc(test[LABEL].to_numpy(), proba), "probe": proba[:PROBE_ROWS].tolist()}


def build_libraries(params: Any) -> None:
    """Compile every shared library a predictor loads (TL2cgen's, the compact ones) once, here, before any child
    runs: compiling is not loading, as lleaves' object files are already in their cache."""
    for _, variant, runtime in PREDICTORS:
        if runtime in ("tl2cgen", "compact"):
            _loader(params, variant, runtime)


def run_all(params_file: str, taskset: str | None, single_rows: int) -> list[dict[str, Any]]:
    """Every predictor in its own child process (pinned with `taskset -c` when asked), full model first."""
    results = []
    for name, _, _ in PREDICTORS:
        command = [sys.executable, "-m", "benchmarks.inference", "--params", params_file, "--one", name,
                   "--rows", str(single_rows)]
        if taskset is not None:
            command = ["taskset", "-c", taskset, *command]
        done = subprocess.run(command, capture_output=True, text=True)
        if done.returncode != 0:
            raise RuntimeError(f"{name}: {done.stderr.strip()[-2000:]}")
        results.append(json.loads(done.stdout.strip().splitlines()[-1]))
    full_auc, full_probe = results[0]["test_roc_auc"], np.array(results[0]["probe"])
    for result in results:
        result["auc_delta"] = result["test_roc_auc"] - full_auc
        result["max_prob_diff"] = float(np.max(np.abs(np.array(result.pop("probe")) - full_probe)))
    return results


def table(results: list[dict[str, Any]], title: str) -> str:
    """The results as a markdown table, sizes and speeds also as ratios to the compiled full forest (lleaves)."""
    compiled = next(result for result in results if result["name"] == "lleaves full")
    lines = [f"**{title}**", "",
             "| predictor | trees | features | file | size vs lleaves full | load | single row p50 / p99 | "
             "p50 vs lleaves full | rows/s (1,000-row batches) | peak RSS (model's own) | test ROC AUC | "
             "delta to full | max abs prob diff |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in results:
        lines.append(
            f"| {r['name']} | {r['trees']} | {r['features']} | {r['bytes'] / 1024:,.0f} KiB | "
            f"{compiled['bytes'] / r['bytes']:.1f}x smaller | {r['load_s'] * 1e3:,.0f} ms | "
            f"{r['p50_us']:.1f} / {r['p99_us']:.1f} us | {compiled['p50_us'] / r['p50_us']:.2f}x | "
            f"{r['rows_per_s']:,.0f} | {r['peak_mib']:.0f} MiB ({r['added_mib']:+.0f}) | {r['test_roc_auc']:.5f} | "
            f"{r['auc_delta']:+.5f} | {r['max_prob_diff']:.1e} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--rows", type=int, default=2000, help="single-row calls per predictor (default 2000)")
    parser.add_argument("--taskset", metavar="CPU", help="also run every child pinned to this core (taskset -c)")
    parser.add_argument("--out", help="write the markdown tables here too")
    parser.add_argument("--one", help=argparse.SUPPRESS)  # a child: measure one predictor, print JSON
    args = parser.parse_args(argv)
    from pipelines.config import load_params

    params = load_params(args.params)
    if args.one:
        print(json.dumps(measure_one(params, args.one, args.rows)))
        return
    build_libraries(params)
    runs = {"Unpinned": run_all(args.params, None, args.rows)}
    if args.taskset is not None:
        runs[f"Pinned to one core (taskset -c {args.taskset})"] = run_all(args.params, args.taskset, args.rows)
    text = "\n\n".join(table(results, title) for title, results in runs.items()) + "\n"
    print(text)
    if args.out:
        Path(args.out).write_text(text)
        Path(args.out).with_suffix(".json").write_text(json.dumps(runs, indent=2) + "\n")


if __name__ == "__main__":
    main()

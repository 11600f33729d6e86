"""Batch inference on a GPU (issue 40): the champion's forest compiled to tensor operations by Hummingbird and run
with PyTorch on CUDA, beside LightGBM's `Booster.predict` on the same machine's CPU cores, on the same rows.

    python -m benchmarks.inference_gpu --prepare DIR   # here: the champion's model file, the encoded test split
    python -m benchmarks.inference_gpu --run DIR       # on the GPU machine (lightgbm, torch, hummingbird-ml)

`--prepare` needs the project (the champion `dvc repro` trained, `pipelines.features.encode_frame`); it writes the
learner's file, the encoded test matrix, its labels and the project's own probabilities for it. `--run` needs only
numpy, lightgbm, torch and hummingbird-ml (none of the project: a GPU machine need not hold its environment) and
prints, per runtime and batch size, rows/s (median of repeats, after a warm-up; GPU times include the copy of the
batch to the device and of the answer back), the test ROC AUC and the largest |probability difference| from the
project's own predictions. Hummingbird converts the LightGBM model directly, else through its ONNX form (the
first that converts is used); a runtime that cannot take the model is reported with its error, not skipped.
hummingbird-ml and torch are not project dependencies (the service does not use them): install them where this
runs (`pip install hummingbird-ml`).
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
import traceback
from pathlib import Path
from typing import Any

import numpy as np

BATCHES = (1_000, 10_000, 100_000, 1_000_000)
REPEATS = 5
MATRIX, LABELS, EXPECTED, MODEL = "matrix.npy", "labels.npy", "expected.npy", "model.txt"


def prepare(out: Path, params_file: str = "params.yaml") -> dict[str, Any]:
    """The champion's learner file and the encoded test split with its labels and the project's probabilities."""
    import pandas as pd

    from pipelines import contracts, io
    from pipelines.config import load_params
    from pipelines.features import LABEL, encode_frame
    from pipelines.model.catalog import load_model

    params = load_params(Path(params_file))
    model = load_model(params.paths.model_dir)
    test = pd.read_parquet(io.prepared_path(params.paths, "test"))
    matrix = encode_frame(test, model.schema)
    out.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(contracts.model_file(params.paths.model_dir), out / MODEL)
    np.save(out / MATRIX, matrix)
    np.save(out / LABELS, test[LABEL].to_numpy().astype(np.int8))
    np.save(out / EXPECTED, model.predict_matrix(matrix, 1))
    return {"rows": int(matrix.shape[0]), "features": int(matrix.shape[1]), "out": str(out)}


def _auc(labels: np.ndarray, proba: np.ndarray) -> float:
    from sklearn.metrics import roc_auc_score

    return float(roc_auc_score(labels, proba))


def _timed(predict: Any, batch: np.ndarray, sync: Any = None) -> float:
    """Median seconds of `REPEATS` calls after one warm-up."""
    predict(batch)
    times = []
    for _ in range(REPEATS):
        began = time.perf_counter()
        predict(batch)
        if sync is not None:
            sync()
        times.append(time.perf_counter() - began)
    return float(np.median(times))


def _hummingbird(booster: Any, sample: np.ndarray) -> tuple[Any, str]:
    """Hummingbird's torch model of the forest on CUDA: from the Booster, else from its ONNX form."""
    from hummingbird.ml import convert

    errors = []
    try:
        return convert(booster, "torch", sample, device="cuda"), "hummingbird (LightGBM Booster -> torch)"
    except Exception as error:  # noqa: BLE001 - reported, then the next route is tried
        errors.append(f"from the Booster: {type(error).__name__}: {error}")
    try:
        import onnxmltools
        from onnxmltools.convert.common.data_types import FloatTensorType

        inputs = [("input", FloatTensorType([None, sample.shape[1]]))]
        onnx_model = onnxmltools.convert_lightgbm(booster, initial_types=inputs, zipmap=False)
        return convert(onnx_model, "torch", sample, device="cuda"), "hummingbird (ONNX -> torch)"
    except Exception as error:  # noqa: BLE001
        errors.append(f"from ONNX: {type(error).__name__}: {error}")
    raise RuntimeError("; ".join(errors))


def run(directory: Path) -> dict[str, Any]:
    """Every runtime's figures on the prepared rows (tiled to the largest batch)."""
    import lightgbm as lgb
    import torch

    matrix, labels, expected = (np.load(directory / name) for name in (MATRIX, LABELS, EXPECTED))
    tiled = np.tile(matrix, (int(np.ceil(max(BATCHES) / len(matrix))), 1))[:max(BATCHES)]
    booster = lgb.Booster(model_file=str(directory / MODEL))
    results: dict[str, Any] = {"rows": len(matrix), "device": torch.cuda.get_device_name(0), "runtimes": []}
    cpu = booster.predict(matrix)
    entry = {"runtime": "LightGBM Booster.predict (all CPU cores)", "test_roc_auc": _auc(labels, cpu),
             "max_abs_diff": float(np.max(np.abs(cpu - expected))),
             "rows_per_s": {size: size / _timed(booster.predict, tiled[:size]) for size in BATCHES}}
    results["runtimes"].append(entry)
    try:
        model, route = _hummingbird(booster, matrix[:1000].astype(np.float32))

        def predict(batch: np.ndarray) -> np.ndarray:
            out = model.predict_proba(batch.astype(np.float32))
            return out[:, 1] if out.ndim == 2 else out

        gpu = predict(matrix)
        entry = {"runtime": f"{route}, CUDA", "test_roc_auc": _auc(labels, gpu),
                 "max_abs_diff": float(np.max(np.abs(gpu - expected))),
                 "rows_per_s": {size: size / _timed(predict, tiled[:size], torch.cuda.synchronize)
                                for size in BATCHES}}
    except Exception as error:  # noqa: BLE001 - a runtime that cannot take the model is a finding
        entry = {"runtime": "hummingbird, CUDA", "error": f"{error}", "trace": traceback.format_exc()[-2000:]}
    results["runtimes"].append(entry)
    return results


def markdown(results: dict[str, Any]) -> str:
    sizes = [str(size) for size in BATCHES]
    lines = [f"GPU: {results['device']}; {results['rows']:,} encoded test rows (tiled for the larger batches)", "",
             "| runtime | test ROC AUC | max abs prob diff | " + " | ".join(f"rows/s at {int(s):,}" for s in sizes)
             + " |", "|---|---:|---:|" + "---:|" * len(sizes)]
    for entry in results["runtimes"]:
        if "error" in entry:
            lines.append(f"| {entry['runtime']} | failed: {entry['error'][:300]} | | " + " | " * len(sizes))
            continue
        rates = entry["rows_per_s"]
        lines.append(f"| {entry['runtime']} | {entry['test_roc_auc']:.5f} | {entry['max_abs_diff']:.1e} | "
                     + " | ".join(f"{rates.get(int(s), rates.get(s)):,.0f}" for s in sizes) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    group = parser.add_mutually_exclusive_group(required=True)
    group.add_argument("--prepare", type=Path, help="write the champion and the encoded test rows here")
    group.add_argument("--run", type=Path, help="measure on the rows --prepare wrote here")
    parser.add_argument("--json", type=Path, help="also write the figures here (--run)")
    args = parser.parse_args(argv)
    if args.prepare:
        print(json.dumps(prepare(args.prepare)))
        return
    results = run(args.run)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    print(markdown(results))


if __name__ == "__main__":
    main()

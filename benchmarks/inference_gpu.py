"""Batch inference on a GPU (issue 40): the champion's forest, and variants `python -m pipelines optimize` made of it,
compiled to tensor operations by Hummingbird and run with PyTorch on CUDA, beside LightGBM's `Booster.predict` on
the same machine's CPU cores, on the same rows.

    python -m benchmarks.inference_gpu --prepare DIR [--variant ordinal]  # here: model files, encoded test split
    python -m benchmarks.inference_gpu --run DIR                          # on the GPU machine

`--prepare` needs the project (the champion `dvc repro` trained, the variants `optimize` made,
`pipelines.features.encode_frame`); it writes the encoded test matrix and its labels once, and per model (`full`,
then each `--variant`: one that reads the champion's encoding, e.g. `ordinal`, whose every split is a numeric
threshold) a folder with its learner file and the project's own probabilities for those rows. `--run` needs only
numpy, scikit-learn, lightgbm, torch and hummingbird-ml (none of the project: a GPU machine need not hold its
environment) and prints, per model, runtime and batch size, rows/s (median of repeats, after a warm-up; GPU times
include the copy of the batch to the device and of the answer back), the test ROC AUC and the largest
|probability difference| from the project's own predictions. Hummingbird sends every missing value (NaN) the same
way, where LightGBM sends it to each split's learnt side: a model whose every split has missing type None (trained
with `use_missing: false`, e.g. `ordinal`; recorded in models.json) reads a NaN as 0.0, so the GPU is given its rows
with NaN replaced by 0 and must give LightGBM's answers; any other model gets the rows as they are. Hummingbird
converts the LightGBM Booster directly (with the binary objective's sigmoid), else through its ONNX form
(onnxmltools; the first that converts is used); a runtime that cannot take a model is reported with its error, not
skipped. hummingbird-ml and torch are not project dependencies (the service does not use them): install them where
this runs (`pip install hummingbird-ml`).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import time
import traceback
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

BATCHES = (1_000, 10_000, 100_000, 1_000_000)
REPEATS = 5
MATRIX, LABELS, EXPECTED, MODEL = "matrix.npy", "labels.npy", "expected.npy", "model.txt"
SHAPES = "models.json"  # per model: trees, set-valued splits and the splits' missing types, read by the project
NAN_AS_ZERO = ["None"]  # missing types when every split reads a NaN as 0.0 (LightGBM's use_missing: false)
FULL = "full"  # the champion's folder; each variant's is its name


def prepare(out: Path, params_file: str = "params.yaml", variants: Sequence[str] = ()) -> dict[str, Any]:
    """The encoded test split with its labels, and per model (the champion, then `variants`) its learner file and
    the project's probabilities for those rows. A variant must read the champion's encoding (the same matrix)."""
    import pandas as pd

    from pipelines import contracts, io
    from pipelines.config import load_params
    from pipelines.features import LABEL, encode_frame
    from pipelines.model.catalog import load_model
    from pipelines.model.optimize import require_lightgbm, variant_dir

    params = load_params(Path(params_file))
    model = load_model(params.paths.model_dir)
    test = pd.read_parquet(io.prepared_path(params.paths, "test"))
    matrix = encode_frame(test, model.schema)
    out.mkdir(parents=True, exist_ok=True)
    np.save(out / MATRIX, matrix)
    np.save(out / LABELS, test[LABEL].to_numpy().astype(np.int8))
    sources = {FULL: params.paths.model_dir, **{name: variant_dir(params, name) for name in variants}}
    shapes = {}
    for name, source in sources.items():
        learner = require_lightgbm(load_model(source))
        if learner.schema.to_dict() != model.schema.to_dict():
            raise ValueError(f"variant {name!r} reads another encoding than the champion's (its features differ): "
                             "only a variant of the same columns shares the prepared matrix")
        (out / name).mkdir(exist_ok=True)
        shutil.copyfile(contracts.model_file(source), out / name / MODEL)
        np.save(out / name / EXPECTED, learner.predict_matrix(matrix, 1))
        shapes[name] = {"trees": learner.trees, "set_valued_splits": learner.categorical_splits,
                        "missing_types": sorted(learner.missing_types)}
    (out / SHAPES).write_text(json.dumps(shapes, indent=2))
    return {"rows": int(matrix.shape[0]), "features": int(matrix.shape[1]), "models": shapes,
            "rows_with_missing": int(np.isnan(matrix).any(axis=1).sum()), "out": str(out)}


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
    """A function rows -> P(label 1) through Hummingbird's torch model of the forest on CUDA: from the Booster (a
    regressor to Hummingbird: its raw score, so the binary objective's sigmoid is asked for), else from its ONNX
    form (a classifier: its probability of class 1)."""
    from hummingbird.ml import convert
    from hummingbird.ml.operator_converters import constants

    errors = []
    try:
        model = convert(booster, "torch", sample, device="cuda",
                        extra_config={constants.POST_TRANSFORM: constants.SIGMOID})
        # With the sigmoid, Hummingbird's regressor answers [P(0), P(1)] per row.
        return (lambda batch: model.predict(batch.astype(np.float32)).reshape(len(batch), -1)[:, -1],
                "Hummingbird (LightGBM Booster -> torch)")
    except Exception as error:  # noqa: BLE001 - reported, then the next route is tried
        errors.append(f"from the Booster: {type(error).__name__}: {error}")
    try:
        import onnxmltools
        from onnxmltools.convert.common.data_types import FloatTensorType

        inputs = [("input", FloatTensorType([None, sample.shape[1]]))]
        onnx_model = onnxmltools.convert_lightgbm(booster, initial_types=inputs, zipmap=False)
        model = convert(onnx_model, "torch", sample, device="cuda")
        return lambda batch: model.predict_proba(batch.astype(np.float32))[:, 1], "Hummingbird (ONNX -> torch)"
    except Exception as error:  # noqa: BLE001
        errors.append(f"from ONNX: {type(error).__name__}: {error}")
    raise RuntimeError("; ".join(errors))


def _measure(model: str, runtime: str, predict: Any, matrix: np.ndarray, tiled: np.ndarray, labels: np.ndarray,
             expected: np.ndarray, sync: Any = None) -> dict[str, Any]:
    proba = predict(matrix)
    return {"model": model, "runtime": runtime, "test_roc_auc": _auc(labels, proba),
            "max_abs_diff": float(np.max(np.abs(proba - expected))),
            "rows_per_s": {size: size / _timed(predict, tiled[:size], sync) for size in BATCHES}}


def run(directory: Path) -> dict[str, Any]:
    """Every model's figures on every runtime, on the prepared rows (tiled to the largest batch)."""
    import hummingbird
    import lightgbm as lgb
    import torch

    matrix, labels = (np.load(directory / name) for name in (MATRIX, LABELS))
    tiled = np.tile(matrix, (int(np.ceil(max(BATCHES) / len(matrix))), 1))[:max(BATCHES)]
    shapes = json.loads((directory / SHAPES).read_text())
    results: dict[str, Any] = {
        "rows": len(matrix), "rows_with_missing": int(np.isnan(matrix).any(axis=1).sum()),
        "device": torch.cuda.get_device_name(0), "cpu_cores": os.cpu_count(),
        "versions": {"lightgbm": lgb.__version__, "torch": torch.__version__,
                     "hummingbird-ml": hummingbird.__version__},
        "models": shapes, "runtimes": []}
    zeroed = {"matrix": np.nan_to_num(matrix, nan=0.0), "tiled": np.nan_to_num(tiled, nan=0.0)}
    for name, shape in shapes.items():
        booster = lgb.Booster(model_file=str(directory / name / MODEL))
        expected = np.load(directory / name / EXPECTED)
        results["runtimes"].append(_measure(name, f"LightGBM Booster.predict ({os.cpu_count()} CPU cores)",
                                            booster.predict, matrix, tiled, labels, expected))
        # Hummingbird sends every NaN the same way, not to each split's learnt side: a model that reads a NaN as 0.0
        # at every split is given the rows with NaN replaced by 0 (the same answers); any other gets the NaN rows.
        nan_as_zero = shape["missing_types"] == NAN_AS_ZERO
        rows, rows_tiled = (zeroed["matrix"], zeroed["tiled"]) if nan_as_zero else (matrix, tiled)
        route_input = "NaN as 0" if nan_as_zero else "NaN as given"
        try:
            predict, route = _hummingbird(booster, rows[:1000].astype(np.float32))
            entry = _measure(name, f"{route}, CUDA, {route_input}", predict, rows, rows_tiled, labels, expected,
                             torch.cuda.synchronize)
        except Exception as error:  # noqa: BLE001 - a runtime that cannot take the model is a finding
            entry = {"model": name, "runtime": "Hummingbird -> torch, CUDA", "error": f"{error}",
                     "trace": traceback.format_exc()[-2000:]}
        results["runtimes"].append(entry)
    return results


def markdown(results: dict[str, Any]) -> str:
    sizes = [str(size) for size in BATCHES]
    versions = ", ".join(f"{name} {version}" for name, version in results["versions"].items())
    lines = [f"GPU: {results['device']}, {results['cpu_cores']} CPU cores; {versions}; {results['rows']:,} encoded "
             f"test rows ({results['rows_with_missing']:,} with a missing value), tiled for the larger batches", "",
             "| model (trees, set-valued splits, missing types) | runtime | test ROC AUC | max abs prob diff | "
             + " | ".join(f"rows/s at {int(s):,}" for s in sizes) + " |", "|---|---|---:|---:|" + "---:|" * len(sizes)]
    for entry in results["runtimes"]:
        shape = results["models"][entry["model"]]
        model = (f"{entry['model']} ({shape['trees']}, {shape['set_valued_splits']:,}, "
                 f"{'/'.join(shape['missing_types'])})")
        if "error" in entry:
            lines.append(f"| {model} | {entry['runtime']} | failed: {entry['error'][:300]} | | " + " | " * len(sizes))
            continue
        rates = entry["rows_per_s"]
        lines.append(f"| {model} | {entry['runtime']} | {entry['test_roc_auc']:.5f} | {entry['max_abs_diff']:.1e} | "
                     + " | ".join(f"{rates.get(int(s), rates.get(s)):,.0f}" for s in sizes) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    group = parser.add_mutually_exclusive_group(required=True)
    group.add_argument("--prepare", type=Path, help="write the models and the encoded test rows here")
    group.add_argument("--run", type=Path, help="measure on the rows --prepare wrote here")
    parser.add_argument("--variant", action="append", default=[], metavar="NAME",
                        help="also a variant `python -m pipelines optimize` made (--prepare; repeatable), e.g. "
                             "ordinal: the champion refit with numeric splits only, which Hummingbird takes")
    parser.add_argument("--json", type=Path, help="also write the figures here (--run)")
    args = parser.parse_args(argv)
    if args.prepare:
        print(json.dumps(prepare(args.prepare, variants=args.variant)))
        return
    results = run(args.run)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    print(markdown(results))


if __name__ == "__main__":
    main()

"""The I/O shell of each step: load its inputs from the paths in params, call the pure step, save its outputs.

`dvc.yaml` runs these through the CLI and the Prefect flows run them as tasks, so a stage is implemented once.
Every file is written to a temporary name and renamed into place: a crashed stage never leaves a half-written
artifact for the next one to read.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd

from pipelines.config import Params

log = logging.getLogger(__name__)


def write_atomic(path: Path, write: Callable[[Path], Any]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    os.close(handle)
    try:
        write(Path(temp))
        os.replace(temp, path)
    finally:
        if os.path.exists(temp):
            os.unlink(temp)
    return path


def write_json(path: Path, data: Any) -> Path:
    return write_atomic(path, lambda temp: temp.write_text(json.dumps(data, indent=2, default=str) + "\n"))


def write_parquet(path: Path, frame: pd.DataFrame) -> Path:
    return write_atomic(path, lambda temp: frame.to_parquet(temp, index=False))


def write_csv(path: Path, frame: pd.DataFrame) -> Path:
    return write_atomic(path, lambda temp: frame.to_csv(temp, index=False))


def read_parquet(path: Path, stage: str) -> pd.DataFrame:
    if not path.exists():
        raise FileNotFoundError(f"{path} not found: run the {stage} stage first (dvc repro {stage})")
    return pd.read_parquet(path)


def prepared_path(params: Params, split: str) -> Path:
    return params.paths.prepared_dir / f"{split}.parquet"


def schema_path(params: Params) -> Path:
    return params.paths.prepared_dir / "feature_schema.json"


# --- the stages, in DAG order -------------------------------------------------------------------------------------

def run_collect(params: Params) -> dict[str, Any]:
    from pipelines.collect import collect

    table = collect(params.source, params.collect)
    write_parquet(params.paths.raw_table, table)
    return {"rows": len(table), "path": str(params.paths.raw_table)}


def run_validate(params: Params) -> dict[str, Any]:
    from pipelines.validate import validate_table

    table = read_parquet(params.paths.raw_table, "collect")
    summary = validate_table(table, params.validate_.suite, params.paths.validation_dir,
                             fail_on_error=params.validate_.fail_on_error)
    return summary if isinstance(summary, dict) else summary.to_dict()


def run_preprocess(params: Params) -> dict[str, Any]:
    from pipelines.preprocess import SPLITS, prepare

    table = read_parquet(params.paths.raw_table, "collect")
    prepared = prepare(table, params.source, params.features, params.split, keep=params.evaluate.slices)
    for split in SPLITS:
        write_parquet(prepared_path(params, split), prepared.split(split))
    write_atomic(schema_path(params), prepared.schema.save)
    return {split: len(prepared.split(split)) for split in SPLITS}


def run_train(params: Params) -> dict[str, Any]:
    from pipelines.features import FeatureSchema
    from pipelines.train import train_model

    train = read_parquet(prepared_path(params, "train"), "preprocess")
    valid = read_parquet(prepared_path(params, "valid"), "preprocess")
    model = train_model(train, valid, FeatureSchema.load(schema_path(params)), params.train)
    model.save(params.paths.model_dir)
    return {"best_iteration": model.meta["best_iteration"], "threshold": model.threshold,
            "valid_metrics": model.meta["valid_metrics"]}


def run_evaluate(params: Params) -> dict[str, Any]:
    from pipelines.evaluate import evaluate_model
    from pipelines.train import TrainedModel

    model = TrainedModel.load(params.paths.model_dir)
    evaluation = evaluate_model(
        model,
        train=read_parquet(prepared_path(params, "train"), "preprocess"),
        test=read_parquet(prepared_path(params, "test"), "preprocess"),
        time_column=params.source.time_column,
        slices=params.evaluate.slices,
        min_slice_rows=params.evaluate.min_slice_rows,
    )
    metrics_dir, plots_dir = params.paths.metrics_dir, params.paths.plots_dir
    write_json(metrics_dir / "evaluate.json", evaluation.metrics)
    write_json(metrics_dir / "slices.json", evaluation.slices)
    write_csv(plots_dir / "roc.csv", evaluation.roc)
    write_csv(plots_dir / "precision_recall.csv", evaluation.precision_recall)
    write_csv(plots_dir / "calibration.csv", evaluation.calibration)
    write_csv(plots_dir / "feature_importance.csv", evaluation.importance)
    return evaluation.metrics

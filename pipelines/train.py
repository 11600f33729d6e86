"""train: LightGBM with early stopping on the validation split, seeded and deterministic.

A trained model is a directory: `model.txt` (LightGBM's text format at the best iteration), `feature_schema.json`
(what `pipelines.features.encode` needs) and `model.json` (threshold, best iteration, validation metrics, params).
Same params and data give byte-identical files, which is what lets DVC skip unchanged work.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from pipelines.config import TrainParams
from pipelines.features import LABEL, FeatureSchema, encode_frame
from pipelines.io import META_FILE, MODEL_FILE, SCHEMA_FILE, to_jsonable

log = logging.getLogger(__name__)

# The task, not a setting: a binary label, judged on ranking (AUC) with log loss beside it.
OBJECTIVE = "binary"
METRICS = ["auc", "binary_logloss"]


def lightgbm_params(params: TrainParams) -> dict[str, Any]:
    """LightGBM's own parameter dict; `deterministic` makes the same data and params give the same file."""
    return {
        "objective": OBJECTIVE,
        "metric": METRICS,
        "learning_rate": params.learning_rate,
        "num_leaves": params.num_leaves,
        "min_data_in_leaf": params.min_data_in_leaf,
        "feature_fraction": params.feature_fraction,
        "bagging_fraction": params.bagging_fraction,
        "bagging_freq": params.bagging_freq,
        "lambda_l2": params.lambda_l2,
        "num_threads": params.num_threads,
        "device_type": params.device_type,
        "seed": params.seed,
        "deterministic": True,
        "force_row_wise": True,
        "verbosity": -1,
    }


@dataclass
class TrainedModel:
    """A booster with everything needed to score raw rows the way training did."""

    booster: Any  # lightgbm.Booster; typed loosely to keep the import out of module load
    schema: FeatureSchema
    threshold: float
    meta: dict[str, Any] = field(default_factory=dict)

    def predict_proba(self, frame: pd.DataFrame) -> np.ndarray:
        return self.booster.predict(encode_frame(frame, self.schema))

    def save(self, directory: Path) -> None:
        """Write all three files to a sibling temp dir, then swap it in: a crash leaves the old model or the new."""
        directory.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{directory.name}-", dir=directory.parent))
        try:
            self.booster.save_model(str(staging / MODEL_FILE))
            self.schema.save(staging / SCHEMA_FILE)
            (staging / META_FILE).write_text(json.dumps(to_jsonable({**self.meta, "threshold": self.threshold}),
                                                        indent=2) + "\n")
            if directory.exists():
                retired = directory.with_name(f".{directory.name}-old")
                shutil.rmtree(retired, ignore_errors=True)
                os.replace(directory, retired)
                os.replace(staging, directory)
                shutil.rmtree(retired, ignore_errors=True)
            else:
                os.replace(staging, directory)
        finally:
            shutil.rmtree(staging, ignore_errors=True)

    @classmethod
    def load(cls, directory: Path) -> TrainedModel:
        import lightgbm as lgb

        model_file = directory / MODEL_FILE
        if not model_file.exists():
            raise FileNotFoundError(f"no model at {model_file} (run the train stage first)")
        meta = json.loads((directory / META_FILE).read_text())
        return cls(booster=lgb.Booster(model_file=str(model_file)), schema=FeatureSchema.load(directory / SCHEMA_FILE),
                   threshold=float(meta["threshold"]), meta=meta)


def choose_threshold(y_true: np.ndarray, proba: np.ndarray, setting: float | str) -> float:
    """A fixed threshold, or the one that maximises F1 on the given (validation) labels."""
    if not isinstance(setting, str):
        return float(setting)
    from sklearn.metrics import precision_recall_curve

    precision, recall, thresholds = precision_recall_curve(y_true, proba)
    f1 = np.divide(2 * precision * recall, precision + recall, out=np.zeros_like(precision),
                   where=(precision + recall) > 0)
    return float(thresholds[int(np.argmax(f1[:-1]))])


def train_model(train: pd.DataFrame, valid: pd.DataFrame, schema: FeatureSchema, params: TrainParams) -> TrainedModel:
    """Fit on `train`, stop early on `valid`; the threshold is chosen on `valid` too, never on the test split."""
    import lightgbm as lgb

    names = schema.feature_names
    train_set = lgb.Dataset(encode_frame(train, schema), label=train[LABEL].to_numpy(), feature_name=names,
                            categorical_feature=schema.categorical_features, free_raw_data=True)
    valid_set = lgb.Dataset(encode_frame(valid, schema), label=valid[LABEL].to_numpy(), reference=train_set)
    history: dict[str, dict[str, list[float]]] = {}
    booster = lgb.train(
        lightgbm_params(params),
        train_set,
        num_boost_round=params.num_boost_round,
        valid_sets=[valid_set],
        valid_names=["valid"],
        callbacks=[lgb.early_stopping(params.early_stopping_rounds, verbose=False), lgb.record_evaluation(history)],
    )
    best = booster.best_iteration or params.num_boost_round
    # Keep only the trees early stopping chose, so every consumer scores the same model.
    booster = lgb.Booster(model_str=booster.model_to_string(num_iteration=best))
    valid_metrics = {name: float(values[best - 1]) for name, values in history["valid"].items()}
    return finish_training(booster, best, valid_metrics, train_rows=len(train), valid=valid, schema=schema,
                           params=params, engine={"engine": "local"})


def finish_training(booster: Any, best: int, valid_metrics: dict[str, float], *, train_rows: int,
                    valid: pd.DataFrame, schema: FeatureSchema, params: TrainParams,
                    engine: dict[str, Any]) -> TrainedModel:
    """What every engine does with its booster (already cut at `best`): threshold on `valid`, and the metadata."""
    valid_proba = booster.predict(encode_frame(valid, schema))
    threshold = choose_threshold(valid[LABEL].to_numpy(), valid_proba, params.threshold)
    log.info("trained %d trees (early stopping, %s engine), valid %s, threshold %.3f", best, engine["engine"],
             valid_metrics, threshold)
    meta = {
        "best_iteration": best,
        "valid_metrics": valid_metrics,
        "train_rows": train_rows,
        "valid_rows": len(valid),
        "params": params.model_dump(mode="json"),
        "engine": engine,
    }
    return TrainedModel(booster=booster, schema=schema, threshold=threshold, meta=meta)
